/* SPDX-License-Identifier: Apache-2.0 */
/* The size and percent parsers every environment variable goes through,
 * and the whole precedence (gpucap_policy_resolve) over an arbitrary
 * environment: lines of the input are NAME=value entries. */
#include "parse.h"
#include "policy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_ENV_MAX 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	uint64_t bytes;
	uint32_t percent;
	if (gpucap_parse_size(text, &bytes)) {
		char formatted[32];
		gpucap_format_size(bytes, formatted, sizeof(formatted));
	}
	gpucap_parse_percent(text, &percent);

	/* The same bytes as an environment: lines are entries. */
	char *env[FUZZ_ENV_MAX];
	size_t count = 0;
	for (char *line = text; count < FUZZ_ENV_MAX - 1;) {
		env[count++] = line;
		char *end = strchr(line, '\n');
		if (!end)
			break;
		*end = '\0';
		line = end + 1;
	}
	env[count] = NULL;
	static struct gpucap_policy policy; /* kilobytes: not on the stack */
	struct gpucap_policy_input in;
	memset(&in, 0, sizeof(in));
	in.env = env;
	gpucap_policy_resolve(&in, &policy);
	char hint[512];
	gpucap_policy_region_hint(&policy, hint, sizeof(hint));
	/* A set-user-ID program ignores the secure rows; HAMi's lock directory
	 * stands in for an unset node directory. */
	in.secure = true;
	in.hami_node_dir = true;
	gpucap_policy_resolve(&in, &policy);
	for (size_t i = 0; env[i]; i++) {
		const char *eq = strchr(env[i], '=');
		if (eq)
			gpucap_policy_is_memory_variable(env[i], (size_t)(eq - env[i]));
	}
	free(text);
	return 0;
}
