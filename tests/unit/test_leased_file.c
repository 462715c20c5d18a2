/* SPDX-License-Identifier: Apache-2.0 */
/* The leased-file primitive: safe open, magic checks, create-once, slot
 * leases across threads and descriptors, guarded copies. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "leased_file.h"
#include "test_support.h"

static const struct gpucap_file_rules writer = {.create = true, .writable = true, .mode = 0600};

static void the_safe_open_refuses_what_is_not_one_regular_file(void **state)
{
	(void)state;
	int fd;
	struct gpucap_file_info info;
	int error;
	const char *fifo = scratch_path("a-fifo");
	assert_int_equal(mkfifo(fifo, 0600), 0);
	/* Would hang without O_NONBLOCK: nobody opens the other end. */
	assert_int_equal(gpucap_file_open(fifo, &writer, &fd, &info, &error), GPUCAP_FILE_NOT_REGULAR);
	assert_int_equal(fd, -1);

	const char *file = scratch_path("a-file");
	assert_int_equal(gpucap_file_open(file, &writer, &fd, &info, &error), GPUCAP_FILE_OK);
	assert_true(fd >= 0);
	assert_int_equal(info.links, 1);
	close(fd);

	const char *link_path = scratch_path("a-link");
	assert_int_equal(symlink(file, link_path), 0);
	assert_int_equal(gpucap_file_open(link_path, &writer, &fd, &info, &error), GPUCAP_FILE_SYMLINK);

	const char *second = scratch_path("a-second-name");
	assert_int_equal(link(file, second), 0);
	assert_int_equal(gpucap_file_open(file, &writer, &fd, &info, &error), GPUCAP_FILE_LINKS);
	assert_int_equal(info.links, 2);

	struct gpucap_file_rules existing = {.writable = true};
	assert_int_equal(gpucap_file_open(scratch_path("missing"), &existing, &fd, &info, &error),
	                 GPUCAP_FILE_OPEN_FAILED);
	assert_int_equal(error, ENOENT);
}

static void magic_words_are_judged(void **state)
{
	(void)state;
	const uint64_t ours = UINT64_C(0x0031524143555047);
	assert_int_equal(gpucap_magic_check(ours, ours, 48), GPUCAP_MAGIC_MATCH);
	assert_int_equal(gpucap_magic_check(0, ours, 48), GPUCAP_MAGIC_EMPTY);
	assert_int_equal(gpucap_magic_check(UINT64_C(0x0032524143555047), ours, 48),
	                 GPUCAP_MAGIC_OTHER_VERSION);
	assert_int_equal(gpucap_magic_check(UINT64_C(0x4d5a), ours, 48), GPUCAP_MAGIC_FOREIGN);
}

static bool first_byte_set(int fd, void *arg)
{
	(void)arg;
	char byte = 0;
	return pread(fd, &byte, 1, 0) == 1 && byte == 'R';
}

static int write_first_byte(int fd, void *arg)
{
	(*(int *)arg)++;
	return pwrite(fd, "R", 1, 0) == 1 ? 0 : -EIO;
}

static void a_file_is_initialised_once(void **state)
{
	(void)state;
	int fd;
	struct gpucap_file_info info;
	int error;
	assert_int_equal(gpucap_file_open(scratch_path("init-once"), &writer, &fd, &info, &error),
	                 GPUCAP_FILE_OK);
	int calls = 0;
	/* A reader never initialises: nobody holds the lease, nothing to wait for. */
	assert_int_equal(gpucap_file_init_once(fd, UINT64_C(1) << 40, false, 1000, first_byte_set,
	                                       write_first_byte, &calls),
	                 -EPERM);
	assert_int_equal(gpucap_file_init_once(fd, UINT64_C(1) << 40, true, 1000, first_byte_set,
	                                       write_first_byte, &calls),
	                 0);
	assert_int_equal(gpucap_file_init_once(fd, UINT64_C(1) << 40, true, 1000, first_byte_set,
	                                       write_first_byte, &calls),
	                 0);
	assert_int_equal(calls, 1);
	close(fd);
}

static void a_slot_lease_excludes_threads_and_descriptors(void **state)
{
	(void)state;
	const char *path = scratch_path("slot-lease");
	int fd, other;
	struct gpucap_file_info info;
	int error;
	assert_int_equal(gpucap_file_open(path, &writer, &fd, &info, &error), GPUCAP_FILE_OK);
	assert_int_equal(gpucap_file_open(path, &writer, &other, &info, &error), GPUCAP_FILE_OK);
	_Atomic uint8_t claim = 0, other_claim = 0;
	const uint64_t offset = (UINT64_C(1) << 40) + 4096;
	assert_true(gpucap_slot_lease_take(fd, &claim, offset));
	/* Another thread sharing the descriptor: the OFD lock alone would say yes. */
	assert_false(gpucap_slot_lease_take(fd, &claim, offset));
	/* Another open file description (another process, or another handle). */
	assert_false(gpucap_slot_lease_take(other, &other_claim, offset));
	assert_int_equal(atomic_load(&other_claim), 0);
	gpucap_slot_lease_drop(fd, &claim, offset);
	assert_true(gpucap_slot_lease_take(other, &other_claim, offset));
	gpucap_slot_lease_drop(other, &other_claim, offset);
	close(fd);
	close(other);
}

static void a_reclaimer_is_told_from_an_owner(void **state)
{
	(void)state;
	const char *path = scratch_path("slot-reclaim");
	int fd, other;
	struct gpucap_file_info info;
	int error;
	assert_int_equal(gpucap_file_open(path, &writer, &fd, &info, &error), GPUCAP_FILE_OK);
	assert_int_equal(gpucap_file_open(path, &writer, &other, &info, &error), GPUCAP_FILE_OK);
	_Atomic uint8_t claim = 0, other_claim = 0;
	const uint64_t offset = (UINT64_C(1) << 40) + 4096, mark = (UINT64_C(1) << 40) + 8192;
	/* An owner: a reclaimer cannot take it, and leaves no mark behind. */
	assert_true(gpucap_slot_lease_take(fd, &claim, offset));
	assert_false(gpucap_slot_reclaim_take(other, &other_claim, offset, mark));
	assert_int_equal(atomic_load(&other_claim), 0);
	assert_false(gpucap_slot_being_reclaimed(other, &other_claim, mark));
	gpucap_slot_lease_drop(fd, &claim, offset);
	/* A reclaimer: holds the slot, and others see it is reclaiming. */
	assert_true(gpucap_slot_reclaim_take(fd, &claim, offset, mark));
	assert_false(gpucap_slot_lease_take(other, &other_claim, offset));
	assert_true(gpucap_slot_being_reclaimed(other, &other_claim, mark));
	assert_true(gpucap_slot_being_reclaimed(fd, &claim, mark)); /* our own thread's claim */
	gpucap_slot_reclaim_drop(fd, &claim, offset, mark);
	assert_false(gpucap_slot_being_reclaimed(other, &other_claim, mark));
	assert_true(gpucap_slot_lease_take(other, &other_claim, offset));
	gpucap_slot_lease_drop(other, &other_claim, offset);
	close(fd);
	close(other);
}

static void a_guarded_copy_says_when_the_file_was_cut(void **state)
{
	(void)state;
	const char *path = scratch_path("guarded");
	int fd;
	struct gpucap_file_info info;
	int error;
	assert_int_equal(gpucap_file_open(path, &writer, &fd, &info, &error), GPUCAP_FILE_OK);
	assert_int_equal(ftruncate(fd, 8192), 0);
	_Atomic uint32_t failed = 0;
	uint8_t *map = gpucap_map_guarded(fd, 8192, false, &failed, &error);
	assert_non_null(map);
	uint8_t copy[8192];
	assert_true(gpucap_guarded_copy(copy, map, sizeof(copy), &failed));
	assert_int_equal(ftruncate(fd, 100), 0);
	assert_false(gpucap_guarded_copy(copy, map, sizeof(copy), &failed));
	gpucap_platform_unmap(map, 8192);
	close(fd);
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
	    cmocka_unit_test(the_safe_open_refuses_what_is_not_one_regular_file),
	    cmocka_unit_test(magic_words_are_judged),
	    cmocka_unit_test(a_file_is_initialised_once),
	    cmocka_unit_test(a_slot_lease_excludes_threads_and_descriptors),
	    cmocka_unit_test(a_reclaimer_is_told_from_an_owner),
	    cmocka_unit_test(a_guarded_copy_says_when_the_file_was_cut),
	};
	return cmocka_run_group_tests_name("leased file", tests, NULL, teardown);
}
