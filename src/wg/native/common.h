// Shared helpers of the meshd addon: typed-array access and errno errors.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstring>
#include <string>

namespace meshd {

// Throws a JS Error carrying `code` (e.g. "EPERM") and the errno text.
inline Napi::Value ThrowErrno(Napi::Env env, const char* what, int err) {
  std::string msg = std::string(what) + ": " + strerror(err);
  Napi::Error e = Napi::Error::New(env, msg);
  const char* code = nullptr;
  switch (err) {
    case EPERM: code = "EPERM"; break;
    case EACCES: code = "EACCES"; break;
    case ENOENT: code = "ENOENT"; break;
    case EBUSY: code = "EBUSY"; break;
    case EADDRINUSE: code = "EADDRINUSE"; break;
    case EINVAL: code = "EINVAL"; break;
    case ENODEV: code = "ENODEV"; break;
    default: break;
  }
  if (code) e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, err));
  e.ThrowAsJavaScriptException();
  return env.Undefined();
}

template <typename T>
struct Typed {
  T* data;
  size_t length;
};

inline Typed<uint8_t> Bytes(const Napi::Value& v) {
  auto b = v.As<Napi::Buffer<uint8_t>>();
  return {b.Data(), b.Length()};
}

template <typename T>
inline Typed<T> Array(const Napi::Value& v) {
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), a.ElementLength()};
}

void InitTun(Napi::Env env, Napi::Object exports);
void InitUdp(Napi::Env env, Napi::Object exports);
void InitAead(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports);

}  // namespace meshd
