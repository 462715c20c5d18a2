/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Exact counting under threads, then thread scaling.
 *
 * Part 1 is a correctness check, not a timing: many threads of one process
 * reserve and release random sizes; at the midpoint every thread holds
 * exactly one reservation and the region must account for exactly their
 * sum; at the end nothing may remain. gpucap lets threads keep a small idle
 * reserve, so "charged" may exceed the exact sum at the midpoint; "in use"
 * may not. Exits non-zero on any mismatch.
 *
 * Part 2 measures aggregate reserve+release throughput of one process as
 * threads are added, for both designs.
 */
#define _GNU_SOURCE
#include "bench_util.h"
#include "parse.h"
#include "sem_region.h"

#include <gpucap/region.h>

#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_THREADS 1024
#define MAX_POINTS  16
#define BATCH       64
#define DEVICE_UUID "GPU-00000000-bench-0000-0000-exact0000000"

enum design { DESIGN_GPUCAP, DESIGN_SEMAPHORE };

struct options {
	unsigned long threads;
	unsigned long pairs;
	uint64_t max_size;
	unsigned long seed;
	bool quick;
	unsigned scaling[MAX_POINTS];
	unsigned scaling_count;
	unsigned long duration_ms;
	uint64_t throughput_max_size;
	const char *dir;
};

/* One process's view of a region of either design, shared by its threads. */
struct target {
	enum design design;
	gpucap_region *gpucap;
	sem_region *semaphore;
	int device;
};

static bool target_attach(struct target *t, enum design design, const char *path)
{
	char err[512] = "";
	t->design = design;
	if (design == DESIGN_SEMAPHORE) {
		if (sem_region_attach(path, DEVICE_UUID, UINT64_MAX, &t->semaphore, &t->device))
			return true;
		fprintf(stderr, "bench_exact_counting: semaphore attach failed on %s\n", path);
		return false;
	}
	struct gpucap_region_options options = {.path = path};
	struct gpucap_slot_identity identity = {0};
	gpucap_status status = gpucap_region_attach(&options, &t->gpucap, err, sizeof err);
	if (status == GPUCAP_OK) {
		status = gpucap_region_claim_slot(t->gpucap, &identity, err, sizeof err);
		if (status == GPUCAP_OK) {
			t->device =
			    gpucap_region_device_register(t->gpucap, DEVICE_UUID, GPUCAP_UNLIMITED, 0);
			if (t->device >= 0)
				return true;
			status = (gpucap_status)-t->device;
		}
		gpucap_region_detach(t->gpucap);
	}
	fprintf(stderr, "bench_exact_counting: %s: %s %s\n", path, gpucap_status_text(status), err);
	return false;
}

static void target_detach(struct target *t)
{
	if (t->design == DESIGN_SEMAPHORE)
		sem_region_detach(t->semaphore);
	else
		gpucap_region_detach(t->gpucap);
}

static bool target_reserve(const struct target *t, uint64_t bytes)
{
	if (t->design == DESIGN_SEMAPHORE)
		return sem_region_reserve(t->semaphore, t->device, bytes);
	return gpucap_reserve(t->gpucap, t->device, GPUCAP_KIND_DATA, bytes) == GPUCAP_OK;
}

static void target_release(const struct target *t, uint64_t bytes)
{
	if (t->design == DESIGN_SEMAPHORE)
		sem_region_release(t->semaphore, t->device, bytes);
	else
		gpucap_release(t->gpucap, t->device, GPUCAP_KIND_DATA, bytes);
}

/* What the region says, reduced to the numbers both designs can report. */
struct accounting {
	uint64_t in_use;  /* this process's in-use bytes (semaphore: its slot) */
	uint64_t charged; /* the device's charged total */
	bool exact;       /* every other field agrees with in_use (see read_gpucap) */
};

/* For gpucap, "exact" means: the snapshot is consistent, and the process's
 * DATA bytes, the device's in-use total and the process's charge all agree
 * with the process's in-use bytes, with no other kind charged. */
static bool read_gpucap(const struct target *t, struct accounting *out)
{
	struct gpucap_snapshot *snap = gpucap_region_snapshot(t->gpucap);
	if (!snap)
		return false;
	const struct gpucap_device_view *dev = NULL;
	for (uint32_t d = 0; d < snap->device_count; d++)
		if (snap->devices[d].index == t->device)
			dev = &snap->devices[d];
	const struct gpucap_process_view *self = NULL;
	for (uint32_t p = 0; p < snap->process_count; p++)
		if (snap->processes[p].self)
			self = &snap->processes[p];
	bool found = dev && self;
	if (found) {
		/* A process's per-device views are indexed by device index, as
		 * the CLI reads them, not by position in snap->devices. */
		const struct gpucap_process_device_view *mine = &self->devices[t->device];
		out->in_use = mine->in_use_bytes;
		out->charged = dev->charged_bytes;
		out->exact =
		    snap->consistent && mine->kind_bytes[GPUCAP_KIND_DATA] == (int64_t)mine->in_use_bytes &&
		    mine->kind_bytes[GPUCAP_KIND_CONTEXT] == 0 && mine->kind_bytes[GPUCAP_KIND_MODULE] == 0 &&
		    dev->in_use_bytes == mine->in_use_bytes && mine->charged_bytes == dev->charged_bytes &&
		    dev->charged_bytes >= dev->in_use_bytes;
		if (!out->exact)
			fprintf(
			    stderr,
			    "bench_exact_counting: gpucap snapshot disagrees with itself: consistent=%d process in_use=%llu DATA=%lld CONTEXT=%lld MODULE=%lld charged=%llu; device in_use=%llu charged=%llu\n",
			    snap->consistent, (unsigned long long)mine->in_use_bytes,
			    (long long)mine->kind_bytes[GPUCAP_KIND_DATA],
			    (long long)mine->kind_bytes[GPUCAP_KIND_CONTEXT],
			    (long long)mine->kind_bytes[GPUCAP_KIND_MODULE],
			    (unsigned long long)mine->charged_bytes, (unsigned long long)dev->in_use_bytes,
			    (unsigned long long)dev->charged_bytes);
	}
	gpucap_snapshot_free(snap);
	return found;
}

static bool read_accounting(const struct target *t, struct accounting *out)
{
	if (t->design == DESIGN_GPUCAP)
		return read_gpucap(t, out);
	out->in_use = sem_region_slot_used(t->semaphore, t->device);
	out->charged = sem_region_charged(t->semaphore, t->device);
	out->exact = true;
	return true;
}

/* ---- Part 1: exact counting ---------------------------------------------- */

struct exact_shared {
	const struct target *target;
	const struct options *options;
	pthread_barrier_t midpoint;
	pthread_barrier_t resume;
	uint64_t *held;       /* [thread]: the reservation each thread holds at the midpoint */
	atomic_ulong refused; /* reserves refused although the device is unlimited */
};

struct exact_arg {
	struct exact_shared *shared;
	unsigned index;
};

static void *exact_thread(void *opaque)
{
	struct exact_arg *arg = opaque;
	struct exact_shared *shared = arg->shared;
	const struct options *o = shared->options;
	uint64_t rng = o->seed * UINT64_C(1000003) + arg->index;
	unsigned long middle = o->pairs / 2;
	for (unsigned long i = 0; i < o->pairs; i++) {
		uint64_t size = bench_random_size(&rng, o->max_size);
		if (!target_reserve(shared->target, size)) {
			atomic_fetch_add(&shared->refused, 1);
			size = 0;
		}
		if (i == middle) {
			shared->held[arg->index] = size;
			pthread_barrier_wait(&shared->midpoint);
			pthread_barrier_wait(&shared->resume);
		}
		if (size)
			target_release(shared->target, size);
	}
	return NULL;
}

struct exact_outcome {
	uint64_t expected;
	struct accounting middle;
	struct accounting end;
	struct accounting end_returned; /* after return_credit */
	unsigned long refused;
	bool pass;
	bool ran;
};

static void exact_run(enum design design, const struct options *o, const char *workdir,
                      struct exact_outcome *r)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/exact-%d.region", workdir, (int)design);
	unlink(path);
	memset(r, 0, sizeof *r);
	struct target t;
	if (!target_attach(&t, design, path))
		return;

	struct exact_shared shared = {.target = &t, .options = o};
	shared.held = calloc(o->threads, sizeof *shared.held);
	pthread_t *threads = calloc(o->threads, sizeof *threads);
	struct exact_arg *args = calloc(o->threads, sizeof *args);
	if (!shared.held || !threads || !args) {
		fprintf(stderr, "bench_exact_counting: out of memory\n");
		exit(2);
	}
	pthread_barrier_init(&shared.midpoint, NULL, (unsigned)o->threads + 1);
	pthread_barrier_init(&shared.resume, NULL, (unsigned)o->threads + 1);
	for (unsigned i = 0; i < o->threads; i++) {
		args[i] = (struct exact_arg){&shared, i};
		if (pthread_create(&threads[i], NULL, exact_thread, &args[i]) != 0) {
			fprintf(stderr, "bench_exact_counting: pthread_create failed at thread %u\n", i);
			exit(2);
		}
	}

	pthread_barrier_wait(&shared.midpoint);
	for (unsigned i = 0; i < o->threads; i++)
		r->expected += shared.held[i];
	bool ok = read_accounting(&t, &r->middle);
	pthread_barrier_wait(&shared.resume);
	for (unsigned i = 0; i < o->threads; i++)
		pthread_join(threads[i], NULL);

	ok = ok && read_accounting(&t, &r->end);
	if (design == DESIGN_GPUCAP)
		gpucap_region_return_credit(t.gpucap, t.device);
	ok = ok && read_accounting(&t, &r->end_returned);
	r->refused = atomic_load(&shared.refused);
	r->pass = ok && r->refused == 0 && r->middle.exact && r->middle.in_use == r->expected &&
	          r->middle.charged >= r->expected && r->end.exact && r->end.in_use == 0 &&
	          r->end_returned.exact && r->end_returned.in_use == 0 && r->end_returned.charged == 0;
	/* The old design has no idle reserve: its charge must be exact too. */
	if (design == DESIGN_SEMAPHORE)
		r->pass = r->pass && r->middle.charged == r->expected && r->end.charged == 0;
	r->ran = true;

	pthread_barrier_destroy(&shared.midpoint);
	pthread_barrier_destroy(&shared.resume);
	free(args);
	free(threads);
	free(shared.held);
	target_detach(&t);
	unlink(path);
}

static const char *pass_text(bool pass)
{
	return pass ? "PASS" : "FAIL";
}

static bool exact_counting(const struct options *o, const char *workdir)
{
	struct exact_outcome g, s;
	exact_run(DESIGN_GPUCAP, o, workdir, &g);
	exact_run(DESIGN_SEMAPHORE, o, workdir, &s);

	printf(
	    "exact counting: %lu threads x %lu reserve/release pairs, sizes 1 B..%llu B spread over powers of two, seed %lu\n",
	    o->threads, o->pairs, (unsigned long long)o->max_size, o->seed);
	printf("midpoint: every thread holds one reservation; 'charged' may include gpucap's idle reserve\n");
	printf("%-34s %16s %16s %16s\n", "check", "expected", "gpucap", "semaphore");
	printf("%-34s %16llu %16llu %16llu\n", "midpoint: in use (this process)",
	       (unsigned long long)g.expected, (unsigned long long)g.middle.in_use,
	       (unsigned long long)s.middle.in_use);
	printf("%-34s %16s %16llu %16llu\n", "midpoint: device charged", ">= in use",
	       (unsigned long long)g.middle.charged, (unsigned long long)s.middle.charged);
	printf("%-34s %16s %16llu %16llu\n", "midpoint: idle reserve", "(info)",
	       (unsigned long long)(g.middle.charged - g.middle.in_use),
	       (unsigned long long)(s.middle.charged - s.middle.in_use));
	printf("%-34s %16d %16llu %16llu\n", "end: in use", 0, (unsigned long long)g.end.in_use,
	       (unsigned long long)s.end.in_use);
	printf("%-34s %16s %16llu %16llu\n", "end: charged before return_credit", "idle reserve",
	       (unsigned long long)g.end.charged, (unsigned long long)s.end.charged);
	printf("%-34s %16d %16llu %16llu\n", "end: charged after return_credit", 0,
	       (unsigned long long)g.end_returned.charged, (unsigned long long)s.end_returned.charged);
	printf("%-34s %16d %16lu %16lu\n", "refused reserves (unlimited)", 0, g.refused, s.refused);
	printf("%-34s %16s %16s %16s\n", "snapshot self-consistent", "yes",
	       g.middle.exact && g.end.exact && g.end_returned.exact ? "yes" : "no", "-");
	printf("%-34s %16s %16s %16s\n", "result", "", g.ran ? pass_text(g.pass) : "ERROR",
	       s.ran ? pass_text(s.pass) : "ERROR");
	fflush(stdout);
	return g.ran && g.pass && s.ran && s.pass;
}

/* ---- Part 2: throughput from 1 to N threads ------------------------------ */

struct scaling_shared {
	const struct target *target;
	struct bench_gate gate;
	uint64_t duration_ns;
	uint64_t max_size;
	unsigned long seed;
};

struct scaling_arg {
	struct scaling_shared *shared;
	unsigned index;
	uint64_t ops;
	uint64_t elapsed_ns;
	bool failed;
};

/* Separate loops per design so neither pays a per-operation branch on it. */
static void scale_gpucap(struct scaling_arg *arg, uint64_t *rng)
{
	const struct scaling_shared *s = arg->shared;
	gpucap_region *region = s->target->gpucap;
	int device = s->target->device;
	uint64_t ops = 0, start = bench_now_ns(), now;
	do {
		for (int i = 0; i < BATCH; i++) {
			uint64_t size = bench_random_size(rng, s->max_size);
			if (gpucap_reserve(region, device, GPUCAP_KIND_DATA, size) == GPUCAP_OK)
				gpucap_release(region, device, GPUCAP_KIND_DATA, size);
			else
				arg->failed = true;
		}
		ops += BATCH;
		now = bench_now_ns();
	} while (now - start < s->duration_ns);
	arg->ops = ops;
	arg->elapsed_ns = now - start;
}

static void scale_semaphore(struct scaling_arg *arg, uint64_t *rng)
{
	const struct scaling_shared *s = arg->shared;
	sem_region *region = s->target->semaphore;
	int device = s->target->device;
	uint64_t ops = 0, start = bench_now_ns(), now;
	do {
		for (int i = 0; i < BATCH; i++) {
			uint64_t size = bench_random_size(rng, s->max_size);
			if (sem_region_reserve(region, device, size))
				sem_region_release(region, device, size);
			else
				arg->failed = true;
		}
		ops += BATCH;
		now = bench_now_ns();
	} while (now - start < s->duration_ns);
	arg->ops = ops;
	arg->elapsed_ns = now - start;
}

static void *scaling_thread(void *opaque)
{
	struct scaling_arg *arg = opaque;
	uint64_t rng = arg->shared->seed * UINT64_C(1000003) + arg->index;
	bench_gate_pass(&arg->shared->gate);
	if (arg->shared->target->design == DESIGN_SEMAPHORE)
		scale_semaphore(arg, &rng);
	else
		scale_gpucap(arg, &rng);
	return NULL;
}

/* Aggregate million pairs per second, or a negative value on failure. */
static double scaling_point(enum design design, unsigned n, const struct options *o, const char *workdir)
{
	char path[4200];
	snprintf(path, sizeof path, "%s/scaling-%d-%u.region", workdir, (int)design, n);
	unlink(path);
	struct target t;
	if (!target_attach(&t, design, path))
		return -1;
	struct scaling_shared shared = {.target = &t,
	                                .duration_ns = (uint64_t)o->duration_ms * 1000000u,
	                                .max_size = o->throughput_max_size,
	                                .seed = o->seed};
	bench_gate_reset(&shared.gate);
	pthread_t threads[MAX_THREADS];
	struct scaling_arg args[MAX_THREADS];
	unsigned started = 0;
	for (; started < n; started++) {
		args[started] = (struct scaling_arg){.shared = &shared, .index = started};
		if (pthread_create(&threads[started], NULL, scaling_thread, &args[started]) != 0)
			break;
	}
	bool ok = bench_gate_open_when(&shared.gate, started, 60000) != 0 && started == n;
	uint64_t ops = 0, longest = 0;
	for (unsigned i = 0; i < started; i++) {
		pthread_join(threads[i], NULL);
		ops += args[i].ops;
		longest = args[i].elapsed_ns > longest ? args[i].elapsed_ns : longest;
		ok = ok && !args[i].failed;
	}
	target_detach(&t);
	unlink(path);
	if (!ok || longest == 0)
		return -1;
	return (double)ops / ((double)longest / 1e9) / 1e6;
}

static void scaling(const struct options *o, const char *workdir)
{
	printf(
	    "\nthroughput: one process, N threads, reserve+release pairs of random sizes 1 B..%llu B, %lu ms per point, unlimited device\n",
	    (unsigned long long)o->throughput_max_size, o->duration_ms);
	printf("speedup: Mops/s at N threads / Mops/s at %u thread(s); ratio: gpucap / semaphore Mops/s\n",
	       o->scaling[0]);
	/* Untimed first pass: page faults and clock ramp-up. */
	scaling_point(DESIGN_GPUCAP, 1, o, workdir);
	scaling_point(DESIGN_SEMAPHORE, 1, o, workdir);
	printf("%7s | %10s %8s | %10s %8s | %7s\n", "threads", "gpucap", "speedup", "semaphore", "speedup",
	       "ratio");
	printf("%7s | %10s %8s | %10s %8s | %7s\n", "", "Mops/s", "", "Mops/s", "", "");
	double base[2] = {-1, -1}, speedup_at_12 = -1;
	for (unsigned i = 0; i < o->scaling_count; i++) {
		unsigned n = o->scaling[i];
		double mops[2];
		for (int d = DESIGN_GPUCAP; d <= DESIGN_SEMAPHORE; d++) {
			mops[d] = scaling_point((enum design)d, n, o, workdir);
			if (i == 0)
				base[d] = mops[d];
		}
		printf("%7u |", n);
		for (int d = DESIGN_GPUCAP; d <= DESIGN_SEMAPHORE; d++) {
			if (mops[d] > 0 && base[d] > 0)
				printf(" %10.2f %7.2fx |", mops[d], mops[d] / base[d]);
			else
				printf(" %10s %8s |", "error", "-");
		}
		if (mops[0] > 0 && mops[1] > 0)
			printf(" %6.1fx\n", mops[0] / mops[1]);
		else
			printf(" %7s\n", "-");
		fflush(stdout);
		if (n == 12 && mops[0] > 0 && base[0] > 0)
			speedup_at_12 = mops[0] / base[0];
	}
	printf("\ntargets (printed, not asserted):\n");
	if (speedup_at_12 >= 0 && o->scaling[0] == 1)
		printf("  gpucap speedup >= 10x at 12 threads: %.2fx (%s)\n", speedup_at_12,
		       bench_verdict(speedup_at_12 >= 10.0));
	else
		printf("  gpucap speedup >= 10x at 12 threads: not measured (needs 1 and 12 in --scaling)\n");
}

/* ---- Options --------------------------------------------------------------- */

static void usage(FILE *to)
{
	fprintf(to, "usage: bench_exact_counting [--quick] [--threads 100] [--pairs 1000] [--max-size 16m]\n"
	            "                            [--seed 1] [--scaling 1,2,4,8,12] [--duration-ms 500]\n"
	            "                            [--throughput-max-size 64k] [--dir DIR]\n"
	            "  --quick: 16 threads x 200 pairs, exact counting only (the CTest test)\n"
	            "  --scaling 0 skips the throughput part\n");
}

static bool parse_options(int argc, char **argv, struct options *o)
{
	static const struct option long_options[] = {
	    {"quick", no_argument, NULL, 'q'},
	    {"threads", required_argument, NULL, 't'},
	    {"pairs", required_argument, NULL, 'p'},
	    {"max-size", required_argument, NULL, 'm'},
	    {"seed", required_argument, NULL, 'S'},
	    {"scaling", required_argument, NULL, 's'},
	    {"duration-ms", required_argument, NULL, 'd'},
	    {"throughput-max-size", required_argument, NULL, 'M'},
	    {"dir", required_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct options){.threads = 100,
	                      .pairs = 1000,
	                      .max_size = 16u << 20,
	                      .seed = 1,
	                      .scaling = {1, 2, 4, 8, 12},
	                      .scaling_count = 5,
	                      .duration_ms = 500,
	                      .throughput_max_size = 64u << 10};
	bool threads_given = false, pairs_given = false;
	int c;
	while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
		bool ok = true;
		switch (c) {
		case 'q':
			o->quick = true;
			break;
		case 't':
			ok = bench_parse_uint(optarg, 1, MAX_THREADS, &o->threads);
			threads_given = true;
			break;
		case 'p':
			ok = bench_parse_uint(optarg, 1, 100000000, &o->pairs);
			pairs_given = true;
			break;
		case 'm':
			ok = gpucap_parse_size(optarg, &o->max_size) && o->max_size > 0 &&
			     o->max_size <= GPUCAP_BYTES_MAX / MAX_THREADS;
			break;
		case 'S':
			ok = bench_parse_uint(optarg, 0, 4000000000u, &o->seed);
			break;
		case 's':
			if (!strcmp(optarg, "0"))
				o->scaling_count = 0;
			else
				ok = bench_parse_counts(optarg, o->scaling, MAX_POINTS, MAX_THREADS,
				                        &o->scaling_count);
			break;
		case 'd':
			ok = bench_parse_uint(optarg, 1, 600000, &o->duration_ms);
			break;
		case 'M':
			ok = gpucap_parse_size(optarg, &o->throughput_max_size) &&
			     o->throughput_max_size > 0 &&
			     o->throughput_max_size <= GPUCAP_BYTES_MAX / MAX_THREADS;
			break;
		case 'D':
			o->dir = optarg;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			ok = false;
		}
		if (!ok) {
			usage(stderr);
			return false;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return false;
	}
	if (o->quick) {
		o->threads = threads_given ? o->threads : 16;
		o->pairs = pairs_given ? o->pairs : 200;
		o->scaling_count = 0;
	}
	return true;
}

int main(int argc, char **argv)
{
	struct options o;
	if (!parse_options(argc, argv, &o))
		return 2;
	bench_print_header(argc, argv);
	char workdir[4096];
	if (!bench_workdir_create(o.dir, workdir, sizeof workdir))
		return 2;
	bool pass = exact_counting(&o, workdir);
	if (o.scaling_count > 0)
		scaling(&o, workdir);
	bench_workdir_remove(workdir);
	printf("\nexact counting: %s\n", pass_text(pass));
	return pass ? 0 : 1;
}
