/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Multi-process stress: P processes x T threads reserve and release at
 * random against a small limit. Every round all threads pause and the
 * invariants are checked exactly:
 *   - the device's charged total == the sum of the live slots' charges;
 *   - each process's in-use bytes == what its threads say they hold;
 *   - charged <= limit (also checked by every thread after every step);
 * and at the end, with everything released, charged == 0.
 *
 *   stress_region [--processes P] [--threads T] [--rounds R] [--round-ms MS] [--seed S]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "region_peek.h"
#include "test_support.h"

#define MiB           (UINT64_C(1) << 20)
#define GPU           "GPU-57e55000-0000-0000-0000-000000000001"
#define MAX_PROCESSES 64
#define MAX_THREADS   16

enum phase { PHASE_RUN, PHASE_PAUSE, PHASE_STOP };

struct control {
	_Atomic int phase;
	_Atomic int parked;
	_Atomic uint64_t over_limit;
	_Atomic uint64_t steps;
	_Atomic uint64_t refusals;
	_Atomic int64_t held[MAX_PROCESSES][MAX_THREADS];
};

static struct {
	int processes, threads, rounds, round_ms;
	uint64_t seed, limit;
	const char *path;
} cfg = {16, 4, 20, 150, 1, 48 * MiB, NULL};

static struct control *control;

struct worker {
	gpucap_region *region;
	struct region_peek peek;
	int device, process, thread;
	uint64_t seed;
};

static void *worker_thread(void *arg)
{
	struct worker *w = arg;
	uint64_t held[256];
	gpucap_kind kinds[256];
	unsigned count = 0;
	int64_t total = 0;
	for (;;) {
		int phase = atomic_load(&control->phase);
		if (phase == PHASE_STOP)
			break;
		if (phase == PHASE_PAUSE) {
			atomic_fetch_add(&control->parked, 1);
			while (atomic_load(&control->phase) == PHASE_PAUSE)
				sched_yield();
			atomic_fetch_sub(&control->parked, 1);
			continue;
		}
		uint64_t r = test_random(&w->seed);
		if (count < 256 && (r & 3) != 0 && (count == 0 || (r & 4))) {
			/* Mostly small sizes (served from lane credit), some large. */
			uint64_t size =
			    (r >> 8) % 8 == 0 ? MiB + (r >> 20) % (4 * MiB) : 1 + (r >> 20) % (256 * 1024);
			gpucap_kind kind = (gpucap_kind)((r >> 4) % GPUCAP_KIND_COUNT);
			if (gpucap_reserve(w->region, w->device, kind, size) == GPUCAP_OK) {
				held[count] = size;
				kinds[count++] = kind;
				total += (int64_t)size;
			} else {
				atomic_fetch_add_explicit(&control->refusals, 1, memory_order_relaxed);
			}
		} else if (count) {
			unsigned victim = (unsigned)((r >> 12) % count);
			gpucap_release(w->region, w->device, kinds[victim], held[victim]);
			total -= (int64_t)held[victim];
			held[victim] = held[--count];
			kinds[victim] = kinds[count];
		}
		atomic_store(&control->held[w->process][w->thread], total);
		if (region_peek_charged(&w->peek, w->device) > cfg.limit)
			atomic_fetch_add(&control->over_limit, 1);
		atomic_fetch_add_explicit(&control->steps, 1, memory_order_relaxed);
	}
	while (count) {
		count--;
		gpucap_release(w->region, w->device, kinds[count], held[count]);
	}
	atomic_store(&control->held[w->process][w->thread], 0);
	return NULL;
}

static int worker_process(int process)
{
	gpucap_region *region = test_attach_claim(cfg.path);
	int device = gpucap_region_device_register(region, GPU, cfg.limit, 0);
	if (device < 0)
		return 2;
	struct worker workers[MAX_THREADS];
	pthread_t threads[MAX_THREADS];
	for (int t = 0; t < cfg.threads; t++) {
		workers[t] = (struct worker){
		    region,  {0}, device,
		    process, t,   cfg.seed * 1000003u + (uint64_t)process * 101u + (uint64_t)t + 1};
		if (region_peek_open(&workers[t].peek, cfg.path) != 0)
			return 3;
		pthread_create(&threads[t], NULL, worker_thread, &workers[t]);
	}
	for (int t = 0; t < cfg.threads; t++)
		pthread_join(threads[t], NULL);
	gpucap_region_detach(region);
	return 0;
}

static bool wait_parked(int expected)
{
	uint64_t deadline = now_ns() + UINT64_C(10) * 1000000000u;
	while (atomic_load(&control->parked) != expected) {
		if (now_ns() > deadline)
			return false;
		usleep(100);
	}
	return true;
}

static int check_round(gpucap_region *observer, int device, int round)
{
	struct gpucap_snapshot *s = gpucap_region_snapshot(observer);
	if (!s)
		return 1;
	int failures = 0;
	uint64_t charged = 0, slots_charged = 0;
	for (uint32_t i = 0; i < s->device_count; i++)
		if (s->devices[i].index == device)
			charged = s->devices[i].charged_bytes;
	for (uint32_t p = 0; p < s->process_count; p++)
		slots_charged += s->processes[p].devices[device].charged_bytes;
	int64_t held = 0;
	for (int p = 0; p < cfg.processes; p++)
		for (int t = 0; t < cfg.threads; t++)
			held += atomic_load(&control->held[p][t]);
	uint64_t in_use = 0;
	for (uint32_t p = 0; p < s->process_count; p++)
		in_use += s->processes[p].devices[device].in_use_bytes;
	if (!s->consistent || charged != slots_charged || (int64_t)in_use != held || charged > cfg.limit ||
	    s->process_count != (uint32_t)cfg.processes) {
		fprintf(
		    stderr,
		    "round %d: INVARIANT BROKEN consistent=%d charged=%llu slots=%llu in_use=%llu held=%lld limit=%llu processes=%u\n",
		    round, s->consistent, (unsigned long long)charged, (unsigned long long)slots_charged,
		    (unsigned long long)in_use, (long long)held, (unsigned long long)cfg.limit,
		    s->process_count);
		failures++;
	}
	gpucap_snapshot_free(s);
	return failures;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		long v = strtol(argv[i + 1], NULL, 10);
		if (!strcmp(argv[i], "--processes"))
			cfg.processes = (int)v;
		else if (!strcmp(argv[i], "--threads"))
			cfg.threads = (int)v;
		else if (!strcmp(argv[i], "--rounds"))
			cfg.rounds = (int)v;
		else if (!strcmp(argv[i], "--round-ms"))
			cfg.round_ms = (int)v;
		else if (!strcmp(argv[i], "--seed"))
			cfg.seed = (uint64_t)v;
		else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			exit(2);
		}
	}
	if (cfg.processes < 1 || cfg.processes > MAX_PROCESSES || cfg.threads < 1 ||
	    cfg.threads > MAX_THREADS) {
		fprintf(stderr, "processes 1..%d, threads 1..%d\n", MAX_PROCESSES, MAX_THREADS);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	cfg.path = scratch_path("stress-region");
	printf("stress: %d processes x %d threads, %d rounds of %d ms, limit %llu, seed %llu\n",
	       cfg.processes, cfg.threads, cfg.rounds, cfg.round_ms, (unsigned long long)cfg.limit,
	       (unsigned long long)cfg.seed);
	control = mmap(NULL, sizeof(*control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	gpucap_region *observer = test_attach(cfg.path);
	int device = -1;
	atomic_store(&control->phase, PHASE_PAUSE);
	pid_t children[MAX_PROCESSES];
	for (int p = 0; p < cfg.processes; p++) {
		children[p] = fork();
		if (children[p] == 0)
			_exit(worker_process(p));
	}
	int total_threads = cfg.processes * cfg.threads;
	int failures = 0;
	if (!wait_parked(total_threads)) {
		fprintf(stderr, "workers did not start\n");
		failures++;
	}
	device = gpucap_region_device_find(observer, GPU);
	for (int round = 0; round < cfg.rounds && !failures; round++) {
		atomic_store(&control->phase, PHASE_RUN);
		usleep((useconds_t)cfg.round_ms * 1000);
		atomic_store(&control->phase, PHASE_PAUSE);
		if (!wait_parked(total_threads)) {
			fprintf(stderr, "round %d: threads did not pause within 10 s\n", round);
			failures++;
			break;
		}
		failures += check_round(observer, device, round);
	}
	atomic_store(&control->phase, PHASE_STOP);
	for (int p = 0; p < cfg.processes; p++)
		if (wait_child(children[p]) != 0) {
			fprintf(stderr, "worker %d failed\n", p);
			failures++;
		}
	struct gpucap_snapshot *s = gpucap_region_snapshot(observer);
	uint64_t final_charged = s->device_count ? s->devices[0].charged_bytes : 0;
	printf(
	    "stress: %llu steps, %llu refusals at the limit, %llu over-limit observations, final charged %llu, processes left %u\n",
	    (unsigned long long)atomic_load(&control->steps),
	    (unsigned long long)atomic_load(&control->refusals),
	    (unsigned long long)atomic_load(&control->over_limit), (unsigned long long)final_charged,
	    s->process_count);
	if (final_charged != 0 || s->process_count != 0 || atomic_load(&control->over_limit) != 0)
		failures++;
	if (atomic_load(&control->refusals) == 0) {
		fprintf(stderr, "the limit was never reached: the test did not exercise refusals\n");
		failures++;
	}
	gpucap_snapshot_free(s);
	gpucap_region_detach(observer);
	scratch_remove();
	printf("stress: %s (seed %llu)\n", failures ? "FAILED" : "passed", (unsigned long long)cfg.seed);
	return failures ? 1 : 0;
}
