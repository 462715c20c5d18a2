/* SPDX-License-Identifier: Apache-2.0 */
/* Kubernetes labels (namespace, pod, container) derived from a region's
 * path. The rules are documented in docs/exporter.md. */
#ifndef GPUCAP_EXPORTER_LABELS_H
#define GPUCAP_EXPORTER_LABELS_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>

/* Kubernetes names: a pod name is at most 253 bytes, namespace and container
 * names at most 63. Longer matches are cut. */
#define EXP_LABEL_VALUE_MAX 254

/* An empty value means "not derivable": the label is left out. */
struct exp_pod_labels {
	char kube_namespace[EXP_LABEL_VALUE_MAX];
	char pod[EXP_LABEL_VALUE_MAX];
	char container[EXP_LABEL_VALUE_MAX];
};

/* Where the kubelet keeps one directory per pod, named
 * NAMESPACE_POD_UID: how a pod UID in a path becomes names without asking
 * the API server. */
#define EXP_POD_LOG_ROOT_DEFAULT "/var/log/pods"

struct exp_path_rule {
	bool custom; /* false: the default rule; true: regex below */
	regex_t regex;
	size_t groups; /* capture groups in regex */
	/* The kubelet's pod log directory; NULL: EXP_POD_LOG_ROOT_DEFAULT. Set
	 * after exp_path_rule_default or _compile. */
	const char *pod_log_root;
};

/* The default rule: the deepest directory of the path named
 * NAMESPACE_POD_CONTAINER, or PODUID_CONTAINER as HAMi's device plugin names
 * them (/usr/local/vgpu/containers/<pod uid>_<container>/<device uuid>.cache),
 * whose namespace and pod come from the directory
 * <pod_log_root>/<namespace>_<pod>_<pod uid>. */
void exp_path_rule_default(struct exp_path_rule *rule);

/* A POSIX extended regular expression whose capture groups 1, 2 and 3 give
 * namespace, pod and container. Returns false with one line in err when it
 * does not compile or has no capture group. */
bool exp_path_rule_compile(struct exp_path_rule *rule, const char *pattern, char *err, size_t err_len);

void exp_path_rule_free(struct exp_path_rule *rule);

/* Fill out from path (all empty when the rule does not match). */
void exp_path_labels(const struct exp_path_rule *rule, const char *path, struct exp_pod_labels *out);

#endif
