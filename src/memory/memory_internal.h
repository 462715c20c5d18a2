/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the files of src/memory, never included from outside it.
 */
#ifndef GPUCAP_MEMORY_INTERNAL_H
#define GPUCAP_MEMORY_INTERNAL_H

#include "calls.h"
#include "memory.h"
#include "track.h"

#include <pthread.h>
#include <stdatomic.h>

/* The process as the memory layer sees it (gpucap_memory_start). Written
 * before the library publishes READY; read-only after, but for region. */
struct memory_env {
	const struct gpucap_config *config;
	/* NULL: every device fails closed. Set at start-up, or later, once, by
	 * an attach tried again (gpucap_memory_region_arrived): it only goes
	 * from NULL to a region (a forked child, alone, sets it back). Read it
	 * through memory_region(); a plain read is a seq_cst load, also
	 * correct. */
	_Atomic(gpucap_region *) region;
	struct gpucap_memory_observer observer;
	/* Tries the attach again (gpucap_memory_retry_with); NULL: never. */
	bool (*attach_again)(void);
};

extern struct memory_env memory_env;

/* The region, or NULL. Acquire: partner of the release store in
 * gpucap_memory_region_arrived; whoever sees a region sees it attached,
 * bound to the limits file and holding its slot. A plain load on x86-64. */
static inline gpucap_region *memory_region(void)
{
	return atomic_load_explicit(&memory_env.region, memory_order_acquire);
}

/* ---- A region that came late (late_region.c) ------------------------------ */

/* Whether the process has its region now: it had it, or this call attached
 * it (rate-limited, one thread at a time; the others return false at once).
 * Refusal paths only. */
bool gpucap_region_retry(void);

/* ---- Devices (devices.c) --------------------------------------------------- */

struct gpucap_device {
	atomic_int state; /* enum gpucap_device_state */
	int ordinal;
	/* Both are set once at resolution; a device resolved while the process
	 * had no region (state AWAITING_REGION) gets them again once, when the
	 * region comes: region_index from -1 to its entry, then fail_closed to
	 * false (seq_cst stores, in that order: whoever sees fail_closed false
	 * sees the index). */
	_Atomic int region_index; /* -1: cannot be charged, fails closed */
	atomic_bool fail_closed;
	char uuid[GPUCAP_UUID_MAX];
	pthread_mutex_t primary_lock;
	int primary_refs;
	uint64_t primary_bytes; /* what the primary context is charged; under primary_lock */
};

enum gpucap_device_state {
	DEVICE_UNKNOWN = 0,
	DEVICE_RESOLVING = 1,
	DEVICE_READY = 2,
	/* Resolved, failing closed, while the process had no region: registered
	 * at its first use once the region has come. */
	DEVICE_AWAITING_REGION = 3,
	DEVICE_REGISTERING = 4, /* one thread registers it; others see it fail closed */
};

/* The device for a CUDA ordinal, resolved on first use (UUID, region entry).
 * Returns the driver's error when the ordinal cannot be queried. */
CUresult gpucap_device_get(CUdevice ordinal, struct gpucap_device **out);
/* The device of the calling thread's current context. */
CUresult gpucap_device_current(struct gpucap_device **out);
/* Forget every resolved device (forked child). */
void gpucap_devices_reset(void);
/* For a device that fails closed: true when, after gpucap_region_retry, it
 * can be charged (it was waiting for the region and is now registered).
 * Refusal paths only. */
bool gpucap_device_retry(const struct gpucap_device *dev);
/* Hand the limits file's cap of region device region_index to the region,
 * which enforces it on every reservation of this handle whatever the
 * region's limit says (the smaller cap wins when noted twice). A forked
 * child's new handle starts without caps; they are noted again as its
 * devices resolve. */
void gpucap_device_note_file_cap(int region_index, uint64_t cap);

/* ---- Admission (admit.c) --------------------------------------------------- */

/* Charge bytes of kind on the device before an allocation: CUDA_SUCCESS or
 * CUDA_ERROR_OUT_OF_MEMORY. */
CUresult gpucap_admit(const struct gpucap_device *dev, gpucap_kind kind, uint64_t bytes);
/* Charge by region index (used where only the index is kept). */
CUresult gpucap_admit_index(int region_index, gpucap_kind kind, uint64_t bytes);
void gpucap_unadmit_index(int region_index, gpucap_kind kind, uint64_t bytes);
/* The same for a correction of a charge (a context measured smaller, driver
 * memory given back): the bytes go back to the device total at once, not to
 * this thread's idle credit. */
void gpucap_unadmit_correction(int region_index, gpucap_kind kind, uint64_t bytes);

/* Called before a refusal on region device region_index, to give memory
 * back that is charged but no longer held (the pools register it). */
void gpucap_admit_before_refusal(void (*reclaim)(int region_index));
/* Before a refusal on region device region_index: measure a context of
 * this process that is still charged at its estimate (never waits). */
void gpucap_reconcile_before_refusal(int region_index);

/* limit and charged bytes of a region device; false when unknown. The limit
 * is the region's, lowered to the limits file's cap. */
bool gpucap_device_usage(int region_index, uint64_t *limit, uint64_t *charged);

/* The common shape of the simple paths: charge, allocate, track. */
struct simple_alloc {
	enum gpucap_track_tag tag;
	gpucap_kind kind;
	uint64_t bytes;
	const struct gpucap_device *dev;
	const char *api; /* the entry point, for the refusal's warning */
};

/* A fresh entry and the charge for a: CUDA_SUCCESS, or the refusal (no
 * entry then). */
CUresult gpucap_simple_admit(const struct simple_alloc *a, struct gpucap_track_entry **entry);
/* After the driver answered r: track the allocation under key, or give the
 * charge back. */
void gpucap_simple_done(const struct simple_alloc *a, struct gpucap_track_entry *entry, CUresult r,
                        uint64_t key);
/* Fill entry and put it in the map. */
void gpucap_track(struct gpucap_track_entry *entry, enum gpucap_track_tag tag, uint64_t key, int region_index,
                  gpucap_kind kind, uint64_t bytes, struct gpucap_pool *pool);
/* Put entry (back) in the map. Should the map be unable to grow, the
 * allocation keeps its charge until the process exits: counted too high,
 * never too low. */
void gpucap_track_put(struct gpucap_track_entry *entry);
/* Give an entry's charge back and free it. */
void gpucap_track_release(struct gpucap_track_entry *entry);
/* Before the driver frees a tracked object: a ledger move begins, and its
 * entry (none for key 0 or an untracked one) leaves the map. */
struct gpucap_track_entry *gpucap_track_take(enum gpucap_track_tag tag, uint64_t key);
/* After the driver answered that free (entry: what gpucap_track_take
 * returned): r CUDA_SUCCESS gives the charge back, anything else puts the
 * entry back; the move ends. */
void gpucap_track_settle(struct gpucap_track_entry *entry, CUresult r);

/* Ledger moves in flight (admit.c): an allocation from before its charge to
 * the driver's answer, a free from before the driver's free to its charge's
 * return. gpucap_simple_admit/done, gpucap_track_take/settle and the pools'
 * allocations (pools.c) count theirs; graph runs do not (the driver takes
 * their memory when the run executes, after the call). A measurement of
 * NVML's figure less the ledger takes a mark with gpucap_ledger_quiet
 * before its query (false: a move of another thread is under way) and
 * believes its result only if gpucap_ledger_still(mark) after its ledger
 * read. */
void gpucap_ledger_move_begin(void);
void gpucap_ledger_move_end(void);
bool gpucap_ledger_quiet(uint64_t *mark);
bool gpucap_ledger_still(uint64_t mark);
/* In a forked child: no move is under way. */
void gpucap_ledger_moves_after_fork(void);

/* ---- Refusals (refusal.c) --------------------------------------------------- */

/* An allocation of bytes through api was refused on region device
 * region_index (dev: its CUDA device when known, else NULL): count it in the
 * region and, for the first refusal of the process, print why. Refusal path
 * only. */
void gpucap_refusal_note(int region_index, const struct gpucap_device *dev, uint64_t bytes, const char *api);
/* Forked child: its first refusal is printed again. */
void gpucap_refusal_after_fork(void);

/* ---- Pools (pools.c) --------------------------------------------------------- */

/* Lower every pool's charge on the device to what the pool really holds. */
void gpucap_pools_reconcile_all(int region_index);
/* Forked child: the parent's pools are not the child's. */
void gpucap_pools_forget_all(void);
/* A tracked pointer from a pool was freed: bytes go back to it. */
void gpucap_pool_return(struct gpucap_pool *pool, uint64_t bytes);

/* ---- The driver's truth (reconcile.c) ------------------------------------------- */

/* A context exists on dev: the reconciler thread (started on the first
 * call) looks at the device from now on. */
void gpucap_reconcile_device_active(const struct gpucap_device *dev);
/* Anchor dev's driver charge to the driver's own figure for this process.
 * False when the container has no room for all of it (then what fits is
 * charged: further allocations are refused). Never on an allocation path. */
bool gpucap_reconcile(struct gpucap_device *dev);
/* Charge bytes a call declares it will take, as the driver's, before the
 * call; the next reconciliation replaces it with the truth. */
CUresult gpucap_reconcile_declare(struct gpucap_device *dev, uint64_t bytes);
/* Give back bytes declared earlier (at most what is charged as the
 * driver's): the call failed, or a limit was lowered. */
void gpucap_reconcile_undeclare(struct gpucap_device *dev, uint64_t bytes);
/* What a context is charged beyond its measured size: one 2 MiB page, the
 * driver's unit of device memory. After a context is measured the driver
 * still takes a little for the process by itself (page tables as mappings
 * grow, the unfilled part of the page that holds small allocations): the
 * allowance holds room for it, so that the real total stays within the cap
 * between two reconciliations; what grows past it is charged as the
 * driver's. */
#define GPUCAP_CONTEXT_GROWTH_BYTES (UINT64_C(2) << 20)
/* What a new context on dev is charged: GPUCAP_CONTEXT_BYTES when given,
 * else the size measured on the device (kept in the region) plus the
 * growth allowance, else the default. */
uint64_t gpucap_context_estimate(const struct gpucap_device *dev);
/* Charge a new context of this process on dev before the driver makes it:
 * *bytes gets what was charged (its estimate). Where the region is full
 * while other processes still hold contexts at their estimate, asked again
 * as they are measured, for at most GPUCAP_CONTEXT_WAIT_MS
 * (context_admit.c). On a refusal the refusal is noted. */
CUresult gpucap_context_admit(const struct gpucap_device *dev, uint64_t *bytes, const char *api);
/* A wait for the contexts other processes of the region hold at their
 * blind estimate to be measured (their charges may fall): one step per call
 * of gpucap_estimates_wait, which sleeps a step and returns true while
 * such contexts remain and the wait's bounds allow (GPUCAP_CONTEXT_WAIT_MS
 * counted while none of them is inside the driver's creation, a minute in
 * all); false at once otherwise. */
struct gpucap_estimates_wait {
	uint64_t waited_ns;  /* in all */
	uint64_t counted_ns; /* while no peer was inside a creation */
};
bool gpucap_estimates_wait(struct gpucap_estimates_wait *w, int region_index);
/* Why a wait ended without success, for the log. */
const char *gpucap_estimates_wait_end(const struct gpucap_estimates_wait *w);
/* This process's slot marks dev as holding a context at its estimate
 * exactly while a measurement is pending (call after a creation failed). */
void gpucap_context_estimate_settle(const struct gpucap_device *dev);
/* Which context a measurement is for. */
enum gpucap_context_which {
	CONTEXT_PENDING_NONE = 0,
	CONTEXT_PENDING_PRIMARY = 1, /* the device's primary context: dev->primary_bytes */
	CONTEXT_PENDING_TRACKED = 2, /* a created or green context, tracked under its handle */
};
/* Just after this process's first context on dev (which, with its handle
 * key when tracked), charged `charged`, was created: measure it from the
 * driver's figure (asked again, a few milliseconds apart at most, while it
 * does not list the process yet), keep the size in the region and move the
 * charge to it plus the growth allowance. Returns the context's charge
 * now. A context it could not measure is measured by the reconciler thread
 * later (its charge lowered in place). The primary context's caller holds
 * dev->primary_lock. */
uint64_t gpucap_context_measure(struct gpucap_device *dev, uint64_t charged, enum gpucap_context_which which,
                                uint64_t key);
/* A tracked context (key, its handle) is about to be destroyed: the
 * reconciler no longer measures it. Call before removing its entry. */
void gpucap_context_forget(uint64_t key);
/* Forked child: no thread, nothing measured, nothing charged. */
void gpucap_reconcile_after_fork(void);

/* ---- The first run of graphs that allocate (graph_runs.c) ------------------------ */

/* exec was instantiated from graph: remember what its allocation nodes
 * will take at its first run. */
void gpucap_graph_instantiated(CUgraphExec exec, CUgraph graph);
/* exec is destroyed (or was never handed out). */
void gpucap_graph_forget(CUgraphExec exec);
/* Forked child: the parent's graphs are not the child's. */
void gpucap_graph_runs_after_fork(void);

/* Saturating sum. */
static inline uint64_t gpucap_add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* Saturating product. */
static inline uint64_t gpucap_mul_sat(uint64_t a, uint64_t b)
{
	if (a != 0 && b > UINT64_MAX / a)
		return UINT64_MAX;
	return a * b;
}

#endif
