/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Memory the driver takes behind the allocation APIs, on the fake driver's
 * model of per-process usage (tests/fakedriver/fake_usage.c): contexts at
 * their measured size, the calls that take memory (limits, modules,
 * libraries, graph memory, pool thresholds) refused with
 * CUDA_ERROR_OUT_OF_MEMORY when they would pass the cap, and memory no call
 * names charged by reconciliation within a bounded number of reconciler
 * periods of simulated time (GPUCAP_TEST_CLOCK=simulated: no wall clock is
 * read). After every refusal the process still allocates under the cap.
 *
 * usage: usagetest CASE (one case per process; the environment is set
 * before the first driver call, when gpucap reads it).
 */
#define _GNU_SOURCE
#include "check.h"
#include "cuda_api.h"
#include "fake_clock.h"
#include "gpucap/region.h"
#include "hook_scratch.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB    (UINT64_C(1) << 20)
#define GiB    (UINT64_C(1) << 30)
#define DEV_A  "GPU-00000000-0000-0000-0000-0000000000a0"
#define PERIOD UINT64_C(100000000) /* the reconciler's period */
#define CAP    (2 * GiB)
/* A context the fake driver says holds 518 MiB is charged that plus the
 * growth allowance, one 2 MiB page. */
#define CTX_CHARGE (520 * MiB)

static char region_dir[128];
static char region_path[192];
static char self_path[4096];

static void fresh_region(void)
{
	hook_scratch_region("usagetest", "USAGETEST_KEEP", region_dir, sizeof(region_dir), region_path,
	                    sizeof(region_path));
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "2g", 1);
	setenv("GPUCAP_TEST_CLOCK", "simulated", 1);
}

/* A fresh region whose contexts are 518 MiB on the fake driver, which
 * lists this process only at its (queries + 1)th query. */
static void fresh_region_unlisted(const char *queries)
{
	fresh_region();
	setenv("FAKECUDA_CONTEXT_BYTES", "543162368", 1);
	setenv("FAKECUDA_UNLISTED_QUERIES", queries, 1);
}

static CUcontext start_device(void)
{
	CU(cuInit(0));
	CUcontext ctx;
	CU(cuDevicePrimaryCtxRetain(&ctx, 0));
	CU(cuCtxSetCurrent(ctx));
	return ctx;
}

/* A fresh region whose contexts are charged nothing, and device 0 started:
 * a test of one surface sees only that surface's charge. */
static void start_on_fresh_region(void)
{
	fresh_region();
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	start_device();
}

/* ---- The region as an observer sees it ---------------------------------------- */

struct charges {
	int64_t kind[GPUCAP_KIND_COUNT];
	uint64_t device_charged;
	uint64_t context_measured;
	bool context_estimated; /* its slot marks a context at its estimate here */
};

static struct charges charges_of(pid_t pid)
{
	struct charges c;
	memset(&c, 0, sizeof(c));
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	o.observer = true;
	gpucap_region *r = NULL;
	char err[256];
	CHECK(gpucap_region_attach(&o, &r, err, sizeof(err)) == GPUCAP_OK);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	int dev = -1;
	for (uint32_t i = 0; i < s->device_count; i++) {
		if (strcmp(s->devices[i].uuid, DEV_A) == 0) {
			dev = s->devices[i].index;
			c.device_charged = s->devices[i].charged_bytes;
		}
	}
	for (uint32_t p = 0; dev >= 0 && p < s->process_count; p++)
		if (s->processes[p].pid == pid && s->processes[p].alive) {
			memcpy(c.kind, s->processes[p].devices[dev].kind_bytes, sizeof(c.kind));
			c.context_estimated = (s->processes[p].context_estimates >> dev) & 1;
		}
	if (dev >= 0)
		c.context_measured = gpucap_region_context_bytes(r, dev);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
	return c;
}

static struct charges mine(void)
{
	return charges_of(getpid());
}

/* Let the reconciler run n periods of simulated time, each step finished:
 * this thread sleeps on the test double's clock, which moves only while
 * every thread using it waits, so the reconciler's steps fall at whole
 * periods and this thread wakes half a period after the n-th. */
static void periods(int n)
{
	fakeclock_sleep((uint64_t)n * PERIOD + PERIOD / 2);
}

/* Let the reconciler run, a period at a time, until the region holds a
 * measured context size (the driver lists the process after `unlisted`
 * queries, the reconciler asks once a period): within that many periods
 * and a few more. */
static void until_measured(int unlisted)
{
	for (int n = 0; n < unlisted + 8 && charges_of(getpid()).context_measured == 0; n++)
		periods(1);
}

/* What the process really holds (the fake driver's figure, which its NVML
 * reports) stays within the cap. */
static void real_within_cap(void)
{
	uint64_t used = fakecuda_process_used(0);
	if (used > CAP)
		fprintf(stderr, "the process holds %llu bytes, over the %llu-byte cap\n",
		        (unsigned long long)used, (unsigned long long)CAP);
	CHECK(used <= CAP);
}

/* The process still allocates under the cap, and gives it back. */
static void still_allocates(uint64_t bytes)
{
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, bytes));
	CU(cuMemFree_v2(p));
}

/* ---- Contexts ---------------------------------------------------------------------- */

/* 8 contexts by CUDA 13's cuCtxCreate (v4, NULL params) under a cap with
 * room, on a driver whose v4 creates through its own v3 entry point: all
 * succeed, each is charged once at its measured size, and every charge
 * comes back exactly on destroy. */
static void test_ctx_v4(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "8g", 1);
	setenv("FAKECUDA_CONTEXT_BYTES", "543162368", 1); /* 518 MiB */
	setenv("FAKECUDA_CTX_V4_FORWARDS", "1", 1);
	CU(cuInit(0));
	CUcontext c[8];
	for (int i = 0; i < 8; i++)
		CU(cuCtxCreate_v4(&c[i], NULL, 0, 0));
	struct charges now = mine();
	CHECK_EQ(8 * CTX_CHARGE, now.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(518 * MiB, now.context_measured);
	CHECK(fakecuda_process_used(0) <= 8 * GiB);
	for (int i = 0; i < 8; i++)
		CU(cuCtxDestroy_v2(c[i]));
	now = mine();
	CHECK_EQ(0, now.kind[GPUCAP_KIND_CONTEXT]);
	periods(1);
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	CUcontext last;
	CU(cuCtxCreate_v4(&last, NULL, 0, 0));
	still_allocates(7 * GiB);
	CU(cuCtxDestroy_v2(last));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_CONTEXT]);
}

/* A driver that does not list a process the moment its context exists: the
 * context is measured at its creation all the same (asked again a few
 * milliseconds apart), before any allocation, so the whole rest of the cap
 * is usable at once. */
static void test_context_unlisted(void)
{
	fresh_region_unlisted("2");
	start_device();
	struct charges c = mine();
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(518 * MiB, c.context_measured);
	CUdeviceptr p, q;
	CU(cuMemAlloc_v2(&p, CAP - CTX_CHARGE));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&q, MiB));
	real_within_cap();
	CU(cuMemFree_v2(p));
}

/* Processes that start together and fill the cap at once: the driver
 * lists this one too late to measure its context at creation (four
 * queries), and no reconciler period passes before the cap is reached. On
 * the way to the first refusal the context is measured, and what its
 * estimate held too much is filled: the whole cap less the context's real
 * size is usable. */
static void test_context_refusal(void)
{
	fresh_region_unlisted("4");
	start_device();
	CHECK_EQ(640 * MiB, mine().kind[GPUCAP_KIND_CONTEXT]);
	CUdeviceptr p[64];
	int n = 0;
	while (n < 64 && cuMemAlloc_v2(&p[n], 64 * MiB) == CUDA_SUCCESS)
		n++;
	struct charges c = mine();
	fprintf(stderr, "filled %d x 64 MiB; context charged %llu\n", n,
	        (unsigned long long)c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ((uint64_t)n * 64 * MiB, (CAP - CTX_CHARGE) / (64 * MiB) * 64 * MiB);
	real_within_cap();
	for (int i = 0; i < n; i++)
		CU(cuMemFree_v2(p[i]));
}

/* A driver that lists the process only later: the primary context keeps
 * its estimate (640 MiB, nothing measured in the region yet) until the
 * reconciler measures it, which then lowers the charge to the measured size
 * and keeps the size in the region. */
static void test_context_late_primary(void)
{
	fresh_region_unlisted("8");
	start_device();
	struct charges c = mine();
	CHECK_EQ(640 * MiB, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(0, c.context_measured);
	until_measured(8);
	c = mine();
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(518 * MiB, c.context_measured);
	CHECK_EQ(0, c.kind[GPUCAP_KIND_DRIVER]);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, CAP - CTX_CHARGE));
	real_within_cap();
	CU(cuMemFree_v2(p));
	CU(cuDevicePrimaryCtxRelease_v2(0));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_CONTEXT]);
}

/* The same for created contexts, tracked by handle: one destroyed before
 * it was measured gives back exactly its charge; the next is measured by
 * the reconciler, and its destroy gives back exactly the lowered charge. */
static void test_context_late_created(void)
{
	fresh_region_unlisted("12");
	CU(cuInit(0));
	CUcontext first, second;
	CU(cuCtxCreate_v2(&first, 0, 0));
	CHECK_EQ(640 * MiB, mine().kind[GPUCAP_KIND_CONTEXT]);
	CU(cuCtxDestroy_v2(first));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_CONTEXT]);
	CU(cuCtxCreate_v2(&second, 0, 0));
	CHECK_EQ(640 * MiB, mine().kind[GPUCAP_KIND_CONTEXT]);
	until_measured(12);
	struct charges c = mine();
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(518 * MiB, c.context_measured);
	CU(cuCtxDestroy_v2(second));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_CONTEXT]);
}

/* The driver lists the process only after its context's creation, and
 * the reconciler's queries come while an allocation of 64 MiB is charged
 * but not yet made (the driver takes a second over it): NVML's figure then
 * lacks the 64 MiB the ledger holds, and the context measured from the two
 * would be 64 MiB short, a size every later process of the region would
 * start from. The measurement waits until the allocation is made. */
static void test_context_beside_allocation(void)
{
	fresh_region_unlisted("6");
	start_device();
	CHECK(mine().context_estimated);
	setenv("FAKECUDA_ALLOC_TAKES_NS", "1000000000", 1);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, 64 * MiB));
	unsetenv("FAKECUDA_ALLOC_TAKES_NS");
	until_measured(6);
	struct charges c = mine();
	CHECK_EQ(518 * MiB, c.context_measured);
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(64 * MiB, c.kind[GPUCAP_KIND_DATA]);
	CU(cuMemFree_v2(p));
}

/* A context the driver never lists the process for (a PID it cannot
 * translate) keeps its estimate, but stops telling other processes to
 * wait for its measurement after 30 of the reconciler's tries; one it
 * measures stops at once. */
static void test_context_hint(void)
{
	fresh_region_unlisted("1000000");
	start_device();
	CHECK(mine().context_estimated);
	periods(28);
	CHECK(mine().context_estimated);
	periods(3);
	struct charges c = mine();
	CHECK(!c.context_estimated);
	CHECK_EQ(640 * MiB, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(0, c.context_measured);
}

static void test_context_hint_measured(void)
{
	fresh_region_unlisted("5");
	start_device();
	CHECK(mine().context_estimated);
	until_measured(5);
	struct charges c = mine();
	CHECK(!c.context_estimated);
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
}

/* ---- 8 processes racing to fill one cap ------------------------------------------------ */

#define RACERS    8
#define RACE_CAP  (8 * GiB)
#define RACE_STOP 3 /* the child's exit code when it could not start */
#define CROWD_MAX 16

/* One racer: a context, then (once every racer has one: it says so on
 * ready_fd and waits for a byte on go_fd) 64 MiB and 1 MiB allocations until refused; reports what it
 * holds (data, the fake driver's figure, the last answer) and holds it
 * until its stdin closes. */
static int child_fill(int ready_fd, int go_fd)
{
	CUcontext ctx;
	bool started = cuInit(0) == CUDA_SUCCESS && cuDevicePrimaryCtxRetain(&ctx, 0) == CUDA_SUCCESS &&
	               cuCtxSetCurrent(ctx) == CUDA_SUCCESS;
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
		return RACE_STOP;
	close(ready_fd);
	close(go_fd);
	uint64_t data = 0;
	CUresult r = CUDA_ERROR_NOT_INITIALIZED;
	CUdeviceptr p;
	for (uint64_t chunk = 64 * MiB; started && chunk >= MiB; chunk /= 64)
		while ((r = cuMemAlloc_v2(&p, chunk)) == CUDA_SUCCESS)
			data += chunk;
	printf("%llu %llu %d\n", (unsigned long long)data, (unsigned long long)fakecuda_process_used(0),
	       (int)r);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return started ? 0 : RACE_STOP;
}

/* N children of this program in MODE, started together: each says it is
 * ready, waits for the go, reports on `out` and holds what it took until
 * `hold` closes. Children run on the real clock (their outcome does not
 * depend on when a reconciler steps). */
struct crowd {
	int n;
	pid_t pids[CROWD_MAX];
	FILE *out;
	int hold;
};

static void crowd_start(struct crowd *cr, const char *mode, int n)
{
	int out[2], hold[2], ready[2], go[2];
	/* Close-on-exec: a child must not hold another's end open. */
	CHECK(pipe2(out, O_CLOEXEC) == 0 && pipe2(hold, O_CLOEXEC) == 0 && pipe2(ready, O_CLOEXEC) == 0 &&
	      pipe2(go, O_CLOEXEC) == 0);
	CHECK(n <= CROWD_MAX);
	cr->n = n;
	for (int i = 0; i < n; i++) {
		cr->pids[i] = fork();
		CHECK(cr->pids[i] >= 0);
		if (cr->pids[i] == 0) {
			dup2(hold[0], 0);
			dup2(out[1], 1);
			fcntl(ready[1], F_SETFD, 0);
			fcntl(go[0], F_SETFD, 0);
			char fds[2][16];
			snprintf(fds[0], sizeof(fds[0]), "%d", ready[1]);
			snprintf(fds[1], sizeof(fds[1]), "%d", go[0]);
			unsetenv("GPUCAP_TEST_CLOCK");
			execl(self_path, self_path, mode, fds[0], fds[1], (char *)NULL);
			_exit(127);
		}
	}
	close(out[1]);
	close(hold[0]);
	close(ready[1]);
	close(go[0]);
	char c;
	for (int i = 0; i < n; i++)
		CHECK(read(ready[0], &c, 1) == 1);
	for (int i = 0; i < n; i++)
		CHECK(write(go[1], "g", 1) == 1);
	close(ready[0]);
	close(go[1]);
	cr->out = fdopen(out[0], "r");
	CHECK(cr->out != NULL);
	cr->hold = hold[1];
}

/* Let the children exit; each must exit 0. */
static void crowd_end(struct crowd *cr)
{
	close(cr->hold);
	for (int i = 0; i < cr->n; i++) {
		int status;
		CHECK(waitpid(cr->pids[i], &status, 0) == cr->pids[i]);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	fclose(cr->out);
}

/* One round: RACERS children start together, each takes its context, then
 * all race to fill; sums of what they hold at one instant. */
static void race_round(int round)
{
	struct crowd cr;
	crowd_start(&cr, "child-fill", RACERS);
	uint64_t data = 0, real = 0;
	int refused = 0, reported = 0;
	unsigned long long d, u;
	int r;
	while (reported < RACERS && fscanf(cr.out, "%llu %llu %d", &d, &u, &r) == 3) {
		data += d;
		real += u;
		refused += r == CUDA_ERROR_OUT_OF_MEMORY;
		reported++;
	}
	crowd_end(&cr);
	/* What the processes hold beyond their data: their contexts' real
	 * footprint, with what the driver took by itself. */
	uint64_t contexts = real > data ? real - data : 0;
	printf(
	    "round %d: %d processes hold %llu MiB of data, %llu MiB real (contexts %llu MiB), cap %llu MiB\n",
	    round, reported, (unsigned long long)(data / MiB), (unsigned long long)(real / MiB),
	    (unsigned long long)(contexts / MiB), (unsigned long long)(RACE_CAP / MiB));
	CHECK_EQ(RACERS, reported);
	CHECK_EQ(RACERS, refused);
	CHECK(real <= RACE_CAP);
	CHECK(contexts < RACE_CAP);
	CHECK(100 * data >= 99 * (RACE_CAP - contexts));
}

/* A fresh region for the race: 8 GiB, contexts of 518 MiB on a driver
 * that lists a new process only at its (unlisted + 1)th query. */
static void fresh_race_region(const char *unlisted)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", "8g", 1);
	setenv("FAKECUDA_CONTEXT_BYTES", "543162368", 1);
	setenv("FAKECUDA_UNLISTED_QUERIES", unlisted, 1);
}

/* Round 0 on a fresh region whose driver lists a new process only at its
 * third query; every round with a driver that takes 2 MiB more by itself
 * once a process allocates. The real total stays within the cap, and the
 * data fills at least 99% of the cap less the contexts' real footprint. */
static void test_race_fill(void)
{
	fresh_race_region("2");
	setenv("FAKECUDA_ALLOC_GROWTH_BYTES", "2097152", 1);
	for (int round = 0; round < 3; round++)
		race_round(round);
}

/* A fresh region whose driver lists each process only at its seventh
 * query, later than the measurement at its creation asks: every context is
 * at the 640 MiB estimate when the racers start filling, and none of them
 * has been measured when the first is refused (on an H100 such a round held
 * 93.7% of the cap less the contexts). Refused data waits for the peers'
 * measurements, and the round holds at least 99% all the same. */
static void test_race_fill_late(void)
{
	fresh_race_region("6");
	/* No bound on a loaded machine's scheduling: a wait ends as soon as
	 * no estimate is left beside it, never on the clock here. */
	setenv("GPUCAP_CONTEXT_WAIT_MS", "60000", 1);
	race_round(0);
}

/* ---- Processes that start together -------------------------------------------------- */

#define STARTERS     8
#define STARTER_DATA (16 * MiB)

/* One starter: once all are ready, its primary context and STARTER_DATA;
 * reports "started answer" and holds what it took until stdin closes. */
static int child_start(int ready_fd, int go_fd)
{
	char c = 'r';
	if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
		return RACE_STOP;
	close(ready_fd);
	close(go_fd);
	CUcontext ctx;
	CUdeviceptr p;
	CUresult r = cuInit(0);
	if (r == CUDA_SUCCESS)
		r = cuDevicePrimaryCtxRetain(&ctx, 0);
	if (r == CUDA_SUCCESS)
		r = cuCtxSetCurrent(ctx);
	if (r == CUDA_SUCCESS)
		r = cuMemAlloc_v2(&p, STARTER_DATA);
	printf("%d %d\n", r == CUDA_SUCCESS, (int)r);
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	return 0;
}

/* STARTERS processes start together on a fresh region under a cap that
 * holds all of them at their contexts' real size (518 MiB, charged 520)
 * but only 6 at the 640 MiB estimate. The driver lists a new process only
 * at its sixth query, so no context is measured at its creation: every one
 * is charged its estimate until its reconciler measures it. Each refused
 * context is asked for again as the others are measured, and all start. */
static void test_start_many(void)
{
	fresh_region();
	uint64_t cap = STARTERS * (CTX_CHARGE + STARTER_DATA) + 64 * MiB;
	char text[32];
	snprintf(text, sizeof(text), "%llu", (unsigned long long)cap);
	setenv("CUDA_DEVICE_MEMORY_LIMIT", text, 1);
	setenv("FAKECUDA_CONTEXT_BYTES", "543162368", 1);
	setenv("FAKECUDA_UNLISTED_QUERIES", "6", 1);
	/* No bound on a loaded machine's scheduling: a wait ends as soon as
	 * no estimate is left beside it, never on the clock here. */
	setenv("GPUCAP_CONTEXT_WAIT_MS", "60000", 1);
	CHECK(cap / (640 * MiB + STARTER_DATA) < STARTERS);
	struct crowd cr;
	crowd_start(&cr, "child-start", STARTERS);
	int started = 0, refused = 0, reported = 0, ok, r;
	while (reported < STARTERS && fscanf(cr.out, "%d %d", &ok, &r) == 2) {
		started += ok;
		refused += r == CUDA_ERROR_OUT_OF_MEMORY;
		reported++;
	}
	struct charges c = charges_of(-1);
	crowd_end(&cr);
	printf("%d of %d started, %d refused; %llu MiB charged of %llu\n", started, STARTERS, refused,
	       (unsigned long long)(c.device_charged / MiB), (unsigned long long)(cap / MiB));
	CHECK_EQ(STARTERS, reported);
	CHECK_EQ(STARTERS, started);
	CHECK(c.device_charged <= cap);
}

static long long context_charge_of_child(const char *extra_env);

/* ---- A context beside one the driver is still creating ---------------------------- */

/* One of two processes on one simulated clock: after delay_ms of it, its
 * primary context, then (USAGETEST_ALLOC_MIB, when set) that much data;
 * writes "answer ms-it-took context-charge alloc-answer alloc-ms" to
 * out_path (the charge as the context's call left it, before any
 * reconciler step; -1 for an allocation not made), then holds both for 8 s
 * of the clock. */
static int child_creating(const char *out_path, int delay_ms)
{
	fakeclock_sleep((uint64_t)delay_ms * 1000000u);
	uint64_t t0 = fakeclock_now();
	CUcontext ctx;
	CUresult r = cuInit(0);
	if (r == CUDA_SUCCESS)
		r = cuDevicePrimaryCtxRetain(&ctx, 0);
	uint64_t took_ms = (fakeclock_now() - t0) / 1000000u;
	long long charge = (long long)mine().kind[GPUCAP_KIND_CONTEXT];
	const char *alloc_mib = getenv("USAGETEST_ALLOC_MIB");
	int alloc_answer = -1;
	uint64_t alloc_ms = 0;
	if (r == CUDA_SUCCESS && alloc_mib && *alloc_mib) {
		CUdeviceptr p;
		CU(cuCtxSetCurrent(ctx));
		t0 = fakeclock_now();
		alloc_answer = (int)cuMemAlloc_v2(&p, strtoull(alloc_mib, NULL, 10) * MiB);
		alloc_ms = (fakeclock_now() - t0) / 1000000u;
	}
	FILE *f = fopen(out_path, "w");
	if (!f)
		return 3;
	fprintf(f, "%d %llu %lld %d %llu\n", (int)r, (unsigned long long)took_ms, charge, alloc_answer,
	        (unsigned long long)alloc_ms);
	fclose(f);
	fakeclock_sleep(80 * PERIOD);
	return 0;
}

/* unlisted: the queries after which the fake driver lists the child;
 * alloc_mib: its allocation after the context ("": none). */
static pid_t spawn_creating(const char *clock_env, const char *out_path, const char *delay_ms,
                            const char *creation_ns, const char *unlisted, const char *alloc_mib)
{
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		putenv((char *)clock_env);
		setenv(FAKE_CLOCK_PARTIES_ENV, "2", 1);
		setenv("FAKECUDA_CONTEXT_CREATE_NS", creation_ns, 1);
		setenv("FAKECUDA_UNLISTED_QUERIES", unlisted, 1);
		setenv("USAGETEST_ALLOC_MIB", alloc_mib, 1);
		execl(self_path, self_path, "child-creating", out_path, delay_ms, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Two processes start on a fresh region under a cap that holds both
 * contexts at their real size (518 MiB, charged 520) but not two at the
 * 640 MiB estimate. The first is 5 s inside the driver's creation, as each
 * of 32 processes starting together on an H100 was; the second asks 100 ms
 * after it and is refused at first. The time the first spends inside the
 * driver does not count toward the second's GPUCAP_CONTEXT_WAIT_MS (1 s
 * here): it is admitted once the first is created and measured. */
struct created {
	int answer;
	unsigned long long took_ms;
	long long charge;
	int alloc_answer;
	unsigned long long alloc_ms;
};

/* Runs the pair on one simulated clock: the first 5 s inside the driver's
 * creation from time 0, the second created at once 100 ms later; each is
 * listed by the fake driver after its given number of queries. Both get
 * their contexts. */
static void run_creating_pair(const char *first_unlisted, const char *second_unlisted,
                              const char *second_alloc_mib, struct created got[2])
{
	static char clock_env[4200];
	snprintf(clock_env, sizeof(clock_env), "%s=%s/clock", FAKE_CLOCK_FILE_ENV, region_dir);
	char out[2][4200];
	for (int i = 0; i < 2; i++)
		snprintf(out[i], sizeof(out[i]), "%s/creating-%d", region_dir, i);
	pid_t first = spawn_creating(clock_env, out[0], "0", "5000000000", first_unlisted, "");
	pid_t second = spawn_creating(clock_env, out[1], "100", "0", second_unlisted, second_alloc_mib);
	int status;
	CHECK(waitpid(first, &status, 0) == first && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(waitpid(second, &status, 0) == second && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int i = 0; i < 2; i++) {
		FILE *f = fopen(out[i], "r");
		CHECK(f != NULL);
		CHECK(fscanf(f, "%d %llu %lld %d %llu", &got[i].answer, &got[i].took_ms, &got[i].charge,
		             &got[i].alloc_answer, &got[i].alloc_ms) == 5);
		fclose(f);
	}
	printf("first: answer %d after %llu ms, charged %lld; second: answer %d after %llu ms, charged %lld, "
	       "allocation %d after %llu ms\n",
	       got[0].answer, got[0].took_ms, got[0].charge, got[1].answer, got[1].took_ms, got[1].charge,
	       got[1].alloc_answer, got[1].alloc_ms);
	CHECK_EQ(CUDA_SUCCESS, got[0].answer);
	CHECK_EQ(CUDA_SUCCESS, got[1].answer);
}

/* A fresh region under cap whose contexts are 518 MiB on the fake
 * driver; a refused context waits 1 s (outside peers' creations). */
static void fresh_pair_region(const char *cap)
{
	fresh_region();
	setenv("CUDA_DEVICE_MEMORY_LIMIT", cap, 1);
	setenv("FAKECUDA_CONTEXT_BYTES", "543162368", 1);
	setenv("GPUCAP_CONTEXT_WAIT_MS", "1000", 1);
}

static void test_context_creating(void)
{
	fresh_pair_region("1200m");
	struct created got[2];
	run_creating_pair("0", "0", "", got);
	/* It waited for the first's creation, not for its own limit alone. */
	CHECK(got[1].took_ms >= 4800);
}

/* A context charged its estimate before any was measured, which the
 * driver does not list when its creation ends, while a peer measured its
 * own during that creation: it leaves the call charged the peer's size,
 * not the estimate, before any reconciler step (on an H100, 3 of 32
 * processes starting together were refused 16 MiB while finished contexts
 * still sat at the 640 MiB estimate). */
static void test_context_adopted(void)
{
	fresh_pair_region("2g");
	struct created got[2];
	run_creating_pair("1000000", "0", "", got);
	CHECK_EQ((long long)CTX_CHARGE, got[1].charge); /* measured at its creation */
	CHECK_EQ((long long)CTX_CHARGE, got[0].charge); /* the peer's size, at once */
}

/* Data refused only for a peer's blind estimate waits for its measurement.
 * The cap holds both contexts at the 640 MiB estimate, and 200 MiB more
 * once the first, 5 s inside the driver's creation, is measured (518 MiB,
 * charged 520), not before: the second, created and measured at 100 ms,
 * asks for 200 MiB at once. It is admitted when the first is measured, not
 * refused for the estimate's excess. */
static void test_data_beside_estimate(void)
{
	fresh_pair_region("1280m");
	struct created got[2];
	run_creating_pair("0", "0", "200", got);
	CHECK_EQ((long long)CTX_CHARGE, got[1].charge);
	CHECK_EQ(CUDA_SUCCESS, got[1].alloc_answer);
	/* It waited for the first's creation: time inside it is not counted. */
	CHECK(got[1].alloc_ms >= 4800);
}

/* Once the region holds a measured size, a context charged that size is no
 * estimate, even inside its creation: data that does not fit beside it is
 * refused at once, not after the 5 s creation. */
static void test_data_beside_measured(void)
{
	fresh_pair_region("1280m");
	CHECK_EQ(CTX_CHARGE, context_charge_of_child("FAKECUDA_UNLISTED_QUERIES=0"));
	struct created got[2];
	run_creating_pair("0", "0", "400", got);
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, got[1].alloc_answer);
	CHECK(got[1].alloc_ms < 100);
}

/* The first measurement replaces the estimate and is kept in the region;
 * the next process is charged the measured size from its first context,
 * even where it cannot measure; GPUCAP_CONTEXT_BYTES overrides both. */
static int child_context_charge(void)
{
	start_device();
	struct charges c = mine();
	printf("%lld\n", (long long)c.kind[GPUCAP_KIND_CONTEXT]);
	return 0;
}

static long long context_charge_of_child(const char *extra_env)
{
	char cmd[4096 + 256];
	snprintf(cmd, sizeof(cmd), "%s %s child-context-charge", extra_env, self_path);
	FILE *f = popen(cmd, "r");
	CHECK(f != NULL);
	long long v = -1;
	CHECK(fscanf(f, "%lld", &v) == 1);
	CHECK(pclose(f) == 0);
	return v;
}

static void test_context_measured(void)
{
	fresh_region();
	setenv("FAKECUDA_CONTEXT_BYTES", "543162368", 1);
	start_device();
	struct charges c = mine();
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(518 * MiB, c.context_measured);
	periods(2);
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	/* A process that cannot measure starts from the region's figure. */
	CHECK_EQ(CTX_CHARGE, context_charge_of_child("FAKENVML_PROCESSES=unsupported"));
	/* The override wins over the measurement. */
	CHECK_EQ(100 * MiB, context_charge_of_child("GPUCAP_CONTEXT_BYTES=100m"));
	/* A green context is a context. */
	CUgreenCtx g;
	CU(cuGreenCtxCreate(&g, NULL, 0, 0));
	CHECK_EQ(2 * CTX_CHARGE, mine().kind[GPUCAP_KIND_CONTEXT]);
	CU(cuGreenCtxDestroy(g));
	CHECK_EQ(CTX_CHARGE, mine().kind[GPUCAP_KIND_CONTEXT]);
}

/* A context the driver does not list yet takes the size another process
 * of the region measured, at its reconciler's next step. Peers no longer
 * wait for its own measurement (it could lower the charge by little), and
 * the reconciler stops asking NVML every period for it. */
static void test_context_peer(void)
{
	fresh_region_unlisted("1000000");
	start_device();
	CHECK_EQ(640 * MiB, mine().kind[GPUCAP_KIND_CONTEXT]);
	periods(2);
	CHECK_EQ(640 * MiB, mine().kind[GPUCAP_KIND_CONTEXT]);
	CHECK_EQ(CTX_CHARGE, context_charge_of_child("FAKECUDA_UNLISTED_QUERIES=0"));
	periods(1);
	struct charges c = mine();
	CHECK_EQ(CTX_CHARGE, c.kind[GPUCAP_KIND_CONTEXT]);
	CHECK(!c.context_estimated);
	uint64_t before = fakenvml_stat("process_queries");
	periods(30);
	uint64_t asked = fakenvml_stat("process_queries") - before;
	CHECK(asked >= 2 && asked <= 4); /* once a second, not 30 times */
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, CAP - CTX_CHARGE));
	real_within_cap();
	CU(cuMemFree_v2(p));
}

/* ---- Limits ------------------------------------------------------------------------- */

static void test_set_limit(void)
{
	start_on_fresh_region();
	size_t v;
	/* The malloc heap declares its size: 3 GiB is refused before the call,
	 * and the old limit stays. */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 3 * GiB));
	CU(cuCtxGetLimit(&v, CU_LIMIT_MALLOC_HEAP_SIZE));
	CHECK_EQ(8 * MiB, v);
	real_within_cap();
	still_allocates(CAP - 64 * MiB);
	/* 32 KiB of stack for every resident thread: about 8.6 GiB. */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuCtxSetLimit(CU_LIMIT_STACK_SIZE, 32 * 1024));
	CU(cuCtxGetLimit(&v, CU_LIMIT_STACK_SIZE));
	CHECK_EQ(1024, v);
	real_within_cap();
	/* A heap that fits is charged as the driver's, and held against
	 * allocations. */
	CU(cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 1 * GiB));
	CHECK(mine().kind[GPUCAP_KIND_DRIVER] >= (int64_t)(GiB - 8 * MiB));
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 1100 * MiB));
	real_within_cap();
	still_allocates(512 * MiB);
	/* Pending launches declare no size: measured after the call, undone. */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY,
	         cuCtxSetLimit(CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT, 1u << 20));
	CU(cuCtxGetLimit(&v, CU_LIMIT_DEV_RUNTIME_PENDING_LAUNCH_COUNT));
	CHECK_EQ(2048, v);
	real_within_cap();
	/* Back down: the charge follows. */
	CU(cuCtxSetLimit(CU_LIMIT_MALLOC_HEAP_SIZE, 8 * MiB));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	still_allocates(CAP - 64 * MiB);
}

/* ---- Modules and libraries ------------------------------------------------------------ */

static void test_module_eager(void)
{
	fresh_region();
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("FAKECUDA_MODULE_LAZY", "0", 1);
	setenv("FAKECUDA_MODULE_GLOBAL_BYTES", "2684354560", 1); /* 2.5 GiB of __device__ globals */
	start_device();
	CUmodule m;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuModuleLoadData(&m, "image"));
	real_within_cap();
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuModuleLoad(&m, "file.cubin"));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuModuleLoadDataEx(&m, "image", 0, NULL, NULL));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuModuleLoadFatBinary(&m, "fatbin"));
	CUlibrary l;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuLibraryLoadData(&l, "image", NULL, NULL, 0, NULL, NULL, 0));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY,
	         cuLibraryLoadFromFile(&l, "lib.cubin", NULL, NULL, 0, NULL, NULL, 0));
	real_within_cap();
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	still_allocates(CAP - 64 * MiB);
}

/* A module loaded lazily places its globals at its first launch, and a
 * launch grows the stack: no call gpucap names. The reconciler charges it
 * within two periods; then what does not fit is refused. */
/* GPUCAP_RECONCILE_MS sets the reconciler's period: at 500 ms, memory
 * taken through no API is not seen after 200 ms, and is after 600 ms. */
static void test_reconcile_period(void)
{
	fresh_region();
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("GPUCAP_RECONCILE_MS", "500", 1);
	start_device();
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, MiB)); /* the thread starts with the first context */
	fakeclock_sleep(600 * 1000000ull);
	uint64_t before = mine().kind[GPUCAP_KIND_DRIVER];
	fakecuda_hidden_take(0, GiB);
	fakeclock_sleep(200 * 1000000ull);
	CHECK_EQ(before, mine().kind[GPUCAP_KIND_DRIVER]);
	fakeclock_sleep(400 * 1000000ull);
	CHECK_EQ(before + GiB, mine().kind[GPUCAP_KIND_DRIVER]);
	CU(cuMemFree_v2(p));
}

static void test_reconciled(void)
{
	fresh_region();
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("FAKECUDA_MODULE_GLOBAL_BYTES", "1610612736", 1); /* 1.5 GiB */
	start_device();
	CUmodule m;
	CU(cuModuleLoadData(&m, "image"));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	CUfunction f;
	CU(cuModuleGetFunction(&f, m, "kernel"));
	CU(cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
	periods(2);
	CHECK_EQ(3 * GiB / 2, mine().kind[GPUCAP_KIND_DRIVER]);
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 768 * MiB));
	real_within_cap();
	still_allocates(256 * MiB);
	/* Memory taken through no API at all, past the cap, in a process
	 * that no longer launches: the reconciler then asks once a second, so
	 * not yet after two periods, and within a second nothing more is
	 * admitted. Real usage exceeds the cap by no more than that one call. */
	fakecuda_hidden_take(0, GiB);
	periods(2);
	CHECK_EQ(3 * GiB / 2, mine().kind[GPUCAP_KIND_DRIVER]);
	periods(9);
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
	CHECK(fakecuda_process_used(0) <= CAP + GiB);
	CHECK(charges_of(getpid()).device_charged >= CAP - 4 * MiB);
	/* Given back (the module unloaded): room again after reconciliation,
	 * within a second in a process that does not launch. */
	CU(cuModuleUnload(m));
	periods(11);
	CHECK_EQ(GiB, mine().kind[GPUCAP_KIND_DRIVER]);
	still_allocates(768 * MiB);
}

/* The driver grows the stack at a launch whose kernels need more, and never
 * shrinks it: caught by reconciliation. */
static void test_stack_growth(void)
{
	fresh_region();
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
	setenv("FAKECUDA_LAUNCH_STACK_BYTES", "2048", 1); /* 1 KiB more per thread: 264 MiB */
	start_device();
	CU(cuLaunchKernel((CUfunction)1, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
	periods(2);
	CHECK_EQ(1024 * 132 * 2048, mine().kind[GPUCAP_KIND_DRIVER]);
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, CAP - 200 * MiB));
	still_allocates(CAP - 300 * MiB);
}

/* ---- Graph memory ------------------------------------------------------------------------ */

static CUgraph graph_with_allocs(uint64_t each, int nodes)
{
	CUgraph g;
	CU(cuGraphCreate(&g, 0));
	for (int i = 0; i < nodes; i++) {
		CUDA_MEM_ALLOC_NODE_PARAMS params;
		memset(&params, 0, sizeof(params));
		params.poolProps.allocType = CU_MEM_ALLOCATION_TYPE_PINNED;
		params.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		params.poolProps.location.id = 0;
		params.bytesize = each;
		CUgraphNode node;
		CU(cuGraphAddMemAllocNode(&node, g, NULL, 0, &params));
	}
	return g;
}

/* A stream-ordered allocation inside a capture makes an allocation node:
 * the driver takes no memory for it then and never refuses it for want of
 * memory, so neither does gpucap (PyTorch's cudaMallocAsync backend aborted
 * on such a refusal), and nothing is charged. The graph's memory is charged
 * when the graph pool takes it (test_graph_memory). */
static void test_captured_alloc(void)
{
	start_on_fresh_region();
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	CU(cuStreamBeginCapture_v2(s, CU_STREAM_CAPTURE_MODE_GLOBAL));
	CUdeviceptr node, pooled;
	CU(cuMemAllocAsync(&node, 3 * GiB, s));
	CUmemoryPool pool;
	CU(cuDeviceGetMemPool(&pool, 0));
	CU(cuMemAllocFromPoolAsync(&pooled, 3 * GiB, pool, s));
	CHECK_EQ(0, mine().device_charged);
	CU(cuMemFreeAsync(node, s));
	CU(cuMemFreeAsync(pooled, s));
	CUgraph graph;
	CU(cuStreamEndCapture(s, &graph)); /* fails if the capture was invalidated */
	CHECK_EQ(0, mine().device_charged);
	/* Outside a capture the cap holds as before. */
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAllocAsync(&p, 3 * GiB, s));
	still_allocates(CAP - 64 * MiB);
	/* The graph's first launch would take its 3 GiB: refused before the
	 * driver sees it, and the process goes on under the cap. */
	CUgraphExec exec;
	CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuGraphLaunch(exec, s));
	CHECK_EQ(0, fakecuda_graph_pool_reserved(0));
	real_within_cap();
	still_allocates(CAP - 64 * MiB);
	CU(cuGraphExecDestroy(exec));
	CU(cuGraphDestroy(graph));
	CU(cuStreamDestroy_v2(s));
}

static void test_graph_memory(void)
{
	start_on_fresh_region();
	/* A node that declares more than the room is refused at once. */
	CUgraph big;
	CU(cuGraphCreate(&big, 0));
	CUDA_MEM_ALLOC_NODE_PARAMS params;
	memset(&params, 0, sizeof(params));
	params.poolProps.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
	params.bytesize = 3 * GiB;
	CUgraphNode node;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuGraphAddMemAllocNode(&node, big, NULL, 0, &params));
	/* The same node through the generic forms (CUDA 12.2's and 12.3's),
	 * directly and as the CUDA runtime finds them. */
	CUgraphNodeParams generic;
	memset(&generic, 0, sizeof(generic));
	generic.type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
	generic.alloc = params;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuGraphAddNode(&node, big, NULL, 0, &generic));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuGraphAddNode_v2(&node, big, NULL, NULL, 0, &generic));
	void *add_node = NULL;
	CUdriverProcAddressQueryResult add_found;
	CU(cuGetProcAddress_v2("cuGraphAddNode", &add_node, 13000, CU_GET_PROC_ADDRESS_DEFAULT, &add_found));
	CUresult (*add_node_v2)(CUgraphNode *, CUgraph, const CUgraphNode *, const CUgraphEdgeData *, size_t,
	                        CUgraphNodeParams *) =
	    (CUresult(*)(CUgraphNode *, CUgraph, const CUgraphNode *, const CUgraphEdgeData *, size_t,
	                 CUgraphNodeParams *))add_node;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, add_node_v2(&node, big, NULL, NULL, 0, &generic));
	/* One that fits is the driver's: it adds the node. */
	generic.alloc.bytesize = 512 * MiB;
	CU(cuGraphAddNode_v2(&node, big, NULL, NULL, 0, &generic));
	CHECK(generic.alloc.dptr != 0);
	/* Upload reserves the graph pool: charged right after the call. */
	CUgraph g = graph_with_allocs(768 * MiB, 2);
	CUgraphExec e;
	CU(cuGraphInstantiateWithFlags(&e, g, 0));
	CU(cuGraphUpload(e, NULL));
	CHECK_EQ(1536 * MiB, mine().kind[GPUCAP_KIND_DRIVER]);
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 768 * MiB));
	real_within_cap();
	/* Trimmed: given back at once. */
	CU(cuDeviceGraphMemTrim(0));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	still_allocates(CAP - 64 * MiB);
	/* Each node fits, the graph does not: the upload is refused. */
	CUgraph g2 = graph_with_allocs(1280 * MiB, 2);
	CUgraphExec e2;
	CUDA_GRAPH_INSTANTIATE_PARAMS ip;
	memset(&ip, 0, sizeof(ip));
	CU(cuGraphInstantiateWithParams(&e2, g2, &ip));
	/* Through the per-thread-stream entry the CUDA runtime looks up (a
	 * program built with per-thread default streams, PyTorch's graphs). */
	void *fn = NULL;
	CUdriverProcAddressQueryResult found;
	CU(cuGetProcAddress_v2("cuGraphUpload", &fn, 13000, CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM,
	                       &found));
	CUresult (*upload_ptsz)(CUgraphExec, CUstream) = (CUresult(*)(CUgraphExec, CUstream))fn;
	/* Refused before the driver sees it: the pool takes nothing. */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, upload_ptsz(e2, NULL));
	CHECK_EQ(0, fakecuda_graph_pool_reserved(0));
	real_within_cap();
	still_allocates(CAP - 64 * MiB);
	/* A first launch (no upload) is charged before the call, as the driver
	 * reports the pool right after it. */
	CUgraph g3 = graph_with_allocs(GiB, 1);
	CUgraphExec e3;
	CU(cuGraphInstantiateWithFlags(&e3, g3, 0));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	CU(cuGraphLaunch(e3, NULL));
	CHECK_EQ(GiB, mine().kind[GPUCAP_KIND_DRIVER]);
	CU(cuStreamSynchronize(NULL));
	/* Its replays take nothing new: the pool holds the memory. */
	CU(cuGraphLaunch(e3, NULL));
	CU(cuGraphLaunch(e3, NULL));
	CHECK_EQ(GiB, mine().kind[GPUCAP_KIND_DRIVER]);
	/* A graph that fitted when it was made, but whose memory the pool no
	 * longer keeps and the room left cannot hold: its first launch is
	 * refused, and it runs once there is room. */
	CU(cuDeviceGraphMemTrim(0));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	CUgraph g4 = graph_with_allocs(GiB, 1);
	CUgraphExec e4;
	CU(cuGraphInstantiateWithFlags(&e4, g4, 0));
	CUdeviceptr held;
	CU(cuMemAlloc_v2(&held, 1536 * MiB));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuGraphLaunch(e4, NULL));
	CHECK_EQ(0, fakecuda_graph_pool_reserved(0));
	real_within_cap();
	CU(cuMemFree_v2(held));
	CU(cuGraphLaunch(e4, NULL));
	CHECK_EQ(GiB, mine().kind[GPUCAP_KIND_DRIVER]);
	real_within_cap();
	CU(cuGraphExecDestroy(e4));
	CU(cuGraphDestroy(g4));
	periods(2);
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 1100 * MiB));
	CU(cuDeviceGraphMemTrim(0));
	CHECK_EQ(0, mine().kind[GPUCAP_KIND_DRIVER]);
	CU(cuGraphExecDestroy(e3));
	CU(cuGraphDestroy(g3));
	CU(cuGraphExecDestroy(e));
	CU(cuGraphExecDestroy(e2));
	CU(cuGraphDestroy(g));
	CU(cuGraphDestroy(g2));
	CU(cuGraphDestroy(big));
}

/* ---- Pools ------------------------------------------------------------------------------- */

/* A pool that keeps everything (release threshold UINT64_MAX): 64 rounds of
 * 256 MiB never hold more than the cap, and what the pool keeps is held
 * against plain allocations. */
static void test_pool_threshold(void)
{
	start_on_fresh_region();
	CUmemoryPool pool;
	CU(cuDeviceGetMemPool(&pool, 0));
	cuuint64_t keep_all = UINT64_MAX;
	CU(cuMemPoolSetAttribute(pool, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, &keep_all));
	for (int round = 0; round < 64; round++) {
		CUdeviceptr p[7];
		int n = round % 7 + 1;
		for (int i = 0; i < n; i++)
			CU(cuMemAllocAsync(&p[i], 256 * MiB, NULL));
		for (int i = 0; i < n; i++)
			CU(cuMemFreeAsync(p[i], NULL));
		CU(cuStreamSynchronize(NULL));
		real_within_cap();
	}
	/* The pool keeps 7 x 256 MiB: reused without a second charge, and held
	 * against a plain allocation. */
	CUdeviceptr q;
	CU(cuMemAllocAsync(&q, 1792 * MiB, NULL));
	real_within_cap();
	CU(cuMemFreeAsync(q, NULL));
	CU(cuStreamSynchronize(NULL));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&q, 512 * MiB));
	real_within_cap();
	CU(cuMemPoolTrimTo(pool, 0));
	still_allocates(CAP - 64 * MiB);
}

/* ---- No NVML on the allocation path ------------------------------------------------------- */

static void test_hot_path(void)
{
	start_on_fresh_region();
	uint64_t before = fakenvml_stat("process_queries");
	uint64_t t0 = fakeclock_now();
	for (int i = 0; i < 10000; i++) {
		CUdeviceptr p;
		CU(cuMemAlloc_v2(&p, MiB));
		CU(cuMemFree_v2(p));
		CU(cuMemAllocAsync(&p, MiB, NULL));
		CU(cuMemFreeAsync(p, NULL));
		/* Refusals do not ask either. */
		CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, 3 * GiB));
	}
	/* The fake driver's stream-ordered calls take simulated time, so the
	 * reconciler may take a step or two meanwhile; a query on the path
	 * itself would show as 10,000 or more. At most one per period passed. */
	uint64_t periods_passed = (fakeclock_now() - t0) / PERIOD;
	CHECK(periods_passed < 1000); /* else the bound below could not tell */
	CHECK(fakenvml_stat("process_queries") - before <= periods_passed + 1);
	/* The reconciler asks once per period while launches come... */
	before = fakenvml_stat("process_queries");
	for (int i = 0; i < 5; i++) {
		CU(cuLaunchKernel((CUfunction)1, 1, 1, 1, 1, 1, 1, 0, NULL, NULL, NULL));
		periods(1);
	}
	CHECK(fakenvml_stat("process_queries") >= before + 5);
	/* ...and once a second without them (the last launch is owed two
	 * more periods): at most 2 + 3 + 1 in 3 s, against 30. */
	before = fakenvml_stat("process_queries");
	periods(30);
	uint64_t quiet = fakenvml_stat("process_queries") - before;
	CHECK(quiet >= 3 && quiet <= 6);
}

static const struct {
	const char *name;
	void (*fn)(void);
} cases[] = {
    {"ctx-v4", test_ctx_v4},
    {"context-measured", test_context_measured},
    {"context-unlisted", test_context_unlisted},
    {"context-refusal", test_context_refusal},
    {"context-late-primary", test_context_late_primary},
    {"context-late-created", test_context_late_created},
    {"context-beside-allocation", test_context_beside_allocation},
    {"race-fill", test_race_fill},
    {"race-fill-late", test_race_fill_late},
    {"start-many", test_start_many},
    {"context-hint", test_context_hint},
    {"context-hint-measured", test_context_hint_measured},
    {"context-peer", test_context_peer},
    {"set-limit", test_set_limit},
    {"module-eager", test_module_eager},
    {"reconciled", test_reconciled},
    {"reconcile-period", test_reconcile_period},
    {"stack-growth", test_stack_growth},
    {"graph-memory", test_graph_memory},
    {"pool-threshold", test_pool_threshold},
    {"hot-path", test_hot_path},
    {"context-creating", test_context_creating},
    {"context-adopted", test_context_adopted},
    {"data-beside-estimate", test_data_beside_estimate},
    {"data-beside-measured", test_data_beside_measured},
    {"captured-alloc", test_captured_alloc},
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CASE\n", argv[0]);
		return 2;
	}
	ssize_t len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	CHECK(len > 0);
	self_path[len] = '\0';
	const char *inherited = getenv("GPUCAP_REGION");
	if (inherited)
		snprintf(region_path, sizeof(region_path), "%s", inherited);
	/* This thread counts as running on the simulated clock from here on:
	 * time moves only while it waits (periods()). */
	(void)fakeclock_now();
	if (strcmp(argv[1], "child-context-charge") == 0)
		return child_context_charge();
	if (strcmp(argv[1], "child-fill") == 0 && argc == 4)
		return child_fill(atoi(argv[2]), atoi(argv[3]));
	if (strcmp(argv[1], "child-start") == 0 && argc == 4)
		return child_start(atoi(argv[2]), atoi(argv[3]));
	if (strcmp(argv[1], "child-creating") == 0 && argc == 4)
		return child_creating(argv[2], atoi(argv[3]));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].fn();
			return 0;
		}
	}
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
