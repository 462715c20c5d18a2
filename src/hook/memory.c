/*
 * Admission on every allocation path. The rule everywhere: charge the region
 * before the driver allocates, give the charge back when the driver fails,
 * and forget a tracked object before the driver frees it (so its address
 * cannot be reused and re-tracked under us), putting it back if the driver
 * refuses the free.
 */
#include "hook.h"
#include "log.h"
#include "throttle.h"

#include <limits.h>
#include <sched.h>
#include <stdlib.h>

/* Initialise (the real table is filled then), reload the real function,
 * and pass straight through when called from inside the initialisation. */
#define NOT_READY(real_call, real)                                                                           \
	do {                                                                                                 \
		if (!gpucap_ensure_init())                                                                   \
			return (real) ? (real_call) : CUDA_ERROR_NOT_INITIALIZED;                            \
		(real) = (__typeof__(real))gpucap_real[id];                                                  \
		if (!(real))                                                                                 \
			return CUDA_ERROR_NOT_FOUND;                                                         \
	} while (0)

/* ---- Tracking helpers ------------------------------------------------------ */

/* Put entry in the map. Should the map be unable to grow (the host is out of
 * memory), the allocation keeps its charge until the process exits: counted
 * too high, never too low. */
static void track_put(struct gpucap_track_entry *entry)
{
	if (gpucap_track_insert(entry))
		return;
	GPUCAP_LOG(GPUCAP_LOG_WARN,
	           "out of host memory: %llu bytes stay charged on region device %d until exit",
	           (unsigned long long)entry->bytes, entry->region_index);
	free(entry);
}

static void track(struct gpucap_track_entry *entry, enum gpucap_track_tag tag, uint64_t key, int region_index,
                  gpucap_kind kind, uint64_t bytes, struct gpucap_pool *pool)
{
	entry->tag = (uint8_t)tag;
	entry->key = key;
	entry->region_index = (int16_t)region_index;
	entry->kind = (uint8_t)kind;
	entry->bytes = bytes;
	entry->pool = pool;
	track_put(entry);
}

static void release_entry(struct gpucap_track_entry *entry)
{
	gpucap_unadmit_index(entry->region_index, (gpucap_kind)entry->kind, entry->bytes);
	free(entry);
}

/* Charge, allocate, track: the common shape of the simple paths. The
 * allocation is done by the callback so that each path keeps its own real
 * signature. */
struct simple_alloc {
	enum gpucap_track_tag tag;
	gpucap_kind kind;
	uint64_t bytes;
	const struct gpucap_device *dev;
};

static CUresult simple_admit(const struct simple_alloc *a, struct gpucap_track_entry **entry)
{
	*entry = gpucap_track_new();
	if (!*entry)
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUresult r = gpucap_admit(a->dev, a->kind, a->bytes);
	if (r != CUDA_SUCCESS) {
		free(*entry);
		*entry = NULL;
		GPUCAP_LOG(GPUCAP_LOG_DEBUG, "refused %llu bytes on device %d: over the limit",
		           (unsigned long long)a->bytes, a->dev->ordinal);
	}
	return r;
}

static void simple_done(const struct simple_alloc *a, struct gpucap_track_entry *entry, CUresult r,
                        uint64_t key)
{
	if (r != CUDA_SUCCESS) {
		gpucap_unadmit_index(a->dev->region_index, a->kind, a->bytes);
		free(entry);
		return;
	}
	track(entry, a->tag, key, a->dev->region_index, a->kind, a->bytes, NULL);
}

/* ---- Linear allocations ---------------------------------------------------- */

CUresult on_mem_alloc(int id, CUdeviceptr *dptr, size_t bytesize)
{
	gpucap_fn_cuMemAlloc_v2 real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemAlloc_v2);
	NOT_READY(real(dptr, bytesize), real);
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	struct simple_alloc a = {GPUCAP_TRACK_PTR, GPUCAP_KIND_DATA, bytesize, NULL};
	struct gpucap_device *dev;
	if (bytesize == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return real(dptr, bytesize); /* the driver reports the error */
	a.dev = dev;
	struct gpucap_track_entry *entry;
	CUresult r = simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(dptr, bytesize);
	simple_done(&a, entry, r, r == CUDA_SUCCESS ? *dptr : 0);
	return r;
}

CUresult on_mem_alloc_v1(int id, CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
	gpucap_fn_cuMemAlloc real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemAlloc);
	NOT_READY(real(dptr, bytesize), real);
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	struct simple_alloc a = {GPUCAP_TRACK_PTR, GPUCAP_KIND_DATA, bytesize, NULL};
	struct gpucap_device *dev;
	if (bytesize == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return real(dptr, bytesize);
	a.dev = dev;
	struct gpucap_track_entry *entry;
	CUresult r = simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(dptr, bytesize);
	simple_done(&a, entry, r, r == CUDA_SUCCESS ? *dptr : 0);
	return r;
}

/* The driver picks the pitch, so the exact size is known only afterwards:
 * charge width*height first, then the padding; if the padding does not fit,
 * free the allocation and report out of memory. */
static uint64_t mul_sat(uint64_t a, uint64_t b)
{
	if (a != 0 && b > UINT64_MAX / a)
		return UINT64_MAX;
	return a * b;
}

/* cuMemAllocPitch and its 32-bit predecessor differ only in their types: one
 * admission path serves both. The driver chooses the pitch, so the charge is
 * made for width x height first and topped up to pitch x height after. */
struct pitch_call {
	int id;
	bool v1;
	void *dptr;
	void *pitch;
	size_t width, height;
	unsigned int element_size;
};

static CUresult pitch_real(const struct pitch_call *c)
{
	if (c->v1)
		return GPUCAP_REAL_OF(c->id, gpucap_fn_cuMemAllocPitch)(
		    c->dptr, c->pitch, (unsigned int)c->width, (unsigned int)c->height, c->element_size);
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuMemAllocPitch_v2)(c->dptr, c->pitch, c->width, c->height,
	                                                           c->element_size);
}

static CUdeviceptr pitch_ptr(const struct pitch_call *c)
{
	return c->v1 ? (CUdeviceptr) * (CUdeviceptr_v1 *)c->dptr : *(CUdeviceptr *)c->dptr;
}

static uint64_t pitch_bytes(const struct pitch_call *c)
{
	return c->v1 ? *(unsigned int *)c->pitch : *(size_t *)c->pitch;
}

static void pitch_free(const struct pitch_call *c)
{
	if (c->v1) {
		gpucap_fn_cuMemFree real_free = GPUCAP_REAL(cuMemFree);
		if (real_free)
			real_free(*(CUdeviceptr_v1 *)c->dptr);
	} else {
		gpucap_fn_cuMemFree_v2 real_free = GPUCAP_REAL(cuMemFree_v2);
		if (real_free)
			real_free(*(CUdeviceptr *)c->dptr);
	}
}

static CUresult pitch_alloc(const struct pitch_call *c)
{
	if (!gpucap_ensure_init())
		return gpucap_real[c->id] ? pitch_real(c) : CUDA_ERROR_NOT_INITIALIZED;
	if (!gpucap_real[c->id])
		return CUDA_ERROR_NOT_FOUND;
	if (!c->dptr || !c->pitch)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	uint64_t first = mul_sat(c->width, c->height);
	if (first == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return pitch_real(c);
	struct simple_alloc a = {GPUCAP_TRACK_PTR, GPUCAP_KIND_DATA, first, dev};
	struct gpucap_track_entry *entry;
	CUresult r = simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = pitch_real(c);
	if (r == CUDA_SUCCESS) {
		uint64_t exact = mul_sat(pitch_bytes(c), c->height);
		if (exact > first) {
			if (gpucap_admit(dev, GPUCAP_KIND_DATA, exact - first) != CUDA_SUCCESS) {
				pitch_free(c);
				r = CUDA_ERROR_OUT_OF_MEMORY;
			} else {
				a.bytes = exact;
			}
		}
	}
	simple_done(&a, entry, r, r == CUDA_SUCCESS ? pitch_ptr(c) : 0);
	return r;
}

CUresult on_mem_alloc_pitch(int id, CUdeviceptr *dptr, size_t *pPitch, size_t WidthInBytes, size_t Height,
                            unsigned int ElementSizeBytes)
{
	struct pitch_call c = {id, false, dptr, pPitch, WidthInBytes, Height, ElementSizeBytes};
	return pitch_alloc(&c);
}

CUresult on_mem_alloc_pitch_v1(int id, CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int WidthInBytes,
                               unsigned int Height, unsigned int ElementSizeBytes)
{
	struct pitch_call c = {id, true, dptr, pPitch, WidthInBytes, Height, ElementSizeBytes};
	return pitch_alloc(&c);
}

/* Managed memory may migrate to the host, but it can all be resident on the
 * device at once, so it is charged in full to the current device. */
CUresult on_mem_alloc_managed(int id, CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
	gpucap_fn_cuMemAllocManaged real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemAllocManaged);
	NOT_READY(real(dptr, bytesize, flags), real);
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	if (bytesize == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return real(dptr, bytesize, flags);
	struct simple_alloc a = {GPUCAP_TRACK_PTR, GPUCAP_KIND_DATA, bytesize, dev};
	struct gpucap_track_entry *entry;
	CUresult r = simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(dptr, bytesize, flags);
	simple_done(&a, entry, r, r == CUDA_SUCCESS ? *dptr : 0);
	return r;
}

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

/* Admit bytes for an allocation from pool. */
static CUresult pool_admit(struct gpucap_pool *pool, uint64_t bytes)
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

static void pool_return(struct gpucap_pool *pool, uint64_t bytes)
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

CUresult on_mem_pool_create(int id, CUmemoryPool *pool, const CUmemPoolProps *poolProps)
{
	gpucap_fn_cuMemPoolCreate real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemPoolCreate);
	NOT_READY(real(pool, poolProps), real);
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
                           CUresult (*call)(void *), void *ctx)
{
	struct gpucap_track_entry *entry = gpucap_track_new();
	if (!entry)
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUresult r = pool_admit(pool, bytesize);
	if (r != CUDA_SUCCESS) {
		free(entry);
		return r;
	}
	r = call(ctx);
	if (r != CUDA_SUCCESS) {
		free(entry);
		pool_return(pool, bytesize);
		return r;
	}
	track(entry, GPUCAP_TRACK_PTR, *dptr, pool->region_index, GPUCAP_KIND_DATA, bytesize, pool);
	return r;
}

struct async_call {
	int id;
	CUdeviceptr *dptr;
	size_t bytesize;
	CUmemoryPool pool;
	CUstream stream;
};

static CUresult call_alloc_async(void *p)
{
	struct async_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuMemAllocAsync)(c->dptr, c->bytesize, c->stream);
}

static CUresult call_alloc_from_pool_async(void *p)
{
	struct async_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuMemAllocFromPoolAsync)(c->dptr, c->bytesize, c->pool,
	                                                                c->stream);
}

/* cuMemAllocAsync allocates from the current pool of the current device. */
CUresult on_mem_alloc_async(int id, CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
	gpucap_fn_cuMemAllocAsync real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemAllocAsync);
	NOT_READY(real(dptr, bytesize, hStream), real);
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	CUmemoryPool handle = NULL;
	gpucap_fn_cuDeviceGetMemPool get_pool = GPUCAP_REAL(cuDeviceGetMemPool);
	if (bytesize == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS || !get_pool ||
	    get_pool(&handle, dev->ordinal) != CUDA_SUCCESS)
		return real(dptr, bytesize, hStream);
	struct gpucap_pool *pool = pool_get(handle, dev, true);
	if (!pool)
		return CUDA_ERROR_OUT_OF_MEMORY;
	struct async_call c = {id, dptr, bytesize, NULL, hStream};
	return pool_alloc(pool, dptr, bytesize, call_alloc_async, &c);
}

CUresult on_mem_alloc_from_pool_async(int id, CUdeviceptr *dptr, size_t bytesize, CUmemoryPool pool_handle,
                                      CUstream hStream)
{
	gpucap_fn_cuMemAllocFromPoolAsync real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemAllocFromPoolAsync);
	NOT_READY(real(dptr, bytesize, pool_handle, hStream), real);
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	if (bytesize == 0 || !pool_handle)
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
	struct async_call c = {id, dptr, bytesize, pool_handle, hStream};
	return pool_alloc(pool, dptr, bytesize, call_alloc_from_pool_async, &c);
}

/* Free a tracked pointer: plain or from a pool. */
static void forget_pointer(struct gpucap_track_entry *entry)
{
	if (entry->pool) {
		struct gpucap_pool *pool = entry->pool;
		uint64_t bytes = entry->bytes;
		free(entry);
		pool_return(pool, bytes);
	} else {
		release_entry(entry);
	}
}

CUresult on_mem_free(int id, CUdeviceptr dptr)
{
	gpucap_fn_cuMemFree_v2 real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemFree_v2);
	NOT_READY(real(dptr), real);
	struct gpucap_track_entry *entry = dptr ? gpucap_track_remove(GPUCAP_TRACK_PTR, dptr) : NULL;
	CUresult r = real(dptr);
	if (entry) {
		if (r == CUDA_SUCCESS)
			forget_pointer(entry);
		else
			track_put(entry);
	}
	return r;
}

CUresult on_mem_free_v1(int id, CUdeviceptr_v1 dptr)
{
	gpucap_fn_cuMemFree real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemFree);
	NOT_READY(real(dptr), real);
	struct gpucap_track_entry *entry = dptr ? gpucap_track_remove(GPUCAP_TRACK_PTR, dptr) : NULL;
	CUresult r = real(dptr);
	if (entry) {
		if (r == CUDA_SUCCESS)
			forget_pointer(entry);
		else
			track_put(entry);
	}
	return r;
}

CUresult on_mem_free_async(int id, CUdeviceptr dptr, CUstream hStream)
{
	gpucap_fn_cuMemFreeAsync real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemFreeAsync);
	NOT_READY(real(dptr, hStream), real);
	struct gpucap_track_entry *entry = dptr ? gpucap_track_remove(GPUCAP_TRACK_PTR, dptr) : NULL;
	CUresult r = real(dptr, hStream);
	if (entry) {
		if (r == CUDA_SUCCESS)
			forget_pointer(entry);
		else
			track_put(entry);
	}
	return r;
}

CUresult on_mem_pool_trim_to(int id, CUmemoryPool pool_handle, size_t minBytesToKeep)
{
	gpucap_fn_cuMemPoolTrimTo real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemPoolTrimTo);
	NOT_READY(real(pool_handle, minBytesToKeep), real);
	CUresult r = real(pool_handle, minBytesToKeep);
	struct gpucap_pool *pool = r == CUDA_SUCCESS ? pool_find(pool_handle) : NULL;
	if (pool && pool->charged_to_device)
		pool_reconcile(pool);
	return r;
}

/* Destroying a pool returns what it holds; allocations still live from it
 * stay charged until they are freed. */
CUresult on_mem_pool_destroy(int id, CUmemoryPool pool_handle)
{
	gpucap_fn_cuMemPoolDestroy real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemPoolDestroy);
	NOT_READY(real(pool_handle), real);
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

/* ---- Virtual memory management ------------------------------------------ */

/* Physical memory is created by cuMemCreate and returned by cuMemRelease;
 * mapping and unmapping cost nothing. Handles imported from another process
 * (cuMemImportFromShareableHandle) are the exporter's memory and are never
 * tracked, so their release returns nothing. */
CUresult on_mem_create(int id, CUmemGenericAllocationHandle *handle, size_t size,
                       const CUmemAllocationProp *prop, unsigned long long flags)
{
	gpucap_fn_cuMemCreate real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemCreate);
	NOT_READY(real(handle, size, prop, flags), real);
	if (!handle || !prop)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	if (size == 0 || prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
	    gpucap_device_get(prop->location.id, &dev) != CUDA_SUCCESS)
		return real(handle, size, prop, flags);
	struct simple_alloc a = {GPUCAP_TRACK_HANDLE, GPUCAP_KIND_DATA, size, dev};
	struct gpucap_track_entry *entry;
	CUresult r = simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = real(handle, size, prop, flags);
	simple_done(&a, entry, r, r == CUDA_SUCCESS ? *handle : 0);
	return r;
}

CUresult on_mem_release(int id, CUmemGenericAllocationHandle handle)
{
	gpucap_fn_cuMemRelease real = GPUCAP_REAL_OF(id, gpucap_fn_cuMemRelease);
	NOT_READY(real(handle), real);
	struct gpucap_track_entry *entry = gpucap_track_remove(GPUCAP_TRACK_HANDLE, handle);
	CUresult r = real(handle);
	if (entry) {
		if (r == CUDA_SUCCESS)
			release_entry(entry);
		else
			track_put(entry);
	}
	return r;
}

/* ---- Arrays ---------------------------------------------------------------- */

/* Bytes of one element, or of one 4x4 block for block-compressed formats
 * (*block set). Planar video formats are given per luma sample, rounded up
 * to cover their chroma planes. */
static uint64_t format_bytes(CUarray_format format, unsigned int channels, bool *block)
{
	*block = false;
	switch (format) {
	case CU_AD_FORMAT_UNSIGNED_INT8:
	case CU_AD_FORMAT_SIGNED_INT8:
		return channels;
	case CU_AD_FORMAT_UNSIGNED_INT16:
	case CU_AD_FORMAT_SIGNED_INT16:
	case CU_AD_FORMAT_HALF:
		return 2ull * channels;
	case CU_AD_FORMAT_UNSIGNED_INT32:
	case CU_AD_FORMAT_SIGNED_INT32:
	case CU_AD_FORMAT_FLOAT:
		return 4ull * channels;
	case CU_AD_FORMAT_UNORM_INT8X1:
	case CU_AD_FORMAT_SNORM_INT8X1:
		return 1;
	case CU_AD_FORMAT_UNORM_INT8X2:
	case CU_AD_FORMAT_SNORM_INT8X2:
	case CU_AD_FORMAT_UNORM_INT16X1:
	case CU_AD_FORMAT_SNORM_INT16X1:
		return 2;
	case CU_AD_FORMAT_UNORM_INT8X4:
	case CU_AD_FORMAT_SNORM_INT8X4:
	case CU_AD_FORMAT_UNORM_INT16X2:
	case CU_AD_FORMAT_SNORM_INT16X2:
	case CU_AD_FORMAT_UNORM_INT_101010_2:
		return 4;
	case CU_AD_FORMAT_UNORM_INT16X4:
	case CU_AD_FORMAT_SNORM_INT16X4:
		return 8;
	case CU_AD_FORMAT_BC1_UNORM:
	case CU_AD_FORMAT_BC1_UNORM_SRGB:
	case CU_AD_FORMAT_BC4_UNORM:
	case CU_AD_FORMAT_BC4_SNORM:
		*block = true;
		return 8;
	case CU_AD_FORMAT_BC2_UNORM:
	case CU_AD_FORMAT_BC2_UNORM_SRGB:
	case CU_AD_FORMAT_BC3_UNORM:
	case CU_AD_FORMAT_BC3_UNORM_SRGB:
	case CU_AD_FORMAT_BC5_UNORM:
	case CU_AD_FORMAT_BC5_SNORM:
	case CU_AD_FORMAT_BC6H_UF16:
	case CU_AD_FORMAT_BC6H_SF16:
	case CU_AD_FORMAT_BC7_UNORM:
	case CU_AD_FORMAT_BC7_UNORM_SRGB:
		*block = true;
		return 16;
	case CU_AD_FORMAT_NV12: /* 8-bit 4:2:0: 1.5 bytes per sample */
	case CU_AD_FORMAT_NV16: /* 8-bit 4:2:2: 2 */
	case CU_AD_FORMAT_YUY2:
		return 2;
	case CU_AD_FORMAT_P010: /* 16-bit containers, 4:2:0: 3 */
	case CU_AD_FORMAT_P016:
	case CU_AD_FORMAT_Y444_PLANAR8:
	case CU_AD_FORMAT_YUV444_8bit_SemiPlanar:
		return 3;
	case CU_AD_FORMAT_P210: /* 16-bit 4:2:2: 4 */
	case CU_AD_FORMAT_P216:
	case CU_AD_FORMAT_Y210:
	case CU_AD_FORMAT_Y216:
	case CU_AD_FORMAT_AYUV:
	case CU_AD_FORMAT_Y410:
		return 4;
	case CU_AD_FORMAT_Y416:
	case CU_AD_FORMAT_Y444_PLANAR10:
	case CU_AD_FORMAT_YUV444_16bit_SemiPlanar:
		return 8;
	default:
		/* Unknown format: count 16 bytes per channel, more than any
		 * known format needs. */
		return 16ull * (channels ? channels : 1);
	}
}

/* Bytes of one level: width x height x depth elements (a zero height or
 * depth means 1). Layered and cubemap arrays carry their layers/faces in
 * depth. Driver padding and alignment are not counted. */
static uint64_t level_bytes(uint64_t width, uint64_t height, uint64_t depth, CUarray_format format,
                            unsigned int channels)
{
	bool block;
	uint64_t unit = format_bytes(format, channels, &block);
	if (height == 0)
		height = 1;
	if (depth == 0)
		depth = 1;
	if (block) {
		width = (width + 3) / 4;
		height = (height + 3) / 4;
	}
	return mul_sat(mul_sat(mul_sat(width, height), depth), unit);
}

static CUresult array_path(CUresult (*call)(void *), void *ctx, uint64_t bytes, enum gpucap_track_tag tag,
                           const void *out_handle, bool *passthrough)
{
	struct gpucap_device *dev;
	*passthrough = false;
	if (bytes == 0 || gpucap_device_current(&dev) != CUDA_SUCCESS) {
		*passthrough = true;
		return CUDA_SUCCESS;
	}
	struct simple_alloc a = {tag, GPUCAP_KIND_DATA, bytes, dev};
	struct gpucap_track_entry *entry;
	CUresult r = simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = call(ctx);
	simple_done(&a, entry, r, r == CUDA_SUCCESS ? (uint64_t)(uintptr_t) * (void *const *)out_handle : 0);
	return r;
}

struct array_call {
	int id;
	void *handle_out;
	const void *desc;
	unsigned int levels;
};

static CUresult call_array_create(void *p)
{
	struct array_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuArrayCreate_v2)(c->handle_out, c->desc);
}

static CUresult call_array_create_v1(void *p)
{
	struct array_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuArrayCreate)(c->handle_out, c->desc);
}

static CUresult call_array3d_create(void *p)
{
	struct array_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuArray3DCreate_v2)(c->handle_out, c->desc);
}

static CUresult call_array3d_create_v1(void *p)
{
	struct array_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuArray3DCreate)(c->handle_out, c->desc);
}

static CUresult call_mipmapped_create(void *p)
{
	struct array_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuMipmappedArrayCreate)(c->handle_out, c->desc, c->levels);
}

CUresult on_array_create(int id, CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR *desc)
{
	gpucap_fn_cuArrayCreate_v2 real = GPUCAP_REAL_OF(id, gpucap_fn_cuArrayCreate_v2);
	NOT_READY(real(pHandle, desc), real);
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {id, pHandle, desc, 0};
	bool pass;
	uint64_t bytes = level_bytes(desc->Width, desc->Height, 1, desc->Format, desc->NumChannels);
	CUresult r = array_path(call_array_create, &c, bytes, GPUCAP_TRACK_ARRAY, pHandle, &pass);
	return pass ? real(pHandle, desc) : r;
}

CUresult on_array_create_v1(int id, CUarray *pHandle, const CUDA_ARRAY_DESCRIPTOR_v1 *desc)
{
	gpucap_fn_cuArrayCreate real = GPUCAP_REAL_OF(id, gpucap_fn_cuArrayCreate);
	NOT_READY(real(pHandle, desc), real);
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {id, pHandle, desc, 0};
	bool pass;
	uint64_t bytes = level_bytes(desc->Width, desc->Height, 1, desc->Format, desc->NumChannels);
	CUresult r = array_path(call_array_create_v1, &c, bytes, GPUCAP_TRACK_ARRAY, pHandle, &pass);
	return pass ? real(pHandle, desc) : r;
}

CUresult on_array3d_create(int id, CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *desc)
{
	gpucap_fn_cuArray3DCreate_v2 real = GPUCAP_REAL_OF(id, gpucap_fn_cuArray3DCreate_v2);
	NOT_READY(real(pHandle, desc), real);
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {id, pHandle, desc, 0};
	bool pass;
	uint64_t bytes = level_bytes(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels);
	CUresult r = array_path(call_array3d_create, &c, bytes, GPUCAP_TRACK_ARRAY, pHandle, &pass);
	return pass ? real(pHandle, desc) : r;
}

CUresult on_array3d_create_v1(int id, CUarray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR_v1 *desc)
{
	gpucap_fn_cuArray3DCreate real = GPUCAP_REAL_OF(id, gpucap_fn_cuArray3DCreate);
	NOT_READY(real(pHandle, desc), real);
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {id, pHandle, desc, 0};
	bool pass;
	uint64_t bytes = level_bytes(desc->Width, desc->Height, desc->Depth, desc->Format, desc->NumChannels);
	CUresult r = array_path(call_array3d_create_v1, &c, bytes, GPUCAP_TRACK_ARRAY, pHandle, &pass);
	return pass ? real(pHandle, desc) : r;
}

/* A mipmapped array holds every level: each halves width and height (and
 * depth, unless layered or a cubemap, where depth counts layers or faces),
 * never below 1. */
static uint64_t mipmapped_bytes(const CUDA_ARRAY3D_DESCRIPTOR *d, unsigned int levels)
{
	uint64_t total = 0;
	uint64_t w = d->Width, h = d->Height, z = d->Depth;
	bool depth_is_layers = (d->Flags & (CUDA_ARRAY3D_LAYERED | CUDA_ARRAY3D_CUBEMAP)) != 0;
	for (unsigned int l = 0; l < levels && l < 64; l++) {
		uint64_t b = level_bytes(w, h, z, d->Format, d->NumChannels);
		total = total + b < total ? UINT64_MAX : total + b;
		w = w > 1 ? w / 2 : 1;
		h = h > 1 ? h / 2 : (h ? 1 : 0);
		if (!depth_is_layers)
			z = z > 1 ? z / 2 : (z ? 1 : 0);
	}
	return total;
}

CUresult on_mipmapped_array_create(int id, CUmipmappedArray *pHandle, const CUDA_ARRAY3D_DESCRIPTOR *desc,
                                   unsigned int numMipmapLevels)
{
	gpucap_fn_cuMipmappedArrayCreate real = GPUCAP_REAL_OF(id, gpucap_fn_cuMipmappedArrayCreate);
	NOT_READY(real(pHandle, desc, numMipmapLevels), real);
	if (!pHandle || !desc)
		return CUDA_ERROR_INVALID_VALUE;
	struct array_call c = {id, pHandle, desc, numMipmapLevels};
	bool pass;
	uint64_t bytes = mipmapped_bytes(desc, numMipmapLevels);
	CUresult r = array_path(call_mipmapped_create, &c, bytes, GPUCAP_TRACK_MIPMAP, pHandle, &pass);
	return pass ? real(pHandle, desc, numMipmapLevels) : r;
}

CUresult on_array_destroy(int id, CUarray hArray)
{
	gpucap_fn_cuArrayDestroy real = GPUCAP_REAL_OF(id, gpucap_fn_cuArrayDestroy);
	NOT_READY(real(hArray), real);
	struct gpucap_track_entry *entry =
	    hArray ? gpucap_track_remove(GPUCAP_TRACK_ARRAY, (uint64_t)(uintptr_t)hArray) : NULL;
	CUresult r = real(hArray);
	if (entry) {
		if (r == CUDA_SUCCESS)
			release_entry(entry);
		else
			track_put(entry);
	}
	return r;
}

CUresult on_mipmapped_array_destroy(int id, CUmipmappedArray hMipmappedArray)
{
	gpucap_fn_cuMipmappedArrayDestroy real = GPUCAP_REAL_OF(id, gpucap_fn_cuMipmappedArrayDestroy);
	NOT_READY(real(hMipmappedArray), real);
	struct gpucap_track_entry *entry =
	    hMipmappedArray ? gpucap_track_remove(GPUCAP_TRACK_MIPMAP, (uint64_t)(uintptr_t)hMipmappedArray)
	                    : NULL;
	CUresult r = real(hMipmappedArray);
	if (entry) {
		if (r == CUDA_SUCCESS)
			release_entry(entry);
		else
			track_put(entry);
	}
	return r;
}

/* ---- Contexts ---------------------------------------------------------------
 *
 * A context costs device memory by itself. gpucap charges
 * GPUCAP_CONTEXT_BYTES (default 640 MiB) per context: at cuCtxCreate until
 * cuCtxDestroy, and for a primary context from this process's first retain
 * until its last release. */

struct ctx_call {
	int id;
	CUcontext *pctx;
	unsigned int flags;
	CUdevice dev;
	CUexecAffinityParam *params;
	int num_params;
	CUctxCreateParams *create_params;
};

static CUresult call_ctx_create_v2(void *p)
{
	struct ctx_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuCtxCreate_v2)(c->pctx, c->flags, c->dev);
}

static CUresult call_ctx_create_v3(void *p)
{
	struct ctx_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuCtxCreate_v3)(c->pctx, c->params, c->num_params, c->flags,
	                                                       c->dev);
}

static CUresult call_ctx_create_v4(void *p)
{
	struct ctx_call *c = p;
	return GPUCAP_REAL_OF(c->id, gpucap_fn_cuCtxCreate_v4)(c->pctx, c->create_params, c->flags, c->dev);
}

static CUresult ctx_create(CUresult (*call)(void *), struct ctx_call *c)
{
	if (!gpucap_ensure_init())
		return call(c);
	if (!gpucap_real[c->id])
		return CUDA_ERROR_NOT_FOUND;
	if (!c->pctx)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	CUresult r = gpucap_device_get(c->dev, &dev);
	if (r != CUDA_SUCCESS)
		return call(c); /* the driver reports the bad device */
	struct simple_alloc a = {GPUCAP_TRACK_CTX, GPUCAP_KIND_CONTEXT, gpucap.config.context_bytes, dev};
	struct gpucap_track_entry *entry;
	r = simple_admit(&a, &entry);
	if (r != CUDA_SUCCESS)
		return r;
	r = call(c);
	simple_done(&a, entry, r, r == CUDA_SUCCESS ? (uint64_t)(uintptr_t)*c->pctx : 0);
	return r;
}

CUresult on_ctx_create_v2(int id, CUcontext *pctx, unsigned int flags, CUdevice dev)
{
	struct ctx_call c = {id, pctx, flags, dev, NULL, 0, NULL};
	return ctx_create(call_ctx_create_v2, &c);
}

CUresult on_ctx_create_v3(int id, CUcontext *pctx, CUexecAffinityParam *paramsArray, int numParams,
                          unsigned int flags, CUdevice dev)
{
	struct ctx_call c = {id, pctx, flags, dev, paramsArray, numParams, NULL};
	return ctx_create(call_ctx_create_v3, &c);
}

CUresult on_ctx_create_v4(int id, CUcontext *pctx, CUctxCreateParams *ctxCreateParams, unsigned int flags,
                          CUdevice dev)
{
	struct ctx_call c = {id, pctx, flags, dev, NULL, 0, ctxCreateParams};
	return ctx_create(call_ctx_create_v4, &c);
}

CUresult on_ctx_destroy(int id, CUcontext ctx)
{
	gpucap_fn_cuCtxDestroy_v2 real = GPUCAP_REAL_OF(id, gpucap_fn_cuCtxDestroy_v2);
	NOT_READY(real(ctx), real);
	struct gpucap_track_entry *entry =
	    ctx ? gpucap_track_remove(GPUCAP_TRACK_CTX, (uint64_t)(uintptr_t)ctx) : NULL;
	gpucap_sm_context_gone(ctx); /* the SM gate must not drain its streams later */
	CUresult r = real(ctx);
	if (entry) {
		if (r == CUDA_SUCCESS)
			release_entry(entry);
		else
			track_put(entry);
	}
	return r;
}

CUresult on_primary_ctx_retain(int id, CUcontext *pctx, CUdevice ordinal)
{
	gpucap_fn_cuDevicePrimaryCtxRetain real = GPUCAP_REAL_OF(id, gpucap_fn_cuDevicePrimaryCtxRetain);
	NOT_READY(real(pctx, ordinal), real);
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	struct gpucap_device *dev;
	CUresult r = gpucap_device_get(ordinal, &dev);
	if (r != CUDA_SUCCESS)
		return real(pctx, ordinal);
	uint64_t bytes = gpucap.config.context_bytes;
	pthread_mutex_lock(&dev->primary_lock);
	bool first = dev->primary_refs == 0;
	if (first)
		r = gpucap_admit(dev, GPUCAP_KIND_CONTEXT, bytes);
	if (r == CUDA_SUCCESS) {
		r = real(pctx, ordinal);
		if (r == CUDA_SUCCESS)
			dev->primary_refs++;
		else if (first)
			gpucap_unadmit_index(dev->region_index, GPUCAP_KIND_CONTEXT, bytes);
	}
	pthread_mutex_unlock(&dev->primary_lock);
	return r;
}

CUresult on_primary_ctx_release(int id, CUdevice ordinal)
{
	gpucap_fn_cuDevicePrimaryCtxRelease_v2 real =
	    GPUCAP_REAL_OF(id, gpucap_fn_cuDevicePrimaryCtxRelease_v2);
	NOT_READY(real(ordinal), real);
	struct gpucap_device *dev;
	if (gpucap_device_get(ordinal, &dev) != CUDA_SUCCESS)
		return real(ordinal);
	pthread_mutex_lock(&dev->primary_lock);
	if (dev->primary_refs == 1)
		gpucap_sm_device_gone(ordinal); /* the last release destroys the context */
	CUresult r = real(ordinal);
	if (r == CUDA_SUCCESS && dev->primary_refs > 0) {
		dev->primary_refs--;
		if (dev->primary_refs == 0)
			gpucap_unadmit_index(dev->region_index, GPUCAP_KIND_CONTEXT,
			                     gpucap.config.context_bytes);
	}
	pthread_mutex_unlock(&dev->primary_lock);
	return r;
}
