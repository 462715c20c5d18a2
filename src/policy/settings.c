/* SPDX-License-Identifier: Apache-2.0 */
/* The settings table (settings.def) and the helpers every reader of the
 * environment shares. */
#include "policy.h"

#include <string.h>

const struct gpucap_setting gpucap_settings[GPUCAP_SETTING_COUNT] = {
#define SETTING(id, name, alias, flags, accepted, default_text, when_malformed)                              \
	[GPUCAP_SETTING_##id] = {name, alias, flags, accepted, default_text, when_malformed},
#include "settings.def"
#undef SETTING
};

const char *gpucap_policy_env_get(char *const *env, const char *name)
{
	size_t len = strlen(name);
	for (char *const *e = env; e && *e; e++) {
		if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
			return *e + len + 1;
	}
	return NULL;
}

/* Whether name[0..len) is prefix or prefix_<digits>. */
static bool is_name_or_indexed(const char *name, size_t len, const char *prefix)
{
	size_t prefix_len = strlen(prefix);
	if (len < prefix_len || strncmp(name, prefix, prefix_len) != 0)
		return false;
	if (len == prefix_len)
		return true;
	if (name[prefix_len] != '_' || len == prefix_len + 1)
		return false;
	for (size_t i = prefix_len + 1; i < len; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
	}
	return true;
}

bool gpucap_policy_is_memory_variable(const char *name, size_t len)
{
	const struct gpucap_setting *s = &gpucap_settings[GPUCAP_SETTING_MEMORY_LIMIT];
	return is_name_or_indexed(name, len, s->name) || is_name_or_indexed(name, len, s->alias);
}

void gpucap_policy_load_file(char *const *env, bool secure, struct gpucap_limits_file *out)
{
	const char *override =
	    secure ? NULL : gpucap_policy_env_get(env, gpucap_settings[GPUCAP_SETTING_LIMITS_FILE].name);
	gpucap_limits_file_load(override, out);
}
