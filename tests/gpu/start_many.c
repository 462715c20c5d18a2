/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
/*
 * N processes start together, each creating its primary context and then
 * allocating BYTES, and hold what they got until all have finished, so the
 * processes' real usage is read from outside (nvidia-smi, without the
 * preload) at one instant.
 *   start_many N BYTES
 * Prints one line per outcome and a closing line:
 *   started S of N, refused R (OUT_OF_MEMORY O), real total T MiB, largest process P MiB
 * Exits 0 when it ran (the caller judges the figures), 2 on bad use.
 */
#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PROCS 256

/* Step at which a child stopped: 0 started (context and allocation held). */
enum { STARTED = 0, NO_INIT = 1, NO_CONTEXT = 2, NO_ALLOC = 3 };

static int child(int report_fd, int hold_fd, uint64_t bytes)
{
	CUdevice device;
	CUcontext context;
	CUdeviceptr ptr;
	long line[3] = {STARTED, CUDA_SUCCESS, (long)getpid()};
	CUresult rc = cuInit(0);
	if (rc == CUDA_SUCCESS)
		rc = cuDeviceGet(&device, 0);
	if (rc != CUDA_SUCCESS) {
		line[0] = NO_INIT;
	} else if ((rc = cuDevicePrimaryCtxRetain(&context, device)) != CUDA_SUCCESS ||
	           (rc = cuCtxSetCurrent(context)) != CUDA_SUCCESS) {
		line[0] = NO_CONTEXT;
	} else if ((rc = cuMemAlloc(&ptr, bytes)) != CUDA_SUCCESS) {
		line[0] = NO_ALLOC;
	}
	line[1] = (long)rc;
	if (write(report_fd, line, sizeof(line)) != (ssize_t)sizeof(line))
		return 4;
	char c;
	if (read(hold_fd, &c, 1) < 0) /* returns 0 when the parent closes it */
		return 5;
	return 0;
}

/* Real usage (MiB) of the given processes from nvidia-smi without the
 * preload: the total, and the largest. Processes not listed count 0. */
static void real_usage_mib(const long *pids, int n, long *total, long *largest)
{
	*total = 0;
	*largest = 0;
	FILE *f = popen(
	    "env -u LD_PRELOAD nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits",
	    "r");
	if (!f) {
		*total = -1;
		return;
	}
	long pid, mib;
	while (fscanf(f, "%ld, %ld", &pid, &mib) == 2) {
		for (int i = 0; i < n; i++) {
			if (pids[i] == pid) {
				*total += mib;
				if (mib > *largest)
					*largest = mib;
			}
		}
	}
	pclose(f);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: start_many N BYTES\n");
		return 2;
	}
	int n = atoi(argv[1]);
	uint64_t bytes = strtoull(argv[2], NULL, 10);
	if (n < 1 || n > MAX_PROCS || bytes == 0) {
		fprintf(stderr, "start_many: N must be 1 to %d and BYTES more than 0\n", MAX_PROCS);
		return 2;
	}
	int report[2], hold[2];
	if (pipe(report) || pipe(hold))
		return 2;
	pid_t pids[MAX_PROCS];
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			close(report[0]);
			close(hold[1]);
			_exit(child(report[1], hold[0], bytes));
		}
	}
	close(report[1]);
	close(hold[0]);
	int started = 0, refused = 0, oom = 0, reported = 0;
	long held[MAX_PROCS];
	for (int i = 0; i < n; i++) {
		long line[3];
		if (read(report[0], line, sizeof(line)) != (ssize_t)sizeof(line))
			break;
		reported++;
		if (line[0] == STARTED) {
			held[started++] = line[2];
		} else {
			refused++;
			oom += line[1] == CUDA_ERROR_OUT_OF_MEMORY;
			printf("process %ld stopped at %s: CUresult %ld\n", line[2],
			       line[0] == NO_INIT      ? "cuInit"
			       : line[0] == NO_CONTEXT ? "its context"
			                               : "its allocation",
			       line[1]);
		}
	}
	long total, largest;
	real_usage_mib(held, started, &total, &largest);
	close(hold[1]); /* all may now exit */
	for (int i = 0; i < n; i++) {
		int status;
		waitpid(pids[i], &status, 0);
	}
	close(report[0]);
	printf(
	    "started %d of %d, refused %d (OUT_OF_MEMORY %d), real total %ld MiB, largest process %ld MiB\n",
	    started, n, refused, oom, total, largest);
	return reported == n ? 0 : 1;
}
