/* The exporter's labels from a region path, which a tenant chooses: the
 * default NAMESPACE_POD_CONTAINER rule and a --label-from-path rule (the
 * operator's pattern is fixed here; the path is the input). */
#include "labels.h"

#include <stdbool.h>
#include <stdint.h>

#include <stdlib.h>
#include <string.h>

#define FUZZ_RULE "^/run/gpucap/([^/]+)/([^/]+)/([^/]+)/"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct exp_path_rule default_rule, custom_rule;
	static bool ready;
	if (!ready) {
		char err[256];
		exp_path_rule_default(&default_rule);
		if (!exp_path_rule_compile(&custom_rule, FUZZ_RULE, err, sizeof(err)))
			abort(); /* the harness itself is broken */
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
