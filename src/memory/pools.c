/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Stream-ordered pools: cuMemAllocAsync, cuMemAllocFromPoolAsync and the
 * pools' own life cycle. The charge of a pool follows what it really holds.
 */
#include "memory_internal.h"

#include <sched.h>
#include <stdlib.h>

/* ---- Pools ------------------------------------------------------------------
 *
 * A pool keeps freed memory until it is trimmed (or released at a
 * synchronisation, per its release threshold). gpucap keeps, per pool:
 *   live   bytes of allocations from the pool not yet freed
 *   spare  bytes charged to the region for the pool beyond live
 * so the pool's charge is live + spare, never below live. An allocation
 * takes what it can from spare (memory the pool already holds is reused
 * without a second charge) and charges the region for the rest, both before
 * the driver is called. After a free, a trim, or before refusing an
 * allocation, gpucap asks the pool what it really holds
 * (CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT) and lowers the charge to
 * max(live, held), that is spare to held - live. So the charge follows the
 * pool down and never exceeds what was admitted. Any refusal on the device,
 * from any path, first reconciles every pool of the device the same way:
 * memory a pool released at a synchronisation is not held against a plain
 * cuMemAlloc.
 *
 * No lock: live and spare are atomic counters. Every byte charged for the
 * pool is, at each instant, in exactly one place: in live, in spare, or held
 * by one thread between two of its steps (an allocation between taking or
 * charging it and adding it to live; a free between taking it off live and
 * adding it to spare). Bytes leave spare for the region only through a CAS
 * or an exchange, so exactly one thread returns each of them.
 *
 * The driver is asked what a pool holds from any thread (a refusal anywhere
 * reconciles every pool of the device), so a destroy must not let the
 * driver free the pool under such a question: it closes the state first and
 * waits for the questions already asked, which take microseconds. Only the
 * destroy waits; an allocation or a free never does.
 *
 * Pool states are never freed (a destroyed pool's state stays, marked, in
 * the list): pools are few and long-lived, the list can then be walked
 * without locks, and a live allocation's pointer to its state stays valid.
 * The state of a handle is the oldest one in the list that is not retired
 * (retired: destroyed, forgotten when its handle was reused, or created by
 * a thread that lost the race to create it). */

struct gpucap_pool {
	struct gpucap_pool *next_all; /* older states; set before publication */
	CUmemoryPool handle;
	int region_index;
	bool charged_to_device;   /* false for host pools */
	atomic_bool retired;      /* no longer the state of its handle */
	atomic_bool destroyed;    /* the driver destroyed the pool */
	_Atomic unsigned closing; /* destroys under way: ask the driver nothing */
	_Atomic unsigned asking;  /* threads asking the driver about the pool */
	_Atomic uint64_t live;
	_Atomic uint64_t spare;
};

static _Atomic(struct gpucap_pool *) all_pools;

/* handle -> state, so that an allocation does not walk the list. A memo is
 * trusted only while its state has the handle and is not retired: a retired
 * state never comes back, and only the state of a handle is memoised. */
#define POOL_MEMO 64

static _Atomic(struct gpucap_pool *) pool_memo[POOL_MEMO];

static _Atomic(struct gpucap_pool *) *memo_of(CUmemoryPool handle)
{
	return &pool_memo[((uint64_t)(uintptr_t)handle * UINT64_C(0x9e3779b97f4a7c15)) >> 58];
}

static bool pool_is(const struct gpucap_pool *pool, CUmemoryPool handle)
{
	return pool && pool->handle == handle && !atomic_load(&pool->retired);
}

/* The state of handle among first and the states older than it, or NULL. */
static struct gpucap_pool *pool_oldest(struct gpucap_pool *first, CUmemoryPool handle)
{
	struct gpucap_pool *found = NULL;
	for (struct gpucap_pool *pool = first; pool; pool = pool->next_all)
		if (pool_is(pool, handle))
			found = pool;
	return found;
}

static struct gpucap_pool *pool_find(CUmemoryPool handle)
{
	_Atomic(struct gpucap_pool *) *memo = memo_of(handle);
	struct gpucap_pool *pool = atomic_load_explicit(memo, memory_order_acquire);
	if (pool_is(pool, handle))
		return pool;
	pool = pool_oldest(atomic_load_explicit(&all_pools, memory_order_acquire), handle);
	if (pool)
		atomic_store_explicit(memo, pool, memory_order_release);
	return pool;
}

static void pool_publish(struct gpucap_pool *pool)
{
	struct gpucap_pool *head = atomic_load_explicit(&all_pools, memory_order_acquire);
	do
		pool->next_all = head;
	while (!atomic_compare_exchange_weak_explicit(&all_pools, &head, pool, memory_order_acq_rel,
	                                              memory_order_acquire));
}

/* The state for a pool, created on first sight with the given device. */
static struct gpucap_pool *pool_get(CUmemoryPool handle, const struct gpucap_device *dev, bool on_device)
{
	struct gpucap_pool *pool = pool_find(handle);
	if (pool)
		return pool;
	pool = calloc(1, sizeof(*pool));
	if (!pool)
		return NULL;
	pool->handle = handle;
	pool->charged_to_device = on_device;
	/* A device that fails closed refuses every charge through index -1. */
	pool->region_index = (dev && !dev->fail_closed) ? dev->region_index : -1;
	pool_publish(pool);
	/* Two threads may race to create it: the older state wins. The list
	 * orders them, so both threads agree on which. */
	struct gpucap_pool *older = pool_oldest(pool->next_all, handle);
	if (older) {
		atomic_store(&pool->retired, true);
		pool = older;
	}
	atomic_store_explicit(memo_of(handle), pool, memory_order_release);
	return pool;
}

/* Retire every state of handle: the next pool_get creates a fresh one. */
static void pool_forget(CUmemoryPool handle)
{
	for (struct gpucap_pool *pool = atomic_load_explicit(&all_pools, memory_order_acquire); pool;
	     pool = pool->next_all)
		if (pool->handle == handle)
			atomic_store(&pool->retired, true);
}

enum pool_answer {
	POOL_HOLDS,   /* *held is what the pool holds */
	POOL_UNKNOWN, /* destroyed, or the driver cannot say: it holds nothing */
	POOL_CLOSING, /* a destroy is under way: leave the charge alone */
};

/* asking is raised before closing is read, and closing before asking is
 * read (all sequentially consistent): either this thread sees the destroy
 * coming and asks nothing, or the destroy sees it asking and waits. A
 * destroy marks the state destroyed before it stops closing, so a thread
 * that finds closing over sees destroyed. */
static enum pool_answer pool_held(struct gpucap_pool *pool, cuuint64_t *held)
{
	gpucap_fn_cuMemPoolGetAttribute get = GPUCAP_REAL(cuMemPoolGetAttribute);
	enum pool_answer answer = POOL_UNKNOWN;
	atomic_fetch_add(&pool->asking, 1);
	if (atomic_load(&pool->closing) != 0)
		answer = POOL_CLOSING;
	else if (!atomic_load(&pool->destroyed) && get &&
	         get(pool->handle, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, held) == CUDA_SUCCESS)
		answer = POOL_HOLDS;
	atomic_fetch_sub(&pool->asking, 1);
	return answer;
}

static void pool_close(struct gpucap_pool *pool)
{
	atomic_fetch_add(&pool->closing, 1);
	while (atomic_load(&pool->asking) != 0)
		sched_yield();
}

/* Lower the charge to max(live, held). live is read (acquire) before the
 * CAS reads spare, so bytes an allocation holds between its two steps are
 * in neither and are never returned here. */
static void pool_reconcile(struct gpucap_pool *pool)
{
	uint64_t spare = atomic_load(&pool->spare);
	if (spare == 0)
		return; /* nothing to return, whatever the pool holds */
	cuuint64_t held = 0;
	enum pool_answer answer = pool_held(pool, &held);
	if (answer == POOL_CLOSING)
		return; /* the destroy returns what the pool held, if it succeeds */
	for (;;) {
		uint64_t live = atomic_load_explicit(&pool->live, memory_order_acquire);
		uint64_t keep = answer == POOL_HOLDS && held > live ? held - live : 0;
		if (keep >= spare)
			return;
		if (atomic_compare_exchange_weak(&pool->spare, &spare, keep)) {
			gpucap_unadmit_index(pool->region_index, GPUCAP_KIND_DATA, spare - keep);
			return;
		}
	}
}

/* A destroyed pool holds nothing: its charge is its live allocations. */
static void pool_drop_spare(struct gpucap_pool *pool)
{
	gpucap_unadmit_index(pool->region_index, GPUCAP_KIND_DATA, atomic_exchange(&pool->spare, 0));
}

/* Bytes charged for the pool and no longer held by this thread. spare grows
 * before destroyed is read (both sequentially consistent): either the
 * destroyer's exchange sees them, or this thread sees destroyed. */
static void pool_give_spare(struct gpucap_pool *pool, uint64_t bytes)
{
	atomic_fetch_add(&pool->spare, bytes);
	if (atomic_load(&pool->destroyed))
		pool_drop_spare(pool);
}

/* Up to want bytes taken from spare; returns how many. */
static uint64_t pool_take_spare(struct gpucap_pool *pool, uint64_t want)
{
	uint64_t spare = atomic_load_explicit(&pool->spare, memory_order_relaxed);
	uint64_t take;
	do {
		take = spare < want ? spare : want;
		if (take == 0)
			return 0;
	} while (!atomic_compare_exchange_weak_explicit(&pool->spare, &spare, spare - take,
	                                                memory_order_relaxed, memory_order_relaxed));
	return take;
}

/* Admit bytes for an allocation from pool (through api, named in a refusal). */
static CUresult pool_admit(struct gpucap_pool *pool, uint64_t bytes, const char *api)
{
	if (pool->charged_to_device) {
		uint64_t taken = pool_take_spare(pool, bytes);
		CUresult r = gpucap_admit_index(pool->region_index, GPUCAP_KIND_DATA, bytes - taken);
		if (r != CUDA_SUCCESS) {
			/* The pool may have released memory at a synchronisation. */
			pool_reconcile(pool);
			r = gpucap_admit_index(pool->region_index, GPUCAP_KIND_DATA, bytes - taken);
		}
		if (r != CUDA_SUCCESS) {
			pool_give_spare(pool, taken);
			gpucap_refusal_note(pool->region_index, NULL, bytes, api);
			return r;
		}
	}
	atomic_fetch_add_explicit(&pool->live, bytes, memory_order_release);
	return CUDA_SUCCESS;
}

/* Take up to bytes off live; returns how many. */
static uint64_t pool_take_live(struct gpucap_pool *pool, uint64_t bytes)
{
	uint64_t live = atomic_load_explicit(&pool->live, memory_order_relaxed);
	uint64_t take;
	do
		take = bytes < live ? bytes : live;
	while (!atomic_compare_exchange_weak_explicit(&pool->live, &live, live - take, memory_order_release,
	                                              memory_order_relaxed));
	return take;
}

void gpucap_pool_return(struct gpucap_pool *pool, uint64_t bytes)
{
	uint64_t freed = pool_take_live(pool, bytes);
	if (!pool->charged_to_device)
		return;
	pool_give_spare(pool, freed);
	if (!atomic_load(&pool->destroyed))
		pool_reconcile(pool);
}

void gpucap_pools_reconcile_all(int region_index)
{
	for (struct gpucap_pool *pool = atomic_load_explicit(&all_pools, memory_order_acquire); pool;
	     pool = pool->next_all) {
		if (pool->region_index != region_index || !pool->charged_to_device ||
		    atomic_load(&pool->destroyed))
			continue;
		pool_reconcile(pool);
	}
}

void gpucap_pools_forget_all(void)
{
	atomic_store_explicit(&all_pools, NULL, memory_order_relaxed);
	for (int i = 0; i < POOL_MEMO; i++)
		atomic_store_explicit(&pool_memo[i], NULL, memory_order_relaxed);
}

CUresult on_mem_pool_create(CUresult (*real)(CUmemoryPool *, const CUmemPoolProps *), CUmemoryPool *pool,
                            const CUmemPoolProps *poolProps)
{
	CUresult r = real(pool, poolProps);
	if (r != CUDA_SUCCESS || !pool || !poolProps)
		return r;
	bool on_device = poolProps->location.type == CU_MEM_LOCATION_TYPE_DEVICE;
	struct gpucap_device *dev = NULL;
	if (on_device && gpucap_device_get(poolProps->location.id, &dev) != CUDA_SUCCESS)
		dev = NULL;
	/* A pool handle may be reused after a destroy: forget any old state. */
	pool_forget(*pool);
	pool_get(*pool, dev, on_device);
	return r;
}

static CUresult pool_alloc(struct gpucap_pool *pool, CUdeviceptr *dptr, size_t bytesize,
                           CUresult (*call)(void *), void *ctx, const char *api)
{
	struct gpucap_track_entry *entry = gpucap_track_new();
	if (!entry)
		return CUDA_ERROR_OUT_OF_MEMORY;
	/* A ledger move (admit.c) from the charge to the driver's answer. */
	gpucap_ledger_move_begin();
	CUresult r = pool_admit(pool, bytesize, api);
	if (r == CUDA_SUCCESS) {
		r = call(ctx);
		if (r == CUDA_SUCCESS)
			gpucap_track(entry, GPUCAP_TRACK_PTR, *dptr, pool->region_index, GPUCAP_KIND_DATA,
			             bytesize, pool);
		else
			gpucap_pool_return(pool, bytesize);
	}
	if (r != CUDA_SUCCESS)
		free(entry);
	gpucap_ledger_move_end();
	return r;
}

struct async_call {
	union {
		CUresult (*current)(CUdeviceptr *, size_t, CUstream);
		CUresult (*from_pool)(CUdeviceptr *, size_t, CUmemoryPool, CUstream);
	} real;
	CUdeviceptr *dptr;
	size_t bytesize;
	CUmemoryPool pool;
	CUstream stream;
};

static CUresult call_alloc_async(void *p)
{
	struct async_call *c = p;
	return c->real.current(c->dptr, c->bytesize, c->stream);
}

static CUresult call_alloc_from_pool_async(void *p)
{
	struct async_call *c = p;
	return c->real.from_pool(c->dptr, c->bytesize, c->pool, c->stream);
}

/* Whether an allocation on stream (as the entry point names it) is
 * captured into a graph: it then makes an allocation node, which holds no
 * memory until the graph runs, and the driver never refuses it for want of
 * memory. Neither does gpucap: the graph pool is charged when it takes the
 * memory (behind.c, reconcile.c), and a refusal inside a capture breaks
 * programs the driver would not break (PyTorch's cudaMallocAsync backend
 * aborted on one). An answer that is not "none" counts as captured: the
 * driver rejects an allocation on the legacy stream during a capture. */
static bool captured(CUstream stream, bool per_thread)
{
	gpucap_fn_cuStreamIsCapturing is_capturing = GPUCAP_REAL(cuStreamIsCapturing);
	if (!is_capturing)
		return false;
	if (per_thread && stream == NULL)
		stream = CU_STREAM_PER_THREAD;
	CUstreamCaptureStatus status = CU_STREAM_CAPTURE_STATUS_NONE;
	return is_capturing(stream, &status) != CUDA_SUCCESS || status != CU_STREAM_CAPTURE_STATUS_NONE;
}

/* cuMemAllocAsync allocates from the current pool of the current device. */
static CUresult alloc_async(CUresult (*real)(CUdeviceptr *, size_t, CUstream), CUdeviceptr *dptr,
                            size_t bytesize, CUstream hStream, bool per_thread)
{
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	if (captured(hStream, per_thread))
		return real(dptr, bytesize, hStream);
	struct gpucap_device *dev;
	CUmemoryPool handle = NULL;
	gpucap_fn_cuDeviceGetMemPool get_pool = GPUCAP_REAL(cuDeviceGetMemPool);
	if (bytesize == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS || !get_pool ||
	    get_pool(&handle, dev->ordinal) != CUDA_SUCCESS)
		return real(dptr, bytesize, hStream);
	struct gpucap_pool *pool = pool_get(handle, dev, true);
	if (!pool)
		return CUDA_ERROR_OUT_OF_MEMORY;
	struct async_call c = {{.current = real}, dptr, bytesize, NULL, hStream};
	return pool_alloc(pool, dptr, bytesize, call_alloc_async, &c, "cuMemAllocAsync");
}

CUresult on_mem_alloc_async(CUresult (*real)(CUdeviceptr *, size_t, CUstream), CUdeviceptr *dptr,
                            size_t bytesize, CUstream hStream)
{
	return alloc_async(real, dptr, bytesize, hStream, false);
}

CUresult on_mem_alloc_async_ptsz(CUresult (*real)(CUdeviceptr *, size_t, CUstream), CUdeviceptr *dptr,
                                 size_t bytesize, CUstream hStream)
{
	return alloc_async(real, dptr, bytesize, hStream, true);
}

static CUresult alloc_from_pool_async(CUresult (*real)(CUdeviceptr *, size_t, CUmemoryPool, CUstream),
                                      CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool_handle,
                                      CUstream hStream, bool per_thread)
{
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	if (bytesize == 0 || !pool_handle || captured(hStream, per_thread))
		return real(dptr, bytesize, pool_handle, hStream);
	struct gpucap_pool *pool = pool_find(pool_handle);
	if (!pool) {
		/* Not created through us (a device's default pool, or created
		 * before gpucap was loaded): assume the current device. */
		struct gpucap_device *dev;
		if (gpucap_device_current(&dev) != CUDA_SUCCESS)
			return real(dptr, bytesize, pool_handle, hStream);
		pool = pool_get(pool_handle, dev, true);
		if (!pool)
			return CUDA_ERROR_OUT_OF_MEMORY;
	}
	struct async_call c = {{.from_pool = real}, dptr, bytesize, pool_handle, hStream};
	return pool_alloc(pool, dptr, bytesize, call_alloc_from_pool_async, &c, "cuMemAllocFromPoolAsync");
}

CUresult on_mem_alloc_from_pool_async(CUresult (*real)(CUdeviceptr *, size_t, CUmemoryPool, CUstream),
                                      CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool_handle,
                                      CUstream hStream)
{
	return alloc_from_pool_async(real, dptr, bytesize, pool_handle, hStream, false);
}

CUresult on_mem_alloc_from_pool_async_ptsz(CUresult (*real)(CUdeviceptr *, size_t, CUmemoryPool, CUstream),
                                           CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool_handle,
                                           CUstream hStream)
{
	return alloc_from_pool_async(real, dptr, bytesize, pool_handle, hStream, true);
}

CUresult on_mem_pool_trim_to(CUresult (*real)(CUmemoryPool, size_t), CUmemoryPool pool_handle,
                             size_t minBytesToKeep)
{
	CUresult r = real(pool_handle, minBytesToKeep);
	struct gpucap_pool *pool = r == CUDA_SUCCESS ? pool_find(pool_handle) : NULL;
	if (pool && pool->charged_to_device)
		pool_reconcile(pool);
	return r;
}

/* Destroying a pool returns what it holds; allocations still live from it
 * stay charged until they are freed. */
CUresult on_mem_pool_destroy(CUresult (*real)(CUmemoryPool), CUmemoryPool pool_handle)
{
	/* Found before the driver can reuse the handle for a new pool. */
	struct gpucap_pool *pool = pool_find(pool_handle);
	if (pool)
		pool_close(pool);
	CUresult r = real(pool_handle);
	if (pool && r == CUDA_SUCCESS) {
		atomic_store(&pool->retired, true);
		atomic_store(&pool->destroyed, true);
		if (pool->charged_to_device)
			pool_drop_spare(pool);
	}
	if (pool)
		atomic_fetch_sub(&pool->closing, 1);
	return r;
}
