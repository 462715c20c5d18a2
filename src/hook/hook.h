/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Internal interface of the interception layer: the generated hook table
 * (hooks.def), the initialisation state, and the process's settings and
 * region.
 */
#ifndef GPUCAP_HOOK_H
#define GPUCAP_HOOK_H

#include "config.h"
#include "cuda_abi.h"
#include "driver.h"
#include "gpucap/region.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define GPUCAP_EXPORT       __attribute__((visibility("default")))
#define GPUCAP_UNPAREN(...) __VA_ARGS__

/* ---- The generated table (hooks.def) ------------------------------------ */

enum gpucap_hook_id {
#define HOOK(lib, name, ret, params, args, handler) GPUCAP_ID_##name,
#include "hooks.def"
#undef HOOK
	GPUCAP_HOOK_COUNT
};

/* One function-pointer type per row: gpucap_fn_<name>. */
#define HOOK(lib, name, ret, params, args, handler) typedef ret(*gpucap_fn_##name) params;
#include "hooks.def"
#undef HOOK

struct gpucap_hook_info {
	const char *name;
	enum gpucap_lib lib;
	void *wrapper;
};

extern const struct gpucap_hook_info gpucap_hooks[GPUCAP_HOOK_COUNT];

/* Real functions of the rows, filled once by the init (NULL when the real
 * library lacks the name). Written before the init publishes READY;
 * read-only after. */
extern void *gpucap_real[GPUCAP_HOOK_COUNT];

/* The row whose name is symbol, or -1 (routes.c). */
int gpucap_hook_find(const char *symbol);
/* The wrapper to hand out for a real function pointer, or NULL (routes.c). */
void *gpucap_wrapper_for_real(void *real);

/* ---- Process state (init.c) ------------------------------------------------ */

struct gpucap_state {
	struct gpucap_config config;
	/* NULL: every device fails closed. Set at initialisation, or later,
	 * once, by an attach tried again (attach.c, a release store). */
	_Atomic(gpucap_region *) region;
};

extern struct gpucap_state gpucap;

/* ---- The region (attach.c) ------------------------------------------------- */

/* Attach the region at initialisation (bound to the limits file, a slot
 * claimed) into gpucap.region, or say why not and fail closed; when another
 * process was initialising the file for too long, arm the retry. */
void gpucap_attach_at_start(void);
/* The retry the memory layer asks for on its refusal paths: true when this
 * call attached the region and published it to every layer. At most one
 * thread tries at a time, when the schedule says one is due; the others
 * return false at once. Waits at most GPUCAP_ATTACH_RETRY_WAIT_MS and one
 * backoff step of the attach (about a millisecond). */
bool gpucap_attach_again(void);
#define GPUCAP_ATTACH_RETRY_WAIT_MS 5u
/* Forked child: forget the parent's binding and retry state. */
void gpucap_attach_after_fork(void);

/* Make sure the process is initialised. Returns false only when called
 * from inside the initialisation itself (the caller then passes through). */
bool gpucap_init_slow(void);
extern atomic_int gpucap_init_state;
enum { GPUCAP_INIT_NONE = 0, GPUCAP_INIT_RUNNING = 1, GPUCAP_INIT_READY = 2 };

static inline bool gpucap_ensure_init(void)
{
	if (atomic_load_explicit(&gpucap_init_state, memory_order_acquire) == GPUCAP_INIT_READY)
		return true;
	return gpucap_init_slow();
}

/* identity.c: PID and, when known at once, host PID for this process's slot. */
void gpucap_identity_initial(struct gpucap_slot_identity *id);

#endif
