// TUN: open /dev/net/tun as a layer-3 device without packet info, configure MTU and queue
// length, read and write packets in batches on a nonblocking fd.
#include "common.h"
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

namespace meshd {

static Napi::Value TunOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (name.empty() || name.size() >= IFNAMSIZ) {
    Napi::Error::New(env, "interface name must be 1-15 characters").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ThrowErrno(env, "open /dev/net/tun", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    return ThrowErrno(env, ("TUNSETIFF " + name).c_str(), err);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("fd", fd);
  out.Set("name", Napi::String::New(env, ifr.ifr_name));
  return out;
}

static Napi::Value IfaceConfigure(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int mtu = info[1].As<Napi::Number>().Int32Value();
  int qlen = info[2].As<Napi::Number>().Int32Value();
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return ThrowErrno(env, "socket", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
  ifr.ifr_mtu = mtu;
  if (ioctl(s, SIOCSIFMTU, &ifr) < 0) {
    int err = errno;
    close(s);
    return ThrowErrno(env, "SIOCSIFMTU", err);
  }
  ifr.ifr_qlen = qlen;
  if (ioctl(s, SIOCSIFTXQLEN, &ifr) < 0) {
    int err = errno;
    close(s);
    return ThrowErrno(env, "SIOCSIFTXQLEN", err);
  }
  close(s);
  return env.Undefined();
}

// tunRead(fd, data, slotSize, offset, length, headroom, max) -> packets read (0: none), -EINVAL
// for a slot too small. Packet i lands at offset `headroom` of slot i.
static Napi::Value TunRead(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Slots s = SlotArgs(info, 1);
  int headroom = info[5].As<Napi::Number>().Int32Value();
  size_t max = info[6].As<Napi::Number>().Uint32Value();
  // A slot must hold the headroom, a packet, and the padding and tag added in place later.
  if (headroom < 0 || s.slot < (size_t)headroom + 32 + 576) return Napi::Number::New(info.Env(), -EINVAL);
  if (max > s.Count()) max = s.Count();
  size_t n = 0;
  while (n < max) {
    uint8_t* p = s.data.data + n * s.slot + headroom;
    ssize_t r = read(fd, p, s.slot - headroom - 32);  // room for padding and the tag
    if (r < 0) {
      if (errno == EINTR) continue;
      break;  // EAGAIN: drained. Other errors: the poller reports them.
    }
    s.offset.data[n] = headroom;
    s.length.data[n] = (int32_t)r;
    n++;
  }
  return Napi::Number::New(info.Env(), (double)n);
}

// tunWrite(fd, data, slotSize, offset, length, count) -> packets written; slots with length <= 0
// are skipped.
static Napi::Value TunWrite(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  Slots s = SlotArgs(info, 1);
  size_t count = info[5].As<Napi::Number>().Uint32Value();
  size_t written = 0;
  for (size_t i = 0; i < count && i < s.Count(); i++) {
    int32_t len = s.length.data[i];
    uint8_t* p = len <= 0 ? nullptr : s.Packet(i);
    if (p == nullptr) continue;
    ssize_t r;
    do r = write(fd, p, len); while (r < 0 && errno == EINTR);
    if (r == len) written++;  // a full queue drops the packet, as a NIC would
  }
  return Napi::Number::New(info.Env(), (double)written);
}

// tunAttached(fd) -> 0, or -errno: -EBADFD once the interface was deleted (`ip link del`). The
// kernel detaches the fd without waking pollers, so the engine asks now and then.
static Napi::Value TunAttached(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  int r = ioctl(fd, TUNGETIFF, &ifr);
  return Napi::Number::New(info.Env(), r < 0 ? -errno : 0);
}

void InitTun(Napi::Env env, Napi::Object exports) {
  exports.Set("tunOpen", Napi::Function::New(env, TunOpen));
  exports.Set("ifaceConfigure", Napi::Function::New(env, IfaceConfigure));
  exports.Set("tunRead", Napi::Function::New(env, TunRead));
  exports.Set("tunWrite", Napi::Function::New(env, TunWrite));
  exports.Set("tunAttached", Napi::Function::New(env, TunAttached));
}

}  // namespace meshd
