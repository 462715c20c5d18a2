/* SPDX-License-Identifier: Apache-2.0 */
/*
 * N processes each allocate and free SIZE bytes in a loop with cuMemAlloc /
 * cuMemFree. Prints p50 and p99 of one alloc+free pair over all processes.
 *   alloc_churn N SIZE_BYTES ITERATIONS
 * Run once natively and once under libgpucap.so (bench/gpu/run.sh).
 */
#include "gpu_bench_common.h"

#include <cuda.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: alloc_churn N SIZE_BYTES ITERATIONS\n");
		return 2;
	}
	int n = atoi(argv[1]);
	size_t size = strtoull(argv[2], NULL, 10);
	int iterations = atoi(argv[3]);
	uint64_t *samples = mmap(NULL, sizeof(uint64_t) * (size_t)n * (size_t)iterations,
	                         PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	volatile int *gate = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	for (int p = 0; p < n; p++) {
		if (fork() == 0) {
			CUdevice device;
			CUcontext context;
			CUdeviceptr ptr;
			if (cuInit(0) || cuDeviceGet(&device, 0) ||
			    cuDevicePrimaryCtxRetain(&context, device) || cuCtxSetCurrent(context))
				_exit(3);
			/* Warm up, then wait for everyone. */
			for (int i = 0; i < 10; i++)
				if (cuMemAlloc(&ptr, size) == CUDA_SUCCESS)
					cuMemFree(ptr);
			__atomic_fetch_add(&gate[1], 1, __ATOMIC_SEQ_CST);
			while (!__atomic_load_n(&gate[0], __ATOMIC_ACQUIRE))
				usleep(50);
			for (int i = 0; i < iterations; i++) {
				uint64_t t0 = bench_now_ns();
				CUresult rc = cuMemAlloc(&ptr, size);
				if (rc == CUDA_SUCCESS)
					cuMemFree(ptr);
				samples[(size_t)p * (size_t)iterations + (size_t)i] = bench_now_ns() - t0;
			}
			_exit(0);
		}
	}
	while (__atomic_load_n(&gate[1], __ATOMIC_ACQUIRE) < n)
		usleep(100);
	__atomic_store_n(&gate[0], 1, __ATOMIC_RELEASE);
	int failed = 0;
	for (int p = 0; p < n; p++) {
		int status;
		wait(&status);
		failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	size_t count = (size_t)n * (size_t)iterations;
	uint64_t p50 = percentile(samples, count, 50), p99 = percentile(samples, count, 99);
	printf("alloc_churn processes=%d size=%zu iterations=%d p50_us=%.2f p99_us=%.2f failed=%d\n", n, size,
	       iterations, (double)p50 / 1e3, (double)p99 / 1e3, failed);
	return failed ? 1 : 0;
}
