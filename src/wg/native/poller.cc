// Poller: tells JavaScript when an fd is readable, through libuv's uv_poll on the main loop, so
// TUN and UDP batches are drained on the event loop without threads or busy polling.
#include "common.h"
#include <sys/socket.h>
#include <uv.h>

namespace meshd {

class Poller : public Napi::ObjectWrap<Poller> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Poller", {
      InstanceMethod("start", &Poller::Start),
      InstanceMethod("stop", &Poller::Stop),
      InstanceMethod("close", &Poller::Close),
    });
  }

  explicit Poller(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Poller>(info) {
    fd_ = info[0].As<Napi::Number>().Int32Value();
    callback_ = Napi::Persistent(info[1].As<Napi::Function>());
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(info.Env(), &loop);
    handle_ = new uv_poll_t;
    if (uv_poll_init(loop, handle_, fd_) != 0) {
      delete handle_;
      handle_ = nullptr;
      Napi::Error::New(info.Env(), "uv_poll_init failed").ThrowAsJavaScriptException();
      return;
    }
    handle_->data = this;
  }

  ~Poller() override { CloseHandle(); }

 private:
  static void OnEvent(uv_poll_t* h, int status, int /*events*/) {
    Poller* self = static_cast<Poller*>(h->data);
    if (self == nullptr) return;
    if (status < 0) {
      // libuv stops watching after an error (an ICMP error queued on a UDP socket shows up as
      // one): clear the socket error and watch again, so one unreachable peer never stops us.
      int err = 0;
      socklen_t l = sizeof err;
      getsockopt(self->fd_, SOL_SOCKET, SO_ERROR, &err, &l);
      if (self->active_) uv_poll_start(h, UV_READABLE, OnEvent);
    }
    Napi::Env env = self->Env();
    Napi::HandleScope scope(env);
    // The receiver must be a real object: napi_make_callback with undefined fails silently.
    self->callback_.MakeCallback(self->Value(), {Napi::Number::New(env, status)});
  }

  Napi::Value Start(const Napi::CallbackInfo& info) {
    if (handle_ && !active_) {
      active_ = true;
      Ref();  // a watched poller must not be collected
      uv_poll_start(handle_, UV_READABLE, OnEvent);
    }
    return info.Env().Undefined();
  }

  Napi::Value Stop(const Napi::CallbackInfo& info) {
    if (handle_ && active_) {
      active_ = false;
      uv_poll_stop(handle_);
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Stop(info);
    CloseHandle();
    return info.Env().Undefined();
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
