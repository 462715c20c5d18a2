/* SPDX-License-Identifier: Apache-2.0 */
/* Reclaiming dead slots from many threads of one process at once: each dead
 * slot is returned exactly once, whatever the number of reclaimers (an OFD
 * lease cannot tell the threads of one process apart). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "region_peek.h"
#include "test_support.h"

#define MiB          (UINT64_C(1) << 20)
#define GPU          "GPU-7ec1a100-0000-0000-0000-000000000001"
#define DEAD         200
#define RECLAIMERS   8
#define DEAD_HOLDING (4 * MiB)
#define LIVE_HOLDING (100 * MiB)
#define ROUNDS       10

static gpucap_region *attach_big(const char *path)
{
	struct gpucap_region_options options = {.path = path, .slot_capacity = 256, .device_capacity = 4};
	gpucap_region *r = NULL;
	char err[512];
	if (gpucap_region_attach(&options, &r, err, sizeof(err)) != GPUCAP_OK)
		fail_msg("attach: %s", err);
	return r;
}

/* Make dead slots the way dead processes leave them: LIVE, holding bytes on
 * the device, and no lease (nobody holds it). Written through the file
 * format so that no sweep by a process start can reclaim them first. */
static void make_dead_slots(const char *path, int device, uint32_t own, uint32_t count)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	assert_true(base != MAP_FAILED);
	const struct region_header *h = (const struct region_header *)base;
	struct region_geometry geo = region_geometry_for(h->device_capacity, h->slot_capacity);
	struct device_entry *entry = (struct device_entry *)(base + geo.devices_offset) + device;
	for (uint32_t slot = 0, made = 0; made < count; slot++) {
		if (slot == own)
			continue;
		made++;
		uint8_t *slot_base = base + geo.slots_offset + (uint64_t)slot * geo.slot_size;
		struct lane_device *lane0 = (struct lane_device *)(slot_base + sizeof(struct slot_header) +
		                                                   sizeof(struct lane_header)) +
		                            device;
		atomic_store(&lane0->granted, granted_word((int64_t)DEAD_HOLDING, 1));
		atomic_fetch_add(&entry->charge, charge_word(DEAD_HOLDING, 0));
		atomic_store((_Atomic uint32_t *)(base + geo.slot_states_offset) + slot, 1);
	}
	munmap(base, (size_t)st.st_size);
}

struct reclaimer {
	gpucap_region *region;
	pthread_barrier_t *start;
	struct gpucap_reclaim_report report;
};

static void *reclaim(void *arg)
{
	struct reclaimer *self = arg;
	pthread_barrier_wait(self->start);
	gpucap_region_reclaim_dead(self->region, &self->report);
	return NULL;
}

static void reclaim_at_once(gpucap_region *r);

static void threads_of_one_process_reclaim_each_dead_slot_once(void **state)
{
	(void)state;
	const char *path = scratch_path("reclaim-threads");
	gpucap_region *r = attach_big(path);
	assert_int_equal(gpucap_region_claim_slot(r, NULL, NULL, 0), GPUCAP_OK);
	int device = gpucap_region_device_register(r, GPU, 2048 * MiB, 0);
	assert_true(device >= 0);
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, LIVE_HOLDING), GPUCAP_OK);
	uint32_t own = (uint32_t)gpucap_region_slot_index(r);
	struct region_peek peek = {0};
	assert_int_equal(region_peek_open(&peek, path), 0);
	const struct region_header *header = (const struct region_header *)peek.base;
	/* Several rounds: one round of a racy reclaim can come out right. */
	for (unsigned round = 1; round <= ROUNDS; round++) {
		make_dead_slots(path, device, own, DEAD);
		reclaim_at_once(r);
		assert_int_equal(atomic_load(&header->reclaimed_slots_total), round * DEAD);
		assert_int_equal(atomic_load(&header->underflows), 0);
		/* What the live process holds is still charged: the cap still holds it. */
		assert_int_equal(region_peek_charged(&peek, device), LIVE_HOLDING);
	}
	gpucap_release(r, device, GPUCAP_KIND_DATA, LIVE_HOLDING);
	gpucap_region_return_credit(r, device);
	assert_int_equal(region_peek_charged(&peek, device), 0);
	gpucap_region_detach(r);
}

/* 8 threads reclaim at once; together they return each dead slot once. */
static void reclaim_at_once(gpucap_region *r)
{
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, RECLAIMERS);
	struct reclaimer reclaimers[RECLAIMERS];
	pthread_t threads[RECLAIMERS];
	for (int i = 0; i < RECLAIMERS; i++) {
		memset(&reclaimers[i], 0, sizeof(reclaimers[i]));
		reclaimers[i].region = r;
		reclaimers[i].start = &start;
		assert_int_equal(pthread_create(&threads[i], NULL, reclaim, &reclaimers[i]), 0);
	}
	uint64_t slots = 0, bytes = 0;
	for (int i = 0; i < RECLAIMERS; i++) {
		pthread_join(threads[i], NULL);
		slots += reclaimers[i].report.slots;
		bytes += reclaimers[i].report.bytes;
	}
	pthread_barrier_destroy(&start);
	assert_int_equal(slots, DEAD);
	assert_int_equal(bytes, DEAD * DEAD_HOLDING);
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
	    cmocka_unit_test(threads_of_one_process_reclaim_each_dead_slot_once),
	};
	return cmocka_run_group_tests_name("region reclaim", tests, NULL, teardown);
}
