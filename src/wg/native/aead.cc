// Batched ChaCha20-Poly1305 (RFC 8439) with OpenSSL's EVP, whose symbols this node binary
// exports. One cipher context per direction, re-keyed per packet; no allocation per packet.
// The contexts belong to the JavaScript environment that loaded the addon (each worker thread
// gets its own), handed to the functions as their data and freed when that environment ends.
#include "common.h"
#include <openssl/evp.h>

namespace meshd {

namespace {

struct AeadContexts {
  EVP_CIPHER_CTX* seal = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* open = EVP_CIPHER_CTX_new();
  ~AeadContexts() {
    EVP_CIPHER_CTX_free(seal);
    EVP_CIPHER_CTX_free(open);
  }
  // Fixes the cipher once; each packet then only sets key and nonce.
  bool Init() {
    return seal && open && EVP_EncryptInit_ex(seal, EVP_chacha20_poly1305(), nullptr, nullptr, nullptr) == 1 &&
           EVP_DecryptInit_ex(open, EVP_chacha20_poly1305(), nullptr, nullptr, nullptr) == 1;
  }
};

}  // namespace

// WireGuard's nonce: 4 zero bytes, then the 64-bit little-endian counter from the header.
static void Nonce(const uint8_t* slotStart, uint8_t out[12]) {
  memset(out, 0, 4);
  memcpy(out + 4, slotStart + 8, 8);
}

// sealBatch(data, slotSize, offset, length, keys, count): the nonce's counter is the transport
// header's, at bytes 8..16 of each slot (little-endian), so no counter array crosses over.
static Napi::Value SealBatch(const Napi::CallbackInfo& info) {
  EVP_CIPHER_CTX* ctx = static_cast<AeadContexts*>(info.Data())->seal;
  Slots s = SlotArgs(info, 0);
  auto keys = Bytes(info[4]);
  size_t count = info[5].As<Napi::Number>().Uint32Value();
  uint8_t nonce[12];
  for (size_t i = 0; s.slot >= 16 && i < count && i < s.Count() && (i + 1) * 32 <= keys.length; i++) {
    int32_t len = s.length.data[i];
    if (len < 0) continue;
    uint8_t* p = s.Packet(i, 16);
    if (p == nullptr) { s.length.data[i] = -1; continue; }
    Nonce(s.data.data + i * s.slot, nonce);
    int outl = 0;
    if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, keys.data + i * 32, nonce) != 1 ||
        EVP_EncryptUpdate(ctx, p, &outl, p, len) != 1 ||
        EVP_EncryptFinal_ex(ctx, p + outl, &outl) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, p + len) != 1) {
      s.length.data[i] = -1;
    }
  }
  return info.Env().Undefined();
}

// openBatch(data, slotSize, offset, length, keys, ok, count)
static Napi::Value OpenBatch(const Napi::CallbackInfo& info) {
  EVP_CIPHER_CTX* ctx = static_cast<AeadContexts*>(info.Data())->open;
  Slots s = SlotArgs(info, 0);
  auto keys = Bytes(info[4]);
  auto ok = Array<uint8_t>(info[5]);
  size_t count = info[6].As<Napi::Number>().Uint32Value();
  uint8_t nonce[12];
  for (size_t i = 0; s.slot >= 16 && i < count && i < s.Count() && i < ok.length && (i + 1) * 32 <= keys.length; i++) {
    ok.data[i] = 0;
    int32_t len = s.length.data[i];
    uint8_t* p = len < 16 ? nullptr : s.Packet(i);
    if (p == nullptr) continue;
    int body = len - 16;
    Nonce(s.data.data + i * s.slot, nonce);
    int outl = 0;
    if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, keys.data + i * 32, nonce) != 1 ||
        EVP_DecryptUpdate(ctx, p, &outl, p, body) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, p + body) != 1) {
      continue;
    }
    if (EVP_DecryptFinal_ex(ctx, p + outl, &outl) == 1) ok.data[i] = 1;
  }
  return info.Env().Undefined();
}

void InitAead(Napi::Env env, Napi::Object exports) {
  auto* contexts = new AeadContexts();
  if (!contexts->Init()) {
    delete contexts;
    Napi::Error::New(env, "OpenSSL ChaCha20-Poly1305 is unavailable").ThrowAsJavaScriptException();
    return;
  }
  env.AddCleanupHook([contexts]() { delete contexts; });
  exports.Set("sealBatch", Napi::Function::New(env, SealBatch, "sealBatch", contexts));
  exports.Set("openBatch", Napi::Function::New(env, OpenBatch, "openBatch", contexts));
}

}  // namespace meshd
