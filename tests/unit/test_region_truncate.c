/* SPDX-License-Identifier: Apache-2.0 */
/* A region truncated while processes use it: they keep running and fail
 * closed; SIGBUS elsewhere still reaches the application's own handler or
 * its default action. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_support.h"

#define MiB (UINT64_C(1) << 20)
#define GPU "GPU-7a0ca7ed-0000-0000-0000-000000000001"

static gpucap_region *attach_with_device(const char *path, int *device)
{
	gpucap_region *r = test_attach_claim(path);
	*device = gpucap_region_device_register(r, GPU, 256 * MiB, 0);
	assert_true(*device >= 0);
	return r;
}

static void truncated_region_fails_closed_without_killing(void **state)
{
	(void)state;
	const char *path = scratch_path("truncated");
	int device;
	gpucap_region *r = attach_with_device(path, &device);
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, 8 * MiB), GPUCAP_OK);
	char line[512] = "";
	assert_false(gpucap_region_failed(r, line, sizeof(line)));

	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, 1 * MiB), GPUCAP_ERR_CORRUPT);
	assert_true(gpucap_region_failed(r, line, sizeof(line)));
	printf("the line: %s\n", line);
	assert_non_null(strstr(line, path));
	assert_non_null(strstr(line, "truncated"));
	assert_null(strchr(line, '\n'));
	/* Everything else keeps failing closed, and nothing faults again. */
	gpucap_release(r, device, GPUCAP_KIND_DATA, 8 * MiB);
	gpucap_region_return_credit(r, device);
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, 1), GPUCAP_ERR_CORRUPT);
	assert_null(gpucap_region_snapshot(r));
	assert_int_equal(gpucap_region_reclaim_dead(r, NULL), GPUCAP_ERR_CORRUPT);
	gpucap_region_maintain(r);
	uint64_t limit = 0, charged = 0;
	assert_false(gpucap_region_device_usage(r, device, &limit, &charged));
	assert_true(gpucap_region_device_register(r, GPU, MiB, 0) < 0);
	gpucap_region_detach(r);
}

static void an_observer_of_a_truncated_region_gets_no_snapshot(void **state)
{
	(void)state;
	const char *path = scratch_path("truncated-observed");
	int device;
	gpucap_region *writer = attach_with_device(path, &device);
	struct gpucap_region_options options = {.path = path, .observer = true};
	gpucap_region *observer = NULL;
	assert_int_equal(gpucap_region_attach(&options, &observer, NULL, 0), GPUCAP_OK);
	struct gpucap_snapshot *s = gpucap_region_snapshot(observer);
	assert_non_null(s);
	gpucap_snapshot_free(s);
	assert_int_equal(truncate(path, 4096), 0); /* the header stays, the tables go */
	assert_null(gpucap_region_snapshot(observer));
	assert_true(gpucap_region_failed(observer, NULL, 0));
	gpucap_region_detach(observer);
	gpucap_region_detach(writer);
}

static void a_region_cut_and_grown_back_is_noticed(void **state)
{
	(void)state;
	const char *path = scratch_path("regrown");
	int device;
	gpucap_region *r = attach_with_device(path, &device);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	/* Zero pages, no fault: the magic is gone, so the next check fails. */
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(truncate(path, st.st_size), 0);
	gpucap_region_maintain(r);
	assert_true(gpucap_region_failed(r, NULL, 0));
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, 1), GPUCAP_ERR_CORRUPT);
	gpucap_region_detach(r);
}

struct churn {
	gpucap_region *region;
	int device;
	_Atomic int *stop;
};

static void *churn_thread(void *arg)
{
	struct churn *c = arg;
	while (!atomic_load(c->stop)) {
		if (gpucap_reserve(c->region, c->device, GPUCAP_KIND_DATA, 64 * 1024) == GPUCAP_OK)
			gpucap_release(c->region, c->device, GPUCAP_KIND_DATA, 64 * 1024);
		struct gpucap_snapshot *s = gpucap_region_snapshot(c->region);
		gpucap_snapshot_free(s);
	}
	return NULL;
}

/* Threads in the middle of reserving, releasing and copying when another
 * process cuts the file: the process survives and ends up failed closed. */
static void threads_survive_a_truncation_by_another_process(void **state)
{
	(void)state;
	const char *path = scratch_path("truncated-threads");
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		int device;
		gpucap_region *r = attach_with_device(path, &device);
		_Atomic int stop = 0;
		struct churn c = {r, device, &stop};
		pthread_t threads[4];
		for (int i = 0; i < 4; i++)
			pthread_create(&threads[i], NULL, churn_thread, &c);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		while (!gpucap_region_failed(r, NULL, 0))
			usleep(1000);
		atomic_store(&stop, 1);
		for (int i = 0; i < 4; i++)
			pthread_join(threads[i], NULL);
		int refused = gpucap_reserve(r, device, GPUCAP_KIND_DATA, 1) == GPUCAP_ERR_CORRUPT;
		gpucap_region_detach(r);
		_exit(refused ? 0 : 4);
	}
	char byte;
	assert_int_equal(read(ready[0], &byte, 1), 1);
	usleep(20000);
	assert_int_equal(truncate(path, 0), 0);
	assert_int_equal(wait_child(child), 0);
	close(ready[0]);
	close(ready[1]);
}

static void host_handler(int sig)
{
	(void)sig;
	_exit(42);
}

/* Touch a page of another file's mapping after cutting that file. */
static void fault_outside_the_region(void)
{
	const char *other = scratch_path("not-a-region");
	int fd = open(other, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, 8192) != 0)
		_exit(5);
	volatile char *page = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED || ftruncate(fd, 0) != 0)
		_exit(6);
	page[4096] = 1; /* SIGBUS */
	_exit(7);
}

static void other_faults_reach_the_application_handler(void **state)
{
	(void)state;
	const char *path = scratch_path("guarded-host-handler");
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		signal(SIGBUS, host_handler);
		int device;
		gpucap_region *r = attach_with_device(path, &device);
		(void)r;
		fault_outside_the_region();
	}
	assert_int_equal(wait_child(child), 42);
}

static void other_faults_keep_the_default_action(void **state)
{
	(void)state;
	const char *path = scratch_path("guarded-default");
	pid_t child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		signal(SIGBUS, SIG_DFL);
		int device;
		gpucap_region *r = attach_with_device(path, &device);
		(void)r;
		fault_outside_the_region();
	}
	assert_int_equal(wait_child(child), 128 + SIGBUS);
}

static int teardown(void **state)
{
	(void)state;
	scratch_remove();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(truncated_region_fails_closed_without_killing),
	    cmocka_unit_test(an_observer_of_a_truncated_region_gets_no_snapshot),
	    cmocka_unit_test(a_region_cut_and_grown_back_is_noticed),
	    cmocka_unit_test(threads_survive_a_truncation_by_another_process),
	    cmocka_unit_test(other_faults_reach_the_application_handler),
	    cmocka_unit_test(other_faults_keep_the_default_action),
	};
	return cmocka_run_group_tests_name("region truncation", tests, NULL, teardown);
}
