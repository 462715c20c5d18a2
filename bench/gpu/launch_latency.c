/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Latency of cuLaunchKernel for an empty kernel (loaded from PTX, so no nvcc
 * is needed). Prints the p50 and p99 of the launch call itself over
 * ITERATIONS launches, synchronising every 1000.
 *   launch_latency ITERATIONS
 */
#include "gpu_bench_common.h"

#include <cuda.h>
#include <stdio.h>

static const char ptx[] = ".version 7.0\n"
                          ".target sm_70\n"
                          ".address_size 64\n"
                          ".visible .entry empty()\n"
                          "{\n"
                          "  ret;\n"
                          "}\n";

int main(int argc, char **argv)
{
	int iterations = argc > 1 ? atoi(argv[1]) : 100000;
	CUdevice device;
	CUcontext context;
	CUmodule module;
	CUfunction function;
	CUstream stream;
	if (cuInit(0) || cuDeviceGet(&device, 0) || cuDevicePrimaryCtxRetain(&context, device) ||
	    cuCtxSetCurrent(context) || cuModuleLoadData(&module, ptx) ||
	    cuModuleGetFunction(&function, module, "empty") ||
	    cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING)) {
		fprintf(stderr, "launch_latency: set-up failed\n");
		return 1;
	}
	uint64_t *samples = malloc(sizeof(uint64_t) * (size_t)iterations);
	for (int i = 0; i < 2000; i++)
		cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, stream, NULL, NULL);
	cuStreamSynchronize(stream);
	for (int i = 0; i < iterations; i++) {
		uint64_t t0 = bench_now_ns();
		cuLaunchKernel(function, 1, 1, 1, 1, 1, 1, 0, stream, NULL, NULL);
		samples[i] = bench_now_ns() - t0;
		if (i % 1000 == 999)
			cuStreamSynchronize(stream);
	}
	cuStreamSynchronize(stream);
	uint64_t p50 = percentile(samples, (size_t)iterations, 50),
	         p99 = percentile(samples, (size_t)iterations, 99);
	printf("launch_latency iterations=%d p50_ns=%llu p99_ns=%llu\n", iterations, (unsigned long long)p50,
	       (unsigned long long)p99);
	return 0;
}
