// UDP: one dual-stack socket (IPv4 arrives as ::ffff:a.b.c.d), received and sent a batch at a
// time with recvmmsg/sendmmsg. Addresses cross to JavaScript as 16 bytes + port per slot.
#include "common.h"
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace meshd {

// The address family of each socket we opened: AF_INET6 normally, AF_INET without IPv6.
static std::unordered_map<int, int> families;

// Scratch for one batch call; grows to the largest batch once, then is reused.
struct MsgScratch {
  std::vector<mmsghdr> msgs;
  std::vector<iovec> iov;
  std::vector<sockaddr_in6> names;
  std::vector<int> slot;  // which batch slot each message belongs to
  void fit(size_t n) {
    if (msgs.size() >= n) return;
    msgs.resize(n);
    iov.resize(n);
    names.resize(n);
    slot.resize(n);
  }
};
static MsgScratch rx, tx;

static void SetBuffers(int fd) {
  int size = 4 << 20;
  // FORCE variants ignore rmem_max/wmem_max when we are root; fall back to the capped ones.
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

static Napi::Value UdpOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int port = info[0].As<Napi::Number>().Int32Value();
  int family = AF_INET6;
  int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd >= 0) {
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_any;
    if (bind(fd, (sockaddr*)&a, sizeof a) < 0) {
      int err = errno;
      close(fd);
      return ThrowErrno(env, ("bind UDP port " + std::to_string(port)).c_str(), err);
    }
  } else {
    family = AF_INET;
    fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return ThrowErrno(env, "socket", errno);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = INADDR_ANY;
    if (bind(fd, (sockaddr*)&a, sizeof a) < 0) {
      int err = errno;
      close(fd);
      return ThrowErrno(env, ("bind UDP port " + std::to_string(port)).c_str(), err);
    }
  }
  SetBuffers(fd);
  sockaddr_in6 bound{};
  socklen_t len = sizeof bound;
  getsockname(fd, (sockaddr*)&bound, &len);
  families[fd] = family;
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", fd);
  out.Set("port", ntohs(family == AF_INET6 ? bound.sin6_port : ((sockaddr_in*)&bound)->sin_port));
  return out;
}

static void ToSlot(const sockaddr_in6& name, uint8_t* addr16, uint16_t* port) {
  if (name.sin6_family == AF_INET) {
    const sockaddr_in* v4 = (const sockaddr_in*)&name;
    memset(addr16, 0, 10);
    addr16[10] = addr16[11] = 0xff;
    memcpy(addr16 + 12, &v4->sin_addr, 4);
    *port = ntohs(v4->sin_port);
  } else {
    memcpy(addr16, &name.sin6_addr, 16);
    *port = ntohs(name.sin6_port);
  }
}

static socklen_t FromSlot(int family, const uint8_t* addr16, uint16_t port, sockaddr_in6* name) {
  memset(name, 0, sizeof *name);
  if (family == AF_INET) {
    sockaddr_in* v4 = (sockaddr_in*)name;
    v4->sin_family = AF_INET;
    memcpy(&v4->sin_addr, addr16 + 12, 4);
    v4->sin_port = htons(port);
    return sizeof(sockaddr_in);
  }
  name->sin6_family = AF_INET6;
  memcpy(&name->sin6_addr, addr16, 16);
  name->sin6_port = htons(port);
  return sizeof(sockaddr_in6);
}

// udpRecv(fd, data, slotSize, offset, length, addr, port, max) -> count
static Napi::Value UdpRecv(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto data = Bytes(info[1]);
  size_t slot = info[2].As<Napi::Number>().Uint32Value();
  auto offset = Array<int32_t>(info[3]);
  auto length = Array<int32_t>(info[4]);
  auto addr = Bytes(info[5]);
  auto port = Array<uint16_t>(info[6]);
  size_t max = info[7].As<Napi::Number>().Uint32Value();
  if (max > data.length / slot) max = data.length / slot;
  if (max > length.length) max = length.length;
  if (max > addr.length / 16) max = addr.length / 16;
  rx.fit(max);
  for (size_t i = 0; i < max; i++) {
    rx.iov[i] = {data.data + i * slot, slot};
    rx.msgs[i].msg_hdr = msghdr{};
    rx.msgs[i].msg_hdr.msg_iov = &rx.iov[i];
    rx.msgs[i].msg_hdr.msg_iovlen = 1;
    rx.msgs[i].msg_hdr.msg_name = &rx.names[i];
    rx.msgs[i].msg_hdr.msg_namelen = sizeof(sockaddr_in6);
  }
  int n;
  do n = recvmmsg(fd, rx.msgs.data(), max, MSG_DONTWAIT, nullptr); while (n < 0 && errno == EINTR);
  if (n < 0) {
    // An ICMP error queued on the socket (ECONNREFUSED...) fails one call; clear it so the next
    // call reads packets again. EAGAIN means drained.
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
      return Napi::Number::New(info.Env(), -1);
    }
    return Napi::Number::New(info.Env(), 0);
  }
  for (int i = 0; i < n; i++) {
    offset.data[i] = 0;
    length.data[i] = (int32_t)rx.msgs[i].msg_len;
    ToSlot(rx.names[i], addr.data + i * 16, &port.data[i]);
  }
  return Napi::Number::New(info.Env(), n);
}

// udpSend(fd, data, slotSize, offset, length, addr, port, count) -> sent
static Napi::Value UdpSend(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  auto data = Bytes(info[1]);
  size_t slot = info[2].As<Napi::Number>().Uint32Value();
  auto offset = Array<int32_t>(info[3]);
  auto length = Array<int32_t>(info[4]);
  auto addr = Bytes(info[5]);
  auto port = Array<uint16_t>(info[6]);
  size_t count = info[7].As<Napi::Number>().Uint32Value();
  auto it = families.find(fd);
  int family = it == families.end() ? AF_INET6 : it->second;
  tx.fit(count);
  size_t m = 0;
  for (size_t i = 0; i < count && i < length.length; i++) {
    int32_t len = length.data[i];
    if (len <= 0) continue;
    size_t start = i * slot + offset.data[i];
    if (start + len > data.length) continue;
    tx.iov[m] = {data.data + start, (size_t)len};
    tx.msgs[m].msg_hdr = msghdr{};
    tx.msgs[m].msg_hdr.msg_iov = &tx.iov[m];
    tx.msgs[m].msg_hdr.msg_iovlen = 1;
    tx.msgs[m].msg_hdr.msg_name = &tx.names[m];
    tx.msgs[m].msg_hdr.msg_namelen = FromSlot(family, addr.data + i * 16, port.data[i], &tx.names[m]);
    m++;
  }
  size_t done = 0, sent = 0;
  while (done < m) {
    int n = sendmmsg(fd, tx.msgs.data() + done, m - done, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      // The first message failed (unreachable, full buffer, bad address): drop it, go on.
      done++;
      continue;
    }
    done += n;
    sent += n;
  }
  return Napi::Number::New(info.Env(), (double)sent);
}

static Napi::Value UdpClose(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  families.erase(fd);
  close(fd);
  return info.Env().Undefined();
}

void InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("udpOpen", Napi::Function::New(env, UdpOpen));
  exports.Set("udpRecv", Napi::Function::New(env, UdpRecv));
  exports.Set("udpSend", Napi::Function::New(env, UdpSend));
  exports.Set("udpClose", Napi::Function::New(env, UdpClose));
}

}  // namespace meshd
