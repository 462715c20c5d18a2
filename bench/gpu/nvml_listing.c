/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L
/*
 * How long after a process creates its context does NVML list it, and with
 * what figure, when N processes start together? Runs without gpucap: it
 * measures the driver that gpucap's context measurement relies on.
 *   nvml_listing N [init-first]
 * Each of N processes creates its primary context and then asks
 * nvmlDeviceGetComputeRunningProcesses every millisecond (for at most 10 s)
 * until its own pid appears. "init-first" calls nvmlInit before the context
 * (as a process that used NVML earlier would). One line per process:
 *   pid P: nvmlInit X ms, context Y ms, listed after Z ms (Q queries) with U MiB; K processes listed
 * or "not listed after 10000 ms" with the pids NVML did list.
 */
#include <cuda.h>
#include <nvml.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS  256
#define MAX_LISTED 1024

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int child(int go_fd, int init_first)
{
	char c;
	if (read(go_fd, &c, 1) < 0) /* all start at once: the parent closes it */
		return 3;
	static nvmlProcessInfo_t infos[MAX_LISTED];
	double t0 = now_ms(), init_ms = 0;
	if (init_first) {
		if (nvmlInit_v2() != NVML_SUCCESS)
			return 4;
		init_ms = now_ms() - t0;
	}
	CUdevice device;
	CUcontext context;
	double c0 = now_ms();
	if (cuInit(0) != CUDA_SUCCESS || cuDeviceGet(&device, 0) != CUDA_SUCCESS ||
	    cuDevicePrimaryCtxRetain(&context, device) != CUDA_SUCCESS ||
	    cuCtxSetCurrent(context) != CUDA_SUCCESS)
		return 5;
	double ctx_ms = now_ms() - c0;
	if (!init_first) {
		double i0 = now_ms();
		if (nvmlInit_v2() != NVML_SUCCESS)
			return 4;
		init_ms = now_ms() - i0;
	}
	nvmlDevice_t nvml_dev;
	if (nvmlDeviceGetHandleByIndex_v2(0, &nvml_dev) != NVML_SUCCESS)
		return 6;
	double listed_at = -1, start = now_ms();
	unsigned long long used = 0;
	unsigned int count = 0, queries = 0;
	nvmlReturn_t last = NVML_SUCCESS;
	while (now_ms() - start < 10000.0) {
		count = MAX_LISTED;
		queries++;
		last = nvmlDeviceGetComputeRunningProcesses_v3(nvml_dev, &count, infos);
		if (last == NVML_SUCCESS) {
			for (unsigned int i = 0; i < count; i++) {
				if (infos[i].pid == (unsigned int)getpid()) {
					listed_at = now_ms() - start;
					used = infos[i].usedGpuMemory;
					break;
				}
			}
		}
		if (listed_at >= 0)
			break;
		struct timespec ms = {0, 1000000};
		nanosleep(&ms, NULL);
	}
	if (listed_at >= 0) {
		printf(
		    "pid %d: nvmlInit %.1f ms, context %.1f ms, listed after %.1f ms (%u queries) with %llu MiB; %u "
		    "processes listed\n",
		    (int)getpid(), init_ms, ctx_ms, listed_at, queries, used >> 20, count);
	} else {
		printf(
		    "pid %d: nvmlInit %.1f ms, context %.1f ms, not listed after 10000 ms (%u queries, last "
		    "answer %d); NVML listed %u:",
		    (int)getpid(), init_ms, ctx_ms, queries, (int)last, last == NVML_SUCCESS ? count : 0);
		for (unsigned int i = 0; last == NVML_SUCCESS && i < count && i < 16; i++)
			printf(" %u", infos[i].pid);
		printf("\n");
	}
	fflush(stdout);
	/* Hold the context until every process has looked. */
	sleep(1);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "init-first") != 0)) {
		fprintf(stderr, "usage: nvml_listing N [init-first]\n");
		return 2;
	}
	int n = atoi(argv[1]);
	if (n < 1 || n > MAX_PROCS) {
		fprintf(stderr, "nvml_listing: N must be 1 to %d\n", MAX_PROCS);
		return 2;
	}
	int go[2];
	if (pipe(go))
		return 2;
	for (int i = 0; i < n; i++) {
		if (fork() == 0) {
			close(go[1]);
			_exit(child(go[0], argc == 3));
		}
	}
	close(go[0]);
	close(go[1]);
	int failed = 0, status;
	while (wait(&status) > 0)
		failed += !WIFEXITED(status) || WEXITSTATUS(status) != 0;
	printf("%d processes, %d failed\n", n, failed);
	return failed != 0;
}
