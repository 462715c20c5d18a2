/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Real-GPU sanity check of the SM gate: launch a busy-loop kernel through
 * each launch path for a while and print the kernels completed per second,
 * so that a script can compare a run under an SM cap with an uncapped one
 * path by path.
 *
 *   sm_gate [SECONDS [KERNEL_US [PATH]]]
 *
 * PATH: kernel, ex, coop, graph, ptsz, or all (default). SECONDS per path
 * (default 3), KERNEL_US the length of one kernel (default 1000). Each line:
 *
 *   path <name>: <kernels/s> kernels/s, busy ~<percent>%
 *
 * where busy = kernels/s x kernel length: about 100 uncapped, about the cap
 * under gpucap. The kernel spins on %globaltimer, one block per SM, so its
 * length does not depend on the clock or the GPU model.
 *
 *   sm_gate live GPUCAP REGION
 *
 * Live SM-limit changes: launches 1 ms kernels without pause for 9 s and, at
 * 3 s and 6 s, runs `GPUCAP set --file REGION --sm 80` and then `--sm 10`.
 * It prints the busy share of each 100 ms and exits 0 only if the share over
 * [1 s, 3 s) after each change is within 5 points of the new limit (the
 * change took effect within 1 s and holds). Run it under CUDA_DEVICE_SM_LIMIT=30
 * and the preload. Build:
 *
 *   cc -O2 -std=c11 -I/usr/local/cuda/include tests/gpu/sm_gate.c \
 *      -L/usr/local/cuda/lib64/stubs -lcuda -o sm_gate
 */
#define _POSIX_C_SOURCE 200809L
#include <cuda.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* spin(ns): every thread waits until ns nanoseconds have passed. */
static const char ptx[] = ".version 7.0\n"
                          ".target sm_70\n"
                          ".address_size 64\n"
                          ".visible .entry spin(.param .u64 ns)\n"
                          "{\n"
                          "  .reg .pred %p;\n"
                          "  .reg .u64 %r<5>;\n"
                          "  ld.param.u64 %r1, [ns];\n"
                          "  mov.u64 %r2, %globaltimer;\n"
                          "LOOP:\n"
                          "  mov.u64 %r3, %globaltimer;\n"
                          "  sub.u64 %r4, %r3, %r2;\n"
                          "  setp.lt.u64 %p, %r4, %r1;\n"
                          "  @%p bra LOOP;\n"
                          "  ret;\n"
                          "}\n";

#define GRAPH_KERNELS 10

static CUfunction spin;
static CUstream stream;
static unsigned int blocks;
static unsigned long long kernel_ns;
static void *params[1] = {&kernel_ns};

static void check(CUresult rc, const char *what)
{
	if (rc == CUDA_SUCCESS)
		return;
	const char *name = NULL;
	cuGetErrorName(rc, &name);
	fprintf(stderr, "%s failed: %s (%d)\n", what, name ? name : "?", (int)rc);
	exit(1);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef CUresult (*launch_kernel_fn)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                     unsigned int, unsigned int, unsigned int, CUstream, void **, void **);

static launch_kernel_fn launch_ptsz;
static CUgraphExec graph;

/* One launch through path; returns the kernels it ran. */
static unsigned launch_once(const char *path)
{
	if (strcmp(path, "kernel") == 0) {
		check(cuLaunchKernel(spin, blocks, 1, 1, 128, 1, 1, 0, stream, params, NULL),
		      "cuLaunchKernel");
	} else if (strcmp(path, "ex") == 0) {
		CUlaunchConfig config;
		memset(&config, 0, sizeof(config));
		config.gridDimX = blocks;
		config.gridDimY = config.gridDimZ = 1;
		config.blockDimX = 128;
		config.blockDimY = config.blockDimZ = 1;
		config.hStream = stream;
		check(cuLaunchKernelEx(&config, spin, params, NULL), "cuLaunchKernelEx");
	} else if (strcmp(path, "coop") == 0) {
		check(cuLaunchCooperativeKernel(spin, blocks, 1, 1, 128, 1, 1, 0, stream, params),
		      "cuLaunchCooperativeKernel");
	} else if (strcmp(path, "graph") == 0) {
		check(cuGraphLaunch(graph, stream), "cuGraphLaunch");
		return GRAPH_KERNELS;
	} else {
		/* The per-thread default stream (NULL), as code built with
		 * --default-stream per-thread launches. */
		check(launch_ptsz(spin, blocks, 1, 1, 128, 1, 1, 0, NULL, params, NULL),
		      "cuLaunchKernel_ptsz");
	}
	return 1;
}

static void run(const char *path, double seconds)
{
	/* Warm up (and let a throttle settle), then count. */
	double warm = now_s() + 0.5;
	while (now_s() < warm)
		launch_once(path);
	check(cuCtxSynchronize(), "cuCtxSynchronize");
	unsigned long long kernels = 0;
	double start = now_s(), end = start + seconds;
	while (now_s() < end)
		kernels += launch_once(path);
	check(cuCtxSynchronize(), "cuCtxSynchronize");
	double took = now_s() - start;
	double rate = (double)kernels / took;
	printf("path %s: %.1f kernels/s, busy ~%.1f%%\n", path, rate, rate * (double)kernel_ns / 1e7);
	fflush(stdout);
}

#define LIVE_BIN_S 0.1
#define LIVE_BINS  90 /* 9 s */

/* Mean busy percent of the bins in [from_s, to_s). */
static double live_share(const unsigned long long *bins, double from_s, double to_s)
{
	int first = (int)(from_s / LIVE_BIN_S + 0.5), last = (int)(to_s / LIVE_BIN_S + 0.5);
	double kernels = 0;
	for (int i = first; i < last; i++)
		kernels += (double)bins[i];
	return kernels * (double)kernel_ns / 1e9 / ((last - first) * LIVE_BIN_S) * 100.0;
}

static int live(const char *gpucap, const char *region)
{
	static unsigned long long bins[LIVE_BINS];
	const double change_at[2] = {3.0, 6.0};
	const int new_limit[2] = {80, 10};
	double warm = now_s() + 0.5;
	while (now_s() < warm)
		launch_once("kernel");
	double start = now_s();
	int changes = 0;
	for (;;) {
		double t = now_s() - start;
		if (t >= LIVE_BINS * LIVE_BIN_S)
			break;
		if (changes < 2 && t >= change_at[changes]) {
			char command[1024];
			snprintf(command, sizeof(command), "%s set --file %s --sm %d >/dev/null", gpucap,
			         region, new_limit[changes]);
			if (system(command) != 0) {
				fprintf(stderr, "'%s' failed\n", command);
				return 1;
			}
			printf("t=%.2f s: gpucap set --sm %d\n", now_s() - start, new_limit[changes]);
			changes++;
			continue;
		}
		launch_once("kernel");
		int bin = (int)((now_s() - start) / LIVE_BIN_S);
		if (bin < LIVE_BINS)
			bins[bin]++;
	}
	check(cuCtxSynchronize(), "cuCtxSynchronize");
	printf("busy %% per 100 ms:");
	for (int i = 0; i < LIVE_BINS; i++)
		printf("%s%.0f", i % 10 ? " " : "\n  ",
		       bins[i] * (double)kernel_ns / 1e9 / LIVE_BIN_S * 100.0);
	printf("\n");
	int failed = 0;
	double before = live_share(bins, 1.0, 3.0);
	printf("limit 30 (from the environment), [1 s, 3 s): %.1f%%\n", before);
	failed |= before < 25 || before > 35;
	for (int i = 0; i < 2; i++) {
		double share = live_share(bins, change_at[i] + 1.0, change_at[i] + 3.0);
		printf("limit %d, [1 s, 3 s) after the change: %.1f%% (must be within 5 points)\n",
		       new_limit[i], share);
		failed |= share < new_limit[i] - 5 || share > new_limit[i] + 5;
	}
	return failed;
}

int main(int argc, char **argv)
{
	bool live_mode = argc == 4 && strcmp(argv[1], "live") == 0;
	int options = live_mode ? 1 : argc; /* live: the defaults, 1 ms kernels */
	double seconds = options > 1 ? atof(argv[1]) : 3.0;
	double kernel_us = options > 2 ? atof(argv[2]) : 1000.0;
	const char *only = options > 3 ? argv[3] : "all";
	if (seconds <= 0 || kernel_us <= 0) {
		fprintf(stderr, "usage: %s [SECONDS [KERNEL_US [kernel|ex|coop|graph|ptsz|all]]]\n", argv[0]);
		return 2;
	}
	kernel_ns = (unsigned long long)(kernel_us * 1000.0);

	check(cuInit(0), "cuInit");
	CUdevice dev;
	check(cuDeviceGet(&dev, 0), "cuDeviceGet");
	char name[256];
	check(cuDeviceGetName(name, sizeof(name), dev), "cuDeviceGetName");
	int sms = 0;
	check(cuDeviceGetAttribute(&sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev),
	      "cuDeviceGetAttribute");
	blocks = (unsigned int)sms; /* one block per SM: co-resident, so cooperative launches fit */
	CUcontext ctx;
	check(cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain");
	check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent");
	CUmodule module;
	check(cuModuleLoadData(&module, ptx), "cuModuleLoadData");
	check(cuModuleGetFunction(&spin, module, "spin"), "cuModuleGetFunction");
	check(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");

	/* The per-thread-stream entry point, the way the CUDA runtime finds it. */
	CUdriverProcAddressQueryResult found;
	check(cuGetProcAddress("cuLaunchKernel", (void **)&launch_ptsz, 12000,
	                       CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM, &found),
	      "cuGetProcAddress(cuLaunchKernel, per-thread)");

	/* A graph of GRAPH_KERNELS kernels, captured from the stream. */
	check(cuStreamBeginCapture(stream, CU_STREAM_CAPTURE_MODE_GLOBAL), "cuStreamBeginCapture");
	for (int i = 0; i < GRAPH_KERNELS; i++)
		check(cuLaunchKernel(spin, blocks, 1, 1, 128, 1, 1, 0, stream, params, NULL),
		      "captured launch");
	CUgraph captured;
	check(cuStreamEndCapture(stream, &captured), "cuStreamEndCapture");
	check(cuGraphInstantiate(&graph, captured, 0), "cuGraphInstantiate");

	printf("device %s, %d SMs, kernel %.0f us, %.1f s per path\n", name, sms, kernel_us, seconds);
	if (live_mode)
		return live(argv[2], argv[3]);
	const char *paths[] = {"kernel", "ex", "coop", "graph", "ptsz"};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		if (strcmp(only, "all") == 0 || strcmp(only, paths[i]) == 0)
			run(paths[i], seconds);

	check(cuGraphExecDestroy(graph), "cuGraphExecDestroy");
	check(cuGraphDestroy(captured), "cuGraphDestroy");
	check(cuStreamDestroy(stream), "cuStreamDestroy");
	check(cuModuleUnload(module), "cuModuleUnload");
	check(cuDevicePrimaryCtxRelease(dev), "cuDevicePrimaryCtxRelease");
	return 0;
}
