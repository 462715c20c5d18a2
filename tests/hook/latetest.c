/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A program that does not link the driver: it dlopens libcuda.so.1 late,
 * after gpucap is loaded, and reaches everything through dlsym and
 * cuGetProcAddress. The cap must hold on that route too.
 */
#define _GNU_SOURCE
#include "check.h"
#include "cuda_abi.h"
#include "hook_scratch.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)

static void *must(void *handle, const char *name)
{
	void *p = dlsym(handle, name);
	if (!p) {
		fprintf(stderr, "dlsym %s failed\n", name);
		exit(1);
	}
	return p;
}

static char region_dir[128];
static char region_path[192];

int main(void)
{
	hook_scratch_region("latetest", NULL, region_dir, sizeof(region_dir), region_path,
	                    sizeof(region_path));

	/* Nothing of the driver is loaded yet. */
	CHECK(dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD) == NULL);
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	CHECK(h != NULL);

	CUresult (*init)(unsigned int);
	CUresult (*retain)(CUcontext *, CUdevice);
	CUresult (*set_current)(CUcontext);
	CUresult (*gpa)(const char *, void **, int, cuuint64_t, CUdriverProcAddressQueryResult *);
	CUresult (*alloc)(CUdeviceptr *, size_t);
	CUresult (*alloc2)(CUdeviceptr *, size_t);
	CUresult (*mem_free)(CUdeviceptr);
	*(void **)&init = must(h, "cuInit");
	*(void **)&retain = must(h, "cuDevicePrimaryCtxRetain");
	*(void **)&set_current = must(h, "cuCtxSetCurrent");
	*(void **)&gpa = must(h, "cuGetProcAddress_v2");
	*(void **)&alloc = must(h, "cuMemAlloc_v2");
	*(void **)&mem_free = must(h, "cuMemFree_v2");
	/* The wrappers are those of the preloaded library. */
	CHECK(alloc == dlsym(RTLD_DEFAULT, "cuMemAlloc_v2"));

	CHECK(init(0) == CUDA_SUCCESS);
	CUcontext ctx;
	CHECK(retain(&ctx, 0) == CUDA_SUCCESS);
	CHECK(set_current(ctx) == CUDA_SUCCESS);

	void *fn = NULL;
	CHECK(gpa("cuMemAlloc", &fn, 13000, 0, NULL) == CUDA_SUCCESS);
	*(void **)&alloc2 = fn;
	CHECK(alloc2 == alloc);

	/* Cap 8 MiB (from the test's environment). */
	CUdeviceptr p, q;
	CHECK(alloc(&p, 6 * MiB) == CUDA_SUCCESS);
	CHECK(alloc2(&q, 4 * MiB) == CUDA_ERROR_OUT_OF_MEMORY);
	CHECK(mem_free(p) == CUDA_SUCCESS);
	CHECK(alloc2(&q, 8 * MiB) == CUDA_SUCCESS);
	CHECK(mem_free(q) == CUDA_SUCCESS);
	return 0;
}
