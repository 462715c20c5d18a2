/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the region's SM share words: the GCRA virtual clock, the
 * controller lease, the published state, and what each does with corrupt
 * values in the file. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"
#include "test_support.h"

#define GPU0 "GPU-00000000-1111-2222-3333-444444444444"
#define MS   UINT64_C(1000000)
#define SEC  UINT64_C(1000000000)
/* A "now" far from 0, as CLOCK_MONOTONIC is on a running machine. */
#define T0 (UINT64_C(5000) * SEC)

/* The file's device entry, mapped on its own (as a corrupting writer would). */
struct raw {
	void *map;
	size_t len;
	struct device_entry *entry;
};

static struct raw raw_open(const char *path, int device)
{
	struct raw raw;
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	raw.len = (size_t)st.st_size;
	raw.map = mmap(NULL, raw.len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	assert_true(raw.map != MAP_FAILED);
	const struct region_header *h = raw.map;
	raw.entry = (struct device_entry *)((char *)raw.map + h->devices_offset +
	                                    (uint64_t)device * sizeof(struct device_entry));
	return raw;
}

static void raw_close(struct raw *raw)
{
	munmap(raw->map, raw->len);
}

static gpucap_region *region_with_device(const char *name, uint32_t sm, int *device)
{
	gpucap_region *r = test_attach_claim(scratch_path(name));
	*device = gpucap_region_device_register(r, GPU0, GPUCAP_UNLIMITED, sm);
	assert_true(*device >= 0);
	return r;
}

static void charge_follows_gcra(void **state)
{
	(void)state;
	int d;
	gpucap_region *r = region_with_device("gcra", 30, &d);
	assert_int_equal(gpucap_region_sm_tat(r, d, T0), 0);

	/* 3 ms busy at 30%: the clock moves 10 ms past the phase start. */
	uint64_t tat = gpucap_region_sm_charge(r, d, T0, 3 * MS, 300000, T0 + 3 * MS);
	assert_int_equal(tat, T0 + 10 * MS);
	/* A phase that started before the clock (a peer ran at the same time)
	 * adds to it. */
	tat = gpucap_region_sm_charge(r, d, T0 + 1 * MS, 3 * MS, 300000, T0 + 4 * MS);
	assert_int_equal(tat, T0 + 20 * MS);
	/* One that starts after it counts from its own start. */
	tat = gpucap_region_sm_charge(r, d, T0 + 50 * MS, 1 * MS, 500000, T0 + 51 * MS);
	assert_int_equal(tat, T0 + 52 * MS);
	/* Duty 0 or beyond 100% counts as 100%. */
	tat = gpucap_region_sm_charge(r, d, T0 + 60 * MS, 1 * MS, 0, T0 + 61 * MS);
	assert_int_equal(tat, T0 + 61 * MS);
	tat = gpucap_region_sm_charge(r, d, T0 + 70 * MS, 1 * MS, 5000000, T0 + 71 * MS);
	assert_int_equal(tat, T0 + 71 * MS);
	assert_int_equal(gpucap_region_sm_tat(r, d, T0 + 71 * MS), T0 + 71 * MS);

	struct gpucap_sm_state st;
	assert_true(gpucap_region_sm_read(r, d, T0 + 71 * MS, &st));
	assert_int_equal(st.busy_ns, 9 * MS);
	assert_int_equal(st.sm_limit, 30);
	assert_string_equal(st.uuid, GPU0);
	gpucap_region_detach(r);
}

static void debt_is_bounded(void **state)
{
	(void)state;
	int d;
	gpucap_region *r = region_with_device("debt", 1, &d);
	/* 100 ms at 1% would be 10 s ahead: capped at one debt. */
	uint64_t tat = gpucap_region_sm_charge(r, d, T0, 100 * MS, 10000, T0 + 100 * MS);
	assert_int_equal(tat, T0 + 100 * MS + GPUCAP_SM_MAX_DEBT_NS);
	/* A busy time beyond the maximum is counted as the maximum. */
	tat = gpucap_region_sm_charge(r, d, T0 + 10 * SEC, UINT64_MAX / 2, 1000000, T0 + 10 * SEC);
	assert_int_equal(tat, T0 + 10 * SEC + GPUCAP_SM_MAX_DEBT_NS);
	struct gpucap_sm_state st;
	assert_true(gpucap_region_sm_read(r, d, T0, &st));
	assert_int_equal(st.busy_ns, 100 * MS + GPUCAP_SM_MAX_BUSY_NS);
	gpucap_region_detach(r);
}

static void corrupt_clock_is_pulled_back_once(void **state)
{
	(void)state;
	int d;
	const char *path = scratch_path("corrupt-tat");
	gpucap_region *r = test_attach_claim(path);
	d = gpucap_region_device_register(r, GPU0, GPUCAP_UNLIMITED, 30);
	struct raw raw = raw_open(path, d);
	atomic_store(&raw.entry->sm_tat_ns, UINT64_MAX - 5);

	/* An observer clamps its answer and writes nothing. */
	struct gpucap_region_options o = {.path = path, .observer = true};
	gpucap_region *obs = NULL;
	assert_int_equal(gpucap_region_attach(&o, &obs, NULL, 0), GPUCAP_OK);
	assert_int_equal(gpucap_region_sm_tat(obs, d, T0), T0 + GPUCAP_SM_MAX_DEBT_NS);
	assert_int_equal(atomic_load(&raw.entry->sm_tat_ns), UINT64_MAX - 5);
	assert_int_equal(gpucap_region_sm_charge(obs, d, T0, MS, 500000, T0), 0);

	/* A writer repairs the word: at most one debt of waiting, once. */
	assert_int_equal(gpucap_region_sm_tat(r, d, T0), T0 + GPUCAP_SM_MAX_DEBT_NS);
	assert_int_equal(atomic_load(&raw.entry->sm_tat_ns), T0 + GPUCAP_SM_MAX_DEBT_NS);
	assert_int_equal(gpucap_region_sm_tat(r, d, T0 + 2 * GPUCAP_SM_MAX_DEBT_NS),
	                 T0 + GPUCAP_SM_MAX_DEBT_NS);

	/* A charge on top of a corrupt clock starts from the bound too. */
	atomic_store(&raw.entry->sm_tat_ns, UINT64_MAX);
	uint64_t tat = gpucap_region_sm_charge(r, d, T0, MS, 1000000, T0);
	assert_int_equal(tat, T0 + GPUCAP_SM_MAX_DEBT_NS);

	/* Other corrupt words: out-of-range limit, duty, integral and source
	 * read as unset or no cap. */
	atomic_store(&raw.entry->sm_limit, 250);
	atomic_store(&raw.entry->sm_duty_ppm, 7000000);
	atomic_store(&raw.entry->sm_integral_ppm, INT32_MIN);
	atomic_store(&raw.entry->sm_state, 0xffffffffu);
	atomic_store(&raw.entry->sm_share_ppm, 0xffffffffu);
	struct gpucap_sm_state st;
	assert_true(gpucap_region_sm_read(obs, d, T0, &st));
	assert_int_equal(st.sm_limit, 100);
	assert_int_equal(st.duty_ppm, 0);
	assert_int_equal(st.integral_ppm, 0);
	assert_int_equal(st.share_source, GPUCAP_SM_SOURCE_NONE);
	assert_int_equal(st.share_ppm, 0);
	assert_int_equal(gpucap_region_sm_limit(obs, d), 100);
	assert_int_equal(gpucap_region_sm_duty(obs, d), 0);
	/* The first source past the known ones is no figure either. */
	atomic_store(&raw.entry->sm_state, (uint32_t)GPUCAP_SM_SOURCE_LAUNCHES + 1u);
	atomic_store(&raw.entry->sm_share_ppm, 300000u);
	assert_true(gpucap_region_sm_read(obs, d, T0, &st));
	assert_int_equal(st.share_source, GPUCAP_SM_SOURCE_NONE);
	assert_int_equal(st.share_ppm, 0);

	raw_close(&raw);
	gpucap_region_detach(obs);
	gpucap_region_detach(r);
}

static void lease_elects_one_owner(void **state)
{
	(void)state;
	const char *path = scratch_path("lease");
	gpucap_region *a = test_attach_claim(path);
	gpucap_region *b = test_attach_claim(path);
	int d = gpucap_region_device_register(a, GPU0, GPUCAP_UNLIMITED, 30);
	uint64_t ttl = SEC;

	assert_true(gpucap_region_sm_lease(a, d, T0, ttl));
	assert_false(gpucap_region_sm_lease(b, d, T0 + 500 * MS, ttl));
	/* The holder renews. */
	assert_true(gpucap_region_sm_lease(a, d, T0 + 900 * MS, ttl));
	assert_false(gpucap_region_sm_lease(b, d, T0 + 1800 * MS, ttl));
	/* A holder that stops renewing (dead) is replaced after the TTL. */
	assert_true(gpucap_region_sm_lease(b, d, T0 + 1901 * MS, ttl));
	assert_false(gpucap_region_sm_lease(a, d, T0 + 2000 * MS, ttl));
	struct gpucap_sm_state st;
	assert_true(gpucap_region_sm_read(a, d, T0 + 2000 * MS, &st));
	assert_int_equal(st.lease_slot, gpucap_region_slot_index(b));
	assert_int_equal(st.lease_until_ns, T0 + 2901 * MS);

	/* A lease claiming to last for hours is corrupt: anyone takes it. */
	struct raw raw = raw_open(path, d);
	atomic_store(&raw.entry->sm_lease, ((T0 / MS + 3600 * 1000) << 16) | 7);
	assert_true(gpucap_region_sm_lease(a, d, T0 + 2100 * MS, ttl));
	raw_close(&raw);

	/* Handles without a slot never hold it. */
	gpucap_region *noslot = test_attach(path);
	assert_false(gpucap_region_sm_lease(noslot, d, T0 + 60 * SEC, ttl));
	gpucap_region_detach(noslot);
	gpucap_region_detach(b);
	gpucap_region_detach(a);
}

static void publish_and_snapshot(void **state)
{
	(void)state;
	int d;
	gpucap_region *r = region_with_device("publish", 40, &d);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_non_null(s);
	/* Before any controller: the feed-forward duty is the cap, no share. */
	assert_int_equal(s->devices[0].sm_duty_ppm, 400000);
	assert_false(s->devices[0].sm_share_known);
	gpucap_snapshot_free(s);

	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
	assert_true(gpucap_region_sm_lease(r, d, now, SEC));
	gpucap_region_sm_publish(r, d, 550000, 2000000, GPUCAP_SM_SOURCE_NVML, GPUCAP_SM_FLAG_OPEN_LOOP,
	                         -3000000);
	struct gpucap_sm_state st;
	assert_true(gpucap_region_sm_read(r, d, now, &st));
	assert_int_equal(st.duty_ppm, 550000);
	assert_int_equal(st.share_ppm, GPUCAP_SM_PPM); /* clamped */
	assert_int_equal(st.share_source, GPUCAP_SM_SOURCE_NVML);
	assert_int_equal(st.flags, GPUCAP_SM_FLAG_OPEN_LOOP);
	/* A share counted by launches beside a neighbour reads back as such. */
	gpucap_region_sm_publish(r, d, 550000, 2000000, GPUCAP_SM_SOURCE_LAUNCHES, GPUCAP_SM_FLAG_OPEN_LOOP,
	                         -3000000);
	assert_true(gpucap_region_sm_read(r, d, now, &st));
	assert_int_equal(st.share_source, GPUCAP_SM_SOURCE_LAUNCHES);
	assert_int_equal(st.share_ppm, GPUCAP_SM_PPM);
	assert_int_equal(st.integral_ppm, -(int32_t)GPUCAP_SM_PPM);
	assert_int_equal(gpucap_region_sm_duty(r, d), 550000);

	/* The work weight: unset until published, clamped into its range. */
	assert_int_equal(st.weight_ppm, 0);
	gpucap_region_sm_publish_weight(r, d, 1174000);
	assert_true(gpucap_region_sm_read(r, d, now, &st));
	assert_int_equal(st.weight_ppm, 1174000);
	gpucap_region_sm_publish_weight(r, d, 500000);
	assert_true(gpucap_region_sm_read(r, d, now, &st));
	assert_int_equal(st.weight_ppm, GPUCAP_SM_WEIGHT_MIN_PPM);
	gpucap_region_sm_publish_weight(r, d, 9000000);
	assert_true(gpucap_region_sm_read(r, d, now, &st));
	assert_int_equal(st.weight_ppm, GPUCAP_SM_WEIGHT_MAX_PPM);

	s = gpucap_region_snapshot(r);
	assert_non_null(s);
	assert_int_equal(s->devices[0].sm_duty_ppm, 550000);
	assert_true(s->devices[0].sm_share_known);
	assert_int_equal(s->devices[0].sm_share_ppm, GPUCAP_SM_PPM);
	assert_int_equal(s->devices[0].sm_share_source, GPUCAP_SM_SOURCE_LAUNCHES);
	gpucap_snapshot_free(s);

	/* No cap: the view shows a full duty whatever was published. */
	assert_int_equal(gpucap_region_set_sm_limit(r, d, 0), GPUCAP_OK);
	s = gpucap_region_snapshot(r);
	assert_int_equal(s->devices[0].sm_duty_ppm, GPUCAP_SM_PPM);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
}

static uint64_t monotonic_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec;
}

/* The device view a fresh snapshot gives. */
static struct gpucap_device_view view_of(gpucap_region *r)
{
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_non_null(s);
	assert_true(s->device_count >= 1);
	struct gpucap_device_view v = s->devices[0];
	gpucap_snapshot_free(s);
	return v;
}

static void asked_share_published_and_read(void **state)
{
	(void)state;
	const char *path = scratch_path("asked");
	gpucap_region *r = test_attach_claim(path);
	int d = gpucap_region_device_register(r, GPU0, GPUCAP_UNLIMITED, 30);
	assert_true(d >= 0);
	struct gpucap_sm_state st;
	assert_true(gpucap_region_sm_read(r, d, T0, &st));
	assert_int_equal(st.asked_ppm, 0); /* never published */

	/* The snapshot judges freshness by the real monotonic clock: a lease
	 * long enough that a slow machine cannot outlive it during the test. */
	uint64_t now = monotonic_now();
	assert_true(gpucap_region_sm_lease(r, d, now, 30 * SEC));

	/* Held at the cap: delivered 30%, asked 75%. */
	gpucap_region_sm_publish(r, d, 300000, 300000, GPUCAP_SM_SOURCE_GATE, 0, 0);
	gpucap_region_sm_publish_asked(r, d, 750000);
	assert_true(gpucap_region_sm_read(r, d, now, &st));
	assert_int_equal(st.asked_ppm, 750000);
	assert_int_equal(st.share_ppm, 300000);
	struct gpucap_device_view v = view_of(r);
	assert_true(v.sm_share_known);
	assert_int_equal(v.sm_share_ppm, 300000);
	assert_true(v.sm_asked_known);
	assert_int_equal(v.sm_asked_ppm, 750000);

	/* More than the whole GPU is clamped to it. */
	gpucap_region_sm_publish_asked(r, d, 5000000);
	assert_true(gpucap_region_sm_read(r, d, now, &st));
	assert_int_equal(st.asked_ppm, GPUCAP_SM_PPM);

	/* An observer (read-only) publishes nothing. */
	struct gpucap_region_options o = {.path = path, .observer = true};
	gpucap_region *obs = NULL;
	assert_int_equal(gpucap_region_attach(&o, &obs, NULL, 0), GPUCAP_OK);
	gpucap_region_sm_publish_asked(obs, d, 120000);
	assert_true(gpucap_region_sm_read(obs, d, now, &st));
	assert_int_equal(st.asked_ppm, GPUCAP_SM_PPM);

	/* A hostile value written straight into the file is clamped on read,
	 * by sm_read and by the snapshot. */
	struct raw raw = raw_open(path, d);
	atomic_store(&raw.entry->sm_asked_ppm, 0xffffffffu);
	assert_true(gpucap_region_sm_read(obs, d, now, &st));
	assert_int_equal(st.asked_ppm, GPUCAP_SM_PPM);
	v = view_of(obs);
	assert_true(v.sm_asked_known);
	assert_int_equal(v.sm_asked_ppm, GPUCAP_SM_PPM);
	atomic_store(&raw.entry->sm_asked_ppm, GPUCAP_SM_PPM + 1);
	assert_true(gpucap_region_sm_read(obs, d, now, &st));
	assert_int_equal(st.asked_ppm, GPUCAP_SM_PPM);

	/* A 0 beside a non-zero share: a publisher that does not write demand
	 * (a file made before the word, an older library). Unknown. */
	atomic_store(&raw.entry->sm_asked_ppm, 0);
	v = view_of(r);
	assert_true(v.sm_share_known);
	assert_false(v.sm_asked_known);
	assert_int_equal(v.sm_asked_ppm, 0);

	/* Idle work: nothing delivered, nothing asked. A known 0. */
	gpucap_region_sm_publish(r, d, 300000, 0, GPUCAP_SM_SOURCE_GATE, 0, 0);
	v = view_of(r);
	assert_true(v.sm_share_known);
	assert_true(v.sm_asked_known);
	assert_int_equal(v.sm_asked_ppm, 0);

	/* Used less than the cap: asked equals delivered. */
	gpucap_region_sm_publish(r, d, 300000, 120000, GPUCAP_SM_SOURCE_NVML, 0, 0);
	gpucap_region_sm_publish_asked(r, d, 120000);
	v = view_of(r);
	assert_int_equal(v.sm_share_ppm, 120000);
	assert_true(v.sm_asked_known);
	assert_int_equal(v.sm_asked_ppm, 120000);

	/* No share measured: the asked figure is not shown either. */
	gpucap_region_sm_publish(r, d, 300000, 0, GPUCAP_SM_SOURCE_NONE, 0, 0);
	v = view_of(r);
	assert_false(v.sm_share_known);
	assert_false(v.sm_asked_known);
	assert_int_equal(v.sm_asked_ppm, 0);

	raw_close(&raw);
	gpucap_region_detach(obs);
	gpucap_region_detach(r);
}

struct charger {
	gpucap_region *r;
	int device;
};

#define THREADS 8
#define CHARGES 2000

static void *charge_many(void *arg)
{
	struct charger *c = arg;
	for (int i = 0; i < CHARGES; i++)
		gpucap_region_sm_charge(c->r, c->device, T0, 1000, 500000, T0);
	return NULL;
}

static void concurrent_charges_all_land(void **state)
{
	(void)state;
	const char *path = scratch_path("threads");
	gpucap_region *r = test_attach_claim(path);
	int d = gpucap_region_device_register(r, GPU0, GPUCAP_UNLIMITED, 50);
	pthread_t th[THREADS];
	struct charger c = {r, d};
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, charge_many, &c), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	/* Each charge is 1 us at 50%: 2 us of clock, none lost. */
	assert_int_equal(gpucap_region_sm_tat(r, d, T0), T0 + (uint64_t)THREADS * CHARGES * 2000);
	struct gpucap_sm_state st;
	assert_true(gpucap_region_sm_read(r, d, T0, &st));
	assert_int_equal(st.busy_ns, (uint64_t)THREADS * CHARGES * 1000);
	gpucap_region_detach(r);
}

static void invalid_indices_are_refused(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("invalid"));
	struct gpucap_sm_state st;
	assert_false(gpucap_region_sm_read(r, 0, T0, &st)); /* no device registered */
	assert_false(gpucap_region_sm_read(r, -1, T0, &st));
	assert_false(gpucap_region_sm_read(r, 1000, T0, &st));
	assert_int_equal(gpucap_region_sm_limit(r, 1000), 100);
	assert_int_equal(gpucap_region_sm_duty(r, -1), 0);
	assert_int_equal(gpucap_region_sm_tat(r, 3, T0), 0);
	assert_int_equal(gpucap_region_sm_charge(r, 3, T0, MS, 1, T0), 0);
	assert_false(gpucap_region_sm_lease(r, 3, T0, SEC));
	gpucap_region_sm_publish(r, 3, 1, 1, GPUCAP_SM_SOURCE_GATE, 0, 0);
	gpucap_region_sm_publish_weight(r, 3, 1200000);
	gpucap_region_sm_publish_asked(r, 3, 500000);
	gpucap_region_sm_publish_asked(r, -1, 500000);
	gpucap_region_sm_publish_asked(NULL, 0, 500000);
	assert_int_equal(gpucap_region_sm_limit(NULL, 0), 100);
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
	    cmocka_unit_test(charge_follows_gcra),
	    cmocka_unit_test(debt_is_bounded),
	    cmocka_unit_test(corrupt_clock_is_pulled_back_once),
	    cmocka_unit_test(lease_elects_one_owner),
	    cmocka_unit_test(publish_and_snapshot),
	    cmocka_unit_test(asked_share_published_and_read),
	    cmocka_unit_test(concurrent_charges_all_land),
	    cmocka_unit_test(invalid_indices_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
