/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Hook tests: run with libgpucap.so preloaded over the fake driver. Each
 * subcommand is one CTest test; it sets its own environment (region file in
 * a fresh directory, limits) before the first driver call, and checks the
 * region through its own observer handle.
 */
#define _GNU_SOURCE
#include "check.h"
#include "cuda_api.h"
#include "gpucap/region.h"
#include "hook_scratch.h"
#include "host_pids.h"
#include "self_exec.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB   (UINT64_C(1) << 20)
#define DEV_A "GPU-00000000-0000-0000-0000-0000000000a0"
#define DEV_B "GPU-00000000-0000-0000-0000-0000000000b1"
#define DEV_C "GPU-12345678-9abc-def0-1234-56789abcdef0"
#define MIG_D "MIG-87654321-0fed-cba9-8765-43210fedcba9"

static char region_dir[128];
static char region_path[192];
static char self_path[4096];

/* A fresh region file for this test, and the environment every case uses. */
static void fresh_region(void)
{
	hook_scratch_region("hooktest", "HOOKTEST_KEEP", region_dir, sizeof(region_dir), region_path,
	                    sizeof(region_path));
}

static CUcontext start_device(int ordinal)
{
	CU(cuInit(0));
	CUcontext ctx;
	CU(cuDevicePrimaryCtxRetain(&ctx, ordinal));
	CU(cuCtxSetCurrent(ctx));
	return ctx;
}

/* ---- Region views ----------------------------------------------------------- */

static gpucap_region *observer(void)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	o.observer = true;
	gpucap_region *r = NULL;
	char err[256];
	if (gpucap_region_attach(&o, &r, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "observer attach: %s\n", err);
		exit(1);
	}
	return r;
}

/* A writable handle without a slot (for set_limit and reclaim_dead). */
static gpucap_region *admin(void)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	gpucap_region *r = NULL;
	char err[256];
	if (gpucap_region_attach(&o, &r, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "admin attach: %s\n", err);
		exit(1);
	}
	return r;
}

struct usage {
	bool found;
	uint64_t data, context, in_use;
};

/* In-use bytes of one process on one device (by UUID). */
static struct usage usage_of(pid_t pid, const char *uuid)
{
	struct usage u = {false, 0, 0, 0};
	gpucap_region *r = observer();
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	int dev = -1;
	for (uint32_t i = 0; i < s->device_count; i++)
		if (strcmp(s->devices[i].uuid, uuid) == 0)
			dev = s->devices[i].index;
	if (getenv("HOOKTEST_DUMP")) {
		for (uint32_t i = 0; i < s->device_count; i++)
			fprintf(stderr, "device %d %s limit %llu charged %llu in use %llu\n",
			        s->devices[i].index, s->devices[i].uuid,
			        (unsigned long long)s->devices[i].limit_bytes,
			        (unsigned long long)s->devices[i].charged_bytes,
			        (unsigned long long)s->devices[i].in_use_bytes);
		for (uint32_t p = 0; p < s->process_count && dev >= 0; p++) {
			const struct gpucap_process_device_view *d = &s->processes[p].devices[dev];
			fprintf(
			    stderr, "slot %u pid %d (me %d) alive %d charged %llu in use %llu data %lld\n",
			    s->processes[p].slot, s->processes[p].pid, (int)getpid(), s->processes[p].alive,
			    (unsigned long long)d->charged_bytes, (unsigned long long)d->in_use_bytes,
			    (long long)d->kind_bytes[GPUCAP_KIND_DATA]);
		}
	}
	for (uint32_t p = 0; dev >= 0 && p < s->process_count; p++) {
		if (s->processes[p].pid != pid || !s->processes[p].alive)
			continue;
		u.found = true;
		u.data = (uint64_t)s->processes[p].devices[dev].kind_bytes[GPUCAP_KIND_DATA];
		u.context = (uint64_t)s->processes[p].devices[dev].kind_bytes[GPUCAP_KIND_CONTEXT];
		u.in_use = s->processes[p].devices[dev].in_use_bytes;
	}
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
	return u;
}

static struct usage mine(void)
{
	return usage_of(getpid(), DEV_A);
}

/* The device entry for uuid; CHECKs that it exists. */
static struct gpucap_device_view device_view(const char *uuid)
{
	gpucap_region *r = observer();
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	struct gpucap_device_view v;
	bool found = false;
	for (uint32_t i = 0; i < s->device_count; i++) {
		if (strcmp(s->devices[i].uuid, uuid) == 0) {
			v = s->devices[i];
			found = true;
		}
	}
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
	if (!found) {
		fprintf(stderr, "device %s is not in the region\n", uuid);
		exit(1);
	}
	return v;
}

static bool device_present(const char *uuid)
{
	gpucap_region *r = observer();
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	bool found = false;
	for (uint32_t i = 0; s && i < s->device_count; i++)
		found |= strcmp(s->devices[i].uuid, uuid) == 0;
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
	return found;
}

/* ---- Child processes ------------------------------------------------------- */

/* Run this program with args in a child (tests/support/self_exec.h). */
static int run_self(char *err_out, size_t err_len, const char *const *env, const char *const *args)
{
	return self_run(self_path, err_out, err_len, env, args);
}

static unsigned count_lines(const char *text)
{
	unsigned n = 0;
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	return n;
}

/* ---- Routes ------------------------------------------------------------------ */

static void test_routes(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "64m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	start_device(0);

	/* Direct call. */
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, MiB));
	CHECK_EQ(MiB, mine().data);
	CU(cuMemFree_v2(p));
	CHECK_EQ(0, mine().data);

	/* dlsym on a dlopen'ed handle: hooked names give the wrapper, others the
	 * real function. */
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	CHECK(h != NULL);
	CHECK(dlsym(h, "cuMemAlloc_v2") == (void *)cuMemAlloc_v2);
	CHECK(dlsym(h, "cuGetProcAddress_v2") == (void *)cuGetProcAddress_v2);
	CHECK(dlsym(h, "cuMemAllocAsync_ptsz") == (void *)cuMemAllocAsync_ptsz);
	CHECK(dlsym(h, "cuInit") == (void *)cuInit);
	CHECK(dlsym(h, "fakecuda_device_used") == (void *)fakecuda_device_used);
	CHECK(dlsym(h, "cuNoSuchFunction") == NULL);
	CHECK(dlsym(RTLD_DEFAULT, "cuMemAlloc_v2") == (void *)cuMemAlloc_v2);
	CUresult (*alloc)(CUdeviceptr *, size_t);
	*(void **)&alloc = dlsym(h, "cuMemAlloc_v2");
	CU(alloc(&p, 2 * MiB));
	CHECK_EQ(2 * MiB, mine().data);
	CU(cuMemFree_v2(p));

	void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
	CHECK(nvml != NULL);
	CHECK(dlsym(nvml, "nvmlDeviceGetMemoryInfo") == (void *)nvmlDeviceGetMemoryInfo);
	CHECK(dlsym(nvml, "nvmlDeviceGetMemoryInfo_v2") == (void *)nvmlDeviceGetMemoryInfo_v2);
	CHECK(dlsym(nvml, "nvmlInit_v2") == (void *)nvmlInit_v2);

	/* cuGetProcAddress_v2: versioned names, per-thread stream, itself. */
	void *fn = NULL;
	CUdriverProcAddressQueryResult st = CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND;
	CU(cuGetProcAddress_v2("cuMemAlloc", &fn, 13000, CU_GET_PROC_ADDRESS_DEFAULT, &st));
	CHECK(fn == (void *)cuMemAlloc_v2);
	CHECK_EQ(CU_GET_PROC_ADDRESS_SUCCESS, st);
	CU(cuGetProcAddress_v2("cuMemAlloc", &fn, 3000, CU_GET_PROC_ADDRESS_DEFAULT, &st));
	CHECK(fn == (void *)cuMemAlloc);
	CU(cuGetProcAddress_v2("cuMemAllocAsync", &fn, 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
	                       &st));
	CHECK(fn == (void *)cuMemAllocAsync_ptsz);
	CU(cuGetProcAddress_v2("cuMemAllocAsync", &fn, 13000, CU_GET_PROC_ADDRESS_LEGACY_STREAM, &st));
	CHECK(fn == (void *)cuMemAllocAsync);
	CU(cuGetProcAddress_v2("cuGetProcAddress", &fn, 13000, 0, &st));
	CHECK(fn == (void *)cuGetProcAddress_v2);
	CU(cuGetProcAddress_v2("cuGetProcAddress", &fn, 11030, 0, &st));
	CHECK(fn == (void *)cuGetProcAddress);
	CU(cuGetProcAddress_v2("cuInit", &fn, 13000, 0, &st));
	CHECK(fn == dlsym(h, "cuInit"));
	CHECK_EQ(CUDA_ERROR_NOT_FOUND, cuGetProcAddress_v2("cuNoSuchFunction", &fn, 13000, 0, &st));
	CHECK_EQ(CU_GET_PROC_ADDRESS_SYMBOL_NOT_FOUND, st);
	CHECK_EQ(CUDA_ERROR_NOT_FOUND, cuGetProcAddress_v2("cuMemAllocAsync", &fn, 10000, 0, &st));
	CHECK_EQ(CU_GET_PROC_ADDRESS_VERSION_NOT_SUFFICIENT, st);

	/* The wrapper handed out is the one that charges. */
	CU(cuGetProcAddress_v2("cuMemAllocAsync", &fn, 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
	                       &st));
	CUresult (*alloc_async)(CUdeviceptr *, size_t, CUstream);
	*(void **)&alloc_async = fn;
	CU(alloc_async(&p, 3 * MiB, NULL));
	CHECK_EQ(3 * MiB, mine().data);
	CU(cuMemFreeAsync(p, NULL));

	/* The old entry point, reached through the wrapper that dlsym returns
	 * for cuGetProcAddress_v2 itself. */
	CUresult (*gpa)(const char *, void **, int, cuuint64_t);
	*(void **)&gpa = dlsym(h, "cuGetProcAddress");
	CHECK(gpa == cuGetProcAddress);
	CU(gpa("cuMemFree", &fn, 13000, 0));
	CHECK(fn == (void *)cuMemFree_v2);
	CU(gpa("cuCtxCreate", &fn, 13000, 0));
	CHECK(fn == (void *)cuCtxCreate_v4);
	CU(gpa("cuCtxCreate", &fn, 12000, 0));
	CHECK(fn == (void *)cuCtxCreate_v3);
}

/* ---- Accounting per path -------------------------------------------------- */

static void test_accounting(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "1g", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "4m", 1);
	CU(cuInit(0));

	/* Primary context: charged once per process, returned at last release. */
	CUcontext ctx, again;
	CU(cuDevicePrimaryCtxRetain(&ctx, 0));
	CHECK_EQ(4 * MiB, mine().context);
	CU(cuDevicePrimaryCtxRetain(&again, 0));
	CHECK_EQ(4 * MiB, mine().context);
	CU(cuDevicePrimaryCtxRelease_v2(0));
	CHECK_EQ(4 * MiB, mine().context);
	CU(cuDevicePrimaryCtxRelease_v2(0));
	CHECK_EQ(0, mine().context);

	/* Created contexts: each one. */
	CUcontext c2, c3, c4;
	CU(cuCtxCreate_v2(&c2, 0, 0));
	CU(cuCtxCreate_v3(&c3, NULL, 0, 0, 0));
	CU(cuCtxCreate_v4(&c4, NULL, 0, 0));
	CHECK_EQ(12 * MiB, mine().context);
	CU(cuCtxDestroy_v2(c3));
	CU(cuCtxDestroy_v2(c4));
	CHECK_EQ(4 * MiB, mine().context);
	CU(cuCtxSetCurrent(c2));

	/* Linear, v1, pitch, managed. */
	CUdeviceptr p, q;
	CU(cuMemAlloc_v2(&p, 3 * MiB));
	CHECK_EQ(3 * MiB, mine().data);
	CUdeviceptr_v1 small;
	CU(cuMemAlloc(&small, 4096));
	CHECK_EQ(3 * MiB + 4096, mine().data);
	CU(cuMemFree(small));
	CU(cuMemFree_v2(p));
	size_t pitch = 0;
	CU(cuMemAllocPitch_v2(&p, &pitch, 1000, 10, 4));
	CHECK_EQ(1024, pitch);
	CHECK_EQ(10240, mine().data);
	CU(cuMemFree_v2(p));
	/* The 32-bit pitch entry point charges the same way. */
	unsigned int pitch_v1 = 0;
	CU(cuMemAllocPitch(&small, &pitch_v1, 1000, 10, 4));
	CHECK_EQ(1024, pitch_v1);
	CHECK_EQ(10240, mine().data);
	CU(cuMemFree(small));
	CHECK_EQ(0, mine().data);
	CU(cuMemAllocManaged(&p, 2 * MiB, CU_MEM_ATTACH_GLOBAL));
	CHECK_EQ(2 * MiB, mine().data);
	CU(cuMemFree_v2(p));
	CHECK_EQ(0, mine().data);
	/* Freeing an unknown pointer: the driver's answer, nothing released. */
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuMemFree_v2(0xdead0000));

	/* VMM: create charges, map is free, imports are not charged. */
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = 0;
	CUmemGenericAllocationHandle handle, imported;
	CU(cuMemCreate(&handle, 4 * MiB, &prop, 0));
	CHECK_EQ(4 * MiB, mine().data);
	CUdeviceptr va;
	CU(cuMemAddressReserve(&va, 4 * MiB, 0, 0, 0));
	CU(cuMemMap(va, 4 * MiB, 0, handle, 0));
	CHECK_EQ(4 * MiB, mine().data);
	int fd = -1;
	CU(cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0));
	CU(cuMemImportFromShareableHandle(&imported, (void *)(intptr_t)fd,
	                                  CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
	CHECK_EQ(4 * MiB, mine().data);
	CU(cuMemRelease(imported));
	CHECK_EQ(4 * MiB, mine().data);
	CU(cuMemUnmap(va, 4 * MiB));
	CHECK_EQ(4 * MiB, mine().data);
	CU(cuMemRelease(handle));
	CU(cuMemAddressFree(va, 4 * MiB));
	CHECK_EQ(0, mine().data);

	/* Stream-ordered: freed memory stays charged while the pool holds it. */
	CU(cuMemAllocAsync(&p, 3 * MiB, NULL));
	CHECK_EQ(3 * MiB, mine().data);
	CU(cuMemFreeAsync(p, NULL));
	CHECK_EQ(3 * MiB, mine().data);
	CU(cuMemAllocAsync_ptsz(&p, MiB, NULL)); /* reuses the pool's memory */
	CHECK_EQ(3 * MiB, mine().data);
	CU(cuMemAllocAsync(&q, 5 * MiB, NULL)); /* grows the pool by 3 MiB */
	CHECK_EQ(6 * MiB, mine().data);
	CU(cuMemFreeAsync(p, NULL));
	CU(cuMemFreeAsync(q, NULL));
	CHECK_EQ(6 * MiB, mine().data);
	CUmemoryPool pool;
	CU(cuDeviceGetMemPool(&pool, 0));
	CU(cuMemPoolTrimTo(pool, 2 * MiB));
	CHECK_EQ(2 * MiB, mine().data);
	CU(cuMemPoolTrimTo(pool, 0));
	CHECK_EQ(0, mine().data);
	/* An explicit pool; destroyed with an allocation still live. */
	CUmemPoolProps props;
	memset(&props, 0, sizeof(props));
	props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	props.location.id = 0;
	CUmemoryPool own;
	CU(cuMemPoolCreate(&own, &props));
	CU(cuMemAllocFromPoolAsync(&p, 2 * MiB, own, NULL));
	CU(cuMemAllocFromPoolAsync(&q, MiB, own, NULL));
	CHECK_EQ(3 * MiB, mine().data);
	CU(cuMemFreeAsync(q, NULL));
	CHECK_EQ(3 * MiB, mine().data);
	CU(cuMemPoolDestroy(own));
	CHECK_EQ(2 * MiB, mine().data);
	CU(cuMemFreeAsync(p, NULL));
	CHECK_EQ(0, mine().data);
	CHECK_EQ(0, fakecuda_device_used(0));

	/* Arrays: bytes from the descriptor; destroy returns them. */
	CUDA_ARRAY_DESCRIPTOR d2 = {100, 100, CU_AD_FORMAT_FLOAT, 1};
	CUarray a2, a3;
	CU(cuArrayCreate_v2(&a2, &d2));
	CHECK_EQ(40000, mine().data);
	CUDA_ARRAY3D_DESCRIPTOR d3 = {10, 10, 10, CU_AD_FORMAT_UNSIGNED_INT8, 4, 0};
	CU(cuArray3DCreate_v2(&a3, &d3));
	CHECK_EQ(44000, mine().data);
	CUDA_ARRAY3D_DESCRIPTOR dm = {64, 64, 0, CU_AD_FORMAT_HALF, 2, 0};
	CUmipmappedArray mm;
	CU(cuMipmappedArrayCreate(&mm, &dm, 3)); /* 64x64 + 32x32 + 16x16, 4 B each */
	CHECK_EQ(44000 + (4096 + 1024 + 256) * 4, mine().data);
	CU(cuArrayDestroy(a2));
	CU(cuArrayDestroy(a3));
	CU(cuMipmappedArrayDestroy(mm));
	CHECK_EQ(0, mine().data);

	/* IPC imports belong to the exporter. */
	CU(cuMemAlloc_v2(&p, MiB));
	CUipcMemHandle ipc;
	CU(cuIpcGetMemHandle(&ipc, p));
	CUdeviceptr opened;
	CU(cuIpcOpenMemHandle_v2(&opened, ipc, 1));
	CHECK_EQ(MiB, mine().data);
	CU(cuIpcCloseMemHandle(opened));
	CHECK_EQ(MiB, mine().data);
	CU(cuMemFree_v2(p));
	CHECK_EQ(0, mine().data);

	CU(cuCtxDestroy_v2(c2));
	CHECK_EQ(0, mine().context);
}

/* ---- Exact error codes ------------------------------------------------------- */

static void test_errors(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "16m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("FAKECUDA_TOTAL_BYTES", "1073741824", 1);
	CUcontext primary = start_device(0);

	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuMemAlloc_v2(NULL, MiB));
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuMemAllocPitch_v2(NULL, NULL, 16, 16, 4));
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuMemAllocAsync(NULL, MiB, NULL));
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuMemCreate(NULL, MiB, NULL, 0));
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuArrayCreate_v2(NULL, NULL));
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuMemGetInfo_v2(NULL, NULL));
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuCtxCreate_v2(NULL, 0, 0));
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_INVALID_VALUE, cuMemAlloc_v2(&p, 0)); /* the driver's answer */

	CUdeviceptr big;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&big, 17 * MiB));
	CHECK_EQ(0, mine().in_use);
	CU(cuMemAlloc_v2(&big, 12 * MiB));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 5 * MiB));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAllocManaged(&p, 5 * MiB, CU_MEM_ATTACH_GLOBAL));
	size_t pitch;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAllocPitch_v2(&p, &pitch, 5 * MiB, 1, 4));
	/* width*height fits, the driver's pitch does not: freed, refused. */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAllocPitch_v2(&p, &pitch, 4 * MiB / 2048 + 1, 2048, 4));
	CHECK_EQ(12 * MiB, fakecuda_device_used(0));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAllocAsync(&p, 5 * MiB, NULL));
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	CUmemGenericAllocationHandle h;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemCreate(&h, 6 * MiB, &prop, 0));
	CUDA_ARRAY_DESCRIPTOR d = {2048, 1024, CU_AD_FORMAT_FLOAT, 1};
	CUarray a;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuArrayCreate_v2(&a, &d));
	setenv("GPUCAP_CONTEXT_BYTES", "8m", 1); /* read once: no effect now */
	CUcontext c;
	CU(cuCtxCreate_v2(&c, 0, 0));
	CU(cuCtxDestroy_v2(c));
	CU(cuCtxSetCurrent(primary));
	CHECK_EQ(12 * MiB, mine().in_use);
	CHECK_EQ(12 * MiB, fakecuda_device_used(0));
	CU(cuMemFree_v2(big));
	CHECK_EQ(0, mine().in_use);
	/* The whole cap is usable. */
	CU(cuMemAlloc_v2(&big, 16 * MiB));
	CU(cuMemFree_v2(big));
}

/* A pool releases its memory at a synchronisation: the stale charge must
 * not refuse a later allocation on another path. */
static void test_pool_sync(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "16m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAllocAsync(&p, 12 * MiB, NULL));
	CU(cuMemFreeAsync(p, NULL));
	CHECK_EQ(12 * MiB, mine().data); /* the pool still holds it */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 8 * MiB));
	CU(cuStreamSynchronize(NULL)); /* the pool gives it back to the device */
	CU(cuMemAlloc_v2(&p, 8 * MiB));
	CHECK_EQ(8 * MiB, mine().data);
	CU(cuMemFree_v2(p));
	CHECK_EQ(0, mine().data);
}

/* The driver runs out before the cap: its error passes through unchanged
 * and the charge is given back. */
static void test_driver_oom(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "1g", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("FAKECUDA_TOTAL_BYTES", "8388608", 1);
	start_device(0);
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 16 * MiB));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAllocAsync(&p, 16 * MiB, NULL));
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	CUmemGenericAllocationHandle h;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemCreate(&h, 16 * MiB, &prop, 0));
	CHECK_EQ(0, mine().in_use);
	CHECK_EQ(0, mine().data);
	CU(cuMemAlloc_v2(&p, 8 * MiB));
	CHECK_EQ(8 * MiB, mine().data);
}

static void test_context_oom(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "100m", 1);
	CU(cuInit(0));
	CUcontext c;
	/* Default context charge is 640 MiB: over a 100 MiB cap. */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuDevicePrimaryCtxRetain(&c, 0));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuCtxCreate_v2(&c, 0, 0));
	CHECK_EQ(0, mine().in_use);
}

/* A tenant truncates the region under a running process (`truncate -s 0`):
 * the process lives on, every allocation fails closed, and it says so once. */
static int child_truncated(void)
{
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, MiB));
	CHECK(truncate(region_path, 0) == 0);
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 8 * MiB));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 8 * MiB));
	size_t free_bytes = 0, total_bytes = 0;
	cuMemGetInfo_v2(&free_bytes, &total_bytes);
	return 0;
}

static void test_truncated(void)
{
	fresh_region();
	char err[4096];
	char region[256];
	snprintf(region, sizeof(region), "GPUCAP_REGION=%s", region_path);
	const char *env[] = {region, "CUDA_DEVICE_MEMORY_LIMIT=64m", "GPUCAP_CONTEXT_BYTES=0", NULL};
	const char *args[] = {"child-truncated", NULL};
	CHECK_EQ(0, run_self(err, sizeof(err), env, args));
	CHECK(strstr(err, "was truncated or replaced while this process used it") != NULL);
	CHECK_EQ(1, count_lines(err));
}

/* ---- Views --------------------------------------------------------------------- */

static void test_views(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "64m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("FAKECUDA_TOTAL_BYTES", "1073741824", 1);
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, 16 * MiB));
	struct gpucap_device_view v = device_view(DEV_A);
	CHECK_EQ(64 * MiB, v.limit_bytes);
	size_t f, t;
	CU(cuMemGetInfo_v2(&f, &t));
	CHECK_EQ(64 * MiB, t);
	CHECK_EQ(64 * MiB - v.charged_bytes, f);
	CHECK(f <= 48 * MiB);
	size_t total;
	CU(cuDeviceTotalMem_v2(&total, 0));
	CHECK_EQ(64 * MiB, total);
	/* Device 1 has no allocation but the same cap. */
	CU(cuDeviceTotalMem_v2(&total, 1));
	CHECK_EQ(64 * MiB, total);

	CHECK_EQ(NVML_SUCCESS, nvmlInit_v2());
	nvmlDevice_t nd;
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetHandleByIndex_v2(0, &nd));
	nvmlMemory_t m;
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetMemoryInfo(nd, &m));
	CHECK_EQ(64 * MiB, m.total);
	CHECK_EQ(v.charged_bytes, m.used);
	CHECK_EQ(64 * MiB - v.charged_bytes, m.free);
	nvmlMemory_v2_t m2;
	memset(&m2, 0, sizeof(m2));
	m2.version = nvmlMemory_v2;
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetMemoryInfo_v2(nd, &m2));
	CHECK_EQ(64 * MiB, m2.total);
	CHECK_EQ(v.charged_bytes, m2.used);
	CHECK_EQ(m2.total, m2.used + m2.free + m2.reserved);

	/* Lowered below usage while running: free clamps at 0, never wraps. */
	gpucap_region *r = admin();
	CHECK_EQ(GPUCAP_OK, gpucap_region_set_limit(r, v.index, 8 * MiB));
	CU(cuMemGetInfo_v2(&f, &t));
	CHECK_EQ(8 * MiB, t);
	CHECK_EQ(0, f);
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetMemoryInfo(nd, &m));
	CHECK_EQ(8 * MiB, m.total);
	CHECK_EQ(0, m.free);
	CHECK(m.used >= 16 * MiB);
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetMemoryInfo_v2(nd, &m2));
	CHECK_EQ(0, m2.free);
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
	gpucap_region_detach(r);
}

static void test_views_unlimited(void)
{
	fresh_region();
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("FAKECUDA_TOTAL_BYTES", "1073741824", 1);
	unsetenv("CUDA_DEVICE_MEMORY_LIMIT");
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, 16 * MiB));
	CHECK_EQ(16 * MiB, mine().data); /* charged for monitoring even without a cap */
	size_t f, t;
	CU(cuMemGetInfo_v2(&f, &t));
	CHECK_EQ(1073741824, t);
	CHECK_EQ(1073741824 - 16 * MiB, f);
	CHECK_EQ(NVML_SUCCESS, nvmlInit_v2());
	nvmlDevice_t nd;
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetHandleByIndex_v2(0, &nd));
	nvmlMemory_t m;
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetMemoryInfo(nd, &m));
	CHECK_EQ(1073741824, m.total);
}

/* ---- CUDA_VISIBLE_DEVICES --------------------------------------------------- */

static void visible_case(const char *visible)
{
	setenv("CUDA_VISIBLE_DEVICES", visible, 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("CUDA_DEVICE_MEMORY_LIMIT_0", "16m", 1);
	setenv("GPUCAP_MEMORY_LIMIT_1", "32m", 1);
	setenv("CUDA_DEVICE_MEMORY_LIMIT_1", "1m", 1); /* the gpucap name wins */
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "8m", 1);   /* per-device beats global */
	CU(cuInit(0));
	int n;
	CU(cuDeviceGetCount(&n));
	CHECK_EQ(2, n);
	CUcontext c0, c1;
	CU(cuDevicePrimaryCtxRetain(&c0, 0));
	CU(cuDevicePrimaryCtxRetain(&c1, 1));
	CU(cuCtxSetCurrent(c0));
	CUdeviceptr p0, p1;
	CU(cuMemAlloc_v2(&p0, 3 * MiB));
	CU(cuCtxSetCurrent(c1));
	CU(cuMemAlloc_v2(&p1, 5 * MiB));
}

static void test_visible_uuids(void)
{
	fresh_region();
	setenv("FAKECUDA_DEVICES", DEV_A "," DEV_B "," DEV_C, 1);
	/* Ordinal 0 is C, ordinal 1 is A; a UUID prefix is enough. */
	visible_case("GPU-12345678-9abc, " DEV_A);
	CHECK_EQ(3 * MiB, usage_of(getpid(), DEV_C).data);
	CHECK_EQ(5 * MiB, usage_of(getpid(), DEV_A).data);
	CHECK_EQ(16 * MiB, device_view(DEV_C).limit_bytes);
	CHECK_EQ(32 * MiB, device_view(DEV_A).limit_bytes);
	CHECK(!device_present(DEV_B));
	size_t t;
	CU(cuDeviceTotalMem_v2(&t, 1));
	CHECK_EQ(32 * MiB, t);
	/* NVML sees physical devices: index 2 is C, capped at ordinal 0's 16m. */
	CHECK_EQ(NVML_SUCCESS, nvmlInit_v2());
	nvmlDevice_t nd;
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetHandleByIndex_v2(2, &nd));
	nvmlMemory_t m;
	CHECK_EQ(NVML_SUCCESS, nvmlDeviceGetMemoryInfo(nd, &m));
	CHECK_EQ(16 * MiB, m.total);
}

static void test_visible_indices(void)
{
	fresh_region();
	setenv("FAKECUDA_DEVICES", DEV_A "," DEV_B "," DEV_C, 1);
	visible_case("2,0");
	CHECK_EQ(3 * MiB, usage_of(getpid(), DEV_C).data);
	CHECK_EQ(5 * MiB, usage_of(getpid(), DEV_A).data);
	CHECK_EQ(16 * MiB, device_view(DEV_C).limit_bytes);
	CHECK_EQ(32 * MiB, device_view(DEV_A).limit_bytes);
}

static void test_visible_mig(void)
{
	fresh_region();
	setenv("FAKECUDA_DEVICES", DEV_A "," MIG_D, 1);
	visible_case(MIG_D "," DEV_A);
	CHECK_EQ(3 * MiB, usage_of(getpid(), MIG_D).data);
	CHECK_EQ(5 * MiB, usage_of(getpid(), DEV_A).data);
	CHECK_EQ(16 * MiB, device_view(MIG_D).limit_bytes);
}

/* ---- Malformed configuration: fail closed --------------------------------- */

/* Child: allocate 1 MiB on each listed ordinal; exit code = bit i set when
 * ordinal i was refused with exactly CUDA_ERROR_OUT_OF_MEMORY, 100 + rc on
 * any other failure. */
static int child_alloc_each(int ordinals)
{
	CU(cuInit(0));
	int code = 0;
	for (int i = 0; i < ordinals; i++) {
		CUcontext c;
		CUresult r = cuDevicePrimaryCtxRetain(&c, i);
		if (r == CUDA_SUCCESS) {
			CU(cuCtxSetCurrent(c));
			CUdeviceptr p;
			r = cuMemAlloc_v2(&p, MiB);
		}
		if (r == CUDA_ERROR_OUT_OF_MEMORY)
			code |= 1 << i;
		else if (r != CUDA_SUCCESS)
			return 100 + (int)r;
	}
	return code;
}

/* A driver's entry point of an intercepted API that gpucap has no row for,
 * looked up again and again (as libraries do): said once, in one line. */
static int child_unhooked_lookups(void)
{
	for (int i = 0; i < 3; i++) {
		void *fn = NULL;
		CUdriverProcAddressQueryResult found;
		CU(cuGetProcAddress_v2("cuMemAlloc", &fn, 90000, CU_GET_PROC_ADDRESS_DEFAULT, &found));
		CHECK(fn != NULL);
	}
	return 0;
}

static void test_unhooked_said_once(void)
{
	fresh_region();
	char err[4096];
	const char *env[] = {"GPUCAP_CONTEXT_BYTES=0", NULL};
	const char *args[] = {"child-unhooked-lookups", NULL};
	CHECK_EQ(0, run_self(err, sizeof(err), env, args));
	fprintf(stderr, "child said: %s", err);
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, "cuGetProcAddress(\"cuMemAlloc\", 90000") && strstr(err, "not capped"));
}

static void test_malformed(void)
{
	fresh_region();
	char err[4096];
	const char *args[] = {"child-alloc-each", "2", NULL};

	const char *global[] = {"CUDA_DEVICE_MEMORY_LIMIT=12q", "GPUCAP_CONTEXT_BYTES=0", NULL};
	CHECK_EQ(3, run_self(err, sizeof(err), global, args));
	fprintf(stderr, "child said: %s", err);
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, "CUDA_DEVICE_MEMORY_LIMIT") && strstr(err, "12q") && strstr(err, "512m"));

	const char *per_device[] = {"CUDA_DEVICE_MEMORY_LIMIT=8g", "GPUCAP_MEMORY_LIMIT_1=-5",
	                            "GPUCAP_CONTEXT_BYTES=0", NULL};
	CHECK_EQ(2, run_self(err, sizeof(err), per_device, args));
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, "GPUCAP_MEMORY_LIMIT_1") && strstr(err, "-5"));

	/* An empty ordinal suffix is ignored with one line saying so. */
	const char *no_ordinal[] = {"CUDA_DEVICE_MEMORY_LIMIT=8g", "CUDA_DEVICE_MEMORY_LIMIT_=1m",
	                            "GPUCAP_CONTEXT_BYTES=0", NULL};
	CHECK_EQ(0, run_self(err, sizeof(err), no_ordinal, args));
	fprintf(stderr, "child said: %s", err);
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, "CUDA_DEVICE_MEMORY_LIMIT_ is ignored") && strstr(err, "suffix"));

	const char *context[] = {"GPUCAP_CONTEXT_BYTES=lots", NULL};
	CHECK_EQ(3, run_self(err, sizeof(err), context, args));
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, "GPUCAP_CONTEXT_BYTES"));

	/* A damaged region file: the region's one-line error, then fail closed. */
	FILE *f = fopen(region_path, "w");
	CHECK(f != NULL);
	for (int i = 0; i < 8192; i++)
		fputc('x', f);
	fclose(f);
	chmod(region_path, 0600);
	const char *fine[] = {"CUDA_DEVICE_MEMORY_LIMIT=8g", "GPUCAP_CONTEXT_BYTES=0", NULL};
	CHECK_EQ(3, run_self(err, sizeof(err), fine, args));
	fprintf(stderr, "child said: %s", err);
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, region_path) != NULL);
}

/* ---- Many processes, one cap ------------------------------------------------ */

/* Child: take 1 MiB chunks until refused, report how many, hold them until
 * stdin closes, free them. */
static int child_fill(void)
{
	start_device(0);
	CUdeviceptr ptrs[256];
	int n = 0;
	CUresult r = CUDA_SUCCESS;
	while (n < 256 && (r = cuMemAlloc_v2(&ptrs[n], MiB)) == CUDA_SUCCESS)
		n++;
	if (r != CUDA_ERROR_OUT_OF_MEMORY)
		return 100;
	printf("%d\n", n);
	fflush(stdout);
	char c;
	while (read(STDIN_FILENO, &c, 1) > 0) {
	}
	for (int i = 0; i < n; i++)
		CU(cuMemFree_v2(ptrs[i]));
	return 0;
}

static void test_many_processes(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "64m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	enum { N = 8 };
	pid_t pids[N];
	int out[N], in[N];
	for (int i = 0; i < N; i++) {
		int o[2], in_pipe[2];
		CHECK(pipe(o) == 0 && pipe(in_pipe) == 0);
		pids[i] = fork();
		CHECK(pids[i] >= 0);
		if (pids[i] == 0) {
			dup2(o[1], STDOUT_FILENO);
			dup2(in_pipe[0], STDIN_FILENO);
			close(o[0]);
			close(in_pipe[1]);
			execl(self_path, self_path, "child-fill", (char *)NULL);
			_exit(127);
		}
		close(o[1]);
		close(in_pipe[0]);
		out[i] = o[0];
		in[i] = in_pipe[1];
	}
	uint64_t total = 0;
	for (int i = 0; i < N; i++) {
		char buf[32] = "";
		ssize_t got = read(out[i], buf, sizeof(buf) - 1);
		CHECK(got > 0);
		buf[got] = '\0';
		total += (uint64_t)atoi(buf) * MiB;
		struct gpucap_device_view v = device_view(DEV_A);
		CHECK(v.charged_bytes <= v.limit_bytes);
	}
	fprintf(stderr, "%d processes hold %llu MiB of a 64 MiB cap\n", N, (unsigned long long)(total / MiB));
	CHECK(total <= 64 * MiB);
	CHECK(total >= 64 * MiB - N * 4 * MiB); /* idle per-thread reserves at most */
	for (int i = 0; i < N; i++)
		close(in[i]);
	for (int i = 0; i < N; i++) {
		int status;
		CHECK(waitpid(pids[i], &status, 0) == pids[i]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		close(out[i]);
	}
	gpucap_region *r = admin();
	gpucap_region_reclaim_dead(r, NULL);
	gpucap_region_detach(r);
	CHECK_EQ(0, device_view(DEV_A).in_use_bytes);
}

/* ---- SIGKILL mid-allocation ------------------------------------------------- */

static int child_churn(void)
{
	start_device(0);
	CUdeviceptr keep;
	CU(cuMemAlloc_v2(&keep, 2 * MiB));
	printf("ready\n");
	fflush(stdout);
	for (;;) {
		CUdeviceptr p;
		if (cuMemAlloc_v2(&p, 256 * 1024) == CUDA_SUCCESS)
			cuMemFree_v2(p);
	}
}

static void test_sigkill(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "256m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "1m", 1);
	start_device(0);
	CUdeviceptr mine_ptr;
	CU(cuMemAlloc_v2(&mine_ptr, 3 * MiB));
	enum { N = 4 };
	pid_t pids[N];
	for (int i = 0; i < N; i++) {
		int o[2];
		CHECK(pipe(o) == 0);
		pids[i] = fork();
		if (pids[i] == 0) {
			dup2(o[1], STDOUT_FILENO);
			close(o[0]);
			execl(self_path, self_path, "child-churn", (char *)NULL);
			_exit(127);
		}
		close(o[1]);
		char buf[8];
		CHECK(read(o[0], buf, sizeof(buf)) > 0);
		close(o[0]);
	}
	struct timespec ts = {0, 50 * 1000 * 1000};
	nanosleep(&ts, NULL);
	for (int i = 0; i < N; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], NULL, 0);
	}
	gpucap_region *r = admin();
	struct gpucap_reclaim_report report;
	memset(&report, 0, sizeof(report));
	CHECK_EQ(GPUCAP_OK, gpucap_region_reclaim_dead(r, &report));
	gpucap_region_detach(r);
	CHECK_EQ(N, report.slots);
	struct gpucap_device_view v = device_view(DEV_A);
	struct usage u = mine();
	CHECK_EQ(3 * MiB, u.data);
	CHECK_EQ(MiB, u.context);
	CHECK_EQ(4 * MiB, v.in_use_bytes);
	CU(cuMemFree_v2(mine_ptr));
	CHECK_EQ(MiB, device_view(DEV_A).in_use_bytes);
}

/* ---- fork and exec ------------------------------------------------------------ */

static int child_exec_alloc(void)
{
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, MiB));
	CHECK_EQ(MiB, mine().data);
	CU(cuMemFree_v2(p));
	return 0;
}

static void test_fork(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "64m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, 2 * MiB));
	pid_t parent = getpid();

	/* Without exec: the child claims its own slot on its next call. */
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		CUdeviceptr q;
		if (cuMemAlloc_v2(&q, MiB) != CUDA_SUCCESS)
			_exit(2);
		if (usage_of(getpid(), DEV_A).data != MiB)
			_exit(3);
		if (usage_of(parent, DEV_A).data != 2 * MiB)
			_exit(4);
		/* The parent's pointer is not the child's to release. */
		cuMemFree_v2(p);
		if (usage_of(parent, DEV_A).data != 2 * MiB)
			_exit(5);
		_exit(0);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(0, WEXITSTATUS(status));
	CHECK_EQ(2 * MiB, mine().data);

	/* With exec. */
	const char *args[] = {"child-exec-alloc", NULL};
	CHECK_EQ(0, run_self(NULL, 0, NULL, args));
	CHECK_EQ(2 * MiB, mine().data);
	gpucap_region *r = admin();
	gpucap_region_reclaim_dead(r, NULL);
	gpucap_region_detach(r);
	CHECK_EQ(2 * MiB, device_view(DEV_A).in_use_bytes);
}

/* The parent of a forked child dies: its slot must be reclaimable while the
 * child lives on (the child must not keep the parent's lease). */
static int child_fork_orphan(void)
{
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, 2 * MiB));
	pid_t grandchild = fork();
	if (grandchild == 0) {
		/* fork() has returned here, so the at-fork handler that drops the
		 * inherited lease has run: only now may the test probe it. */
		printf("%d\n", (int)getpid());
		fflush(stdout);
		sleep(20);
		_exit(0);
	}
	_exit(0); /* no detach, no free: like a crash */
}

static void test_fork_orphan(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "64m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	int o[2];
	CHECK(pipe(o) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(o[1], STDOUT_FILENO);
		close(o[0]);
		execl(self_path, self_path, "child-fork-orphan", (char *)NULL);
		_exit(127);
	}
	close(o[1]);
	char buf[32] = "";
	CHECK(read(o[0], buf, sizeof(buf) - 1) > 0);
	close(o[0]);
	pid_t grandchild = (pid_t)atoi(buf);
	CHECK(grandchild > 0);
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_EQ(2 * MiB, device_view(DEV_A).in_use_bytes);
	gpucap_region *r = admin();
	struct gpucap_reclaim_report report;
	memset(&report, 0, sizeof(report));
	CHECK_EQ(GPUCAP_OK, gpucap_region_reclaim_dead(r, &report));
	gpucap_region_detach(r);
	kill(grandchild, SIGKILL);
	CHECK_EQ(1, report.slots);
	CHECK_EQ(0, device_view(DEV_A).in_use_bytes);
}

/* ---- Many threads ------------------------------------------------------------ */

static void *thread_churn(void *arg)
{
	CUcontext ctx = arg;
	CU(cuCtxSetCurrent(ctx));
	for (int i = 0; i < 2000; i++) {
		CUdeviceptr p;
		CUresult r = cuMemAlloc_v2(&p, 64 * 1024 + (size_t)(i % 7) * 4096);
		if (r == CUDA_SUCCESS)
			CU(cuMemFree_v2(p));
		else
			CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, r);
	}
	return NULL;
}

static void test_threads(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "4m", 1);
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	CUcontext ctx = start_device(0);
	enum { T = 8 };
	pthread_t th[T];
	for (int i = 0; i < T; i++)
		CHECK(pthread_create(&th[i], NULL, thread_churn, ctx) == 0);
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	CHECK_EQ(0, mine().data);
	CHECK_EQ(0, fakecuda_device_used(0));
	struct gpucap_device_view v = device_view(DEV_A);
	CHECK(v.charged_bytes <= v.limit_bytes);
}

/* ---- identity ------------------------------------------------------------------ */

/* The slot of this process records a host PID at once when the process is in
 * the initial PID namespace, and "unknown" in any other namespace. Prints
 * and returns 0 when the record matches what this process can see. */
/* The process's own view: in the initial namespace, its slot names getpid()
 * as host PID at once. Elsewhere the checks are the parent's (see below). */
static int child_identity(void)
{
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, 4096));
	gpucap_region *r = observer();
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	int matched = 0;
	for (uint32_t i = 0; i < s->process_count; i++) {
		const struct gpucap_process_view *v = &s->processes[i];
		if (v->pid == getpid())
			matched = v->host_pid == getpid() &&
			          v->host_pid_source == GPUCAP_HOST_PID_SAME_NAMESPACE &&
			          v->pid_ns_inode == UINT64_C(4026531836);
	}
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
	return matched ? 0 : 1;
}

/* Inside a namespace: allocate, say so on stdout, hold until stdin closes. */
static int child_identity_hold(void)
{
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, 4096));
	printf("ready\n");
	fflush(stdout);
	char c;
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

/* The last NSpid field and the PID-namespace inode of host process pid. */
static bool host_view(int32_t pid, long *innermost, unsigned long long *ns)
{
	char path[64], line[256], link[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	ssize_t n = readlink(path, link, sizeof(link) - 1);
	if (n <= 0)
		return false;
	link[n] = '\0';
	if (sscanf(link, "pid:[%llu]", ns) != 1)
		return false;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	*innermost = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "NSpid:", 6) != 0)
			continue;
		char *cursor = line + 6, *end;
		for (long v = strtol(cursor, &end, 10); end != cursor; v = strtol(cursor, &end, 10)) {
			*innermost = v;
			cursor = end;
		}
	}
	fclose(f);
	return *innermost > 0;
}

/* The one slot not in the initial namespace, checked against the host's
 * /proc: its host PID must be the host process with its namespace and PID. */
static void expect_namespaced_slot(gpucap_host_pid_source want)
{
	gpucap_region *r = observer();
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	int found = 0;
	for (uint32_t i = 0; i < s->process_count; i++) {
		const struct gpucap_process_view *v = &s->processes[i];
		if (!v->alive || v->pid_ns_inode == UINT64_C(4026531836))
			continue;
		found++;
		printf("namespaced pid %d (ns %llu): host pid %d, source %d\n", v->pid,
		       (unsigned long long)v->pid_ns_inode, v->host_pid, v->host_pid_source);
		CHECK(v->host_pid_source == want);
		if (want == GPUCAP_HOST_PID_UNKNOWN) {
			CHECK(v->host_pid == 0);
			continue;
		}
		long innermost;
		unsigned long long ns;
		CHECK(host_view(v->host_pid, &innermost, &ns));
		CHECK(innermost == v->pid && ns == v->pid_ns_inode);
	}
	CHECK(found == 1);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
}

/* Run child-identity-hold under unshare with extra flags; returns its pid
 * and the pipe that holds it alive (close it to let it go). */
static pid_t start_namespaced(const char *mount_proc, int *hold)
{
	int to_child[2], from_child[2];
	CHECK(pipe(to_child) == 0 && pipe(from_child) == 0);
	pid_t child = fork();
	CHECK(child >= 0);
	if (child == 0) {
		dup2(to_child[0], 0);
		dup2(from_child[1], 1);
		close(to_child[1]);
		close(from_child[0]);
		/* LeakSanitizer cannot run inside a new PID namespace. */
		setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 1);
		if (mount_proc)
			execlp("unshare", "unshare", "--pid", "--fork", mount_proc, self_path,
			       "child-identity-hold", (char *)NULL);
		else
			execlp("unshare", "unshare", "--pid", "--fork", self_path, "child-identity-hold",
			       (char *)NULL);
		_exit(127);
	}
	close(to_child[0]);
	close(from_child[1]);
	char line[16] = "";
	ssize_t n = read(from_child[0], line, sizeof(line) - 1);
	close(from_child[0]);
	if (n <= 0) {
		int status;
		waitpid(child, &status, 0);
		fprintf(stderr, "identity: unshare --pid %s failed (needs root and util-linux)\n",
		        mount_proc ? mount_proc : "");
		exit(1);
	}
	*hold = to_child[1];
	return child;
}

static void stop_namespaced(pid_t child, int hold)
{
	close(hold);
	int status;
	CHECK(waitpid(child, &status, 0) == child);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_identity(void)
{
	fresh_region();
	CHECK(child_identity() == 0);

	/* A namespace that kept the host's /proc: NSpid names the host PID. */
	int hold;
	pid_t child = start_namespaced(NULL, &hold);
	expect_namespaced_slot(GPUCAP_HOST_PID_HOST_PROCFS);
	stop_namespaced(child, hold);

	/* A container's own /proc: unknown (never guessed) until a resolver on
	 * the host records it. */
	child = start_namespaced("--mount-proc", &hold);
	expect_namespaced_slot(GPUCAP_HOST_PID_UNKNOWN);
	gpucap_region *r = admin();
	struct gpucap_resolve_counts counts;
	CHECK(gpucap_resolve_host_pids(r, &counts) == GPUCAP_OK);
	CHECK(counts.resolved == 1);
	gpucap_region_detach(r);
	expect_namespaced_slot(GPUCAP_HOST_PID_HOST_RESOLVER);
	stop_namespaced(child, hold);

	/* The same through the command an operator runs on the host. */
	const char *cli = getenv("HOOKTEST_GPUCAP");
	CHECK(cli != NULL);
	child = start_namespaced("--mount-proc", &hold);
	expect_namespaced_slot(GPUCAP_HOST_PID_UNKNOWN);
	char command[1024], output[512] = "";
	snprintf(command, sizeof(command), "'%s' resolve --json --file '%s'", cli, region_path);
	FILE *p = popen(command, "r");
	CHECK(p != NULL);
	size_t n = fread(output, 1, sizeof(output) - 1, p);
	output[n] = '\0';
	CHECK(pclose(p) == 0);
	printf("gpucap resolve: %s", output);
	CHECK(strstr(output, "\"resolved\":1") != NULL);
	expect_namespaced_slot(GPUCAP_HOST_PID_HOST_RESOLVER);
	stop_namespaced(child, hold);
}

/* ---- main ------------------------------------------------------------------------ */

struct test_case {
	const char *name;
	void (*fn)(void);
};

static const struct test_case cases[] = {
    {"routes", test_routes},
    {"accounting", test_accounting},
    {"errors", test_errors},
    {"context-oom", test_context_oom},
    {"driver-oom", test_driver_oom},
    {"truncated", test_truncated},
    {"pool-sync", test_pool_sync},
    {"views", test_views},
    {"views-unlimited", test_views_unlimited},
    {"visible-uuids", test_visible_uuids},
    {"visible-indices", test_visible_indices},
    {"visible-mig", test_visible_mig},
    {"malformed", test_malformed},
    {"unhooked-said-once", test_unhooked_said_once},
    {"many-processes", test_many_processes},
    {"sigkill", test_sigkill},
    {"fork", test_fork},
    {"fork-orphan", test_fork_orphan},
    {"threads", test_threads},
    {"identity", test_identity},
};

int main(int argc, char **argv)
{
	ssize_t len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	CHECK(len > 0);
	self_path[len] = '\0';
	if (argc < 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	/* Children: the region path comes from the parent's environment. */
	const char *inherited = getenv("GPUCAP_REGION");
	if (inherited)
		snprintf(region_path, sizeof(region_path), "%s", inherited);
	if (strcmp(argv[1], "child-alloc-each") == 0)
		return child_alloc_each(argc > 2 ? atoi(argv[2]) : 1);
	if (strcmp(argv[1], "child-fill") == 0)
		return child_fill();
	if (strcmp(argv[1], "child-churn") == 0)
		return child_churn();
	if (strcmp(argv[1], "child-exec-alloc") == 0)
		return child_exec_alloc();
	if (strcmp(argv[1], "child-fork-orphan") == 0)
		return child_fork_orphan();
	if (strcmp(argv[1], "child-identity") == 0)
		return child_identity();
	if (strcmp(argv[1], "child-unhooked-lookups") == 0)
		return child_unhooked_lookups();
	if (strcmp(argv[1], "child-truncated") == 0)
		return child_truncated();
	if (strcmp(argv[1], "child-identity-hold") == 0)
		return child_identity_hold();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].fn();
			return 0;
		}
	}
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
