/* SPDX-License-Identifier: Apache-2.0 */
/* Damaged and hostile regions: what attach refuses, what reclaim heals, what
 * repair puts right, and sums that must not overflow. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "region_peek.h"
#include "test_support.h"

#define MiB (UINT64_C(1) << 20)
#define GPU "GPU-da6a9ed0-0000-0000-0000-000000000001"

/* A writable white-box view, standing in for a hostile or broken writer. */
struct raw {
	uint8_t *base;
	size_t size;
	struct region_geometry geo;
};

static struct raw raw_open(const char *path)
{
	struct raw raw;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	raw.size = (size_t)st.st_size;
	raw.base = mmap(NULL, raw.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	assert_true(raw.base != MAP_FAILED);
	const struct region_header *h = (const struct region_header *)raw.base;
	raw.geo = region_geometry_for(h->device_capacity, h->slot_capacity);
	return raw;
}

static _Atomic uint32_t *raw_state(const struct raw *raw, uint32_t slot)
{
	return (_Atomic uint32_t *)(raw->base + raw->geo.slot_states_offset) + slot;
}

static struct lane_device *raw_lane_device(const struct raw *raw, uint32_t slot, uint32_t lane,
                                           uint32_t device)
{
	uint8_t *slot_base = raw->base + raw->geo.slots_offset + (uint64_t)slot * raw->geo.slot_size;
	uint8_t *lane_base = slot_base + sizeof(struct slot_header) + (uint64_t)lane * raw->geo.lane_size;
	return (struct lane_device *)(lane_base + sizeof(struct lane_header)) + device;
}

static uint64_t raw_charged(const struct raw *raw, int device)
{
	const struct device_entry *entry =
	    (const struct device_entry *)(raw->base + raw->geo.devices_offset) + device;
	return charge_total(atomic_load(&entry->charge));
}

/* A child claims a slot, reserves bytes and dies without detaching; returns
 * its slot. */
static int die_holding(const char *path, uint64_t bytes)
{
	int channel[2];
	assert_int_equal(pipe(channel), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gpucap_region *r = test_attach_claim(path);
		int device = gpucap_region_device_register(r, GPU, 256 * MiB, 0);
		if (device < 0 || (bytes && gpucap_reserve(r, device, GPUCAP_KIND_DATA, bytes) != GPUCAP_OK))
			_exit(2);
		int slot = gpucap_region_slot_index(r);
		if (write(channel[1], &slot, sizeof(slot)) != sizeof(slot))
			_exit(3);
		_exit(0);
	}
	assert_int_equal(wait_child(pid), 0);
	int slot = -1;
	assert_int_equal(read(channel[0], &slot, sizeof(slot)), sizeof(slot));
	close(channel[0]);
	close(channel[1]);
	return slot;
}

static void a_region_with_two_names_is_refused(void **state)
{
	(void)state;
	const char *path = scratch_path("linked");
	const char *other = scratch_path("linked-too");
	gpucap_region *r = test_attach(path);
	gpucap_region_detach(r);
	assert_int_equal(link(path, other), 0);
	struct gpucap_region_options options = {.path = other};
	char err[512] = "";
	assert_int_equal(gpucap_region_attach(&options, &r, err, sizeof(err)), GPUCAP_ERR_PERMISSION);
	assert_non_null(strstr(err, "hard links"));
	assert_non_null(strstr(err, "remove the other links")); /* the default fix */
	/* As data: the problem, and a line without a fix for the caller to add. */
	struct gpucap_region_error error;
	assert_int_equal(gpucap_region_attach_detailed(&options, &r, &error), GPUCAP_ERR_PERMISSION);
	assert_int_equal(error.status, GPUCAP_ERR_PERMISSION);
	assert_int_equal(error.problem, GPUCAP_PROBLEM_LINKS);
	assert_non_null(strstr(error.detail, other));
	assert_null(strstr(error.detail, "remove"));
	assert_null(strstr(error.detail, "gpucap: "));
	options.existing_only = true;
	assert_int_equal(gpucap_region_attach(&options, &r, err, sizeof(err)), GPUCAP_ERR_PERMISSION);
}

static void existing_only_never_initialises_an_empty_file(void **state)
{
	(void)state;
	const char *path = scratch_path("empty");
	int fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	close(fd);
	gpucap_region *r = NULL;
	char err[512] = "";
	struct gpucap_region_options options = {.path = path, .existing_only = true};
	assert_int_equal(gpucap_region_attach(&options, &r, err, sizeof(err)), GPUCAP_ERR_BUSY);
	assert_non_null(strstr(err, "no process is initialising"));
	struct gpucap_region_options observe = {.path = path, .observer = true};
	assert_int_equal(gpucap_region_attach(&observe, &r, err, sizeof(err)), GPUCAP_ERR_BUSY);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 0);
}

static void a_dead_slot_with_a_damaged_state_is_reclaimed(void **state)
{
	(void)state;
	const char *path = scratch_path("bad-state");
	gpucap_region *r = test_attach(path);
	int device = gpucap_region_device_register(r, GPU, 256 * MiB, 0);
	int slot = die_holding(path, 4 * MiB);
	struct raw raw = raw_open(path);
	assert_int_equal(raw_charged(&raw, device), 4 * MiB);
	atomic_store(raw_state(&raw, (uint32_t)slot), 7);
	struct gpucap_reclaim_report report;
	assert_int_equal(gpucap_region_reclaim_dead(r, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 1);
	assert_int_equal(report.damaged_slots, 1);
	assert_int_equal(report.bytes, 4 * MiB);
	assert_int_equal(raw_charged(&raw, device), 0);
	assert_int_equal(atomic_load(raw_state(&raw, (uint32_t)slot)), 0);
	munmap(raw.base, raw.size);
	gpucap_region_detach(r);
}

static void a_negative_ledger_in_a_dead_slot_never_raises_the_total(void **state)
{
	(void)state;
	const char *path = scratch_path("negative");
	gpucap_region *r = test_attach(path);
	int device = gpucap_region_device_register(r, GPU, 256 * MiB, 0);
	int slot = die_holding(path, 0);
	struct raw raw = raw_open(path);
	struct lane_device *lane = raw_lane_device(&raw, (uint32_t)slot, 3, (uint32_t)device);
	atomic_store(&lane->granted, granted_word(-(int64_t)(8 * MiB), 0));
	struct gpucap_reclaim_report report;
	assert_int_equal(gpucap_region_reclaim_dead(r, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 1);
	assert_int_equal(report.damaged_bytes, 8 * MiB);
	assert_int_equal(raw_charged(&raw, device), 0);
	munmap(raw.base, raw.size);
	gpucap_region_detach(r);
}

static void repair_sets_a_stuck_total_to_the_ledgers(void **state)
{
	(void)state;
	const char *path = scratch_path("stuck");
	gpucap_region *r = test_attach_claim(path);
	int device = gpucap_region_device_register(r, GPU, 256 * MiB, 0);
	assert_true(device >= 0);
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, 3 * MiB), GPUCAP_OK);
	struct raw raw = raw_open(path);
	struct device_entry *entry = (struct device_entry *)(raw.base + raw.geo.devices_offset) + device;
	uint64_t charged = raw_charged(&raw, device);
	atomic_store(&entry->charge, charge_word(charged + 40 * MiB, 0)); /* damage */
	atomic_store(raw_state(&raw, (uint32_t)gpucap_region_slot_index(r)), 9);

	gpucap_region *tool = test_attach(path);
	struct gpucap_repair_report report;
	assert_int_equal(gpucap_region_repair(tool, &report), GPUCAP_OK);
	assert_int_equal(report.slot_states_repaired, 1);
	assert_int_equal(report.devices_repaired, 1);
	assert_int_equal(report.bytes_removed, 40 * MiB);
	assert_int_equal(report.live_negative_ledgers, 0);
	assert_int_equal(raw_charged(&raw, device), charged);
	assert_int_equal(atomic_load(raw_state(&raw, (uint32_t)gpucap_region_slot_index(r))), 1);
	gpucap_region_detach(tool);
	munmap(raw.base, raw.size);
	gpucap_region_detach(r);
}

static void hostile_lane_values_do_not_overflow_a_snapshot(void **state)
{
	(void)state;
	const char *path = scratch_path("hostile-sums");
	gpucap_region *r = test_attach_claim(path);
	int device = gpucap_region_device_register(r, GPU, 256 * MiB, 0);
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, MiB), GPUCAP_OK);
	struct raw raw = raw_open(path);
	uint32_t slot = (uint32_t)gpucap_region_slot_index(r);
	for (uint32_t lane = 0; lane < raw.geo.lanes; lane++) {
		struct lane_device *ld = raw_lane_device(&raw, slot, lane, (uint32_t)device);
		atomic_store(&ld->credit, lane % 2 ? INT64_MAX : INT64_MIN);
		for (unsigned kind = 0; kind < GPUCAP_KIND_COUNT; kind++)
			atomic_store(&ld->kind_bytes[kind], INT64_MAX);
		atomic_store(&ld->granted, granted_word(((int64_t)1 << 46), 0));
	}
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_non_null(s);
	assert_false(s->consistent); /* the ledgers do not add up to the total */
	assert_int_equal(s->processes[0].devices[device].kind_bytes[GPUCAP_KIND_DATA], INT64_MAX);
	gpucap_snapshot_free(s);
	munmap(raw.base, raw.size);
	gpucap_region_abandon(r); /* the lanes are garbage: do not return them */
}

static void an_attach_retry_backs_off_on_the_callers_clock(void **state)
{
	(void)state;
	struct gpucap_attach_retry retry = {0, 0};
	const uint64_t s = UINT64_C(1000000000);
	assert_false(gpucap_attach_retry_due(&retry, 100 * s)); /* starts the clock */
	assert_false(gpucap_attach_retry_due(&retry, 100 * s + s / 2));
	assert_true(gpucap_attach_retry_due(&retry, 101 * s));
	assert_false(gpucap_attach_retry_due(&retry, 101 * s)); /* one caller per due time */
	assert_false(gpucap_attach_retry_due(&retry, 102 * s));
	assert_true(gpucap_attach_retry_due(&retry, 103 * s));
	uint64_t now = 103 * s;
	unsigned granted = 2;
	for (int i = 0; i < 10000; i++, now += s)
		granted += gpucap_attach_retry_due(&retry, now);
	assert_int_equal(granted, GPUCAP_ATTACH_RETRIES);
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
	    cmocka_unit_test(a_region_with_two_names_is_refused),
	    cmocka_unit_test(existing_only_never_initialises_an_empty_file),
	    cmocka_unit_test(a_dead_slot_with_a_damaged_state_is_reclaimed),
	    cmocka_unit_test(a_negative_ledger_in_a_dead_slot_never_raises_the_total),
	    cmocka_unit_test(repair_sets_a_stuck_total_to_the_ledgers),
	    cmocka_unit_test(hostile_lane_values_do_not_overflow_a_snapshot),
	    cmocka_unit_test(an_attach_retry_backs_off_on_the_callers_clock),
	};
	return cmocka_run_group_tests_name("region damage", tests, NULL, teardown);
}
