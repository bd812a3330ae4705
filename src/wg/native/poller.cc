// Poller: tells JavaScript when an fd is readable, through libuv's uv_poll on the main loop, so
// TUN and UDP batches are drained on the event loop without threads or busy polling. An active
// poller keeps the loop alive (the daemon lives while it has a TUN); a stopped or closed one not.
#include "common.h"
#include <sys/socket.h>
#include <uv.h>

namespace meshd {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller", {
      InstanceMethod<&Poller::Start>("start"),
      InstanceMethod<&Poller::Stop>("stop"),
      InstanceMethod<&Poller::Close>("close"),
    });
  }

  // new Poller(fd, onEvent): onEvent(status) runs with this poller as receiver; status < 0 is a
  // libuv error (the fd reported POLLERR).
  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    Napi::Env env = info.Env();
    fd_ = info[0].As<Napi::Number>().Int32Value();
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr) {
      Napi::Error::New(env, "Poller: no event loop").ThrowAsJavaScriptException();
      return;
    }
    handle_ = new uv_poll_t;
    int r = uv_poll_init(loop, handle_, fd_);
    if (r != 0) {
      delete handle_;
      handle_ = nullptr;
      Napi::Error::New(env, std::string("uv_poll_init: ") + uv_strerror(r)).ThrowAsJavaScriptException();
      return;
    }
    handle_->data = this;
  }

  ~Poller() override { CloseHandle(); }

 private:
  static void OnEvent(uv_poll_t* h, int status, int /*events*/) {
    Poller* self = static_cast<Poller*>(h->data);
    if (self == nullptr) return;
    if (status < 0) self->Recover();
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // The receiver must be a real object: napi_make_callback with undefined fails silently.
    self->callback_.MakeCallback(self->Value(), {Napi::Number::New(env, status)});
    // We are called from libuv, with no JavaScript below us: a throw in the callback would stay
    // pending and surface in whatever addon call comes next. Report it as node does for any event
    // handler: an 'uncaughtException'.
    if (env.IsExceptionPending()) {
      Napi::Error err = env.GetAndClearPendingException();
      napi_fatal_exception(env, err.Value());
    }
  }

  // libuv stops watching an fd after an error. On a socket that error is a queued ICMP error
  // (port unreachable...): clear SO_ERROR and watch again, so one unreachable peer never stops the
  // reader. Anything else (a TUN whose interface was deleted reports POLLERR forever) stays
  // stopped: re-arming would spin.
  void Recover() {
    int err = 0;
    socklen_t len = sizeof err;
    if (active_ && getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
        uv_poll_start(handle_, UV_READABLE, OnEvent) == 0) {
      return;
    }
    if (active_) {
      active_ = false;
      Unref();
    }
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (handle_ && !active_) {
      int r = uv_poll_start(handle_, UV_READABLE, OnEvent);
      if (r != 0) {
        Napi::Error::New(info.Env(), std::string("uv_poll_start: ") + uv_strerror(r)).ThrowAsJavaScriptException();
        return info.Env().Undefined();
      }
      active_ = true;
      Ref();  // a watched poller must not be collected
    }
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    StopWatching();
    return info.Env().Undefined();
  }

  // Stops watching at once (libuv removes the fd from epoll synchronously), so the caller may close
  // the fd right after; the handle itself is freed on a later loop iteration.
  Napi::Value Close(const Napi::CallbackInfo& info) {
    StopWatching();
    CloseHandle();
    return info.Env().Undefined();
  }

  void StopWatching() {
    if (handle_ && active_) {
      active_ = false;
      uv_poll_stop(handle_);
      Unref();
    }
  }

  void CloseHandle() {
    if (!handle_) return;
    handle_->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(handle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
    handle_ = nullptr;
  }

  int fd_ = -1;
  bool active_ = false;
  uv_poll_t* handle_ = nullptr;
  Napi::FunctionReference callback_;
};

void InitPoller(Napi::Env env, Napi::Object exports) {
  exports.Set("Poller", Poller::Define(env));
}

}  // namespace meshd
