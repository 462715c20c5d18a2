/*
 * Crash torture: workers reserve and release while a killer SIGKILLs them at
 * random instants and starts replacements. A checker takes snapshots the
 * whole time. At the end the survivors release everything, the dead are
 * reclaimed, and the test asserts:
 *   - 0 survivor operations blocked more than 100 ms;
 *   - 0 bytes leaked (charged == 0 after reclaiming);
 *   - 0 observations of charged > limit;
 *   - 0 corrupt snapshots (consistent, yet the slots' sum differs).
 *
 *   torture_region [--workers W] [--kills K] [--seed S] [--max-delay-us U]
 * A failing run prints its seed: rerun with --seed to replay the same
 * victims and delays.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "region_peek.h"
#include "test_support.h"

#define MiB         (UINT64_C(1) << 20)
#define GPU         "GPU-70707070-0000-0000-0000-000000000001"
#define MAX_WORKERS 64
#define BLOCKED_NS  (UINT64_C(100) * 1000 * 1000)

/* A slow operation is "blocked" only if the thread spent it waiting itself:
 * spinning (CPU time) or sleeping (a voluntary context switch). Time lost to
 * preemption on a loaded machine is counted apart, as "preempted". */
struct burst_clock {
	uint64_t cpu_ns;
	long voluntary_switches;
	bool slow;
	uint64_t slowest_ns;
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long voluntary_switches(void)
{
	struct rusage usage;
	getrusage(RUSAGE_THREAD, &usage);
	return usage.ru_nvcsw;
}

struct control {
	_Atomic int stop;
	_Atomic int killer_done;
	_Atomic uint64_t kills;
	_Atomic uint64_t ops;
	_Atomic uint64_t blocked;
	_Atomic uint64_t preempted;
	_Atomic uint64_t max_op_ns;
	_Atomic uint64_t max_attach_ns;
	_Atomic uint64_t over_limit;
	_Atomic uint64_t snapshots;
	_Atomic uint64_t consistent_snapshots;
	_Atomic uint64_t corrupt_snapshots;
	_Atomic uint64_t worker_failures;
};

static struct {
	int workers;
	uint64_t kills, seed, max_delay_us, limit;
	const char *path;
} cfg = {8, 2000, 1, 3000, 64 * MiB, NULL};

static struct control *control;

static void burst_begin(struct burst_clock *clock)
{
	clock->cpu_ns = thread_cpu_ns();
	clock->voluntary_switches = voluntary_switches();
	clock->slow = false;
	clock->slowest_ns = 0;
}

static void burst_end(struct burst_clock *clock)
{
	if (!clock->slow)
		return;
	uint64_t cpu = thread_cpu_ns() - clock->cpu_ns;
	long slept = voluntary_switches() - clock->voluntary_switches;
	bool blocked = cpu > BLOCKED_NS / 2 || slept > 0;
	fprintf(stderr,
	        "torture: an operation took %.1f ms (burst cpu %.1f ms, voluntary switches %ld): %s\n",
	        (double)clock->slowest_ns / 1e6, (double)cpu / 1e6, slept, blocked ? "BLOCKED" : "preempted");
	atomic_fetch_add(blocked ? &control->blocked : &control->preempted, 1);
}

static void note_op(struct burst_clock *clock, uint64_t start)
{
	uint64_t took = now_ns() - start;
	atomic_fetch_add_explicit(&control->ops, 1, memory_order_relaxed);
	if (took > BLOCKED_NS) {
		clock->slow = true;
		if (took > clock->slowest_ns)
			clock->slowest_ns = took;
	}
	uint64_t max = atomic_load_explicit(&control->max_op_ns, memory_order_relaxed);
	while (took > max && !atomic_compare_exchange_weak(&control->max_op_ns, &max, took)) {
	}
}

static int worker(uint64_t seed)
{
	uint64_t start = now_ns();
	gpucap_region *region = test_attach_claim(cfg.path);
	int device = gpucap_region_device_register(region, GPU, cfg.limit, 0);
	uint64_t attach_ns = now_ns() - start;
	uint64_t max_attach = atomic_load(&control->max_attach_ns);
	while (attach_ns > max_attach &&
	       !atomic_compare_exchange_weak(&control->max_attach_ns, &max_attach, attach_ns)) {
	}
	struct region_peek peek;
	if (device < 0 || region_peek_open(&peek, cfg.path) != 0)
		return 2;
	uint64_t held[128];
	unsigned count = 0;
	struct burst_clock clock;
	burst_begin(&clock);
	for (uint64_t step = 1; !atomic_load_explicit(&control->stop, memory_order_relaxed); step++) {
		/* Work in bursts with short rests: kills still land mid-operation,
		 * and a 2-core machine is not so saturated that the scheduler's
		 * own delays look like blocking. */
		if (step % 256 == 0) {
			burst_end(&clock);
			usleep(200);
			burst_begin(&clock);
		}
		uint64_t r = test_random(&seed);
		start = now_ns();
		if (count < 128 && (count == 0 || (r & 1))) {
			uint64_t size =
			    (r >> 8) % 4 == 0 ? (r >> 16) % (6 * MiB) + 1 : (r >> 16) % (64 * 1024) + 1;
			if (gpucap_reserve(region, device, GPUCAP_KIND_DATA, size) == GPUCAP_OK)
				held[count++] = size;
		} else {
			gpucap_release(region, device, GPUCAP_KIND_DATA, held[--count]);
		}
		note_op(&clock, start);
		if (region_peek_charged(&peek, device) > cfg.limit)
			atomic_fetch_add(&control->over_limit, 1);
	}
	burst_end(&clock);
	while (count)
		gpucap_release(region, device, GPUCAP_KIND_DATA, held[--count]);
	gpucap_region_detach(region);
	return 0;
}

static pid_t spawn_worker(uint64_t seed)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(worker(seed));
	return pid;
}

/* A single-threaded process forks and kills, so no fork happens in a process
 * that has other threads. */
static int killer(void)
{
	uint64_t rng = cfg.seed * 7919u + 17;
	pid_t pids[MAX_WORKERS];
	for (int i = 0; i < cfg.workers; i++)
		pids[i] = spawn_worker(test_random(&rng));
	for (uint64_t k = 0; k < cfg.kills; k++) {
		uint64_t delay = cfg.max_delay_us ? test_random(&rng) % cfg.max_delay_us : 0;
		usleep((useconds_t)delay);
		int victim = (int)(test_random(&rng) % (uint64_t)cfg.workers);
		kill(pids[victim], SIGKILL);
		int status = wait_child(pids[victim]);
		if (status != 128 + SIGKILL && status != 0) {
			atomic_fetch_add(&control->worker_failures, 1);
			fprintf(stderr, "worker exited with %d\n", status);
		}
		atomic_fetch_add(&control->kills, 1);
		pids[victim] = spawn_worker(test_random(&rng));
	}
	atomic_store(&control->stop, 1);
	for (int i = 0; i < cfg.workers; i++)
		if (wait_child(pids[i]) != 0)
			atomic_fetch_add(&control->worker_failures, 1);
	return 0;
}

static void *checker(void *arg)
{
	gpucap_region *observer = arg;
	while (!atomic_load(&control->killer_done)) {
		struct gpucap_snapshot *s = gpucap_region_snapshot(observer);
		if (!s)
			continue;
		atomic_fetch_add(&control->snapshots, 1);
		for (uint32_t i = 0; i < s->device_count; i++) {
			int d = s->devices[i].index;
			uint64_t sum = 0;
			for (uint32_t p = 0; p < s->process_count; p++)
				sum += s->processes[p].devices[d].charged_bytes;
			if (s->devices[i].charged_bytes > cfg.limit)
				atomic_fetch_add(&control->over_limit, 1);
			if (s->consistent) {
				atomic_fetch_add(&control->consistent_snapshots, 1);
				if (sum != s->devices[i].charged_bytes)
					atomic_fetch_add(&control->corrupt_snapshots, 1);
			}
		}
		gpucap_snapshot_free(s);
		usleep(200);
	}
	return NULL;
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		unsigned long long v = strtoull(argv[i + 1], NULL, 10);
		if (!strcmp(argv[i], "--workers"))
			cfg.workers = (int)v;
		else if (!strcmp(argv[i], "--kills"))
			cfg.kills = v;
		else if (!strcmp(argv[i], "--seed"))
			cfg.seed = v;
		else if (!strcmp(argv[i], "--max-delay-us"))
			cfg.max_delay_us = v;
		else {
			fprintf(stderr, "unknown option %s\n", argv[i]);
			exit(2);
		}
	}
	if (cfg.workers < 1 || cfg.workers > MAX_WORKERS) {
		fprintf(stderr, "workers 1..%d\n", MAX_WORKERS);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	cfg.path = scratch_path("torture-region");
	printf("torture: %d workers, %llu kills, max delay %llu us, limit %llu, seed %llu\n", cfg.workers,
	       (unsigned long long)cfg.kills, (unsigned long long)cfg.max_delay_us,
	       (unsigned long long)cfg.limit, (unsigned long long)cfg.seed);
	fflush(stdout);
	control = mmap(NULL, sizeof(*control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	gpucap_region *observer = test_attach(cfg.path);
	/* Fork the killer before this process starts a thread. */
	pid_t killer_pid = fork();
	if (killer_pid == 0)
		_exit(killer());
	pthread_t checker_thread;
	pthread_create(&checker_thread, NULL, checker, observer);
	int killer_status = wait_child(killer_pid);
	atomic_store(&control->killer_done, 1);
	pthread_join(checker_thread, NULL);

	struct gpucap_reclaim_report report;
	gpucap_region_reclaim_dead(observer, &report);
	struct gpucap_snapshot *s = gpucap_region_snapshot(observer);
	uint64_t leaked = s->device_count ? s->devices[0].charged_bytes : 0;
	uint64_t reclaimed = s->reclaimed_slots_total;
	gpucap_snapshot_free(s);
	gpucap_region_detach(observer);

	printf(
	    "torture: kills %llu, dead slots reclaimed %llu, ops %llu, max op %.3f ms, max attach %.3f ms\n",
	    (unsigned long long)atomic_load(&control->kills), (unsigned long long)reclaimed,
	    (unsigned long long)atomic_load(&control->ops), (double)atomic_load(&control->max_op_ns) / 1e6,
	    (double)atomic_load(&control->max_attach_ns) / 1e6);
	printf("torture: slow ops from preemption (not blocking) %llu\n",
	       (unsigned long long)atomic_load(&control->preempted));
	printf(
	    "torture: blocked>100ms %llu, leaked bytes %llu, over-limit %llu, corrupt snapshots %llu (of %llu consistent, %llu taken)\n",
	    (unsigned long long)atomic_load(&control->blocked), (unsigned long long)leaked,
	    (unsigned long long)atomic_load(&control->over_limit),
	    (unsigned long long)atomic_load(&control->corrupt_snapshots),
	    (unsigned long long)atomic_load(&control->consistent_snapshots),
	    (unsigned long long)atomic_load(&control->snapshots));
	bool ok = killer_status == 0 && atomic_load(&control->worker_failures) == 0 &&
	          atomic_load(&control->kills) == cfg.kills && atomic_load(&control->blocked) == 0 &&
	          leaked == 0 && atomic_load(&control->over_limit) == 0 &&
	          atomic_load(&control->corrupt_snapshots) == 0 &&
	          atomic_load(&control->consistent_snapshots) > 0 && reclaimed > 0;
	scratch_remove();
	printf("torture: %s (seed %llu)\n", ok ? "passed" : "FAILED; rerun with --seed",
	       (unsigned long long)cfg.seed);
	return ok ? 0 : 1;
}
