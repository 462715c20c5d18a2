#define _POSIX_C_SOURCE 200809L

#include "labels.h"

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

static void default_rule(const char *path, struct exp_pod_labels *out)
{
	/* Directories only: the last component is the file itself. */
	const char *end = strrchr(path, '/');
	while (end && end > path) {
		const char *start = end;
		while (start > path && start[-1] != '/')
			start--;
		if (split_component(start, (size_t)(end - start), out))
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
		default_rule(path, out);
}
