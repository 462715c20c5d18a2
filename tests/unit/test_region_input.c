/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of hostile and broken input: every one must give a one-line
 * error naming the file and never crash. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "clock.h"
#include "layout.h"
#include "test_support.h"

#define GPU0 "GPU-00000000-1111-2222-3333-444444444444"

/* Attach and expect failure with status and a one-line message containing
 * both the path and the given words. */
static void expect_refusal(const char *path, bool observer, gpucap_status expected, const char *words)
{
	struct gpucap_region_options options = {.path = path, .observer = observer};
	gpucap_region *r = (gpucap_region *)0x1;
	char err[1024];
	gpucap_status status = gpucap_region_attach(&options, &r, err, sizeof(err));
	if (status != expected)
		fail_msg("attach %s: status %d (%s), expected %d; message: %s", path, status,
		         gpucap_status_text(status), expected, err);
	assert_null(r);
	assert_non_null(strstr(err, path));
	if (!strstr(err, words))
		fail_msg("message lacks \"%s\": %s", words, err);
	assert_null(strchr(err, '\n'));
	assert_true(strncmp(err, "gpucap: ", 8) == 0);
}

static void make_region(const char *path)
{
	gpucap_region *r = test_attach_claim(path);
	assert_true(gpucap_region_device_register(r, GPU0, 1 << 20, 0) >= 0);
	gpucap_region_detach(r);
}

static void patch_header(const char *path, void (*patch)(struct region_header *))
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	struct region_header h;
	assert_int_equal(pread(fd, &h, sizeof(h), 0), sizeof(h));
	patch(&h);
	assert_int_equal(pwrite(fd, &h, sizeof(h), 0), sizeof(h));
	close(fd);
}

static void truncated_file(void **state)
{
	(void)state;
	const char *path = scratch_path("truncated");
	make_region(path);
	assert_int_equal(truncate(path, 100), 0);
	expect_refusal(path, false, GPUCAP_ERR_CORRUPT, "truncated");
	expect_refusal(path, true, GPUCAP_ERR_CORRUPT, "truncated");
}

static void file_of_the_wrong_size(void **state)
{
	(void)state;
	const char *path = scratch_path("wrongsize");
	make_region(path);
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(truncate(path, st.st_size - 4096), 0);
	expect_refusal(path, false, GPUCAP_ERR_CORRUPT, "truncated or modified");
	assert_int_equal(truncate(path, st.st_size + 4096), 0);
	expect_refusal(path, true, GPUCAP_ERR_CORRUPT, "truncated or modified");
}

static void random_bytes_are_not_a_region(void **state)
{
	(void)state;
	const char *path = scratch_path("random");
	FILE *f = fopen(path, "w");
	uint64_t seed = 42;
	for (int i = 0; i < 8192; i++)
		fputc((int)(test_random(&seed) & 0xff), f);
	fclose(f);
	assert_int_equal(chmod(path, 0600), 0);
	expect_refusal(path, false, GPUCAP_ERR_CORRUPT, "not a gpucap region");
	/* And it was not overwritten. */
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 8192);
}

static void foreign_version(struct region_header *h)
{
	h->format_version = 99;
}

static void bad_capacity(struct region_header *h)
{
	h->device_capacity = 0xffffffffu;
}

static void bad_offsets(struct region_header *h)
{
	h->slots_offset += 64;
}

static void bad_checksum(struct region_header *h)
{
	h->created_unix_ns ^= 1;
}

static void other_magic_generation(struct region_header *h)
{
	atomic_store(&h->magic, (REGION_MAGIC & UINT64_C(0x0000ffffffffffff)) | (UINT64_C(0x32) << 48));
}

static void foreign_version_is_refused(void **state)
{
	(void)state;
	const char *path = scratch_path("version");
	make_region(path);
	patch_header(path, foreign_version);
	expect_refusal(path, false, GPUCAP_ERR_VERSION, "format version 99");
	const char *other = scratch_path("othermagic");
	make_region(other);
	patch_header(other, other_magic_generation);
	expect_refusal(other, false, GPUCAP_ERR_VERSION, "another gpucap format");
}

static void corrupt_header_fields_are_refused(void **state)
{
	(void)state;
	struct {
		const char *name;
		void (*patch)(struct region_header *);
		const char *words;
	} cases[] = {{"capacity", bad_capacity, "device capacity"},
	             {"offsets", bad_offsets, "table offsets"},
	             {"checksum", bad_checksum, "header checksum"}};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = scratch_path(cases[i].name);
		make_region(path);
		patch_header(path, cases[i].patch);
		expect_refusal(path, false, GPUCAP_ERR_CORRUPT, cases[i].words);
	}
}

static void symlink_is_not_followed(void **state)
{
	(void)state;
	const char *target = scratch_path("target");
	make_region(target);
	const char *link = scratch_path("link");
	assert_int_equal(symlink(target, link), 0);
	expect_refusal(link, false, GPUCAP_ERR_PERMISSION, "symbolic link");
	expect_refusal(link, true, GPUCAP_ERR_PERMISSION, "symbolic link");
	/* A dangling link is not created through either. */
	const char *dangling = scratch_path("dangling");
	assert_int_equal(symlink(scratch_path("nowhere"), dangling), 0);
	expect_refusal(dangling, false, GPUCAP_ERR_PERMISSION, "symbolic link");
	assert_int_equal(access(scratch_path("nowhere"), F_OK), -1);
}

static void file_of_another_user_is_refused(void **state)
{
	(void)state;
	if (geteuid() != 0)
		skip(); /* needs root to give a file away */
	const char *path = scratch_path("theirs");
	make_region(path);
	assert_int_equal(chown(path, 65534, 65534), 0);
	expect_refusal(path, false, GPUCAP_ERR_PERMISSION, "owned by uid 65534");
	/* Reading it as an observer is fine. */
	struct gpucap_region_options options = {.path = path, .observer = true};
	gpucap_region *r = NULL;
	assert_int_equal(gpucap_region_attach(&options, &r, NULL, 0), GPUCAP_OK);
	gpucap_region_detach(r);
}

static void unwritable_directory_is_refused(void **state)
{
	(void)state;
	const char *dir = scratch_path("readonly-dir");
	assert_int_equal(mkdir(dir, 0555), 0);
	char path[700];
	snprintf(path, sizeof(path), "%s/region", dir);
	pid_t child = fork();
	if (child == 0) {
		/* Root ignores directory permissions: act as nobody. */
		if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
			_exit(2);
		struct gpucap_region_options options = {.path = path};
		gpucap_region *r = NULL;
		char err[1024];
		gpucap_status status = gpucap_region_attach(&options, &r, err, sizeof(err));
		bool good = status == GPUCAP_ERR_PERMISSION && strstr(err, path) &&
		            strstr(err, "permission denied") && !strchr(err, '\n');
		if (!good)
			fprintf(stderr, "status %d: %s\n", status, err);
		_exit(good ? 0 : 1);
	}
	assert_int_equal(wait_child(child), 0);
}

static void missing_directory_and_directory_path(void **state)
{
	(void)state;
	char path[700];
	snprintf(path, sizeof(path), "%s/no/such/dir/region", scratch_dir());
	expect_refusal(path, false, GPUCAP_ERR_IO, "does not exist");
	expect_refusal(path, true, GPUCAP_ERR_IO, "does not exist");
	expect_refusal(scratch_dir(), true, GPUCAP_ERR_PERMISSION, "not a regular file");
	gpucap_region *r = NULL;
	struct gpucap_region_options options = {.path = ""};
	char err[256];
	assert_int_equal(gpucap_region_attach(&options, &r, err, sizeof(err)), GPUCAP_ERR_INVALID);
	assert_non_null(strstr(err, "CUDA_DEVICE_MEMORY_SHARED_CACHE"));
}

/* In a child: a tiny tmpfs of our own when the kernel lets us mount one, else
 * a file-size limit, which the file system enforces the same way. */
static void full_disk_is_reported(void **state)
{
	(void)state;
	pid_t child = fork();
	if (child == 0) {
		char dir[700];
		snprintf(dir, sizeof(dir), "%s", scratch_path("small-fs"));
		if (mkdir(dir, 0700) != 0)
			_exit(2);
		bool mounted = unshare(CLONE_NEWNS) == 0 &&
		               mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
		               mount("tmpfs", dir, "tmpfs", 0, "size=64k") == 0;
		if (!mounted) {
			struct rlimit limit = {.rlim_cur = 64 * 1024, .rlim_max = 64 * 1024};
			signal(SIGXFSZ, SIG_IGN);
			if (setrlimit(RLIMIT_FSIZE, &limit) != 0)
				_exit(3);
		}
		char path[800];
		snprintf(path, sizeof(path), "%s/region", dir);
		struct gpucap_region_options options = {.path = path};
		gpucap_region *r = NULL;
		char err[1024];
		gpucap_status status = gpucap_region_attach(&options, &r, err, sizeof(err));
		bool good = status == GPUCAP_ERR_IO && strstr(err, path) && strstr(err, "no space") &&
		            !strchr(err, '\n');
		fprintf(stderr, "full disk (%s): %s\n", mounted ? "tmpfs" : "RLIMIT_FSIZE", err);
		_exit(good ? 0 : 1);
	}
	assert_int_equal(wait_child(child), 0);
}

/* A child holds the init lease and writes a half header, then dies. */
static pid_t half_initialiser(const char *path, bool die)
{
	int ready[2];
	assert_int_equal(pipe(ready), 0);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(path, O_RDWR | O_CREAT, 0600);
		struct flock lock = {
		    .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = (off_t)LEASE_INIT, .l_len = 1};
		if (fd < 0 || fcntl(fd, F_OFD_SETLK, &lock) != 0)
			_exit(2);
		uint64_t magic = REGION_MAGIC;
		uint32_t initialising = REGION_INITIALIZING;
		if (ftruncate(fd, 8192) != 0 || pwrite(fd, &magic, 8, 0) != 8 ||
		    pwrite(fd, &initialising, 4, 8) != 4)
			_exit(3);
		if (write(ready[1], "r", 1) != 1)
			_exit(4);
		if (die)
			raise(SIGKILL);
		for (;;)
			pause();
	}
	close(ready[1]);
	char c;
	assert_int_equal(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return pid;
}

static void dead_initialiser_is_survived(void **state)
{
	(void)state;
	const char *path = scratch_path("deadinit");
	pid_t child = half_initialiser(path, true);
	assert_int_equal(wait_child(child), 128 + SIGKILL);
	gpucap_region *r = test_attach_claim(path);
	assert_true(gpucap_region_initialised_here(r));
	assert_true(gpucap_region_device_register(r, GPU0, 1 << 20, 0) >= 0);
	gpucap_region_detach(r);
}

/* Simulated time for the bounded wait: a sleep moves the clock at once. */
static uint64_t sim_now_ns = UINT64_C(1000000000000);

static uint64_t sim_now(enum gpucap_clock_id id)
{
	(void)id;
	return sim_now_ns;
}

static void sim_sleep_until(uint64_t deadline_ns)
{
	if (deadline_ns > sim_now_ns)
		sim_now_ns = deadline_ns;
}

static void sim_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns)
{
	(void)cond;
	(void)mutex;
	sim_sleep_until(deadline_ns);
}

static void sim_nothing(pthread_cond_t *cond)
{
	(void)cond;
}

static void sim_thread(void)
{
}

static const struct gpucap_clock_ops sim_clock = {
    GPUCAP_TEST_CLOCK_MAGIC,
    GPUCAP_TEST_CLOCK_VERSION,
    sizeof(struct gpucap_clock_ops),
    sim_now,
    sim_sleep_until,
    sim_wait,
    sim_nothing,
    sim_thread,
    sim_thread,
    sim_thread,
};

static void live_initialiser_wait_is_bounded(void **state)
{
	(void)state;
	const char *path = scratch_path("slowinit");
	pid_t child = half_initialiser(path, false);
	struct gpucap_region_options options = {.path = path, .init_timeout_ms = 150};
	gpucap_region *r = NULL;
	char err[1024];
	setenv(GPUCAP_TEST_CLOCK_ENV, GPUCAP_TEST_CLOCK_VALUE, 1);
	assert_true(gpucap_clock_adopt(&sim_clock));
	uint64_t start = sim_now_ns;
	gpucap_status st = gpucap_region_attach(&options, &r, err, sizeof(err));
	uint64_t waited_ms = (sim_now_ns - start) / 1000000;
	gpucap_clock_adopt(NULL);
	unsetenv(GPUCAP_TEST_CLOCK_ENV);
	assert_int_equal(st, GPUCAP_ERR_BUSY);
	/* It waited its timeout, in backoff steps, and no longer. */
	assert_true(waited_ms >= 150 && waited_ms < 400);
	assert_non_null(strstr(err, "still being initialised"));
	kill(child, SIGKILL);
	wait_child(child);
	/* Once it is gone, the next attach initialises. */
	gpucap_region *again = test_attach(path);
	assert_true(gpucap_region_initialised_here(again));
	gpucap_region_detach(again);
}

/* Damaged words inside the tables: tags and records pointing anywhere. */
static void hostile_words_in_tables_do_not_crash(void **state)
{
	(void)state;
	const char *path = scratch_path("hostile");
	gpucap_region *r = test_attach_claim(path);
	int d = gpucap_region_device_register(r, GPU0, 64 << 20, 0);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 1 << 20), GPUCAP_OK);
	int fd = open(path, O_RDWR);
	struct stat st;
	fstat(fd, &st);
	uint8_t *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(base != MAP_FAILED);
	struct region_header *h = (struct region_header *)base;
	struct device_entry *entry = (struct device_entry *)(base + h->devices_offset) + d;
	uint64_t total = charge_total(atomic_load(&entry->charge));
	/* A tag naming a lane far outside the table. */
	atomic_store(&entry->charge, charge_word(total, 0xffff));
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 4 << 20), GPUCAP_OK);
	gpucap_release(r, d, GPUCAP_KIND_DATA, 4 << 20);
	/* A tag naming a valid lane whose record names another device. */
	total = charge_total(atomic_load(&entry->charge));
	atomic_store(&entry->charge, charge_word(total, 5));
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 4 << 20), GPUCAP_OK);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	assert_non_null(s);
	gpucap_snapshot_free(s);
	struct gpucap_reclaim_report report;
	assert_int_equal(gpucap_region_reclaim_dead(r, &report), GPUCAP_OK);
	munmap(base, (size_t)st.st_size);
	close(fd);
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
	    cmocka_unit_test(truncated_file),
	    cmocka_unit_test(file_of_the_wrong_size),
	    cmocka_unit_test(random_bytes_are_not_a_region),
	    cmocka_unit_test(foreign_version_is_refused),
	    cmocka_unit_test(corrupt_header_fields_are_refused),
	    cmocka_unit_test(symlink_is_not_followed),
	    cmocka_unit_test(file_of_another_user_is_refused),
	    cmocka_unit_test(unwritable_directory_is_refused),
	    cmocka_unit_test(missing_directory_and_directory_path),
	    cmocka_unit_test(full_disk_is_reported),
	    cmocka_unit_test(dead_initialiser_is_survived),
	    cmocka_unit_test(live_initialiser_wait_is_bounded),
	    cmocka_unit_test(hostile_words_in_tables_do_not_crash),
	};
	return cmocka_run_group_tests_name("region input", tests, NULL, teardown);
}
