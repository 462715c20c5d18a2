/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reserve+release pair cost under contention: gpucap's lock-free region
 * against the semaphore design, at several contender counts, with
 * contenders as separate processes and as threads of one process.
 *
 * Each point uses a fresh region file so no state (idle credit, slot churn)
 * leaks from one point into the next. Each contender runs for a fixed time
 * after a common start gate and counts its own operations; an operation is
 * one reserve attempt plus, when granted, its release.
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
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CONTENDERS 256
#define MAX_POINTS     16
/* Operations between clock reads: enough to make the clock's cost vanish,
 * few enough that a contender stops close to its deadline. */
#define BATCH       64
#define DEVICE_UUID "GPU-00000000-bench-0000-0000-reserve00000"

enum design { DESIGN_GPUCAP, DESIGN_SEMAPHORE };
enum mode { MODE_PROCESSES, MODE_THREADS };
enum limit_kind { LIMIT_LOOSE, LIMIT_TIGHT };

struct contender_result {
	uint64_t ops;
	uint64_t refused;
	uint64_t elapsed_ns;
	int failed;
};

struct shared_state {
	struct bench_gate gate;
	struct contender_result results[MAX_CONTENDERS];
};

struct point {
	enum design design;
	enum mode mode;
	unsigned contenders;
	uint64_t limit;
	uint64_t size;
	uint64_t duration_ns;
	bool per_contender; /* print each contender's numbers too */
	char path[4200];
};

struct point_result {
	double ns_per_op;
	double mops;
	double refused_pct;
	double worst_refused_pct; /* of the contender refused most often */
	double fairness;
	bool valid;
};

/* One attached contender of either design. */
struct target {
	enum design design;
	gpucap_region *gpucap;
	sem_region *semaphore;
	int device;
};

static bool target_attach(struct target *t, const struct point *p)
{
	char err[512] = "";
	t->design = p->design;
	if (p->design == DESIGN_SEMAPHORE) {
		if (sem_region_attach(p->path, DEVICE_UUID, p->limit, &t->semaphore, &t->device))
			return true;
		fprintf(stderr, "bench_reserve: semaphore attach failed on %s\n", p->path);
		return false;
	}
	struct gpucap_region_options options = {.path = p->path};
	struct gpucap_slot_identity identity = {0};
	gpucap_status status = gpucap_region_attach(&options, &t->gpucap, err, sizeof err);
	if (status != GPUCAP_OK) {
		fprintf(stderr, "bench_reserve: attach: %s: %s\n", gpucap_status_text(status), err);
		return false;
	}
	status = gpucap_region_claim_slot(t->gpucap, &identity, err, sizeof err);
	if (status != GPUCAP_OK) {
		fprintf(stderr, "bench_reserve: claim_slot: %s: %s\n", gpucap_status_text(status), err);
		gpucap_region_detach(t->gpucap);
		return false;
	}
	t->device = gpucap_region_device_register(t->gpucap, DEVICE_UUID, p->limit, 0);
	if (t->device < 0) {
		fprintf(stderr, "bench_reserve: device_register: %s\n",
		        gpucap_status_text((gpucap_status)-t->device));
		gpucap_region_detach(t->gpucap);
		return false;
	}
	return true;
}

static void target_detach(struct target *t)
{
	if (t->design == DESIGN_SEMAPHORE)
		sem_region_detach(t->semaphore);
	else
		gpucap_region_detach(t->gpucap);
}

/* The two measured loops are kept separate so neither pays a per-operation
 * branch on the design. */
static void measure_gpucap(const struct target *t, const struct point *p, struct contender_result *out)
{
	uint64_t ops = 0, refused = 0;
	uint64_t start = bench_now_ns(), now;
	do {
		for (int i = 0; i < BATCH; i++) {
			gpucap_status status =
			    gpucap_reserve(t->gpucap, t->device, GPUCAP_KIND_DATA, p->size);
			if (status == GPUCAP_OK)
				gpucap_release(t->gpucap, t->device, GPUCAP_KIND_DATA, p->size);
			else if (status == GPUCAP_ERR_OVER_LIMIT)
				refused++;
			else
				out->failed = 1;
		}
		ops += BATCH;
		now = bench_now_ns();
	} while (now - start < p->duration_ns);
	out->ops = ops;
	out->refused = refused;
	out->elapsed_ns = now - start;
}

static void measure_semaphore(const struct target *t, const struct point *p, struct contender_result *out)
{
	uint64_t ops = 0, refused = 0;
	uint64_t start = bench_now_ns(), now;
	do {
		for (int i = 0; i < BATCH; i++) {
			if (sem_region_reserve(t->semaphore, t->device, p->size))
				sem_region_release(t->semaphore, t->device, p->size);
			else
				refused++;
		}
		ops += BATCH;
		now = bench_now_ns();
	} while (now - start < p->duration_ns);
	out->ops = ops;
	out->refused = refused;
	out->elapsed_ns = now - start;
}

static void contend(const struct target *t, const struct point *p, struct shared_state *shared,
                    struct contender_result *out)
{
	bench_gate_pass(&shared->gate);
	if (p->design == DESIGN_SEMAPHORE)
		measure_semaphore(t, p, out);
	else
		measure_gpucap(t, p, out);
}

static void run_child(const struct point *p, struct shared_state *shared, unsigned index)
{
	struct contender_result *out = &shared->results[index];
	struct target t;
	if (!target_attach(&t, p)) {
		out->failed = 1;
		bench_gate_pass(&shared->gate);
		_exit(1);
	}
	contend(&t, p, shared, out);
	target_detach(&t);
	_exit(0);
}

static bool run_processes(const struct point *p, struct shared_state *shared)
{
	pid_t pids[MAX_CONTENDERS];
	unsigned started = 0;
	fflush(stdout);
	for (; started < p->contenders; started++) {
		pids[started] = fork();
		if (pids[started] < 0) {
			perror("bench_reserve: fork");
			break;
		}
		if (pids[started] == 0)
			run_child(p, shared, started);
	}
	bool ok = bench_gate_open_when(&shared->gate, started, 60000) != 0 && started == p->contenders;
	for (unsigned i = 0; i < started; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			ok = false;
	}
	return ok;
}

struct thread_arg {
	const struct target *target;
	const struct point *point;
	struct shared_state *shared;
	unsigned index;
};

static void *thread_main(void *opaque)
{
	struct thread_arg *arg = opaque;
	contend(arg->target, arg->point, arg->shared, &arg->shared->results[arg->index]);
	return NULL;
}

static bool run_threads(const struct point *p, struct shared_state *shared)
{
	struct target t;
	if (!target_attach(&t, p))
		return false;
	pthread_t threads[MAX_CONTENDERS];
	struct thread_arg args[MAX_CONTENDERS];
	unsigned started = 0;
	for (; started < p->contenders; started++) {
		args[started] = (struct thread_arg){&t, p, shared, started};
		if (pthread_create(&threads[started], NULL, thread_main, &args[started]) != 0) {
			fprintf(stderr, "bench_reserve: pthread_create failed\n");
			break;
		}
	}
	bool ok = bench_gate_open_when(&shared->gate, started, 60000) != 0 && started == p->contenders;
	for (unsigned i = 0; i < started; i++)
		pthread_join(threads[i], NULL);
	target_detach(&t);
	return ok;
}

/* Every byte must be back once all contenders detached; a benchmark whose
 * accounting drifted would be measuring something else. */
static bool nothing_left_charged(const struct point *p)
{
	if (p->design == DESIGN_SEMAPHORE) {
		struct target t;
		if (!target_attach(&t, p))
			return false;
		uint64_t charged = sem_region_charged(t.semaphore, t.device);
		target_detach(&t);
		return charged == 0;
	}
	struct gpucap_region_options options = {.path = p->path, .observer = true};
	gpucap_region *region;
	char err[512];
	if (gpucap_region_attach(&options, &region, err, sizeof err) != GPUCAP_OK)
		return false;
	bool ok = false;
	struct gpucap_snapshot *snap = gpucap_region_snapshot(region);
	if (snap) {
		ok = true;
		for (uint32_t d = 0; d < snap->device_count; d++)
			if (snap->devices[d].charged_bytes != 0)
				ok = false;
		gpucap_snapshot_free(snap);
	}
	gpucap_region_detach(region);
	return ok;
}

static struct point_result run_point(struct point *p, struct shared_state *shared, const char *workdir)
{
	static unsigned sequence;
	struct point_result r = {0};
	snprintf(p->path, sizeof p->path, "%s/reserve-%u.region", workdir, sequence++);
	unlink(p->path);
	memset(shared, 0, sizeof *shared);
	bench_gate_reset(&shared->gate);

	bool ok = p->mode == MODE_PROCESSES ? run_processes(p, shared) : run_threads(p, shared);
	uint64_t ops = 0, refused = 0, elapsed = 0, longest = 0;
	uint64_t min_ops = UINT64_MAX, max_ops = 0;
	double worst_refused = 0;
	for (unsigned i = 0; i < p->contenders; i++) {
		const struct contender_result *c = &shared->results[i];
		if (c->failed)
			ok = false;
		double refused_pct = c->ops ? 100.0 * (double)c->refused / (double)c->ops : 0;
		worst_refused = refused_pct > worst_refused ? refused_pct : worst_refused;
		if (p->per_contender)
			printf("  %s %s n=%u contender %u: %llu ops, %.2f%% refused, %.1f ns/op\n",
			       p->design == DESIGN_GPUCAP ? "gpucap" : "semaphore",
			       p->mode == MODE_PROCESSES ? "processes" : "threads", p->contenders, i,
			       (unsigned long long)c->ops, refused_pct,
			       c->ops ? (double)c->elapsed_ns / (double)c->ops : 0.0);
		ops += c->ops;
		refused += c->refused;
		elapsed += c->elapsed_ns;
		longest = c->elapsed_ns > longest ? c->elapsed_ns : longest;
		min_ops = c->ops < min_ops ? c->ops : min_ops;
		max_ops = c->ops > max_ops ? c->ops : max_ops;
	}
	if (ok && !nothing_left_charged(p)) {
		fprintf(stderr, "bench_reserve: bytes left charged on %s after the point\n", p->path);
		ok = false;
	}
	unlink(p->path);
	if (!ok || ops == 0 || longest == 0)
		return r;
	/* Weighted by operations, so a contender the lock starved does not
	 * dominate the average. */
	r.ns_per_op = (double)elapsed / (double)ops;
	r.mops = (double)ops / ((double)longest / 1e9) / 1e6;
	r.refused_pct = 100.0 * (double)refused / (double)ops;
	r.worst_refused_pct = worst_refused;
	r.fairness = max_ops ? (double)min_ops / (double)max_ops : 0;
	r.valid = true;
	return r;
}

/* Room for about half the contenders to hold their reservation at once (at
 * least one), so admission keeps hitting the limit. */
static uint64_t tight_limit(unsigned contenders, uint64_t size)
{
	return (uint64_t)((contenders + 1) / 2) * size + size / 2;
}

static void print_cell(const struct point_result *r)
{
	if (r->valid)
		printf(" %8.1f %8.2f %6.2f %6.2f %5.2f |", r->ns_per_op, r->mops, r->refused_pct,
		       r->worst_refused_pct, r->fairness);
	else
		printf(" %8s %8s %6s %6s %5s |", "error", "-", "-", "-", "-");
}

static void usage(FILE *to)
{
	fprintf(to,
	        "usage: bench_reserve [--contenders 1,2,4,8,16] [--duration-ms 500] [--size 4096]\n"
	        "                     [--loose-limit 1t] [--modes processes,threads] [--limits loose,tight]\n"
	        "                     [--per-contender] [--dir DIR]\n");
}

struct options {
	unsigned contenders[MAX_POINTS];
	unsigned contender_count;
	unsigned long duration_ms;
	uint64_t size;
	uint64_t loose_limit;
	bool modes[2];
	bool limits[2];
	bool per_contender;
	const char *dir;
};

static bool parse_pair(const char *text, const char *first, const char *second, bool out[2])
{
	out[0] = strstr(text, first) != NULL;
	out[1] = strstr(text, second) != NULL;
	return out[0] || out[1];
}

static bool parse_options(int argc, char **argv, struct options *o)
{
	static const struct option long_options[] = {
	    {"contenders", required_argument, NULL, 'c'},
	    {"duration-ms", required_argument, NULL, 'd'},
	    {"size", required_argument, NULL, 's'},
	    {"loose-limit", required_argument, NULL, 'l'},
	    {"modes", required_argument, NULL, 'm'},
	    {"limits", required_argument, NULL, 't'},
	    {"dir", required_argument, NULL, 'D'},
	    {"per-contender", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct options){.contenders = {1, 2, 4, 8, 16},
	                      .contender_count = 5,
	                      .duration_ms = 500,
	                      .size = 4096,
	                      .loose_limit = UINT64_C(1) << 40,
	                      .modes = {true, true},
	                      .limits = {true, true}};
	int c;
	while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
		bool ok = true;
		switch (c) {
		case 'c':
			ok = bench_parse_counts(optarg, o->contenders, MAX_POINTS, MAX_CONTENDERS,
			                        &o->contender_count);
			break;
		case 'd':
			ok = bench_parse_uint(optarg, 1, 600000, &o->duration_ms);
			break;
		case 's':
			ok = gpucap_parse_size(optarg, &o->size) && o->size > 0;
			break;
		case 'l':
			ok = gpucap_parse_size(optarg, &o->loose_limit);
			break;
		case 'm':
			ok = parse_pair(optarg, "processes", "threads", o->modes);
			break;
		case 't':
			ok = parse_pair(optarg, "loose", "tight", o->limits);
			break;
		case 'D':
			o->dir = optarg;
			break;
		case 'v':
			o->per_contender = true;
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
	return true;
}

/* The first operations of a run pay for page faults and clock ramp-up; keep
 * them out of the first measured point. */
static void warm_up(struct shared_state *shared, const struct options *o, const char *workdir)
{
	for (int design = DESIGN_GPUCAP; design <= DESIGN_SEMAPHORE; design++) {
		struct point p = {.design = (enum design)design,
		                  .mode = MODE_THREADS,
		                  .contenders = 1,
		                  .limit = o->loose_limit,
		                  .size = o->size,
		                  .duration_ns = 100000000u};
		run_point(&p, shared, workdir);
	}
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
	struct shared_state *shared = bench_shared_alloc(sizeof *shared);

	printf("reserve+release pairs on one device, kind DATA, %llu B each, %lu ms per point\n",
	       (unsigned long long)o.size, o.duration_ms);
	printf(
	    "loose limit: %llu B; tight limit: room for half the contenders' reservations (at least one) plus half a reservation\n",
	    (unsigned long long)o.loose_limit);
	printf(
	    "ns/op: contender time per reserve attempt (+ release when granted), averaged over operations\n");
	printf(
	    "Mops/s: all contenders together; ref%%: reserves refused for the limit; worst%%: ref%% of the contender refused most; fair: fewest/most operations of one contender\n");
	printf("ratio: semaphore ns/op / gpucap ns/op (higher is better for gpucap)\n\n");
	warm_up(shared, &o, workdir);

	printf("%-9s %-5s %4s | %-38s | %-38s | %7s\n", "", "", "", "gpucap", "semaphore (old design)", "");
	printf("%-9s %-5s %4s | %8s %8s %6s %6s %5s | %8s %8s %6s %6s %5s | %7s\n", "mode", "limit", "n",
	       "ns/op", "Mops/s", "ref%", "worst%", "fair", "ns/op", "Mops/s", "ref%", "worst%", "fair",
	       "ratio");
	double uncontended_ns = -1, ratio_at_8[2] = {-1, -1};
	bool all_valid = true;
	for (int mode = MODE_PROCESSES; mode <= MODE_THREADS; mode++) {
		if (!o.modes[mode])
			continue;
		for (int limit = LIMIT_LOOSE; limit <= LIMIT_TIGHT; limit++) {
			if (!o.limits[limit])
				continue;
			for (unsigned i = 0; i < o.contender_count; i++) {
				unsigned n = o.contenders[i];
				struct point p = {.mode = (enum mode)mode,
				                  .contenders = n,
				                  .limit = limit == LIMIT_LOOSE ? o.loose_limit
				                                                : tight_limit(n, o.size),
				                  .size = o.size,
				                  .duration_ns = (uint64_t)o.duration_ms * 1000000u,
				                  .per_contender = o.per_contender};
				p.design = DESIGN_GPUCAP;
				struct point_result g = run_point(&p, shared, workdir);
				p.design = DESIGN_SEMAPHORE;
				struct point_result s = run_point(&p, shared, workdir);
				printf("%-9s %-5s %4u |", mode == MODE_PROCESSES ? "processes" : "threads",
				       limit == LIMIT_LOOSE ? "loose" : "tight", n);
				print_cell(&g);
				print_cell(&s);
				if (g.valid && s.valid)
					printf(" %6.1fx\n", s.ns_per_op / g.ns_per_op);
				else
					printf(" %7s\n", "-");
				fflush(stdout);
				all_valid = all_valid && g.valid && s.valid;
				if (limit == LIMIT_LOOSE && n == 1 && g.valid &&
				    (uncontended_ns < 0 || g.ns_per_op < uncontended_ns))
					uncontended_ns = g.ns_per_op;
				if (limit == LIMIT_LOOSE && n == 8 && g.valid && s.valid)
					ratio_at_8[mode] = s.ns_per_op / g.ns_per_op;
			}
		}
	}

	printf("\ntargets (printed, not asserted):\n");
	if (uncontended_ns >= 0)
		printf("  gpucap <= 100 ns per pair uncontended (loose, 1 contender): %.1f ns (%s)\n",
		       uncontended_ns, bench_verdict(uncontended_ns <= 100.0));
	else
		printf("  gpucap <= 100 ns per pair uncontended: not measured\n");
	for (int mode = MODE_PROCESSES; mode <= MODE_THREADS; mode++) {
		const char *name = mode == MODE_PROCESSES ? "processes" : "threads";
		if (ratio_at_8[mode] >= 0)
			printf(
			    "  gpucap >= 20x the semaphore design at 8 contenders (loose, %s): %.1fx (%s)\n",
			    name, ratio_at_8[mode], bench_verdict(ratio_at_8[mode] >= 20.0));
		else if (o.modes[mode])
			printf(
			    "  gpucap >= 20x the semaphore design at 8 contenders (loose, %s): not measured\n",
			    name);
	}

	bench_shared_free(shared, sizeof *shared);
	bench_workdir_remove(workdir);
	if (!all_valid)
		fprintf(stderr, "bench_reserve: some points failed (see the errors above)\n");
	return all_valid ? 0 : 1;
}
