// Keyed BLAKE2s, WireGuard's MAC (mac1, mac2, cookies: paper section 5.4), with OpenSSL's EVP_MAC
// "BLAKE2SMAC", whose symbols this node binary exports. Every handshake message that reaches the
// device costs one of these before anything else is done with it, so under a flood it is the hot
// path: here it costs about a microsecond, in JavaScript about ten. One context per JavaScript
// environment, handed to the function as its data and freed when that environment ends.
#include "common.h"
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

namespace meshd {

namespace {

struct MacContext {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "BLAKE2SMAC", nullptr);
  EVP_MAC_CTX* ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
  ~MacContext() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
};

// blake2sMac(key, input, out): BLAKE2s keyed with `key` (1-32 bytes) over `input`, out.length
// bytes (1-32) of it written to `out`. All three are Uint8Arrays. Throws a RangeError for sizes
// outside those bounds; false if OpenSSL refused (never seen), true otherwise.
Napi::Value Blake2sMac(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* m = static_cast<MacContext*>(info.Data());
  if (info.Length() < 3 || !info[0].IsTypedArray() || !info[1].IsTypedArray() || !info[2].IsTypedArray()) {
    Napi::TypeError::New(env, "blake2sMac(key, input, out): Uint8Arrays").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  auto key = Array<uint8_t>(info[0]);
  auto in = Array<uint8_t>(info[1]);
  auto out = Array<uint8_t>(info[2]);
  size_t size = out.length;
  if (key.length == 0 || key.length > 32 || size == 0 || size > 32) {
    Napi::RangeError::New(env, "blake2sMac: key and output must be 1-32 bytes").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  OSSL_PARAM params[2] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size), OSSL_PARAM_construct_end()};
  size_t written = 0;
  bool ok = EVP_MAC_init(m->ctx, key.data, key.length, params) == 1 &&
            EVP_MAC_update(m->ctx, in.data, in.length) == 1 &&
            EVP_MAC_final(m->ctx, out.data, &written, size) == 1 && written == size;
  return Napi::Boolean::New(env, ok);
}

}  // namespace

void InitMac(Napi::Env env, Napi::Object exports) {
  auto* context = new MacContext();
  if (context->ctx == nullptr) {
    delete context;
    Napi::Error::New(env, "OpenSSL BLAKE2SMAC is unavailable").ThrowAsJavaScriptException();
    return;
  }
  env.AddCleanupHook([context]() { delete context; });
  exports.Set("blake2sMac", Napi::Function::New(env, Blake2sMac, "blake2sMac", context));
}

}  // namespace meshd
