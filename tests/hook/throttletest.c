/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compute-cap tests: libgpucap.so preloaded over the fake driver, whose
 * kernels "run" on a simulated clock (a kernel's CUfunction is its length
 * in microseconds). Each subcommand is one CTest test and sets its own
 * environment before the first driver call.
 *
 * They prove the plumbing, not the precision: with no cap no event is ever
 * recorded and no launch waits; with a cap the gate drains, charges the
 * region's virtual clock and holds the fake GPU well below full use; capture
 * is never disturbed; policies, per-device variables, live changes, every
 * launch entry point and every lookup route reach the gate. Busy fractions
 * are checked loosely (a 30% cap must stay clearly under 60%).
 *
 * Every duration here is simulated time (GPUCAP_TEST_CLOCK=simulated, see
 * tests/fakedriver/fake_clock.h): the fake GPU, gpucap's gate and threads
 * and this program all run on the fake driver's clock, which moves only
 * while every thread waits. So the figures do not depend on how loaded the
 * machine is; a thread that blocks outside the clock (a join) says so.
 */
#define _GNU_SOURCE
#include "check.h"
#include "cuda_api.h"
#include "fake_clock.h"
#include "gpucap/region.h"
#include "hook_scratch.h"
#include "layout.h"
#include "self_exec.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define DEV_A "GPU-00000000-0000-0000-0000-0000000000a0"
#define DEV_B "GPU-00000000-0000-0000-0000-0000000000b1"
#define MS    UINT64_C(1000000)

static char region_dir[128];
static char region_path[192];
static char self_path[4096];

static void fresh_region(void)
{
	hook_scratch_region("throttletest", "THROTTLETEST_KEEP", region_dir, sizeof(region_dir), region_path,
	                    sizeof(region_path));
	setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
}

/* Simulated time: the fake driver's clock. */
static uint64_t now_ns(void)
{
	return fakeclock_now();
}

static void sleep_ms(unsigned ms)
{
	fakeclock_sleep((uint64_t)ms * MS);
}

/* Wait for a thread, outside the simulated clock. */
static void join(pthread_t thread)
{
	fakeclock_idle_begin();
	pthread_join(thread, NULL);
	fakeclock_idle_end();
}

/* Wait for a child process, outside the simulated clock. */
static pid_t wait_child(pid_t pid, int *status)
{
	fakeclock_idle_begin();
	pid_t got = waitpid(pid, status, 0);
	fakeclock_idle_end();
	return got;
}

static CUcontext start_device(int ordinal)
{
	CU(cuInit(0));
	CUcontext ctx;
	CU(cuDevicePrimaryCtxRetain(&ctx, ordinal));
	CU(cuCtxSetCurrent(ctx));
	return ctx;
}

static CUfunction kernel(uint64_t us)
{
	return (CUfunction)(uintptr_t)us;
}

/* ---- Launch paths -------------------------------------------------------------- */

enum path { P_KERNEL, P_KERNEL_PTSZ, P_EX, P_EX_PTSZ, P_COOP, P_COOP_PTSZ, P_GRAPH, P_GRAPH_PTSZ, P_COUNT };

static const char *const path_names[P_COUNT] = {
    "cuLaunchKernel",        "cuLaunchKernel_ptsz",       "cuLaunchKernelEx",
    "cuLaunchKernelEx_ptsz", "cuLaunchCooperativeKernel", "cuLaunchCooperativeKernel_ptsz",
    "cuGraphLaunch",         "cuGraphLaunch_ptsz",
};
/* cuGetProcAddress: base name, version, flags. */
static const char *const path_bases[P_COUNT] = {
    "cuLaunchKernel",
    "cuLaunchKernel",
    "cuLaunchKernelEx",
    "cuLaunchKernelEx",
    "cuLaunchCooperativeKernel",
    "cuLaunchCooperativeKernel",
    "cuGraphLaunch",
    "cuGraphLaunch",
};

static void *exported(enum path p)
{
	void *const fns[P_COUNT] = {
	    (void *)cuLaunchKernel,
	    (void *)cuLaunchKernel_ptsz,
	    (void *)cuLaunchKernelEx,
	    (void *)cuLaunchKernelEx_ptsz,
	    (void *)cuLaunchCooperativeKernel,
	    (void *)cuLaunchCooperativeKernel_ptsz,
	    (void *)cuGraphLaunch,
	    (void *)cuGraphLaunch_ptsz,
	};
	return fns[p];
}

static CUgraphExec graph_of(uint64_t us)
{
	static CUgraphExec cache[4];
	static uint64_t cache_us[4];
	for (int i = 0; i < 4; i++)
		if (cache[i] && cache_us[i] == us)
			return cache[i];
	for (int i = 0; i < 4; i++) {
		if (!cache[i]) {
			cache[i] = fakecuda_graph_exec(us);
			cache_us[i] = us;
			return cache[i];
		}
	}
	return fakecuda_graph_exec(us);
}

/* Launch us of work through fn, which has the type of path p. */
static CUresult launch_through(enum path p, void *fn, uint64_t us, CUstream s)
{
	CUlaunchConfig config;
	memset(&config, 0, sizeof(config));
	config.gridDimX = config.gridDimY = config.gridDimZ = 1;
	config.blockDimX = config.blockDimY = config.blockDimZ = 1;
	config.hStream = s;
	switch (p) {
	case P_KERNEL:
	case P_KERNEL_PTSZ: {
		CUresult (*f)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
		              unsigned, CUstream, void **, void **);
		*(void **)&f = fn;
		return f(kernel(us), 1, 1, 1, 1, 1, 1, 0, s, NULL, NULL);
	}
	case P_EX:
	case P_EX_PTSZ: {
		CUresult (*f)(const CUlaunchConfig *, CUfunction, void **, void **);
		*(void **)&f = fn;
		return f(&config, kernel(us), NULL, NULL);
	}
	case P_COOP:
	case P_COOP_PTSZ: {
		CUresult (*f)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
		              unsigned, CUstream, void **);
		*(void **)&f = fn;
		return f(kernel(us), 1, 1, 1, 1, 1, 1, 0, s, NULL);
	}
	default: {
		CUresult (*f)(CUgraphExec, CUstream);
		*(void **)&f = fn;
		return f(graph_of(us), s);
	}
	}
}

static CUresult launch(enum path p, uint64_t us, CUstream s)
{
	return launch_through(p, exported(p), us, s);
}

struct run {
	double busy_fraction; /* of the fake device, over the run */
	uint64_t longest_launch_ns;
	unsigned launches;
};

/* Launch us-long kernels through p for seconds. */
static struct run run_for(int ordinal, enum path p, CUstream s, uint64_t us, double seconds)
{
	struct run r = {0, 0, 0};
	uint64_t b0 = fakecuda_busy_ns(ordinal), t0 = now_ns();
	uint64_t end = t0 + (uint64_t)(seconds * 1e9);
	for (;;) {
		uint64_t before = now_ns();
		if (before >= end)
			break;
		CU(launch(p, us, s));
		uint64_t took = now_ns() - before;
		if (took > r.longest_launch_ns)
			r.longest_launch_ns = took;
		r.launches++;
	}
	uint64_t b1 = fakecuda_busy_ns(ordinal), t1 = now_ns();
	r.busy_fraction = (double)(b1 - b0) / (double)(t1 - t0);
	return r;
}

/* ---- The region, as a tool sees it -------------------------------------------------- */

static gpucap_region *observer(void)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	o.observer = true;
	gpucap_region *r = NULL;
	CHECK(gpucap_region_attach(&o, &r, NULL, 0) == GPUCAP_OK);
	return r;
}

static gpucap_region *admin(void)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	gpucap_region *r = NULL;
	CHECK(gpucap_region_attach(&o, &r, NULL, 0) == GPUCAP_OK);
	return r;
}

/* The SM state of a device by UUID; false when it is not in the region. */
static bool sm_state(const char *uuid, struct gpucap_sm_state *st)
{
	gpucap_region *r = observer();
	int d = gpucap_region_device_find(r, uuid);
	bool found = d >= 0 && gpucap_region_sm_read(r, d, now_ns(), st);
	gpucap_region_detach(r);
	return found;
}

static struct gpucap_device_view device_view(const char *uuid)
{
	gpucap_region *r = observer();
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	struct gpucap_device_view v;
	memset(&v, 0, sizeof(v));
	bool found = false;
	for (uint32_t i = 0; i < s->device_count; i++) {
		if (strcmp(s->devices[i].uuid, uuid) == 0) {
			v = s->devices[i];
			found = true;
		}
	}
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
	CHECK(found);
	return v;
}

static void set_sm_limit(const char *uuid, uint32_t percent)
{
	gpucap_region *r = admin();
	int d = gpucap_region_device_find(r, uuid);
	CHECK(d >= 0);
	CHECK_EQ(GPUCAP_OK, gpucap_region_set_sm_limit(r, d, percent));
	gpucap_region_detach(r);
}

/* Run this program with args in a child (tests/support/self_exec.h). */
static int run_self(char *err, size_t err_len, const char *const *env, const char *const *args)
{
	int pipefd[2];
	CHECK(pipe(pipefd) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		close(pipefd[0]);
		dup2(pipefd[1], STDERR_FILENO);
		self_exec(self_path, env, args);
	}
	close(pipefd[1]);
	size_t used = 0;
	char buf[512];
	ssize_t got;
	while ((got = read(pipefd[0], buf, sizeof(buf))) > 0) {
		if (used + (size_t)got < err_len) {
			memcpy(err + used, buf, (size_t)got);
			used += (size_t)got;
		}
	}
	err[used] = '\0';
	close(pipefd[0]);
	int status;
	CHECK(wait_child(pid, &status) == pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static unsigned count_lines(const char *text)
{
	unsigned n = 0;
	for (const char *p = text; *p; p++)
		n += *p == '\n';
	return n;
}

/* ---- No cap: no event, no wait ------------------------------------------------------- */

/* args: the CUDA_DEVICE_SM_LIMIT to set ("" for none). */
static void test_uncapped(const char *limit)
{
	fresh_region();
	if (limit && *limit)
		setenv("CUDA_DEVICE_SM_LIMIT", limit, 1);
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	uint64_t longest = 0;
	for (int p = 0; p < P_COUNT; p++) {
		struct run r = run_for(0, (enum path)p, p % 2 ? NULL : s, 0, 0.05);
		longest = r.longest_launch_ns > longest ? r.longest_launch_ns : longest;
	}
	/* Long launches with no cap: the fake GPU is kept full. */
	struct run busy = run_for(0, P_KERNEL, s, 1000, 0.5);
	fprintf(stderr, "uncapped (%s): busy %.2f, longest launch %.3f ms\n",
	        limit && *limit ? limit : "unset", busy.busy_fraction, (double)longest / 1e6);
	CHECK_EQ(0, fakecuda_stat("event_records"));
	CHECK(longest < 50 * MS);
	CHECK(busy.busy_fraction > 0.9);
	struct gpucap_sm_state st;
	CHECK(sm_state(DEV_A, &st));
	CHECK_EQ(0, st.tat_ns);
	CHECK_EQ(0, st.busy_ns);
	CHECK_EQ(100, st.sm_limit);
	CU(cuStreamDestroy_v2(s));
}

/* ---- A cap: drains, charges, holds ------------------------------------------------------ */

static void test_capped(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "30", 1);
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1); /* open loop: duty = cap */
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	run_for(0, P_KERNEL, s, 1000, 0.3); /* the budget settles */
	struct run r = run_for(0, P_KERNEL, s, 1000, 1.2);
	fprintf(stderr, "capped at 30%%: busy %.2f over %u launches\n", r.busy_fraction, r.launches);
	CHECK(r.busy_fraction < 0.6);
	CHECK(r.busy_fraction > 0.05);
	CHECK(fakecuda_stat("event_records") > 0);
	struct gpucap_sm_state st;
	CHECK(sm_state(DEV_A, &st));
	CHECK(st.tat_ns > 0);
	CHECK(st.busy_ns > 0);
	CHECK_EQ(30, st.sm_limit);
	/* The controller ran open loop and said so in the region. */
	CHECK(st.flags & GPUCAP_SM_FLAG_OPEN_LOOP);
	CHECK_EQ(GPUCAP_SM_SOURCE_GATE, st.share_source);
	CHECK_EQ(300000, st.duty_ppm);
	struct gpucap_device_view v = device_view(DEV_A);
	CHECK_EQ(300000, v.sm_duty_ppm);
	CHECK(v.sm_share_known);
	CU(cuStreamDestroy_v2(s));
}

/* ---- Capture is never disturbed ----------------------------------------------------------- */

static void test_capture(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "30", 1);
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1);
	start_device(0);
	CUstream a, b;
	CU(cuStreamCreate(&a, 0));
	CU(cuStreamCreate(&b, 0));
	/* The legacy stream and stream a join the current phase, then a starts
	 * capturing: the drain must skip both (the legacy stream would break a
	 * global-mode capture, an event on a would enter the user's graph). */
	CU(launch(P_KERNEL, 100, NULL));
	CU(launch(P_KERNEL, 100, a));
	CU(cuStreamBeginCapture_v2(a, CU_STREAM_CAPTURE_MODE_GLOBAL));
	uint64_t longest_capture = 0, waited = 0;
	uint64_t records = fakecuda_stat("event_records");
	for (int i = 0; i < 300; i++) {
		uint64_t t = now_ns();
		CU(launch((enum path)(i % 6), 200, a)); /* captured, not run */
		uint64_t took = now_ns() - t;
		longest_capture = took > longest_capture ? took : longest_capture;
		t = now_ns();
		CU(launch(P_KERNEL, 1000, b));
		waited += now_ns() - t;
	}
	CUgraph graph;
	CU(cuStreamEndCapture(a, &graph)); /* fails if the capture was invalidated */
	CUgraphExec exec;
	CU(cuGraphInstantiateWithFlags(&exec, graph, 0));
	for (int i = 0; i < 5; i++)
		CU(cuGraphLaunch(exec, b));
	fprintf(stderr, "capture: longest captured launch %.3f ms; launches on b waited %.0f ms in all\n",
	        (double)longest_capture / 1e6, (double)waited / 1e6);
	CHECK_EQ(0, fakecuda_stat("capture_violations"));
	CHECK(fakecuda_stat("event_records") > records);
	CHECK(longest_capture < 20 * MS); /* a capture never waits for a drain */
	CHECK(waited > 100 * MS);         /* while b was throttled */
	CU(cuGraphExecDestroy(exec));
	CU(cuGraphDestroy(graph));
	CU(cuStreamSynchronize(b));
	CU(cuStreamDestroy_v2(a));
	CU(cuStreamDestroy_v2(b));
}

/* ---- A corrupt clock in the file ------------------------------------------------------------ */

static void test_corrupt_tat(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "30", 1);
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1);
	start_device(0);
	CU(launch(P_KERNEL, 100, NULL));
	sleep_ms(200); /* the controller closes the idle phase */
	gpucap_region *r = observer();
	int d = gpucap_region_device_find(r, DEV_A);
	CHECK(d >= 0);
	gpucap_region_detach(r);

	int fd = open(region_path, O_RDWR);
	CHECK(fd >= 0);
	struct stat st;
	CHECK(fstat(fd, &st) == 0);
	void *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	CHECK(map != MAP_FAILED);
	const struct region_header *h = map;
	struct device_entry *entry = (struct device_entry *)((char *)map + h->devices_offset +
	                                                     (uint64_t)d * sizeof(struct device_entry));
	atomic_store(&entry->sm_tat_ns, UINT64_MAX - 1000);

	uint64_t t = now_ns();
	CU(launch(P_KERNEL, 100, NULL));
	uint64_t first = now_ns() - t;
	uint64_t repaired = atomic_load(&entry->sm_tat_ns);
	fprintf(stderr, "corrupt clock: the first launch waited %.0f ms\n", (double)first / 1e6);
	CHECK(first < 1500 * MS);
	CHECK(repaired <= now_ns() + GPUCAP_SM_MAX_DEBT_NS);
	munmap(map, (size_t)st.st_size);
}

/* ---- Policies ---------------------------------------------------------------------------------- */

static void test_policy_disable(void)
{
	fresh_region();
	char err[4096];
	const char *args[] = {"child-workload", "0.4", NULL};
	/* disable: no throttle, one warning. */
	const char *disable[] = {"CUDA_DEVICE_SM_LIMIT=30", "GPU_CORE_UTILIZATION_POLICY=disable", NULL};
	CHECK_EQ(0, run_self(err, sizeof(err), disable, args));
	fprintf(stderr, "disable said: %s", err);
	CHECK(strstr(err, "SM caps are disabled by policy") != NULL);
	CHECK(strstr(err, "events 0 ") != NULL);
	CHECK_EQ(2, count_lines(err)); /* the warning and the child's report */
	/* gpucap's own name wins over HAMi-core's. Each child on a region of
	 * its own: a child's simulated clock starts at the real one, so the
	 * virtual clock an earlier child left ahead in the region (its clock ran
	 * ahead of the real one) would hold the next one's first launch. */
	const char *strict[] = {"CUDA_DEVICE_SM_LIMIT=30", "GPU_CORE_UTILIZATION_POLICY=disable",
	                        "GPUCAP_SM_POLICY=strict", "FAKENVML_PROCESS_UTIL=unsupported", NULL};
	CHECK(unlink(region_path) == 0);
	CHECK_EQ(0, run_self(err, sizeof(err), strict, args));
	fprintf(stderr, "strict said: %s", err);
	CHECK(strstr(err, "events 0 ") == NULL);
	CHECK(strstr(err, "throttled") != NULL);
	/* force is strict, as in HAMi-core. */
	const char *force[] = {"CUDA_DEVICE_SM_LIMIT=30", "GPU_CORE_UTILIZATION_POLICY=force",
	                       "FAKENVML_PROCESS_UTIL=unsupported", NULL};
	CHECK(unlink(region_path) == 0);
	CHECK_EQ(0, run_self(err, sizeof(err), force, args));
	fprintf(stderr, "force said: %s", err);
	CHECK(strstr(err, "throttled") != NULL);
}

/* Child: launch 1 ms kernels for argv seconds; print what happened. */
static int child_workload(double seconds)
{
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	struct run r = run_for(0, P_KERNEL, s, 1000, seconds);
	uint64_t events = fakecuda_stat("event_records");
	fprintf(stderr, "events %llu busy %.2f launches %llu longest %llu us %s\n",
	        (unsigned long long)events, r.busy_fraction, (unsigned long long)r.launches,
	        (unsigned long long)(r.longest_launch_ns / 1000),
	        events > 0 && r.busy_fraction < 0.6 ? "throttled" : "free");
	return 0;
}

static bool wait_duty(const char *uuid, bool full, unsigned timeout_ms)
{
	uint64_t give_up = now_ns() + (uint64_t)timeout_ms * MS;
	while (now_ns() < give_up) {
		struct gpucap_sm_state st;
		if (sm_state(uuid, &st) && (st.duty_ppm == GPUCAP_SM_PPM) == full && st.duty_ppm != 0)
			return true;
		sleep_ms(50);
	}
	return false;
}

static void test_elastic(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "30", 1);
	setenv("GPUCAP_SM_POLICY", "elastic", 1);
	setenv("FAKENVML_PROCESS_UTIL", "self:30", 1); /* only this process uses the GPU */
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	CU(launch(P_KERNEL, 100, s)); /* starts the controller */
	CHECK(wait_duty(DEV_A, true, 3000));
	struct gpucap_sm_state st;
	CHECK(sm_state(DEV_A, &st));
	CHECK(st.flags & GPUCAP_SM_FLAG_ELASTIC_OPEN);
	sleep_ms(300); /* the armed flag follows within a tick */
	CU(cuStreamSynchronize(s));
	uint64_t records = fakecuda_stat("event_records");
	struct run open = run_for(0, P_KERNEL, s, 1000, 0.4);
	fprintf(stderr, "elastic, alone: busy %.2f\n", open.busy_fraction);
	CHECK(open.busy_fraction > 0.8);
	CHECK_EQ(records, fakecuda_stat("event_records"));

	/* Another tenant appears: back to the cap. */
	fakenvml_set_process_util(424242, 60);
	CHECK(wait_duty(DEV_A, false, 2000));
	CU(cuStreamSynchronize(s));
	sleep_ms(300);
	struct run closed = run_for(0, P_KERNEL, s, 1000, 0.5);
	fprintf(stderr, "elastic, shared: busy %.2f\n", closed.busy_fraction);
	CHECK(fakecuda_stat("event_records") > records);
	CHECK(closed.busy_fraction < 0.8);
}

/* ---- The work weight: a cap is a share of full-load work ------------------------------ */

/*
 * The fake device runs kernels 1.5x faster unless it is kept busy (like a
 * GPU at its power limit). At a cap of 40%, 1 ms kernels: full load does
 * 1000 kernels/s, so the cap is 400/s. Holding the time share at 40% would
 * give 600/s; with calibration the controller measures the weight (1.5) and
 * aims the time share at 40 / 1.5.
 */
static void test_weight(const char *mode)
{
	bool calibrate = strcmp(mode, "off") != 0;
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "40", 1);
	setenv("FAKECUDA_BOOST_PERMILLE", "1500", 1);
	setenv("FAKENVML_PROCESS_UTIL", "self:busy", 1);
	setenv("GPUCAP_SM_CALIBRATE", calibrate ? "on" : "off", 1);
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	/* First burst after 2.5 s of work: a 1.5 s hold, a 1 s burst, then
	 * 50 ms for its last phases to drain. */
	run_for(0, P_KERNEL, s, 1000, 6.0);
	struct gpucap_sm_state st;
	CHECK(sm_state(DEV_A, &st));
	fprintf(stderr, "work weight %.3f, duty %.3f\n", st.weight_ppm / 1e6, st.duty_ppm / 1e6);
	if (calibrate) {
		CHECK(st.weight_ppm >= 1300000 && st.weight_ppm <= 1600000);
	} else {
		CHECK_EQ(0, st.weight_ppm);
	}
	CU(cuStreamSynchronize(s));
	struct run r = run_for(0, P_KERNEL, s, 1000, 2.0);
	CU(cuStreamSynchronize(s));
	double rate = r.launches / 2.0 / 1000.0; /* share of the full-load rate */
	fprintf(stderr, "calibration %s: %.0f kernels/s = %.1f%% of full load (cap 40%%)\n", mode,
	        rate * 1000.0, rate * 100.0);
	/* Work at the cap (a starved CPU can only lower it), and a time duty
	 * aimed at 40 / 1.5 = 27%; without calibration the duty stays at the
	 * cap and the boost lets through up to 60%. */
	CHECK(sm_state(DEV_A, &st));
	if (calibrate) {
		CHECK(rate > 0.20 && rate < 0.48);
		CHECK(st.duty_ppm < 340000);
	} else {
		CHECK(st.duty_ppm >= 360000);
	}
	CU(cuStreamDestroy_v2(s));
}

/* ---- Work that leaves gaps: the share is delivered ---------------------------------------- */

/* Steps of a program that leaves gaps on the GPU: a 500 us kernel, then
 * 1 ms of host work (simulated) before the next, so that the fake GPU sits
 * idle about half the time even when nothing holds it back. */
struct gappy {
	double steps_per_s;
	double busy_fraction;
};

/* Runs step (which returns the units it did) for seconds of simulated time:
 * units per second, and the fake GPU's busy share. */
static struct gappy timed(CUstream s, double seconds, unsigned (*step)(CUstream))
{
	uint64_t b0 = fakecuda_busy_ns(0), t0 = now_ns();
	uint64_t end = t0 + (uint64_t)(seconds * 1e9);
	unsigned units = 0;
	while (now_ns() < end)
		units += step(s);
	CU(cuStreamSynchronize(s));
	uint64_t b1 = fakecuda_busy_ns(0), t1 = now_ns();
	return (struct gappy){units / ((double)(t1 - t0) / 1e9), (double)(b1 - b0) / (double)(t1 - t0)};
}

/* One 500 us kernel, then host_us of host work: one unit. */
static unsigned kernel_then_host(CUstream s, uint64_t host_us)
{
	CU(launch(P_KERNEL, 500, s));
	fakeclock_sleep(host_us * 1000);
	return 1;
}

static unsigned gappy_step(CUstream s)
{
	return kernel_then_host(s, 1000);
}

/*
 * A cap is a share of the GPU's work, delivered: capped below its native
 * busy share B (about 50% here), the program keeps the GPU busy the cap's
 * share of the time; capped above it, it runs as fast as without a cap.
 * NVML's per-process figure is made to read 10% whatever happens (it says
 * whose kernels ran, not for how long); the device's utilisation is the
 * fake GPU's busy share.
 */
/* On a fresh region: step's figures without a cap; then the cap, the
 * controller's settling, and the capped figures over measure_s. NVML's
 * per-process figure reads process_util (FAKENVML_PROCESS_UTIL). */
struct share_run {
	struct gappy native, capped;
	double ratio, delivered; /* throughput ratio, and ratio x native busy share (%) */
	struct gpucap_sm_state st;
};

/* Device 0 started, NVML's per-process figure reading process_util
 * (FAKENVML_PROCESS_UTIL), calibration bursts off (a share test measures
 * the loop, not the weight): a new stream on it. */
static CUstream uncalibrated_stream(const char *process_util)
{
	setenv("FAKENVML_PROCESS_UTIL", process_util, 1);
	setenv("GPUCAP_SM_CALIBRATE", "off", 1);
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	return s;
}

static struct share_run run_share(unsigned (*step)(CUstream), const char *process_util, unsigned cap,
                                  double measure_s)
{
	struct share_run r;
	CUstream s = uncalibrated_stream(process_util);
	r.native = timed(s, 2.0, step);
	set_sm_limit(DEV_A, cap);
	timed(s, 6.0, step); /* the controller settles */
	r.capped = timed(s, measure_s, step);
	r.ratio = r.capped.steps_per_s / r.native.steps_per_s;
	r.delivered = r.ratio * r.native.busy_fraction * 100.0;
	CHECK(sm_state(DEV_A, &r.st));
	fprintf(
	    stderr,
	    "no cap: %.2f/s, busy %.3f; cap %u%%: %.2f/s (ratio %.3f), busy %.3f, delivered %.1f%%, duty %.3f\n",
	    r.native.steps_per_s, r.native.busy_fraction, cap, r.capped.steps_per_s, r.ratio,
	    r.capped.busy_fraction, r.delivered, r.st.duty_ppm / 1e6);
	CU(cuStreamDestroy_v2(s));
	return r;
}

/* What a cap promises work whose native busy share lies in [b_lo, b_hi]:
 * below it, the cap within 3 points; at or above it, unthrottled. */
static void check_share(const struct share_run *r, unsigned cap, double b_lo, double b_hi)
{
	fprintf(stderr, "published: delivered %.1f%%, asked %.1f%%\n", r->st.share_ppm / 1e4,
	        r->st.asked_ppm / 1e4);
	CHECK(r->native.busy_fraction > b_lo && r->native.busy_fraction < b_hi);
	if (cap < r->native.busy_fraction * 100.0) {
		CHECK(r->delivered > cap - 3.0 && r->delivered < cap + 3.0);
		CHECK(r->capped.busy_fraction * 100.0 > cap - 3.0 &&
		      r->capped.busy_fraction * 100.0 < cap + 3.0);
		/* Held at the cap: the work asked for about its native share. */
		CHECK(r->st.asked_ppm > b_lo * 0.8e6 && r->st.asked_ppm < b_hi * 1.2e6);
	} else {
		CHECK(r->ratio >= 0.97);
		/* Used less than the cap: it asked for what it got. */
		CHECK(r->st.asked_ppm + 30000 > r->st.share_ppm && r->st.asked_ppm < r->st.share_ppm + 30000);
	}
}

/* The same program with a slower host: 1.4 ms of host work per kernel, so
 * the GPU is busy about 36% of the time. */
static unsigned slower_gappy_step(CUstream s)
{
	return kernel_then_host(s, 1400);
}

/* "shift": the host speeds up under the cap (busy 36% native, then 50%, as
 * a training step's host did on an H100: its busy share went from 28% to
 * 40% at the same duty). The controller, settled on the slower work's
 * density, must follow the new one within about 1.5 s: over the next 2 s
 * the work gets the cap within 3 points. Following it through the seconds
 * of its averages, it ran 5 points over the cap on an H100. */
static void test_gappy_shift(unsigned cap)
{
	CUstream s = uncalibrated_stream("self:10");
	struct gappy slower = timed(s, 2.0, slower_gappy_step);
	struct gappy faster = timed(s, 2.0, gappy_step);
	set_sm_limit(DEV_A, cap);
	timed(s, 8.0, slower_gappy_step);
	struct gappy settled = timed(s, 2.0, slower_gappy_step);
	timed(s, 1.5, gappy_step);
	struct gappy after = timed(s, 2.0, gappy_step);
	double delivered = after.steps_per_s / faster.steps_per_s * faster.busy_fraction * 100.0;
	fprintf(
	    stderr,
	    "no cap: busy %.3f (slower), %.3f (faster); cap %u%%: slower busy %.3f, then faster busy %.3f, "
	    "delivered %.1f%%\n",
	    slower.busy_fraction, faster.busy_fraction, cap, settled.busy_fraction, after.busy_fraction,
	    delivered);
	CHECK(slower.busy_fraction > 0.32 && slower.busy_fraction < 0.40);
	CHECK(faster.busy_fraction > 0.45 && faster.busy_fraction < 0.55);
	CHECK(settled.busy_fraction * 100.0 > cap - 3.0 && settled.busy_fraction * 100.0 < cap + 3.0);
	CHECK(delivered > cap - 3.0 && delivered < cap + 3.0);
	CHECK(after.busy_fraction * 100.0 > cap - 3.0 && after.busy_fraction * 100.0 < cap + 3.0);
	CU(cuStreamDestroy_v2(s));
}

/* A denser program: 0.8 ms of host work per 500 us kernel, the GPU busy
 * about 62% of the time. */
static unsigned denser_gappy_step(CUstream s)
{
	return kernel_then_host(s, 800);
}

/* "pause": work that asks for a little less than its cap (busy about 62%
 * under a cap of 70%) runs free, pauses 6 s, and comes back: over its
 * first second back it runs as fast as without a cap. When a pause made
 * the controller forget that the work ran free, the first step back ran
 * at the cap's duty: 0.925 of that speed over the second. */
static void test_gappy_pause(unsigned cap)
{
	CUstream s = uncalibrated_stream("self:busy");
	struct gappy native = timed(s, 2.0, denser_gappy_step);
	set_sm_limit(DEV_A, cap);
	timed(s, 6.0, denser_gappy_step);
	sleep_ms(6000);
	struct gappy back = timed(s, 1.0, denser_gappy_step);
	struct gpucap_sm_state st;
	CHECK(sm_state(DEV_A, &st));
	double ratio = back.steps_per_s / native.steps_per_s;
	fprintf(
	    stderr,
	    "no cap: %.2f/s, busy %.3f; cap %u%%, first second after a 6 s pause: %.2f/s (ratio %.3f), duty %.3f\n",
	    native.steps_per_s, native.busy_fraction, cap, back.steps_per_s, ratio, st.duty_ppm / 1e6);
	CHECK(native.busy_fraction * 100.0 < cap);
	CHECK(ratio >= 0.97);
	CU(cuStreamDestroy_v2(s));
}

/* "neighbour": the gappy program (busy about 50% native) capped alone for
 * 6 s, then beside a neighbour that takes time slices: each kernel runs
 * 1.6 times as long, NVML charges that time to this process, and lists the
 * neighbour busy 40%. Held at the cap in NVML's busy time, the program
 * would get 30 / 1.6 = 19% of its work; counted by the work its launches
 * do (at their cost alone), it gets the cap within 3 points, by its own
 * throughput against the native run, after 8 s beside the neighbour. */
static void test_gappy_neighbour(unsigned cap)
{
	CUstream s = uncalibrated_stream("self:busy");
	struct gappy native = timed(s, 2.0, gappy_step);
	set_sm_limit(DEV_A, cap);
	struct gappy alone = timed(s, 6.0, gappy_step);
	fakecuda_set_time_slices(0, 1600);
	fakenvml_set_process_util(424242, 40);
	timed(s, 8.0, gappy_step);
	struct gappy beside = timed(s, 3.0, gappy_step);
	struct gpucap_sm_state st;
	CHECK(sm_state(DEV_A, &st));
	fakecuda_set_time_slices(0, 1000);
	fakenvml_set_process_util(424242, 0);
	double delivered = beside.steps_per_s / native.steps_per_s * native.busy_fraction * 100.0;
	fprintf(
	    stderr,
	    "no cap: %.2f/s, busy %.3f; cap %u%%: alone busy %.3f; beside the neighbour %.2f/s, busy %.3f, "
	    "delivered %.1f%%, duty %.3f, published share %.1f%%\n",
	    native.steps_per_s, native.busy_fraction, cap, alone.busy_fraction, beside.steps_per_s,
	    beside.busy_fraction, delivered, st.duty_ppm / 1e6, st.share_ppm / 1e4);
	CHECK(native.busy_fraction > 0.45 && native.busy_fraction < 0.55);
	CHECK(delivered > cap - 3.0 && delivered < cap + 3.0);
	/* Status shows the share in work, not in NVML's busy time. */
	CHECK(st.share_ppm > (cap - 3) * 10000u && st.share_ppm < (cap + 3) * 10000u);
	CU(cuStreamDestroy_v2(s));
}

static void test_gappy(const char *cap_text)
{
	unsigned cap = (unsigned)atoi(cap_text);
	fresh_region();
	if (strstr(cap_text, "neighbour")) {
		test_gappy_neighbour(cap);
		return;
	}
	if (strstr(cap_text, "shift")) {
		test_gappy_shift(cap);
		return;
	}
	if (strstr(cap_text, "pause")) {
		test_gappy_pause(cap);
		return;
	}
	/* "30-rates": a driver without utilisation samples, only the rates.
	 * "30-nvmlgaps": NVML leaves the process out of 3 of every 5 lists
	 * while it runs; the duty found in the others must hold through. */
	if (strstr(cap_text, "rates"))
		setenv("FAKENVML_DEVICE_SAMPLES", "unsupported", 1);
	if (strstr(cap_text, "nvmlgaps"))
		setenv("FAKENVML_SELF_GAPS", "2:3", 1);
	struct share_run r = run_share(gappy_step, "self:10", cap, 4.0);
	check_share(&r, cap, 0.45, 0.55);
}

/* A launch-bound loop: 200 kernels of 60 us, each after 150 us of host
 * time (the launch itself, as a framework spends it, scaled up tenfold to
 * keep the test's real time short), then a synchronisation.
 * The GPU is busy about 40% of the time and its queue is never deep: a
 * phase's drain that stopped the launches would cost this loop its
 * pipelining. */
static unsigned launchy_step(CUstream s)
{
	for (int i = 0; i < 200; i++) {
		fakeclock_sleep(150 * 1000);
		CU(launch(P_KERNEL, 60, s));
	}
	CU(cuStreamSynchronize(s));
	return 200;
}

static void test_launchy(const char *cap_text)
{
	unsigned cap = (unsigned)atoi(cap_text);
	fresh_region();
	struct share_run r = run_share(launchy_step, "self:10", cap, 4.0);
	check_share(&r, cap, 0.30, 0.45);
}

/* ---- Long kernels: one kernel is longer than a phase ----------------------------------------- */

/* 50 ms kernels, four at a time and then a synchronisation (as a program
 * of long kernels runs). */
static unsigned long_step(CUstream s)
{
	for (int i = 0; i < 4; i++)
		CU(launch(P_KERNEL, 50000, s));
	CU(cuStreamSynchronize(s));
	return 4;
}

/* A cap holds kernels of 50 ms, each longer than the gate's phases: over
 * 10 s the work gets the cap within 3 points, by its own throughput.
 * "-underread": NVML's device utilisation reads 2% whatever runs (as a real
 * one's samples miss bursts of long kernels); the gates' own sure busy time
 * must hold the cap then. "-deep": the driver queues all four kernels at
 * once (an H100 did): one phase would hold 200 ms of work, whose charge at
 * a 10% duty passes the clock's 1 s bound, so the phases must be cut. */
static void test_long(const char *cap_text)
{
	unsigned cap = (unsigned)atoi(cap_text);
	fresh_region();
	if (strstr(cap_text, "underread"))
		setenv("FAKENVML_DEVICE_UTIL", "2", 1);
	if (strstr(cap_text, "deep"))
		setenv("FAKECUDA_QUEUE_MAX_NS", "1000000000", 1);
	struct share_run r = run_share(long_step, "self:busy", cap, 10.0);
	CHECK(r.native.busy_fraction > 0.95);
	CHECK(r.delivered > cap - 3.0 && r.delivered < cap + 3.0);
}

/* ---- Per-device variables ---------------------------------------------------------------------- */

static void test_per_device(const char *visible)
{
	fresh_region();
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1);
	if (visible && *visible) {
		/* Ordinal 0 is physical B: its variable names ordinal 0. */
		setenv("CUDA_VISIBLE_DEVICES", visible, 1);
		setenv("CUDA_DEVICE_SM_LIMIT_0", "30", 1);
	} else {
		setenv("CUDA_DEVICE_SM_LIMIT_1", "30", 1);
	}
	int capped = visible && *visible ? 0 : 1;
	CU(cuInit(0));
	CUcontext ctx[2];
	CU(cuDevicePrimaryCtxRetain(&ctx[0], 0));
	CU(cuDevicePrimaryCtxRetain(&ctx[1], 1));

	CU(cuCtxSetCurrent(ctx[1 - capped]));
	struct run free_run = run_for(1 - capped, P_KERNEL, NULL, 1000, 0.3);
	CHECK_EQ(0, fakecuda_stat("event_records"));
	CU(cuCtxSetCurrent(ctx[capped]));
	struct run capped_run = run_for(capped, P_KERNEL, NULL, 1000, 0.6);
	fprintf(stderr, "per device: uncapped busy %.2f, capped busy %.2f\n", free_run.busy_fraction,
	        capped_run.busy_fraction);
	CHECK(fakecuda_stat("event_records") > 0);
	CHECK(free_run.busy_fraction > 0.9);
	CHECK(capped_run.busy_fraction < 0.6);
	CHECK_EQ(100, device_view(DEV_A).sm_limit);
	CHECK_EQ(30, device_view(DEV_B).sm_limit);
	struct gpucap_sm_state st;
	CHECK(sm_state(DEV_A, &st));
	CHECK_EQ(0, st.busy_ns);
	CHECK(sm_state(DEV_B, &st));
	CHECK(st.busy_ns > 0);
}

/* ---- Every entry point, every route -------------------------------------------------------------- */

static void test_routes(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "30", 1);
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1);
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	CHECK(h != NULL);
	for (int p = 0; p < P_COUNT; p++) {
		bool ptsz = p % 2 == 1;
		void *by_dlsym = dlsym(h, path_names[p]);
		void *by_proc = NULL;
		CUdriverProcAddressQueryResult q;
		CU(cuGetProcAddress_v2(path_bases[p], &by_proc, 13000,
		                       ptsz ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM
		                            : CU_GET_PROC_ADDRESS_LEGACY_STREAM,
		                       &q));
		void *by_proc_v1 = NULL;
		CU(cuGetProcAddress(path_bases[p], &by_proc_v1, 12000,
		                    ptsz ? CU_GET_PROC_ADDRESS_PER_THREAD_DEFAULT_STREAM : 0));
		CHECK(by_dlsym == exported((enum path)p));
		CHECK(by_proc == exported((enum path)p));
		CHECK(by_proc_v1 == exported((enum path)p));

		/* Each route reaches the driver's entry point of its own name,
		 * through the gate: the phases it ends are drained and charged. */
		void *routes[3] = {by_dlsym, by_proc, by_proc_v1};
		for (int route = 0; route < 3; route++) {
			char stat[32];
			snprintf(stat, sizeof(stat), "launches.%d", p);
			uint64_t launches = fakecuda_stat(stat), records = fakecuda_stat("event_records");
			struct gpucap_sm_state before, after;
			CHECK(sm_state(DEV_A, &before));
			for (int i = 0; i < 40; i++)
				CU(launch_through((enum path)p, routes[route], 500, ptsz ? NULL : s));
			CHECK(sm_state(DEV_A, &after));
			if (fakecuda_stat(stat) != launches + 40 ||
			    fakecuda_stat("event_records") <= records || after.busy_ns <= before.busy_ns) {
				fprintf(stderr, "%s through route %d did not reach the gate\n", path_names[p],
				        route);
				exit(1);
			}
		}
	}
	/* A legacy-stream request gets the legacy entry point even with the
	 * per-thread flag absent; the per-thread variant only when asked. */
	void *fn = NULL;
	CU(cuGetProcAddress_v2("cuLaunchKernel", &fn, 13000, 0, NULL));
	CHECK(fn == (void *)cuLaunchKernel);
	CHECK(dlsym(h, "cuStreamDestroy_v2") == (void *)cuStreamDestroy_v2);
	CU(cuStreamSynchronize(s));
	CU(cuStreamDestroy_v2(s));
}

/* ---- Live changes ----------------------------------------------------------------------------------- */

static void test_live(void)
{
	fresh_region();
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1);
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	struct run r = run_for(0, P_KERNEL, s, 1000, 0.3);
	CHECK_EQ(0, fakecuda_stat("event_records"));
	CHECK(r.busy_fraction > 0.9);
	CU(cuStreamSynchronize(s));

	/* gpucap set --sm 30: throttled within a tick. */
	set_sm_limit(DEV_A, 30);
	sleep_ms(400);
	r = run_for(0, P_KERNEL, s, 1000, 0.8);
	fprintf(stderr, "after set --sm 30: busy %.2f\n", r.busy_fraction);
	CHECK(fakecuda_stat("event_records") > 0);
	CHECK(r.busy_fraction < 0.6);

	/* Lifted: free again, and no more events. */
	set_sm_limit(DEV_A, 0);
	sleep_ms(400);
	CU(cuStreamSynchronize(s));
	uint64_t records = fakecuda_stat("event_records");
	r = run_for(0, P_KERNEL, s, 1000, 0.3);
	fprintf(stderr, "after set --sm 0: busy %.2f\n", r.busy_fraction);
	CHECK(r.busy_fraction > 0.9);
	CHECK_EQ(records, fakecuda_stat("event_records"));
	CU(cuStreamDestroy_v2(s));
}

/* ---- Malformed values ---------------------------------------------------------------------------------- */

static void test_malformed(void)
{
	fresh_region();
	char err[4096];
	const char *args[] = {"child-workload", "0.6", NULL};
	const char *bad[] = {"CUDA_DEVICE_SM_LIMIT=thirty", "FAKENVML_PROCESS_UTIL=unsupported", NULL};
	CHECK_EQ(0, run_self(err, sizeof(err), bad, args));
	fprintf(stderr, "malformed said: %s", err);
	CHECK_EQ(2, count_lines(err)); /* the error and the child's report */
	CHECK(strstr(err, "CUDA_DEVICE_SM_LIMIT=\"thirty\"") != NULL);
	CHECK(strstr(err, "throttled") != NULL);
	/* Fail closed in this process only: the region's limit is untouched. */
	CHECK_EQ(100, device_view(DEV_A).sm_limit);

	/* A region of its own: the first child registered the device uncapped. */
	char other[256];
	snprintf(other, sizeof(other), "GPUCAP_REGION=%s/other", region_dir);
	const char *bad_policy[] = {"GPUCAP_SM_POLICY=lenient", "CUDA_DEVICE_SM_LIMIT=30",
	                            "FAKENVML_PROCESS_UTIL=unsupported", other, NULL};
	CHECK_EQ(0, run_self(err, sizeof(err), bad_policy, args));
	CHECK(strstr(err, "GPUCAP_SM_POLICY=\"lenient\"") != NULL);
	CHECK(strstr(err, "throttled") != NULL);
}

/* ---- Streams destroyed under the gate, threads, fork ------------------------------------------------------
 */

struct launcher {
	CUcontext ctx;
	volatile int stop;
	bool per_thread;
};

static void *launch_loop(void *arg)
{
	struct launcher *l = arg;
	fakeclock_thread_begin();
	CU(cuCtxSetCurrent(l->ctx));
	CUstream s = NULL;
	if (!l->per_thread)
		CU(cuStreamCreate(&s, 0));
	while (!__atomic_load_n(&l->stop, __ATOMIC_RELAXED))
		CU(launch(l->per_thread ? P_KERNEL_PTSZ : P_KERNEL, 500, s));
	if (s) {
		CU(cuStreamSynchronize(s));
		CU(cuStreamDestroy_v2(s));
	}
	return NULL;
}

static void test_threads(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "30", 1);
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1);
	CUcontext ctx = start_device(0);
	enum { T = 4 };
	pthread_t th[T];
	struct launcher l[T];
	for (int i = 0; i < T; i++) {
		l[i].ctx = ctx;
		l[i].stop = 0;
		l[i].per_thread = i == T - 1;
		fakeclock_thread_starting();
		CHECK(pthread_create(&th[i], NULL, launch_loop, &l[i]) == 0);
	}
	/* Meanwhile streams come and go with work in the current phase. */
	sleep_ms(200);
	uint64_t b0 = fakecuda_busy_ns(0), t0 = now_ns();
	for (int i = 0; i < 60; i++) {
		CUstream s;
		CU(cuStreamCreate(&s, 0));
		CU(launch(P_KERNEL, 50, s));
		CU(cuStreamDestroy_v2(s));
		sleep_ms(2);
	}
	double busy = (double)(fakecuda_busy_ns(0) - b0) / (double)(now_ns() - t0);
	for (int i = 0; i < T; i++)
		__atomic_store_n(&l[i].stop, 1, __ATOMIC_RELAXED);
	for (int i = 0; i < T; i++)
		join(th[i]);
	fprintf(stderr, "threads: busy %.2f\n", busy);
	CHECK_EQ(0, fakecuda_stat("use_after_destroy"));
	CHECK(fakecuda_stat("event_records") > 0);
	CHECK(busy < 0.6);
}

static void test_fork(void)
{
	fresh_region();
	setenv("CUDA_DEVICE_SM_LIMIT", "30", 1);
	setenv("FAKENVML_PROCESS_UTIL", "unsupported", 1);
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	run_for(0, P_KERNEL, s, 1000, 0.2);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* The child has no controller thread and nobody closing the
		 * parent's phase: its own gate starts afresh. */
		uint64_t records = fakecuda_stat("event_records");
		struct run r = run_for(0, P_KERNEL, s, 1000, 0.6);
		if (fakecuda_stat("event_records") <= records)
			_exit(2);
		if (r.longest_launch_ns > 1500 * MS)
			_exit(3);
		if (r.busy_fraction > 0.6)
			_exit(4);
		_exit(0);
	}
	int status;
	CHECK(wait_child(pid, &status) == pid);
	CHECK(WIFEXITED(status));
	CHECK_EQ(0, WEXITSTATUS(status));
}

/* ---- Two containers take turns (GPUCAP_NODE_DIR) ------------------------------------------------------- */

#define TURNS_PERIOD_NS UINT64_C(100000000)
#define TURNS_MAX       200000u

/* One tenant: launch 500 us kernels for warm-up + 2 s and write the moment
 * each launch was admitted after the warm-up to out (binary). kind "": back
 * to back after 1 s; "long": back to back after 8 s; "gappy": gappy_step's
 * host work after each kernel, after 8 s (its controller settles). */
static int turns_child(const char *out, const char *kind)
{
	start_device(0);
	CUstream s;
	CU(cuStreamCreate(&s, 0));
	bool gappy = strcmp(kind, "gappy") == 0;
	double warm = kind[0] ? 8.0 : 1.0;
	if (gappy) {
		uint64_t warm_end = now_ns() + (uint64_t)(warm * 1e9);
		while (now_ns() < warm_end)
			gappy_step(s);
	} else {
		run_for(0, P_KERNEL, s, 500, warm); /* both tenants start and join */
	}
	static uint64_t at[TURNS_MAX];
	unsigned n = 0;
	uint64_t b0 = fakecuda_busy_ns(0), t0 = now_ns(), end = t0 + 2 * UINT64_C(1000000000);
	while (now_ns() < end && n < TURNS_MAX) {
		CU(launch(P_KERNEL, 500, s));
		at[n++] = now_ns();
		if (gappy)
			fakeclock_sleep(1000 * 1000);
	}
	double busy = (double)(fakecuda_busy_ns(0) - b0) / (double)(now_ns() - t0);
	FILE *f = fopen(out, "wb");
	CHECK(f != NULL);
	CHECK(fwrite(&busy, sizeof(busy), 1, f) == 1);
	CHECK(fwrite(at, sizeof(at[0]), n, f) == n);
	CHECK(fclose(f) == 0);
	CU(cuStreamDestroy_v2(s));
	return 0;
}

static pid_t spawn_self(const char *const *env, const char *const *args)
{
	return self_spawn(self_path, env, args);
}

struct turns {
	double busy;
	double in_window; /* fraction of admitted launches inside the tenant's window */
	unsigned launches;
};

/* Where in the period a tenant's launches were admitted, for a window at
 * [offset, offset + length). */
static struct turns read_turns(const char *path, uint64_t offset, uint64_t length)
{
	struct turns t = {0, 0, 0};
	FILE *f = fopen(path, "rb");
	CHECK(f != NULL);
	CHECK(fread(&t.busy, sizeof(t.busy), 1, f) == 1);
	uint64_t at, inside = 0;
	while (fread(&at, sizeof(at), 1, f) == 1) {
		uint64_t pos = at % TURNS_PERIOD_NS;
		inside += pos >= offset && pos < offset + length;
		t.launches++;
	}
	fclose(f);
	t.in_window = t.launches ? (double)inside / t.launches : 0;
	return t;
}

/*
 * Two regions ("containers") capped at 30% and 70% on one GPU. With a node
 * directory they take turns: in each 100 ms period the tenant with the lower
 * id (its region's creation time) owns the first window, as long as its
 * duty, and the other the rest; each admits launches only in its own.
 * Without (mode "off") each holds its duty on its own and their launches
 * fall anywhere in the period: the check below then fails, which this case
 * runs too, so that the check is known to tell the two apart.
 * Mode "gappy": the cap-30 tenant's work leaves gaps (gappy_step), and
 * NVML tells its controller so; it stops taking turns (GPUCAP_SM_FLAG_OVERLAP)
 * and its launches fall anywhere in the period, as without a node
 * directory.
 */
static void test_turns(const char *mode)
{
	bool shared = strcmp(mode, "off") != 0;
	bool gappy = strcmp(mode, "gappy") == 0;
	/* "hami": GPUCAP_NODE_DIR unset and HAMi's /tmp/vgpulock present (run
	 * in a private mount namespace with its own /tmp, see CMakeLists.txt). */
	bool hami = strcmp(mode, "hami") == 0;
	fresh_region();
	char node[256], path30[256], path70[256], out30[256], out70[256];
	if (hami) {
		struct stat lock_dir;
		snprintf(node, sizeof(node), "/tmp/vgpulock");
		CHECK(stat(node, &lock_dir) == 0 && S_ISDIR(lock_dir.st_mode));
	} else {
		snprintf(node, sizeof(node), "%s/node", region_dir);
		CHECK(mkdir(node, 0755) == 0);
	}
	snprintf(path30, sizeof(path30), "%s/t30", region_dir);
	snprintf(path70, sizeof(path70), "%s/t70", region_dir);
	snprintf(out30, sizeof(out30), "%s/out30", region_dir);
	snprintf(out70, sizeof(out70), "%s/out70", region_dir);
	/* The two tenants share one simulated clock, as they share the GPU's
	 * time on a real node. */
	char clock_path[256], clock_env[300];
	snprintf(clock_path, sizeof(clock_path), "%s/clock", region_dir);
	snprintf(clock_env, sizeof(clock_env), "%s=%s", FAKE_CLOCK_FILE_ENV, clock_path);
	char region30[300], region70[300], node_env[300];
	snprintf(region30, sizeof(region30), "GPUCAP_REGION=%s", path30);
	snprintf(region70, sizeof(region70), "GPUCAP_REGION=%s", path70);
	snprintf(node_env, sizeof(node_env), "GPUCAP_NODE_DIR=%s", shared && !hami ? node : "");
	const char *env30[] = {region30,
	                       "CUDA_DEVICE_SM_LIMIT=30",
	                       gappy ? "FAKENVML_PROCESS_UTIL=self:10" : "FAKENVML_PROCESS_UTIL=unsupported",
	                       "GPUCAP_SM_CALIBRATE=off",
	                       node_env,
	                       clock_env,
	                       FAKE_CLOCK_PARTIES_ENV "=2",
	                       NULL};
	const char *env70[] = {region70,
	                       "CUDA_DEVICE_SM_LIMIT=70",
	                       "FAKENVML_PROCESS_UTIL=unsupported",
	                       node_env,
	                       clock_env,
	                       FAKE_CLOCK_PARTIES_ENV "=2",
	                       NULL};
	const char *args30[] = {"turns-child", out30, gappy ? "gappy" : "", NULL};
	const char *args70[] = {"turns-child", out70, gappy ? "long" : "", NULL};
	pid_t a = spawn_self(env30, args30);
	pid_t b = spawn_self(env70, args70);
	int status;
	CHECK(wait_child(a, &status) == a && WIFEXITED(status) && WEXITSTATUS(status) == 0);
	CHECK(wait_child(b, &status) == b && WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* Who goes first: the lower region creation time. */
	uint64_t created[2];
	uint32_t flags[2];
	const char *paths[2] = {path30, path70};
	for (int i = 0; i < 2; i++) {
		gpucap_region *r = NULL;
		struct gpucap_region_options o;
		memset(&o, 0, sizeof(o));
		o.path = paths[i];
		o.observer = true;
		CHECK(gpucap_region_attach(&o, &r, NULL, 0) == GPUCAP_OK);
		created[i] = gpucap_region_created_ns(r);
		int d = gpucap_region_device_find(r, DEV_A);
		CHECK(d >= 0);
		flags[i] = gpucap_region_sm_flags(r, d);
		gpucap_region_detach(r);
	}
	uint64_t w30 = TURNS_PERIOD_NS * 3 / 10, w70 = TURNS_PERIOD_NS * 7 / 10;
	bool first30 = created[0] < created[1];
	struct turns t30 = read_turns(out30, first30 ? 0 : w70, w30);
	struct turns t70 = read_turns(out70, first30 ? w30 : 0, w70);
	fprintf(
	    stderr,
	    "turns %s: cap 30: %u launches, %.1f%% in its window, busy %.2f; cap 70: %u launches, %.1f%% in its window, busy %.2f\n",
	    mode, t30.launches, 100 * t30.in_window, t30.busy, t70.launches, 100 * t70.in_window, t70.busy);
	/* Each tenant's own schedule file, named by its id. */
	char files[2][512];
	for (int i = 0; i < 2; i++)
		snprintf(files[i], sizeof(files[i]), "%s/gpucap-sched-%s.%016llx", node, DEV_A,
		         (unsigned long long)created[i]);
	struct stat st;
	CHECK(t30.launches > 100 && t70.launches > 100);
	CHECK(!(flags[1] & GPUCAP_SM_FLAG_OVERLAP));
	if (gappy) {
		/* The gappy tenant overlaps; the other, which sees it no more,
		 * keeps its own duty cycle as well. */
		CHECK(flags[0] & GPUCAP_SM_FLAG_OVERLAP);
		/* Its cap delivered (its work alone keeps the GPU busy a
		 * third of the time); taking turns it got about half. */
		CHECK(t30.busy > 0.27 && t30.busy < 0.33);
		CHECK(t30.in_window < 0.8);
		CHECK(t70.in_window < 0.8);
		for (int i = 0; i < 2; i++)
			unlink(files[i]);
	} else if (shared) {
		CHECK(!(flags[0] & GPUCAP_SM_FLAG_OVERLAP));
		for (int i = 0; i < 2; i++) {
			CHECK(stat(files[i], &st) == 0 && st.st_size == 64 + 64 * 64 &&
			      (st.st_mode & 07777) == 0644);
			unlink(files[i]);
		}
		CHECK(t30.in_window > 0.95);
		CHECK(t70.in_window > 0.95);
		/* Each tenant's window is its duty: about 30% and 70% busy. */
		CHECK(t30.busy > 0.15 && t30.busy < 0.40);
		CHECK(t70.busy > 0.45 && t70.busy < 0.80);
	} else {
		CHECK(stat(files[0], &st) != 0 && stat(files[1], &st) != 0);
		/* Launches spread over the whole period. */
		CHECK(t30.in_window < 0.8);
	}
	unlink(out30);
	unlink(out70);
	unlink(clock_path);
	unlink(path30);
	unlink(path70);
	char audit[320];
	snprintf(audit, sizeof(audit), "%s.audit", path30);
	unlink(audit);
	snprintf(audit, sizeof(audit), "%s.audit", path70);
	unlink(audit);
	rmdir(node);
}

/* ---- main -------------------------------------------------------------------------------------------------
 */

/* Cases without an argument, in the dispatch table's shape. */
#define NO_ARG_CASE(name)                                                                                    \
	static void case_##name(const char *arg)                                                             \
	{                                                                                                    \
		(void)arg;                                                                                   \
		test_##name();                                                                               \
	}
NO_ARG_CASE(capped)
NO_ARG_CASE(capture)
NO_ARG_CASE(corrupt_tat)
NO_ARG_CASE(policy_disable)
NO_ARG_CASE(elastic)
NO_ARG_CASE(routes)
NO_ARG_CASE(live)
NO_ARG_CASE(malformed)
NO_ARG_CASE(threads)
NO_ARG_CASE(fork)

int main(int argc, char **argv)
{
	ssize_t len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	CHECK(len > 0);
	self_path[len] = '\0';
	if (argc < 2) {
		fprintf(stderr, "usage: %s CASE [ARG]\n", argv[0]);
		return 2;
	}
	const char *inherited = getenv("GPUCAP_REGION");
	if (inherited)
		snprintf(region_path, sizeof(region_path), "%s", inherited);
	const char *arg = argc > 2 ? argv[2] : "";
	if (strcmp(argv[1], "child-workload") == 0)
		return child_workload(atof(arg));
	if (strcmp(argv[1], "turns-child") == 0)
		return turns_child(arg, argc > 3 ? argv[3] : "");
	/* Each case takes the optional argument (most ignore it). */
	static const struct {
		const char *name;
		void (*run)(const char *arg);
	} cases[] = {
	    {"uncapped", test_uncapped},
	    {"capped", case_capped},
	    {"capture", case_capture},
	    {"corrupt-tat", case_corrupt_tat},
	    {"policy-disable", case_policy_disable},
	    {"elastic", case_elastic},
	    {"weight", test_weight},
	    {"gappy", test_gappy},
	    {"launchy", test_launchy},
	    {"long", test_long},
	    {"per-device", test_per_device},
	    {"routes", case_routes},
	    {"live", case_live},
	    {"malformed", case_malformed},
	    {"threads", case_threads},
	    {"fork", case_fork},
	    {"turns", test_turns},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (strcmp(argv[1], cases[i].name) == 0) {
			cases[i].run(arg);
			return 0;
		}
	}
	fprintf(stderr, "unknown case %s\n", argv[1]);
	return 2;
}
