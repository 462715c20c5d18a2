/* SPDX-License-Identifier: Apache-2.0 */
/* Everything generated from hooks.def: exported wrappers with their
 * prologue, the row table, the real-function pointers and the lookups used
 * by dlsym and cuGetProcAddress. */
#include "handlers.h"
#include "hook.h"
#include "narrow.h"

/* Exported wrappers: the only symbols libgpucap.so exports besides dlsym. */
#define HOOK(lib, name, ret, params, args, handler) GPUCAP_EXPORT ret name params;
#include "hooks.def"
#undef HOOK

/* What a wrapper answers when it cannot reach the real function. */
#define NOT_READY_CUDA CUDA_ERROR_NOT_INITIALIZED
#define NOT_READY_NVML NVML_ERROR_UNINITIALIZED
#define NOT_FOUND_CUDA CUDA_ERROR_NOT_FOUND
#define NOT_FOUND_NVML NVML_ERROR_FUNCTION_NOT_FOUND

/* The prologue of every wrapper: initialise (the real table is filled
 * then); from inside the initialisation itself, pass straight to the
 * driver; a name the real library lacks is "not found". */
#define PROLOGUE(lib, name, args)                                                                            \
	if (__builtin_expect(!gpucap_ensure_init(), 0)) {                                                    \
		gpucap_fn_##name early = (gpucap_fn_##name)gpucap_real[GPUCAP_ID_##name];                    \
		return early ? early args : NOT_READY_##lib;                                                 \
	}                                                                                                    \
	if (__builtin_expect(!gpucap_real[GPUCAP_ID_##name], 0))                                             \
		return NOT_FOUND_##lib;

#define HOOK(lib, name, ret, params, args, handler)                                                          \
	ret name params                                                                                      \
	{                                                                                                    \
		PROLOGUE(lib, name, args)                                                                    \
		return handler((gpucap_fn_##name)gpucap_real[GPUCAP_ID_##name], GPUCAP_UNPAREN args);        \
	}
/* A 32-bit form: the shim narrows again for its own real function, the
 * wrapper widens for the native handler (narrow.h). */
#define NARROW(lib, name, ret, params, args, wide, handler, ...)                                             \
	static ret narrow_shim_##name(NARROW_LIST(NARROW_SHIM_PARAM, __VA_ARGS__))                           \
	{                                                                                                    \
		gpucap_fn_##name real = (gpucap_fn_##name)gpucap_real[GPUCAP_ID_##name];                     \
		NARROW_EACH(NARROW_SHIM_DECL, __VA_ARGS__)                                                   \
		ret r = real(NARROW_LIST(NARROW_SHIM_ARG, __VA_ARGS__));                                     \
		NARROW_EACH(NARROW_SHIM_BACK, __VA_ARGS__)                                                   \
		return r;                                                                                    \
	}                                                                                                    \
	ret name params                                                                                      \
	{                                                                                                    \
		PROLOGUE(lib, name, args)                                                                    \
		NARROW_EACH(NARROW_ADAPT_DECL, __VA_ARGS__)                                                  \
		ret r = handler(narrow_shim_##name, NARROW_LIST(NARROW_ADAPT_ARG, __VA_ARGS__));             \
		NARROW_EACH(NARROW_ADAPT_BACK, __VA_ARGS__)                                                  \
		return r;                                                                                    \
	}
#include "hooks.def"
#undef NARROW
#undef HOOK

const struct gpucap_hook_info gpucap_hooks[GPUCAP_HOOK_COUNT] = {
#define HOOK(lib, name, ret, params, args, handler)                                                          \
	[GPUCAP_ID_##name] = {#name, GPUCAP_LIB_##lib, (void *)name},
#include "hooks.def"
#undef HOOK
};

void *gpucap_real[GPUCAP_HOOK_COUNT];
