/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the node schedule (include/gpucap/schedule.h): each tenant's
 * own file, its records and their release when a process dies, the window
 * layout every process computes alike, and what hostile files can and cannot
 * do (tests/unit/test_schedule_attacks.c: the attacks themselves). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "sched_test.h"

static void open_creates_tenant_file_and_claims_records(void **state)
{
	(void)state;
	const char *dir = node_dir("create");
	const char *uuid = "GPU-create";
	mode_t old = umask(077); /* the file must still end up 0644 */
	gpucap_sched *a = sched_open_ok(dir, uuid, 5);
	umask(old);
	struct stat st;
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(st.st_uid, geteuid());
	assert_int_equal(st.st_size, SCHED_FILE_SIZE);
	assert_int_equal(gpucap_sched_slot(a), 0);
	/* Made under a private name and renamed: nothing else is left. */
	assert_int_equal(dir_entries(dir), 1);

	struct sched_file_header h;
	raw_pread(tenant_path(dir, uuid, 5), 0, &h, sizeof(h));
	assert_true(sched_header_ok(&h, 5));
	struct sched_record r0 = record_read(dir, uuid, 5, 0);
	assert_true(sched_record_ok(&r0));
	assert_int_equal(r0.tenant, 5);
	assert_int_equal(r0.active_ns, 0);
	assert_int_equal(r0.pid, getpid());

	/* OFD leases belong to open files: a second open of the tenant in
	 * this process takes the next record of the same file. */
	gpucap_sched *b = sched_open_ok(dir, uuid, 5);
	assert_int_equal(gpucap_sched_slot(b), 1);
	gpucap_sched *c = sched_open_ok(dir, uuid, 9);
	assert_int_equal(gpucap_sched_slot(c), 0);
	assert_int_equal(dir_entries(dir), 2);

	/* A user's file set to another mode is set back. */
	assert_int_equal(chmod(tenant_path(dir, uuid, 5), 0600), 0);
	gpucap_sched *d = sched_open_ok(dir, uuid, 5);
	assert_int_equal(gpucap_sched_slot(d), 2);
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);

	/* The last user of a file removes it; others leave it. */
	gpucap_sched_close(a);
	gpucap_sched_close(b);
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), 0);
	gpucap_sched_close(d);
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), -1);
	assert_int_equal(dir_entries(dir), 1);
	gpucap_sched_close(c);
	assert_int_equal(dir_entries(dir), 0);

	assert_int_equal(gpucap_sched_slot(NULL), -1);
	assert_int_equal(gpucap_sched_refresh(NULL, T0, NULL, 0), 0);
	gpucap_sched_close(NULL);
	gpucap_sched_forget(NULL);
}

static void record_lease_dies_with_process(void **state)
{
	(void)state;
	const char *dir = node_dir("dies");
	const char *uuid = "GPU-dies";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	int up[2], down[2];
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(up[0]);
		close(down[1]);
		gpucap_sched *c = NULL;
		if (gpucap_sched_open(dir, uuid, 9, &c, NULL, 0) != GPUCAP_OK)
			_exit(3);
		int record = gpucap_sched_slot(c);
		if (write(up[1], &record, sizeof(record)) != (ssize_t)sizeof(record))
			_exit(4);
		char byte;
		while (read(down[0], &byte, 1) < 0 && errno == EINTR) {
		}
		_exit(5); /* not reached: killed first */
	}
	close(up[1]);
	close(down[0]);
	int child_record = -1;
	assert_int_equal(read(up[0], &child_record, sizeof(child_record)), (ssize_t)sizeof(child_record));
	assert_int_equal(child_record, 1);
	gpucap_sched *b = sched_open_ok(dir, uuid, 9);
	assert_int_equal(gpucap_sched_slot(b), 2);
	gpucap_sched_close(b);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(wait_child(pid), 128 + SIGKILL);
	close(down[1]);
	close(up[0]);
	/* The kernel dropped its lease: the record is free again. */
	b = sched_open_ok(dir, uuid, 9);
	assert_int_equal(gpucap_sched_slot(b), 1);
	gpucap_sched_close(b);
	gpucap_sched_close(a);
}

static void forget_keeps_parents_record(void **state)
{
	(void)state;
	const char *dir = node_dir("forget");
	const char *uuid = "GPU-forget";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	gpucap_sched_refresh(a, T0, NULL, 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The parent's lease (shared open file) stays: the child's own
		 * open takes record 1, and its close leaves the file. */
		gpucap_sched_forget(a);
		gpucap_sched *c = NULL;
		if (gpucap_sched_open(dir, uuid, 9, &c, NULL, 0) != GPUCAP_OK)
			_exit(3);
		int record = gpucap_sched_slot(c);
		gpucap_sched_close(c);
		_exit(record == 1 ? 0 : 10 + record);
	}
	assert_int_equal(wait_child(pid), 0);
	struct sched_record r0 = record_read(dir, uuid, 9, 0);
	assert_true(sched_record_ok(&r0));
	assert_int_equal(r0.active_ns, T0);
	assert_int_equal(r0.duty_ppm, 300000);
	gpucap_sched *b = sched_open_ok(dir, uuid, 9);
	assert_int_equal(gpucap_sched_slot(b), 1);
	gpucap_sched_close(b);
	gpucap_sched_close(a);
}

static void refresh_writes_own_record(void **state)
{
	(void)state;
	const char *dir = node_dir("touch");
	const char *uuid = "GPU-touch";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched_touch(a, 0, 5000000, T0); /* clamped to 1..10^6 */
	/* touch writes nothing to the file by itself. */
	assert_int_equal(record_read(dir, uuid, 9, 0).active_ns, 0);
	gpucap_sched_refresh(a, T0, NULL, 0);
	struct sched_record r = record_read(dir, uuid, 9, 0);
	assert_true(sched_record_ok(&r));
	assert_int_equal(r.active_ns, T0);
	assert_int_equal(r.duty_ppm, 1);
	assert_int_equal(r.cap_ppm, GPUCAP_SCHED_PPM);
	uint64_t seq = r.seq;
	/* Nothing changed within the heartbeat: no write. */
	gpucap_sched_touch(a, 0, 5000000, T0 + 50 * MS);
	gpucap_sched_refresh(a, T0 + 50 * MS, NULL, 0);
	assert_int_equal(record_read(dir, uuid, 9, 0).seq, seq);
	/* Past it: the stamp moves on. */
	gpucap_sched_touch(a, 0, 5000000, T0 + 150 * MS);
	gpucap_sched_refresh(a, T0 + 150 * MS, NULL, 0);
	r = record_read(dir, uuid, 9, 0);
	assert_int_equal(r.active_ns, T0 + 150 * MS);
	assert_int_equal(r.seq, seq + 1);
	/* A duty change is written at once. */
	gpucap_sched_touch(a, 400000, 400000, T0 + 160 * MS);
	gpucap_sched_refresh(a, T0 + 160 * MS, NULL, 0);
	assert_int_equal(record_read(dir, uuid, 9, 0).duty_ppm, 400000);
	/* Idle for longer than a tenant counts: written idle. */
	gpucap_sched_refresh(a, T0 + 3 * SEC, NULL, 0);
	assert_int_equal(record_read(dir, uuid, 9, 0).active_ns, 0);
	/* Removed under it: made anew at the next refresh, record written. */
	assert_int_equal(unlink(tenant_path(dir, uuid, 9)), 0);
	gpucap_sched_touch(a, 400000, 400000, T0 + 4 * SEC);
	gpucap_sched_refresh(a, T0 + 4 * SEC, NULL, 0);
	r = record_read(dir, uuid, 9, (unsigned)gpucap_sched_slot(a));
	assert_true(sched_record_ok(&r));
	assert_int_equal(r.active_ns, T0 + 4 * SEC);
	assert_int_equal(r.duty_ppm, 400000);
	gpucap_sched_close(a);
	assert_int_equal(dir_entries(dir), 0);
}

static void two_tenants_lay_windows_end_to_end(void **state)
{
	(void)state;
	const char *dir = node_dir("two");
	const char *uuid = "GPU-two";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched *b = sched_open_ok(dir, uuid, 5);
	gpucap_sched_touch(a, 700000, 700000, T0);
	gpucap_sched_touch(b, 300000, 250000, T0);
	gpucap_sched *both[] = {a, b};
	settle(both, 2, T0);
	/* Tenant 5 first (lower id, same user), then tenant 9. */
	struct gpucap_sched_window wa = window_of(a, 700000, T0), wb = window_of(b, 300000, T0);
	assert_true(wa.shared && wb.shared);
	assert_int_equal(wa.period_ns, PERIOD);
	assert_int_equal(wb.offset_ns, 0);
	assert_int_equal(wb.length_ns, 30 * MS);
	assert_int_equal(wa.offset_ns, 30 * MS);
	assert_int_equal(wa.length_ns, 70 * MS);
	assert_int_equal(wa.tenants, 2);
	assert_int_equal(wa.total_ppm, 1000000);
	assert_int_equal(wa.caps_ppm, 950000);

	/* A lone tenant does not take turns. */
	gpucap_sched_close(b);
	gpucap_sched_refresh(a, T0 + 10 * MS, NULL, 0);
	struct gpucap_sched_window w = window_of(a, 700000, T0 + 10 * MS);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);
	assert_int_equal(w.total_ppm, 700000);
	/* Nor does a handle never refreshed, nor a NULL one. */
	gpucap_sched *c = sched_open_ok(dir, uuid, 7);
	assert_false(window_of(c, 300000, T0).shared);
	w = window_of(NULL, 300000, T0);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);
	gpucap_sched_close(c);
	gpucap_sched_close(a);
}

static void own_window_uses_own_duty_argument(void **state)
{
	(void)state;
	const char *dir = node_dir("own-duty");
	const char *uuid = "GPU-own-duty";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched_touch(a, 500000, 500000, T0);
	forge_peer(dir, uuid, 5, 200000, T0);
	gpucap_sched_refresh(a, T0, NULL, 0);
	/* A duty changed since the refresh counts at once for the length. */
	struct gpucap_sched_window w = window_of(a, 100000, T0);
	assert_true(w.shared);
	assert_int_equal(w.offset_ns, 20 * MS);
	assert_int_equal(w.length_ns, 10 * MS);
	/* A window never runs past the period: moved back to end there. */
	w = window_of(a, 900000, T0);
	assert_int_equal(w.offset_ns, 10 * MS);
	assert_int_equal(w.length_ns, 90 * MS);
	gpucap_sched_close(a);
}

static void over_subscribed_claims_overlap_never_shrink(void **state)
{
	(void)state;
	const char *dir = node_dir("over");
	const char *uuid = "GPU-over";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched_touch(a, 700000, 700000, T0);
	forge_peer(dir, uuid, 5, 600000, T0);
	forge_peer(dir, uuid, 7, 500000, T0);
	gpucap_sched_refresh(a, T0, NULL, 0);
	/* 5 at [0, 60), 7 past the end moved back to [50, 100), 9 after 110%
	 * of the period starts over at 10% of it: each as long as its duty. */
	struct gpucap_sched_window w = window_of(a, 700000, T0);
	assert_true(w.shared);
	assert_int_equal(w.tenants, 3);
	assert_int_equal(w.total_ppm, 1800000);
	assert_int_equal(w.length_ns, 70 * MS);
	assert_int_equal(w.offset_ns, 10 * MS);
	gpucap_sched_close(a);
}

static void stale_future_and_idle_peers_are_ignored(void **state)
{
	(void)state;
	const char *dir = node_dir("stale");
	const char *uuid = "GPU-stale";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	forge_peer(dir, uuid, 5, 300000, T0 - 2 * SEC);
	forge_peer(dir, uuid, 6, 300000, T0 + 5 * SEC);
	forge_peer(dir, uuid, 7, 300000, 0);
	assert_int_equal(gpucap_sched_refresh(a, T0, NULL, 0), 0);
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_false(w.shared);
	assert_int_equal(w.tenants, 1);
	/* Within a second: it counts. */
	forge_peer(dir, uuid, 5, 300000, T0 - 900 * MS);
	gpucap_sched_refresh(a, T0, NULL, 0);
	assert_true(window_of(a, 300000, T0).shared);
	/* A layout nobody refreshed for GPUCAP_SCHED_LAYOUT_STALE_NS is not
	 * used: back to the tenant's own duty cycle. */
	assert_true(window_of(a, 300000, T0 + GPUCAP_SCHED_LAYOUT_STALE_NS).shared);
	assert_false(window_of(a, 300000, T0 + GPUCAP_SCHED_LAYOUT_STALE_NS + 1).shared);
	gpucap_sched_close(a);
}

static void forged_records_are_checked(void **state)
{
	(void)state;
	const char *dir = node_dir("forged");
	const char *uuid = "GPU-forged";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	/* Duties out of range are clamped: 0 counts as 1 ppm, 5x as 100%. */
	forge_peer(dir, uuid, 5, 0, T0);
	forge_peer(dir, uuid, 6, 5000000, T0);
	gpucap_sched_refresh(a, T0, NULL, 0);
	struct gpucap_sched_window w = window_of(a, 300000, T0);
	assert_int_equal(w.tenants, 3);
	assert_int_equal(w.total_ppm, 1 + 1000000 + 300000);
	assert_int_equal(w.length_ns, 30 * MS);
	remove_peer(dir, uuid, 5);
	remove_peer(dir, uuid, 6);

	/* A record speaking for another tenant than its file's is forged;
	 * so is one whose checksum fails (a torn or hand-made write). */
	forge_peer(dir, uuid, 5, 300000, T0);
	struct sched_record r = record_read(dir, uuid, 5, 0);
	r.tenant = 6;
	sched_seal_record(&r);
	record_write(dir, uuid, 5, 0, &r);
	forge_peer(dir, uuid, 7, 300000, T0);
	r = record_read(dir, uuid, 7, 0);
	r.duty_ppm = 10;
	record_write(dir, uuid, 7, 0, &r); /* not resealed */
	/* A header naming another tenant than its file name. */
	forge_peer(dir, uuid, 8, 300000, T0);
	struct sched_file_header h;
	raw_pread(tenant_path(dir, uuid, 8), 0, &h, sizeof(h));
	h.tenant = 3;
	sched_seal_header(&h);
	raw_pwrite(tenant_path(dir, uuid, 8), 0, &h, sizeof(h));
	char why[512] = "";
	assert_int_equal(gpucap_sched_refresh(a, T0, why, sizeof(why)), 1);
	assert_non_null(strstr(why, tenant_name(uuid, 8)));
	assert_non_null(strstr(why, "header"));
	assert_false(window_of(a, 300000, T0).shared);
	gpucap_sched_close(a);
}

static void names_not_of_the_pattern_are_ignored(void **state)
{
	(void)state;
	const char *dir = node_dir("names");
	const char *uuid = "GPU-names";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	gpucap_sched_touch(a, 300000, 300000, T0);
	/* The format-1 shared file, another GPU's tenant, upper-case or short
	 * ids, a private name being made: none is a tenant of this GPU. */
	char path[700];
	snprintf(path, sizeof(path), "%s/gpucap-sched-%s", dir, uuid);
	make_file(path, 8256, 0666);
	forge_peer(dir, "GPU-other", 5, 300000, T0);
	snprintf(path, sizeof(path), "%s/gpucap-sched-%s.000000000000000A", dir, uuid);
	make_file(path, 10, 0644);
	snprintf(path, sizeof(path), "%s/gpucap-sched-%s.5", dir, uuid);
	make_file(path, 10, 0644);
	snprintf(path, sizeof(path), "%s/.gpucap-sched-%s.0000000000000005.77", dir, uuid);
	make_file(path, 10, 0644);
	char why[512] = "";
	assert_int_equal(gpucap_sched_refresh(a, T0, why, sizeof(why)), 0);
	assert_string_equal(why, "");
	assert_false(window_of(a, 300000, T0).shared);
	gpucap_sched_close(a);
}

static void dead_tenants_files_are_removed(void **state)
{
	(void)state;
	const char *dir = node_dir("dead");
	const char *uuid = "GPU-dead";
	uint64_t now = T0 + 120 * SEC;
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	/* This user's tenant 5, idle for two minutes, with no process: gone
	 * at the next refresh. Tenant 6, as idle, still has a process. */
	forge_peer(dir, uuid, 5, 300000, T0);
	gpucap_sched *six = sched_open_ok(dir, uuid, 6);
	gpucap_sched_refresh(a, now, NULL, 0);
	struct stat st;
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), -1);
	assert_int_equal(lstat(tenant_path(dir, uuid, 6), &st), 0);
	/* Idle for less: kept. */
	forge_peer(dir, uuid, 5, 300000, now - 10 * SEC);
	gpucap_sched_refresh(a, now, NULL, 0);
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), 0);
	/* A file nobody wrote for a while (wall clock: its mtime) has no
	 * active record whatever it says: not even opened; after a minute
	 * it is removed. */
	forge_peer(dir, uuid, 5, 300000, now);
	gpucap_sched_touch(a, 300000, 300000, now);
	gpucap_sched_refresh(a, now, NULL, 0);
	assert_true(window_of(a, 300000, now).shared);
	set_mtime_ago(tenant_path(dir, uuid, 5), 30);
	gpucap_sched_refresh(a, now, NULL, 0);
	assert_false(window_of(a, 300000, now).shared);
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), 0);
	set_mtime_ago(tenant_path(dir, uuid, 5), 120);
	gpucap_sched_refresh(a, now, NULL, 0);
	assert_int_equal(lstat(tenant_path(dir, uuid, 5), &st), -1);
	/* Not while a process uses it. */
	set_mtime_ago(tenant_path(dir, uuid, 6), 120);
	gpucap_sched_refresh(a, now, NULL, 0);
	assert_int_equal(lstat(tenant_path(dir, uuid, 6), &st), 0);
	gpucap_sched_close(six);
	gpucap_sched_close(a);
}

static void next_open_follows_window(void **state)
{
	(void)state;
	struct gpucap_sched_window w = {
	    .shared = true, .period_ns = PERIOD, .offset_ns = 30 * MS, .length_ns = 20 * MS, .tenants = 2};
	uint64_t until = 0;
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 40 * MS, &until), T0 + 40 * MS);
	assert_int_equal(until, T0 + 50 * MS);
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 30 * MS, &until), T0 + 30 * MS);
	assert_int_equal(until, T0 + 50 * MS);
	until = 0;
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 10 * MS, &until), T0 + 30 * MS);
	assert_int_equal(until, T0 + 50 * MS);
	assert_int_equal(gpucap_sched_next_open(&w, T0 + 50 * MS, &until), T0 + 130 * MS);
	assert_int_equal(until, T0 + 150 * MS);
	struct gpucap_sched_window tail = w;
	tail.length_ns = 70 * MS;
	assert_int_equal(gpucap_sched_next_open(&tail, T0 + 99 * MS, &until), T0 + 99 * MS);
	assert_int_equal(until, T0 + 100 * MS);
	assert_int_equal(gpucap_sched_next_open(&tail, T0 + 100 * MS, &until), T0 + 130 * MS);
	assert_int_equal(until, T0 + 200 * MS);
	struct gpucap_sched_window alone = {.shared = false, .period_ns = PERIOD, .tenants = 1};
	until = 0;
	assert_int_equal(gpucap_sched_next_open(&alone, T0 + 10 * MS, &until), T0 + 10 * MS);
	assert_int_equal(until, UINT64_MAX);
}

static void own_name_taken_by_something_else_is_refused(void **state)
{
	(void)state;
	const char *dir = node_dir("own-refused");
	const char *uuid = "GPU-own";
	char target[700];
	snprintf(target, sizeof(target), "%s/private", dir);
	make_file(target, 100, 0600);
	/* A symbolic link, a hard link, a directory, a FIFO (opened without
	 * blocking), a file of another user: refused, and left alone. */
	assert_int_equal(symlink(target, tenant_path(dir, uuid, 1)), 0);
	expect_open_fails(dir, uuid, 1, GPUCAP_ERR_PERMISSION, "symbolic link");
	assert_int_equal(link(target, tenant_path(dir, uuid, 2)), 0);
	expect_open_fails(dir, uuid, 2, GPUCAP_ERR_PERMISSION, "hard links");
	assert_int_equal(mkdir(tenant_path(dir, uuid, 3), 0755), 0);
	expect_open_fails(dir, uuid, 3, GPUCAP_ERR_PERMISSION, "not a regular file");
	assert_int_equal(mkfifo(tenant_path(dir, uuid, 4), 0644), 0);
	expect_open_fails(dir, uuid, 4, GPUCAP_ERR_PERMISSION, "not a regular file");
	if (geteuid() == 0) {
		forge_peer(dir, uuid, 6, 300000, T0);
		assert_int_equal(chown(tenant_path(dir, uuid, 6), 65534, 65534), 0);
		expect_open_fails(dir, uuid, 6, GPUCAP_ERR_PERMISSION, "belongs to uid 65534");
	}
	struct stat st;
	assert_int_equal(stat(target, &st), 0);
	assert_int_equal(st.st_size, 100);
	assert_int_equal(st.st_mode & 07777, 0600);
}

static void bad_arguments_and_directories(void **state)
{
	(void)state;
	expect_open_fails(NULL, "GPU-x", 1, GPUCAP_ERR_INVALID, "bad arguments");
	expect_open_fails("", "GPU-x", 1, GPUCAP_ERR_INVALID, "bad arguments");
	expect_open_fails(scratch_dir(), NULL, 1, GPUCAP_ERR_INVALID, "bad arguments");
	expect_open_fails(scratch_dir(), "GPU-x", 0, GPUCAP_ERR_INVALID, "bad arguments");
	expect_open_fails(scratch_dir(), "GPU/../x", 1, GPUCAP_ERR_INVALID, "cannot name a file");
	expect_open_fails(scratch_dir(), "GPU.x", 1, GPUCAP_ERR_INVALID, "cannot name a file");
	expect_open_fails(scratch_path("missing"), "GPU-x", 1, GPUCAP_ERR_IO, "not an existing directory");
	char *longdir = malloc(5000);
	assert_non_null(longdir);
	memset(longdir, 'a', 4999);
	longdir[4999] = '\0';
	expect_open_fails(longdir, "GPU-x", 1, GPUCAP_ERR_INVALID, "too long");
	free(longdir);
	gpucap_sched *s = SENTINEL_HANDLE;
	assert_int_equal(gpucap_sched_open(scratch_dir(), "GPU-x", 1, NULL, NULL, 0), GPUCAP_ERR_INVALID);
	(void)s;
}

static void all_records_taken_is_full(void **state)
{
	(void)state;
	const char *dir = node_dir("full");
	const char *uuid = "GPU-full";
	gpucap_sched *h[GPUCAP_SCHED_RECORDS];
	for (unsigned i = 0; i < GPUCAP_SCHED_RECORDS; i++)
		h[i] = sched_open_ok(dir, uuid, 3);
	expect_open_fails(dir, uuid, 3, GPUCAP_ERR_FULL, "no free record");
	/* Other tenants have files of their own. */
	gpucap_sched *other = sched_open_ok(dir, uuid, 4);
	gpucap_sched_close(other);
	for (unsigned i = 0; i < GPUCAP_SCHED_RECORDS; i++)
		gpucap_sched_close(h[i]);
}

struct reader_args {
	gpucap_sched *s;
	_Atomic bool *stop;
	unsigned bad, shared;
};

/* A gate's view: whatever refresh is publishing, a window is whole: as
 * long as the duty asked for, inside the period. */
static void *window_reader(void *arg)
{
	struct reader_args *a = arg;
	/* Some reads after refresh stopped, which left the neighbour in. */
	for (unsigned after = 0; !atomic_load(a->stop) || after++ < 100;) {
		gpucap_sched_touch(a->s, 300000, 300000, T0);
		struct gpucap_sched_window w;
		gpucap_sched_window(a->s, 300000, T0, &w);
		if (!w.shared)
			continue;
		a->shared++;
		if (w.length_ns != 30 * MS || w.offset_ns + w.length_ns > PERIOD ||
		    (w.offset_ns != 0 && w.offset_ns != 20 * MS))
			a->bad++;
	}
	return NULL;
}

static void window_reads_never_wait_for_refresh(void **state)
{
	(void)state;
	const char *dir = node_dir("concurrent");
	const char *uuid = "GPU-concurrent";
	gpucap_sched *a = sched_open_ok(dir, uuid, 9);
	_Atomic bool stop = false;
	struct reader_args args[2] = {{a, &stop, 0, 0}, {a, &stop, 0, 0}};
	pthread_t threads[2];
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&threads[i], NULL, window_reader, &args[i]), 0);
	/* The neighbour comes and goes: the offset moves between 0 and 20 ms. */
	for (int round = 0; round <= 200; round++) {
		if (round % 2 == 0)
			forge_peer(dir, uuid, 5, 200000, T0);
		else
			remove_peer(dir, uuid, 5);
		gpucap_sched_refresh(a, T0, NULL, 0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(pthread_join(threads[i], NULL), 0);
		assert_int_equal(args[i].bad, 0);
		assert_true(args[i].shared > 0);
	}
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
	    cmocka_unit_test(open_creates_tenant_file_and_claims_records),
	    cmocka_unit_test(record_lease_dies_with_process),
	    cmocka_unit_test(forget_keeps_parents_record),
	    cmocka_unit_test(refresh_writes_own_record),
	    cmocka_unit_test(two_tenants_lay_windows_end_to_end),
	    cmocka_unit_test(own_window_uses_own_duty_argument),
	    cmocka_unit_test(over_subscribed_claims_overlap_never_shrink),
	    cmocka_unit_test(stale_future_and_idle_peers_are_ignored),
	    cmocka_unit_test(forged_records_are_checked),
	    cmocka_unit_test(names_not_of_the_pattern_are_ignored),
	    cmocka_unit_test(dead_tenants_files_are_removed),
	    cmocka_unit_test(next_open_follows_window),
	    cmocka_unit_test(own_name_taken_by_something_else_is_refused),
	    cmocka_unit_test(bad_arguments_and_directories),
	    cmocka_unit_test(all_records_taken_is_full),
	    cmocka_unit_test(window_reads_never_wait_for_refresh),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
