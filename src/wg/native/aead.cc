// Batched ChaCha20-Poly1305 (RFC 8439) with OpenSSL's EVP, whose symbols this node binary
// exports. One cipher context per direction, re-keyed per packet; no allocation per packet.
#include "common.h"
#include <openssl/evp.h>

namespace meshd {

static EVP_CIPHER_CTX* sealCtx;
static EVP_CIPHER_CTX* openCtx;

static void Nonce(uint64_t counter, uint8_t out[12]) {
  memset(out, 0, 4);
  for (int i = 0; i < 8; i++) out[4 + i] = (uint8_t)(counter >> (8 * i));
}

// sealBatch(data, slotSize, offset, length, keys, counters, count)
static Napi::Value SealBatch(const Napi::CallbackInfo& info) {
  auto data = Bytes(info[0]);
  size_t slot = info[1].As<Napi::Number>().Uint32Value();
  auto offset = Array<int32_t>(info[2]);
  auto length = Array<int32_t>(info[3]);
  auto keys = Bytes(info[4]);
  auto counters = Array<uint64_t>(info[5]);
  size_t count = info[6].As<Napi::Number>().Uint32Value();
  uint8_t nonce[12];
  for (size_t i = 0; i < count && i < length.length && i < counters.length && (i + 1) * 32 <= keys.length; i++) {
    int32_t len = length.data[i];
    if (len < 0) continue;
    size_t start = i * slot + offset.data[i];
    if (start + len + 16 > data.length) { length.data[i] = -1; continue; }
    uint8_t* p = data.data + start;
    Nonce(counters.data[i], nonce);
    int outl = 0;
    if (EVP_EncryptInit_ex(sealCtx, nullptr, nullptr, keys.data + i * 32, nonce) != 1 ||
        EVP_EncryptUpdate(sealCtx, p, &outl, p, len) != 1 ||
        EVP_EncryptFinal_ex(sealCtx, p + outl, &outl) != 1 ||
        EVP_CIPHER_CTX_ctrl(sealCtx, EVP_CTRL_AEAD_GET_TAG, 16, p + len) != 1) {
      length.data[i] = -1;
    }
  }
  return info.Env().Undefined();
}

// openBatch(data, slotSize, offset, length, keys, counters, ok, count)
static Napi::Value OpenBatch(const Napi::CallbackInfo& info) {
  auto data = Bytes(info[0]);
  size_t slot = info[1].As<Napi::Number>().Uint32Value();
  auto offset = Array<int32_t>(info[2]);
  auto length = Array<int32_t>(info[3]);
  auto keys = Bytes(info[4]);
  auto counters = Array<uint64_t>(info[5]);
  auto ok = Array<uint8_t>(info[6]);
  size_t count = info[7].As<Napi::Number>().Uint32Value();
  uint8_t nonce[12];
  for (size_t i = 0; i < count && i < length.length && i < ok.length && i < counters.length && (i + 1) * 32 <= keys.length; i++) {
    ok.data[i] = 0;
    int32_t len = length.data[i];
    if (len < 16) continue;
    size_t start = i * slot + offset.data[i];
    if (start + len > data.length) continue;
    uint8_t* p = data.data + start;
    int body = len - 16;
    Nonce(counters.data[i], nonce);
    int outl = 0;
    if (EVP_DecryptInit_ex(openCtx, nullptr, nullptr, keys.data + i * 32, nonce) != 1 ||
        EVP_DecryptUpdate(openCtx, p, &outl, p, body) != 1 ||
        EVP_CIPHER_CTX_ctrl(openCtx, EVP_CTRL_AEAD_SET_TAG, 16, p + body) != 1) {
      continue;
    }
    if (EVP_DecryptFinal_ex(openCtx, p + outl, &outl) == 1) ok.data[i] = 1;
  }
  return info.Env().Undefined();
}

void InitAead(Napi::Env env, Napi::Object exports) {
  sealCtx = EVP_CIPHER_CTX_new();
  openCtx = EVP_CIPHER_CTX_new();
  EVP_EncryptInit_ex(sealCtx, EVP_chacha20_poly1305(), nullptr, nullptr, nullptr);
  EVP_DecryptInit_ex(openCtx, EVP_chacha20_poly1305(), nullptr, nullptr, nullptr);
  exports.Set("sealBatch", Napi::Function::New(env, SealBatch));
  exports.Set("openBatch", Napi::Function::New(env, OpenBatch));
}

}  // namespace meshd
