/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "labels.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

void exp_path_rule_default(struct exp_path_rule *rule)
{
	memset(rule, 0, sizeof(*rule));
	rule->custom = false;
}

bool exp_path_rule_compile(struct exp_path_rule *rule, const char *pattern, char *err, size_t err_len)
{
	memset(rule, 0, sizeof(*rule));
	int rc = regcomp(&rule->regex, pattern, REG_EXTENDED);
	if (rc != 0) {
		char why[256];
		regerror(rc, &rule->regex, why, sizeof(why));
		snprintf(err, err_len,
		         "--label-from-path '%s' is not a valid extended regular expression: %s", pattern,
		         why);
		return false;
	}
	rule->groups = rule->regex.re_nsub;
	if (rule->groups == 0) {
		regfree(&rule->regex);
		snprintf(
		    err, err_len,
		    "--label-from-path '%s' has no capture group; groups 1, 2 and 3 give namespace, pod and container, e.g. '^/run/gpucap/([^/]+)/([^/]+)/([^/]+)/'",
		    pattern);
		return false;
	}
	rule->custom = true;
	return true;
}

void exp_path_rule_free(struct exp_path_rule *rule)
{
	if (rule->custom)
		regfree(&rule->regex);
	rule->custom = false;
}

static void copy_part(char *dst, const char *src, size_t len)
{
	if (len >= EXP_LABEL_VALUE_MAX)
		len = EXP_LABEL_VALUE_MAX - 1;
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/* A Kubernetes name part: lowercase letters, digits, '-' and '.'; never
 * '_', which is what makes NAMESPACE_POD_CONTAINER unambiguous. */
static bool kube_name(const char *s, size_t len)
{
	if (len == 0 || len >= EXP_LABEL_VALUE_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
			return false;
	}
	return true;
}

/* component: [s, s+len). Fills out when it reads NAMESPACE_POD_CONTAINER. */
static bool split_component(const char *s, size_t len, struct exp_pod_labels *out)
{
	const char *first = memchr(s, '_', len);
	if (!first)
		return false;
	const char *rest = first + 1;
	size_t rest_len = len - (size_t)(rest - s);
	const char *second = memchr(rest, '_', rest_len);
	if (!second)
		return false;
	const char *last = second + 1;
	size_t last_len = len - (size_t)(last - s);
	size_t ns_len = (size_t)(first - s), pod_len = (size_t)(second - rest);
	if (!kube_name(s, ns_len) || !kube_name(rest, pod_len) || !kube_name(last, last_len))
		return false;
	copy_part(out->kube_namespace, s, ns_len);
	copy_part(out->pod, rest, pod_len);
	copy_part(out->container, last, last_len);
	return true;
}

/* A pod UID as Kubernetes writes it: 8-4-4-4-12 lowercase hex digits. */
#define POD_UID_LEN 36

static bool pod_uid(const char *s, size_t len)
{
	if (len != POD_UID_LEN)
		return false;
	for (size_t i = 0; i < len; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		char c = s[i];
		if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

/* Namespace and pod of uid from the kubelet's NAMESPACE_POD_UID log
 * directories; false (labels untouched) when none matches. One directory
 * read per region and scrape: a node has a few hundred pods at most. */
static bool pod_names_from_logs(const char *root, const char *uid, struct exp_pod_labels *out)
{
	DIR *dir = opendir(root ? root : EXP_POD_LOG_ROOT_DEFAULT);
	if (!dir)
		return false;
	bool found = false;
	struct dirent *entry;
	while (!found && (entry = readdir(dir)) != NULL) {
		const char *name = entry->d_name;
		size_t len = strlen(name);
		/* NAMESPACE _ POD _ UID: namespace and pod never contain '_'. */
		if (len < POD_UID_LEN + 4 || name[len - POD_UID_LEN - 1] != '_' ||
		    memcmp(name + len - POD_UID_LEN, uid, POD_UID_LEN) != 0)
			continue;
		const char *first = memchr(name, '_', len);
		if (first == name + len - POD_UID_LEN - 1)
			continue; /* no NAMESPACE_POD before the UID */
		const char *pod = first + 1;
		size_t ns_len = (size_t)(first - name);
		size_t pod_len = len - POD_UID_LEN - 1 - (size_t)(pod - name);
		if (!kube_name(name, ns_len) || !kube_name(pod, pod_len))
			continue;
		copy_part(out->kube_namespace, name, ns_len);
		copy_part(out->pod, pod, pod_len);
		found = true;
	}
	closedir(dir);
	return found;
}

/* component: [s, s+len). Fills out when it reads PODUID_CONTAINER. */
static bool split_uid_component(const struct exp_path_rule *rule, const char *s, size_t len,
                                struct exp_pod_labels *out)
{
	if (len < POD_UID_LEN + 2 || s[POD_UID_LEN] != '_' || !pod_uid(s, POD_UID_LEN))
		return false;
	const char *container = s + POD_UID_LEN + 1;
	size_t container_len = len - POD_UID_LEN - 1;
	if (!kube_name(container, container_len))
		return false;
	char uid[POD_UID_LEN + 1];
	memcpy(uid, s, POD_UID_LEN);
	uid[POD_UID_LEN] = '\0';
	copy_part(out->container, container, container_len);
	pod_names_from_logs(rule ? rule->pod_log_root : NULL, uid, out);
	return true;
}

static void default_rule(const struct exp_path_rule *rule, const char *path, struct exp_pod_labels *out)
{
	/* Directories only: the last component is the file itself. */
	const char *end = strrchr(path, '/');
	while (end && end > path) {
		const char *start = end;
		while (start > path && start[-1] != '/')
			start--;
		size_t len = (size_t)(end - start);
		if (split_component(start, len, out) || split_uid_component(rule, start, len, out))
			return;
		end = start > path ? start - 1 : NULL;
	}
}

static void regex_rule(const struct exp_path_rule *rule, const char *path, struct exp_pod_labels *out)
{
	regmatch_t match[4];
	size_t wanted = rule->groups < 3 ? rule->groups : 3;
	if (regexec(&rule->regex, path, wanted + 1, match, 0) != 0)
		return;
	char *fields[3] = {out->kube_namespace, out->pod, out->container};
	for (size_t g = 1; g <= wanted; g++) {
		if (match[g].rm_so < 0 || match[g].rm_eo < match[g].rm_so)
			continue;
		copy_part(fields[g - 1], path + match[g].rm_so, (size_t)(match[g].rm_eo - match[g].rm_so));
	}
}

void exp_path_labels(const struct exp_path_rule *rule, const char *path, struct exp_pod_labels *out)
{
	memset(out, 0, sizeof(*out));
	if (rule && rule->custom)
		regex_rule(rule, path, out);
	else
		default_rule(rule, path, out);
}
