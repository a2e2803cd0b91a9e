// Shim for libLibTorchSharp.so (TorchSharp 0.107.0) on systems whose libstdc++ predates GCC 13.
// GCC 13's <iostream> makes every including object reference std::ios_base_library_init()
// (GLIBCXX_3.4.32) merely to pull in the library's stream initialisation. GCC 12's libstdc++
// (GLIBCXX_3.4.30) initialises the standard streams itself, so a no-op definition is enough.
// Built and linked in by scripts/patch-libtorchsharp.sh.
namespace std { void ios_base_library_init() {} }
