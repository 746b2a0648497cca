/* Force-included into llama.cpp's C++ sources when llama-cpp-python is built (the Makefile's CMAKE_ARGS).

   GCC 12 (Debian 12's) declares `_tile_loadconfig` as reading only 8 bytes of the 64-byte AMX tile configuration,
   so the stores of its rows and column widths are removed as dead and `ldtilecfg` faults on a garbage
   configuration: llama.cpp's AMX kernels then crash (SIGSEGV) on the first prompt. This makes the
   instruction read all 64 bytes. Without AMX, or with another compiler, it changes nothing. */
#if defined(__cplusplus) && defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#undef _tile_loadconfig
#define _tile_loadconfig(config) __asm__ volatile("ldtilecfg %0" ::"m"(*(const char(*)[64])(config)))
#endif
