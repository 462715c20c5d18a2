/* SPDX-License-Identifier: Apache-2.0 */
/* Shared by the GPU benchmarks: timing, a start barrier across processes,
 * and percentiles. Each benchmark runs natively and under gpucap in the same
 * invocation of bench/gpu/run.sh and prints both with the ratio. */
#ifndef GPUCAP_GPU_BENCH_COMMON_H
#define GPUCAP_GPU_BENCH_COMMON_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

static inline uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Sorts values in place; p in [0, 100]. */
static inline uint64_t percentile(uint64_t *values, size_t count, double p)
{
	if (count == 0)
		return 0;
	qsort(values, count, sizeof(*values), compare_u64);
	size_t index = (size_t)(p / 100.0 * (double)(count - 1) + 0.5);
	return values[index];
}

#endif
