/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash torture: worker processes of one or more threads reserve, release
 * and reclaim dead peers while a killer SIGKILLs them at random instants,
 * stops and continues them (SIGSTOP/SIGCONT), and starts replacements. A
 * checker thread takes snapshots the whole time, and every few kills the
 * killer stops the world (every worker SIGSTOPped) and checks exactly:
 *   - the device total <= the limit;
 *   - the device total == the sum of the slots' ledgers (a consistent snapshot);
 *   - the bytes live workers' threads hold, summed, <= the limit;
 *   - each live worker holds no more than its slot's ledger says.
 * At the end the survivors release everything, the dead are reclaimed, and
 * the test asserts 0 operations blocked more than 100 ms, 0 bytes leaked,
 * 0 over-limit observations, 0 failed stop-the-world checks, 0 underflows
 * and 0 corrupt snapshots.
 *
 * A failing run prints its seed: rerun with --seed to replay the same
 * victims and delays (thread interleavings differ).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "region_peek.h"
#include "test_support.h"

#define MiB         (UINT64_C(1) << 20)
#define GPU         "GPU-70707070-0000-0000-0000-000000000001"
#define MAX_WORKERS 64
#define MAX_THREADS 16
#define BLOCKED_NS  (UINT64_C(100) * 1000 * 1000)

static const char usage_text[] =
    "usage: torture_region [--workers W] [--threads T] [--kills K | --seconds S] [--seed N]\n"
    "                      [--max-delay-us U] [--check-every C] [--stop-percent P]\n"
    "\n"
    "  --workers W       worker processes (1..64, default 8)\n"
    "  --threads T       threads per worker, each reserving, releasing and reclaiming (1..16, default 1)\n"
    "  --kills K         stop after K kills (default 2000)\n"
    "  --seconds S       run for S seconds instead of a number of kills\n"
    "  --seed N          seed of the victims and delays (default 1)\n"
    "  --max-delay-us U  longest pause between two kills (default 3000)\n"
    "  --check-every C   stop the world and check every C kills (default 10; 0: never)\n"
    "  --stop-percent P  share of victims SIGSTOPped (then continued or killed) instead of killed (default 10)\n"
    "\n"
    "Exit status 0 when every check held; a failing run prints its seed.\n";

/* A slow operation is "blocked" only if the thread spent it waiting itself:
 * spinning (CPU time) or sleeping (a voluntary context switch). Time lost to
 * preemption on a loaded machine, or to a SIGSTOP by the killer, is counted
 * apart. */
struct burst_clock {
	uint64_t cpu_ns;
	long voluntary_switches;
	uint64_t stop_epoch;
	bool slow;
	uint64_t slowest_ns;
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Voluntary context switches that no major page fault explains: a fault
 * that reads the region file's page back from disk (memory pressure on a
 * loaded machine) sleeps in the kernel without any protocol wait. */
static long voluntary_switches(void)
{
	struct rusage usage;
	getrusage(RUSAGE_THREAD, &usage);
	return usage.ru_nvcsw - usage.ru_majflt;
}

struct control {
	_Atomic int stop;
	_Atomic int killer_done;
	_Atomic uint64_t stop_epoch; /* moves whenever the killer stops or continues anyone */
	_Atomic uint64_t kills;
	_Atomic uint64_t stops;
	_Atomic uint64_t ops;
	_Atomic uint64_t reclaim_calls;
	_Atomic uint64_t blocked;
	_Atomic uint64_t preempted;
	_Atomic uint64_t kernel_sleeps;
	_Atomic uint64_t max_op_ns;
	_Atomic uint64_t max_attach_ns;
	_Atomic uint64_t over_limit;
	_Atomic uint64_t snapshots;
	_Atomic uint64_t consistent_snapshots;
	_Atomic uint64_t corrupt_snapshots;
	_Atomic uint64_t worker_failures;
	/* Stop-the-world checks. */
	_Atomic uint64_t checks;
	_Atomic uint64_t check_over_limit;
	_Atomic uint64_t check_inconsistent;
	_Atomic uint64_t check_holdings_over_limit;
	_Atomic uint64_t check_holdings_over_ledger;
	/* What each worker thread holds: raised after a reserve succeeds and
	 * lowered before a release, so it never exceeds what is charged. */
	_Atomic uint64_t held[MAX_WORKERS][MAX_THREADS];
};

static struct {
	int workers, threads;
	uint64_t kills, seconds, seed, max_delay_us, check_every, stop_percent, limit;
	const char *path;
} cfg = {8, 1, 2000, 0, 1, 3000, 10, 10, 64 * MiB, NULL};

static struct control *control;

static void burst_begin(struct burst_clock *clock)
{
	clock->cpu_ns = thread_cpu_ns();
	clock->voluntary_switches = voluntary_switches();
	clock->stop_epoch = atomic_load(&control->stop_epoch);
	clock->slow = false;
	clock->slowest_ns = 0;
}

static void burst_end(struct burst_clock *clock)
{
	if (!clock->slow)
		return;
	if (atomic_load(&control->stop_epoch) != clock->stop_epoch) {
		atomic_fetch_add(&control->preempted, 1); /* the killer stopped us */
		return;
	}
	uint64_t cpu = thread_cpu_ns() - clock->cpu_ns;
	long slept = voluntary_switches() - clock->voluntary_switches;
	/* Spinning is blocking. A sleep is too in a one-thread worker, where
	 * nothing but the protocol could make it wait; in a worker of several
	 * threads the kernel also puts a thread to sleep on locks of its
	 * process (a page fault waiting for the address space lock that a
	 * sibling thread holds), and a sanitizer runtime sleeps on its own
	 * locks: those are counted apart, as "slept in the kernel". */
	bool blocked = cpu > BLOCKED_NS / 2 || (slept > 0 && cfg.threads == 1);
	bool kernel_sleep = !blocked && slept > 0;
	fprintf(stderr,
	        "torture: an operation took %.1f ms (burst cpu %.1f ms, voluntary switches %ld): %s\n",
	        (double)clock->slowest_ns / 1e6, (double)cpu / 1e6, slept,
	        blocked        ? "BLOCKED"
	        : kernel_sleep ? "slept in the kernel"
	                       : "preempted");
	atomic_fetch_add(blocked        ? &control->blocked
	                 : kernel_sleep ? &control->kernel_sleeps
	                                : &control->preempted,
	                 1);
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

struct worker_thread {
	gpucap_region *region;
	struct region_peek *peek;
	int device, worker, thread;
	uint64_t seed;
};

static void *work(void *arg)
{
	struct worker_thread *w = arg;
	_Atomic uint64_t *held_total = &control->held[w->worker][w->thread];
	uint64_t seed = w->seed;
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
		uint64_t start = now_ns();
		if (r % 512 == 0) {
			/* Reclaim dead peers alongside the other threads. Kept out
			 * of the blocking measure: its fcntl per live slot never
			 * waits for a peer, but the kernel may sleep inside it. */
			burst_end(&clock);
			gpucap_region_reclaim_dead(w->region, NULL);
			atomic_fetch_add_explicit(&control->reclaim_calls, 1, memory_order_relaxed);
			burst_begin(&clock);
			continue;
		} else if (count < 128 && (count == 0 || (r & 2))) {
			uint64_t size =
			    (r >> 8) % 4 == 0 ? (r >> 16) % (6 * MiB) + 1 : (r >> 16) % (64 * 1024) + 1;
			if (gpucap_reserve(w->region, w->device, GPUCAP_KIND_DATA, size) == GPUCAP_OK) {
				held[count++] = size;
				atomic_fetch_add(held_total, size);
			}
		} else {
			uint64_t size = held[--count];
			atomic_fetch_sub(held_total, size);
			gpucap_release(w->region, w->device, GPUCAP_KIND_DATA, size);
		}
		note_op(&clock, start);
		if (region_peek_charged(w->peek, w->device) > cfg.limit)
			atomic_fetch_add(&control->over_limit, 1);
	}
	burst_end(&clock);
	while (count) {
		uint64_t size = held[--count];
		atomic_fetch_sub(held_total, size);
		gpucap_release(w->region, w->device, GPUCAP_KIND_DATA, size);
	}
	return NULL;
}

static int worker(int index, uint64_t seed)
{
	uint64_t start = now_ns();
	gpucap_region *region = test_attach_claim(cfg.path);
	int device = gpucap_region_device_register(region, GPU, cfg.limit, 0);
	uint64_t attach_ns = now_ns() - start;
	uint64_t max_attach = atomic_load(&control->max_attach_ns);
	while (attach_ns > max_attach &&
	       !atomic_compare_exchange_weak(&control->max_attach_ns, &max_attach, attach_ns)) {
	}
	struct region_peek peek = {0};
	if (device < 0 || region_peek_open(&peek, cfg.path) != 0)
		return 2;
	struct worker_thread threads[MAX_THREADS];
	pthread_t ids[MAX_THREADS];
	for (int t = 0; t < cfg.threads; t++) {
		threads[t] = (struct worker_thread){region, &peek, device, index, t, test_random(&seed)};
		if (t > 0 && pthread_create(&ids[t], NULL, work, &threads[t]) != 0)
			return 3;
	}
	work(&threads[0]);
	for (int t = 1; t < cfg.threads; t++)
		pthread_join(ids[t], NULL);
	gpucap_region_detach(region);
	return 0;
}

static pid_t spawn_worker(int index, uint64_t seed)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(worker(index, seed));
	return pid;
}

static void forget_holdings(int index)
{
	for (int t = 0; t < MAX_THREADS; t++)
		atomic_store(&control->held[index][t], 0);
}

static uint64_t holdings(int index)
{
	uint64_t sum = 0;
	for (int t = 0; t < MAX_THREADS; t++)
		sum += atomic_load(&control->held[index][t]);
	return sum;
}

static void wait_stopped(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, WUNTRACED) < 0 && errno == EINTR) {
	}
}

/* Every worker is stopped: nothing moves, so the snapshot must be exact. */
static void check_stopped_world(gpucap_region *observer, const pid_t *pids)
{
	atomic_fetch_add(&control->checks, 1);
	struct gpucap_snapshot *s = gpucap_region_snapshot(observer);
	if (!s)
		return;
	if (!s->consistent)
		atomic_fetch_add(&control->check_inconsistent, 1);
	uint64_t total = 0;
	int device = -1;
	for (uint32_t i = 0; i < s->device_count; i++) {
		total = s->devices[i].charged_bytes;
		device = s->devices[i].index;
		if (total > cfg.limit)
			atomic_fetch_add(&control->check_over_limit, 1);
	}
	uint64_t held_sum = 0;
	for (int w = 0; w < cfg.workers; w++) {
		uint64_t held = holdings(w);
		held_sum += held;
		if (device < 0 || held == 0)
			continue;
		uint64_t ledger = 0;
		for (uint32_t p = 0; p < s->process_count; p++)
			if (s->processes[p].pid == pids[w])
				ledger = s->processes[p].devices[device].charged_bytes;
		if (held > ledger) {
			fprintf(stderr, "torture: worker %d holds %llu bytes but its ledger says %llu\n", w,
			        (unsigned long long)held, (unsigned long long)ledger);
			atomic_fetch_add(&control->check_holdings_over_ledger, 1);
		}
	}
	if (held_sum > cfg.limit) {
		fprintf(stderr, "torture: live workers hold %llu bytes, over the limit %llu\n",
		        (unsigned long long)held_sum, (unsigned long long)cfg.limit);
		atomic_fetch_add(&control->check_holdings_over_limit, 1);
	}
	gpucap_snapshot_free(s);
}

static void stop_the_world(gpucap_region *observer, const pid_t *pids)
{
	atomic_fetch_add(&control->stop_epoch, 1);
	for (int i = 0; i < cfg.workers; i++)
		kill(pids[i], SIGSTOP);
	for (int i = 0; i < cfg.workers; i++)
		wait_stopped(pids[i]);
	check_stopped_world(observer, pids);
	for (int i = 0; i < cfg.workers; i++)
		kill(pids[i], SIGCONT);
	atomic_fetch_add(&control->stop_epoch, 1);
}

static void reap(int index, pid_t pid)
{
	int status = wait_child(pid);
	if (status != 128 + SIGKILL && status != 0) {
		atomic_fetch_add(&control->worker_failures, 1);
		fprintf(stderr, "worker exited with %d\n", status);
	}
	forget_holdings(index);
}

/* A single-threaded process forks, stops and kills, so no fork happens in a
 * process that has other threads. */
static int killer(void)
{
	struct gpucap_region_options options = {.path = cfg.path, .observer = true};
	gpucap_region *observer = NULL;
	if (gpucap_region_attach(&options, &observer, NULL, 0) != GPUCAP_OK)
		return 2;
	uint64_t rng = cfg.seed * 7919u + 17;
	pid_t pids[MAX_WORKERS];
	for (int i = 0; i < cfg.workers; i++)
		pids[i] = spawn_worker(i, test_random(&rng));
	uint64_t deadline = cfg.seconds ? now_ns() + cfg.seconds * UINT64_C(1000000000) : 0;
	for (uint64_t k = 0; deadline ? now_ns() < deadline : k < cfg.kills; k++) {
		uint64_t delay = cfg.max_delay_us ? test_random(&rng) % cfg.max_delay_us : 0;
		usleep((useconds_t)delay);
		int victim = (int)(test_random(&rng) % (uint64_t)cfg.workers);
		if (test_random(&rng) % 100 < cfg.stop_percent) {
			/* Stopped mid-operation, for a while: nobody may wait on it. */
			atomic_fetch_add(&control->stop_epoch, 1);
			kill(pids[victim], SIGSTOP);
			atomic_fetch_add(&control->stops, 1);
			usleep((useconds_t)(cfg.max_delay_us ? test_random(&rng) % cfg.max_delay_us : 0));
			if (test_random(&rng) & 1) {
				kill(pids[victim], SIGCONT);
				atomic_fetch_add(&control->stop_epoch, 1);
				k--; /* not a kill */
				continue;
			}
		}
		kill(pids[victim], SIGKILL);
		reap(victim, pids[victim]);
		atomic_fetch_add(&control->stop_epoch, 1);
		atomic_fetch_add(&control->kills, 1);
		pids[victim] = spawn_worker(victim, test_random(&rng));
		if (cfg.check_every && (k + 1) % cfg.check_every == 0)
			stop_the_world(observer, pids);
	}
	atomic_store(&control->stop, 1);
	for (int i = 0; i < cfg.workers; i++)
		if (wait_child(pids[i]) != 0)
			atomic_fetch_add(&control->worker_failures, 1);
	gpucap_region_detach(observer);
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
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
			fputs(usage_text, stdout);
			exit(0);
		}
	}
	for (int i = 1; i < argc; i += 2) {
		if (i + 1 >= argc) {
			fprintf(stderr, "torture_region: %s needs a value\n%s", argv[i], usage_text);
			exit(2);
		}
		char *end = NULL;
		unsigned long long v = strtoull(argv[i + 1], &end, 10);
		if (!end || *end != '\0') {
			fprintf(stderr, "torture_region: %s needs a number, not %s\n", argv[i], argv[i + 1]);
			exit(2);
		}
		if (!strcmp(argv[i], "--workers"))
			cfg.workers = (int)v;
		else if (!strcmp(argv[i], "--threads"))
			cfg.threads = (int)v;
		else if (!strcmp(argv[i], "--kills"))
			cfg.kills = v;
		else if (!strcmp(argv[i], "--seconds"))
			cfg.seconds = v;
		else if (!strcmp(argv[i], "--seed"))
			cfg.seed = v;
		else if (!strcmp(argv[i], "--max-delay-us"))
			cfg.max_delay_us = v;
		else if (!strcmp(argv[i], "--check-every"))
			cfg.check_every = v;
		else if (!strcmp(argv[i], "--stop-percent"))
			cfg.stop_percent = v;
		else {
			fprintf(stderr, "torture_region: unknown option %s\n%s", argv[i], usage_text);
			exit(2);
		}
	}
	if (cfg.workers < 1 || cfg.workers > MAX_WORKERS || cfg.threads < 1 || cfg.threads > MAX_THREADS ||
	    cfg.stop_percent > 100) {
		fprintf(stderr, "torture_region: workers 1..%d, threads 1..%d, stop-percent 0..100\n",
		        MAX_WORKERS, MAX_THREADS);
		exit(2);
	}
}

int main(int argc, char **argv)
{
	parse_args(argc, argv);
	cfg.path = scratch_path("torture-region");
	if (cfg.seconds)
		printf("torture: %d workers x %d threads, %llu s, max delay %llu us, limit %llu, seed %llu\n",
		       cfg.workers, cfg.threads, (unsigned long long)cfg.seconds,
		       (unsigned long long)cfg.max_delay_us, (unsigned long long)cfg.limit,
		       (unsigned long long)cfg.seed);
	else
		printf(
		    "torture: %d workers x %d threads, %llu kills, max delay %llu us, limit %llu, seed %llu\n",
		    cfg.workers, cfg.threads, (unsigned long long)cfg.kills,
		    (unsigned long long)cfg.max_delay_us, (unsigned long long)cfg.limit,
		    (unsigned long long)cfg.seed);
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
	struct region_peek peek = {0};
	uint64_t underflows = UINT64_MAX;
	if (region_peek_open(&peek, cfg.path) == 0)
		underflows = atomic_load(&((const struct region_header *)peek.base)->underflows);
	gpucap_region_detach(observer);

	printf(
	    "torture: kills %llu, stops %llu, dead slots reclaimed %llu, reclaim calls %llu, ops %llu, max op %.3f ms, max attach %.3f ms\n",
	    (unsigned long long)atomic_load(&control->kills),
	    (unsigned long long)atomic_load(&control->stops), (unsigned long long)reclaimed,
	    (unsigned long long)atomic_load(&control->reclaim_calls),
	    (unsigned long long)atomic_load(&control->ops), (double)atomic_load(&control->max_op_ns) / 1e6,
	    (double)atomic_load(&control->max_attach_ns) / 1e6);
	printf(
	    "torture: slow ops from preemption or stops (not blocking) %llu, slept in the kernel in multi-threaded workers %llu\n",
	    (unsigned long long)atomic_load(&control->preempted),
	    (unsigned long long)atomic_load(&control->kernel_sleeps));
	printf(
	    "torture: stop-the-world checks %llu: over limit %llu, total != sum of ledgers %llu, holdings over limit %llu, holdings over ledger %llu\n",
	    (unsigned long long)atomic_load(&control->checks),
	    (unsigned long long)atomic_load(&control->check_over_limit),
	    (unsigned long long)atomic_load(&control->check_inconsistent),
	    (unsigned long long)atomic_load(&control->check_holdings_over_limit),
	    (unsigned long long)atomic_load(&control->check_holdings_over_ledger));
	printf(
	    "torture: blocked>100ms %llu, leaked bytes %llu, over-limit %llu, underflows %llu, corrupt snapshots %llu (of %llu consistent, %llu taken)\n",
	    (unsigned long long)atomic_load(&control->blocked), (unsigned long long)leaked,
	    (unsigned long long)atomic_load(&control->over_limit), (unsigned long long)underflows,
	    (unsigned long long)atomic_load(&control->corrupt_snapshots),
	    (unsigned long long)atomic_load(&control->consistent_snapshots),
	    (unsigned long long)atomic_load(&control->snapshots));
	bool checks_held = atomic_load(&control->check_over_limit) == 0 &&
	                   atomic_load(&control->check_inconsistent) == 0 &&
	                   atomic_load(&control->check_holdings_over_limit) == 0 &&
	                   atomic_load(&control->check_holdings_over_ledger) == 0 &&
	                   (cfg.check_every == 0 || atomic_load(&control->checks) > 0);
	bool ok =
	    killer_status == 0 && atomic_load(&control->worker_failures) == 0 &&
	    (cfg.seconds ? atomic_load(&control->kills) > 0 : atomic_load(&control->kills) == cfg.kills) &&
	    atomic_load(&control->blocked) == 0 && leaked == 0 && atomic_load(&control->over_limit) == 0 &&
	    underflows == 0 && checks_held && atomic_load(&control->corrupt_snapshots) == 0 &&
	    atomic_load(&control->consistent_snapshots) > 0 && reclaimed > 0;
	scratch_remove();
	printf("torture: %s (seed %llu)\n", ok ? "passed" : "FAILED; rerun with --seed",
	       (unsigned long long)cfg.seed);
	return ok ? 0 : 1;
}
