// malloc_trim(3): hands the C heap's free pages back to the kernel. After a burst (joins, a sync
// storm) glibc keeps the pages that libp2p's buffers, OpenSSL and LevelDB freed, in the middle of
// its arenas, where only malloc_trim releases them: about 3-9 MB of an idle daemon's RSS, measured
// with gdb in bench/mesh.sh at 20 members. src/daemon/memory-upkeep.ts calls it now and then.
#include "common.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace meshd {

// trimMemory() -> true if memory went back to the kernel; false if none did (or not glibc).
static Napi::Value TrimMemory(const Napi::CallbackInfo& info) {
#if defined(__GLIBC__)
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

void InitMemory(Napi::Env env, Napi::Object exports) {
  exports.Set("trimMemory", Napi::Function::New(env, TrimMemory));
}

}  // namespace meshd
