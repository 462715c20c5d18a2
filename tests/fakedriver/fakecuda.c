/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
/*
 * A test double for libcuda.so.1: no GPU, no memory behind the pointers, but
 * the driver's observable behaviour for everything gpucap touches: devices
 * with UUIDs, CUDA_VISIBLE_DEVICES, contexts, allocations that run out at
 * the device's total, VMM handles, IPC, stream-ordered pools that keep freed
 * memory until trimmed, arrays, and cuGetProcAddress with versions and
 * per-thread-stream variants.
 *
 * Environment:
 *   FAKECUDA_DEVICES      comma list of physical device UUIDs ("GPU-..." or
 *                         "MIG-..."); default two devices
 *   FAKECUDA_TOTAL_BYTES  memory of each device; default 16 GiB
 *   FAKECUDA_BOOST_PERMILLE  a device that has not been kept busy runs
 *                         kernels this much faster (1500: 1.5x), like a GPU
 *                         whose clock is only pulled down by sustained load;
 *                         default 1000 (none). See boosted().
 *   FAKECUDA_CTX_V4_FORWARDS=1  cuCtxCreate_v4 with NULL params creates the
 *                         context through cuCtxCreate_v3, looked up by name
 *
 * What a process holds beyond its allocations (contexts, limits, module
 * globals, graph pools, hidden memory) and the knobs for it: fake_usage.c.
 *
 * Launches run on a simulated clock: a kernel's CUfunction (and a graph's
 * CUgraphExec from fakecuda_graph_exec) is its duration in microseconds.
 * Work queued on a device runs one item at a time, so a stream's event
 * completes (cuEventQuery stops answering CUDA_ERROR_NOT_READY) once the
 * device has "run" everything queued before it. A device with nothing
 * queued sits idle: the gaps a program leaves between launches (host work,
 * synchronisations) are idle time, and the fake NVML's device utilisation
 * reports the busy share with them. Streams can capture
 * (cuStreamBeginCapture_v2): captured work does not run, and an event
 * recorded on a capturing stream, or on the legacy stream while any stream
 * captures, is counted as a capture violation for the tests.
 */
#include "cuda_abi.h"
#include "fake_clock.h"
#include "fake_common.h"
#include "fake_usage.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FAKE_EXPORT __attribute__((visibility("default")))
#define MAX_DEV     16
/* CUDA_ERROR_ILLEGAL_STATE (401), which gpucap itself never needs. */
#define CUDA_ERROR_ILLEGAL_STATE_FAKE ((CUresult)401)

struct fake_stream;

struct fake_ctx {
	unsigned magic;
	int ordinal;
	bool primary;
	int refs;
	struct fake_stream *legacy; /* the context's NULL stream, made on first use */
};
#define CTX_MAGIC 0xc0ffee01u

struct fake_pool {
	int ordinal;
	uint64_t reserved;
	uint64_t used;
	uint64_t release_threshold; /* kept at a synchronisation */
	bool is_default;
	bool destroyed;
};

struct fake_dev {
	int physical;
	uint64_t used;
	struct fake_ctx primary;
	struct fake_pool default_pool;
	struct fake_pool *current_pool;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static bool initialised;
static int visible_count;
static struct fake_dev devs[MAX_DEV];
static uint64_t total_bytes;
static _Thread_local struct fake_ctx *current;

/* ---- Allocation records ---------------------------------------------------- */

enum rec_kind { REC_PTR, REC_HANDLE, REC_ARRAY, REC_IPC, REC_POOLPTR };

struct rec {
	struct rec *next;
	enum rec_kind kind;
	uint64_t key;
	uint64_t bytes;
	int ordinal;
	bool owns_memory;
	struct fake_pool *pool;
};

static struct rec *recs;
static uint64_t next_address = 0x7f0000000000ull;
static uint64_t next_address_v1 = 0x10000000ull;
static uint64_t next_handle = 0x1000;

static struct rec *rec_add(enum rec_kind kind, uint64_t key, uint64_t bytes, int ordinal, bool owns)
{
	struct rec *r = calloc(1, sizeof(*r));
	r->kind = kind;
	r->key = key;
	r->bytes = bytes;
	r->ordinal = ordinal;
	r->owns_memory = owns;
	r->next = recs;
	recs = r;
	return r;
}

static struct rec *rec_take(enum rec_kind kind, uint64_t key)
{
	for (struct rec **p = &recs; *p; p = &(*p)->next) {
		if ((*p)->kind == kind && (*p)->key == key) {
			struct rec *r = *p;
			*p = r->next;
			return r;
		}
	}
	return NULL;
}

static struct rec *rec_find(enum rec_kind kind, uint64_t key)
{
	for (struct rec *r = recs; r; r = r->next)
		if (r->kind == kind && r->key == key)
			return r;
	return NULL;
}

/* ---- Devices ------------------------------------------------------------- */

static void init_devices(void)
{
	fake_devices_load();
	const char *total = getenv("FAKECUDA_TOTAL_BYTES");
	total_bytes = total ? strtoull(total, NULL, 0) : (16ull << 30);
	int order[MAX_DEV];
	visible_count = fake_visible_order(order, MAX_DEV);
	for (int i = 0; i < visible_count; i++) {
		memset(&devs[i], 0, sizeof(devs[i]));
		devs[i].physical = order[i];
		devs[i].primary.magic = CTX_MAGIC;
		devs[i].primary.ordinal = i;
		devs[i].primary.primary = true;
		devs[i].default_pool.ordinal = i;
		devs[i].default_pool.is_default = true;
		devs[i].current_pool = &devs[i].default_pool;
	}
}

FAKE_EXPORT CUresult cuInit(unsigned int flags)
{
	if (flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	if (!initialised) {
		init_devices();
		initialised = true;
	}
	pthread_mutex_unlock(&lock);
	return visible_count > 0 ? CUDA_SUCCESS : CUDA_ERROR_NO_DEVICE;
}

#define NEED_INIT()                                                                                          \
	do {                                                                                                 \
		if (!initialised)                                                                            \
			return CUDA_ERROR_NOT_INITIALIZED;                                                   \
	} while (0)

#define NEED_DEV(d)                                                                                          \
	do {                                                                                                 \
		if ((d) < 0 || (d) >= visible_count)                                                         \
			return CUDA_ERROR_INVALID_DEVICE;                                                    \
	} while (0)

FAKE_EXPORT CUresult cuDriverGetVersion(int *version)
{
	if (!version)
		return CUDA_ERROR_INVALID_VALUE;
	*version = 13000;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetCount(int *count)
{
	NEED_INIT();
	if (!count)
		return CUDA_ERROR_INVALID_VALUE;
	*count = visible_count;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGet(CUdevice *device, int ordinal)
{
	NEED_INIT();
	if (!device)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(ordinal);
	*device = ordinal;
	return CUDA_SUCCESS;
}

static CUresult get_uuid(CUuuid *uuid, CUdevice dev)
{
	NEED_INIT();
	if (!uuid)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(dev);
	memcpy(uuid->bytes, fake_device_uuid_bytes(devs[dev].physical), 16);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetUuid(CUuuid *uuid, CUdevice dev)
{
	return get_uuid(uuid, dev);
}

FAKE_EXPORT CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev)
{
	return get_uuid(uuid, dev);
}

FAKE_EXPORT CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
	NEED_INIT();
	if (!bytes)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(dev);
	*bytes = total_bytes;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceTotalMem(unsigned int *bytes, CUdevice dev)
{
	size_t wide;
	CUresult r = cuDeviceTotalMem_v2(bytes ? &wide : NULL, dev);
	if (r == CUDA_SUCCESS)
		*bytes = wide > 0xffffffffu ? 0xffffffffu : (unsigned int)wide;
	return r;
}

/* ---- Contexts -------------------------------------------------------------- */

static CUresult ctx_create(CUcontext *pctx, CUdevice dev)
{
	NEED_INIT();
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(dev);
	struct fake_ctx *ctx = calloc(1, sizeof(*ctx));
	ctx->magic = CTX_MAGIC;
	ctx->ordinal = dev;
	current = ctx;
	*pctx = (CUcontext)ctx;
	fake_usage_context(dev, +1);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxCreate(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
	(void)flags;
	return ctx_create(pctx, dev);
}

FAKE_EXPORT CUresult cuCtxCreate_v2(CUcontext *pctx, unsigned int flags, CUdevice dev)
{
	(void)flags;
	return ctx_create(pctx, dev);
}

FAKE_EXPORT CUresult cuCtxCreate_v3(CUcontext *pctx, CUexecAffinityParam *params, int n, unsigned int flags,
                                    CUdevice dev)
{
	(void)params;
	(void)n;
	(void)flags;
	return ctx_create(pctx, dev);
}

/* FAKECUDA_CTX_V4_FORWARDS=1: a driver whose cuCtxCreate_v4 creates the
 * context through its own older entry point, looked up by name (so an
 * interposed wrapper sees a second creation nested in the first). */
FAKE_EXPORT CUresult cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *params, unsigned int flags,
                                    CUdevice dev)
{
	const char *forward = getenv("FAKECUDA_CTX_V4_FORWARDS");
	if (!params && forward && strcmp(forward, "1") == 0) {
		CUresult (*v3)(CUcontext *, CUexecAffinityParam *, int, unsigned int, CUdevice) =
		    (CUresult(*)(CUcontext *, CUexecAffinityParam *, int, unsigned int, CUdevice))dlsym(
		        RTLD_DEFAULT, "cuCtxCreate_v3");
		if (v3)
			return v3(pctx, NULL, 0, flags, dev);
	}
	(void)params;
	return ctx_create(pctx, dev);
}

static CUresult ctx_destroy(CUcontext c)
{
	NEED_INIT();
	struct fake_ctx *ctx = (struct fake_ctx *)c;
	if (!ctx || ctx->magic != CTX_MAGIC || ctx->primary)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (current == ctx)
		current = NULL;
	ctx->magic = 0;
	fake_usage_context(ctx->ordinal, -1);
	free(ctx->legacy);
	free(ctx);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxDestroy(CUcontext ctx)
{
	return ctx_destroy(ctx);
}

FAKE_EXPORT CUresult cuCtxDestroy_v2(CUcontext ctx)
{
	return ctx_destroy(ctx);
}

FAKE_EXPORT CUresult cuCtxSetCurrent(CUcontext ctx)
{
	NEED_INIT();
	struct fake_ctx *c = (struct fake_ctx *)ctx;
	if (c && c->magic != CTX_MAGIC)
		return CUDA_ERROR_INVALID_CONTEXT;
	current = c;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxGetCurrent(CUcontext *pctx)
{
	NEED_INIT();
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	*pctx = (CUcontext)current;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxGetDevice(CUdevice *device)
{
	NEED_INIT();
	if (!device)
		return CUDA_ERROR_INVALID_VALUE;
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	*device = current->ordinal;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
	NEED_INIT();
	if (!pctx)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(dev);
	pthread_mutex_lock(&lock);
	bool first = devs[dev].primary.refs++ == 0;
	pthread_mutex_unlock(&lock);
	if (first)
		fake_usage_context(dev, +1);
	*pctx = (CUcontext)&devs[dev].primary;
	return CUDA_SUCCESS;
}

static CUresult primary_release(CUdevice dev)
{
	NEED_INIT();
	NEED_DEV(dev);
	CUresult r = CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	if (devs[dev].primary.refs == 0)
		r = CUDA_ERROR_INVALID_CONTEXT;
	else
		devs[dev].primary.refs--;
	bool last = r == CUDA_SUCCESS && devs[dev].primary.refs == 0;
	pthread_mutex_unlock(&lock);
	if (last)
		fake_usage_context(dev, -1);
	return r;
}

FAKE_EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice dev)
{
	return primary_release(dev);
}

FAKE_EXPORT CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
	return primary_release(dev);
}

/* ---- Linear memory ------------------------------------------------------- */

/* Charge the device; caller holds lock. */
static bool charge(int ordinal, uint64_t bytes)
{
	if (bytes > total_bytes - devs[ordinal].used)
		return false;
	devs[ordinal].used += bytes;
	return true;
}

static void uncharge(int ordinal, uint64_t bytes)
{
	devs[ordinal].used -= bytes;
}

static CUresult alloc_common(uint64_t *out, uint64_t bytes, bool small_address)
{
	NEED_INIT();
	if (!out || bytes == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	CUresult r = CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	if (!charge(current->ordinal, bytes)) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
	} else {
		uint64_t *next = small_address ? &next_address_v1 : &next_address;
		*out = *next;
		*next += (bytes + 511) & ~511ull;
		rec_add(REC_PTR, *out, bytes, current->ordinal, true);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
	uint64_t p;
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	/* FAKECUDA_ALLOC_TAKES_NS: the time the driver takes, on the fake
	 * clock, before it holds the memory (a large allocation on a busy
	 * GPU); meanwhile the process's NVML figure lacks it. */
	const char *takes = getenv("FAKECUDA_ALLOC_TAKES_NS");
	if (takes && *takes)
		fakeclock_sleep(strtoull(takes, NULL, 10));
	CUresult r = alloc_common(&p, bytesize, false);
	if (r == CUDA_SUCCESS)
		*dptr = p;
	return r;
}

FAKE_EXPORT CUresult cuMemAlloc(CUdeviceptr_v1 *dptr, unsigned int bytesize)
{
	uint64_t p;
	if (!dptr)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult r = alloc_common(&p, bytesize, true);
	if (r == CUDA_SUCCESS)
		*dptr = (CUdeviceptr_v1)p;
	return r;
}

FAKE_EXPORT CUresult cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize, unsigned int flags)
{
	if (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST)
		return CUDA_ERROR_INVALID_VALUE;
	return cuMemAlloc_v2(dptr, bytesize);
}

FAKE_EXPORT CUresult cuMemAllocPitch_v2(CUdeviceptr *dptr, size_t *pPitch, size_t width, size_t height,
                                        unsigned int elem)
{
	if (!dptr || !pPitch || width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
		return CUDA_ERROR_INVALID_VALUE;
	size_t pitch = (width + 511) & ~(size_t)511;
	uint64_t p;
	CUresult r = alloc_common(&p, (uint64_t)pitch * height, false);
	if (r == CUDA_SUCCESS) {
		*dptr = p;
		*pPitch = pitch;
	}
	return r;
}

FAKE_EXPORT CUresult cuMemAllocPitch(CUdeviceptr_v1 *dptr, unsigned int *pPitch, unsigned int width,
                                     unsigned int height, unsigned int elem)
{
	if (!dptr || !pPitch || width == 0 || height == 0 || (elem != 4 && elem != 8 && elem != 16))
		return CUDA_ERROR_INVALID_VALUE;
	unsigned int pitch = (width + 511) & ~511u;
	uint64_t p;
	CUresult r = alloc_common(&p, (uint64_t)pitch * height, true);
	if (r == CUDA_SUCCESS) {
		*dptr = (CUdeviceptr_v1)p;
		*pPitch = pitch;
	}
	return r;
}

static void pool_return_locked(struct fake_pool *pool, uint64_t bytes);

static CUresult free_common(uint64_t dptr)
{
	NEED_INIT();
	if (dptr == 0)
		return CUDA_SUCCESS;
	CUresult r = CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	struct rec *rec = rec_take(REC_PTR, dptr);
	if (!rec)
		rec = rec_take(REC_POOLPTR, dptr);
	if (!rec) {
		r = CUDA_ERROR_INVALID_VALUE;
	} else {
		if (rec->pool)
			pool_return_locked(rec->pool, rec->bytes);
		else
			uncharge(rec->ordinal, rec->bytes);
		free(rec);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuMemFree_v2(CUdeviceptr dptr)
{
	return free_common(dptr);
}

FAKE_EXPORT CUresult cuMemFree(CUdeviceptr_v1 dptr)
{
	return free_common(dptr);
}

static CUresult get_info(uint64_t *f, uint64_t *t)
{
	NEED_INIT();
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	pthread_mutex_lock(&lock);
	*t = total_bytes;
	*f = total_bytes - devs[current->ordinal].used;
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemGetInfo_v2(size_t *freeBytes, size_t *totalBytes)
{
	if (!freeBytes || !totalBytes)
		return CUDA_ERROR_INVALID_VALUE;
	uint64_t f, t;
	CUresult r = get_info(&f, &t);
	if (r == CUDA_SUCCESS) {
		*freeBytes = f;
		*totalBytes = t;
	}
	return r;
}

FAKE_EXPORT CUresult cuMemGetInfo(unsigned int *freeBytes, unsigned int *totalBytes)
{
	if (!freeBytes || !totalBytes)
		return CUDA_ERROR_INVALID_VALUE;
	uint64_t f, t;
	CUresult r = get_info(&f, &t);
	if (r == CUDA_SUCCESS) {
		*freeBytes = f > 0xffffffffu ? 0xffffffffu : (unsigned int)f;
		*totalBytes = t > 0xffffffffu ? 0xffffffffu : (unsigned int)t;
	}
	return r;
}

/* ---- IPC ------------------------------------------------------------------- */

FAKE_EXPORT CUresult cuIpcGetMemHandle(CUipcMemHandle *handle, CUdeviceptr dptr)
{
	NEED_INIT();
	if (!handle)
		return CUDA_ERROR_INVALID_VALUE;
	memset(handle, 0, sizeof(*handle));
	memcpy(handle->reserved, &dptr, sizeof(dptr));
	return CUDA_SUCCESS;
}

static CUresult ipc_open(CUdeviceptr *pdptr, CUipcMemHandle handle)
{
	NEED_INIT();
	if (!pdptr)
		return CUDA_ERROR_INVALID_VALUE;
	uint64_t source;
	memcpy(&source, handle.reserved, sizeof(source));
	if (source == 0)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&lock);
	/* The exporter owns the memory: a fresh mapping, no charge. */
	*pdptr = next_address;
	next_address += 1 << 20;
	rec_add(REC_IPC, *pdptr, 0, current ? current->ordinal : 0, false);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuIpcOpenMemHandle(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int flags)
{
	(void)flags;
	return ipc_open(pdptr, handle);
}

FAKE_EXPORT CUresult cuIpcOpenMemHandle_v2(CUdeviceptr *pdptr, CUipcMemHandle handle, unsigned int flags)
{
	(void)flags;
	return ipc_open(pdptr, handle);
}

FAKE_EXPORT CUresult cuIpcCloseMemHandle(CUdeviceptr dptr)
{
	NEED_INIT();
	pthread_mutex_lock(&lock);
	struct rec *rec = rec_take(REC_IPC, dptr);
	pthread_mutex_unlock(&lock);
	if (!rec)
		return CUDA_ERROR_INVALID_VALUE;
	free(rec);
	return CUDA_SUCCESS;
}

/* ---- Virtual memory management ------------------------------------------ */

FAKE_EXPORT CUresult cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                                 const CUmemAllocationProp *prop, unsigned long long flags)
{
	NEED_INIT();
	if (!handle || !prop || size == 0 || flags != 0 || prop->type != CU_MEM_ALLOCATION_TYPE_PINNED)
		return CUDA_ERROR_INVALID_VALUE;
	if (prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_NOT_SUPPORTED;
	NEED_DEV(prop->location.id);
	CUresult r = CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	if (!charge(prop->location.id, size)) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
	} else {
		*handle = next_handle++;
		rec_add(REC_HANDLE, *handle, size, prop->location.id, true);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuMemRelease(CUmemGenericAllocationHandle handle)
{
	NEED_INIT();
	pthread_mutex_lock(&lock);
	struct rec *rec = rec_take(REC_HANDLE, handle);
	if (rec && rec->owns_memory)
		uncharge(rec->ordinal, rec->bytes);
	pthread_mutex_unlock(&lock);
	if (!rec)
		return CUDA_ERROR_INVALID_VALUE;
	free(rec);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemExportToShareableHandle(void *shareable, CUmemGenericAllocationHandle handle,
                                                  CUmemAllocationHandleType type, unsigned long long flags)
{
	NEED_INIT();
	(void)flags;
	if (!shareable || type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	struct rec *rec = rec_find(REC_HANDLE, handle);
	pthread_mutex_unlock(&lock);
	if (!rec)
		return CUDA_ERROR_INVALID_VALUE;
	*(int *)shareable = (int)handle;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemImportFromShareableHandle(CUmemGenericAllocationHandle *handle, void *os_handle,
                                                    CUmemAllocationHandleType type)
{
	NEED_INIT();
	if (!handle || type != CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR)
		return CUDA_ERROR_INVALID_VALUE;
	int fd = (int)(intptr_t)os_handle;
	pthread_mutex_lock(&lock);
	/* The exporter owns the memory: a new handle, no charge. */
	*handle = next_handle++;
	rec_add(REC_HANDLE, *handle, (uint64_t)fd, current ? current->ordinal : 0, false);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment, CUdeviceptr addr,
                                         unsigned long long flags)
{
	NEED_INIT();
	(void)alignment;
	(void)addr;
	(void)flags;
	if (!ptr || size == 0)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	*ptr = next_address;
	next_address += (size + 0x1fffff) & ~0x1fffffull;
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
	(void)ptr;
	(void)size;
	NEED_INIT();
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                              CUmemGenericAllocationHandle handle, unsigned long long flags)
{
	(void)ptr;
	(void)size;
	(void)offset;
	(void)flags;
	NEED_INIT();
	pthread_mutex_lock(&lock);
	struct rec *rec = rec_find(REC_HANDLE, handle);
	pthread_mutex_unlock(&lock);
	return rec ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

FAKE_EXPORT CUresult cuMemUnmap(CUdeviceptr ptr, size_t size)
{
	(void)ptr;
	(void)size;
	NEED_INIT();
	return CUDA_SUCCESS;
}

/* ---- Pools ----------------------------------------------------------------- */

static void pool_trim_locked(struct fake_pool *pool, uint64_t keep)
{
	uint64_t floor = pool->used > keep ? pool->used : keep;
	if (pool->reserved > floor) {
		uncharge(pool->ordinal, pool->reserved - floor);
		pool->reserved = floor;
	}
}

static void pool_return_locked(struct fake_pool *pool, uint64_t bytes)
{
	pool->used -= bytes;
	/* Freed memory stays in the pool until trimmed or synchronised; a
	 * destroyed pool gives it back at once. */
	if (pool->destroyed) {
		pool_trim_locked(pool, 0);
		if (pool->used == 0)
			free(pool);
	}
}

FAKE_EXPORT CUresult cuDeviceGetDefaultMemPool(CUmemoryPool *pool, CUdevice dev)
{
	NEED_INIT();
	if (!pool)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(dev);
	*pool = (CUmemoryPool)&devs[dev].default_pool;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceGetMemPool(CUmemoryPool *pool, CUdevice dev)
{
	NEED_INIT();
	if (!pool)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(dev);
	*pool = (CUmemoryPool)devs[dev].current_pool;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuDeviceSetMemPool(CUdevice dev, CUmemoryPool pool)
{
	NEED_INIT();
	NEED_DEV(dev);
	if (!pool)
		return CUDA_ERROR_INVALID_VALUE;
	devs[dev].current_pool = (struct fake_pool *)pool;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemPoolCreate(CUmemoryPool *pool, const CUmemPoolProps *props)
{
	NEED_INIT();
	if (!pool || !props || props->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
		return CUDA_ERROR_INVALID_VALUE;
	NEED_DEV(props->location.id);
	struct fake_pool *p = calloc(1, sizeof(*p));
	p->ordinal = props->location.id;
	*pool = (CUmemoryPool)p;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemPoolDestroy(CUmemoryPool pool)
{
	NEED_INIT();
	struct fake_pool *p = (struct fake_pool *)pool;
	if (!p || p->is_default)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	p->destroyed = true;
	pool_trim_locked(p, 0);
	if (devs[p->ordinal].current_pool == p)
		devs[p->ordinal].current_pool = &devs[p->ordinal].default_pool;
	/* Live allocations keep it until their free. */
	if (p->used == 0)
		free(p);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemPoolTrimTo(CUmemoryPool pool, size_t keep)
{
	NEED_INIT();
	if (!pool)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	pool_trim_locked((struct fake_pool *)pool, keep);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
	NEED_INIT();
	struct fake_pool *p = (struct fake_pool *)pool;
	if (!p || !value)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	CUresult r = CUDA_SUCCESS;
	switch (attr) {
	case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT:
		*(cuuint64_t *)value = p->reserved;
		break;
	case CU_MEMPOOL_ATTR_USED_MEM_CURRENT:
		*(cuuint64_t *)value = p->used;
		break;
	case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
		*(cuuint64_t *)value = p->release_threshold;
		break;
	default:
		r = CUDA_ERROR_INVALID_VALUE;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuMemPoolSetAttribute(CUmemoryPool pool, CUmemPool_attribute attr, void *value)
{
	NEED_INIT();
	struct fake_pool *p = (struct fake_pool *)pool;
	if (!p || !value || attr != CU_MEMPOOL_ATTR_RELEASE_THRESHOLD)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	p->release_threshold = *(cuuint64_t *)value;
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

static CUresult pool_alloc(CUdeviceptr *dptr, size_t bytes, struct fake_pool *pool)
{
	NEED_INIT();
	if (!dptr || bytes == 0 || !pool)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult r = CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	uint64_t idle = pool->reserved - pool->used;
	if (idle < bytes) {
		if (!charge(pool->ordinal, bytes - idle)) {
			r = CUDA_ERROR_OUT_OF_MEMORY;
			goto out;
		}
		pool->reserved += bytes - idle;
	}
	pool->used += bytes;
	*dptr = next_address;
	next_address += (bytes + 511) & ~511ull;
	rec_add(REC_POOLPTR, *dptr, bytes, pool->ordinal, true)->pool = pool;
out:
	pthread_mutex_unlock(&lock);
	return r;
}

static bool stream_capturing(CUstream h, bool per_thread);
static void captured_alloc(CUstream h, bool per_thread, uint64_t bytes, int ordinal);

/* A stream-ordered allocation on a capturing stream makes an allocation
 * node: an address, and no memory until the graph runs (the graph pool
 * takes it then, fake_usage.c). Freed on a capturing stream: a free node. */
#define NODE_ADDRESS_BASE UINT64_C(0x600000000000)
static _Atomic uint64_t next_node_address = NODE_ADDRESS_BASE;

static bool node_address(CUdeviceptr p)
{
	return p >= NODE_ADDRESS_BASE && p < atomic_load(&next_node_address);
}

static CUresult alloc_async(CUdeviceptr *dptr, size_t bytes, struct fake_pool *pool, CUstream stream,
                            bool per_thread)
{
	NEED_INIT();
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (stream_capturing(stream, per_thread)) {
		*dptr = atomic_fetch_add(&next_node_address,
		                         (bytes + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1));
		captured_alloc(stream, per_thread, bytes, current->ordinal);
		return CUDA_SUCCESS;
	}
	return pool_alloc(dptr, bytes, pool ? pool : devs[current->ordinal].current_pool);
}

FAKE_EXPORT CUresult cuMemAllocAsync(CUdeviceptr *dptr, size_t bytes, CUstream stream)
{
	return alloc_async(dptr, bytes, NULL, stream, false);
}

FAKE_EXPORT CUresult cuMemAllocAsync_ptsz(CUdeviceptr *dptr, size_t bytes, CUstream stream)
{
	return alloc_async(dptr, bytes, NULL, stream, true);
}

FAKE_EXPORT CUresult cuMemAllocFromPoolAsync(CUdeviceptr *dptr, size_t bytes, CUmemoryPool pool,
                                             CUstream stream)
{
	return alloc_async(dptr, bytes, (struct fake_pool *)pool, stream, false);
}

FAKE_EXPORT CUresult cuMemAllocFromPoolAsync_ptsz(CUdeviceptr *dptr, size_t bytes, CUmemoryPool pool,
                                                  CUstream stream)
{
	return alloc_async(dptr, bytes, (struct fake_pool *)pool, stream, true);
}

FAKE_EXPORT CUresult cuMemFreeAsync(CUdeviceptr dptr, CUstream stream)
{
	(void)stream;
	return node_address(dptr) ? CUDA_SUCCESS : free_common(dptr);
}

FAKE_EXPORT CUresult cuMemFreeAsync_ptsz(CUdeviceptr dptr, CUstream stream)
{
	(void)stream;
	return node_address(dptr) ? CUDA_SUCCESS : free_common(dptr);
}

static void stream_wait_done(CUstream stream, bool per_thread);

/* A synchronisation waits for the stream's work and releases what pools
 * hold above their threshold (0). */
FAKE_EXPORT CUresult cuStreamSynchronize(CUstream stream)
{
	NEED_INIT();
	stream_wait_done(stream, false);
	pthread_mutex_lock(&lock);
	for (int i = 0; i < visible_count; i++)
		pool_trim_locked(&devs[i].default_pool, devs[i].default_pool.release_threshold);
	pthread_mutex_unlock(&lock);
	return CUDA_SUCCESS;
}

/* ---- Arrays -------------------------------------------------------------- */

static CUresult array_alloc(void *handle_out, uint64_t bytes)
{
	NEED_INIT();
	if (!handle_out || bytes == 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	CUresult r = CUDA_SUCCESS;
	pthread_mutex_lock(&lock);
	if (!charge(current->ordinal, bytes)) {
		r = CUDA_ERROR_OUT_OF_MEMORY;
	} else {
		uint64_t h = next_handle++ << 4;
		*(void **)handle_out = (void *)(uintptr_t)h;
		rec_add(REC_ARRAY, h, bytes, current->ordinal, true);
	}
	pthread_mutex_unlock(&lock);
	return r;
}

static uint64_t elem(CUarray_format f, unsigned ch)
{
	switch (f) {
	case CU_AD_FORMAT_UNSIGNED_INT8:
	case CU_AD_FORMAT_SIGNED_INT8:
		return ch;
	case CU_AD_FORMAT_UNSIGNED_INT16:
	case CU_AD_FORMAT_SIGNED_INT16:
	case CU_AD_FORMAT_HALF:
		return 2ull * ch;
	default:
		return 4ull * ch;
	}
}

static uint64_t dims(uint64_t w, uint64_t h, uint64_t d)
{
	return w * (h ? h : 1) * (d ? d : 1);
}

FAKE_EXPORT CUresult cuArrayCreate_v2(CUarray *h, const CUDA_ARRAY_DESCRIPTOR *d)
{
	if (!d)
		return CUDA_ERROR_INVALID_VALUE;
	return array_alloc(h, dims(d->Width, d->Height, 1) * elem(d->Format, d->NumChannels));
}

FAKE_EXPORT CUresult cuArrayCreate(CUarray *h, const CUDA_ARRAY_DESCRIPTOR_v1 *d)
{
	if (!d)
		return CUDA_ERROR_INVALID_VALUE;
	return array_alloc(h, dims(d->Width, d->Height, 1) * elem(d->Format, d->NumChannels));
}

FAKE_EXPORT CUresult cuArray3DCreate_v2(CUarray *h, const CUDA_ARRAY3D_DESCRIPTOR *d)
{
	if (!d)
		return CUDA_ERROR_INVALID_VALUE;
	return array_alloc(h, dims(d->Width, d->Height, d->Depth) * elem(d->Format, d->NumChannels));
}

FAKE_EXPORT CUresult cuArray3DCreate(CUarray *h, const CUDA_ARRAY3D_DESCRIPTOR_v1 *d)
{
	if (!d)
		return CUDA_ERROR_INVALID_VALUE;
	return array_alloc(h, dims(d->Width, d->Height, d->Depth) * elem(d->Format, d->NumChannels));
}

FAKE_EXPORT CUresult cuMipmappedArrayCreate(CUmipmappedArray *h, const CUDA_ARRAY3D_DESCRIPTOR *d,
                                            unsigned int levels)
{
	if (!d || levels == 0)
		return CUDA_ERROR_INVALID_VALUE;
	return array_alloc(h, 2 * dims(d->Width, d->Height, d->Depth) * elem(d->Format, d->NumChannels));
}

static CUresult array_free(uint64_t h)
{
	NEED_INIT();
	pthread_mutex_lock(&lock);
	struct rec *rec = rec_take(REC_ARRAY, h);
	if (rec)
		uncharge(rec->ordinal, rec->bytes);
	pthread_mutex_unlock(&lock);
	if (!rec)
		return CUDA_ERROR_INVALID_HANDLE;
	free(rec);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuArrayDestroy(CUarray h)
{
	return array_free((uint64_t)(uintptr_t)h);
}

FAKE_EXPORT CUresult cuMipmappedArrayDestroy(CUmipmappedArray h)
{
	return array_free((uint64_t)(uintptr_t)h);
}

/* ---- Streams, events, launches, capture ------------------------------------ */

#define STREAM_MAGIC 0x57eea301u
#define EVENT_MAGIC  0xe7e77e01u
#define GRAPH_MAGIC  0x62a9b401u

struct fake_stream {
	unsigned magic;
	int ordinal;
	bool destroyed;
	bool capturing;
	bool invalidated;
	uint64_t captured_ns;          /* work captured so far */
	uint64_t captured_alloc_bytes; /* allocation nodes captured so far */
	int captured_alloc_ordinal;
	CUstreamCaptureMode capture_mode;
	const void *capture_thread; /* the thread that began the capture */
	uint64_t last_end_ns;       /* when its last queued work completes */
	struct fake_stream *next_all;
};

struct fake_event {
	unsigned magic;
	bool recorded;
	uint64_t done_ns;
};

struct fake_graph {
	unsigned magic;
	uint64_t work_ns;
};

/* Every stream ever created, never freed: a use after destroy is detected,
 * not a crash. */
static struct fake_stream *all_streams;
static _Thread_local struct fake_stream per_thread_stream = {.magic = STREAM_MAGIC};
static uint64_t dev_busy_until[MAX_DEV];
static uint64_t dev_busy_total[MAX_DEV];
/* Another context's time slices (fakecuda_set_time_slices): each kernel
 * takes this many thousandths of its own time; 0 or 1000: none. */
static unsigned dev_slices_permille[MAX_DEV];
static int capturing_count;
static uint64_t stat_event_records, stat_capture_violations, stat_use_after_destroy;
static uint64_t stat_launches[8];
static _Thread_local struct fake_ctx *ctx_stack[8];
static _Thread_local int ctx_depth;
static _Thread_local CUstreamCaptureMode thread_capture_mode = CU_STREAM_CAPTURE_MODE_GLOBAL;
static _Thread_local char thread_id_byte; /* its address names the thread */

/* A "potentially unsafe" call (an event query, a synchronisation) while a
 * capture forbids it: another thread's global-mode capture unless this
 * thread is relaxed, or this thread's own capture unless begun relaxed. The
 * driver then invalidates the captures; the tests count it. Caller holds
 * lock. */
static bool unsafe_during_capture(void)
{
	bool unsafe = false;
	for (struct fake_stream *c = all_streams; c; c = c->next_all) {
		if (!c->capturing || c->destroyed)
			continue;
		bool mine = c->capture_thread == &thread_id_byte;
		if ((mine && c->capture_mode != CU_STREAM_CAPTURE_MODE_RELAXED) ||
		    (!mine && c->capture_mode == CU_STREAM_CAPTURE_MODE_GLOBAL &&
		     thread_capture_mode != CU_STREAM_CAPTURE_MODE_RELAXED))
			unsafe = true;
	}
	if (unsafe) {
		stat_capture_violations++;
		for (struct fake_stream *c = all_streams; c; c = c->next_all)
			if (c->capturing)
				c->invalidated = true;
	}
	return unsafe;
}

FAKE_EXPORT CUresult cuThreadExchangeStreamCaptureMode(CUstreamCaptureMode *mode)
{
	if (!mode)
		return CUDA_ERROR_INVALID_VALUE;
	CUstreamCaptureMode old = thread_capture_mode;
	thread_capture_mode = *mode;
	*mode = old;
	return CUDA_SUCCESS;
}

/* The fake GPU runs on the fake clock (fake_clock.h): simulated time under
 * GPUCAP_TEST_CLOCK=simulated, the system's otherwise. */
static uint64_t mono_now(void)
{
	return fakeclock_now();
}

/* The stream a handle names for this thread; caller holds lock. NULL when
 * it names nothing (no context, destroyed). */
static struct fake_stream *stream_of(CUstream h, bool per_thread, CUresult *err)
{
	*err = CUDA_SUCCESS;
	if ((h == NULL && per_thread) || h == CU_STREAM_PER_THREAD) {
		if (!current) {
			*err = CUDA_ERROR_INVALID_CONTEXT;
			return NULL;
		}
		per_thread_stream.ordinal = current->ordinal;
		return &per_thread_stream;
	}
	if (h == NULL || h == CU_STREAM_LEGACY) {
		if (!current) {
			*err = CUDA_ERROR_INVALID_CONTEXT;
			return NULL;
		}
		if (!current->legacy) {
			current->legacy = calloc(1, sizeof(*current->legacy));
			current->legacy->magic = STREAM_MAGIC;
			current->legacy->ordinal = current->ordinal;
		}
		return current->legacy;
	}
	struct fake_stream *s = (struct fake_stream *)h;
	if (s->magic != STREAM_MAGIC) {
		*err = CUDA_ERROR_INVALID_HANDLE;
		return NULL;
	}
	if (s->destroyed) {
		stat_use_after_destroy++;
		*err = CUDA_ERROR_INVALID_HANDLE;
		return NULL;
	}
	return s;
}

static bool is_legacy(CUstream h, bool per_thread)
{
	return (h == NULL && !per_thread) || h == CU_STREAM_LEGACY;
}

FAKE_EXPORT CUresult cuStreamCreate(CUstream *phStream, unsigned int flags)
{
	(void)flags;
	NEED_INIT();
	if (!phStream)
		return CUDA_ERROR_INVALID_VALUE;
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	struct fake_stream *s = calloc(1, sizeof(*s));
	s->magic = STREAM_MAGIC;
	s->ordinal = current->ordinal;
	pthread_mutex_lock(&lock);
	s->next_all = all_streams;
	all_streams = s;
	pthread_mutex_unlock(&lock);
	*phStream = (CUstream)s;
	return CUDA_SUCCESS;
}

static CUresult stream_destroy(CUstream h)
{
	NEED_INIT();
	if (!h || h == CU_STREAM_LEGACY || h == CU_STREAM_PER_THREAD)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(h, false, &r);
	if (s) {
		if (s->capturing)
			capturing_count--;
		s->destroyed = true;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuStreamDestroy_v2(CUstream h)
{
	return stream_destroy(h);
}

FAKE_EXPORT CUresult cuStreamDestroy(CUstream h)
{
	return stream_destroy(h);
}

/* Clock boost: a heat bucket per device fills with its busy time and
 * drains at 90% of wall time, so only load above 90% fills it; a kernel that
 * starts while it holds less than BOOST_HOT_NS runs boost_permille / 1000
 * times faster. Full load cools the clock after ~0.2-0.3 s. Caller holds
 * lock. */
#define BOOST_HOT_NS   20000000ull
#define BOOST_HEAT_MAX 100000000ull
static uint64_t dev_heat[MAX_DEV], dev_heat_at[MAX_DEV];

static uint64_t boosted(int ordinal, uint64_t start, uint64_t work_ns)
{
	static long permille = -1;
	if (permille < 0) {
		const char *value = getenv("FAKECUDA_BOOST_PERMILLE");
		permille = value ? atol(value) : 1000;
		if (permille < 1000)
			permille = 1000;
	}
	if (permille == 1000)
		return work_ns;
	uint64_t cooled = (start - dev_heat_at[ordinal]) * 9 / 10;
	dev_heat[ordinal] = dev_heat[ordinal] > cooled ? dev_heat[ordinal] - cooled : 0;
	dev_heat_at[ordinal] = start;
	if (dev_heat[ordinal] < BOOST_HOT_NS)
		work_ns = work_ns * 1000u / (uint64_t)permille;
	dev_heat[ordinal] += work_ns;
	if (dev_heat[ordinal] > BOOST_HEAT_MAX)
		dev_heat[ordinal] = BOOST_HEAT_MAX;
	return work_ns;
}

/* Queue work_ns of work on a stream (caller holds lock): captured, or run
 * after everything queued on the device. */
static void enqueue(struct fake_stream *s, uint64_t work_ns)
{
	if (s->capturing) {
		s->captured_ns += work_ns;
		return;
	}
	uint64_t now = mono_now();
	uint64_t start = dev_busy_until[s->ordinal] > now ? dev_busy_until[s->ordinal] : now;
	work_ns = boosted(s->ordinal, start, work_ns);
	if (dev_slices_permille[s->ordinal] > 1000)
		work_ns = work_ns * dev_slices_permille[s->ordinal] / 1000u;
	dev_busy_until[s->ordinal] = start + work_ns;
	dev_busy_total[s->ordinal] += work_ns;
	s->last_end_ns = start + work_ns;
}

enum { L_KERNEL, L_KERNEL_PTSZ, L_EX, L_EX_PTSZ, L_COOP, L_COOP_PTSZ, L_GRAPH, L_GRAPH_PTSZ };

/* Like the driver's push buffer: a launch blocks while this much work is
 * queued on the device (FAKECUDA_QUEUE_MAX_NS overrides it: a real H100
 * queued four 50 ms kernels at once). */
#define QUEUE_MAX_NS 50000000ull

static uint64_t queue_max_ns(void)
{
	const char *v = getenv("FAKECUDA_QUEUE_MAX_NS");
	return v && *v ? strtoull(v, NULL, 10) : QUEUE_MAX_NS;
}
/* On simulated time a launch costs the launching thread this much, as the
 * driver's CPU work does (otherwise a loop of empty launches never lets
 * time move). */
#define LAUNCH_CPU_NS 2000ull

static CUresult launch(int kind, uint64_t work_ns, CUstream h, bool per_thread)
{
	NEED_INIT();
	pthread_mutex_lock(&lock);
	CUresult r;
	uint64_t backlog = 0;
	struct fake_stream *s = stream_of(h, per_thread, &r);
	if (s && is_legacy(h, per_thread) && capturing_count > 0)
		r = CUDA_ERROR_STREAM_CAPTURE_IMPLICIT; /* global capture mode */
	else if (s) {
		enqueue(s, work_ns);
		stat_launches[kind]++;
		uint64_t now = mono_now();
		uint64_t queue_max = queue_max_ns();
		if (!s->capturing && dev_busy_until[s->ordinal] > now + queue_max)
			backlog = dev_busy_until[s->ordinal] - now - queue_max;
	}
	pthread_mutex_unlock(&lock);
	if (backlog)
		fakeclock_sleep(backlog);
	else if (fakeclock_simulated())
		fakeclock_sleep(LAUNCH_CPU_NS);
	return r;
}

#define KERNEL_NS(f) fake_usage_launch(f)

FAKE_EXPORT CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                    unsigned int bx, unsigned int by, unsigned int bz, unsigned int shared,
                                    CUstream h, void **params, void **extra)
{
	(void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)params, (void)extra;
	return launch(L_KERNEL, KERNEL_NS(f), h, false);
}

FAKE_EXPORT CUresult cuLaunchKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz,
                                         unsigned int bx, unsigned int by, unsigned int bz,
                                         unsigned int shared, CUstream h, void **params, void **extra)
{
	(void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)params, (void)extra;
	return launch(L_KERNEL_PTSZ, KERNEL_NS(f), h, true);
}

FAKE_EXPORT CUresult cuLaunchKernelEx(const CUlaunchConfig *config, CUfunction f, void **params, void **extra)
{
	(void)params, (void)extra;
	if (!config)
		return CUDA_ERROR_INVALID_VALUE;
	return launch(L_EX, KERNEL_NS(f), config->hStream, false);
}

FAKE_EXPORT CUresult cuLaunchKernelEx_ptsz(const CUlaunchConfig *config, CUfunction f, void **params,
                                           void **extra)
{
	(void)params, (void)extra;
	if (!config)
		return CUDA_ERROR_INVALID_VALUE;
	return launch(L_EX_PTSZ, KERNEL_NS(f), config->hStream, true);
}

FAKE_EXPORT CUresult cuLaunchCooperativeKernel(CUfunction f, unsigned int gx, unsigned int gy,
                                               unsigned int gz, unsigned int bx, unsigned int by,
                                               unsigned int bz, unsigned int shared, CUstream h,
                                               void **params)
{
	(void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)params;
	return launch(L_COOP, KERNEL_NS(f), h, false);
}

FAKE_EXPORT CUresult cuLaunchCooperativeKernel_ptsz(CUfunction f, unsigned int gx, unsigned int gy,
                                                    unsigned int gz, unsigned int bx, unsigned int by,
                                                    unsigned int bz, unsigned int shared, CUstream h,
                                                    void **params)
{
	(void)gx, (void)gy, (void)gz, (void)bx, (void)by, (void)bz, (void)shared, (void)params;
	return launch(L_COOP_PTSZ, KERNEL_NS(f), h, true);
}

static CUresult graph_launch(int kind, CUgraphExec exec, CUstream h, bool per_thread)
{
	struct fake_graph *g = (struct fake_graph *)exec;
	if (!g || g->magic != GRAPH_MAGIC)
		return CUDA_ERROR_INVALID_VALUE;
	fake_usage_graph_launched(exec);
	return launch(kind, g->work_ns, h, per_thread);
}

FAKE_EXPORT CUresult cuGraphLaunch(CUgraphExec exec, CUstream h)
{
	return graph_launch(L_GRAPH, exec, h, false);
}

FAKE_EXPORT CUresult cuGraphLaunch_ptsz(CUgraphExec exec, CUstream h)
{
	return graph_launch(L_GRAPH_PTSZ, exec, h, true);
}

FAKE_EXPORT CUresult cuStreamBeginCapture_v2(CUstream h, CUstreamCaptureMode mode)
{
	NEED_INIT();
	if (is_legacy(h, false) || h == CU_STREAM_PER_THREAD)
		return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(h, false, &r);
	if (s && s->capturing)
		r = CUDA_ERROR_ILLEGAL_STATE_FAKE;
	else if (s) {
		s->capturing = true;
		s->invalidated = false;
		s->captured_ns = 0;
		s->capture_mode = mode;
		s->capture_thread = &thread_id_byte;
		capturing_count++;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuStreamEndCapture(CUstream h, CUgraph *graph)
{
	NEED_INIT();
	if (!graph)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(h, false, &r);
	if (s && !s->capturing)
		r = CUDA_ERROR_ILLEGAL_STATE_FAKE;
	else if (s) {
		s->capturing = false;
		capturing_count--;
		if (s->invalidated) {
			r = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
		} else {
			struct fake_graph *g = calloc(1, sizeof(*g));
			g->magic = GRAPH_MAGIC;
			g->work_ns = s->captured_ns;
			*graph = (CUgraph)g;
		}
	}
	uint64_t alloc_bytes = s ? s->captured_alloc_bytes : 0;
	int alloc_ordinal = s ? s->captured_alloc_ordinal : 0;
	if (s)
		s->captured_alloc_bytes = 0;
	pthread_mutex_unlock(&lock);
	if (r == CUDA_SUCCESS && alloc_bytes)
		fake_usage_graph_captured_alloc(*graph, alloc_bytes, alloc_ordinal);
	return r;
}

static void captured_alloc(CUstream h, bool per_thread, uint64_t bytes, int ordinal)
{
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(h, per_thread, &r);
	if (s && s->capturing) {
		s->captured_alloc_bytes += bytes;
		s->captured_alloc_ordinal = ordinal;
	}
	pthread_mutex_unlock(&lock);
}

static bool stream_capturing(CUstream h, bool per_thread)
{
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(h, per_thread, &r);
	bool capturing = s && s->capturing;
	pthread_mutex_unlock(&lock);
	return capturing;
}

FAKE_EXPORT CUresult cuStreamIsCapturing(CUstream h, CUstreamCaptureStatus *status)
{
	NEED_INIT();
	if (!status)
		return CUDA_ERROR_INVALID_VALUE;
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(h, false, &r);
	if (s && is_legacy(h, false) && capturing_count > 0)
		r = CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
	else if (s)
		*status = s->capturing ? (s->invalidated ? CU_STREAM_CAPTURE_STATUS_INVALIDATED
		                                         : CU_STREAM_CAPTURE_STATUS_ACTIVE)
		                       : CU_STREAM_CAPTURE_STATUS_NONE;
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuGraphInstantiateWithFlags(CUgraphExec *exec, CUgraph graph, unsigned long long flags)
{
	(void)flags;
	struct fake_graph *g = (struct fake_graph *)graph;
	if (!exec || !g || g->magic != GRAPH_MAGIC)
		return CUDA_ERROR_INVALID_VALUE;
	struct fake_graph *e = calloc(1, sizeof(*e));
	*e = *g;
	*exec = (CUgraphExec)e;
	fake_usage_graph_instantiated(graph, *exec);
	return CUDA_SUCCESS;
}

static CUresult graph_free(void *p)
{
	struct fake_graph *g = p;
	if (!g || g->magic != GRAPH_MAGIC)
		return CUDA_ERROR_INVALID_VALUE;
	g->magic = 0;
	fake_usage_graph_forget(g);
	free(g);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGraphCreate(CUgraph *phGraph, unsigned int flags)
{
	if (!phGraph || flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	struct fake_graph *g = calloc(1, sizeof(*g));
	g->magic = GRAPH_MAGIC;
	*phGraph = (CUgraph)g;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuGraphDestroy(CUgraph graph)
{
	return graph_free(graph);
}

FAKE_EXPORT CUresult cuGraphExecDestroy(CUgraphExec exec)
{
	return graph_free(exec);
}

FAKE_EXPORT CUresult cuEventCreate(CUevent *ev, unsigned int flags)
{
	NEED_INIT();
	if (!ev || (flags & ~0x7u))
		return CUDA_ERROR_INVALID_VALUE;
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	struct fake_event *e = calloc(1, sizeof(*e));
	e->magic = EVENT_MAGIC;
	*ev = (CUevent)e;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuEventRecord(CUevent ev, CUstream h)
{
	NEED_INIT();
	struct fake_event *e = (struct fake_event *)ev;
	if (!e || e->magic != EVENT_MAGIC)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(h, false, &r);
	if (s && is_legacy(h, false) && capturing_count > 0) {
		/* The legacy stream synchronises with every blocking stream: in
		 * global capture mode this invalidates the captures. */
		stat_capture_violations++;
		for (struct fake_stream *c = all_streams; c; c = c->next_all)
			if (c->capturing)
				c->invalidated = true;
		r = CUDA_ERROR_STREAM_CAPTURE_IMPLICIT;
	} else if (s && s->capturing) {
		/* The driver would add a node to the user's graph. */
		stat_capture_violations++;
	} else if (s) {
		e->recorded = true;
		e->done_ns = s->last_end_ns;
		stat_event_records++;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

FAKE_EXPORT CUresult cuEventQuery(CUevent ev)
{
	NEED_INIT();
	struct fake_event *e = (struct fake_event *)ev;
	if (!e || e->magic != EVENT_MAGIC)
		return CUDA_ERROR_INVALID_HANDLE;
	pthread_mutex_lock(&lock);
	bool unsafe = unsafe_during_capture();
	bool done = !e->recorded || mono_now() >= e->done_ns;
	pthread_mutex_unlock(&lock);
	if (unsafe)
		return CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED;
	return done ? CUDA_SUCCESS : CUDA_ERROR_NOT_READY;
}

FAKE_EXPORT CUresult cuEventDestroy_v2(CUevent ev)
{
	NEED_INIT();
	struct fake_event *e = (struct fake_event *)ev;
	if (!e || e->magic != EVENT_MAGIC)
		return CUDA_ERROR_INVALID_HANDLE;
	e->magic = 0;
	free(e);
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuEventDestroy(CUevent ev)
{
	return cuEventDestroy_v2(ev);
}

FAKE_EXPORT CUresult cuCtxPushCurrent_v2(CUcontext ctx)
{
	NEED_INIT();
	struct fake_ctx *c = (struct fake_ctx *)ctx;
	if (!c || c->magic != CTX_MAGIC || ctx_depth >= 8)
		return CUDA_ERROR_INVALID_CONTEXT;
	ctx_stack[ctx_depth++] = current;
	current = c;
	return CUDA_SUCCESS;
}

FAKE_EXPORT CUresult cuCtxPopCurrent_v2(CUcontext *pctx)
{
	NEED_INIT();
	if (ctx_depth == 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (pctx)
		*pctx = (CUcontext)current;
	current = ctx_stack[--ctx_depth];
	return CUDA_SUCCESS;
}

/* Sleep until the work queued on a stream (or the whole device, for the
 * legacy stream) has run. */
static void stream_wait_done(CUstream stream, bool per_thread)
{
	pthread_mutex_lock(&lock);
	CUresult r;
	struct fake_stream *s = stream_of(stream, per_thread, &r);
	uint64_t until = 0;
	if (s)
		until = is_legacy(stream, per_thread) ? dev_busy_until[s->ordinal] : s->last_end_ns;
	pthread_mutex_unlock(&lock);
	fakeclock_sleep_until(until);
}

FAKE_EXPORT CUresult cuCtxSynchronize(void)
{
	NEED_INIT();
	if (!current)
		return CUDA_ERROR_INVALID_CONTEXT;
	stream_wait_done(NULL, false);
	return CUDA_SUCCESS;
}

/* A fork while another thread holds the lock (gpucap's controller thread
 * draining) must not leave the child's copy locked. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&lock);
	fake_clock_fork_prepare(); /* the clock's lock nests inside ours */
}

static void fork_parent(void)
{
	fake_clock_fork_parent();
	pthread_mutex_unlock(&lock);
}

static void fork_child(void)
{
	fake_clock_fork_child();
	pthread_mutex_unlock(&lock);
}

__attribute__((constructor)) static void fake_atfork(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- Test hooks for launches ------------------------------------------------ */

/* A graph that runs us microseconds of work, for cuGraphLaunch. */
FAKE_EXPORT CUgraphExec fakecuda_graph_exec(uint64_t us)
{
	struct fake_graph *g = calloc(1, sizeof(*g));
	g->magic = GRAPH_MAGIC;
	g->work_ns = us * 1000u;
	return (CUgraphExec)g;
}

/* A neighbour's context takes time slices on the device: from now on each
 * kernel is busy stretch_permille / 1000 of its own time, and that time
 * counts as this process's busy (as a real GPU's NVML charges a slice to
 * the context that held the device); 1000 ends it. */
FAKE_EXPORT void fakecuda_set_time_slices(int ordinal, unsigned stretch_permille)
{
	if (ordinal < 0 || ordinal >= MAX_DEV)
		return;
	pthread_mutex_lock(&lock);
	dev_slices_permille[ordinal] = stretch_permille;
	pthread_mutex_unlock(&lock);
}

/* Nanoseconds of work the device has finished running by now. */
FAKE_EXPORT uint64_t fakecuda_busy_ns(int ordinal)
{
	if (ordinal < 0 || ordinal >= MAX_DEV)
		return 0;
	pthread_mutex_lock(&lock);
	uint64_t now = mono_now();
	uint64_t pending = dev_busy_until[ordinal] > now ? dev_busy_until[ordinal] - now : 0;
	uint64_t done = dev_busy_total[ordinal] - pending;
	pthread_mutex_unlock(&lock);
	return done;
}

/* Counters: events recorded; events recorded where a capture forbids it;
 * handles used after their stream was destroyed; launches by entry point
 * (0 kernel, 1 kernel_ptsz, 2 Ex, 3 Ex_ptsz, 4 cooperative, 5 cooperative_ptsz,
 * 6 graph, 7 graph_ptsz). */
FAKE_EXPORT uint64_t fakecuda_stat(const char *name)
{
	pthread_mutex_lock(&lock);
	uint64_t v = 0;
	if (strcmp(name, "event_records") == 0)
		v = stat_event_records;
	else if (strcmp(name, "capture_violations") == 0)
		v = stat_capture_violations;
	else if (strcmp(name, "use_after_destroy") == 0)
		v = stat_use_after_destroy;
	else if (strncmp(name, "launches.", 9) == 0 && name[9] >= '0' && name[9] <= '7')
		v = stat_launches[name[9] - '0'];
	pthread_mutex_unlock(&lock);
	return v;
}

/* ---- Test hooks (not driver API) ------------------------------------------ */

int fake_current_ordinal(void)
{
	return current ? current->ordinal : -1;
}

int fake_visible_count(void)
{
	return visible_count;
}

int fake_physical_of(int ordinal)
{
	return ordinal >= 0 && ordinal < visible_count ? devs[ordinal].physical : -1;
}

/* Bytes the fake device has handed out, for tests. */
FAKE_EXPORT uint64_t fakecuda_device_used(int ordinal)
{
	if (ordinal < 0 || ordinal >= visible_count)
		return 0;
	pthread_mutex_lock(&lock);
	uint64_t used = devs[ordinal].used;
	pthread_mutex_unlock(&lock);
	return used;
}

/* ---- cuGetProcAddress ------------------------------------------------------
 *
 * (symbol, cudaVersion, flags) -> the entry with the highest version not
 * above cudaVersion; per-thread-stream entries only when flags ask for the
 * per-thread default stream. */

struct proc {
	const char *symbol;
	int version;
	bool ptds;
	void *fn;
};

/* An entry point of a driver newer than gpucap: a version of cuMemAlloc no
 * row names. */
static CUresult cuMemAlloc_future(CUdeviceptr *dptr, size_t bytesize)
{
	return cuMemAlloc_v2(dptr, bytesize);
}

#define P(sym, ver, fn)                                                                                      \
	{                                                                                                    \
		sym, ver, false, (void *)fn                                                                  \
	}
#define PT(sym, ver, fn)                                                                                     \
	{                                                                                                    \
		sym, ver, true, (void *)fn                                                                   \
	}

FAKE_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags);
FAKE_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                                         CUdriverProcAddressQueryResult *status);

static const struct proc procs[] = {
    P("cuInit", 2000, cuInit),
    P("cuDriverGetVersion", 2020, cuDriverGetVersion),
    P("cuDeviceGet", 2000, cuDeviceGet),
    P("cuDeviceGetCount", 2000, cuDeviceGetCount),
    P("cuDeviceGetUuid", 9020, cuDeviceGetUuid),
    P("cuDeviceGetUuid", 11040, cuDeviceGetUuid_v2),
    P("cuDeviceTotalMem", 2000, cuDeviceTotalMem),
    P("cuDeviceTotalMem", 3020, cuDeviceTotalMem_v2),
    P("cuCtxCreate", 2000, cuCtxCreate),
    P("cuCtxCreate", 3020, cuCtxCreate_v2),
    P("cuCtxCreate", 11040, cuCtxCreate_v3),
    P("cuCtxCreate", 12050, cuCtxCreate_v4),
    P("cuCtxDestroy", 2000, cuCtxDestroy),
    P("cuCtxDestroy", 4000, cuCtxDestroy_v2),
    P("cuCtxSetCurrent", 4000, cuCtxSetCurrent),
    P("cuCtxGetCurrent", 4000, cuCtxGetCurrent),
    P("cuCtxGetDevice", 2000, cuCtxGetDevice),
    P("cuCtxSynchronize", 2000, cuCtxSynchronize),
    P("cuDevicePrimaryCtxRetain", 7000, cuDevicePrimaryCtxRetain),
    P("cuDevicePrimaryCtxRelease", 7000, cuDevicePrimaryCtxRelease),
    P("cuDevicePrimaryCtxRelease", 11000, cuDevicePrimaryCtxRelease_v2),
    P("cuMemAlloc", 2000, cuMemAlloc),
    P("cuMemAlloc", 3020, cuMemAlloc_v2),
    P("cuMemAllocPitch", 2000, cuMemAllocPitch),
    P("cuMemAllocPitch", 3020, cuMemAllocPitch_v2),
    P("cuMemAllocManaged", 6000, cuMemAllocManaged),
    P("cuMemFree", 2000, cuMemFree),
    P("cuMemFree", 3020, cuMemFree_v2),
    P("cuMemAlloc", 90000, cuMemAlloc_future),
    P("cuMemGetInfo", 2000, cuMemGetInfo),
    P("cuMemGetInfo", 3020, cuMemGetInfo_v2),
    P("cuMemCreate", 10020, cuMemCreate),
    P("cuMemRelease", 10020, cuMemRelease),
    P("cuMemAddressReserve", 10020, cuMemAddressReserve),
    P("cuMemAddressFree", 10020, cuMemAddressFree),
    P("cuMemMap", 10020, cuMemMap),
    P("cuMemUnmap", 10020, cuMemUnmap),
    P("cuMemExportToShareableHandle", 10020, cuMemExportToShareableHandle),
    P("cuMemImportFromShareableHandle", 10020, cuMemImportFromShareableHandle),
    P("cuMemAllocAsync", 11020, cuMemAllocAsync),
    PT("cuMemAllocAsync", 11020, cuMemAllocAsync_ptsz),
    P("cuMemAllocFromPoolAsync", 11020, cuMemAllocFromPoolAsync),
    PT("cuMemAllocFromPoolAsync", 11020, cuMemAllocFromPoolAsync_ptsz),
    P("cuMemFreeAsync", 11020, cuMemFreeAsync),
    PT("cuMemFreeAsync", 11020, cuMemFreeAsync_ptsz),
    P("cuMemPoolCreate", 11020, cuMemPoolCreate),
    P("cuMemPoolDestroy", 11020, cuMemPoolDestroy),
    P("cuMemPoolTrimTo", 11020, cuMemPoolTrimTo),
    P("cuMemPoolGetAttribute", 11020, cuMemPoolGetAttribute),
    P("cuDeviceGetMemPool", 11020, cuDeviceGetMemPool),
    P("cuDeviceSetMemPool", 11020, cuDeviceSetMemPool),
    P("cuDeviceGetDefaultMemPool", 11020, cuDeviceGetDefaultMemPool),
    P("cuArrayCreate", 2000, cuArrayCreate),
    P("cuArrayCreate", 3020, cuArrayCreate_v2),
    P("cuArray3DCreate", 2000, cuArray3DCreate),
    P("cuArray3DCreate", 3020, cuArray3DCreate_v2),
    P("cuMipmappedArrayCreate", 5000, cuMipmappedArrayCreate),
    P("cuArrayDestroy", 2000, cuArrayDestroy),
    P("cuMipmappedArrayDestroy", 5000, cuMipmappedArrayDestroy),
    P("cuIpcGetMemHandle", 4010, cuIpcGetMemHandle),
    P("cuIpcOpenMemHandle", 4010, cuIpcOpenMemHandle),
    P("cuIpcOpenMemHandle", 11000, cuIpcOpenMemHandle_v2),
    P("cuIpcCloseMemHandle", 4010, cuIpcCloseMemHandle),
    P("cuStreamSynchronize", 2000, cuStreamSynchronize),
    P("cuStreamCreate", 2000, cuStreamCreate),
    P("cuStreamDestroy", 2000, cuStreamDestroy),
    P("cuStreamDestroy", 4000, cuStreamDestroy_v2),
    P("cuLaunchKernel", 4000, cuLaunchKernel),
    PT("cuLaunchKernel", 7000, cuLaunchKernel_ptsz),
    P("cuLaunchKernelEx", 11060, cuLaunchKernelEx),
    PT("cuLaunchKernelEx", 11060, cuLaunchKernelEx_ptsz),
    P("cuLaunchCooperativeKernel", 9000, cuLaunchCooperativeKernel),
    PT("cuLaunchCooperativeKernel", 9000, cuLaunchCooperativeKernel_ptsz),
    P("cuGraphLaunch", 10000, cuGraphLaunch),
    PT("cuGraphLaunch", 10000, cuGraphLaunch_ptsz),
    P("cuGraphInstantiate", 11040, cuGraphInstantiateWithFlags),
    P("cuGraphInstantiateWithParams", 12000, cuGraphInstantiateWithParams),
    PT("cuGraphInstantiateWithParams", 12000, cuGraphInstantiateWithParams_ptsz),
    P("cuGraphAddNode", 12020, cuGraphAddNode),
    P("cuGraphAddNode", 12030, cuGraphAddNode_v2),
    P("cuGraphUpload", 11010, cuGraphUpload),
    PT("cuGraphUpload", 11010, cuGraphUpload_ptsz),
    P("cuGraphExecDestroy", 10000, cuGraphExecDestroy),
    P("cuGraphDestroy", 10000, cuGraphDestroy),
    P("cuStreamBeginCapture", 10010, cuStreamBeginCapture_v2),
    P("cuStreamEndCapture", 10000, cuStreamEndCapture),
    P("cuStreamIsCapturing", 10000, cuStreamIsCapturing),
    P("cuEventCreate", 2000, cuEventCreate),
    P("cuEventRecord", 2000, cuEventRecord),
    P("cuEventQuery", 2000, cuEventQuery),
    P("cuEventDestroy", 2000, cuEventDestroy),
    P("cuEventDestroy", 4000, cuEventDestroy_v2),
    P("cuCtxPushCurrent", 4000, cuCtxPushCurrent_v2),
    P("cuThreadExchangeStreamCaptureMode", 10010, cuThreadExchangeStreamCaptureMode),
    P("cuCtxPopCurrent", 4000, cuCtxPopCurrent_v2),
    P("cuGetProcAddress", 11030, cuGetProcAddress),
    P("cuGetProcAddress", 12000, cuGetProcAddress_v2),
};

FAKE_EXPORT CUresult cuGetProcAddress_v2(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags,
                                         CUdriverProcAddressQueryResult *status)
{
	if (!symbol || !pfn)
		return CUDA_ERROR_INVALID_VALUE;
	bool want_ptds = (flags & CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM) != 0;
	const struct proc *best = NULL;
	bool seen = false;
	for (size_t i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
		const struct proc *p = &procs[i];
		if (strcmp(p->symbol, symbol) != 0)
			continue;
		seen = true;
		if (p->version > cudaVersion)
			continue;
		if (p->ptds && !want_ptds)
			continue;
		/* Prefer a per-thread entry when asked for one; otherwise the
		 * highest version. */
		if (!best || p->version > best->version || (p->ptds && !best->ptds))
			best = p;
	}
	*pfn = best ? best->fn : NULL;
	if (status)
		*status = best ? CU_GET_PROC_ADDRESS_SUCCESS
		               : (seen ? CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT
		                       : CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND);
	return best ? CUDA_SUCCESS : CUDA_ERROR_NOT_FOUND;
}

FAKE_EXPORT CUresult cuGetProcAddress(const char *symbol, void **pfn, int cudaVersion, cuuint64_t flags)
{
	return cuGetProcAddress_v2(symbol, pfn, cudaVersion, flags, NULL);
}

#define FAKE_ROWS_CUDA
#include "fake_rows.h"
