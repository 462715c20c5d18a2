/* SPDX-License-Identifier: Apache-2.0 */
/* The exporter's labels from a region path, which a tenant chooses: the
 * default NAMESPACE_POD_CONTAINER and PODUID_CONTAINER rules and a
 * --label-from-path rule (the operator's pattern is fixed here; the path is
 * the input). The kubelet's pod log directory is a private one holding one
 * pod, so that a pod UID in the input can be looked up. */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_file.h"
#include "labels.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FUZZ_RULE "^/run/gpucap/([^/]+)/([^/]+)/([^/]+)/"
/* The pod of corpus/labels/hami-uid. */
#define FUZZ_POD_DIR "team-a_trainer-0_0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void make_dir(const char *path)
{
	if (mkdir(path, 0700) != 0)
		abort(); /* the harness cannot run at all */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct exp_path_rule default_rule, custom_rule;
	static char pod_log_root[128];
	static bool ready;
	if (!ready) {
		char err[256], pod[256];
		snprintf(pod_log_root, sizeof(pod_log_root), "%s/pods", fuzz_dir());
		make_dir(pod_log_root);
		snprintf(pod, sizeof(pod), "%s/%s", pod_log_root, FUZZ_POD_DIR);
		make_dir(pod);
		exp_path_rule_default(&default_rule);
		default_rule.pod_log_root = pod_log_root;
		if (!exp_path_rule_compile(&custom_rule, FUZZ_RULE, err, sizeof(err)))
			abort(); /* the harness itself is broken */
		custom_rule.pod_log_root = pod_log_root;
		ready = true;
	}
	char *path = malloc(size + 1);
	if (!path)
		return 0;
	memcpy(path, data, size);
	path[size] = '\0';
	struct exp_pod_labels labels;
	exp_path_labels(&default_rule, path, &labels);
	exp_path_labels(&custom_rule, path, &labels);
	free(path);
	return 0;
}
