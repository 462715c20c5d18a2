/* Everything generated from hooks.def: exported wrappers, the row table, the
 * real-function pointers and the lookups used by dlsym and cuGetProcAddress. */
#include "hook.h"

#include <string.h>

/* Exported wrappers: the only symbols libgpucap.so exports besides dlsym. */
#define HOOK(lib, name, ret, params, args, handler) GPUCAP_EXPORT ret name params;
#define REAL(lib, name, ret, params)
#include "hooks.def"
#undef HOOK
#undef REAL

#define HOOK(lib, name, ret, params, args, handler)                                                          \
	ret name params                                                                                      \
	{                                                                                                    \
		return handler(GPUCAP_ID_##name, GPUCAP_UNPAREN args);                                       \
	}
#define REAL(lib, name, ret, params)
#include "hooks.def"
#undef HOOK
#undef REAL

const struct gpucap_hook_info gpucap_hooks[GPUCAP_ID_COUNT] = {
#define HOOK(lib, name, ret, params, args, handler)                                                          \
	[GPUCAP_ID_##name] = {#name, GPUCAP_LIB_##lib, (void *)name},
#define REAL(lib, name, ret, params) [GPUCAP_ID_##name] = {#name, GPUCAP_LIB_##lib, NULL},
#include "hooks.def"
#undef HOOK
#undef REAL
};

void *gpucap_real[GPUCAP_ID_COUNT];

int gpucap_hook_find(const char *symbol)
{
	if (!symbol || symbol[0] == '\0')
		return -1;
	for (int i = 0; i < GPUCAP_HOOK_COUNT; i++)
		if (strcmp(gpucap_hooks[i].name, symbol) == 0)
			return i;
	return -1;
}

void *gpucap_wrapper_for_real(void *real)
{
	if (!real)
		return NULL;
	for (int i = 0; i < GPUCAP_HOOK_COUNT; i++)
		if (gpucap_real[i] == real)
			return gpucap_hooks[i].wrapper;
	return NULL;
}

void gpucap_resolve_real(void)
{
	for (int i = 0; i < GPUCAP_ID_COUNT; i++) {
		void *fn = gpucap_driver_symbol(gpucap_hooks[i].lib, gpucap_hooks[i].name);
		/* A real library that is itself preloaded could hand back our own
		 * wrapper; never call ourselves. */
		for (int j = 0; j < GPUCAP_HOOK_COUNT && fn; j++)
			if (fn == gpucap_hooks[j].wrapper)
				fn = NULL;
		gpucap_real[i] = fn;
	}
}
