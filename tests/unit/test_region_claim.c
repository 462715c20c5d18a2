/* SPDX-License-Identifier: Apache-2.0 */
/* Claiming a slot while reclaimers work: a slot whose lease a reclaimer
 * holds is not "held by a live process". The reclaimer here is real: a
 * process of the crash-point build of the region that stops (SIGSTOP) at
 * reclaim.lease_taken, holding the dead slot's lease, until continued.
 *
 * And claiming while the table changes under the scan: the test is linked
 * with the slot lease take wrapped (--wrap=gpucap_slot_lease_take), so that
 * other processes' steps run at a chosen instant of the claimer's scan. The
 * crash-point build scans from slot 0, so the order is known. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "crash_point.h"
#include "region_peek.h"
#include "test_support.h"

#define MiB   (UINT64_C(1) << 20)
#define GPU   "GPU-c1a1e000-0000-0000-0000-000000000001"
#define SLOTS 4u

static gpucap_region *attach_small(const char *path, uint32_t wait_ms)
{
	struct gpucap_region_options options = {
	    .path = path, .slot_capacity = SLOTS, .device_capacity = 4, .init_timeout_ms = wait_ms};
	gpucap_region *r = NULL;
	char err[512] = "";
	assert_int_equal(gpucap_region_attach(&options, &r, err, sizeof(err)), GPUCAP_OK);
	return r;
}

/* In a child: claims a slot, reserves bytes in it and sends the slot's
 * index through fd. Returns the exit code for the child: it names the step
 * that failed, as an assert in a forked child would not. */
static int claim_and_reserve(const char *path, uint64_t bytes, int fd)
{
	struct gpucap_region_options options = {.path = path};
	gpucap_region *r = NULL;
	if (gpucap_region_attach(&options, &r, NULL, 0) != GPUCAP_OK ||
	    gpucap_region_claim_slot(r, NULL, NULL, 0) != GPUCAP_OK)
		return 2;
	int device = gpucap_region_device_register(r, GPU, 256 * MiB, 0);
	if (device < 0 || gpucap_reserve(r, device, GPUCAP_KIND_DATA, bytes) != GPUCAP_OK)
		return 3;
	gpucap_region_return_credit(r, device);
	int slot = gpucap_region_slot_index(r);
	if (write(fd, &slot, sizeof(slot)) != sizeof(slot))
		return 4;
	return 0;
}

/* The slot index claim_and_reserve sent through channel; closes it. */
static int received_slot(int channel[2])
{
	int slot = -1;
	assert_int_equal(read(channel[0], &slot, sizeof(slot)), sizeof(slot));
	close(channel[0]);
	close(channel[1]);
	return slot;
}

/* A child claims a slot, reserves bytes and dies without detaching. */
static int die_holding(const char *path, uint64_t bytes)
{
	int channel[2];
	assert_int_equal(pipe(channel), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(claim_and_reserve(path, bytes, channel[1]));
	assert_int_equal(wait_child(pid), 0);
	return received_slot(channel);
}

/* A reclaimer process that stops holding the lease of the first dead slot
 * it takes; returns once it is stopped there. */
static pid_t stalled_reclaimer(const char *path)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gpucap_crash_points_reset();
		gpucap_crash_points_arm_signal("reclaim.lease_taken", 1, SIGSTOP);
		struct gpucap_region_options options = {.path = path};
		gpucap_region *r = NULL;
		if (gpucap_region_attach(&options, &r, NULL, 0) != GPUCAP_OK)
			_exit(2);
		struct gpucap_reclaim_report report;
		if (gpucap_region_reclaim_dead(r, &report) != GPUCAP_OK)
			_exit(3);
		gpucap_region_detach(r);
		_exit(report.slots == 1 ? 0 : 4);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, WUNTRACED), pid);
	assert_true(WIFSTOPPED(status));
	return pid;
}

/* SLOTS - 1 live owners (handles of this process: each its own open file
 * description, so its own lease) and one dead slot holding 4 MiB. */
struct full_table {
	const char *path;
	gpucap_region *owners[SLOTS - 1];
	int device;
	int dead_slot;
};

static void fill_table(struct full_table *t, const char *name)
{
	t->path = scratch_path(name);
	for (unsigned i = 0; i < SLOTS - 1; i++) {
		t->owners[i] = attach_small(t->path, 0);
		assert_int_equal(gpucap_region_claim_slot(t->owners[i], NULL, NULL, 0), GPUCAP_OK);
	}
	t->device = gpucap_region_device_register(t->owners[0], GPU, 256 * MiB, 0);
	assert_true(t->device >= 0);
	t->dead_slot = die_holding(t->path, 4 * MiB);
	struct region_peek peek;
	memset(&peek, 0, sizeof(peek));
	assert_int_equal(region_peek_open(&peek, t->path), 0);
	assert_int_equal(region_peek_charged(&peek, t->device), 4 * MiB);
	munmap((void *)peek.base, peek.size);
}

static void empty_table(struct full_table *t)
{
	for (unsigned i = 0; i < SLOTS - 1; i++)
		gpucap_region_detach(t->owners[i]);
}

struct claimer {
	gpucap_region *region;
	_Atomic pid_t tid;
	_Atomic int done;
	gpucap_status status;
	char err[512];
};

static void *claim(void *arg)
{
	struct claimer *c = arg;
	atomic_store(&c->tid, (pid_t)syscall(SYS_gettid));
	c->status = gpucap_region_claim_slot(c->region, NULL, c->err, sizeof(c->err));
	atomic_store(&c->done, 1);
	return NULL;
}

/* Whether thread tid of this process is inside a sleep system call now. */
static bool sleeping(pid_t tid)
{
	char name[64];
	snprintf(name, sizeof(name), "/proc/self/task/%d/syscall", (int)tid);
	FILE *f = fopen(name, "r");
	if (!f)
		return false;
	long number = -1;
	bool read_one = fscanf(f, "%ld", &number) == 1;
	fclose(f);
	return read_one && (number == SYS_clock_nanosleep || number == SYS_nanosleep);
}

static void a_claim_waits_for_a_reclaimer_rather_than_reporting_full(void **state)
{
	(void)state;
	struct full_table t;
	fill_table(&t, "claim-reclaimer");
	pid_t reclaimer = stalled_reclaimer(t.path);

	/* The only slot not held by a live owner is being reclaimed: the
	 * claim must wait for it (up to 60 s here), not call the table full. */
	struct claimer c = {.region = attach_small(t.path, 60000)};
	pthread_t thread;
	assert_int_equal(pthread_create(&thread, NULL, claim, &c), 0);
	while (!atomic_load(&c.done) && !(atomic_load(&c.tid) && sleeping(atomic_load(&c.tid))))
		usleep(1000);
	bool waited = !atomic_load(&c.done);
	assert_int_equal(kill(reclaimer, SIGCONT), 0);
	pthread_join(thread, NULL);
	assert_int_equal(wait_child(reclaimer), 0); /* it reclaimed the slot, once */
	if (c.status != GPUCAP_OK)
		fprintf(stderr, "claim: %s\n", c.err);
	assert_int_equal(c.status, GPUCAP_OK);
	assert_true(waited);
	assert_int_equal(gpucap_region_slot_index(c.region), t.dead_slot);

	struct region_peek peek;
	memset(&peek, 0, sizeof(peek));
	assert_int_equal(region_peek_open(&peek, t.path), 0);
	assert_int_equal(region_peek_charged(&peek, t.device), 0); /* the dead 4 MiB returned once */
	munmap((void *)peek.base, peek.size);
	gpucap_region_detach(c.region);
	empty_table(&t);
}

static void a_stalled_reclaimer_makes_the_claim_fail_not_hang(void **state)
{
	(void)state;
	struct full_table t;
	fill_table(&t, "claim-stalled");
	pid_t reclaimer = stalled_reclaimer(t.path);

	/* Stopped for good while reclaiming: the claim gives up after its
	 * bound (1 ms here) and says why. */
	gpucap_region *r = attach_small(t.path, 1);
	char err[512] = "";
	gpucap_status status = gpucap_region_claim_slot(r, NULL, err, sizeof(err));
	/* Killed before any assert, so a failure leaves no stopped child. */
	kill(reclaimer, SIGKILL);
	assert_int_equal(wait_child(reclaimer), 128 + SIGKILL);
	assert_int_equal(status, GPUCAP_ERR_FULL);
	assert_non_null(strstr(err, "stalled while reclaiming"));

	/* Its lease went with it: the slot is claimable, its bytes returned. */
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_OK);
	assert_int_equal(gpucap_region_slot_index(r), t.dead_slot);
	struct region_peek peek;
	memset(&peek, 0, sizeof(peek));
	assert_int_equal(region_peek_open(&peek, t.path), 0);
	assert_int_equal(region_peek_charged(&peek, t.device), 0);
	munmap((void *)peek.base, peek.size);
	gpucap_region_detach(r);
	empty_table(&t);
}

/* A child claims a slot, reserves bytes and stays alive, holding it, until
 * killed; returns once its slot is claimed. */
static pid_t live_holding(const char *path, uint64_t bytes, int *slot)
{
	int channel[2];
	assert_int_equal(pipe(channel), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gpucap_crash_points_disarm();
		int rc = claim_and_reserve(path, bytes, channel[1]);
		if (rc != 0)
			_exit(rc);
		for (;;)
			pause();
	}
	*slot = received_slot(channel);
	return pid;
}

/* The wrapped lease take: when armed, the first take of hook.slot runs
 * hook.run (once, and not for the takes hook.run itself makes) before the
 * real take. */
bool __real_gpucap_slot_lease_take(int fd, _Atomic uint8_t *claim, uint64_t offset);
bool __wrap_gpucap_slot_lease_take(int fd, _Atomic uint8_t *claim, uint64_t offset);

static struct {
	bool armed;
	uint64_t slot;
	void (*run)(void);
	unsigned ran;
} hook;

bool __wrap_gpucap_slot_lease_take(int fd, _Atomic uint8_t *claim, uint64_t offset)
{
	if (hook.armed && offset == LEASE_SLOT(hook.slot)) {
		hook.armed = false;
		hook.run();
		hook.ran++;
	}
	return __real_gpucap_slot_lease_take(fd, claim, offset);
}

static void arm_hook(uint32_t slot, void (*run)(void))
{
	hook.slot = slot;
	hook.run = run;
	hook.ran = 0;
	hook.armed = true;
}

static uint64_t charged(const char *path, int device)
{
	struct region_peek peek;
	memset(&peek, 0, sizeof(peek));
	assert_int_equal(region_peek_open(&peek, path), 0);
	uint64_t bytes = region_peek_charged(&peek, device);
	munmap((void *)peek.base, peek.size);
	return bytes;
}

/* The world the hooks below change, mid-scan. */
static struct {
	const char *path;
	pid_t victim;
	gpucap_region *newcomer;
	int newcomer_slot;
} moving;

/* Between the claimer's look at slot 0 and its look at slot 3: the dead
 * slot 3 is reclaimed (FREE), the owner of slot 0 dies, and a newcomer
 * takes slot 3, the free one. A slot is free or dead at every instant. */
static void free_behind_take_ahead(void)
{
	gpucap_region *reclaimer = attach_small(moving.path, 0);
	struct gpucap_reclaim_report report;
	assert_int_equal(gpucap_region_reclaim_dead(reclaimer, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 1);
	gpucap_region_detach(reclaimer);
	assert_int_equal(kill(moving.victim, SIGKILL), 0);
	assert_int_equal(wait_child(moving.victim), 128 + SIGKILL);
	moving.victim = 0;
	moving.newcomer = attach_small(moving.path, 0);
	assert_int_equal(gpucap_region_claim_slot(moving.newcomer, NULL, NULL, 0), GPUCAP_OK);
	moving.newcomer_slot = gpucap_region_slot_index(moving.newcomer);
}

/* A failed assertion leaves no child paused for good. */
static int kill_victim(void **state)
{
	(void)state;
	if (moving.victim > 0) {
		kill(moving.victim, SIGKILL);
		wait_child(moving.victim);
		moving.victim = 0;
	}
	return 0;
}

static void a_claim_finds_a_slot_freed_behind_its_scan(void **state)
{
	(void)state;
	moving.path = scratch_path("claim-moving");
	/* Slot 0: a live child holding 4 MiB; 1 and 2: live owners here;
	 * 3: a dead process's slot holding 4 MiB. */
	int victim_slot = -1;
	gpucap_region *owners[2];
	gpucap_region *first = attach_small(moving.path, 0);
	moving.victim = live_holding(moving.path, 4 * MiB, &victim_slot);
	assert_int_equal(victim_slot, 0);
	owners[0] = first;
	owners[1] = attach_small(moving.path, 0);
	for (unsigned i = 0; i < 2; i++)
		assert_int_equal(gpucap_region_claim_slot(owners[i], NULL, NULL, 0), GPUCAP_OK);
	int dead_slot = die_holding(moving.path, 4 * MiB);
	assert_int_equal(dead_slot, 3);
	int device = gpucap_region_device_register(owners[0], GPU, 256 * MiB, 0);
	assert_true(device >= 0);
	assert_int_equal(charged(moving.path, device), 8 * MiB);

	/* The claimer finds slot 0 held; then, before it reaches slot 3, the
	 * table moves as above. Slot 0 is dead from then on: the claim must
	 * take it, not report every slot held by a live process. */
	gpucap_region *claimer = attach_small(moving.path, 60000);
	arm_hook(1, free_behind_take_ahead);
	char err[512] = "";
	gpucap_status status = gpucap_region_claim_slot(claimer, NULL, err, sizeof(err));
	if (status != GPUCAP_OK)
		fprintf(stderr, "claim: %s\n", err);
	assert_int_equal(hook.ran, 1);
	assert_int_equal(moving.newcomer_slot, 3);
	assert_int_equal(status, GPUCAP_OK);
	assert_int_equal(gpucap_region_slot_index(claimer), 0);
	assert_int_equal(charged(moving.path, device), 0); /* both dead 4 MiB returned, once */

	gpucap_region_detach(claimer);
	gpucap_region_detach(moving.newcomer);
	for (unsigned i = 0; i < 2; i++)
		gpucap_region_detach(owners[i]);
}

/* During the claimer's first pass (free slots): the dead slot 0, which the
 * first pass passed over as live, is reclaimed and reads FREE. */
static void reclaim_behind(void)
{
	gpucap_region *reclaimer = attach_small(moving.path, 0);
	struct gpucap_reclaim_report report;
	assert_int_equal(gpucap_region_reclaim_dead(reclaimer, &report), GPUCAP_OK);
	assert_int_equal(report.slots, 1);
	gpucap_region_detach(reclaimer);
}

static void a_claim_finds_a_slot_freed_between_its_passes(void **state)
{
	(void)state;
	moving.path = scratch_path("claim-passes");
	/* Slot 0: a dead process's slot holding 4 MiB; 1 and 2: live owners;
	 * 3: an owner that retired (FREE, its lease held until it exits). */
	gpucap_region *owners[3];
	for (unsigned i = 0; i < 3; i++)
		owners[i] = attach_small(moving.path, 0);
	int dead_slot = die_holding(moving.path, 4 * MiB);
	assert_int_equal(dead_slot, 0);
	for (unsigned i = 0; i < 3; i++)
		assert_int_equal(gpucap_region_claim_slot(owners[i], NULL, NULL, 0), GPUCAP_OK);
	assert_int_equal(gpucap_region_slot_index(owners[2]), 3);
	assert_true(gpucap_region_retire(owners[2]));
	int device = gpucap_region_device_register(owners[0], GPU, 256 * MiB, 0);
	assert_true(device >= 0);

	/* The first pass finds slot 3 FREE and its lease held; as it tries
	 * it, slot 0 is reclaimed. The second pass must try slot 0 too. */
	gpucap_region *claimer = attach_small(moving.path, 60000);
	arm_hook(3, reclaim_behind);
	char err[512] = "";
	gpucap_status status = gpucap_region_claim_slot(claimer, NULL, err, sizeof(err));
	if (status != GPUCAP_OK)
		fprintf(stderr, "claim: %s\n", err);
	assert_int_equal(hook.ran, 1);
	assert_int_equal(status, GPUCAP_OK);
	assert_int_equal(gpucap_region_slot_index(claimer), 0);
	assert_int_equal(charged(moving.path, device), 0);

	gpucap_region_detach(claimer);
	for (unsigned i = 0; i < 3; i++)
		gpucap_region_detach(owners[i]);
}

static void a_table_of_live_owners_is_full_at_once(void **state)
{
	(void)state;
	const char *path = scratch_path("claim-full");
	gpucap_region *owners[SLOTS];
	for (unsigned i = 0; i < SLOTS; i++) {
		owners[i] = attach_small(path, 0);
		assert_int_equal(gpucap_region_claim_slot(owners[i], NULL, NULL, 0), GPUCAP_OK);
	}
	/* No slot is being reclaimed: nothing to wait for, even with 60 s. */
	gpucap_region *r = attach_small(path, 60000);
	char err[512] = "";
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_ERR_FULL);
	assert_non_null(strstr(err, "held by live processes; stop some"));
	gpucap_region_detach(owners[0]);
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_OK);
	gpucap_region_detach(r);
	for (unsigned i = 1; i < SLOTS; i++)
		gpucap_region_detach(owners[i]);
}

/* An owner that retired has freed its slot but keeps the lease until it
 * exits: the slot is held by a live process, and the claim says so at once
 * rather than wait for it as for a reclaimer. */
static void a_retired_owner_holds_its_slot_until_it_exits(void **state)
{
	(void)state;
	const char *path = scratch_path("claim-retired");
	gpucap_region *owners[SLOTS];
	for (unsigned i = 0; i < SLOTS; i++) {
		owners[i] = attach_small(path, 0);
		assert_int_equal(gpucap_region_claim_slot(owners[i], NULL, NULL, 0), GPUCAP_OK);
	}
	assert_true(gpucap_region_retire(owners[SLOTS - 1]));
	gpucap_region *r = attach_small(path, 60000);
	char err[512] = "";
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_ERR_FULL);
	assert_non_null(strstr(err, "held by live processes; stop some"));
	/* It exits (its descriptor closes): the slot is claimable. */
	gpucap_region_detach(owners[SLOTS - 1]);
	assert_int_equal(gpucap_region_claim_slot(r, NULL, err, sizeof(err)), GPUCAP_OK);
	assert_int_equal(gpucap_region_slot_index(r), (int)SLOTS - 1);
	gpucap_region_detach(r);
	for (unsigned i = 0; i < SLOTS - 1; i++)
		gpucap_region_detach(owners[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(a_claim_waits_for_a_reclaimer_rather_than_reporting_full),
	    cmocka_unit_test(a_stalled_reclaimer_makes_the_claim_fail_not_hang),
	    cmocka_unit_test(a_table_of_live_owners_is_full_at_once),
	    cmocka_unit_test_teardown(a_claim_finds_a_slot_freed_behind_its_scan, kill_victim),
	    cmocka_unit_test(a_claim_finds_a_slot_freed_between_its_passes),
	    cmocka_unit_test(a_retired_owner_holds_its_slot_until_it_exits),
	};
	int failed = cmocka_run_group_tests(tests, NULL, NULL);
	scratch_remove();
	return failed;
}
