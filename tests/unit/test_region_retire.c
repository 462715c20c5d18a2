/* SPDX-License-Identifier: Apache-2.0 */
/* Retiring a slot as its process exits, and the refusal counters. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "test_support.h"

#define MiB  (UINT64_C(1) << 20)
#define GPU0 "GPU-00000000-1111-2222-3333-444444444444"

struct totals {
	uint64_t charged;
	uint32_t processes;
	uint64_t refusals_total;
};

static struct totals totals(gpucap_region *r, int device)
{
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_non_null(s);
	struct totals t = {0, s->process_count, 0};
	for (uint32_t i = 0; i < s->device_count; i++)
		if (s->devices[i].index == device) {
			t.charged = s->devices[i].charged_bytes;
			t.refusals_total = s->devices[i].refusals_total;
		}
	gpucap_snapshot_free(s);
	return t;
}

static gpucap_region *attach_slots(const char *path, uint32_t slots)
{
	struct gpucap_region_options options = {.path = path, .slot_capacity = slots, .device_capacity = 4};
	gpucap_region *r = NULL;
	assert_int_equal(gpucap_region_attach(&options, &r, NULL, 0), GPUCAP_OK);
	return r;
}

static void retire_returns_every_byte_once(void **state)
{
	(void)state;
	const char *path = scratch_path("retire-once");
	gpucap_region *me = test_attach_claim(path);
	gpucap_region *peer = test_attach_claim(path);
	int dev = gpucap_region_device_register(me, GPU0, 64 * MiB, 100);
	assert_true(dev >= 0);
	assert_int_equal(gpucap_reserve(peer, dev, GPUCAP_KIND_DATA, 5 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(me, dev, GPUCAP_KIND_CONTEXT, 3 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(me, dev, GPUCAP_KIND_DATA, 100 << 10), GPUCAP_OK); /* with credit */
	gpucap_release(me, dev, GPUCAP_KIND_DATA, 50 << 10);

	assert_true(gpucap_region_retire(me));
	struct totals t = totals(peer, dev);
	assert_int_equal(t.processes, 1); /* no dead slot: only the peer */
	assert_int_equal(t.charged, 5 * MiB);

	/* Later calls through the retired handle: a release returns nothing
	 * (its bytes went back), a reservation fails, whether it would need
	 * the device total or idle credit. */
	gpucap_release(me, dev, GPUCAP_KIND_DATA, 50 << 10);
	assert_int_not_equal(gpucap_reserve(me, dev, GPUCAP_KIND_DATA, 4 << 10), GPUCAP_OK);
	assert_int_not_equal(gpucap_reserve(me, dev, GPUCAP_KIND_DATA, 8 * MiB), GPUCAP_OK);
	gpucap_region_return_credit(me, dev);
	assert_false(gpucap_region_retire(me)); /* once */
	struct gpucap_reclaim_report report;
	assert_int_equal(gpucap_region_reclaim_dead(peer, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 0);
	t = totals(peer, dev);
	assert_int_equal(t.charged, 5 * MiB);
	assert_int_equal(t.processes, 1);

	gpucap_region_detach(me); /* returns nothing again */
	assert_int_equal(totals(peer, dev).charged, 5 * MiB);
	gpucap_region_detach(peer);
}

/* The retired slot is not handed out while its owner lives (its threads may
 * still write into it); once the owner is gone its next owner starts
 * clean. */
static void a_retired_slot_waits_for_its_owner_to_go(void **state)
{
	(void)state;
	const char *path = scratch_path("retire-reuse");
	gpucap_region *me = attach_slots(path, 2);
	assert_int_equal(gpucap_region_claim_slot(me, NULL, NULL, 0), GPUCAP_OK);
	gpucap_region *other = attach_slots(path, 2);
	assert_int_equal(gpucap_region_claim_slot(other, NULL, NULL, 0), GPUCAP_OK);
	int dev = gpucap_region_device_register(me, GPU0, 16 * MiB, 100);
	assert_int_equal(gpucap_reserve(me, dev, GPUCAP_KIND_DATA, 6 * MiB), GPUCAP_OK);
	assert_true(gpucap_region_note_refusal(me, dev));
	assert_true(gpucap_region_retire(me));
	assert_false(gpucap_region_note_refusal(me, dev));

	gpucap_region *next = attach_slots(path, 2);
	assert_int_equal(gpucap_region_claim_slot(next, NULL, NULL, 0), GPUCAP_ERR_FULL);
	/* The owner goes (its descriptor, and so its lease, with it). */
	gpucap_region_abandon(me);
	assert_int_equal(gpucap_region_claim_slot(next, NULL, NULL, 0), GPUCAP_OK);
	/* Its lanes were cleared: the whole limit is there, exactly. */
	assert_int_equal(gpucap_reserve(next, dev, GPUCAP_KIND_DATA, 16 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(next, dev, GPUCAP_KIND_DATA, 1), GPUCAP_ERR_OVER_LIMIT);
	gpucap_release(next, dev, GPUCAP_KIND_DATA, 16 * MiB);
	gpucap_region_return_credit(next, dev);
	struct gpucap_snapshot *s = gpucap_region_snapshot(other);
	assert_non_null(s);
	assert_int_equal(s->process_count, 2);
	for (uint32_t p = 0; p < s->process_count; p++)
		assert_int_equal(s->processes[p].refusals, 0); /* a new owner's count starts at 0 */
	assert_int_equal(s->devices[0].charged_bytes, 0);
	assert_int_equal(s->devices[0].refusals_total, 1); /* the device keeps its history */
	gpucap_snapshot_free(s);
	gpucap_region_detach(next);
	gpucap_region_detach(other);
}

static void refusals_are_counted_per_process_and_device(void **state)
{
	(void)state;
	const char *path = scratch_path("refusals");
	gpucap_region *a = test_attach_claim(path);
	gpucap_region *b = test_attach_claim(path);
	int dev = gpucap_region_device_register(a, GPU0, 16 * MiB, 100);
	for (int i = 0; i < 3; i++)
		assert_true(gpucap_region_note_refusal(a, dev));
	assert_true(gpucap_region_note_refusal(b, dev));
	struct gpucap_snapshot *s = gpucap_region_snapshot(a);
	assert_non_null(s);
	for (uint32_t p = 0; p < s->process_count; p++)
		assert_int_equal(s->processes[p].refusals, s->processes[p].self ? 3 : 1);
	assert_int_equal(s->devices[0].refusals_total, 4);
	gpucap_snapshot_free(s);
	gpucap_region *observer = NULL;
	struct gpucap_region_options options = {.path = path, .observer = true};
	assert_int_equal(gpucap_region_attach(&options, &observer, NULL, 0), GPUCAP_OK);
	assert_false(gpucap_region_note_refusal(observer, dev));
	gpucap_region_detach(observer);
	gpucap_region_detach(b);
	gpucap_region_detach(a);
}

/* Threads keep reserving and releasing while the slot is retired under
 * them: whatever interleaving, the device ends with nothing charged by this
 * slot, and no thread waits for lanes that are never given back. */
struct churn {
	gpucap_region *r;
	int dev;
	atomic_bool *stop;
	uint64_t seed;
};

static void *churn(void *arg)
{
	struct churn *c = arg;
	while (!atomic_load(c->stop)) {
		uint64_t bytes = (test_random(&c->seed) % (3 * MiB)) + 1;
		if (gpucap_reserve(c->r, c->dev, GPUCAP_KIND_DATA, bytes) == GPUCAP_OK)
			gpucap_release(c->r, c->dev, GPUCAP_KIND_DATA, bytes);
	}
	return NULL;
}

static void retire_under_running_threads(void **state)
{
	(void)state;
	for (int round = 0; round < 20; round++) {
		const char *path = scratch_path(round % 2 ? "retire-threads-a" : "retire-threads-b");
		gpucap_region *me = test_attach_claim(path);
		gpucap_region *peer = test_attach_claim(path);
		int dev = gpucap_region_device_register(me, GPU0, 32 * MiB, 100);
		/* 2 MiB: a grant that large takes no idle credit along. */
		assert_int_equal(gpucap_reserve(peer, dev, GPUCAP_KIND_DATA, 2 * MiB), GPUCAP_OK);
		assert_int_equal(gpucap_reserve(me, dev, GPUCAP_KIND_CONTEXT, 2 * MiB), GPUCAP_OK);
		enum { THREADS = 4 };
		pthread_t threads[THREADS];
		struct churn work[THREADS];
		atomic_bool stop = false;
		for (int i = 0; i < THREADS; i++) {
			work[i] = (struct churn){me, dev, &stop, (uint64_t)(round * THREADS + i + 1)};
			assert_int_equal(pthread_create(&threads[i], NULL, churn, &work[i]), 0);
		}
		sched_yield();
		bool retired = gpucap_region_retire(me);
		atomic_store(&stop, true);
		for (int i = 0; i < THREADS; i++)
			assert_int_equal(pthread_join(threads[i], NULL), 0);
		assert_true(retired);
		struct totals t = totals(peer, dev);
		assert_int_equal(t.processes, 1);
		assert_int_equal(t.charged, 2 * MiB);
		gpucap_region_detach(me);
		gpucap_release(peer, dev, GPUCAP_KIND_DATA, 2 * MiB);
		gpucap_region_detach(peer);
		assert_int_equal(unlink(path), 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(retire_returns_every_byte_once),
	    cmocka_unit_test(a_retired_slot_waits_for_its_owner_to_go),
	    cmocka_unit_test(refusals_are_counted_per_process_and_device),
	    cmocka_unit_test(retire_under_running_threads),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	scratch_remove();
	return failed;
}
