// sd_notify(3) without libsystemd: one datagram to the service manager's AF_UNIX socket, the one
// $NOTIFY_SOCKET names (a path, or an abstract socket when it starts with '@'). Node has no unix
// datagram sockets, so this lives in the addon; src/daemon/sd-notify.ts decides what to send.
#include "common.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace meshd {

// notifySend(socket: string, message: string) -> 0 or -errno: sends `message` as one datagram.
static Napi::Value NotifySend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() > sizeof addr.sun_path) return Napi::Number::New(env, -EINVAL);
  if (path[0] != '/' && path[0] != '@') return Napi::Number::New(env, -EAFNOSUPPORT);
  memcpy(addr.sun_path, path.data(), path.size());
  socklen_t len = offsetof(struct sockaddr_un, sun_path) + path.size();
  if (path[0] == '@') {
    addr.sun_path[0] = '\0';  // abstract: no terminating NUL counts in the length
  } else {
    if (path.size() == sizeof addr.sun_path) return Napi::Number::New(env, -EINVAL);
    len += 1;
  }
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Napi::Number::New(env, -errno);
  ssize_t r;
  do r = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  while (r < 0 && errno == EINTR);
  int err = r < 0 ? errno : 0;
  close(fd);
  return Napi::Number::New(env, -err);
}

void InitNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("notifySend", Napi::Function::New(env, NotifySend));
}

}  // namespace meshd
