// Shared helpers of the meshd addon: typed-array access and errno errors.
#pragma once
#include <napi.h>
#include <cerrno>
#include <cstring>
#include <string>

namespace meshd {

// Throws a JS Error whose message names the operation and the errno text, with `code` set to
// the errno's name ("EPERM", "EADDRINUSE"...) and `errno` to its number, like node's own errors.
inline Napi::Value ThrowErrno(Napi::Env env, const char* what, int err) {
  Napi::Error e = Napi::Error::New(env, std::string(what) + ": " + strerror(err));
  const char* code = strerrorname_np(err);
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
void InitIcmp(Napi::Env env, Napi::Object exports);

}  // namespace meshd
