/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers shared by gpucap's C tests: scratch directories, child processes
 * and region set-up. */
#ifndef GPUCAP_TEST_SUPPORT_H
#define GPUCAP_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpucap/region.h"

/* A fresh directory under $TMPDIR (or /tmp); removed by scratch_remove. */
const char *scratch_dir(void);
/* dir/name into a static buffer rotated among 8 results. */
const char *scratch_path(const char *name);
void scratch_remove(void);

/* Attach (not observer) to path with small capacities; aborts the test on
 * failure. */
gpucap_region *test_attach(const char *path);
gpucap_region *test_attach_claim(const char *path);

/* Wait for a child; returns its exit status, or 128+signal. */
int wait_child(pid_t pid);

/* Monotonic nanoseconds. */
uint64_t now_ns(void);

/* A simple PRNG for reproducible tests (xorshift64*). */
static inline uint64_t test_random(uint64_t *state)
{
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

#endif
