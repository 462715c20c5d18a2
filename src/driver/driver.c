/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "driver.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void *(*dlsym_fn)(void *, const char *);

/* glibc's dlsym once found. Read by the dlsym entry stub in src/hook. */
_Atomic(void *) gpucap_real_dlsym_slot;

/* The versions glibc has published dlsym under on the platforms we support:
 * 2.34 moved it into libc proper, 2.2.5 is the x86-64 baseline, 2.17 the
 * aarch64 one. Never a GLIBC_PRIVATE symbol. */
static const char *const dlsym_versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17"};

/* May run before a sanitizer runtime has initialised (it looks its own
 * functions up through dlsym), so it stays uninstrumented and calls only
 * dlvsym. */
GPUCAP_NO_SANITIZE void *gpucap_real_dlsym_resolve(void)
{
	void *p = atomic_load_explicit(&gpucap_real_dlsym_slot, memory_order_acquire);
	for (size_t i = 0; !p && i < sizeof(dlsym_versions) / sizeof(dlsym_versions[0]); i++)
		p = dlvsym(RTLD_NEXT, "dlsym", dlsym_versions[i]);
	if (p)
		atomic_store_explicit(&gpucap_real_dlsym_slot, p, memory_order_release);
	return p;
}

GPUCAP_NO_SANITIZE void *gpucap_real_dlsym(void *handle, const char *symbol)
{
	union {
		void *object;
		dlsym_fn function;
	} fn;
	fn.object = gpucap_real_dlsym_resolve();
	return fn.object ? fn.function(handle, symbol) : NULL;
}

struct lib_state {
	const char *override_env;
	const char *default_name;
	_Atomic(void *) handle;
	char error[512];
};

static struct lib_state libs[GPUCAP_LIB_COUNT] = {
    {"GPUCAP_REAL_LIBCUDA", "libcuda.so.1", NULL, ""},
    {"GPUCAP_REAL_LIBNVML", "libnvidia-ml.so.1", NULL, ""},
};

void *gpucap_driver_open(enum gpucap_lib lib)
{
	struct lib_state *state = &libs[lib];
	void *handle = atomic_load_explicit(&state->handle, memory_order_acquire);
	if (handle)
		return handle;
	/* Not honoured in set-user-ID programs: a path from the environment
	 * must not choose code that runs with raised privileges. */
	const char *path = secure_getenv(state->override_env);
	if (!path || !*path)
		path = state->default_name;
	/* Two threads may race here; dlopen hands both the same handle. */
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!handle) {
		const char *why = dlerror();
		snprintf(state->error, sizeof(state->error), "cannot load %s: %s", path,
		         why ? why : "unknown error");
		return NULL;
	}
	atomic_store_explicit(&state->handle, handle, memory_order_release);
	return handle;
}

void *gpucap_driver_symbol(enum gpucap_lib lib, const char *name)
{
	void *handle = gpucap_driver_open(lib);
	if (!handle)
		return NULL;
	return gpucap_real_dlsym(handle, name);
}

const char *gpucap_driver_error(enum gpucap_lib lib)
{
	return libs[lib].error;
}

const char *gpucap_driver_name(enum gpucap_lib lib)
{
	return libs[lib].default_name;
}
