/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The seam to the real CUDA driver and NVML: where the real libraries are,
 * how they are opened, and how a symbol is looked up without going through
 * gpucap's own dlsym.
 */
#ifndef GPUCAP_DRIVER_DRIVER_H
#define GPUCAP_DRIVER_DRIVER_H

#include "cuda_abi.h"

#include <stdbool.h>

enum gpucap_lib {
	GPUCAP_LIB_CUDA = 0,
	GPUCAP_LIB_NVML = 1,
	GPUCAP_LIB_COUNT = 2,
};

/* Code that may run before a sanitizer runtime is ready. */
#define GPUCAP_NO_SANITIZE __attribute__((no_sanitize("address", "thread", "undefined")))

/* glibc's own dlsym, found with dlvsym so that gpucap can interpose dlsym
 * without recursion and without private symbols. NULL only if glibc
 * offers neither known version. Safe to call at any time, from any thread. */
void *gpucap_real_dlsym(void *handle, const char *symbol);

/* The address of glibc's dlsym (resolving it on first use), or NULL. */
void *gpucap_real_dlsym_resolve(void);

/* Open the real library (once; later calls return the same handle). The
 * path comes from GPUCAP_REAL_LIBCUDA / GPUCAP_REAL_LIBNVML when set,
 * otherwise libcuda.so.1 / libnvidia-ml.so.1. Returns NULL when the library
 * cannot be loaded; the reason is kept for gpucap_driver_error. */
void *gpucap_driver_open(enum gpucap_lib lib);

/* A symbol of the real library, or NULL. Opens the library if needed. */
void *gpucap_driver_symbol(enum gpucap_lib lib, const char *name);

/* Why the last open of lib failed ("" when it did not). */
const char *gpucap_driver_error(enum gpucap_lib lib);

/* The library's name as reported in messages. */
const char *gpucap_driver_name(enum gpucap_lib lib);

#endif
