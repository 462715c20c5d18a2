/* SPDX-License-Identifier: Apache-2.0 */
/*
 * alloc-until-refused: the first program to run under gpucap. It loads the
 * CUDA driver (libcuda.so.1) itself, so it needs no CUDA toolkit to build,
 * then allocates device memory in steps until the driver refuses, and says
 * how far it got. Under "gpucap run -m 2g" the refusal comes at the cap:
 *
 *   ./gpucap run -m 2g -- build/bin/alloc-until-refused
 *
 * usage: alloc-until-refused [STEP_MIB] (default 256)
 * Exit status: 0 an allocation was refused with CUDA_ERROR_OUT_OF_MEMORY
 * (the expected end); 1 no usable GPU or driver (one line says which);
 * 2 usage error; 3 the driver failed in another way.
 */
#define _POSIX_C_SOURCE 200809L

#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The few driver types and codes used here, as the CUDA driver API
 * defines them (cuda.h is not needed to build). */
typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef unsigned long long CUdeviceptr;

enum {
	CUDA_SUCCESS = 0,
	CUDA_ERROR_OUT_OF_MEMORY = 2,
	CUDA_ERROR_NOT_INITIALIZED = 3,
	CUDA_ERROR_NO_DEVICE = 100,
	CUDA_ERROR_INVALID_DEVICE = 101,
};

#define MAX_BLOCKS 4096
#define MIB        (UINT64_C(1) << 20)

struct driver {
	CUresult (*init)(unsigned int);
	CUresult (*device_get_count)(int *);
	CUresult (*device_get)(CUdevice *, int);
	CUresult (*ctx_create)(CUcontext *, unsigned int, CUdevice);
	CUresult (*ctx_destroy)(CUcontext);
	CUresult (*mem_get_info)(size_t *, size_t *);
	CUresult (*mem_alloc)(CUdeviceptr *, size_t);
	CUresult (*mem_free)(CUdeviceptr);
};

static const char *error_name(CUresult r)
{
	switch (r) {
	case CUDA_SUCCESS:
		return "CUDA_SUCCESS";
	case CUDA_ERROR_OUT_OF_MEMORY:
		return "CUDA_ERROR_OUT_OF_MEMORY";
	case CUDA_ERROR_NOT_INITIALIZED:
		return "CUDA_ERROR_NOT_INITIALIZED";
	case CUDA_ERROR_NO_DEVICE:
		return "CUDA_ERROR_NO_DEVICE";
	case CUDA_ERROR_INVALID_DEVICE:
		return "CUDA_ERROR_INVALID_DEVICE";
	default:
		return "a CUDA error";
	}
}

/* dlsym returns void *; POSIX guarantees it converts to a function pointer. */
#define LOAD(field, name)                                                                                    \
	do {                                                                                                 \
		*(void **)(&d->field) = dlsym(lib, name);                                                    \
		if (!d->field) {                                                                             \
			fprintf(                                                                             \
			    stderr,                                                                          \
			    "alloc-until-refused: libcuda.so.1 has no %s; install a newer NVIDIA driver\n",  \
			    name);                                                                           \
			return false;                                                                        \
		}                                                                                            \
	} while (0)

static bool load_driver(struct driver *d)
{
	void *lib = dlopen("libcuda.so.1", RTLD_NOW);
	if (!lib) {
		fprintf(
		    stderr,
		    "alloc-until-refused: no NVIDIA driver here (libcuda.so.1 cannot be loaded); this example needs a machine with an NVIDIA GPU and its driver\n");
		return false;
	}
	LOAD(init, "cuInit");
	LOAD(device_get_count, "cuDeviceGetCount");
	LOAD(device_get, "cuDeviceGet");
	LOAD(ctx_create, "cuCtxCreate_v2");
	LOAD(ctx_destroy, "cuCtxDestroy_v2");
	LOAD(mem_get_info, "cuMemGetInfo_v2");
	LOAD(mem_alloc, "cuMemAlloc_v2");
	LOAD(mem_free, "cuMemFree_v2");
	return true;
}

int main(int argc, char **argv)
{
	uint64_t step_mib = 256;
	if (argc > 2 || (argc == 2 && (step_mib = strtoull(argv[1], NULL, 10)) == 0) || step_mib > 65536) {
		fprintf(
		    stderr,
		    "usage: alloc-until-refused [STEP_MIB] (a whole number of MiB from 1 to 65536; default 256)\n");
		return 2;
	}
	struct driver d;
	if (!load_driver(&d))
		return 1;
	CUresult r = d.init(0);
	int count = 0;
	if (r == CUDA_SUCCESS)
		r = d.device_get_count(&count);
	if (r != CUDA_SUCCESS || count == 0) {
		fprintf(
		    stderr,
		    "alloc-until-refused: no GPU found (%s); this example needs a machine with an NVIDIA GPU\n",
		    r == CUDA_SUCCESS ? "no devices" : error_name(r));
		return 1;
	}
	CUdevice device;
	CUcontext context;
	if ((r = d.device_get(&device, 0)) != CUDA_SUCCESS ||
	    (r = d.ctx_create(&context, 0, device)) != CUDA_SUCCESS) {
		fprintf(stderr, "alloc-until-refused: cannot open device 0: %s (%d)\n", error_name(r), r);
		return r == CUDA_ERROR_OUT_OF_MEMORY ? 0 : 3;
	}
	size_t free_bytes = 0, total_bytes = 0;
	if (d.mem_get_info(&free_bytes, &total_bytes) == CUDA_SUCCESS)
		printf(
		    "device 0: %llu MiB total, %llu MiB free (under gpucap: the cap and what is left of it)\n",
		    (unsigned long long)(total_bytes / MIB), (unsigned long long)(free_bytes / MIB));

	static CUdeviceptr blocks[MAX_BLOCKS];
	int held = 0;
	int rc = 3;
	for (;;) {
		if (held == MAX_BLOCKS) {
			printf("stopped after %d allocations of %llu MiB without a refusal\n", held,
			       (unsigned long long)step_mib);
			break;
		}
		r = d.mem_alloc(&blocks[held], (size_t)(step_mib * MIB));
		if (r == CUDA_ERROR_OUT_OF_MEMORY) {
			printf("refused at %llu MiB held, asking for %llu MiB more: %s\n",
			       (unsigned long long)(held * step_mib), (unsigned long long)step_mib,
			       error_name(r));
			rc = 0;
			break;
		}
		if (r != CUDA_SUCCESS) {
			fprintf(stderr, "alloc-until-refused: allocation failed: %s (%d)\n", error_name(r),
			        r);
			break;
		}
		held++;
		printf("allocated %llu MiB\n", (unsigned long long)(held * step_mib));
	}
	for (int i = 0; i < held; i++)
		d.mem_free(blocks[i]);
	d.ctx_destroy(context);
	return rc;
}
