/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the default region path (src/common/default_paths.c): who
 * shares /tmp/cudevshr.cache, who gets a private directory, and which
 * private directories are refused. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "default_paths.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct scratch {
	char root[256];
};

static int make_scratch(void **state)
{
	struct scratch *s = calloc(1, sizeof(*s));
	snprintf(s->root, sizeof(s->root), "/tmp/gpucap-default-path-XXXXXX");
	if (!mkdtemp(s->root))
		return -1;
	*state = s;
	return 0;
}

static int remove_scratch(void **state)
{
	struct scratch *s = *state;
	char command[512];
	snprintf(command, sizeof(command), "rm -rf '%s'", s->root);
	int rc = system(command);
	free(s);
	return rc == 0 ? 0 : -1;
}

static void root_and_containers_share_the_hami_path(void **state)
{
	struct scratch *s = *state;
	char path[512], err[512], want[512];
	snprintf(want, sizeof(want), "%s/cudevshr.cache", s->root);
	assert_true(gpucap_region_path_for(s->root, 0, false, true, path, sizeof(path), err, sizeof(err)));
	assert_string_equal(path, want);
	assert_true(gpucap_region_path_for(s->root, 1000, true, true, path, sizeof(path), err, sizeof(err)));
	assert_string_equal(path, want);
	assert_true(gpucap_default_region_path(path, sizeof(path), false, err, sizeof(err)));
}

static void a_user_outside_a_container_gets_a_private_directory(void **state)
{
	struct scratch *s = *state;
	unsigned uid = (unsigned)geteuid();
	if (uid == 0)
		uid = 4242; /* as root, own the directory as that uid below */
	char path[1024], err[1024], want[1024], dir[512];
	snprintf(dir, sizeof(dir), "%s/gpucap-%u", s->root, uid);
	snprintf(want, sizeof(want), "%s/cudevshr.cache", dir);
	/* Looking never creates it. */
	assert_true(gpucap_region_path_for(s->root, uid, false, false, path, sizeof(path), err, sizeof(err)));
	assert_string_equal(path, want);
	struct stat st;
	assert_int_not_equal(stat(dir, &st), 0);
	if (geteuid() == 0) {
		assert_int_equal(mkdir(dir, 0700), 0);
		assert_int_equal(chown(dir, uid, (gid_t)-1), 0);
	}
	assert_true(gpucap_region_path_for(s->root, uid, false, true, path, sizeof(path), err, sizeof(err)));
	assert_string_equal(path, want);
	assert_int_equal(stat(dir, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(st.st_mode & 0777, 0700);
	assert_int_equal(st.st_uid, uid);
	/* A second user gets another directory. */
	assert_true(
	    gpucap_region_path_for(s->root, uid + 1, false, false, path, sizeof(path), err, sizeof(err)));
	assert_string_not_equal(path, want);
}

static void a_squatted_directory_is_refused(void **state)
{
	struct scratch *s = *state;
	unsigned me = (unsigned)geteuid();
	unsigned victim = me + 7;
	char path[512], err[512], dir[512];
	/* Made by this user, asked for by another uid: "belongs to". */
	snprintf(dir, sizeof(dir), "%s/gpucap-%u", s->root, victim);
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_false(
	    gpucap_region_path_for(s->root, victim, false, true, path, sizeof(path), err, sizeof(err)));
	assert_non_null(strstr(err, "belongs to uid"));
	assert_non_null(strstr(err, "GPUCAP_REGION"));
	assert_false(
	    gpucap_region_path_for(s->root, victim, false, false, path, sizeof(path), err, sizeof(err)));
}

static void an_open_or_linked_directory_is_refused(void **state)
{
	struct scratch *s = *state;
	unsigned me = (unsigned)geteuid();
	if (me == 0)
		me = 4242; /* as root, own the directory as that uid */
	char path[512], err[512], dir[512];
	snprintf(dir, sizeof(dir), "%s/gpucap-%u", s->root, me);
	assert_int_equal(mkdir(dir, 0777), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	if (geteuid() == 0)
		assert_int_equal(chown(dir, me, (gid_t)-1), 0);
	assert_false(gpucap_region_path_for(s->root, me, false, true, path, sizeof(path), err, sizeof(err)));
	assert_non_null(strstr(err, "open to others"));
	assert_int_equal(rmdir(dir), 0);

	char elsewhere[512];
	snprintf(elsewhere, sizeof(elsewhere), "%s/elsewhere", s->root);
	assert_int_equal(mkdir(elsewhere, 0700), 0);
	if (geteuid() == 0)
		assert_int_equal(chown(elsewhere, me, (gid_t)-1), 0);
	assert_int_equal(symlink(elsewhere, dir), 0);
	assert_false(gpucap_region_path_for(s->root, me, false, true, path, sizeof(path), err, sizeof(err)));
	assert_non_null(strstr(err, "not a directory"));
}

int main(int argc, char **argv)
{
	/* For the CLI tests: the default path this process gets, to compare
	 * with the one gpucap uses. */
	if (argc == 2 && strcmp(argv[1], "--print") == 0) {
		char path[4096], err[512];
		gpucap_default_region_path(path, sizeof(path), false, err, sizeof(err));
		printf("%s\n", path);
		return 0;
	}
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(root_and_containers_share_the_hami_path, make_scratch,
	                                    remove_scratch),
	    cmocka_unit_test_setup_teardown(a_user_outside_a_container_gets_a_private_directory, make_scratch,
	                                    remove_scratch),
	    cmocka_unit_test_setup_teardown(a_squatted_directory_is_refused, make_scratch, remove_scratch),
	    cmocka_unit_test_setup_teardown(an_open_or_linked_directory_is_refused, make_scratch,
	                                    remove_scratch),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
