/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attach latency when many processes start at once (a multi-process job
 * launching its workers): each process attaches, takes a slot and registers
 * one device, all released by one start gate. Measured twice: when the
 * racing processes must create the region file, and when it already exists.
 *
 * Processes stay attached until every one of them is done, so the last ones
 * see as many live slots as there are processes, as in a real job.
 */
#define _GNU_SOURCE
#include "bench_util.h"
#include "sem_region.h"

#include <gpucap/region.h>

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCESSES 1000
#define MAX_POINTS    8
#define DEVICE_UUID   "GPU-00000000-bench-0000-0000-attach000000"

enum design { DESIGN_GPUCAP, DESIGN_SEMAPHORE };
enum round { ROUND_NEW_FILE, ROUND_EXISTING_FILE };

/* gpucap's attach in its three calls, to show where the time goes. */
enum phase { PHASE_ATTACH, PHASE_CLAIM_SLOT, PHASE_REGISTER, PHASE_COUNT };

struct attach_result {
	uint64_t latency_ns;
	uint64_t phase_ns[PHASE_COUNT];
	uint64_t done_ns;
	int failed;
};

struct shared_state {
	struct bench_gate gate;
	atomic_uint done;
	struct attach_result results[MAX_PROCESSES];
};

static bool attach_gpucap(const char *path, gpucap_region **out, uint64_t phase_ns[PHASE_COUNT])
{
	char err[512] = "";
	struct gpucap_region_options options = {.path = path};
	struct gpucap_slot_identity identity = {0};
	uint64_t t0 = bench_now_ns();
	gpucap_status status = gpucap_region_attach(&options, out, err, sizeof err);
	uint64_t t1 = bench_now_ns();
	phase_ns[PHASE_ATTACH] = t1 - t0;
	if (status == GPUCAP_OK) {
		status = gpucap_region_claim_slot(*out, &identity, err, sizeof err);
		uint64_t t2 = bench_now_ns();
		phase_ns[PHASE_CLAIM_SLOT] = t2 - t1;
		if (status == GPUCAP_OK) {
			int device = gpucap_region_device_register(*out, DEVICE_UUID, GPUCAP_UNLIMITED, 0);
			phase_ns[PHASE_REGISTER] = bench_now_ns() - t2;
			if (device >= 0)
				return true;
			status = (gpucap_status)-device;
		}
		gpucap_region_detach(*out);
	}
	fprintf(stderr, "bench_attach: %s: %s %s\n", path, gpucap_status_text(status), err);
	return false;
}

static void run_child(enum design design, const char *path, struct shared_state *shared, unsigned index,
                      int hold_fd)
{
	struct attach_result *out = &shared->results[index];
	gpucap_region *gpucap = NULL;
	sem_region *semaphore = NULL;
	int device;

	bench_gate_pass(&shared->gate);
	uint64_t start = bench_now_ns();
	bool ok = design == DESIGN_GPUCAP
	              ? attach_gpucap(path, &gpucap, out->phase_ns)
	              : sem_region_attach(path, DEVICE_UUID, UINT64_MAX, &semaphore, &device);
	uint64_t end = bench_now_ns();
	out->latency_ns = end - start;
	out->done_ns = end;
	out->failed = !ok;
	atomic_fetch_add_explicit(&shared->done, 1, memory_order_release);

	/* Block (not spin) until everyone is attached, so finished processes
	 * neither leave early nor steal CPU from those still attaching. */
	char byte;
	while (read(hold_fd, &byte, 1) > 0)
		;
	if (gpucap)
		gpucap_region_detach(gpucap);
	if (semaphore)
		sem_region_detach(semaphore);
	_exit(ok ? 0 : 1);
}

static void sleep_briefly(void)
{
	struct timespec ts = {0, 100000};
	nanosleep(&ts, NULL);
}

/* One simultaneous attach of n processes. Returns the wall time from the
 * gate opening to the last process attached, or 0 on failure. Latencies go
 * to samples[0..n), and gpucap's per-call times to phase_samples if given. */
static uint64_t run_once(enum design design, const char *path, unsigned n, struct shared_state *shared,
                         uint64_t *samples, uint64_t *phase_samples[PHASE_COUNT])
{
	memset(shared, 0, sizeof *shared);
	bench_gate_reset(&shared->gate);
	int hold[2];
	if (pipe(hold) != 0) {
		perror("bench_attach: pipe");
		return 0;
	}
	fflush(stdout);
	pid_t pids[MAX_PROCESSES];
	unsigned started = 0;
	for (; started < n; started++) {
		pids[started] = fork();
		if (pids[started] < 0) {
			perror("bench_attach: fork");
			break;
		}
		if (pids[started] == 0) {
			close(hold[1]);
			run_child(design, path, shared, started, hold[0]);
		}
	}
	close(hold[0]);
	uint64_t opened = bench_gate_open_when(&shared->gate, started, 60000);
	uint64_t deadline = bench_now_ns() + UINT64_C(60000000000);
	while (atomic_load_explicit(&shared->done, memory_order_acquire) < started &&
	       bench_now_ns() < deadline)
		sleep_briefly();
	close(hold[1]);
	bool ok = opened != 0 && started == n;
	for (unsigned i = 0; i < started; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
			ok = false;
	}
	uint64_t last = 0;
	for (unsigned i = 0; i < started; i++) {
		const struct attach_result *r = &shared->results[i];
		ok = ok && !r->failed;
		samples[i] = r->latency_ns;
		for (int ph = 0; ph < PHASE_COUNT && phase_samples; ph++)
			phase_samples[ph][i] = r->phase_ns[ph];
		last = r->done_ns > last ? r->done_ns : last;
	}
	return ok && last > opened ? last - opened : 0;
}

struct summary {
	uint64_t p50, p99, max;
	uint64_t wall_median, wall_max;
	bool valid;
};

static void summarise(uint64_t *samples, size_t count, uint64_t *walls, size_t reps, bool valid,
                      struct summary *s)
{
	bench_sort_u64(samples, count);
	bench_sort_u64(walls, reps);
	s->p50 = bench_percentile(samples, count, 50);
	s->p99 = bench_percentile(samples, count, 99);
	s->max = count ? samples[count - 1] : 0;
	s->wall_median = bench_percentile(walls, reps, 50);
	s->wall_max = reps ? walls[reps - 1] : 0;
	s->valid = valid;
}

static void print_cell(const struct summary *s)
{
	if (s->valid)
		printf(" %8.1f %8.1f %8.1f %8.2f %8.2f |", s->p50 / 1e3, s->p99 / 1e3, s->max / 1e3,
		       s->wall_median / 1e6, s->wall_max / 1e6);
	else
		printf(" %8s %8s %8s %8s %8s |", "error", "-", "-", "-", "-");
}

struct options {
	unsigned processes[MAX_POINTS];
	unsigned process_count;
	unsigned long reps;
	const char *dir;
};

static void usage(FILE *to)
{
	fprintf(to, "usage: bench_attach [--processes 1,8,64] [--reps 10] [--dir DIR]\n");
}

static bool parse_options(int argc, char **argv, struct options *o)
{
	static const struct option long_options[] = {
	    {"processes", required_argument, NULL, 'p'},
	    {"reps", required_argument, NULL, 'r'},
	    {"dir", required_argument, NULL, 'D'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	*o = (struct options){.processes = {1, 8, 64}, .process_count = 3, .reps = 10};
	int c;
	while ((c = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
		bool ok = true;
		switch (c) {
		case 'p':
			ok = bench_parse_counts(optarg, o->processes, MAX_POINTS, MAX_PROCESSES,
			                        &o->process_count);
			break;
		case 'r':
			ok = bench_parse_uint(optarg, 1, 1000, &o->reps);
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
	struct shared_state *shared = bench_shared_alloc(sizeof *shared);
	unsigned most = 0;
	for (unsigned i = 0; i < o.process_count; i++)
		most = o.processes[i] > most ? o.processes[i] : most;
	/* samples and walls: [design][round]; phases (gpucap only): [round][phase] */
	uint64_t *samples[2][2], *walls[2][2], *phases[2][PHASE_COUNT];
	for (int d = 0; d < 2; d++)
		for (int r = 0; r < 2; r++) {
			samples[d][r] = calloc((size_t)most * o.reps, sizeof(uint64_t));
			walls[d][r] = calloc(o.reps, sizeof(uint64_t));
			if (!samples[d][r] || !walls[d][r])
				return 2;
		}
	for (int r = 0; r < 2; r++)
		for (int ph = 0; ph < PHASE_COUNT; ph++)
			if (!(phases[r][ph] = calloc((size_t)most * o.reps, sizeof(uint64_t))))
				return 2;

	printf("attach = open/create the region file + take a slot + register one device, per process\n");
	printf(
	    "latency: per process, from its own start to attached (p50/p99/max over all processes of %lu repetitions)\n",
	    o.reps);
	printf(
	    "wall: from the start gate opening to the last process attached (median/max of repetitions)\n");
	printf(
	    "semaphore design attach: open, init under a file lock, sem_wait, kill(pid,0) sweep of %d slots, register, sem_post\n\n",
	    SEM_REGION_SLOTS);

	struct summary results[MAX_POINTS][2][2];
	uint64_t phase_p50[MAX_POINTS][2][PHASE_COUNT] = {{{0}}};
	bool all_valid = true;
	for (unsigned i = 0; i < o.process_count; i++) {
		unsigned n = o.processes[i];
		bool valid[2][2] = {{true, true}, {true, true}};
		for (unsigned long rep = 0; rep < o.reps; rep++) {
			/* Alternate the designs so drift in machine state hits both alike. */
			for (int d = DESIGN_GPUCAP; d <= DESIGN_SEMAPHORE; d++) {
				char path[4200];
				snprintf(path, sizeof path, "%s/attach-%d-%u-%lu.region", workdir, d, n, rep);
				unlink(path);
				for (int r = ROUND_NEW_FILE; r <= ROUND_EXISTING_FILE; r++) {
					uint64_t *phase_at[PHASE_COUNT];
					for (int ph = 0; ph < PHASE_COUNT; ph++)
						phase_at[ph] = phases[r][ph] + (size_t)rep * n;
					uint64_t wall = run_once((enum design)d, path, n, shared,
					                         samples[d][r] + (size_t)rep * n,
					                         d == DESIGN_GPUCAP ? phase_at : NULL);
					walls[d][r][rep] = wall;
					valid[d][r] = valid[d][r] && wall != 0;
				}
				unlink(path);
			}
		}
		for (int d = 0; d < 2; d++)
			for (int r = 0; r < 2; r++) {
				summarise(samples[d][r], (size_t)n * o.reps, walls[d][r], o.reps, valid[d][r],
				          &results[i][d][r]);
				all_valid = all_valid && valid[d][r];
			}
		for (int r = 0; r < 2; r++)
			for (int ph = 0; ph < PHASE_COUNT; ph++) {
				bench_sort_u64(phases[r][ph], (size_t)n * o.reps);
				phase_p50[i][r][ph] = bench_percentile(phases[r][ph], (size_t)n * o.reps, 50);
			}
	}

	double worst_p50_us[2] = {-1, -1}, wall64_ms[2] = {-1, -1};
	for (int r = ROUND_NEW_FILE; r <= ROUND_EXISTING_FILE; r++) {
		printf("%s\n", r == ROUND_NEW_FILE
		                   ? "round 1: the region file does not exist (the racers create it)"
		                   : "round 2: the region file exists");
		printf("%5s | %-44s | %-44s | %-13s\n", "", "gpucap", "semaphore (old design)",
		       "ratio sem/gpucap");
		printf("%5s | %8s %8s %8s %8s %8s | %8s %8s %8s %8s %8s | %6s %6s\n", "procs", "p50 us",
		       "p99 us", "max us", "wall ms", "wallmax", "p50 us", "p99 us", "max us", "wall ms",
		       "wallmax", "p50", "wall");
		for (unsigned i = 0; i < o.process_count; i++) {
			const struct summary *g = &results[i][DESIGN_GPUCAP][r];
			const struct summary *s = &results[i][DESIGN_SEMAPHORE][r];
			printf("%5u |", o.processes[i]);
			print_cell(g);
			print_cell(s);
			if (g->valid && s->valid && g->p50 && g->wall_median)
				printf(" %5.1fx %5.1fx\n", (double)s->p50 / (double)g->p50,
				       (double)s->wall_median / (double)g->wall_median);
			else
				printf(" %6s %6s\n", "-", "-");
			if (g->valid && g->p50 / 1e3 > worst_p50_us[r])
				worst_p50_us[r] = g->p50 / 1e3;
			if (g->valid && o.processes[i] == 64)
				wall64_ms[r] = g->wall_median / 1e6;
		}
		printf("gpucap p50 by call (us):");
		for (unsigned i = 0; i < o.process_count; i++)
			printf("  %u procs: attach %.1f, claim_slot %.1f, device_register %.1f;",
			       o.processes[i], phase_p50[i][r][PHASE_ATTACH] / 1e3,
			       phase_p50[i][r][PHASE_CLAIM_SLOT] / 1e3,
			       phase_p50[i][r][PHASE_REGISTER] / 1e3);
		printf("\n\n");
	}

	printf("targets (printed, not asserted):\n");
	for (int r = ROUND_NEW_FILE; r <= ROUND_EXISTING_FILE; r++) {
		const char *name = r == ROUND_NEW_FILE ? "new file" : "existing file";
		if (worst_p50_us[r] >= 0)
			printf("  gpucap attach p50 <= 50 us (%s, worst over process counts): %.1f us (%s)\n",
			       name, worst_p50_us[r], bench_verdict(worst_p50_us[r] <= 50.0));
		else
			printf("  gpucap attach p50 <= 50 us (%s): not measured\n", name);
		if (wall64_ms[r] >= 0)
			printf("  gpucap 64-way wall <= 50 ms (%s, median): %.2f ms (%s)\n", name,
			       wall64_ms[r], bench_verdict(wall64_ms[r] <= 50.0));
		else
			printf("  gpucap 64-way wall <= 50 ms (%s): not measured\n", name);
	}

	for (int d = 0; d < 2; d++)
		for (int r = 0; r < 2; r++) {
			free(samples[d][r]);
			free(walls[d][r]);
		}
	for (int r = 0; r < 2; r++)
		for (int ph = 0; ph < PHASE_COUNT; ph++)
			free(phases[r][ph]);
	bench_shared_free(shared, sizeof *shared);
	bench_workdir_remove(workdir);
	if (!all_valid)
		fprintf(stderr, "bench_attach: some attaches failed (see the errors above)\n");
	return all_valid ? 0 : 1;
}
