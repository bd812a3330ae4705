// ICMP echo over a raw IPv4 socket: how the daemon measures latency through the tunnel itself
// (`meshd status`), to any peer, meshd or not, since the peer's kernel answers. Needs CAP_NET_RAW
// (the daemon runs as root). The socket only receives echo replies (ICMP_FILTER).
#include "common.h"
#include <arpa/inet.h>
#include <linux/icmp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace meshd {

static uint16_t Checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += (uint32_t)(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += (uint32_t)(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return (uint16_t)~sum;
}

// icmpOpen() -> fd: a nonblocking raw ICMP socket that receives echo replies only.
static Napi::Value IcmpOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (fd < 0) return ThrowErrno(env, "raw ICMP socket", errno);
  struct icmp_filter filter;
  filter.data = ~(1U << ICMP_ECHOREPLY);
  if (setsockopt(fd, SOL_RAW, ICMP_FILTER, &filter, sizeof filter) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, "ICMP_FILTER", err);
  }
  return Napi::Number::New(env, fd);
}

// icmpEcho(fd, addr: 4 bytes, id, seq, payload) -> 0 or -errno: sends one echo request.
static Napi::Value IcmpEcho(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto addr = Bytes(info[1]);
  uint16_t id = (uint16_t)info[2].As<Napi::Number>().Uint32Value();
  uint16_t seq = (uint16_t)info[3].As<Napi::Number>().Uint32Value();
  auto payload = Bytes(info[4]);
  if (addr.length != 4 || payload.length > 1024) return Napi::Number::New(info.Env(), -EINVAL);
  uint8_t msg[8 + 1024];
  msg[0] = ICMP_ECHO;
  msg[1] = 0;
  msg[2] = msg[3] = 0;
  msg[4] = id >> 8;
  msg[5] = id & 0xff;
  msg[6] = seq >> 8;
  msg[7] = seq & 0xff;
  memcpy(msg + 8, payload.data, payload.length);
  uint16_t sum = Checksum(msg, 8 + payload.length);
  msg[2] = sum >> 8;
  msg[3] = sum & 0xff;
  struct sockaddr_in to;
  memset(&to, 0, sizeof to);
  to.sin_family = AF_INET;
  memcpy(&to.sin_addr, addr.data, 4);
  ssize_t r = sendto(fd, msg, 8 + payload.length, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  return Napi::Number::New(info.Env(), r < 0 ? -errno : 0);
}

// icmpRecv(fd, buf, from: 4 bytes) -> length of the ICMP message copied to buf (the IP header
// stripped), 0 when nothing is queued, or -errno.
static Napi::Value IcmpRecv(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto buf = Bytes(info[1]);
  auto from = Bytes(info[2]);
  if (from.length != 4) return Napi::Number::New(info.Env(), -EINVAL);
  uint8_t packet[2048];
  struct sockaddr_in src;
  socklen_t len = sizeof src;
  ssize_t n;
  do n = recvfrom(fd, packet, sizeof packet, 0, reinterpret_cast<sockaddr*>(&src), &len);
  while (n < 0 && errno == EINTR);
  if (n < 0) return Napi::Number::New(info.Env(), errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno);
  size_t ihl = n > 0 ? (size_t)(packet[0] & 0x0f) * 4 : 0;
  if (ihl < 20 || (size_t)n < ihl + 8) return Napi::Number::New(info.Env(), -EBADMSG);
  size_t icmpLen = (size_t)n - ihl;
  if (icmpLen > buf.length) icmpLen = buf.length;
  memcpy(buf.data, packet + ihl, icmpLen);
  memcpy(from.data, &src.sin_addr, 4);
  return Napi::Number::New(info.Env(), (double)icmpLen);
}

void InitIcmp(Napi::Env env, Napi::Object exports) {
  exports.Set("icmpOpen", Napi::Function::New(env, IcmpOpen));
  exports.Set("icmpEcho", Napi::Function::New(env, IcmpEcho));
  exports.Set("icmpRecv", Napi::Function::New(env, IcmpRecv));
}

}  // namespace meshd
