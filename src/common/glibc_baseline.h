/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Forced into every file of libgpucap.so (see the top-level CMakeLists.txt):
 * binds the glibc functions that newer glibc releases gave new symbol
 * versions (dl* and pthread_* moved into libc in 2.34) to their original
 * versions, so the library built on a new distribution still loads into
 * containers with an old glibc. A preload library that fails to load is
 * skipped with a warning and leaves the process uncapped.
 *
 * Only assembler directives here: it is included before each file's own
 * feature macros, so it must not include any header.
 * dlsym is left out: libgpucap.so defines its own (the hook route).
 * tests/abi/glibc_baseline.sh checks the built library against the baseline.
 * The stat family moved too (2.33); src/common/file_stat.h covers it.
 */
#ifndef GPUCAP_COMMON_GLIBC_BASELINE_H
#define GPUCAP_COMMON_GLIBC_BASELINE_H

/* GPUCAP_BIND_BASE(name, x86-64 version): aarch64's first glibc is 2.17,
 * so every function there has that version. */
#if defined(__x86_64__)
#define GPUCAP_BIND_BASE(name, x86_64_version) __asm__(".symver " #name "," #name "@" x86_64_version)
#elif defined(__aarch64__)
#define GPUCAP_BIND_BASE(name, x86_64_version) __asm__(".symver " #name "," #name "@GLIBC_2.17")
#endif

#ifdef GPUCAP_BIND_BASE
GPUCAP_BIND_BASE(dlopen, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(dlclose, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(dlerror, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(dlvsym, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(dladdr, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_create, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_join, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_detach, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_mutex_trylock, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_key_create, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_key_delete, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_getspecific, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_setspecific, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_once, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_kill, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_attr_setstacksize, "GLIBC_2.2.5");
GPUCAP_BIND_BASE(pthread_setname_np, "GLIBC_2.12");
GPUCAP_BIND_BASE(pthread_sigmask, "GLIBC_2.2.5");
#undef GPUCAP_BIND_BASE
#endif

#endif
