/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Real-GPU test of each allocation path through the CUDA driver API.
 *
 *   driver_paths PATH CAP_BYTES     fill PATH under the cap and check it
 *   driver_paths badargs            print the error code of each bad call
 *
 * PATH: alloc, pitch, managed, vmm, async, pool, array, array3d, mipmap.
 * Under gpucap (CAP_BYTES > 0) it checks: cuMemGetInfo's total is the cap;
 * filling in 64 MiB chunks stops with CUDA_ERROR_OUT_OF_MEMORY, within one
 * chunk of the free memory reported at the start; freeing returns free memory
 * exactly to where it started. Exit status 0 when every check holds.
 */
#include <cuda.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MiB        (UINT64_C(1) << 20)
#define CHUNK      (64 * MiB)
#define MAX_CHUNKS 4096

static int failures;

#define CHECK(cond, ...)                                                                                     \
	do {                                                                                                 \
		if (cond) {                                                                                  \
			printf("  ok   ");                                                                   \
		} else {                                                                                     \
			printf("  FAIL ");                                                                   \
			failures++;                                                                          \
		}                                                                                            \
		printf(__VA_ARGS__);                                                                         \
		printf("\n");                                                                                \
	} while (0)

static const char *name_of(CUresult rc)
{
	const char *name = NULL;
	cuGetErrorName(rc, &name);
	return name ? name : "?";
}

static CUdevice device;
static CUcontext context;
static CUstream stream;
static CUmemoryPool pool;

struct held {
	int kind; /* 0 ptr, 1 vmm handle, 2 array, 3 mipmap, 4 async ptr */
	CUdeviceptr ptr;
	CUmemGenericAllocationHandle handle;
	CUarray array;
	CUmipmappedArray mipmap;
};

static struct held held[MAX_CHUNKS];
static size_t vmm_granularity;

/* One chunk of about CHUNK bytes through the path; the driver's result. */
static CUresult take(const char *path, struct held *h)
{
	memset(h, 0, sizeof(*h));
	if (!strcmp(path, "alloc"))
		return cuMemAlloc(&h->ptr, CHUNK);
	if (!strcmp(path, "pitch")) {
		size_t pitch;
		return cuMemAllocPitch(&h->ptr, &pitch, 16384, CHUNK / 16384, 16);
	}
	if (!strcmp(path, "managed"))
		return cuMemAllocManaged(&h->ptr, CHUNK, CU_MEM_ATTACH_GLOBAL);
	if (!strcmp(path, "vmm")) {
		CUmemAllocationProp prop;
		memset(&prop, 0, sizeof(prop));
		prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
		prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		prop.location.id = device;
		h->kind = 1;
		size_t size = (CHUNK + vmm_granularity - 1) / vmm_granularity * vmm_granularity;
		return cuMemCreate(&h->handle, size, &prop, 0);
	}
	if (!strcmp(path, "async")) {
		h->kind = 4;
		CUresult rc = cuMemAllocAsync(&h->ptr, CHUNK, stream);
		if (rc == CUDA_SUCCESS)
			rc = cuStreamSynchronize(stream);
		return rc;
	}
	if (!strcmp(path, "pool")) {
		h->kind = 4;
		CUresult rc = cuMemAllocFromPoolAsync(&h->ptr, CHUNK, pool, stream);
		if (rc == CUDA_SUCCESS)
			rc = cuStreamSynchronize(stream);
		return rc;
	}
	if (!strcmp(path, "array")) {
		CUDA_ARRAY_DESCRIPTOR desc = {
		    .Width = 4096, .Height = 4096, .Format = CU_AD_FORMAT_FLOAT, .NumChannels = 1};
		h->kind = 2;
		return cuArrayCreate(&h->array, &desc);
	}
	if (!strcmp(path, "array3d")) {
		CUDA_ARRAY3D_DESCRIPTOR desc = {.Width = 1024,
		                                .Height = 1024,
		                                .Depth = 16,
		                                .Format = CU_AD_FORMAT_FLOAT,
		                                .NumChannels = 1};
		h->kind = 2;
		return cuArray3DCreate(&h->array, &desc);
	}
	if (!strcmp(path, "mipmap")) {
		CUDA_ARRAY3D_DESCRIPTOR desc = {
		    .Width = 4096, .Height = 4096, .Format = CU_AD_FORMAT_FLOAT, .NumChannels = 1};
		h->kind = 3;
		return cuMipmappedArrayCreate(&h->mipmap, &desc, 1);
	}
	fprintf(stderr, "unknown path %s\n", path);
	exit(2);
}

static CUresult give_back(struct held *h)
{
	switch (h->kind) {
	case 1:
		return cuMemRelease(h->handle);
	case 2:
		return cuArrayDestroy(h->array);
	case 3:
		return cuMipmappedArrayDestroy(h->mipmap);
	case 4:
		return cuMemFreeAsync(h->ptr, stream);
	default:
		return cuMemFree(h->ptr);
	}
}

static void setup(void)
{
	CUresult rc = cuInit(0);
	if (rc == CUDA_SUCCESS)
		rc = cuDeviceGet(&device, 0);
	if (rc == CUDA_SUCCESS)
		rc = cuDevicePrimaryCtxRetain(&context, device);
	if (rc == CUDA_SUCCESS)
		rc = cuCtxSetCurrent(context);
	if (rc == CUDA_SUCCESS)
		rc = cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);
	if (rc != CUDA_SUCCESS) {
		printf("  FAIL setup: %s\n", name_of(rc));
		exit(1);
	}
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
	prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	prop.location.id = device;
	cuMemGetAllocationGranularity(&vmm_granularity, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
	CUmemPoolProps pool_props;
	memset(&pool_props, 0, sizeof(pool_props));
	pool_props.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
	pool_props.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	pool_props.location.id = device;
	cuMemPoolCreate(&pool, &pool_props);
}

static void fill(const char *path, uint64_t cap)
{
	size_t free0, total;
	cuMemGetInfo(&free0, &total);
	size_t device_total = 0;
	cuDeviceTotalMem(&device_total, device);
	printf("%s: cap %llu, cuMemGetInfo free %zu total %zu, cuDeviceTotalMem %zu\n", path,
	       (unsigned long long)cap, free0, total, device_total);
	if (cap) {
		CHECK(total == cap, "cuMemGetInfo total %zu == cap %llu", total, (unsigned long long)cap);
		CHECK(device_total == cap, "cuDeviceTotalMem %zu == cap", device_total);
		CHECK(free0 <= cap, "free %zu <= cap", free0);
	}
	size_t count = 0;
	CUresult rc = CUDA_SUCCESS;
	/* Natively, stop well before the card is full. */
	size_t limit = cap ? MAX_CHUNKS : 8;
	while (count < limit) {
		rc = take(path, &held[count]);
		if (rc != CUDA_SUCCESS)
			break;
		count++;
	}
	uint64_t taken = (uint64_t)count * CHUNK;
	printf("%s: took %zu chunks (%llu MiB), stopped with %s\n", path, count,
	       (unsigned long long)(taken / MiB), rc == CUDA_SUCCESS ? "none" : name_of(rc));
	if (cap) {
		CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "over the cap: %s (want CUDA_ERROR_OUT_OF_MEMORY)",
		      name_of(rc));
		CHECK(taken <= free0, "took %llu <= free at start %zu", (unsigned long long)taken, free0);
		CHECK(taken + 2 * CHUNK > free0, "the cap is tight: took %llu, free at start %zu",
		      (unsigned long long)taken, free0);
		size_t free_full;
		cuMemGetInfo(&free_full, &total);
		CHECK(free_full < CHUNK + CHUNK / 8, "free when full %zu < one chunk (never underflows)",
		      free_full);
	} else {
		CHECK(rc == CUDA_SUCCESS, "native: %zu chunks taken", count);
	}
	for (size_t i = 0; i < count; i++) {
		CUresult back = give_back(&held[i]);
		if (back != CUDA_SUCCESS)
			CHECK(false, "free chunk %zu: %s", i, name_of(back));
	}
	cuStreamSynchronize(stream);
	if (!strcmp(path, "async") || !strcmp(path, "pool")) {
		CUmemoryPool p = pool;
		if (!strcmp(path, "async"))
			cuDeviceGetDefaultMemPool(&p, device);
		size_t free_pooled;
		cuMemGetInfo(&free_pooled, &total);
		printf("%s: after free, before trim: free %zu\n", path, free_pooled);
		cuMemPoolTrimTo(p, 0);
		cuStreamSynchronize(stream);
	}
	size_t free1;
	cuMemGetInfo(&free1, &total);
	if (cap)
		CHECK(free1 == free0, "after freeing all: free %zu == free at start %zu", free1, free0);
}

/* Error codes of calls the driver rejects; run natively and capped and diff. */
static void badargs(void)
{
	CUdeviceptr ptr;
	size_t pitch, a, b;
	CUmemGenericAllocationHandle handle;
	CUarray array;
	CUmemAllocationProp prop;
	memset(&prop, 0, sizeof(prop));
	CUDA_ARRAY_DESCRIPTOR bad_desc = {
	    .Width = 0, .Height = 0, .Format = CU_AD_FORMAT_FLOAT, .NumChannels = 3};
	printf("cuMemAlloc(NULL, 1) %s\n", name_of(cuMemAlloc(NULL, 1)));
	printf("cuMemAlloc(&p, 0) %s\n", name_of(cuMemAlloc(&ptr, 0)));
	printf("cuMemAllocPitch(NULL) %s\n", name_of(cuMemAllocPitch(NULL, &pitch, 16, 16, 16)));
	printf("cuMemAllocPitch(bad element) %s\n", name_of(cuMemAllocPitch(&ptr, &pitch, 16, 16, 3)));
	printf("cuMemAllocManaged(NULL) %s\n", name_of(cuMemAllocManaged(NULL, 1, CU_MEM_ATTACH_GLOBAL)));
	printf("cuMemAllocManaged(bad flags) %s\n", name_of(cuMemAllocManaged(&ptr, 1, 77)));
	printf("cuMemFree(0) %s\n", name_of(cuMemFree(0)));
	printf("cuMemGetInfo(NULL, NULL) %s\n", name_of(cuMemGetInfo(NULL, NULL)));
	printf("cuMemGetInfo(&a, NULL) %s\n", name_of(cuMemGetInfo(&a, NULL)));
	(void)b;
	printf("cuDeviceTotalMem(NULL) %s\n", name_of(cuDeviceTotalMem(NULL, device)));
	printf("cuMemCreate(bad prop) %s\n", name_of(cuMemCreate(&handle, 2 * MiB, &prop, 0)));
	printf("cuMemCreate(NULL) %s\n", name_of(cuMemCreate(NULL, 2 * MiB, &prop, 0)));
	printf("cuMemAllocAsync(NULL) %s\n", name_of(cuMemAllocAsync(NULL, 1, stream)));
	printf("cuArrayCreate(NULL) %s\n", name_of(cuArrayCreate(NULL, &bad_desc)));
	printf("cuArrayCreate(bad desc) %s\n", name_of(cuArrayCreate(&array, &bad_desc)));
	printf("cuArray3DCreate(NULL desc) %s\n", name_of(cuArray3DCreate(&array, NULL)));
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: driver_paths PATH CAP_BYTES | driver_paths badargs\n");
		return 2;
	}
	setup();
	if (!strcmp(argv[1], "badargs")) {
		badargs();
		return 0;
	}
	fill(argv[1], argc > 2 ? strtoull(argv[2], NULL, 10) : 0);
	printf("%s: %s\n", argv[1], failures ? "FAILED" : "passed");
	return failures ? 1 : 0;
}
