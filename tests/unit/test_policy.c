/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of src/policy: the settings table (and that
 * docs/configuration.md lists exactly its rows), the one precedence, the
 * limits file's region line, and the binding of a container to one
 * region. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "binding.h"
#include "policy.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)

static struct gpucap_policy policy;

static void resolve_with(char **env, const struct gpucap_limits_file *file, const char *flag)
{
	struct gpucap_policy_input in = {.env = env, .file = file, .region_flag = flag};
	gpucap_policy_resolve(&in, &policy);
}

static void resolve(char **env)
{
	resolve_with(env, NULL, NULL);
}

/* Whether some diagnostic of setting contains needle. */
static bool said(enum gpucap_setting_id setting, const char *needle)
{
	for (unsigned i = 0; i < policy.diag_count; i++) {
		if (policy.diags[i].setting == setting && strstr(policy.diags[i].text, needle))
			return true;
	}
	return false;
}

static void parse_file(const char *text, struct gpucap_limits_file *file)
{
	memset(file, 0, sizeof(*file));
	snprintf(file->path, sizeof(file->path), "/etc/gpucap/limits.conf");
	gpucap_limits_file_parse(text, strlen(text), file->path, file);
}

/* ---- Memory and SM limits --------------------------------------------------- */

static void nothing_set_means_no_limit(void **state)
{
	(void)state;
	char *env[] = {"HOME=/root", NULL};
	resolve(env);
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		assert_int_equal(policy.device[i].memory_bytes, GPUCAP_UNLIMITED);
		assert_false(policy.device[i].memory_closed);
		assert_int_equal(policy.device[i].sm_register, 0);
		assert_int_equal(policy.device[i].sm_local_cap, 0);
	}
	assert_int_equal(policy.log_level, 1);
	assert_int_equal(policy.sm_policy, GPUCAP_POLICY_SM_STRICT);
	assert_true(policy.sm_calibrate);
	assert_string_equal(policy.region_path, GPUCAP_REGION_DEFAULT_PATH);
	assert_int_equal(policy.region_from.origin, GPUCAP_FROM_DEFAULT);
	assert_int_equal(policy.context_bytes, GPUCAP_POLICY_CONTEXT_BYTES);
	assert_false(policy.region_group);
	assert_string_equal(policy.node_dir, "");
	assert_int_equal(policy.diag_count, 0);
}

static void per_device_beats_global_and_gpucap_beats_hami(void **state)
{
	(void)state;
	char *env[] = {"CUDA_DEVICE_MEMORY_LIMIT=8g",
	               "GPUCAP_MEMORY_LIMIT=4g",
	               "CUDA_DEVICE_MEMORY_LIMIT_1=2g",
	               "GPUCAP_MEMORY_LIMIT_2=1g",
	               "CUDA_DEVICE_MEMORY_LIMIT_2=3g",
	               "GPUCAP_MEMORY_LIMIT=16g", /* later: ignored */
	               NULL};
	resolve(env);
	assert_int_equal(policy.device[0].memory_bytes, 4096 * MiB);
	assert_string_equal(policy.device[0].env_memory.name, "GPUCAP_MEMORY_LIMIT");
	assert_int_equal(policy.device[1].memory_bytes, 2048 * MiB);
	assert_string_equal(policy.device[1].env_memory.name, "CUDA_DEVICE_MEMORY_LIMIT_1");
	assert_int_equal(policy.device[2].memory_bytes, 1024 * MiB);
	assert_string_equal(policy.device[2].env_memory.name, "GPUCAP_MEMORY_LIMIT_2");
	assert_int_equal(policy.diag_count, 0);
}

static void a_malformed_limit_closes_what_it_names(void **state)
{
	(void)state;
	char *env[] = {"GPUCAP_MEMORY_LIMIT_1=4g", "CUDA_DEVICE_MEMORY_LIMIT_1=12q",
	               "CUDA_DEVICE_MEMORY_LIMIT=8g", "CUDA_DEVICE_SM_LIMIT_3=thirty", NULL};
	resolve(env);
	/* A valid variable of higher precedence does not hide the typo. */
	assert_true(policy.device[1].memory_closed);
	assert_int_equal(policy.device[1].memory_bytes, 0);
	assert_string_equal(policy.device[1].why_closed, "CUDA_DEVICE_MEMORY_LIMIT_1 is malformed");
	assert_false(policy.device[0].memory_closed);
	assert_int_equal(policy.device[0].memory_bytes, 8192 * MiB);
	assert_true(said(GPUCAP_SETTING_MEMORY_LIMIT, "CUDA_DEVICE_MEMORY_LIMIT_1=\"12q\" is not valid"));
	assert_true(said(GPUCAP_SETTING_MEMORY_LIMIT, "capped at 0 bytes"));
	/* SM: throttled locally, never registered. */
	assert_int_equal(policy.device[3].sm_local_cap, GPUCAP_POLICY_SM_FAIL_CLOSED);
	assert_int_equal(policy.device[3].sm_register, 0);
	assert_true(said(GPUCAP_SETTING_SM_LIMIT, "throttled to 1%"));
}

static void bad_suffixes_warn_and_are_ignored(void **state)
{
	(void)state;
	char *env[] = {"CUDA_DEVICE_MEMORY_LIMIT_=1m", "GPUCAP_MEMORY_LIMIT_64=1m",
	               "CUDA_DEVICE_SM_LIMIT_x=5", NULL};
	resolve(env);
	assert_int_equal(policy.device[0].memory_bytes, GPUCAP_UNLIMITED);
	assert_false(policy.device[0].memory_closed);
	assert_true(said(GPUCAP_SETTING_MEMORY_LIMIT, "CUDA_DEVICE_MEMORY_LIMIT_ is ignored"));
	assert_true(said(GPUCAP_SETTING_MEMORY_LIMIT, "GPUCAP_MEMORY_LIMIT_64 is ignored"));
	assert_true(said(GPUCAP_SETTING_SM_LIMIT, "CUDA_DEVICE_SM_LIMIT_x is ignored"));
	assert_int_equal(policy.diags[0].level, GPUCAP_DIAG_WARN);
}

static void the_file_is_a_ceiling_the_environment_can_only_lower(void **state)
{
	(void)state;
	struct gpucap_limits_file file;
	parse_file("memory = 32m\nmemory.1 = 8m\nsm = 50\nsm.2 = 20\n", &file);
	assert_int_equal(file.state, GPUCAP_LIMITS_FILE_LOADED);
	char *env[] = {"CUDA_DEVICE_MEMORY_LIMIT=1g", "GPUCAP_MEMORY_LIMIT_3=16m", "CUDA_DEVICE_SM_LIMIT=30",
	               "GPUCAP_SM_LIMIT_2=90", NULL};
	resolve_with(env, &file, NULL);
	assert_int_equal(policy.device[0].memory_bytes, 32 * MiB);
	assert_int_equal(policy.device[0].file_cap_bytes, 32 * MiB);
	assert_string_equal(policy.device[0].file_memory.name, "memory");
	assert_int_equal(policy.device[0].file_memory.line, 1);
	assert_int_equal(policy.device[1].memory_bytes, 8 * MiB);
	assert_string_equal(policy.device[1].file_memory.name, "memory.1");
	assert_int_equal(policy.device[3].memory_bytes, 16 * MiB);
	assert_int_equal(policy.device[3].file_cap_bytes, 32 * MiB);
	/* SM: lower of the two registered; the file's value is the ceiling. */
	assert_int_equal(policy.device[0].sm_register, 30);
	assert_int_equal(policy.device[0].sm_local_cap, 50);
	assert_int_equal(policy.device[2].sm_register, 20);
	assert_int_equal(policy.device[2].sm_local_cap, 20);
	assert_true(policy.file_in_force);
}

static void a_refused_file_closes_every_device(void **state)
{
	(void)state;
	struct gpucap_limits_file file;
	parse_file("memory = 32m\nmemory = lots\n", &file);
	assert_int_equal(file.state, GPUCAP_LIMITS_FILE_REFUSED);
	char *env[] = {"CUDA_DEVICE_MEMORY_LIMIT=1g", NULL};
	resolve_with(env, &file, NULL);
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		assert_true(policy.device[i].memory_closed);
		assert_int_equal(policy.device[i].memory_bytes, 0);
	}
	assert_false(policy.file_in_force);
	assert_true(said(GPUCAP_SETTING_LIMITS_FILE, "limits.conf:2"));
	assert_true(said(GPUCAP_SETTING_LIMITS_FILE, "failing closed"));
}

/* ---- The region ----------------------------------------------------------------- */

static void region_path_precedence_without_a_file(void **state)
{
	(void)state;
	char *both[] = {"CUDA_DEVICE_MEMORY_SHARED_CACHE=/b", "GPUCAP_REGION=/a", NULL};
	resolve(both);
	assert_string_equal(policy.region_path, "/a");
	assert_string_equal(policy.region_from.name, "GPUCAP_REGION");
	char *empty[] = {"GPUCAP_REGION=", "CUDA_DEVICE_MEMORY_SHARED_CACHE=/b", NULL};
	resolve(empty);
	assert_string_equal(policy.region_path, "/b");
	resolve_with(both, NULL, "/flag");
	assert_string_equal(policy.region_path, "/flag");
	assert_int_equal(policy.region_from.origin, GPUCAP_FROM_FLAG);
	/* Secure execution ignores the path variables. */
	struct gpucap_policy_input in = {.env = both, .secure = true};
	gpucap_policy_resolve(&in, &policy);
	assert_string_equal(policy.region_path, GPUCAP_REGION_DEFAULT_PATH);
}

static void the_file_pins_the_region(void **state)
{
	(void)state;
	struct gpucap_limits_file file;
	parse_file("memory = 64m\n# the node agent's\nregion = /var/lib/gpucap/c1.region\n", &file);
	assert_int_equal(file.state, GPUCAP_LIMITS_FILE_LOADED);
	assert_string_equal(file.region, "/var/lib/gpucap/c1.region");
	assert_int_equal(file.region_line, 3);

	char *none[] = {NULL};
	resolve_with(none, &file, NULL);
	assert_string_equal(policy.region_path, "/var/lib/gpucap/c1.region");
	assert_int_equal(policy.region_from.origin, GPUCAP_FROM_FILE);
	assert_false(policy.region_refused);

	char *same[] = {"GPUCAP_REGION=/var/lib/gpucap/c1.region", NULL};
	resolve_with(same, &file, NULL);
	assert_false(policy.region_refused);
	assert_int_equal(policy.diag_count, 0);

	char *other[] = {"CUDA_DEVICE_MEMORY_SHARED_CACHE=/tmp/mine", NULL};
	resolve_with(other, &file, NULL);
	assert_true(policy.region_refused);
	assert_true(said(
	    GPUCAP_SETTING_REGION,
	    "CUDA_DEVICE_MEMORY_SHARED_CACHE=\"/tmp/mine\" names another region than the limits file /etc/gpucap/limits.conf"));
	assert_true(said(GPUCAP_SETTING_REGION, "unset CUDA_DEVICE_MEMORY_SHARED_CACHE"));
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++)
		assert_true(policy.device[i].memory_closed);

	/* A tool's --file may inspect any region. */
	resolve_with(other, &file, "/tmp/mine");
	assert_false(policy.region_refused);
	assert_string_equal(policy.region_path, "/tmp/mine");
}

static void a_file_without_region_pins_the_default(void **state)
{
	(void)state;
	struct gpucap_limits_file file;
	parse_file("memory = 64m\n", &file);
	char *other[] = {"GPUCAP_REGION=/tmp/mine", NULL};
	resolve_with(other, &file, NULL);
	assert_true(policy.region_refused);
	assert_string_equal(policy.region_path, GPUCAP_REGION_DEFAULT_PATH);
	assert_true(said(GPUCAP_SETTING_REGION, "add \"region = /tmp/mine\""));
	char *def[] = {"GPUCAP_REGION=" GPUCAP_REGION_DEFAULT_PATH, NULL};
	resolve_with(def, &file, NULL);
	assert_false(policy.region_refused);
}

static void bad_region_lines_are_refused(void **state)
{
	(void)state;
	struct gpucap_limits_file file;
	parse_file("region = relative/path\n", &file);
	assert_int_equal(file.state, GPUCAP_LIMITS_FILE_REFUSED);
	assert_non_null(strstr(file.error, "limits.conf:1"));
	assert_non_null(strstr(file.error, "absolute path"));
	parse_file("region = /a\nregion = /b\n", &file);
	assert_int_equal(file.state, GPUCAP_LIMITS_FILE_REFUSED);
	assert_non_null(strstr(file.error, "already set on line 1"));
	parse_file("region =\n", &file);
	assert_int_equal(file.state, GPUCAP_LIMITS_FILE_REFUSED);
}

/* ---- Single settings -------------------------------------------------------------- */

static void single_settings_and_their_aliases(void **state)
{
	(void)state;
	char *env[] = {
	    "LIBCUDA_LOG_LEVEL=4",     "GPUCAP_LOG_LEVEL= 2 ",     "GPU_CORE_UTILIZATION_POLICY=disable",
	    "GPUCAP_SM_CALIBRATE=off", "GPUCAP_REGION_GROUP=1",    "GPUCAP_NODE_DIR=/var/lib/gpucap/node",
	    "GPUCAP_CONTEXT_BYTES=0",  "CUDA_VISIBLE_DEVICES=1,0", NULL};
	resolve(env);
	assert_int_equal(policy.log_level, 2);
	assert_string_equal(policy.log_level_from.name, "GPUCAP_LOG_LEVEL");
	assert_int_equal(policy.sm_policy, GPUCAP_POLICY_SM_DISABLE);
	assert_string_equal(policy.sm_policy_from.name, "GPU_CORE_UTILIZATION_POLICY");
	assert_false(policy.sm_calibrate);
	assert_true(policy.region_group);
	assert_string_equal(policy.node_dir, "/var/lib/gpucap/node");
	assert_int_equal(policy.context_bytes, 0);
	assert_true(policy.visible_devices_set);
	assert_string_equal(policy.visible_devices, "1,0");
	assert_int_equal(policy.diag_count, 0);

	char *elastic[] = {"GPUCAP_SM_POLICY=elastic", "GPU_CORE_UTILIZATION_POLICY=force", NULL};
	resolve(elastic);
	assert_int_equal(policy.sm_policy, GPUCAP_POLICY_SM_ELASTIC);
	char *hami_elastic[] = {"GPU_CORE_UTILIZATION_POLICY=elastic", NULL};
	resolve(hami_elastic);
	assert_int_equal(policy.sm_policy, GPUCAP_POLICY_SM_STRICT);
	assert_true(said(GPUCAP_SETTING_SM_POLICY, "expected default, force or disable"));
}

static void malformed_single_settings(void **state)
{
	(void)state;
	char *env[] = {"GPUCAP_LOG_LEVEL=9",  "GPUCAP_SM_CALIBRATE=maybe", "GPUCAP_REGION_GROUP=yes",
	               "GPUCAP_NODE_DIR=rel", "GPUCAP_SM_POLICY=lenient",  NULL};
	resolve(env);
	assert_int_equal(policy.log_level, 1);
	assert_true(policy.sm_calibrate);
	assert_false(policy.region_group);
	assert_string_equal(policy.node_dir, "");
	assert_int_equal(policy.sm_policy, GPUCAP_POLICY_SM_STRICT);
	assert_int_equal(policy.diag_count, 5);
	assert_true(said(GPUCAP_SETTING_LOG_LEVEL, "GPUCAP_LOG_LEVEL=\"9\" is not valid"));
	assert_true(said(GPUCAP_SETTING_NODE_DIR, "absolute directory path"));
	/* None of these closes a device. */
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++)
		assert_false(policy.device[i].memory_closed);

	char *ctx[] = {"GPUCAP_CONTEXT_BYTES=lots", "CUDA_DEVICE_MEMORY_LIMIT=1g", NULL};
	resolve(ctx);
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		assert_true(policy.device[i].memory_closed);
		assert_int_equal(policy.device[i].memory_bytes, 0);
	}
	assert_string_equal(policy.device[0].why_closed, "GPUCAP_CONTEXT_BYTES is malformed");
}

/* The reconciler's period: whole milliseconds from 10 to 1000, else the
 * default with a warning. */
static void the_reconcile_period_is_bounded(void **state)
{
	(void)state;
	char *unset[] = {NULL};
	resolve(unset);
	assert_int_equal(policy.reconcile_ms, 100);
	char *set[] = {"GPUCAP_RECONCILE_MS=250", NULL};
	resolve(set);
	assert_int_equal(policy.reconcile_ms, 250);
	assert_int_equal(policy.diag_count, 0);
	const char *bad[] = {"5", "1001", "100ms", "-1", ""};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char var[64];
		snprintf(var, sizeof(var), "GPUCAP_RECONCILE_MS=%s", bad[i]);
		char *env[] = {var, NULL};
		resolve(env);
		assert_int_equal(policy.reconcile_ms, 100);
		assert_true(said(GPUCAP_SETTING_RECONCILE_MS, "expected whole milliseconds from 10 to 1000"));
	}
}

static void memory_variables_are_named_by_the_table(void **state)
{
	(void)state;
	const char *yes[] = {"GPUCAP_MEMORY_LIMIT", "CUDA_DEVICE_MEMORY_LIMIT", "GPUCAP_MEMORY_LIMIT_0",
	                     "CUDA_DEVICE_MEMORY_LIMIT_12"};
	const char *no[] = {"GPUCAP_MEMORY_LIMITS", "CUDA_DEVICE_MEMORY_LIMIT_",
	                    "CUDA_DEVICE_MEMORY_LIMIT_1a", "GPUCAP_SM_LIMIT",
	                    "CUDA_DEVICE_MEMORY_SHARED_CACHE"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		assert_true(gpucap_policy_is_memory_variable(yes[i], strlen(yes[i])));
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		assert_false(gpucap_policy_is_memory_variable(no[i], strlen(no[i])));
}

static void the_first_occurrence_counts(void **state)
{
	(void)state;
	char *env[] = {"GPUCAP_REGION=/first", "GPUCAP_REGION=/second", NULL};
	assert_string_equal(gpucap_policy_env_get(env, "GPUCAP_REGION"), "/first");
	assert_null(gpucap_policy_env_get(env, "GPUCAP_REGIO"));
	assert_null(gpucap_policy_env_get(NULL, "GPUCAP_REGION"));
}

/* ---- The table and the documentation ------------------------------------------------ */

/* The variables of the "## Variables" table of docs/configuration.md, one
 * per line in out ("NAME\n"), _<i> forms folded into their base name. */
static void documented_variables(char *out, size_t out_len)
{
	FILE *f = fopen(GPUCAP_SOURCE_DIR "/docs/configuration.md", "r");
	assert_non_null(f);
	char line[2048];
	bool in_table = false;
	out[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "## ", 3) == 0)
			in_table = strncmp(line, "## Variables", 12) == 0;
		if (!in_table || strncmp(line, "| `", 3) != 0)
			continue;
		/* The first two cells: the gpucap name and the HAMi-core name. */
		char *cell = line + 1;
		for (int c = 0; c < 2 && cell; c++) {
			char *end = strchr(cell, '|');
			if (!end)
				break;
			*end = '\0';
			char *tick = strchr(cell, '`');
			char *close = tick ? strchr(tick + 1, '`') : NULL;
			if (tick && close) {
				*close = '\0';
				char *name = tick + 1;
				char *suffix = strstr(name, "_<i>");
				if (suffix)
					*suffix = '\0';
				size_t used = strlen(out);
				snprintf(out + used, out_len - used, "%s\n", name);
			}
			cell = end + 1;
		}
	}
	fclose(f);
}

static bool listed(const char *list, const char *name)
{
	size_t len = strlen(name);
	for (const char *p = list; *p;) {
		const char *nl = strchr(p, '\n');
		if ((size_t)(nl - p) == len && strncmp(p, name, len) == 0)
			return true;
		p = nl + 1;
	}
	return false;
}

static void the_docs_list_exactly_the_table(void **state)
{
	(void)state;
	static char documented[16384];
	documented_variables(documented, sizeof(documented));
	/* Every row is documented, under both names. */
	for (int i = 0; i < GPUCAP_SETTING_COUNT; i++) {
		const struct gpucap_setting *s = &gpucap_settings[i];
		if (!listed(documented, s->name))
			fail_msg("%s is in src/policy/settings.def but not in docs/configuration.md",
			         s->name);
		if (s->alias && !listed(documented, s->alias))
			fail_msg("%s is in src/policy/settings.def but not in docs/configuration.md",
			         s->alias);
		assert_non_null(s->accepted);
		assert_non_null(s->default_text);
		assert_non_null(s->when_malformed);
	}
	/* Every documented variable is a row. */
	for (const char *p = documented; *p;) {
		const char *nl = strchr(p, '\n');
		char name[128];
		snprintf(name, sizeof(name), "%.*s", (int)(nl - p), p);
		bool found = false;
		for (int i = 0; i < GPUCAP_SETTING_COUNT && !found; i++)
			found = strcmp(gpucap_settings[i].name, name) == 0 ||
			        (gpucap_settings[i].alias && strcmp(gpucap_settings[i].alias, name) == 0);
		if (!found)
			fail_msg("%s is in docs/configuration.md but not in src/policy/settings.def", name);
		p = nl + 1;
	}
}

/* ---- The binding -------------------------------------------------------------------- */

static char lock_path[64];

/* Two containers' mount namespaces. */
#define SCOPE       UINT64_C(4026531841)
#define OTHER_SCOPE UINT64_C(4026532999)

static int make_lock_file(void **state)
{
	(void)state;
	snprintf(lock_path, sizeof(lock_path), "/tmp/gpucap-policy-XXXXXX");
	int fd = mkstemp(lock_path);
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int remove_lock_file(void **state)
{
	(void)state;
	unlink(lock_path);
	return 0;
}

/* Open file description locks are per description, so two bindings in one
 * process act as two processes. */
static void one_region_at_a_time(void **state)
{
	(void)state;
	char err[512];
	struct gpucap_binding a = GPUCAP_BINDING_NONE, b = GPUCAP_BINDING_NONE, c = GPUCAP_BINDING_NONE;
	assert_true(gpucap_binding_take(&a, lock_path, SCOPE, 1000, err, sizeof(err)));
	/* Another process of the same region. */
	assert_true(gpucap_binding_take(&b, lock_path, SCOPE, 1000, err, sizeof(err)));
	/* What gpucap doctor asks, without a lock of its own. */
	assert_int_equal(gpucap_binding_other_held(lock_path, SCOPE, 1000), 0);
	assert_int_equal(gpucap_binding_other_held(lock_path, SCOPE, 2000), 1);
	/* A process of another region (the first deleted and made again). */
	assert_false(gpucap_binding_take(&c, lock_path, SCOPE, 2000, err, sizeof(err)));
	assert_int_equal(c.fd, -1);
	assert_non_null(strstr(err, lock_path));
	assert_non_null(strstr(err, "uses another region"));
	gpucap_binding_release(&a);
	assert_false(gpucap_binding_take(&c, lock_path, SCOPE, 2000, err, sizeof(err)));
	gpucap_binding_release(&b);
	/* The old region's processes are gone. */
	assert_true(gpucap_binding_take(&c, lock_path, SCOPE, 2000, err, sizeof(err)));
	/* And now the old region is the other one, whether its offset is
	 * above or below. */
	assert_false(gpucap_binding_take(&a, lock_path, SCOPE, 1000, err, sizeof(err)));
	assert_false(gpucap_binding_take(&a, lock_path, SCOPE, UINT64_MAX, err, sizeof(err)));
	gpucap_binding_release(&c);
}

/* One limits file mounted into two containers: each has its own region,
 * and neither refuses the other. */
static void containers_sharing_a_file_do_not_meet(void **state)
{
	(void)state;
	char err[512];
	struct gpucap_binding a = GPUCAP_BINDING_NONE, b = GPUCAP_BINDING_NONE, c = GPUCAP_BINDING_NONE;
	assert_true(gpucap_binding_take(&a, lock_path, SCOPE, 1000, err, sizeof(err)));
	assert_true(gpucap_binding_take(&b, lock_path, OTHER_SCOPE, 2000, err, sizeof(err)));
	assert_int_equal(gpucap_binding_other_held(lock_path, OTHER_SCOPE, 2000), 0);
	/* Within a container the rule still holds. */
	assert_false(gpucap_binding_take(&c, lock_path, OTHER_SCOPE, 3000, err, sizeof(err)));
	assert_false(gpucap_binding_take(&c, lock_path, SCOPE, 3000, err, sizeof(err)));
	gpucap_binding_release(&a);
	gpucap_binding_release(&b);
	assert_true(gpucap_binding_scope() != 0);
}

static void offsets_spread_and_stay_in_range(void **state)
{
	(void)state;
	uint64_t ids[] = {0, 1, 2, UINT64_C(1) << 62, UINT64_C(1) << 63, UINT64_MAX};
	uint64_t scopes[] = {0, SCOPE, OTHER_SCOPE, UINT64_MAX};
	for (size_t s = 0; s < sizeof(scopes) / sizeof(scopes[0]); s++) {
		for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
			int64_t off = gpucap_binding_offset(scopes[s], ids[i]);
			assert_true(off >= 1 && off < (INT64_C(1) << 62));
			for (size_t j = 0; j < i; j++)
				assert_true(off != gpucap_binding_offset(scopes[s], ids[j]));
			/* Another scope's offsets are another range. */
			for (size_t t = 0; t < s; t++)
				assert_true(off >> 32 != gpucap_binding_offset(scopes[t], ids[i]) >> 32);
		}
	}
}

static void a_missing_file_cannot_bind(void **state)
{
	(void)state;
	char err[512];
	struct gpucap_binding b = GPUCAP_BINDING_NONE;
	assert_false(gpucap_binding_take(&b, "/nonexistent/gpucap/limits.conf", SCOPE, 1, err, sizeof(err)));
	assert_int_equal(b.fd, -1);
	assert_non_null(strstr(err, "/nonexistent/gpucap/limits.conf"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(nothing_set_means_no_limit),
	    cmocka_unit_test(per_device_beats_global_and_gpucap_beats_hami),
	    cmocka_unit_test(a_malformed_limit_closes_what_it_names),
	    cmocka_unit_test(bad_suffixes_warn_and_are_ignored),
	    cmocka_unit_test(the_file_is_a_ceiling_the_environment_can_only_lower),
	    cmocka_unit_test(a_refused_file_closes_every_device),
	    cmocka_unit_test(region_path_precedence_without_a_file),
	    cmocka_unit_test(the_file_pins_the_region),
	    cmocka_unit_test(a_file_without_region_pins_the_default),
	    cmocka_unit_test(bad_region_lines_are_refused),
	    cmocka_unit_test(single_settings_and_their_aliases),
	    cmocka_unit_test(malformed_single_settings),
	    cmocka_unit_test(the_reconcile_period_is_bounded),
	    cmocka_unit_test(memory_variables_are_named_by_the_table),
	    cmocka_unit_test(the_first_occurrence_counts),
	    cmocka_unit_test(the_docs_list_exactly_the_table),
	    cmocka_unit_test_setup_teardown(one_region_at_a_time, make_lock_file, remove_lock_file),
	    cmocka_unit_test_setup_teardown(containers_sharing_a_file_do_not_meet, make_lock_file,
	                                    remove_lock_file),
	    cmocka_unit_test(offsets_spread_and_stay_in_range),
	    cmocka_unit_test(a_missing_file_cannot_bind),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
