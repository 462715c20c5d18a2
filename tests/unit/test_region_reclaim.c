/* Reclaiming dead slots from many threads of one process at once: each dead
 * slot is returned exactly once, whatever the number of reclaimers. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "region_peek.h"
#include "test_support.h"

#define MiB          (UINT64_C(1) << 20)
#define GPU          "GPU-7ec1a100-0000-0000-0000-000000000001"
#define DEAD         200
#define RECLAIMERS   8
#define DEAD_HOLDING (4 * MiB)
#define LIVE_HOLDING (100 * MiB)

static gpucap_region *attach_big(const char *path)
{
	struct gpucap_region_options options = {.path = path, .slot_capacity = 256, .device_capacity = 4};
	gpucap_region *r = NULL;
	char err[512];
	if (gpucap_region_attach(&options, &r, err, sizeof(err)) != GPUCAP_OK)
		fail_msg("attach: %s", err);
	return r;
}

/* A child that takes a slot, holds bytes and dies without detaching. */
static void die_holding(const char *path)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gpucap_region *r = attach_big(path);
		if (gpucap_region_claim_slot(r, NULL, NULL, 0) != GPUCAP_OK)
			_exit(2);
		int device = gpucap_region_device_register(r, GPU, 2048 * MiB, 0);
		if (device < 0 || gpucap_reserve(r, device, GPUCAP_KIND_DATA, DEAD_HOLDING) != GPUCAP_OK)
			_exit(3);
		_exit(0); /* no detach: the slot stays LIVE with its lease gone */
	}
	assert_int_equal(wait_child(pid), 0);
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

static void threads_of_one_process_reclaim_each_dead_slot_once(void **state)
{
	(void)state;
	const char *path = scratch_path("reclaim-threads");
	gpucap_region *r = attach_big(path);
	for (int i = 0; i < DEAD; i++)
		die_holding(path);
	assert_int_equal(gpucap_region_claim_slot(r, NULL, NULL, 0), GPUCAP_OK);
	int device = gpucap_region_device_register(r, GPU, 2048 * MiB, 0);
	assert_true(device >= 0);
	assert_int_equal(gpucap_reserve(r, device, GPUCAP_KIND_DATA, LIVE_HOLDING), GPUCAP_OK);

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

	struct region_peek peek;
	assert_int_equal(region_peek_open(&peek, path), 0);
	const struct region_header *header = (const struct region_header *)peek.base;
	assert_int_equal(slots, DEAD);
	assert_int_equal(bytes, DEAD * DEAD_HOLDING);
	assert_int_equal(atomic_load(&header->underflows), 0);
	assert_int_equal(atomic_load(&header->reclaimed_slots_total), DEAD);
	/* What the live process holds is still charged: the cap still holds it. */
	assert_int_equal(region_peek_charged(&peek, device), LIVE_HOLDING);
	gpucap_release(r, device, GPUCAP_KIND_DATA, LIVE_HOLDING);
	gpucap_region_return_credit(r, device);
	assert_int_equal(region_peek_charged(&peek, device), 0);
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
	    cmocka_unit_test(threads_of_one_process_reclaim_each_dead_slot_once),
	};
	return cmocka_run_group_tests_name("region reclaim", tests, NULL, teardown);
}
