#define _POSIX_C_SOURCE 200809L
/*
 * N processes race to fill one cap in 64 MiB cuMemAlloc chunks. Each holds
 * what it got until all have finished, so the sum is held at one instant.
 *   race_fill N CAP_BYTES ROUNDS
 * Checks, per round: every process stopped with CUDA_ERROR_OUT_OF_MEMORY, and
 * the sum of chunks plus each process's context charge is within the cap.
 */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHUNK (UINT64_C(64) << 20)

static int child(int report_fd, int hold_fd)
{
	CUdevice device;
	CUcontext context;
	CUdeviceptr ptr;
	if (cuInit(0) || cuDeviceGet(&device, 0) || cuDevicePrimaryCtxRetain(&context, device) ||
	    cuCtxSetCurrent(context))
		return 3;
	size_t free0, total;
	cuMemGetInfo(&free0, &total);
	long count = 0;
	CUresult rc;
	while ((rc = cuMemAlloc(&ptr, CHUNK)) == CUDA_SUCCESS)
		count++;
	long line[3] = {count, (long)rc, (long)total};
	if (write(report_fd, line, sizeof(line)) != (ssize_t)sizeof(line))
		return 4;
	char c;
	if (read(hold_fd, &c, 1) < 0) /* returns 0 when the parent closes it */
		return 5;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: race_fill N CAP_BYTES ROUNDS\n");
		return 2;
	}
	int n = atoi(argv[1]), rounds = atoi(argv[3]);
	uint64_t cap = strtoull(argv[2], NULL, 10);
	uint64_t context_bytes = getenv("GPUCAP_CONTEXT_BYTES")
	                             ? strtoull(getenv("GPUCAP_CONTEXT_BYTES"), NULL, 10)
	                             : (UINT64_C(640) << 20);
	int failures = 0;
	for (int round = 0; round < rounds; round++) {
		int report[2], hold[2];
		if (pipe(report) || pipe(hold))
			return 2;
		pid_t pids[64];
		for (int i = 0; i < n; i++) {
			pids[i] = fork();
			if (pids[i] == 0) {
				close(report[0]);
				close(hold[1]);
				_exit(child(report[1], hold[0]));
			}
		}
		close(report[1]);
		close(hold[0]);
		long chunks = 0;
		int oom = 0;
		for (int i = 0; i < n; i++) {
			long line[3];
			if (read(report[0], line, sizeof(line)) != (ssize_t)sizeof(line))
				break;
			chunks += line[0];
			oom += line[1] == CUDA_ERROR_OUT_OF_MEMORY;
		}
		close(hold[1]); /* all may now exit */
		for (int i = 0; i < n; i++) {
			int status;
			waitpid(pids[i], &status, 0);
		}
		close(report[0]);
		uint64_t held = (uint64_t)chunks * CHUNK + (uint64_t)n * context_bytes;
		int ok = oom == n && held <= cap && held + (uint64_t)n * CHUNK > cap;
		printf(
		    "  %s round %d: %d processes, %ld chunks = %llu MiB + %d contexts x %llu MiB = %llu MiB held, cap %llu MiB, %d stopped with OUT_OF_MEMORY\n",
		    ok ? "ok  " : "FAIL", round, n, chunks,
		    (unsigned long long)((uint64_t)chunks * CHUNK >> 20), n,
		    (unsigned long long)(context_bytes >> 20), (unsigned long long)(held >> 20),
		    (unsigned long long)(cap >> 20), oom);
		failures += !ok;
	}
	return failures ? 1 : 0;
}
