/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A process that started while another process held the region's init
 * lease and stalled: its attach times out and it fails closed, one line
 * says so; once the initialiser is gone and the retry schedule allows, the
 * same process attaches, and its allocations are admitted and charged.
 *
 * The stalled initialiser is a child that takes the init lease, writes half
 * a header and stops itself (SIGSTOP); the test kills it. The schedule runs
 * on the fake driver's simulated clock (GPUCAP_TEST_CLOCK=simulated): time
 * moves only when the test sleeps, so "not due yet" and "due" are exact.
 *
 *   gpucap_retrytest retry            one thread; a first retry finds the
 *                                     initialiser still stopped
 *   gpucap_retrytest retry-threads    threads race to the retry
 */
#define _GNU_SOURCE
#include "check.h"
#include "cuda_api.h"
#include "fake_clock.h"
#include "gpucap/region.h"
#include "hook_scratch.h"
#include "layout.h"
#include "self_exec.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB   (UINT64_C(1) << 20)
#define MS    UINT64_C(1000000)
#define DEV_A "GPU-00000000-0000-0000-0000-0000000000a0"

static char region_dir[128];
static char region_path[192];
static char self_path[4096];
static pid_t initialiser;

/* Whatever happens to the test, the stopped child does not outlive it. */
static void kill_initialiser(void)
{
	if (initialiser > 0) {
		kill(initialiser, SIGKILL);
		waitpid(initialiser, NULL, 0);
		initialiser = 0;
	}
}

/* A child takes the init lease of a new region file, writes half a header
 * and stops itself: an initialiser that never finishes. */
static void start_stalled_initialiser(void)
{
	int ready[2];
	CHECK(pipe(ready) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		/* Not the test's stderr: the parent's reader waits for its end. */
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, STDERR_FILENO);
		int fd = open(region_path, O_RDWR | O_CREAT | O_EXCL, 0600);
		struct flock lock = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)LEASE_INIT, .l_len = 1};
		if (fd < 0 || fcntl(fd, F_OFD_SETLK, &lock) != 0)
			_exit(2);
		uint64_t magic = REGION_MAGIC;
		uint32_t initialising = REGION_INITIALIZING;
		if (ftruncate(fd, 8192) != 0 || pwrite(fd, &magic, 8, 0) != 8 ||
		    pwrite(fd, &initialising, 4, 8) != 4)
			_exit(3);
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		raise(SIGSTOP);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c;
	CHECK(read(ready[0], &c, 1) == 1);
	close(ready[0]);
	initialiser = pid;
	atexit(kill_initialiser);
	int status;
	CHECK(waitpid(pid, &status, WUNTRACED) == pid && WIFSTOPPED(status));
}

/* This process's data bytes on DEV_A as the region holds them, and the
 * device's charged total. */
static void region_usage(uint64_t *mine, uint64_t *charged)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	o.observer = true;
	gpucap_region *r = NULL;
	char err[512];
	if (gpucap_region_attach(&o, &r, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "observer attach: %s\n", err);
		exit(1);
	}
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	int dev = -1;
	for (uint32_t i = 0; i < s->device_count; i++)
		if (strcmp(s->devices[i].uuid, DEV_A) == 0)
			dev = s->devices[i].index;
	CHECK(dev >= 0);
	*mine = 0;
	*charged = 0;
	for (uint32_t i = 0; i < s->device_count; i++)
		if (s->devices[i].index == dev)
			*charged = s->devices[i].charged_bytes;
	for (uint32_t p = 0; p < s->process_count; p++)
		if (s->processes[p].pid == getpid() && s->processes[p].alive)
			*mine = (uint64_t)s->processes[p].devices[dev].kind_bytes[GPUCAP_KIND_DATA];
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
}

struct racer {
	CUcontext ctx;
	CUresult result;
	CUdeviceptr ptr;
	pthread_barrier_t *start;
};

static void *race_to_retry(void *arg)
{
	struct racer *r = arg;
	fakeclock_thread_begin();
	CU(cuCtxSetCurrent(r->ctx));
	pthread_barrier_wait(r->start);
	r->result = cuMemAlloc_v2(&r->ptr, MiB);
	return NULL;
}

/* Threads allocate at once when the retry is due: one of them retries (or
 * none wins the election and all refuse); whatever each got, the region
 * charges exactly the allocations that succeeded. Returns how many did. */
static unsigned race(CUcontext ctx)
{
	enum { T = 8 };
	pthread_t th[T];
	struct racer racers[T];
	pthread_barrier_t start;
	CHECK(pthread_barrier_init(&start, NULL, T) == 0);
	for (int i = 0; i < T; i++) {
		racers[i] = (struct racer){ctx, CUDA_ERROR_UNKNOWN, 0, &start};
		fakeclock_thread_starting();
		CHECK(pthread_create(&th[i], NULL, race_to_retry, &racers[i]) == 0);
	}
	fakeclock_idle_begin();
	for (int i = 0; i < T; i++)
		pthread_join(th[i], NULL);
	fakeclock_idle_end();
	pthread_barrier_destroy(&start);
	unsigned admitted = 0;
	for (int i = 0; i < T; i++) {
		CHECK(racers[i].result == CUDA_SUCCESS || racers[i].result == CUDA_ERROR_OUT_OF_MEMORY);
		if (racers[i].result == CUDA_SUCCESS) {
			admitted++;
			CU(cuMemFree_v2(racers[i].ptr));
		}
	}
	return admitted;
}

/* The process under test (its stderr is checked by the parent). */
static int child_retry(bool threads)
{
	start_stalled_initialiser();
	CU(cuInit(0)); /* waits the default 2 s for the initialiser, then fails closed */
	CUcontext ctx;
	CU(cuDevicePrimaryCtxRetain(&ctx, 0)); /* no context bytes: nothing to charge */
	CU(cuCtxSetCurrent(ctx));
	CUdeviceptr p;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
	if (!threads) {
		/* The first retry (due 1 s after the first refusal) finds the
		 * initialiser still stopped: a short wait, refused, silently. */
		fakeclock_sleep(1100 * MS);
		CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
	}
	/* The initialiser dies (or is killed): its lease goes with it. */
	kill_initialiser();
	/* Not due yet: the simulated clock has not moved since the last
	 * retry (or the first refusal, which started the schedule). */
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, MiB));
	/* The next retry is due 1 s after the first refusal, or 2 s after the
	 * first retry. */
	fakeclock_sleep((threads ? 1100 : 2100) * MS);
	if (threads) {
		unsigned admitted = race(ctx);
		fprintf(stdout, "%u of 8 racing threads admitted\n", admitted);
	}
	/* Attached now (by this call or by a racing thread): admitted, and
	 * charged in the region. */
	CU(cuMemAlloc_v2(&p, MiB));
	uint64_t mine, charged;
	region_usage(&mine, &charged);
	CHECK_EQ(MiB, mine);
	CHECK(charged >= MiB);
	/* The device's cap (64m) holds from now on. */
	CUdeviceptr big;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&big, 64 * MiB));
	CU(cuMemFree_v2(p));
	region_usage(&mine, &charged);
	CHECK_EQ(0, mine);
	return 0;
}

static void test_retry(bool threads)
{
	hook_scratch_region("retrytest", "RETRYTEST_KEEP", region_dir, sizeof(region_dir), region_path,
	                    sizeof(region_path));
	char region[256];
	snprintf(region, sizeof(region), "GPUCAP_REGION=%s", region_path);
	const char *env[] = {region, "CUDA_DEVICE_MEMORY_LIMIT=64m", "GPUCAP_CONTEXT_BYTES=0",
	                     "GPUCAP_TEST_CLOCK=simulated", NULL};
	const char *args[] = {threads ? "child-retry-threads" : "child-retry", NULL};
	char err[8192];
	int rc = self_run(self_path, err, sizeof(err), env, args);
	fputs(err, stderr);
	CHECK_EQ(0, rc);
	/* One line for the attach that timed out: the region's words and what
	 * the process does now; the refusals while it failed closed add none.
	 * The other line is the over-cap refusal after the retry. */
	const char *busy = strstr(err, "still being initialised by another process");
	CHECK(busy != NULL);
	CHECK(strstr(busy + 1, "still being initialised by another process") == NULL);
	CHECK(strstr(err, "later allocations try the region again") != NULL);
	CHECK(strstr(err, "would pass its cap of 64.00 MiB") != NULL);
	unsigned lines = 0;
	for (const char *c = err; *c; c++)
		lines += *c == '\n';
	CHECK_EQ(2, lines);
}

int main(int argc, char **argv)
{
	CHECK(argc >= 2);
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	CHECK(n > 0);
	self_path[n] = '\0';
	if (strcmp(argv[1], "child-retry") == 0 || strcmp(argv[1], "child-retry-threads") == 0) {
		const char *path = getenv("GPUCAP_REGION");
		CHECK(path != NULL && strlen(path) < sizeof(region_path));
		strcpy(region_path, path);
		return child_retry(strcmp(argv[1], "child-retry-threads") == 0);
	}
	if (strcmp(argv[1], "retry") == 0)
		test_retry(false);
	else if (strcmp(argv[1], "retry-threads") == 0)
		test_retry(true);
	else
		return 2;
	return 0;
}
