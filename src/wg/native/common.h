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

// A packet batch as batch.ts lays it out: slot i of `data` (slotSize bytes) holds packet i at
// offset[i], length[i] bytes long. Taken from four consecutive arguments: data, slotSize,
// offset, length.
struct Slots {
  Typed<uint8_t> data;
  size_t slot;
  Typed<int32_t> offset;
  Typed<int32_t> length;

  // How many slots every array covers.
  size_t Count() const {
    size_t n = offset.length < length.length ? offset.length : length.length;
    size_t whole = slot == 0 ? 0 : data.length / slot;
    return n < whole ? n : whole;
  }

  // Packet i, if it and `extra` bytes after it (room for a tag) lie inside the buffer; nullptr
  // for a negative length or offset, or a packet that would run past the end.
  uint8_t* Packet(size_t i, size_t extra = 0) const {
    int32_t len = length.data[i];
    int32_t off = offset.data[i];
    if (len < 0 || off < 0) return nullptr;
    size_t start = i * slot + (size_t)off;
    if (start + (size_t)len + extra > data.length) return nullptr;
    return data.data + start;
  }
};

inline Slots SlotArgs(const Napi::CallbackInfo& info, size_t at) {
  return {Bytes(info[at]), info[at + 1].As<Napi::Number>().Uint32Value(), Array<int32_t>(info[at + 2]),
          Array<int32_t>(info[at + 3])};
}

void InitTun(Napi::Env env, Napi::Object exports);
void InitUdp(Napi::Env env, Napi::Object exports);
void InitAead(Napi::Env env, Napi::Object exports);
void InitMac(Napi::Env env, Napi::Object exports);
void InitPoller(Napi::Env env, Napi::Object exports);
void InitIcmp(Napi::Env env, Napi::Object exports);
void InitNotify(Napi::Env env, Napi::Object exports);
void InitMemory(Napi::Env env, Napi::Object exports);

}  // namespace meshd
