/* SPDX-License-Identifier: Apache-2.0 */
/*
 * N processes start together: cuInit, primary context, first 1 MiB
 * allocation and free. Each reports its start time from the common release
 * instant. Prints p50 and max over the processes, per round.
 *   start_race N ROUNDS
 */
#include "gpu_bench_common.h"

#include <cuda.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: start_race N ROUNDS\n");
		return 2;
	}
	int n = atoi(argv[1]), rounds = atoi(argv[2]);
	uint64_t *samples =
	    mmap(NULL, sizeof(uint64_t) * 256, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	uint64_t all_p50 = 0, all_max = 0;
	for (int round = 0; round < rounds; round++) {
		int gate[2];
		if (pipe(gate))
			return 2;
		for (int p = 0; p < n; p++) {
			if (fork() == 0) {
				close(gate[1]);
				char c;
				if (read(gate[0], &c, 1) != 0)
					_exit(2);
				uint64_t t0 = samples[255];
				CUdevice device;
				CUcontext context;
				CUdeviceptr ptr;
				if (cuInit(0) || cuDeviceGet(&device, 0) ||
				    cuDevicePrimaryCtxRetain(&context, device) || cuCtxSetCurrent(context) ||
				    cuMemAlloc(&ptr, 1 << 20) || cuMemFree(ptr))
					_exit(3);
				samples[p] = bench_now_ns() - t0;
				_exit(0);
			}
		}
		close(gate[0]);
		samples[255] = bench_now_ns();
		close(gate[1]); /* release all */
		int failed = 0;
		for (int p = 0; p < n; p++) {
			int status;
			wait(&status);
			failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		}
		uint64_t p50 = percentile(samples, (size_t)n, 50), max = samples[n - 1];
		printf("start_race processes=%d round=%d p50_ms=%.1f max_ms=%.1f failed=%d\n", n, round,
		       (double)p50 / 1e6, (double)max / 1e6, failed);
		all_p50 += p50;
		all_max += max;
	}
	printf("start_race processes=%d rounds=%d mean_p50_ms=%.1f mean_max_ms=%.1f\n", n, rounds,
	       (double)all_p50 / rounds / 1e6, (double)all_max / rounds / 1e6);
	return 0;
}
