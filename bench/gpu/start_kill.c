/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Kill during start. N processes start together (cuInit, primary context,
 * first 1 MiB allocation); the parent SIGKILLs KILLS of them, chosen at
 * random, each at a random instant in [0, WINDOW_MS] after the common release.
 * When the survivors have started, a fresh single process starts alone.
 *   start_kill N KILLS WINDOW_MS SEED
 *
 * One round per invocation, so that bench/gpu/run_start.sh can alternate
 * native and gpucap rounds and give both rounds of a pair the same SEED: the
 * same victims killed at the same instants, which makes their difference a
 * paired comparison rather than two samples of the noise.
 *
 * Prints one line:
 *   start_kill n=8 kills=2 window_ms=W seed=S survivors=6 survivors_p50_ms=..
 *   survivors_max_ms=.. fresh_ms=.. victims=I@MS:PHASE,.. killed_mid_start=K
 *   failed=F
 * PHASE is "mid" when the victim had not finished starting when it was
 * killed, "held" when it had and was holding its context and allocation.
 * Exits 1 when a survivor or the fresh process failed to start, 2 on usage.
 */
#include "gpu_bench_common.h"

#include <cuda.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PROCESSES  64
#define REPORT_TIMEOUT (UINT64_C(60) * 1000000000u)
#define STATE_STARTING 0
#define STATE_STARTED  1
#define STATE_FAILED   2
#define FRESH_INDEX    MAX_PROCESSES

struct shared {
	_Atomic uint64_t release_ns;
	_Atomic uint64_t start_ns[MAX_PROCESSES + 1];
	atomic_int state[MAX_PROCESSES + 1];
};

/* Each child keeps its context and allocation until the parent closes the
 * hold pipe, so a victim killed after it started still dies holding both:
 * its slot then has charges that somebody must reclaim. */
static void child(struct shared *s, int index, int gate_fd, int hold_fd)
{
	char c;
	if (read(gate_fd, &c, 1) != 0)
		_exit(2);
	uint64_t t0 = atomic_load(&s->release_ns);
	CUdevice device;
	CUcontext context;
	CUdeviceptr ptr;
	if (cuInit(0) || cuDeviceGet(&device, 0) || cuDevicePrimaryCtxRetain(&context, device) ||
	    cuCtxSetCurrent(context) || cuMemAlloc(&ptr, 1 << 20)) {
		atomic_store(&s->state[index], STATE_FAILED);
		_exit(3);
	}
	atomic_store(&s->start_ns[index], bench_now_ns() - t0);
	atomic_store(&s->state[index], STATE_STARTED);
	/* EOF when the parent closes it, or when the parent dies: never stuck. */
	if (read(hold_fd, &c, 1) != 0)
		_exit(4);
	if (cuMemFree(ptr) || cuDevicePrimaryCtxRelease(device))
		_exit(5);
	exit(0); /* like any program's end: the libraries' exit handlers run */
}

static uint64_t next_random(uint64_t *state)
{
	/* xorshift64*: enough for picking victims, and the same on every run. */
	uint64_t x = *state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * UINT64_C(2685821657736338717);
}

static void sleep_until(uint64_t deadline_ns)
{
	struct timespec ts = {(time_t)(deadline_ns / 1000000000u), (long)(deadline_ns % 1000000000u)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static void pause_ms(long ms)
{
	struct timespec ts = {0, ms * 1000000L};
	nanosleep(&ts, NULL);
}

static bool exited_ok(int status)
{
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

struct group {
	int count;
	pid_t pids[MAX_PROCESSES + 1];
	int first_index;
	int gate[2], hold[2];
};

static bool spawn(struct shared *s, struct group *g, int first_index, int count)
{
	g->count = count;
	g->first_index = first_index;
	if (pipe(g->gate) || pipe(g->hold))
		return false;
	for (int i = 0; i < count; i++) {
		int index = first_index + i;
		atomic_store(&s->state[index], STATE_STARTING);
		atomic_store(&s->start_ns[index], 0);
		g->pids[i] = fork();
		if (g->pids[i] < 0)
			return false;
		if (g->pids[i] == 0) {
			close(g->gate[1]);
			close(g->hold[1]);
			child(s, index, g->gate[0], g->hold[0]);
		}
	}
	close(g->gate[0]);
	close(g->hold[0]);
	return true;
}

static uint64_t release(struct shared *s, struct group *g)
{
	uint64_t t0 = bench_now_ns();
	atomic_store(&s->release_ns, t0);
	close(g->gate[1]);
	return t0;
}

/* Waits until every process not in skip[] has reported or exited; a process
 * that exits before reporting has failed. Returns false on timeout. */
static bool await_reports(struct shared *s, struct group *g, const bool *skip, int *wait_status, bool *reaped)
{
	uint64_t deadline = bench_now_ns() + REPORT_TIMEOUT;
	for (;;) {
		bool pending = false;
		for (int i = 0; i < g->count; i++) {
			if (skip[i] || reaped[i] ||
			    atomic_load(&s->state[g->first_index + i]) != STATE_STARTING)
				continue;
			if (waitpid(g->pids[i], &wait_status[i], WNOHANG) == g->pids[i]) {
				reaped[i] = true;
				continue;
			}
			pending = true;
		}
		if (!pending)
			return true;
		if (bench_now_ns() > deadline)
			return false;
		pause_ms(1);
	}
}

static void finish(struct group *g, int *wait_status, bool *reaped)
{
	close(g->hold[1]);
	for (int i = 0; i < g->count; i++) {
		if (!reaped[i] && waitpid(g->pids[i], &wait_status[i], 0) == g->pids[i])
			reaped[i] = true;
	}
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: start_kill N KILLS WINDOW_MS SEED\n");
		return 2;
	}
	int n = atoi(argv[1]), kills = atoi(argv[2]);
	double window_ms = atof(argv[3]);
	uint64_t seed = strtoull(argv[4], NULL, 10);
	if (n < 1 || n > MAX_PROCESSES || kills < 0 || kills >= n || window_ms < 0) {
		fprintf(stderr, "start_kill: need 1 <= N <= %d, 0 <= KILLS < N, WINDOW_MS >= 0\n",
		        MAX_PROCESSES);
		return 2;
	}
	struct shared *s =
	    mmap(NULL, sizeof(struct shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		return 2;

	/* The victims and their instants depend on SEED alone. */
	uint64_t rng = seed * UINT64_C(0x9E3779B97F4A7C15) + 1;
	int order[MAX_PROCESSES];
	for (int i = 0; i < n; i++)
		order[i] = i;
	for (int i = 0; i < kills; i++) {
		int j = i + (int)(next_random(&rng) % (uint64_t)(n - i));
		int t = order[i];
		order[i] = order[j];
		order[j] = t;
	}
	int victims[MAX_PROCESSES];
	uint64_t kill_at[MAX_PROCESSES];
	bool is_victim[MAX_PROCESSES + 1] = {false};
	for (int i = 0; i < kills; i++) {
		victims[i] = order[i];
		kill_at[i] =
		    (uint64_t)((double)(next_random(&rng) >> 11) / 9007199254740992.0 * window_ms * 1e6);
		is_victim[victims[i]] = true;
	}
	for (int i = 1; i < kills; i++) { /* by instant, so one pass of sleeps kills them all */
		for (int j = i; j > 0 && kill_at[j] < kill_at[j - 1]; j--) {
			uint64_t t = kill_at[j];
			kill_at[j] = kill_at[j - 1];
			kill_at[j - 1] = t;
			int v = victims[j];
			victims[j] = victims[j - 1];
			victims[j - 1] = v;
		}
	}

	struct group g;
	int wait_status[MAX_PROCESSES + 1] = {0};
	bool reaped[MAX_PROCESSES + 1] = {false};
	if (!spawn(s, &g, 0, n)) {
		fprintf(stderr, "start_kill: fork failed: %s\n", strerror(errno));
		return 2;
	}
	uint64_t t0 = release(s, &g);
	bool mid_start[MAX_PROCESSES] = {false};
	for (int i = 0; i < kills; i++) {
		sleep_until(t0 + kill_at[i]);
		mid_start[i] = atomic_load(&s->state[victims[i]]) == STATE_STARTING;
		kill(g.pids[victims[i]], SIGKILL);
	}
	bool timely = await_reports(s, &g, is_victim, wait_status, reaped);
	finish(&g, wait_status, reaped);

	uint64_t survivor_ns[MAX_PROCESSES];
	int survivors = 0, failed = 0, killed_mid = 0;
	for (int i = 0; i < n; i++) {
		if (is_victim[i])
			continue;
		if (atomic_load(&s->state[i]) == STATE_STARTED && exited_ok(wait_status[i]))
			survivor_ns[survivors++] = atomic_load(&s->start_ns[i]);
		else
			failed++;
	}
	/* A victim that failed on its own before the kill is a failure too. */
	for (int i = 0; i < kills; i++) {
		killed_mid += mid_start[i];
		if (atomic_load(&s->state[victims[i]]) == STATE_FAILED)
			failed++;
	}

	/* The fresh process comes after every member of the round has exited, so
	 * it meets the dead slots the victims left. */
	struct group fresh;
	int fresh_status[1] = {0};
	bool fresh_reaped[1] = {false}, fresh_skip[1] = {false};
	double fresh_ms = -1;
	if (spawn(s, &fresh, FRESH_INDEX, 1)) {
		release(s, &fresh);
		timely = await_reports(s, &fresh, fresh_skip, fresh_status, fresh_reaped) && timely;
		finish(&fresh, fresh_status, fresh_reaped);
		if (atomic_load(&s->state[FRESH_INDEX]) == STATE_STARTED && exited_ok(fresh_status[0]))
			fresh_ms = (double)atomic_load(&s->start_ns[FRESH_INDEX]) / 1e6;
	}
	if (fresh_ms < 0)
		failed++;

	double p50 = survivors ? (double)percentile(survivor_ns, (size_t)survivors, 50) / 1e6 : -1;
	double max = survivors ? (double)survivor_ns[survivors - 1] / 1e6 : -1;
	printf(
	    "start_kill n=%d kills=%d window_ms=%.1f seed=%llu survivors=%d survivors_p50_ms=%.1f survivors_max_ms=%.1f fresh_ms=%.1f victims=",
	    n, kills, window_ms, (unsigned long long)seed, survivors, p50, max, fresh_ms);
	for (int i = 0; i < kills; i++)
		printf("%s%d@%.1f:%s", i ? "," : "", victims[i], (double)kill_at[i] / 1e6,
		       mid_start[i] ? "mid" : "held");
	printf("%s killed_mid_start=%d failed=%d%s\n", kills ? "" : "none", killed_mid, failed,
	       timely ? "" : " timeout=1");
	return failed || !timely ? 1 : 0;
}
