/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
/*
 * N processes race to fill one cap in 64 MiB cuMemAlloc chunks, then 1 MiB
 * ones. Each holds what it got until all have finished, so the sum is held
 * at one instant, and the processes' real usage is read from outside
 * (nvidia-smi, without the preload) while it is held.
 *   race_fill N CAP_BYTES ROUNDS
 * Checks, per round: every process stopped with CUDA_ERROR_OUT_OF_MEMORY; the
 * processes' real total is within the cap; and the data they hold is at
 * least 99% of the cap less their contexts' real footprint (real usage less
 * data), so no cap is wasted on over-charged contexts.
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
	long mib = 0;
	CUresult rc = CUDA_SUCCESS;
	for (uint64_t chunk = CHUNK; chunk >= (UINT64_C(1) << 20); chunk /= 64)
		while ((rc = cuMemAlloc(&ptr, chunk)) == CUDA_SUCCESS)
			mib += (long)(chunk >> 20);
	long line[3] = {mib, (long)rc, (long)getpid()};
	if (write(report_fd, line, sizeof(line)) != (ssize_t)sizeof(line))
		return 4;
	char c;
	if (read(hold_fd, &c, 1) < 0) /* returns 0 when the parent closes it */
		return 5;
	return 0;
}

/* The real usage of the given processes in MiB, from nvidia-smi run
 * without the preload; -1 when it cannot be read. */
static long real_usage_mib(const long *pids, int n)
{
	FILE *f = popen(
	    "env -u LD_PRELOAD nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits",
	    "r");
	if (!f)
		return -1;
	long total = 0, pid, mib;
	int found = 0;
	while (fscanf(f, "%ld, %ld", &pid, &mib) == 2) {
		for (int i = 0; i < n; i++) {
			if (pids[i] == pid) {
				total += mib;
				found++;
			}
		}
	}
	pclose(f);
	return found == n ? total : -1;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: race_fill N CAP_BYTES ROUNDS\n");
		return 2;
	}
	int n = atoi(argv[1]), rounds = atoi(argv[3]);
	uint64_t cap = strtoull(argv[2], NULL, 10);
	int failures = 0;
	double worst_share = 1e9;
	long highest_real = -1, cap_mib = (long)(cap >> 20);
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
		long data_mib = 0;
		int oom = 0;
		long child_pid[64];
		int reported = 0;
		for (int i = 0; i < n; i++) {
			long line[3];
			if (read(report[0], line, sizeof(line)) != (ssize_t)sizeof(line))
				break;
			data_mib += line[0];
			oom += line[1] == CUDA_ERROR_OUT_OF_MEMORY;
			child_pid[reported++] = line[2];
		}
		long real_mib = real_usage_mib(child_pid, reported);
		close(hold[1]); /* all may now exit */
		for (int i = 0; i < n; i++) {
			int status;
			waitpid(pids[i], &status, 0);
		}
		close(report[0]);
		long contexts_mib = real_mib - data_mib;
		double share = cap_mib > contexts_mib && real_mib >= 0
		                   ? 100.0 * (double)data_mib / (double)(cap_mib - contexts_mib)
		                   : 0.0;
		int ok = oom == n && real_mib >= 0 && real_mib <= cap_mib &&
		         100 * data_mib >= 99 * (cap_mib - contexts_mib);
		printf(
		    "  %s round %d: %d processes hold %ld MiB of data, %ld MiB real (contexts %ld MiB), cap %ld MiB: data is %.2f%% of the cap less the contexts; %d stopped with OUT_OF_MEMORY\n",
		    ok ? "ok  " : "FAIL", round, n, data_mib, real_mib, contexts_mib, cap_mib, share, oom);
		failures += !ok;
		if (share < worst_share)
			worst_share = share;
		if (real_mib > highest_real)
			highest_real = real_mib;
	}
	/* The figures the caller's pass line states. */
	printf(
	    "summary: %d rounds, %d failed; data at least %.2f%% of the cap less the contexts (needs 99%%); real total at most %ld MiB of the %ld MiB cap\n",
	    rounds, failures, rounds > 0 ? worst_share : 0.0, highest_real, cap_mib);
	return failures ? 1 : 0;
}
