/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of every region operation. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test_support.h"

#define MiB  (UINT64_C(1) << 20)
#define GPU0 "GPU-00000000-1111-2222-3333-444444444444"
#define GPU1 "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

static const struct gpucap_device_view *device_view(const struct gpucap_snapshot *s, int index)
{
	for (uint32_t i = 0; i < s->device_count; i++)
		if (s->devices[i].index == index)
			return &s->devices[i];
	fail_msg("device %d not in snapshot", index);
	return NULL;
}

static uint64_t charged(gpucap_region *r, int device)
{
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_non_null(s);
	assert_true(s->consistent);
	uint64_t value = device_view(s, device)->charged_bytes;
	gpucap_snapshot_free(s);
	return value;
}

static uint64_t in_use(gpucap_region *r, int device)
{
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_non_null(s);
	uint64_t value = device_view(s, device)->in_use_bytes;
	gpucap_snapshot_free(s);
	return value;
}

static void attach_creates_private_file(void **state)
{
	(void)state;
	const char *path = scratch_path("private");
	gpucap_region *first = test_attach(path);
	assert_true(gpucap_region_initialised_here(first));
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	gpucap_region *second = test_attach(path);
	assert_false(gpucap_region_initialised_here(second));
	assert_string_equal(gpucap_region_path(second), path);
	gpucap_region_detach(second);
	gpucap_region_detach(first);
}

static void group_shared_file_is_group_writable(void **state)
{
	(void)state;
	const char *path = scratch_path("group");
	struct gpucap_region_options options = {.path = path, .group_shared = true, .slot_capacity = 8};
	gpucap_region *r = NULL;
	assert_int_equal(gpucap_region_attach(&options, &r, NULL, 0), GPUCAP_OK);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0660);
	gpucap_region_detach(r);
}

static void reserve_fills_exactly_to_the_limit(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("fill"));
	int d = gpucap_region_device_register(r, GPU0, 1 * MiB, 0);
	assert_true(d >= 0);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 512 * 1024), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 512 * 1024), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 1), GPUCAP_ERR_OVER_LIMIT);
	assert_int_equal(charged(r, d), 1 * MiB);
	assert_int_equal(in_use(r, d), 1 * MiB);
	gpucap_release(r, d, GPUCAP_KIND_DATA, 512 * 1024);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 512 * 1024), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 4096), GPUCAP_ERR_OVER_LIMIT);
	gpucap_region_detach(r);
}

static void release_and_return_credit_bring_charge_to_zero(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("zero"));
	int d = gpucap_region_device_register(r, GPU0, GPUCAP_UNLIMITED, 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 1000 + (uint64_t)i), GPUCAP_OK);
	assert_true(charged(r, d) >= in_use(r, d));
	assert_int_equal(in_use(r, d), 100 * 1000 + 99 * 100 / 2);
	for (int i = 0; i < 100; i++)
		gpucap_release(r, d, GPUCAP_KIND_DATA, 1000 + (uint64_t)i);
	assert_int_equal(in_use(r, d), 0);
	gpucap_region_return_credit(r, d);
	assert_int_equal(charged(r, d), 0);
	gpucap_region_detach(r);
}

static void kinds_are_broken_down_per_process(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("kinds"));
	int d = gpucap_region_device_register(r, GPU0, 64 * MiB, 0);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_CONTEXT, 3 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_MODULE, 200), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 300), GPUCAP_OK);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_int_equal(s->process_count, 1);
	const struct gpucap_process_view *p = &s->processes[0];
	assert_true(p->self);
	assert_true(p->alive);
	assert_int_equal(p->pid, getpid());
	assert_int_equal(p->devices[d].kind_bytes[GPUCAP_KIND_CONTEXT], 3 * MiB);
	assert_int_equal(p->devices[d].kind_bytes[GPUCAP_KIND_MODULE], 200);
	assert_int_equal(p->devices[d].kind_bytes[GPUCAP_KIND_DATA], 300);
	assert_int_equal(p->devices[d].in_use_bytes, 3 * MiB + 500);
	assert_int_equal(device_view(s, d)->charged_bytes, p->devices[d].charged_bytes);
	assert_true(device_view(s, d)->peak_bytes >= 3 * MiB + 500);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
}

static void limits_change_live(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("live"));
	int d = gpucap_region_device_register(r, GPU0, 8 * MiB, 50);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 6 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_region_set_limit(r, d, 4 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 4096), GPUCAP_ERR_OVER_LIMIT);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_int_equal(device_view(s, d)->limit_bytes, 4 * MiB);
	assert_int_equal(device_view(s, d)->sm_limit, 50);
	gpucap_snapshot_free(s);
	assert_int_equal(gpucap_region_set_limit(r, d, 16 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 8 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_region_set_sm_limit(r, d, 30), GPUCAP_OK);
	assert_int_equal(gpucap_region_set_sm_limit(r, d, 101), GPUCAP_ERR_INVALID);
	gpucap_region_detach(r);
}

static void a_local_cap_holds_below_a_raised_shared_limit(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("localcap"));
	int d = gpucap_region_device_register(r, GPU0, 64 * MiB, 0);
	gpucap_region_set_local_cap(r, d, 8 * MiB);
	gpucap_region_set_local_cap(r, d, 32 * MiB); /* can only be lowered */
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 6 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 3 * MiB), GPUCAP_ERR_OVER_LIMIT);
	/* Someone raises the shared limit: this handle's cap still holds. */
	assert_int_equal(gpucap_region_set_limit(r, d, 1024 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 3 * MiB), GPUCAP_ERR_OVER_LIMIT);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 2 * MiB), GPUCAP_OK);
	uint64_t limit = 0, used = 0;
	assert_true(gpucap_region_device_usage(r, d, &limit, &used));
	assert_int_equal(limit, 8 * MiB);
	assert_true(used <= 8 * MiB);
	gpucap_region_detach(r);
}

static void devices_are_keyed_by_uuid(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("devices"));
	int a = gpucap_region_device_register(r, GPU0, 10 * MiB, 0);
	int b = gpucap_region_device_register(r, GPU1, 20 * MiB, 0);
	assert_true(a >= 0 && b >= 0 && a != b);
	/* A second registration keeps the first limit. */
	assert_int_equal(gpucap_region_device_register(r, GPU0, 99 * MiB, 0), a);
	assert_int_equal(gpucap_region_device_find(r, GPU1), b);
	assert_int_equal(gpucap_region_device_find(r, "GPU-none"), -1);
	assert_int_equal(gpucap_region_device_register(r, "", 1, 0), -GPUCAP_ERR_INVALID);
	assert_int_equal(gpucap_region_device_register(r, "GPU with space", 1, 0), -GPUCAP_ERR_INVALID);
	/* Capacity is 4 in tests. */
	assert_true(gpucap_region_device_register(r, "MIG-1", 1, 0) >= 0);
	assert_true(gpucap_region_device_register(r, "MIG-2", 1, 0) >= 0);
	assert_int_equal(gpucap_region_device_register(r, "MIG-3", 1, 0), -GPUCAP_ERR_FULL);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_string_equal(device_view(s, a)->uuid, GPU0);
	assert_int_equal(device_view(s, a)->limit_bytes, 10 * MiB);
	assert_int_equal(device_view(s, b)->limit_bytes, 20 * MiB);
	gpucap_snapshot_free(s);
	/* Reserving on an index that holds no device is refused. */
	assert_int_equal(gpucap_reserve(r, 77, GPUCAP_KIND_DATA, 1), GPUCAP_ERR_INVALID);
	assert_int_equal(gpucap_reserve(r, a, (gpucap_kind)7, 1), GPUCAP_ERR_INVALID);
	gpucap_region_detach(r);
}

static void observer_reads_but_never_writes(void **state)
{
	(void)state;
	const char *path = scratch_path("observer");
	gpucap_region *owner = test_attach_claim(path);
	int d = gpucap_region_device_register(owner, GPU0, 10 * MiB, 0);
	assert_int_equal(gpucap_reserve(owner, d, GPUCAP_KIND_DATA, 5 * MiB), GPUCAP_OK);
	struct gpucap_region_options options = {.path = path, .observer = true};
	gpucap_region *observer = NULL;
	assert_int_equal(gpucap_region_attach(&options, &observer, NULL, 0), GPUCAP_OK);
	assert_int_equal(gpucap_region_claim_slot(observer, NULL, NULL, 0), GPUCAP_ERR_INVALID);
	assert_int_equal(gpucap_reserve(observer, d, GPUCAP_KIND_DATA, 1), GPUCAP_ERR_NO_SLOT);
	assert_int_equal(gpucap_region_set_limit(observer, d, 1), GPUCAP_ERR_INVALID);
	assert_int_equal(gpucap_region_device_register(observer, GPU1, 1, 0), -GPUCAP_ERR_INVALID);
	struct gpucap_snapshot *s = gpucap_region_snapshot(observer);
	assert_int_equal(s->process_count, 1);
	/* The owner's lease is held by another open file: seen as alive. */
	assert_true(s->processes[0].alive);
	assert_false(s->processes[0].self);
	assert_int_equal(device_view(s, d)->in_use_bytes, 5 * MiB);
	gpucap_snapshot_free(s);
	gpucap_region_detach(observer);
	gpucap_region_detach(owner);
}

static void detach_returns_everything(void **state)
{
	(void)state;
	const char *path = scratch_path("detach");
	gpucap_region *watcher = test_attach(path);
	gpucap_region *r = test_attach_claim(path);
	int d = gpucap_region_device_register(r, GPU0, 100 * MiB, 0);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 7 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 100), GPUCAP_OK);
	gpucap_region_detach(r);
	struct gpucap_snapshot *s = gpucap_region_snapshot(watcher);
	assert_int_equal(s->process_count, 0);
	assert_int_equal(device_view(s, d)->charged_bytes, 0);
	assert_true(s->consistent);
	gpucap_snapshot_free(s);
	gpucap_region_detach(watcher);
}

/* A child that takes a slot, charges bytes and waits to be killed. */
static pid_t start_holder(const char *path, uint64_t bytes, int *ready_fd)
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	if (pid == 0) {
		close(fds[0]);
		gpucap_region *r = test_attach_claim(path);
		int d = gpucap_region_device_register(r, GPU0, 64 * MiB, 0);
		if (d < 0 || gpucap_reserve(r, d, GPUCAP_KIND_DATA, bytes) != GPUCAP_OK ||
		    gpucap_reserve(r, d, GPUCAP_KIND_MODULE, 1234) != GPUCAP_OK)
			_exit(3);
		if (write(fds[1], "r", 1) != 1)
			_exit(4);
		for (;;)
			pause();
	}
	close(fds[1]);
	char c;
	assert_int_equal(read(fds[0], &c, 1), 1);
	*ready_fd = fds[0];
	return pid;
}

static void reclaim_returns_a_dead_process_charges_exactly_once(void **state)
{
	(void)state;
	const char *path = scratch_path("reclaim");
	gpucap_region *r = test_attach(path);
	int fd;
	pid_t child = start_holder(path, 3 * MiB, &fd);
	int d = gpucap_region_device_find(r, GPU0);
	assert_true(d >= 0);
	uint64_t before = charged(r, d);
	assert_true(before >= 3 * MiB + 1234);
	/* Alive: nothing to reclaim. */
	struct gpucap_reclaim_report report;
	assert_int_equal(gpucap_region_reclaim_dead(r, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 0);
	kill(child, SIGKILL);
	assert_int_equal(wait_child(child), 128 + SIGKILL);
	close(fd);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_int_equal(s->process_count, 1);
	assert_false(s->processes[0].alive);
	gpucap_snapshot_free(s);
	assert_int_equal(gpucap_region_reclaim_dead(r, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 1);
	assert_int_equal(report.bytes, before);
	assert_int_equal(report.bytes_per_device[d], before);
	assert_int_equal(charged(r, d), 0);
	assert_int_equal(gpucap_region_reclaim_dead(r, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 0);
	assert_int_equal(report.bytes, 0);
	s = gpucap_region_snapshot(r);
	assert_int_equal(s->process_count, 0);
	assert_int_equal(s->reclaimed_slots_total, 1);
	assert_int_equal(s->reclaimed_bytes_total, before);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
}

static void a_full_region_reuses_dead_slots(void **state)
{
	(void)state;
	const char *path = scratch_path("fullslots");
	struct gpucap_region_options options = {.path = path, .slot_capacity = 2, .device_capacity = 2};
	gpucap_region *r = NULL;
	assert_int_equal(gpucap_region_attach(&options, &r, NULL, 0), GPUCAP_OK);
	int fd1, fd2;
	pid_t a = start_holder(path, MiB, &fd1);
	pid_t b = start_holder(path, MiB, &fd2);
	char err[512];
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_ERR_FULL);
	assert_non_null(strstr(err, "all 2 process slots"));
	assert_null(strchr(err, '\n'));
	kill(a, SIGKILL);
	wait_child(a);
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_OK);
	int d = gpucap_region_device_find(r, GPU0);
	/* Only the live holder's charge remains. */
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_true(s->consistent);
	assert_int_equal(s->process_count, 2);
	uint64_t live = 0;
	for (uint32_t i = 0; i < s->process_count; i++)
		live += s->processes[i].devices[d].charged_bytes;
	assert_int_equal(device_view(s, d)->charged_bytes, live);
	gpucap_snapshot_free(s);
	kill(b, SIGKILL);
	wait_child(b);
	close(fd1);
	close(fd2);
	gpucap_region_detach(r);
}

struct thread_work {
	gpucap_region *region;
	int device;
	uint64_t seed;
};

static void *churn(void *arg)
{
	struct thread_work *w = arg;
	uint64_t held[64];
	unsigned count = 0;
	for (int i = 0; i < 20000; i++) {
		if (count < 64 && (test_random(&w->seed) & 1)) {
			uint64_t size = 1 + test_random(&w->seed) % (256 * 1024);
			if (gpucap_reserve(w->region, w->device, GPUCAP_KIND_DATA, size) == GPUCAP_OK)
				held[count++] = size;
		} else if (count) {
			gpucap_release(w->region, w->device, GPUCAP_KIND_DATA, held[--count]);
		}
	}
	while (count)
		gpucap_release(w->region, w->device, GPUCAP_KIND_DATA, held[--count]);
	return NULL;
}

static void threads_keep_exact_totals(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("threads"));
	int d = gpucap_region_device_register(r, GPU0, 64 * MiB, 0);
	pthread_t threads[8];
	struct thread_work work[8];
	for (int i = 0; i < 8; i++) {
		work[i] = (struct thread_work){r, d, UINT64_C(0x1234567) + (uint64_t)i * 7919};
		assert_int_equal(pthread_create(&threads[i], NULL, churn, &work[i]), 0);
	}
	for (int i = 0; i < 8; i++)
		pthread_join(threads[i], NULL);
	assert_int_equal(in_use(r, d), 0);
	gpucap_region_return_credit(r, d);
	assert_int_equal(charged(r, d), 0);
	gpucap_region_detach(r);
}

static void concurrent_attach_has_one_initialiser(void **state)
{
	(void)state;
	const char *path = scratch_path("concurrent");
	enum { N = 64 };
	int gate[2];
	assert_int_equal(pipe(gate), 0);
	pid_t children[N];
	for (int i = 0; i < N; i++) {
		children[i] = fork();
		if (children[i] == 0) {
			close(gate[1]);
			char c;
			if (read(gate[0], &c, 1) != 0)
				_exit(90);
			gpucap_region *r = NULL;
			struct gpucap_region_options options = {.path = path, .slot_capacity = 128};
			if (gpucap_region_attach(&options, &r, NULL, 0) != GPUCAP_OK)
				_exit(91);
			if (gpucap_region_claim_slot(r, NULL, NULL, 0) != GPUCAP_OK)
				_exit(92);
			if (gpucap_region_device_register(r, GPU0, 64 * MiB, 0) < 0)
				_exit(93);
			_exit(gpucap_region_initialised_here(r) ? 1 : 0);
		}
	}
	close(gate[0]);
	close(gate[1]); /* releases every child at once */
	int initialisers = 0;
	for (int i = 0; i < N; i++) {
		int status = wait_child(children[i]);
		assert_true(status == 0 || status == 1);
		initialisers += status;
	}
	assert_int_equal(initialisers, 1);
	gpucap_region *r = test_attach(path);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_int_equal(s->device_count, 1);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
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
	    cmocka_unit_test(attach_creates_private_file),
	    cmocka_unit_test(group_shared_file_is_group_writable),
	    cmocka_unit_test(reserve_fills_exactly_to_the_limit),
	    cmocka_unit_test(release_and_return_credit_bring_charge_to_zero),
	    cmocka_unit_test(kinds_are_broken_down_per_process),
	    cmocka_unit_test(limits_change_live),
	    cmocka_unit_test(a_local_cap_holds_below_a_raised_shared_limit),
	    cmocka_unit_test(devices_are_keyed_by_uuid),
	    cmocka_unit_test(observer_reads_but_never_writes),
	    cmocka_unit_test(detach_returns_everything),
	    cmocka_unit_test(reclaim_returns_a_dead_process_charges_exactly_once),
	    cmocka_unit_test(a_full_region_reuses_dead_slots),
	    cmocka_unit_test(threads_keep_exact_totals),
	    cmocka_unit_test(concurrent_attach_has_one_initialiser),
	};
	return cmocka_run_group_tests_name("region operations", tests, NULL, teardown);
}
