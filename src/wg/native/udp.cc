// UdpSocket: one dual-stack UDP socket (IPv4 peers appear as ::ffff:a.b.c.d), received and sent a
// batch at a time with recvmmsg/sendmmsg. Addresses cross to JavaScript as 16 bytes + a port per
// slot. Each socket owns its mmsghdr/iovec/sockaddr arrays, sized once to the batch capacity, so
// a batch costs two syscalls and no allocation.
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <vector>

namespace meshd {

namespace {

// Binds a nonblocking socket of `family` to the wildcard address; returns the fd or -errno.
int BindWildcard(int family, int port) {
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET6) {
    // Dual stack: IPv4 arrives on the same socket, whatever net.ipv6.bindv6only says.
    int off = 0;
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0) {
      int err = errno;
      close(fd);
      return -err;
    }
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    a->sin6_addr = in6addr_any;
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    a->sin_addr.s_addr = htonl(INADDR_ANY);
    len = sizeof *a;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  return fd;
}

// Large buffers absorb a burst of batches while JavaScript is busy. The FORCE variants ignore
// rmem_max/wmem_max (root only); failing both just leaves the defaults, which still work.
void SetBuffers(int fd) {
  int size = 4 << 20;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) < 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) < 0)
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
}

void ToSlot(const sockaddr_storage& name, uint8_t* addr16, uint16_t* port) {
  if (name.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&name);
    memset(addr16, 0, 10);
    addr16[10] = addr16[11] = 0xff;
    memcpy(addr16 + 12, &v4->sin_addr, 4);
    *port = ntohs(v4->sin_port);
  } else {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&name);
    memcpy(addr16, &v6->sin6_addr, 16);
    *port = ntohs(v6->sin6_port);
  }
}

bool IsV4Mapped(const uint8_t* a) {
  static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return memcmp(a, prefix, 12) == 0;
}

// The sockaddr for a slot's peer; 0 when this socket cannot reach it (IPv6 on an IPv4 socket).
socklen_t FromSlot(int family, const uint8_t* addr16, uint16_t port, sockaddr_storage* name) {
  memset(name, 0, sizeof *name);
  if (family == AF_INET) {
    if (!IsV4Mapped(addr16)) return 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(name);
    v4->sin_family = AF_INET;
    memcpy(&v4->sin_addr, addr16 + 12, 4);
    v4->sin_port = htons(port);
    return sizeof *v4;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(name);
  v6->sin6_family = AF_INET6;
  memcpy(&v6->sin6_addr, addr16, 16);
  v6->sin6_port = htons(port);
  return sizeof *v6;
}

}  // namespace

class UdpSocket : public Napi::ObjectWrap<UdpSocket> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "UdpSocket", {
      InstanceAccessor<&UdpSocket::Fd>("fd"),
      InstanceAccessor<&UdpSocket::Port>("port"),
      InstanceAccessor<&UdpSocket::Family>("family"),
      InstanceMethod<&UdpSocket::Recv>("recv"),
      InstanceMethod<&UdpSocket::Send>("send"),
      InstanceMethod<&UdpSocket::SetMark>("setMark"),
      InstanceMethod<&UdpSocket::Close>("close"),
    });
  }

  // new UdpSocket(port, capacity): bound to [::]:port, or 0.0.0.0:port without IPv6.
  explicit UdpSocket(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UdpSocket>(info) {
    Napi::Env env = info.Env();
    int port = info[0].As<Napi::Number>().Int32Value();
    size_t capacity = info[1].As<Napi::Number>().Uint32Value();
    if (port < 0 || port > 65535 || capacity == 0) {
      Napi::RangeError::New(env, "UdpSocket(port 0-65535, capacity > 0)").ThrowAsJavaScriptException();
      return;
    }
    family_ = AF_INET6;
    int fd = BindWildcard(AF_INET6, port);
    // No IPv6 in this kernel or namespace (module absent, or disabled so :: is not bindable).
    if (fd == -EAFNOSUPPORT || fd == -EADDRNOTAVAIL) {
      family_ = AF_INET;
      fd = BindWildcard(AF_INET, port);
    }
    if (fd < 0) {
      ThrowErrno(env, ("bind UDP port " + std::to_string(port)).c_str(), -fd);
      return;
    }
    SetBuffers(fd);
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) < 0) {
      int err = errno;
      close(fd);
      ThrowErrno(env, "getsockname", err);
      return;
    }
    uint8_t unused[16];
    uint16_t boundPort = 0;
    ToSlot(bound, unused, &boundPort);
    fd_ = fd;
    port_ = boundPort;
    msgs_.resize(capacity);
    iov_.resize(capacity);
    names_.resize(capacity);
  }

  ~UdpSocket() override {
    if (fd_ >= 0) close(fd_);
  }

 private:
  Napi::Value Fd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }
  Napi::Value Port(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), port_); }
  Napi::Value Family(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), family_ == AF_INET6 ? 6 : 4); }

  // recv(data, slotSize, offset, length, addr, port) -> datagrams received (0: none), or -errno.
  // Datagram i lands at offset 0 of slot i; a datagram larger than a slot gets length -1.
  Napi::Value Recv(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Slots s = SlotArgs(info, 0);
    auto addr = Bytes(info[4]);
    auto port = Array<uint16_t>(info[5]);
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    if (s.slot == 0) return Napi::Number::New(env, -EINVAL);
    size_t max = std::min({msgs_.size(), s.Count(), addr.length / 16, port.length});
    for (size_t i = 0; i < max; i++) {
      iov_[i] = {s.data.data + i * s.slot, s.slot};
      msghdr& h = msgs_[i].msg_hdr;
      h = msghdr{};
      h.msg_iov = &iov_[i];
      h.msg_iovlen = 1;
      h.msg_name = &names_[i];
      h.msg_namelen = sizeof names_[i];
    }
    int n;
    do n = recvmmsg(fd_, msgs_.data(), max, MSG_DONTWAIT, nullptr); while (n < 0 && errno == EINTR);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Napi::Number::New(env, 0);
      // A queued ICMP error (ECONNREFUSED after a port unreachable...) fails this one call and is
      // consumed by it; the caller reads again.
      return Napi::Number::New(env, -errno);
    }
    for (int i = 0; i < n; i++) {
      s.offset.data[i] = 0;
      s.length.data[i] = (msgs_[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int32_t)msgs_[i].msg_len;
      ToSlot(names_[i], addr.data + i * 16, &port.data[i]);
    }
    return Napi::Number::New(env, n);
  }

  // send(data, slotSize, offset, length, addr, port, count) -> datagrams sent. Slots with length
  // <= 0 are skipped; a datagram the kernel refuses (full buffer, unreachable) is dropped, as a
  // lossy network would, and the rest of the batch still goes out.
  Napi::Value Send(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Slots s = SlotArgs(info, 0);
    auto addr = Bytes(info[4]);
    auto port = Array<uint16_t>(info[5]);
    size_t count = info[6].As<Napi::Number>().Uint32Value();
    if (fd_ < 0) return Napi::Number::New(env, -EBADF);
    count = std::min({count, s.Count(), addr.length / 16, port.length});
    size_t sent = 0;
    size_t i = 0;
    while (i < count) {
      // Fill up to capacity messages, then flush; a batch larger than the capacity takes more rounds.
      size_t m = 0;
      for (; i < count && m < msgs_.size(); i++) {
        int32_t len = s.length.data[i];
        uint8_t* p = len <= 0 ? nullptr : s.Packet(i);
        if (p == nullptr) continue;
        socklen_t namelen = FromSlot(family_, addr.data + i * 16, port.data[i], &names_[m]);
        if (namelen == 0) continue;
        iov_[m] = {p, (size_t)len};
        msghdr& h = msgs_[m].msg_hdr;
        h = msghdr{};
        h.msg_iov = &iov_[m];
        h.msg_iovlen = 1;
        h.msg_name = &names_[m];
        h.msg_namelen = namelen;
        m++;
      }
      size_t done = 0;
      while (done < m) {
        int n = sendmmsg(fd_, msgs_.data() + done, m - done, MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EINTR) continue;
          // A full send buffer refuses the rest of the batch too: drop it rather than retry each.
          if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;
          done++;  // only the first pending message failed (unreachable, bad address): drop it
          continue;
        }
        done += n;
        sent += n;
      }
    }
    return Napi::Number::New(env, (double)sent);
  }

  // setMark(mark) -> 0 or -errno: SO_MARK (fwmark), so policy routing can keep the tunnel's own
  // packets out of the tunnel.
  Napi::Value SetMark(const Napi::CallbackInfo& info) {
    uint32_t mark = info[0].As<Napi::Number>().Uint32Value();
    if (fd_ < 0) return Napi::Number::New(info.Env(), -EBADF);
    int r = setsockopt(fd_, SOL_SOCKET, SO_MARK, &mark, sizeof mark);
    return Napi::Number::New(info.Env(), r < 0 ? -errno : 0);
  }

  // Stop any Poller on this fd first: closing a watched fd is undefined for libuv.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
    return info.Env().Undefined();
  }

  int fd_ = -1;
  int family_ = AF_INET6;
  uint16_t port_ = 0;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
  std::vector<sockaddr_storage> names_;
};

void InitUdp(Napi::Env env, Napi::Object exports) {
  exports.Set("UdpSocket", UdpSocket::Define(env));
}

}  // namespace meshd
