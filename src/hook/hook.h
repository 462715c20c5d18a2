/*
 * Internal interface of libgpucap.so: the generated hook table, the
 * accounting state, and the helpers the handlers share.
 */
#ifndef GPUCAP_HOOK_H
#define GPUCAP_HOOK_H

#include "cuda_abi.h"
#include "driver.h"
#include "gpucap/region.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define GPUCAP_EXPORT       __attribute__((visibility("default")))
#define GPUCAP_UNPAREN(...) __VA_ARGS__

/* ---- The generated table (hooks.def) ------------------------------------ */

enum gpucap_hook_id {
#define HOOK(lib, name, ret, params, args, handler) GPUCAP_ID_##name,
#define REAL(lib, name, ret, params)
#include "hooks.def"
#undef HOOK
#undef REAL
	GPUCAP_HOOK_COUNT,
	/* REAL rows continue at GPUCAP_HOOK_COUNT. */
	GPUCAP_REAL_BASE_ = GPUCAP_HOOK_COUNT - 1,
#define HOOK(lib, name, ret, params, args, handler)
#define REAL(lib, name, ret, params) GPUCAP_ID_##name,
#include "hooks.def"
#undef HOOK
#undef REAL
	GPUCAP_ID_COUNT
};

/* One function-pointer type per row: gpucap_fn_<name>. */
#define HOOK(lib, name, ret, params, args, handler) typedef ret(*gpucap_fn_##name) params;
#define REAL(lib, name, ret, params)                typedef ret(*gpucap_fn_##name) params;
#include "hooks.def"
#undef HOOK
#undef REAL

/* Handlers: handler(id, args...). Rows sharing a handler declare it again,
 * which C allows for identical declarations. */
#define HOOK(lib, name, ret, params, args, handler) ret handler(int id, GPUCAP_UNPAREN params);
#define REAL(lib, name, ret, params)
#include "hooks.def"
#undef HOOK
#undef REAL

struct gpucap_hook_info {
	const char *name;
	enum gpucap_lib lib;
	void *wrapper; /* NULL for REAL rows */
};

extern const struct gpucap_hook_info gpucap_hooks[GPUCAP_ID_COUNT];

/* Real functions, filled once by the init (NULL when the real library lacks
 * the name). Written before the init publishes READY; read-only after. */
extern void *gpucap_real[GPUCAP_ID_COUNT];

#define GPUCAP_REAL_OF(id, type) ((type)gpucap_real[(id)])
#define GPUCAP_REAL(name)        ((gpucap_fn_##name)gpucap_real[GPUCAP_ID_##name])

/* The row whose name is symbol, or -1. Only intercepted rows. */
int gpucap_hook_find(const char *symbol);
/* The wrapper to hand out for a real function pointer, or NULL. */
void *gpucap_wrapper_for_real(void *real);
/* Fill gpucap_real from the real libraries. */
void gpucap_resolve_real(void);

/* ---- Configuration (config.c) --------------------------------------------- */

#define GPUCAP_MAX_DEVICES           64
#define GPUCAP_DEFAULT_CONTEXT_BYTES (UINT64_C(640) << 20)

struct gpucap_device_config {
	uint64_t limit_bytes;    /* GPUCAP_UNLIMITED: none */
	bool fail_closed;        /* a malformed value applies to this device */
	uint64_t file_cap_bytes; /* the limits file's cap (GPUCAP_UNLIMITED: none) */
	uint32_t sm_limit;       /* percent to register with: lower of file and environment; 0: none */
};

/* Compute caps (docs/compute-caps.md). */
enum gpucap_sm_policy {
	GPUCAP_SM_POLICY_STRICT = 0,  /* the cap is a cap, even for a lone tenant */
	GPUCAP_SM_POLICY_ELASTIC = 1, /* idle capacity may be used while no one else wants it */
	GPUCAP_SM_POLICY_DISABLE = 2, /* no compute throttle in this process */
};

/* The SM share a malformed SM variable leaves the devices it names: the
 * most restrictive cap there is (fail closed, like memory). */
#define GPUCAP_SM_FAIL_CLOSED_PERCENT 1u

struct gpucap_sm_config {
	enum gpucap_sm_policy policy;
	/* This process's own ceiling per CUDA ordinal, in percent (0: none): the
	 * limits file's SM value, or GPUCAP_SM_FAIL_CLOSED_PERCENT after a
	 * malformed variable. Applied on top of the region's live limit. */
	uint32_t local_cap[GPUCAP_MAX_DEVICES];
	/* Measure the work weight of a capped busy second with calibration
	 * bursts (GPUCAP_SM_CALIBRATE, docs/compute-caps.md); default on. */
	bool calibrate;
};

struct gpucap_config {
	struct gpucap_device_config device[GPUCAP_MAX_DEVICES];
	struct gpucap_sm_config sm;
	uint64_t context_bytes;
	char region_path[4096];
	/* GPUCAP_NODE_DIR: the host directory of the node schedule files
	 * (include/gpucap/schedule.h); empty: capped containers do not take
	 * turns. */
	char node_dir[4096];
	char visible_devices[1024]; /* CUDA_VISIBLE_DEVICES as read at init */
	bool visible_devices_set;
	int log_level;
};

/* Read the environment and the limits file once. Malformed values are
 * reported (one line each) and mark the affected devices fail-closed. */
void gpucap_config_load(struct gpucap_config *config);

/* ---- Process state (init.c) ------------------------------------------------ */

struct gpucap_state {
	struct gpucap_config config;
	gpucap_region *region; /* NULL: every device fails closed */
};

extern struct gpucap_state gpucap;

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

/* ---- Devices (devices.c) --------------------------------------------------- */

struct gpucap_device {
	atomic_int state; /* 0 unknown, 1 resolving, 2 ready */
	int ordinal;
	int region_index; /* -1: cannot be charged, fails closed */
	bool fail_closed;
	char uuid[GPUCAP_UUID_MAX];
	pthread_mutex_t primary_lock;
	int primary_refs;
};

/* The device for a CUDA ordinal, resolved on first use (UUID, region entry).
 * Returns the driver's error when the ordinal cannot be queried. */
CUresult gpucap_device_get(CUdevice ordinal, struct gpucap_device **out);
/* The device of the calling thread's current context. */
CUresult gpucap_device_current(struct gpucap_device **out);
/* Forget every resolved device (forked child). */
void gpucap_devices_reset(void);

/* Charge bytes of kind on the device before an allocation: CUDA_SUCCESS or
 * CUDA_ERROR_OUT_OF_MEMORY. */
CUresult gpucap_admit(const struct gpucap_device *dev, gpucap_kind kind, uint64_t bytes);
/* Charge by region index (used where only the index is kept). */
CUresult gpucap_admit_index(int region_index, gpucap_kind kind, uint64_t bytes);
void gpucap_unadmit_index(int region_index, gpucap_kind kind, uint64_t bytes);

/* Lower every pool's charge on the device to what the pool really holds
 * (memory pools, memory.c); called before a refusal. */
void gpucap_pools_reconcile_all(int region_index);
/* Forked child: the parent's pools are not the child's. */
void gpucap_pools_forget_all(void);

/* The limits file caps region device region_index at cap bytes in this
 * process, whatever the region's limit says (the smaller cap wins when
 * noted twice). */
void gpucap_device_note_file_cap(int region_index, uint64_t cap);

/* limit and charged bytes of a region device; false when unknown. The limit
 * is the region's, lowered to the limits file's cap. */
bool gpucap_device_usage(int region_index, uint64_t *limit, uint64_t *charged);

/* ---- Tracking of live allocations (track.c) ------------------------------- */

enum gpucap_track_tag {
	GPUCAP_TRACK_PTR = 1,    /* device pointer: linear, managed, pool */
	GPUCAP_TRACK_HANDLE = 2, /* cuMemCreate handle */
	GPUCAP_TRACK_ARRAY = 3,  /* CUarray */
	GPUCAP_TRACK_MIPMAP = 4, /* CUmipmappedArray */
	GPUCAP_TRACK_CTX = 5,    /* CUcontext from cuCtxCreate */
};

struct gpucap_pool;

struct gpucap_track_entry {
	uint64_t key;
	uint8_t tag;
	uint8_t kind;
	int16_t region_index;
	uint64_t bytes;
	struct gpucap_pool *pool; /* allocations from a stream-ordered pool */
};

/* The map takes no lock: any number of threads may insert and remove at
 * once, and none ever waits for another. It never reads an entry after
 * inserting it, so a removed entry is wholly the remover's. */

/* A zeroed entry, or NULL when memory runs out. Released with free(). */
struct gpucap_track_entry *gpucap_track_new(void);
/* Publish entry under (entry->tag, entry->key). False only when the map had
 * to grow and memory ran out: the entry is then not in the map and is still
 * the caller's. */
bool gpucap_track_insert(struct gpucap_track_entry *entry);
/* Unlink and return an entry for (tag, key), or NULL. Of threads removing
 * the same key at once, exactly one gets each entry. */
struct gpucap_track_entry *gpucap_track_remove(enum gpucap_track_tag tag, uint64_t key);
/* Forked child: start from an empty map (the parent's entries are left
 * allocated and untouched). Only while the process has one thread. */
void gpucap_track_forget_all(void);

/* identity.c: PID and, when known at once, host PID for this process's slot. */
void gpucap_identity_initial(struct gpucap_slot_identity *id);

/* ---- Compute caps (throttle.c, sm_controller.c; throttle.h has the rest) -- */

/* Forked child: forget the gates' phases and streams and the controller
 * thread (the child has neither); the next launch starts them again. */
void gpucap_sm_after_fork(void);

#endif
