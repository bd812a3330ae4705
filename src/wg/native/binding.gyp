{
  "targets": [{
    "target_name": "meshd_native",
    "sources": ["addon.cc", "tun.cc", "udp.cc", "aead.cc", "mac.cc", "poller.cc", "icmp.cc", "notify.cc", "memory.cc"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
    "cflags_cc": ["-O2", "-std=c++17", "-Wall"]
  }]
}
