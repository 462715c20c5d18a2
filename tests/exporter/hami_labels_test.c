/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the exporter's reading of HAMi's layout: a directory named
 * <pod uid>_<container> gives the container, and the kubelet's pod log
 * directory <root>/<namespace>_<pod>_<uid> the namespace and pod. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "labels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define UID_A "0b6f3c1e-2d4a-4f7b-9c1d-3e5f7a9b1c2d"
#define UID_B "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"

static char root[64];

static void make_dir(const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", root, name);
	assert_int_equal(mkdir(path, 0755), 0);
}

static int setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/gpucap-hami-labels-XXXXXX");
	if (!mkdtemp(root))
		return -1;
	make_dir("team-a_trainer-7d9f8c-x2x4q_" UID_A);
	/* Not NAMESPACE_POD_UID: no pod part, an underscore too many, upper
	 * case. None of them names UID_B. */
	make_dir("ml_" UID_B);
	make_dir("ml_in_fer_" UID_B);
	make_dir("ML_infer-0_" UID_B);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	const char *names[] = {"team-a_trainer-7d9f8c-x2x4q_" UID_A, "ml_" UID_B, "ml_in_fer_" UID_B,
	                       "ML_infer-0_" UID_B};
	char path[512];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, names[i]);
		rmdir(path);
	}
	rmdir(root);
	return 0;
}

static struct exp_pod_labels labels_of(const char *path, const char *log_root)
{
	struct exp_path_rule rule;
	exp_path_rule_default(&rule);
	rule.pod_log_root = log_root;
	struct exp_pod_labels out;
	exp_path_labels(&rule, path, &out);
	exp_path_rule_free(&rule);
	return out;
}

static void test_uid_named_through_logs(void **state)
{
	(void)state;
	struct exp_pod_labels l = labels_of("/usr/local/vgpu/containers/" UID_A "_main/GPU-1111.cache", root);
	assert_string_equal(l.kube_namespace, "team-a");
	assert_string_equal(l.pod, "trainer-7d9f8c-x2x4q");
	assert_string_equal(l.container, "main");
}

static void test_uid_without_log_dir(void **state)
{
	(void)state;
	/* Only malformed log directories carry UID_B: the container alone. */
	struct exp_pod_labels l = labels_of("/usr/local/vgpu/containers/" UID_B "_server/GPU-2.cache", root);
	assert_string_equal(l.kube_namespace, "");
	assert_string_equal(l.pod, "");
	assert_string_equal(l.container, "server");
	/* A log root that does not exist: the same. */
	l = labels_of("/usr/local/vgpu/containers/" UID_A "_main/GPU-1.cache", "/nonexistent/pods");
	assert_string_equal(l.pod, "");
	assert_string_equal(l.container, "main");
}

static void test_not_a_uid(void **state)
{
	(void)state;
	const char *paths[] = {
	    /* upper-case hex, a short UID, dashes misplaced, no container */
	    "/usr/local/vgpu/containers/0B6F3C1E-2D4A-4F7B-9C1D-3E5F7A9B1C2D_main/x.cache",
	    "/usr/local/vgpu/containers/0b6f3c1e-2d4a-4f7b-9c1d-3e5f7a9b1c2_main/x.cache",
	    "/usr/local/vgpu/containers/0b6f3c1e2-d4a-4f7b-9c1d-3e5f7a9b1c2d_main/x.cache",
	    "/usr/local/vgpu/containers/" UID_A "_/x.cache",
	    "/usr/local/vgpu/containers/" UID_A "_Main/x.cache",
	    /* the file name is never used */
	    "/usr/local/vgpu/" UID_A "_main",
	};
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct exp_pod_labels l = labels_of(paths[i], root);
		assert_string_equal(l.container, "");
		assert_string_equal(l.pod, "");
	}
}

static void test_namespace_pod_container_wins(void **state)
{
	(void)state;
	/* The deepest directory decides; NAMESPACE_POD_CONTAINER still works. */
	struct exp_pod_labels l = labels_of("/var/lib/gpucap/ml_infer-0_server/cudevshr.cache", root);
	assert_string_equal(l.kube_namespace, "ml");
	assert_string_equal(l.pod, "infer-0");
	assert_string_equal(l.container, "server");
	l = labels_of("/x/" UID_A "_main/ml_infer-0_server/r.cache", root);
	assert_string_equal(l.pod, "infer-0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_uid_named_through_logs),
	    cmocka_unit_test(test_uid_without_log_dir),
	    cmocka_unit_test(test_not_a_uid),
	    cmocka_unit_test(test_namespace_pod_container_wins),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
