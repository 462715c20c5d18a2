/* Unit tests of the node schedule file (include/gpucap/schedule.h): its
 * creation, the slot leases and their release when a process dies, the window
 * layout every process computes alike, and what hostile files and hostile
 * slot contents can and cannot do. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "gpucap/schedule.h"
#include "test_support.h"

#define MS  UINT64_C(1000000)
#define SEC UINT64_C(1000000000)
/* A "now" far from 0, as CLOCK_MONOTONIC is on a running machine; a whole
 * number of periods, so window offsets read directly off it. */
#define T0     (UINT64_C(5000) * SEC)
#define PERIOD GPUCAP_SCHED_PERIOD_NS

/* The file format, private to schedule.c, as a hostile writer sees it. */
#define RAW_MAGIC       UINT64_C(0x0031534143555047)
#define RAW_HEADER_SIZE 64u
#define RAW_SLOT_SIZE   64u
#define RAW_FILE_SIZE   (RAW_HEADER_SIZE + GPUCAP_SCHED_SLOTS * RAW_SLOT_SIZE)
#define OFF_MAGIC       0
#define OFF_VERSION     8
#define OFF_SLOT_COUNT  12
#define OFF_HEADER_SIZE 16
#define OFF_SLOT_SIZE   20
#define OFF_PERIOD      24
#define RAW_LEASE_INIT  (UINT64_C(1) << 40)
#define SLOT_OFFSET(i)  ((off_t)RAW_HEADER_SIZE + (off_t)(i)*RAW_SLOT_SIZE)
#define SENTINEL_HANDLE ((gpucap_sched *)(uintptr_t)0x1)
#define PEER_SLOT       20 /* a slot no test handle claims: simulated peers write there */
#define PEER_SLOT_2     21

struct raw_slot {
	uint64_t tenant;
	uint64_t active_ns;
	uint32_t duty_ppm;
	int32_t pid;
};
_Static_assert(sizeof(struct raw_slot) == 24, "raw slot prefix");

static const char *sched_path(const char *uuid)
{
	char name[256];
	snprintf(name, sizeof(name), "%s%s", GPUCAP_SCHED_FILE_PREFIX, uuid);
	return scratch_path(name);
}

static gpucap_sched *open_ok(const char *uuid, uint64_t tenant)
{
	char why[512] = "";
	gpucap_sched *s = NULL;
	gpucap_status st = gpucap_sched_open(scratch_dir(), uuid, tenant, &s, why, sizeof(why));
	if (st != GPUCAP_OK)
		fprintf(stderr, "open failed: %s\n", why);
	assert_int_equal(st, GPUCAP_OK);
	assert_non_null(s);
	return s;
}

/* Open under dir, expecting failure want, *out NULL and why naming needle. */
static void expect_open_fails(const char *dir, const char *uuid, uint64_t tenant, gpucap_status want,
                              const char *needle)
{
	char why[512] = "";
	gpucap_sched *s = SENTINEL_HANDLE;
	gpucap_status st = gpucap_sched_open(dir, uuid, tenant, &s, why, sizeof(why));
	assert_int_equal(st, want);
	assert_null(s);
	assert_true(why[0] != '\0');
	if (needle && !strstr(why, needle)) {
		fprintf(stderr, "why \"%s\" lacks \"%s\"\n", why, needle);
		fail();
	}
}

static void raw_pwrite(const char *path, off_t offset, const void *data, size_t len)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, offset), (ssize_t)len);
	close(fd);
}

static void raw_pread(const char *path, off_t offset, void *data, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, data, len, offset), (ssize_t)len);
	close(fd);
}

/* A file at path of len bytes: header (when given) then zeros. */
static void make_file(const char *path, size_t len, const void *header, size_t header_len)
{
	char *buf = calloc(1, len ? len : 1);
	assert_non_null(buf);
	if (header)
		memcpy(buf, header, header_len < len ? header_len : len);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0666);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, len), (ssize_t)len);
	close(fd);
	free(buf);
}

/* A header as a gpucap of this version writes it. */
static void good_header(unsigned char h[RAW_HEADER_SIZE])
{
	memset(h, 0, RAW_HEADER_SIZE);
	uint64_t magic = RAW_MAGIC, period = PERIOD;
	uint32_t version = GPUCAP_SCHED_FORMAT_VERSION, slots = GPUCAP_SCHED_SLOTS, hs = RAW_HEADER_SIZE,
	         ss = RAW_SLOT_SIZE;
	memcpy(h + OFF_MAGIC, &magic, 8);
	memcpy(h + OFF_VERSION, &version, 4);
	memcpy(h + OFF_SLOT_COUNT, &slots, 4);
	memcpy(h + OFF_HEADER_SIZE, &hs, 4);
	memcpy(h + OFF_SLOT_SIZE, &ss, 4);
	memcpy(h + OFF_PERIOD, &period, 8);
}

static void slot_write(const char *uuid, unsigned index, uint64_t tenant, uint64_t active_ns, uint32_t duty)
{
	struct raw_slot s = {tenant, active_ns, duty, 4242};
	raw_pwrite(sched_path(uuid), SLOT_OFFSET(index), &s, sizeof(s));
}

static struct raw_slot slot_read(const char *uuid, unsigned index)
{
	struct raw_slot s;
	raw_pread(sched_path(uuid), SLOT_OFFSET(index), &s, sizeof(s));
	return s;
}

static struct gpucap_sched_window window_of(const gpucap_sched *s, uint32_t duty, uint64_t now)
{
	struct gpucap_sched_window w;
	memset(&w, 0xa5, sizeof(w));
	gpucap_sched_window(s, duty, now, &w);
	return w;
}

static void open_creates_file_and_claims_slots(void **state)
{
	(void)state;
	const char *uuid = "GPU-create";
	mode_t old = umask(022); /* the file must still end up 0666 */
	gpucap_sched *a = open_ok(uuid, 5);
	umask(old);
	struct stat st;
	assert_int_equal(lstat(sched_path(uuid), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0666);
	assert_int_equal(st.st_size, RAW_FILE_SIZE);
	assert_int_equal(gpucap_sched_slot(a), 0);

	/* The header is stamped; slot 0 names its owner, not active yet. */
	unsigned char h[RAW_HEADER_SIZE];
	raw_pread(sched_path(uuid), 0, h, sizeof(h));
	uint64_t magic, period;
	uint32_t version;
	memcpy(&magic, h + OFF_MAGIC, 8);
	memcpy(&version, h + OFF_VERSION, 4);
	memcpy(&period, h + OFF_PERIOD, 8);
	assert_int_equal(magic, RAW_MAGIC);
	assert_int_equal(version, GPUCAP_SCHED_FORMAT_VERSION);
	assert_int_equal(period, PERIOD);
	struct raw_slot s0 = slot_read(uuid, 0);
	assert_int_equal(s0.tenant, 5);
	assert_int_equal(s0.active_ns, 0);
	assert_int_equal(s0.pid, getpid());

	/* OFD leases belong to open files: a second open in this process
	 * takes the next slot. */
	gpucap_sched *b = open_ok(uuid, 9);
	assert_int_equal(gpucap_sched_slot(b), 1);
	assert_int_equal(slot_read(uuid, 1).tenant, 9);
	gpucap_sched_close(a);
	gpucap_sched *c = open_ok(uuid, 11);
	assert_int_equal(gpucap_sched_slot(c), 0);
	assert_int_equal(slot_read(uuid, 0).tenant, 11);
	gpucap_sched *d = open_ok(uuid, 12);
	assert_int_equal(gpucap_sched_slot(d), 2);

	/* An existing file of ours with another mode is set back to 0666. */
	assert_int_equal(chmod(sched_path(uuid), 0600), 0);
	gpucap_sched *e = open_ok(uuid, 13);
	assert_int_equal(gpucap_sched_slot(e), 3);
	assert_int_equal(lstat(sched_path(uuid), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0666);

	assert_int_equal(gpucap_sched_slot(NULL), -1);
	gpucap_sched_close(e);
	gpucap_sched_close(d);
	gpucap_sched_close(c);
	gpucap_sched_close(b);
	gpucap_sched_close(NULL);
	gpucap_sched_forget(NULL);
}

static void slot_lease_dies_with_process(void **state)
{
	(void)state;
	const char *uuid = "GPU-dies";
	gpucap_sched *a = open_ok(uuid, 9);
	assert_int_equal(gpucap_sched_slot(a), 0);
	gpucap_sched_touch(a, 300000, 300000, T0);

	/* A child that holds a slot until it is killed. */
	int up[2], down[2];
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		gpucap_sched *c = NULL;
		if (gpucap_sched_open(scratch_dir(), uuid, 77, &c, NULL, 0) != GPUCAP_OK)
			_exit(3);
		gpucap_sched_touch(c, 500000, 500000, T0);
		int slot = gpucap_sched_slot(c);
		if (write(up[1], &slot, sizeof(slot)) != (ssize_t)sizeof(slot))
			_exit(4);
		char byte;
		while (read(down[0], &byte, 1) < 0 && errno == EINTR) {
		}
		_exit(5); /* not reached: killed first */
	}
	close(up[1]);
	close(down[0]);
	int child_slot = -1;
	assert_int_equal(read(up[0], &child_slot, sizeof(child_slot)), (ssize_t)sizeof(child_slot));
	assert_int_equal(child_slot, 1);
	/* While it lives its slot is taken, and its tenant shares the GPU. */
	gpucap_sched *b = open_ok(uuid, 9);
	assert_int_equal(gpucap_sched_slot(b), 2);
	gpucap_sched_close(b);
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_true(w.shared);
	assert_int_equal(w.tenants, 2);

	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(wait_child(pid), 128 + SIGKILL);
	close(down[1]);
	close(up[0]);

	/* The kernel dropped its lease: the slot is free again, and claiming
	 * it clears the dead tenant's activity at once. */
	gpucap_sched *c = open_ok(uuid, 10);
	assert_int_equal(gpucap_sched_slot(c), 1);
	w = window_of(a, 300000, T0);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);
	gpucap_sched_close(c);

	/* Same for a child that exits without closing. */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		gpucap_sched *k = NULL;
		if (gpucap_sched_open(scratch_dir(), uuid, 78, &k, NULL, 0) != GPUCAP_OK)
			_exit(3);
		gpucap_sched_touch(k, 500000, 500000, T0);
		_exit(gpucap_sched_slot(k) == 1 ? 0 : 4);
	}
	assert_int_equal(wait_child(pid), 0);
	assert_int_equal(slot_read(uuid, 1).tenant, 78);
	c = open_ok(uuid, 9);
	assert_int_equal(gpucap_sched_slot(c), 1);
	assert_int_equal(slot_read(uuid, 1).tenant, 9);
	gpucap_sched_close(c);
	gpucap_sched_close(a);
}

static void forget_keeps_parents_slot(void **state)
{
	(void)state;
	const char *uuid = "GPU-forget";
	gpucap_sched *a = open_ok(uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The child forgets the parent's handle: the parent's lease
		 * (shared open file) stays, so its own open takes slot 1. */
		gpucap_sched_forget(a);
		gpucap_sched *c = NULL;
		if (gpucap_sched_open(scratch_dir(), uuid, 9, &c, NULL, 0) != GPUCAP_OK)
			_exit(3);
		int slot = gpucap_sched_slot(c);
		gpucap_sched_close(c);
		_exit(slot == 1 ? 0 : 10 + slot);
	}
	assert_int_equal(wait_child(pid), 0);
	/* The parent's slot is untouched and still held. */
	struct raw_slot s0 = slot_read(uuid, 0);
	assert_int_equal(s0.tenant, 9);
	assert_int_equal(s0.active_ns, T0);
	assert_int_equal(s0.duty_ppm, 300000);
	gpucap_sched *b = open_ok(uuid, 9);
	assert_int_equal(gpucap_sched_slot(b), 1);
	gpucap_sched_close(b);
	gpucap_sched_close(a);
}

static void close_frees_slot_despite_forked_child(void **state)
{
	(void)state;
	const char *uuid = "GPU-close-fork";
	gpucap_sched *a = open_ok(uuid, 9);
	int down[2];
	assert_int_equal(pipe(down), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Holds its copy of a's descriptor until told to go. */
		close(down[1]);
		char byte;
		while (read(down[0], &byte, 1) < 0 && errno == EINTR) {
		}
		_exit(0);
	}
	close(down[0]);
	/* The child's copy shares the open file: close must drop the lease
	 * itself rather than rely on the last descriptor going. */
	gpucap_sched_close(a);
	gpucap_sched *b = open_ok(uuid, 9);
	assert_int_equal(gpucap_sched_slot(b), 0);
	close(down[1]);
	assert_int_equal(wait_child(pid), 0);
	gpucap_sched_close(b);
}

static void touch_writes_own_slot(void **state)
{
	(void)state;
	const char *uuid = "GPU-touch";
	gpucap_sched *a = open_ok(uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	struct raw_slot s = slot_read(uuid, 0);
	assert_int_equal(s.tenant, 9);
	assert_int_equal(s.active_ns, T0);
	assert_int_equal(s.duty_ppm, 300000);

	/* Within a millisecond the time is not rewritten; later it is, and
	 * a clock that went back is taken as is. */
	gpucap_sched_touch(a, 300000, 300000, T0 + MS / 2);
	assert_int_equal(slot_read(uuid, 0).active_ns, T0);
	gpucap_sched_touch(a, 300000, 300000, T0 + 2 * MS);
	assert_int_equal(slot_read(uuid, 0).active_ns, T0 + 2 * MS);
	gpucap_sched_touch(a, 300000, 300000, T0 + MS);
	assert_int_equal(slot_read(uuid, 0).active_ns, T0 + MS);

	/* Duties out of range are clamped into 1..1e6. */
	gpucap_sched_touch(a, 0, 0, T0 + MS);
	assert_int_equal(slot_read(uuid, 0).duty_ppm, 1);
	gpucap_sched_touch(a, 7000000, 7000000, T0 + MS);
	assert_int_equal(slot_read(uuid, 0).duty_ppm, GPUCAP_SCHED_PPM);

	/* A hostile writer's change of our slot is undone at the next touch. */
	slot_write(uuid, 0, 1234, 1, 17);
	gpucap_sched_touch(a, 250000, 250000, T0 + 10 * MS);
	s = slot_read(uuid, 0);
	assert_int_equal(s.tenant, 9);
	assert_int_equal(s.duty_ppm, 250000);
	assert_int_equal(s.active_ns, T0 + 10 * MS);

	gpucap_sched_touch(NULL, 300000, 300000, T0);
	gpucap_sched_close(a);
}

static void close_clears_activity(void **state)
{
	(void)state;
	const char *uuid = "GPU-close";
	gpucap_sched *a = open_ok(uuid, 5);
	gpucap_sched *b = open_ok(uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	gpucap_sched_touch(b, 700000, 700000, T0);
	assert_true(window_of(a, 300000, T0).shared);
	gpucap_sched_close(b);
	/* Gone at once, not after GPUCAP_SCHED_ACTIVE_NS. */
	assert_int_equal(slot_read(uuid, 1).active_ns, 0);
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);
	gpucap_sched_close(a);
}

static void two_tenants_lay_windows_end_to_end(void **state)
{
	(void)state;
	const char *uuid = "GPU-two";
	/* Tenant 9 opens first: the layout follows ids, not slots. */
	gpucap_sched *b = open_ok(uuid, 9);
	gpucap_sched *a = open_ok(uuid, 5);
	gpucap_sched_touch(a, 300000, 300000, T0);
	gpucap_sched_touch(b, 700000, 700000, T0);

	struct gpucap_sched_window wa = window_of(a, 300000, T0);
	assert_true(wa.shared);
	assert_int_equal(wa.tenants, 2);
	assert_int_equal(wa.period_ns, PERIOD);
	assert_int_equal(wa.offset_ns, 0);
	assert_int_equal(wa.length_ns, 30 * MS);

	struct gpucap_sched_window wb = window_of(b, 700000, T0);
	assert_true(wb.shared);
	assert_int_equal(wb.tenants, 2);
	assert_int_equal(wb.period_ns, PERIOD);
	assert_int_equal(wb.offset_ns, 30 * MS);
	assert_int_equal(wb.length_ns, 70 * MS);

	/* Duties and caps summed: here the caps fill the GPU while a duty
	 * below its cap (a work weight) leaves a gap. */
	assert_int_equal(wa.total_ppm, 1000000);
	assert_int_equal(wa.caps_ppm, 1000000);
	gpucap_sched_touch(b, 600000, 700000, T0);
	wa = window_of(a, 300000, T0);
	assert_int_equal(wa.total_ppm, 900000);
	assert_int_equal(wa.caps_ppm, 1000000);
	assert_int_equal(wa.length_ns, 30 * MS);
	wb = window_of(b, 600000, T0);
	assert_int_equal(wb.offset_ns, 30 * MS);
	assert_int_equal(wb.length_ns, 60 * MS);

	/* A peer seen up to a second later still counts. */
	wa = window_of(a, 300000, T0 + 900 * MS);
	assert_true(wa.shared);
	gpucap_sched_close(a);
	gpucap_sched_close(b);
}

static void lone_tenant_is_not_shared(void **state)
{
	(void)state;
	const char *uuid = "GPU-lone";
	gpucap_sched *a = open_ok(uuid, 5);
	gpucap_sched_touch(a, 300000, 300000, T0);
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);
	assert_int_equal(w.period_ns, PERIOD);

	/* Other processes of the same tenant are the same tenant. */
	gpucap_sched *a2 = open_ok(uuid, 5);
	gpucap_sched_touch(a2, 300000, 300000, T0);
	slot_write(uuid, PEER_SLOT, 5, T0, 900000);
	w = window_of(a, 300000, T0);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);

	/* No handle: one tenant, nothing shared. */
	w = window_of(NULL, 300000, T0);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);
	gpucap_sched_close(a2);
	gpucap_sched_close(a);
}

static void over_subscribed_duties_are_scaled(void **state)
{
	(void)state;
	const char *uuid = "GPU-scale";
	gpucap_sched *a = open_ok(uuid, 1);
	gpucap_sched *b = open_ok(uuid, 2);
	gpucap_sched_touch(a, 600000, 600000, T0);
	gpucap_sched_touch(b, 800000, 800000, T0);
	struct gpucap_sched_window wa = window_of(a, 600000, T0);
	struct gpucap_sched_window wb = window_of(b, 800000, T0);
	assert_true(wa.shared && wb.shared);
	/* 600000 and 800000 of 1400000: 3/7 and 4/7 of the period. */
	assert_int_equal(wa.offset_ns, 0);
	assert_int_equal(wa.length_ns, PERIOD * 600000 / 1400000);
	assert_int_equal(wb.offset_ns, PERIOD * 600000 / 1400000);
	assert_int_equal(wb.length_ns, PERIOD * 800000 / 1400000);
	assert_true(wa.offset_ns + wa.length_ns <= wb.offset_ns);
	assert_true(wb.offset_ns + wb.length_ns <= PERIOD);
	gpucap_sched_close(b);
	gpucap_sched_close(a);

	/* Random duties for 5 tenants: the windows, in id order, never
	 * overlap, fit in the period and are at most each duty. */
	enum { N = 5 };
	gpucap_sched *h[N];
	for (int i = 0; i < N; i++)
		h[i] = open_ok(uuid, (uint64_t)(N - i) * 3); /* ids 15, 12, 9, 6, 3 */
	uint64_t rng = 0x9e3779b97f4a7c15u;
	for (int round = 0; round < 300; round++) {
		uint64_t now = T0 + (uint64_t)round * 2 * MS;
		uint32_t duty[N];
		uint64_t sum = 0;
		for (int i = 0; i < N; i++) {
			duty[i] = 1 + (uint32_t)(test_random(&rng) % 1200000);
			gpucap_sched_touch(h[i], duty[i], duty[i], now);
			sum += duty[i] > GPUCAP_SCHED_PPM ? GPUCAP_SCHED_PPM : duty[i];
		}
		struct gpucap_sched_window w[N];
		for (int i = 0; i < N; i++) {
			w[i] = window_of(h[i], duty[i], now);
			assert_true(w[i].shared);
			assert_int_equal(w[i].tenants, N);
			uint64_t own = duty[i] > GPUCAP_SCHED_PPM ? GPUCAP_SCHED_PPM : duty[i];
			assert_true(w[i].length_ns <= PERIOD * own / GPUCAP_SCHED_PPM);
			if (sum <= GPUCAP_SCHED_PPM)
				assert_int_equal(w[i].length_ns, PERIOD * own / GPUCAP_SCHED_PPM);
			assert_true(w[i].offset_ns + w[i].length_ns <= PERIOD);
		}
		/* h[N-1] has the lowest id: it comes first, h[0] last. */
		assert_int_equal(w[N - 1].offset_ns, 0);
		for (int i = N - 1; i > 0; i--)
			assert_true(w[i].offset_ns + w[i].length_ns <= w[i - 1].offset_ns);
	}
	for (int i = 0; i < N; i++)
		gpucap_sched_close(h[i]);
}

static void tenants_order_by_id_not_slot(void **state)
{
	(void)state;
	const char *uuid = "GPU-order";
	gpucap_sched *t30 = open_ok(uuid, 30);
	gpucap_sched *t10 = open_ok(uuid, 10);
	gpucap_sched *t20 = open_ok(uuid, 20);
	assert_int_equal(gpucap_sched_slot(t30), 0);
	assert_int_equal(gpucap_sched_slot(t10), 1);
	assert_int_equal(gpucap_sched_slot(t20), 2);
	gpucap_sched_touch(t30, 100000, 100000, T0);
	gpucap_sched_touch(t10, 200000, 200000, T0);
	gpucap_sched_touch(t20, 300000, 300000, T0);

	struct gpucap_sched_window w10 = window_of(t10, 200000, T0);
	struct gpucap_sched_window w20 = window_of(t20, 300000, T0);
	struct gpucap_sched_window w30 = window_of(t30, 100000, T0);
	assert_int_equal(w10.tenants, 3);
	assert_int_equal(w20.tenants, 3);
	assert_int_equal(w30.tenants, 3);
	assert_int_equal(w10.offset_ns, 0);
	assert_int_equal(w10.length_ns, 20 * MS);
	assert_int_equal(w20.offset_ns, 20 * MS);
	assert_int_equal(w20.length_ns, 30 * MS);
	assert_int_equal(w30.offset_ns, 50 * MS);
	assert_int_equal(w30.length_ns, 10 * MS);

	/* A tenant with several slots counts once, its lowest slot speaking:
	 * tenant 20's second process asks 900000 but slot 2 says 300000. */
	gpucap_sched *t20b = open_ok(uuid, 20);
	gpucap_sched_touch(t20b, 900000, 900000, T0);
	w30 = window_of(t30, 100000, T0);
	assert_int_equal(w30.tenants, 3);
	assert_int_equal(w30.offset_ns, 50 * MS);
	gpucap_sched_close(t20b);
	gpucap_sched_close(t20);
	gpucap_sched_close(t10);
	gpucap_sched_close(t30);
}

static void stale_and_future_peers_are_ignored(void **state)
{
	(void)state;
	const char *uuid = "GPU-stale";
	gpucap_sched *a = open_ok(uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	const uint64_t now = T0 + 10 * SEC;
	struct {
		uint64_t tenant;
		uint64_t active;
		bool counts;
	} cases[] = {
	    {3, now, true},
	    {3, now - GPUCAP_SCHED_ACTIVE_NS, true},      /* exactly a second ago */
	    {3, now - GPUCAP_SCHED_ACTIVE_NS - 1, false}, /* longer ago */
	    {3, now - 100 * SEC, false},
	    {3, 0, false},                 /* never active */
	    {3, now + 10 * MS, true},      /* clock race */
	    {3, now + 10 * MS + 1, false}, /* too far ahead */
	    {3, UINT64_MAX, false},
	    {0, now, false}, /* unused slot */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		slot_write(uuid, PEER_SLOT, cases[i].tenant, cases[i].active, 500000);
		struct gpucap_sched_window w = window_of(a, 300000, now);
		if (w.shared != cases[i].counts)
			fprintf(stderr, "case %zu: active %llu, now %llu\n", i,
			        (unsigned long long)cases[i].active, (unsigned long long)now);
		assert_int_equal(w.shared, cases[i].counts);
		assert_int_equal(w.tenants, cases[i].counts ? 2 : 1);
		if (cases[i].counts) {
			assert_int_equal(w.offset_ns, 50 * MS);
			assert_int_equal(w.length_ns, 30 * MS);
		}
	}

	/* Never active reads as such even early after boot, when 0 is less
	 * than a second ago. */
	slot_write(uuid, PEER_SLOT, 3, 0, 500000);
	assert_false(window_of(a, 300000, 500 * MS).shared);
	slot_write(uuid, PEER_SLOT, 3, 100 * MS, 500000);
	assert_true(window_of(a, 300000, 500 * MS).shared);
	gpucap_sched_close(a);
}

static void own_window_uses_own_duty_argument(void **state)
{
	(void)state;
	const char *uuid = "GPU-own";
	gpucap_sched *a = open_ok(uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	slot_write(uuid, PEER_SLOT, 5, T0, 200000);

	/* A hostile writer raises our slot's duty to 100%: the window still
	 * holds our own 30%. */
	slot_write(uuid, 0, 9, T0, GPUCAP_SCHED_PPM);
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_true(w.shared);
	assert_int_equal(w.tenants, 2);
	assert_int_equal(w.offset_ns, 20 * MS);
	assert_int_equal(w.length_ns, 30 * MS);

	/* Renaming our slot into another tenant only adds a peer: the
	 * window shrinks, never grows. */
	slot_write(uuid, 0, 1, T0, GPUCAP_SCHED_PPM);
	w = window_of(a, 300000, T0);
	assert_true(w.shared);
	assert_int_equal(w.tenants, 3);
	assert_true(w.length_ns <= 30 * MS);
	assert_true(w.offset_ns + w.length_ns <= PERIOD);

	/* The duty argument itself is clamped too. */
	slot_write(uuid, 0, 9, T0, 300000);
	w = window_of(a, 5000000, T0);
	assert_true(w.length_ns <= PERIOD);
	assert_int_equal(w.length_ns, PERIOD * GPUCAP_SCHED_PPM / (GPUCAP_SCHED_PPM + 200000));
	w = window_of(a, 0, T0);
	assert_int_equal(w.length_ns, PERIOD / GPUCAP_SCHED_PPM); /* 1 ppm */
	gpucap_sched_close(a);
}

static void hostile_peer_duties_are_clamped(void **state)
{
	(void)state;
	const char *uuid = "GPU-clamp";
	gpucap_sched *a = open_ok(uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);

	/* Duty 0 reads as 1 ppm: the peer before us takes 100 ns. */
	slot_write(uuid, PEER_SLOT, 3, T0, 0);
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_true(w.shared);
	assert_int_equal(w.offset_ns, PERIOD / GPUCAP_SCHED_PPM);
	assert_int_equal(w.length_ns, 30 * MS);

	/* Beyond 1e6 reads as 1e6: 1300000 in all, scaled. */
	const uint32_t huge[] = {GPUCAP_SCHED_PPM + 1, 5000000, UINT32_MAX};
	for (size_t i = 0; i < sizeof(huge) / sizeof(huge[0]); i++) {
		slot_write(uuid, PEER_SLOT, 3, T0, huge[i]);
		w = window_of(a, 300000, T0);
		assert_true(w.shared);
		assert_int_equal(w.offset_ns, PERIOD * 1000000 / 1300000);
		assert_int_equal(w.length_ns, PERIOD * 300000 / 1300000);
		assert_true(w.offset_ns + w.length_ns <= PERIOD);
	}

	/* Every other slot filled by distinct hostile tenants at 100%: the
	 * windows still fit in the period. */
	for (unsigned i = 1; i < GPUCAP_SCHED_SLOTS; i++)
		slot_write(uuid, i, 1000 + i, T0, UINT32_MAX);
	w = window_of(a, 300000, T0);
	assert_int_equal(w.tenants, GPUCAP_SCHED_SLOTS);
	assert_int_equal(w.offset_ns, 0); /* 9 is the lowest id */
	assert_int_equal(w.length_ns,
	                 PERIOD * 300000 / ((GPUCAP_SCHED_SLOTS - 1) * UINT64_C(1000000) + 300000));
	gpucap_sched_close(a);
}

static void header_is_read_once(void **state)
{
	(void)state;
	const char *uuid = "GPU-period";
	gpucap_sched *a = open_ok(uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	slot_write(uuid, PEER_SLOT, 5, T0, 700000);
	/* A period rewritten after open changes nothing of this handle. */
	uint64_t zero = 0;
	raw_pwrite(sched_path(uuid), OFF_PERIOD, &zero, sizeof(zero));
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_true(w.shared);
	assert_int_equal(w.period_ns, PERIOD);
	assert_int_equal(w.offset_ns, 70 * MS);
	assert_int_equal(w.length_ns, 30 * MS);
	/* A new open finds the damage. */
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_CORRUPT, "damaged header");
	gpucap_sched_close(a);
}

static void next_open_follows_window(void **state)
{
	(void)state;
	struct gpucap_sched_window w = {
	    .shared = true, .period_ns = PERIOD, .offset_ns = 30 * MS, .length_ns = 20 * MS, .tenants = 2};
	uint64_t until = 0;
	/* Inside: now, until the window's end. */
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 40 * MS, &until), T0 + 40 * MS);
	assert_int_equal(until, T0 + 50 * MS);
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 30 * MS, &until), T0 + 30 * MS);
	assert_int_equal(until, T0 + 50 * MS);
	/* Before: the window's start this period. */
	until = 0;
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 10 * MS, &until), T0 + 30 * MS);
	assert_int_equal(until, T0 + 50 * MS);
	/* At or after its end: the next period's start. */
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 50 * MS, &until), T0 + 130 * MS);
	assert_int_equal(until, T0 + 150 * MS);
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 99 * MS, &until), T0 + 130 * MS);
	assert_int_equal(until, T0 + 150 * MS);

	/* A window running to the period's end. */
	struct gpucap_sched_window tail = w;
	tail.offset_ns = 30 * MS;
	tail.length_ns = 70 * MS;
	assert_int_equal(gpucap_sched_next_open(&tail, T0 + 99 * MS, &until), T0 + 99 * MS);
	assert_int_equal(until, T0 + 100 * MS);
	assert_int_equal(gpucap_sched_next_open(&tail, T0 + 100 * MS, &until), T0 + 130 * MS);
	assert_int_equal(until, T0 + 200 * MS);

	/* Not shared: at once, without end. */
	struct gpucap_sched_window alone = {.shared = false, .period_ns = PERIOD, .tenants = 1};
	until = 0;
	assert_int_equal(gpucap_sched_next_open(&alone, T0 + 10 * MS, &until), T0 + 10 * MS);
	assert_int_equal(until, UINT64_MAX);

	/* With a real handle: tenant 9 after tenant 5's 30 ms. */
	const char *uuid = "GPU-next";
	gpucap_sched *a = open_ok(uuid, 9);
	gpucap_sched_touch(a, 700000, 700000, T0);
	slot_write(uuid, PEER_SLOT, 5, T0, 300000);
	struct gpucap_sched_window wa = window_of(a, 700000, T0 + 5 * MS);
	assert_int_equal(gpucap_sched_next_open(&wa, T0 + 5 * MS, &until), T0 + 30 * MS);
	assert_int_equal(until, T0 + 100 * MS);
	gpucap_sched_close(a);
}

static void symlink_is_refused(void **state)
{
	(void)state;
	const char *uuid = "GPU-link";
	const char *target = scratch_path("link-target");
	make_file(target, 5, "hello", 5);
	assert_int_equal(symlink(target, sched_path(uuid)), 0);
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_PERMISSION, "symbolic link");
	struct stat st;
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_size, 5); /* not resized through the link */

	/* A dangling link: nothing is created at its target. */
	const char *uuid2 = "GPU-dangling";
	const char *nowhere = scratch_path("nowhere");
	assert_int_equal(symlink(nowhere, sched_path(uuid2)), 0);
	expect_open_fails(scratch_dir(), uuid2, 5, GPUCAP_ERR_PERMISSION, "symbolic link");
	assert_int_equal(lstat(nowhere, &st), -1);
}

static void wrong_size_is_corrupt(void **state)
{
	(void)state;
	const char *uuid = "GPU-size";
	unsigned char h[RAW_HEADER_SIZE];
	good_header(h);
	make_file(sched_path(uuid), 100, h, sizeof(h));
	assert_int_equal(chmod(sched_path(uuid), 0600), 0);
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_CORRUPT, "not a gpucap schedule file");
	struct stat st;
	assert_int_equal(stat(sched_path(uuid), &st), 0);
	assert_int_equal(st.st_size, 100);          /* left as found */
	assert_int_equal(st.st_mode & 07777, 0600); /* and not opened up */

	/* One byte too long, too. */
	make_file(sched_path(uuid), RAW_FILE_SIZE + 1, h, sizeof(h));
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_CORRUPT, NULL);
}

/* Someone's private file linked to the schedule's name is refused before
 * anything is written to it or its mode changes. */
static void hard_link_is_refused(void **state)
{
	(void)state;
	const char *uuid = "GPU-hardlink";
	char private_path[512];
	snprintf(private_path, sizeof(private_path), "%s/private", scratch_dir());
	make_file(private_path, 0, NULL, 0);
	assert_int_equal(chmod(private_path, 0600), 0);
	if (link(private_path, sched_path(uuid)) != 0)
		fail_msg("link: %s", strerror(errno));
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_PERMISSION, "hard links");
	struct stat st;
	assert_int_equal(stat(private_path, &st), 0);
	assert_int_equal(st.st_size, 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	unlink(sched_path(uuid));
	unlink(private_path);
}

static void bad_magic_is_corrupt(void **state)
{
	(void)state;
	const char *uuid = "GPU-magic";
	unsigned char h[RAW_HEADER_SIZE];
	good_header(h);
	memcpy(h, "NOTGPUCA", 8);
	make_file(sched_path(uuid), RAW_FILE_SIZE, h, sizeof(h));
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_CORRUPT, "not a gpucap schedule file");
	/* Not rewritten. */
	unsigned char back[8];
	raw_pread(sched_path(uuid), 0, back, sizeof(back));
	assert_memory_equal(back, "NOTGPUCA", 8);
}

static void other_version_is_refused(void **state)
{
	(void)state;
	const char *uuid = "GPU-version";
	unsigned char h[RAW_HEADER_SIZE];
	good_header(h);
	uint32_t version = 2;
	memcpy(h + OFF_VERSION, &version, 4);
	make_file(sched_path(uuid), RAW_FILE_SIZE, h, sizeof(h));
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_VERSION, "format version 2");
}

static void damaged_header_is_corrupt(void **state)
{
	(void)state;
	const char *uuid = "GPU-damaged";
	struct {
		size_t offset;
		size_t len;
		uint64_t value;
	} damage[] = {
	    {OFF_PERIOD, 8, 0},
	    {OFF_PERIOD, 8, GPUCAP_SCHED_PERIOD_MIN_NS - 1},
	    {OFF_PERIOD, 8, GPUCAP_SCHED_PERIOD_MAX_NS + 1},
	    {OFF_SLOT_COUNT, 4, 64},
	    {OFF_HEADER_SIZE, 4, 128},
	    {OFF_SLOT_SIZE, 4, 32},
	};
	for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
		unsigned char h[RAW_HEADER_SIZE];
		good_header(h);
		if (damage[i].len == 8) {
			memcpy(h + damage[i].offset, &damage[i].value, 8);
		} else {
			uint32_t v = (uint32_t)damage[i].value;
			memcpy(h + damage[i].offset, &v, 4);
		}
		make_file(sched_path(uuid), RAW_FILE_SIZE, h, sizeof(h));
		expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_CORRUPT, "damaged header");
	}
	/* The bounds themselves are accepted. */
	unsigned char h[RAW_HEADER_SIZE];
	good_header(h);
	uint64_t p = GPUCAP_SCHED_PERIOD_MIN_NS;
	memcpy(h + OFF_PERIOD, &p, 8);
	make_file(sched_path(uuid), RAW_FILE_SIZE, h, sizeof(h));
	gpucap_sched *a = open_ok(uuid, 5);
	assert_int_equal(window_of(a, 300000, T0).period_ns, GPUCAP_SCHED_PERIOD_MIN_NS);
	gpucap_sched_close(a);
}

static void non_regular_paths_are_refused(void **state)
{
	(void)state;
	const char *uuid = "GPU-dir";
	assert_int_equal(mkdir(sched_path(uuid), 0777), 0);
	char why[512] = "";
	gpucap_sched *s = SENTINEL_HANDLE;
	assert_int_not_equal(gpucap_sched_open(scratch_dir(), uuid, 5, &s, why, sizeof(why)), GPUCAP_OK);
	assert_null(s);
	assert_non_null(strstr(why, sched_path(uuid)));
	struct stat st;
	assert_int_equal(lstat(sched_path(uuid), &st), 0);
	assert_true(S_ISDIR(st.st_mode));

	const char *uuid2 = "GPU-fifo";
	assert_int_equal(mkfifo(sched_path(uuid2), 0666), 0);
	expect_open_fails(scratch_dir(), uuid2, 5, GPUCAP_ERR_PERMISSION, "not a regular file");
}

static void missing_dir_is_io(void **state)
{
	(void)state;
	expect_open_fails(scratch_path("no-such-dir"), "GPU-x", 5, GPUCAP_ERR_IO, "GPUCAP_NODE_DIR");
	/* A file where the directory should be. */
	make_file(scratch_path("plain-file"), 1, "x", 1);
	expect_open_fails(scratch_path("plain-file"), "GPU-x", 5, GPUCAP_ERR_IO, "GPUCAP_NODE_DIR");
}

static void bad_arguments_are_invalid(void **state)
{
	(void)state;
	const char *dir = scratch_dir();
	expect_open_fails(dir, "GPU-a/b", 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(dir, "..", 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(dir, "../escape", 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(dir, "GPU.1", 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(dir, "", 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(dir, "GPU ok", 5, GPUCAP_ERR_INVALID, NULL);
	char long_uuid[GPUCAP_UUID_MAX + 8];
	memset(long_uuid, 'a', sizeof(long_uuid) - 1);
	long_uuid[sizeof(long_uuid) - 1] = '\0';
	expect_open_fails(dir, long_uuid, 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(dir, "GPU-ok", 0, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(dir, NULL, 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails(NULL, "GPU-ok", 5, GPUCAP_ERR_INVALID, NULL);
	expect_open_fails("", "GPU-ok", 5, GPUCAP_ERR_INVALID, NULL);
	/* None of them created a file. */
	struct stat st;
	assert_int_equal(lstat(sched_path("GPU-ok"), &st), -1);
	/* Without out, nothing; without why, still the status. */
	assert_int_equal(gpucap_sched_open(dir, "GPU-ok", 5, NULL, NULL, 0), GPUCAP_ERR_INVALID);
	gpucap_sched *s = SENTINEL_HANDLE;
	assert_int_equal(gpucap_sched_open(dir, "GPU-ok", 0, &s, NULL, 0), GPUCAP_ERR_INVALID);
	assert_null(s);
}

static void half_created_file_is_completed(void **state)
{
	(void)state;
	const char *uuid = "GPU-half";
	/* Sized, never stamped, with a leftover slot (nobody held it). */
	make_file(sched_path(uuid), RAW_FILE_SIZE, NULL, 0);
	slot_write(uuid, 7, 77, T0, 500000);
	gpucap_sched *a = open_ok(uuid, 9);
	assert_int_equal(gpucap_sched_slot(a), 0);
	unsigned char h[RAW_HEADER_SIZE];
	raw_pread(sched_path(uuid), 0, h, sizeof(h));
	uint64_t magic, period;
	uint32_t version, slots;
	memcpy(&magic, h + OFF_MAGIC, 8);
	memcpy(&version, h + OFF_VERSION, 4);
	memcpy(&slots, h + OFF_SLOT_COUNT, 4);
	memcpy(&period, h + OFF_PERIOD, 8);
	assert_int_equal(magic, RAW_MAGIC);
	assert_int_equal(version, GPUCAP_SCHED_FORMAT_VERSION);
	assert_int_equal(slots, GPUCAP_SCHED_SLOTS);
	assert_int_equal(period, PERIOD);
	assert_int_equal(slot_read(uuid, 7).tenant, 0);
	gpucap_sched_touch(a, 300000, 300000, T0);
	assert_false(window_of(a, 300000, T0).shared);
	gpucap_sched *b = open_ok(uuid, 5);
	assert_int_equal(gpucap_sched_slot(b), 1);
	gpucap_sched_close(b);
	gpucap_sched_close(a);

	/* An empty file is made whole as well. */
	const char *uuid2 = "GPU-empty";
	make_file(sched_path(uuid2), 0, NULL, 0);
	a = open_ok(uuid2, 9);
	struct stat st;
	assert_int_equal(stat(sched_path(uuid2), &st), 0);
	assert_int_equal(st.st_size, RAW_FILE_SIZE);
	gpucap_sched_close(a);
}

/* Hold the creator's lease on path, as a process at work creating it. */
static int hold_init_lease(const char *path)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct flock lock;
	memset(&lock, 0, sizeof(lock));
	lock.l_type = F_WRLCK;
	lock.l_whence = SEEK_SET;
	lock.l_start = (off_t)RAW_LEASE_INIT;
	lock.l_len = 1;
	assert_int_equal(fcntl(fd, F_OFD_SETLK, &lock), 0);
	return fd;
}

static void creator_at_work_is_busy(void **state)
{
	(void)state;
	const char *uuid = "GPU-busy";
	make_file(sched_path(uuid), RAW_FILE_SIZE, NULL, 0);
	int fd = hold_init_lease(sched_path(uuid));
	expect_open_fails(scratch_dir(), uuid, 5, GPUCAP_ERR_BUSY, "being created");
	close(fd); /* the creator died */
	gpucap_sched *a = open_ok(uuid, 5);
	gpucap_sched_close(a);

	/* Before it even sized the file. */
	const char *uuid2 = "GPU-busy-empty";
	make_file(sched_path(uuid2), 0, NULL, 0);
	fd = hold_init_lease(sched_path(uuid2));
	expect_open_fails(scratch_dir(), uuid2, 5, GPUCAP_ERR_BUSY, "being created");
	struct stat st;
	assert_int_equal(stat(sched_path(uuid2), &st), 0);
	assert_int_equal(st.st_size, 0);
	close(fd);
	a = open_ok(uuid2, 5);
	gpucap_sched_close(a);
}

static void all_slots_taken_is_full(void **state)
{
	(void)state;
	const char *uuid = "GPU-full";
	gpucap_sched *h[GPUCAP_SCHED_SLOTS];
	for (unsigned i = 0; i < GPUCAP_SCHED_SLOTS; i++) {
		h[i] = open_ok(uuid, 1 + i);
		assert_int_equal(gpucap_sched_slot(h[i]), (int)i);
	}
	expect_open_fails(scratch_dir(), uuid, 500, GPUCAP_ERR_FULL, "no free slot");
	/* The refused open took nothing: a freed slot goes to the next. */
	gpucap_sched_close(h[57]);
	h[57] = open_ok(uuid, 500);
	assert_int_equal(gpucap_sched_slot(h[57]), 57);
	expect_open_fails(scratch_dir(), uuid, 501, GPUCAP_ERR_FULL, "no free slot");
	for (unsigned i = 0; i < GPUCAP_SCHED_SLOTS; i++)
		gpucap_sched_close(h[i]);
	gpucap_sched *a = open_ok(uuid, 5);
	assert_int_equal(gpucap_sched_slot(a), 0);
	gpucap_sched_close(a);
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
	    cmocka_unit_test(open_creates_file_and_claims_slots),
	    cmocka_unit_test(slot_lease_dies_with_process),
	    cmocka_unit_test(forget_keeps_parents_slot),
	    cmocka_unit_test(close_frees_slot_despite_forked_child),
	    cmocka_unit_test(touch_writes_own_slot),
	    cmocka_unit_test(close_clears_activity),
	    cmocka_unit_test(two_tenants_lay_windows_end_to_end),
	    cmocka_unit_test(lone_tenant_is_not_shared),
	    cmocka_unit_test(over_subscribed_duties_are_scaled),
	    cmocka_unit_test(tenants_order_by_id_not_slot),
	    cmocka_unit_test(stale_and_future_peers_are_ignored),
	    cmocka_unit_test(own_window_uses_own_duty_argument),
	    cmocka_unit_test(hostile_peer_duties_are_clamped),
	    cmocka_unit_test(header_is_read_once),
	    cmocka_unit_test(next_open_follows_window),
	    cmocka_unit_test(symlink_is_refused),
	    cmocka_unit_test(wrong_size_is_corrupt),
	    cmocka_unit_test(hard_link_is_refused),
	    cmocka_unit_test(bad_magic_is_corrupt),
	    cmocka_unit_test(other_version_is_refused),
	    cmocka_unit_test(damaged_header_is_corrupt),
	    cmocka_unit_test(non_regular_paths_are_refused),
	    cmocka_unit_test(missing_dir_is_io),
	    cmocka_unit_test(bad_arguments_are_invalid),
	    cmocka_unit_test(half_created_file_is_completed),
	    cmocka_unit_test(creator_at_work_is_busy),
	    cmocka_unit_test(all_slots_taken_is_full),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
