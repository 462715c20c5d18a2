/* SPDX-License-Identifier: Apache-2.0 */
/* Shared benchmark helpers: the clock, the start gate that lets contenders
 * begin together, statistics, option parsing and the run header. Nothing here
 * knows about either accounting design. */
#ifndef GPUCAP_BENCH_UTIL_H
#define GPUCAP_BENCH_UTIL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Monotonic nanoseconds; comparable across processes of one machine. */
uint64_t bench_now_ns(void);

/* One line: date (UTC), hostname, nproc and the exact command line. */
void bench_print_header(int argc, char **argv);

/* Zeroed memory shared with forked children (an anonymous MAP_SHARED
 * mapping), so results and the gate survive fork. Exits on failure. */
void *bench_shared_alloc(size_t bytes);
void bench_shared_free(void *mem, size_t bytes);

/*
 * Start gate: contenders arrive and spin (yielding) until the coordinator
 * opens it, so that every contender starts its clock together and no
 * contender's setup overlaps another's measured work. Lives in shared memory
 * so it works for threads and forked processes alike; uses no futex so the
 * gate itself adds no kernel state that either design might also touch.
 */
struct bench_gate {
	atomic_uint arrived;
	atomic_uint open;
	atomic_uint_fast64_t opened_ns;
};

void bench_gate_reset(struct bench_gate *gate);
/* Contender side: announce arrival, then wait for the gate to open. */
void bench_gate_pass(struct bench_gate *gate);
/* Coordinator side: wait until `count` contenders arrived, then open the gate.
 * Returns the opening time, or 0 if they did not all arrive within
 * timeout_ms (the gate is opened anyway so nobody stays stuck). */
uint64_t bench_gate_open_when(struct bench_gate *gate, unsigned count, unsigned timeout_ms);

/* Sort and read nearest-rank percentiles (p in 0..100). */
void bench_sort_u64(uint64_t *values, size_t count);
uint64_t bench_percentile(const uint64_t *sorted, size_t count, double p);

/* "1,2,4,8" into at most max values, each in 1..limit. */
bool bench_parse_counts(const char *text, unsigned *out, unsigned max, unsigned limit, unsigned *count);
bool bench_parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out);

/* Work directory for region files: a fresh private directory under base
 * (NULL: $TMPDIR or /tmp), removed with everything in it by bench_workdir_remove. */
bool bench_workdir_create(const char *base, char *out, size_t out_len);
void bench_workdir_remove(const char *dir);

/* A deterministic per-contender generator, so runs are reproducible. */
uint64_t bench_random_next(uint64_t *state);
/* Sizes spread evenly over the powers of two from 1 B to max_bytes, so small
 * and large requests are both common. */
uint64_t bench_random_size(uint64_t *state, uint64_t max_bytes);

/* "met" / "missed", for printing targets without asserting them. */
const char *bench_verdict(bool met);

#endif
