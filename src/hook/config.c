/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
/* Configuration, read once at initialisation: the environment and the
 * limits file, decided by src/policy. */
#include "config.h"
#include "default_paths.h"
#include "hook.h"
#include "log.h"
#include "policy.h"

#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>

extern char **environ;

_Static_assert((int)GPUCAP_SM_POLICY_STRICT == (int)GPUCAP_POLICY_SM_STRICT &&
                   (int)GPUCAP_SM_POLICY_ELASTIC == (int)GPUCAP_POLICY_SM_ELASTIC &&
                   (int)GPUCAP_SM_POLICY_DISABLE == (int)GPUCAP_POLICY_SM_DISABLE,
               "the SM policies of config.h and policy.h are the same values");
_Static_assert(GPUCAP_SM_FAIL_CLOSED_PERCENT == GPUCAP_POLICY_SM_FAIL_CLOSED, "one fail-closed SM share");
_Static_assert(GPUCAP_DEFAULT_CONTEXT_BYTES == GPUCAP_POLICY_CONTEXT_BYTES, "one default context charge");

static void copy_string(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
}

static void apply(const struct gpucap_policy *policy, const struct gpucap_limits_file *file,
                  struct gpucap_config *config)
{
	bool any_sm = false;
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		const struct gpucap_policy_device *p = &policy->device[i];
		struct gpucap_device_config *dev = &config->device[i];
		dev->limit_bytes = p->memory_bytes;
		dev->fail_closed = p->memory_closed;
		dev->file_cap_bytes = p->file_cap_bytes;
		dev->sm_limit = p->sm_register;
		config->sm.local_cap[i] = p->sm_local_cap;
		any_sm |= p->sm_register != 0 || p->sm_local_cap != 0;
	}
	config->sm.policy = (enum gpucap_sm_policy)policy->sm_policy;
	config->sm.calibrate = policy->sm_calibrate;
	config->context_bytes = policy->context_bytes;
	config->context_bytes_set = policy->context_bytes_set;
	config->context_wait_ms = policy->context_wait_ms;
	config->reconcile_ms = policy->reconcile_ms;
	config->log_level = policy->log_level;
	copy_string(config->region_path, sizeof(config->region_path), policy->region_path);
	config->region_refused = policy->region_refused;
	config->region_group_shared = policy->region_group;
	gpucap_policy_region_hint(policy, config->region_hint, sizeof(config->region_hint));
	copy_string(config->node_dir, sizeof(config->node_dir), policy->node_dir);
	config->visible_devices_set = policy->visible_devices_set;
	copy_string(config->visible_devices, sizeof(config->visible_devices), policy->visible_devices);
	if (policy->file_in_force)
		copy_string(config->limits_file, sizeof(config->limits_file), file->path);
	if (config->sm.policy == GPUCAP_SM_POLICY_DISABLE)
		gpucap_log(GPUCAP_LOG_WARN, "SM caps are disabled by policy (%s=disable): %s",
		           policy->sm_policy_from.name,
		           any_sm ? "the configured SM limits are not enforced in this process"
		                  : "no SM limit will be enforced in this process");
}

void gpucap_config_load(struct gpucap_config *config)
{
	memset(config, 0, sizeof(*config));
	/* Static: initialisation runs on one thread at a time, and the thread
	 * may have a small stack. */
	static struct gpucap_limits_file file;
	static struct gpucap_policy policy;
	/* Set-user-ID programs must not read or write where the caller says. */
	bool secure = getauxval(AT_SECURE) != 0;
	gpucap_policy_load_file(environ, secure, &file);
	static char default_region[4096];
	char default_why[512] = "";
	bool have_default = gpucap_default_region_path(default_region, sizeof(default_region), true,
	                                               default_why, sizeof(default_why));
	struct gpucap_policy_input input = {.env = environ,
	                                    .secure = secure,
	                                    .file = &file,
	                                    .default_region = default_region,
	                                    .hami_node_dir = gpucap_hami_node_dir_present()};
	gpucap_policy_resolve(&input, &policy);
	/* The level first, so that what follows is reported at the right one. */
	gpucap_log_set_level(policy.log_level);
	if (!have_default && default_why[0])
		gpucap_log(GPUCAP_LOG_ERROR, "%s", default_why);
	for (unsigned i = 0; i < policy.diag_count; i++)
		gpucap_log(policy.diags[i].level == GPUCAP_DIAG_ERROR ? GPUCAP_LOG_ERROR : GPUCAP_LOG_WARN,
		           "%s", policy.diags[i].text);
	if (policy.diag_dropped)
		gpucap_log(GPUCAP_LOG_WARN,
		           "%u more problems with the settings were not shown; gpucap doctor lists them",
		           policy.diag_dropped);
	apply(&policy, &file, config);
}

/* For "gpucap doctor" and other tools: whether libgpucap.so is loaded into a
 * process, with dlsym(RTLD_DEFAULT, "gpucap_preload_probe"). Costs nothing
 * and initialises nothing. Returns the library's name. */
GPUCAP_EXPORT const char *gpucap_preload_probe(void);
const char *gpucap_preload_probe(void)
{
	return "libgpucap.so";
}
