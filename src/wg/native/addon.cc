// meshd's native addon: the thin layer for what JavaScript cannot do quickly. No WireGuard logic
// lives here: TUN I/O, batched UDP (recvmmsg/sendmmsg), batched ChaCha20-Poly1305, keyed BLAKE2s, fd readiness,
// ICMP echo for the daemon's latency probes, and sd_notify datagrams to the service manager.
#include "common.h"
#include <unistd.h>

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd >= 0) close(fd);
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  meshd::InitTun(env, exports);
  meshd::InitUdp(env, exports);
  meshd::InitAead(env, exports);
  meshd::InitMac(env, exports);
  meshd::InitPoller(env, exports);
  meshd::InitIcmp(env, exports);
  meshd::InitNotify(env, exports);
  meshd::InitMemory(env, exports);
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  return exports;
}

NODE_API_MODULE(meshd_native, Init)
