/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The process that tests/hook/refusal_test.py watches, run with
 * libgpucap.so preloaded over the fake driver (the region, the limit and the
 * context size come from the environment the script sets):
 *
 *   refusaltest refuse N [churn]   a context and 2 MiB, then N allocations of
 *                                  16 MiB that must be refused; says "ready"
 *                                  on stdout, waits for stdin to close, and
 *                                  exits normally without freeing anything
 *                                  (with churn: while a thread allocates and
 *                                  frees without pause)
 *   refusaltest fork               a context and 2 MiB, then a forked child
 *                                  that exits normally, once without touching
 *                                  the driver and once after an allocation of
 *                                  its own; says "ready" and waits as above
 *
 * Exit status: 0, or the step that went wrong (the line on stderr says how).
 */
#define _GNU_SOURCE
#include "cuda_api.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)

static int fail(int step, const char *what, CUresult r)
{
	fprintf(stderr, "refusaltest: %s: CUresult %d\n", what, (int)r);
	return step;
}

static int start(void)
{
	CUresult r = cuInit(0);
	if (r != CUDA_SUCCESS)
		return fail(10, "cuInit", r);
	CUcontext ctx;
	r = cuDevicePrimaryCtxRetain(&ctx, 0);
	if (r != CUDA_SUCCESS)
		return fail(11, "cuDevicePrimaryCtxRetain", r);
	r = cuCtxSetCurrent(ctx);
	if (r != CUDA_SUCCESS)
		return fail(12, "cuCtxSetCurrent", r);
	CUdeviceptr p;
	r = cuMemAlloc_v2(&p, 2 * MiB);
	if (r != CUDA_SUCCESS)
		return fail(13, "cuMemAlloc_v2 of 2 MiB", r);
	return 0;
}

/* Tell the script we are ready; return once it closes our stdin. */
static void ready_then_wait(void)
{
	fputs("ready\n", stdout);
	fflush(stdout);
	char buf[64];
	while (fread(buf, 1, sizeof(buf), stdin) > 0) {
	}
}

static atomic_bool churn_started;

/* Allocates and frees until the process is gone: exit runs under it. */
static void *churn(void *arg)
{
	CUcontext ctx = arg;
	cuCtxSetCurrent(ctx);
	for (;;) {
		CUdeviceptr p;
		CUresult r = cuMemAlloc_v2(&p, 64 << 10);
		atomic_store(&churn_started, true);
		if (r == CUDA_SUCCESS)
			cuMemFree_v2(p);
	}
	return NULL;
}

static int refuse(int n, bool with_churn)
{
	int rc = start();
	if (rc)
		return rc;
	for (int i = 0; i < n; i++) {
		CUdeviceptr p;
		CUresult r = cuMemAlloc_v2(&p, 16 * MiB);
		if (r != CUDA_ERROR_OUT_OF_MEMORY)
			return fail(20, "cuMemAlloc_v2 of 16 MiB over an 8 MiB cap was not refused", r);
	}
	ready_then_wait();
	if (with_churn) {
		CUcontext ctx;
		CUresult r = cuCtxGetCurrent(&ctx);
		if (r != CUDA_SUCCESS)
			return fail(21, "cuCtxGetCurrent", r);
		pthread_t thread;
		if (pthread_create(&thread, NULL, churn, ctx) != 0)
			return fail(22, "pthread_create", CUDA_SUCCESS);
		while (!atomic_load(&churn_started))
			sched_yield();
	}
	return 0; /* exit(): the context and 2 MiB are still held */
}

static int child_exits(bool allocates)
{
	pid_t pid = fork();
	if (pid < 0)
		return fail(30, "fork", CUDA_SUCCESS);
	if (pid == 0) {
		if (allocates) {
			CUdeviceptr p;
			if (cuMemAlloc_v2(&p, MiB) != CUDA_SUCCESS)
				exit(2);
		}
		exit(0); /* a normal exit: destructors run */
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return fail(31, "the forked child failed", CUDA_SUCCESS);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "refuse") == 0)
		return refuse(atoi(argv[2]), argc >= 4 && strcmp(argv[3], "churn") == 0);
	if (argc == 2 && strcmp(argv[1], "fork") == 0) {
		int rc = start();
		if (!rc)
			rc = child_exits(false);
		if (!rc)
			rc = child_exits(true);
		if (rc)
			return rc;
		ready_then_wait();
		return 0;
	}
	fprintf(stderr, "usage: refusaltest refuse N [churn] | refusaltest fork\n");
	return 2;
}
