/* SPDX-License-Identifier: Apache-2.0 */
/* One tenant of the node schedule attacking another through the files in
 * GPUCAP_NODE_DIR: truncating, rewriting or garbage-filling files, flooding
 * the directory with fake tenants, half-made files after a full disk, links
 * and FIFOs planted at tenant names, and a second user doing all of it.
 * The victim must keep its whole window and its life. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

#include "sched_test.h"

#define VICTIM     UINT64_C(9)
#define NEIGHBOUR  UINT64_C(5)
#define FAKES      300u
#define FAKE_FIRST UINT64_C(0x1000)
#define NOBODY     65534u

static void send_byte(int fd)
{
	char b = 1;
	while (write(fd, &b, 1) < 0 && errno == EINTR) {
	}
}

static bool recv_byte(int fd)
{
	char b;
	ssize_t n;
	do
		n = read(fd, &b, 1);
	while (n < 0 && errno == EINTR);
	return n == 1;
}

/*
 * A victim process in a forked child: tenant VICTIM at 40% next to
 * NEIGHBOUR at 30%, refreshing and checking its window after each of the
 * parent's attacks. Exits 0 when the window was the same every time; a
 * SIGBUS would show as 128 + SIGBUS.
 */
static void victim_survives(const char *dir, const char *uuid,
                            void (*attack)(const char *dir, const char *uuid, int round), int rounds)
{
	forge_peer(dir, uuid, NEIGHBOUR, 300000, T0);
	int go[2], done[2];
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(go[1]);
		close(done[0]);
		alarm(60);
		gpucap_sched *v = NULL;
		if (gpucap_sched_open(dir, uuid, VICTIM, &v, NULL, 0) != GPUCAP_OK)
			_exit(3);
		gpucap_sched_touch(v, 400000, 400000, T0);
		gpucap_sched_refresh(v, T0, NULL, 0);
		struct gpucap_sched_window before = window_of(v, 400000, T0);
		if (!before.shared || before.length_ns != 40 * MS || before.offset_ns != 30 * MS)
			_exit(4);
		send_byte(done[1]);
		for (int round = 0; round < rounds; round++) {
			if (!recv_byte(go[0]))
				_exit(5);
			uint64_t now = T0 + (uint64_t)(round + 1) * MS;
			gpucap_sched_touch(v, 400000, 400000, now);
			gpucap_sched_refresh(v, now, NULL, 0);
			struct gpucap_sched_window w = window_of(v, 400000, now);
			/* Alone it runs its own duty cycle; shared, its whole
			 * window. */
			if (w.shared && w.length_ns != before.length_ns)
				_exit(6);
			send_byte(done[1]);
		}
		gpucap_sched_close(v);
		_exit(0);
	}
	close(go[0]);
	close(done[1]);
	assert_true(recv_byte(done[0]));
	for (int round = 0; round < rounds; round++) {
		attack(dir, uuid, round);
		send_byte(go[1]);
		if (!recv_byte(done[0]))
			break;
	}
	close(go[1]);
	close(done[0]);
	int status = wait_child(pid);
	if (status != 0)
		fprintf(stderr, "victim exited with %d (%d is SIGBUS)\n", status, 128 + SIGBUS);
	assert_int_equal(status, 0);
}

static void truncate_and_rewrite(const char *dir, const char *uuid, int round)
{
	const char *files[2] = {tenant_path(dir, uuid, NEIGHBOUR), tenant_path(dir, uuid, VICTIM)};
	for (int i = 0; i < 2; i++) {
		int fd = open(files[i], O_RDWR);
		assert_true(fd >= 0);
		switch (round) {
		case 0: /* truncate -s 0 */
			assert_int_equal(ftruncate(fd, 0), 0);
			break;
		case 1: /* the 8256-byte sparse file a full disk left before */
			assert_int_equal(ftruncate(fd, 8256), 0);
			break;
		case 2: { /* garbage at the right size */
			unsigned char junk[SCHED_FILE_SIZE];
			uint64_t seed = 77 + (uint64_t)i;
			for (size_t k = 0; k < sizeof(junk); k++)
				junk[k] = (unsigned char)test_random(&seed);
			assert_int_equal(ftruncate(fd, 0), 0);
			assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
			break;
		}
		case 3: /* grown far past its size */
			assert_int_equal(ftruncate(fd, 1 << 24), 0);
			break;
		default: /* shrunk by one byte */
			assert_int_equal(ftruncate(fd, SCHED_FILE_SIZE - 1), 0);
			break;
		}
		close(fd);
	}
}

static void truncating_or_rewriting_files_crashes_no_reader(void **state)
{
	(void)state;
	const char *dir = node_dir("truncate");
	victim_survives(dir, "GPU-truncate", truncate_and_rewrite, 5);
}

static void replace_with_specials(const char *dir, const char *uuid, int round)
{
	const char *peer = tenant_path(dir, uuid, NEIGHBOUR);
	unlink(peer);
	switch (round) {
	case 0:
		assert_int_equal(mkfifo(peer, 0666), 0);
		break;
	case 1:
		assert_int_equal(symlink("/dev/zero", peer), 0);
		break;
	default: {
		int sock = socket(AF_UNIX, SOCK_STREAM, 0);
		assert_true(sock >= 0);
		struct sockaddr_un a;
		memset(&a, 0, sizeof(a));
		a.sun_family = AF_UNIX;
		assert_true(strlen(peer) < sizeof(a.sun_path));
		strcpy(a.sun_path, peer);
		assert_int_equal(bind(sock, (struct sockaddr *)&a, sizeof(a)), 0);
		close(sock);
		break;
	}
	}
}

static void swapping_a_file_for_a_fifo_or_link_blocks_no_reader(void **state)
{
	(void)state;
	/* The scratch path may be too long for a socket: a short directory. */
	char dir[] = "/tmp/gpucap-sw-XXXXXX";
	assert_non_null(mkdtemp(dir));
	victim_survives(dir, "GPU-swap", replace_with_specials, 3);
	char command[200];
	snprintf(command, sizeof(command), "rm -rf '%s'", dir);
	assert_int_equal(system(command), 0);
}

/* Refresh in a forked child that a blocking open would leave hanging (killed
 * by the alarm): returns the child's refusal count, or -status. */
static int refusals_in_child(const char *dir, const char *uuid, char *why, size_t why_len)
{
	int out[2];
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(out[0]);
		alarm(10);
		gpucap_sched *v = NULL;
		if (gpucap_sched_open(dir, uuid, VICTIM, &v, NULL, 0) != GPUCAP_OK)
			_exit(3);
		char line[512] = "";
		uint32_t n = gpucap_sched_refresh(v, T0, line, sizeof(line));
		gpucap_sched_close(v);
		if (write(out[1], &n, sizeof(n)) != (ssize_t)sizeof(n) ||
		    write(out[1], line, sizeof(line)) != (ssize_t)sizeof(line))
			_exit(4);
		_exit(0);
	}
	close(out[1]);
	uint32_t n = 0;
	char line[512] = "";
	bool got = read(out[0], &n, sizeof(n)) == (ssize_t)sizeof(n) &&
	           read(out[0], line, sizeof(line)) == (ssize_t)sizeof(line);
	close(out[0]);
	int status = wait_child(pid);
	if (status != 0 || !got)
		return -(status ? status : 1);
	snprintf(why, why_len, "%s", line);
	return (int)n;
}

static void expect_refused(const char *dir, const char *uuid, const char *reason)
{
	char why[512] = "";
	int n = refusals_in_child(dir, uuid, why, sizeof(why));
	if (n != 1 || !strstr(why, reason) || !strstr(why, tenant_name(uuid, NEIGHBOUR)) || strchr(why, '\n'))
		fprintf(stderr, "refusals %d, why \"%s\" (wanted \"%s\")\n", n, why, reason);
	assert_int_equal(n, 1);
	assert_non_null(strstr(why, reason));
	assert_non_null(strstr(why, tenant_name(uuid, NEIGHBOUR)));
	assert_null(strchr(why, '\n'));
}

static void planted_links_and_fifos_are_refused_with_one_line(void **state)
{
	(void)state;
	const char *dir = node_dir("planted");
	const char *uuid = "GPU-planted";
	const char *peer = tenant_path(dir, uuid, NEIGHBOUR);
	/* A valid file elsewhere, reached by a symbolic link. */
	const char *elsewhere = node_dir("planted-elsewhere");
	forge_peer(elsewhere, uuid, NEIGHBOUR, 300000, T0);
	assert_int_equal(symlink(tenant_path(elsewhere, uuid, NEIGHBOUR), peer), 0);
	expect_refused(dir, uuid, "symbolic link");
	assert_int_equal(unlink(peer), 0);
	/* The same file with a second name (a hard link). */
	assert_int_equal(link(tenant_path(elsewhere, uuid, NEIGHBOUR), peer), 0);
	expect_refused(dir, uuid, "hard links");
	assert_int_equal(unlink(peer), 0);
	/* A FIFO nobody writes: an open that blocked would never return. */
	assert_int_equal(mkfifo(peer, 0666), 0);
	expect_refused(dir, uuid, "not a regular file");
	assert_int_equal(unlink(peer), 0);
	/* A directory. */
	assert_int_equal(mkdir(peer, 0755), 0);
	expect_refused(dir, uuid, "not a regular file");
	assert_int_equal(rmdir(peer), 0);
	/* Without any of them the neighbour counts. */
	forge_peer(dir, uuid, NEIGHBOUR, 300000, T0);
	char why[512];
	assert_int_equal(refusals_in_child(dir, uuid, why, sizeof(why)), 0);
}

/* Every fake tenant a valid file at 100% duty, active now, owned by uid. */
static int flood_raw(const char *dir, const char *uuid, unsigned count, uint32_t duty, uid_t uid)
{
	for (unsigned i = 0; i < count; i++) {
		int rc = forge_peer_raw(dir, uuid, FAKE_FIRST + i, duty, T0);
		if (rc != 0)
			return rc;
		if (uid != geteuid() && chown(tenant_path(dir, uuid, FAKE_FIRST + i), uid, uid) != 0)
			return -errno;
	}
	return 0;
}

static void unflood(const char *dir, const char *uuid, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		remove_peer(dir, uuid, FAKE_FIRST + i);
}

static void flooding_with_fake_tenants_never_shortens_a_window(void **state)
{
	(void)state;
	const char *dir = node_dir("flood");
	const char *uuid = "GPU-flood";
	gpucap_sched *victim = sched_open_ok(dir, uuid, VICTIM);
	gpucap_sched *neighbour = sched_open_ok(dir, uuid, NEIGHBOUR);
	gpucap_sched *both[] = {victim, neighbour};
	gpucap_sched_touch(victim, 300000, 300000, T0);
	gpucap_sched_touch(neighbour, 400000, 400000, T0);
	settle(both, 2, T0);
	struct gpucap_sched_window v0 = window_of(victim, 300000, T0), n0 = window_of(neighbour, 400000, T0);
	assert_true(v0.shared);
	assert_int_equal(v0.length_ns, 30 * MS);
	assert_int_equal(n0.length_ns, 40 * MS);
	assert_int_equal(n0.offset_ns, 0);
	assert_int_equal(v0.offset_ns, 40 * MS);

	/* The same user floods every name it can with 100% tenants: more
	 * than are laid out for one user. Both windows keep their length. */
	assert_int_equal(flood_raw(dir, uuid, FAKES, 1000000, geteuid()), 0);
	settle(both, 2, T0);
	struct gpucap_sched_window v = window_of(victim, 300000, T0), n = window_of(neighbour, 400000, T0);
	assert_true(v.shared);
	assert_int_equal(v.length_ns, 30 * MS);
	assert_int_equal(n.length_ns, 40 * MS);
	assert_int_equal(v.tenants, GPUCAP_SCHED_PEERS_PER_UID_MAX + 1);
	unflood(dir, uuid, FAKES);

	if (geteuid() == 0) {
		/* Another user's flood at 100% claims more than anyone: laid
		 * out last, it moves nobody. */
		assert_int_equal(flood_raw(dir, uuid, FAKES, 1000000, NOBODY), 0);
		settle(both, 2, T0);
		v = window_of(victim, 300000, T0);
		n = window_of(neighbour, 400000, T0);
		assert_int_equal(v.length_ns, 30 * MS);
		assert_int_equal(v.offset_ns, 40 * MS);
		assert_int_equal(n.length_ns, 40 * MS);
		assert_int_equal(n.offset_ns, 0);
		unflood(dir, uuid, FAKES);
		/* Small claims (1% each, 50% in all) come first: they move the
		 * windows by what they claim, and shorten none. */
		assert_int_equal(flood_raw(dir, uuid, 50, 10000, NOBODY), 0);
		settle(both, 2, T0);
		v = window_of(victim, 300000, T0);
		n = window_of(neighbour, 400000, T0);
		assert_int_equal(v.length_ns, 30 * MS);
		assert_int_equal(n.length_ns, 40 * MS);
		assert_int_equal(n.offset_ns, 50 * MS);
		assert_int_equal(v.offset_ns, 70 * MS);
		unflood(dir, uuid, 50);
	}
	gpucap_sched_close(neighbour);
	gpucap_sched_close(victim);
}

static void half_made_peer_files_are_refused(void **state)
{
	(void)state;
	const char *dir = node_dir("half-peer");
	const char *uuid = "GPU-half-peer";
	const char *peer = tenant_path(dir, uuid, NEIGHBOUR);
	/* What a full disk leaves: short, sparse, or whole but all zero. */
	const size_t sizes[] = {0, 100, 8256, SCHED_FILE_SIZE};
	const char *reasons[] = {"0 bytes", "100 bytes", "8256 bytes", "header"};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		make_file(peer, sizes[i], 0644);
		expect_refused(dir, uuid, reasons[i]);
	}
}

static void half_made_own_file_is_replaced(void **state)
{
	(void)state;
	const char *dir = node_dir("half-own");
	const char *uuid = "GPU-half-own";
	const char *mine = tenant_path(dir, uuid, VICTIM);
	make_file(mine, 8256, 0644);
	gpucap_sched *v = sched_open_ok(dir, uuid, VICTIM);
	struct stat st;
	assert_int_equal(stat(mine, &st), 0);
	assert_int_equal(st.st_size, SCHED_FILE_SIZE);
	struct sched_file_header h;
	raw_pread(mine, 0, &h, sizeof(h));
	assert_true(sched_header_ok(&h, VICTIM));
	/* Damaged while a process of the tenant uses it: refused, kept. */
	assert_int_equal(truncate(mine, 100), 0);
	expect_open_fails(dir, uuid, VICTIM, GPUCAP_ERR_CORRUPT, "damaged");
	gpucap_sched_close(v);
	/* Once it stopped, the next open makes it anew. */
	make_file(mine, 100, 0644);
	v = sched_open_ok(dir, uuid, VICTIM);
	assert_int_equal(stat(mine, &st), 0);
	assert_int_equal(st.st_size, SCHED_FILE_SIZE);
	gpucap_sched_close(v);
}

static void full_disk_leaves_nothing_and_retry_works(void **state)
{
	(void)state;
	const char *dir = node_dir("full-disk");
	const char *uuid = "GPU-full-disk";
	/* A file size limit below the file's: every write past it fails, as
	 * on a full disk (EFBIG instead of ENOSPC). */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit lim = {1000, 1000};
		if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
			_exit(2);
		char why[512] = "";
		gpucap_sched *v = NULL;
		gpucap_status st = gpucap_sched_open(dir, uuid, VICTIM, &v, why, sizeof(why));
		fprintf(stderr, "open under a full disk: %s\n", why);
		if (st != GPUCAP_ERR_IO || v || !strstr(why, "free space"))
			_exit(3);
		_exit(dir_entries(dir) == 0 ? 0 : 4);
	}
	assert_int_equal(wait_child(pid), 0);
	assert_int_equal(dir_entries(dir), 0);
	gpucap_sched *v = sched_open_ok(dir, uuid, VICTIM);
	gpucap_sched_close(v);
}

/* The attacker, as another user: every attack on the victim's files must be
 * refused by the kernel, and its own flood must be allowed. Exit status:
 * 0, or the number of the attack that went wrong. */
static int attacker(const char *dir, const char *uuid)
{
	if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) != 0)
		return 2;
	const char *victim = tenant_path(dir, uuid, VICTIM);
	const char *neighbour = tenant_path(dir, uuid, NEIGHBOUR);
	const char *targets[2] = {victim, neighbour};
	for (int i = 0; i < 2; i++) {
		if (open(targets[i], O_RDWR) >= 0 || errno != EACCES)
			return 10 + i;
		if (truncate(targets[i], 0) == 0 || errno != EACCES)
			return 12 + i;
		if (chmod(targets[i], 0666) == 0)
			return 14 + i;
		/* The directory is sticky: no one removes or renames another's. */
		if (unlink(targets[i]) == 0)
			return 16 + i;
		char moved[1024];
		snprintf(moved, sizeof(moved), "%s.moved", targets[i]);
		if (rename(targets[i], moved) == 0)
			return 18 + i;
	}
	/* Its own tenant at 100%, and a flood of fakes. */
	gpucap_sched *own = NULL;
	if (gpucap_sched_open(dir, uuid, 77, &own, NULL, 0) != GPUCAP_OK)
		return 20;
	gpucap_sched_touch(own, 1000000, 1000000, T0);
	gpucap_sched_refresh(own, T0, NULL, 0);
	if (flood_raw(dir, uuid, FAKES, 1000000, NOBODY) != 0)
		return 21;
	/* Names a future tenant would take: a link to the victim's file and
	 * a FIFO. */
	if (symlink(victim, tenant_path(dir, uuid, 11)) != 0 || mkfifo(tenant_path(dir, uuid, 12), 0666) != 0)
		return 22;
	gpucap_sched_forget(own); /* exits with its record held: still active */
	return 0;
}

static void another_user_cannot_touch_or_shrink_a_tenant(void **state)
{
	(void)state;
	if (geteuid() != 0) {
		fprintf(stderr, "two users: needs root to become uid %u; skipped\n", NOBODY);
		skip();
	}
	/* Another user reaches the node directory (sticky, as the docs ask)
	 * through the scratch directory. */
	assert_int_equal(chmod(scratch_dir(), 0711), 0);
	const char *dir = node_dir("two-users");
	assert_int_equal(chmod(dir, 01777), 0);
	const char *uuid = "GPU-two-users";
	gpucap_sched *victim = sched_open_ok(dir, uuid, VICTIM);
	gpucap_sched *neighbour = sched_open_ok(dir, uuid, NEIGHBOUR);
	gpucap_sched *both[] = {victim, neighbour};
	gpucap_sched_touch(victim, 300000, 300000, T0);
	gpucap_sched_touch(neighbour, 400000, 400000, T0);
	settle(both, 2, T0);
	struct gpucap_sched_window v0 = window_of(victim, 300000, T0), n0 = window_of(neighbour, 400000, T0);
	struct sched_file_header before;
	raw_pread(tenant_path(dir, uuid, VICTIM), 0, &before, sizeof(before));

	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(attacker(dir, uuid));
	int status = wait_child(pid);
	if (status != 0)
		fprintf(stderr, "attacker step %d went wrong\n", status);
	assert_int_equal(status, 0);

	/* The victims' files are whole and theirs. */
	struct stat st;
	assert_int_equal(stat(tenant_path(dir, uuid, VICTIM), &st), 0);
	assert_int_equal(st.st_uid, 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	assert_int_equal(st.st_size, SCHED_FILE_SIZE);
	struct sched_file_header after;
	raw_pread(tenant_path(dir, uuid, VICTIM), 0, &after, sizeof(after));
	assert_memory_equal(&before, &after, sizeof(before));
	/* The attacker's tenant and fakes are seen and laid out last: the
	 * victims' windows do not move or shrink. The planted names are
	 * reported. */
	char why[512] = "";
	gpucap_sched_touch(victim, 300000, 300000, T0);
	gpucap_sched_touch(neighbour, 400000, 400000, T0);
	gpucap_sched_refresh(neighbour, T0, NULL, 0);
	assert_int_equal(gpucap_sched_refresh(victim, T0, why, sizeof(why)), 2);
	assert_non_null(strstr(why, uuid));
	struct gpucap_sched_window v = window_of(victim, 300000, T0), n = window_of(neighbour, 400000, T0);
	assert_true(v.tenants > 2);
	assert_int_equal(v.length_ns, v0.length_ns);
	assert_int_equal(v.offset_ns, v0.offset_ns);
	assert_int_equal(n.length_ns, n0.length_ns);
	assert_int_equal(n.offset_ns, n0.offset_ns);
	gpucap_sched_close(neighbour);
	gpucap_sched_close(victim);
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
	    cmocka_unit_test(truncating_or_rewriting_files_crashes_no_reader),
	    cmocka_unit_test(swapping_a_file_for_a_fifo_or_link_blocks_no_reader),
	    cmocka_unit_test(planted_links_and_fifos_are_refused_with_one_line),
	    cmocka_unit_test(flooding_with_fake_tenants_never_shortens_a_window),
	    cmocka_unit_test(half_made_peer_files_are_refused),
	    cmocka_unit_test(half_made_own_file_is_replaced),
	    cmocka_unit_test(full_disk_leaves_nothing_and_retry_works),
	    cmocka_unit_test(another_user_cannot_touch_or_shrink_a_tenant),
	};
	return cmocka_run_group_tests(tests, NULL, teardown);
}
