#define _GNU_SOURCE
/* Configuration, read once at initialisation: the environment and the
 * limits file. */
#include "config.h"
#include "hook.h"
#include "limits_file.h"
#include "log.h"
#include "parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

/* Accepted log levels, for messages. */
#define LOG_LEVEL_FORMS "a whole number from 0 (errors only) to 4 (debug)"

static void report_malformed(const char *name, const char *value, const char *forms, const char *consequence)
{
	/* Always printed: the user asked for a limit we cannot honour. */
	gpucap_log(GPUCAP_LOG_ERROR, "%s=\"%s\" is not valid; expected %s; %s", name, value, forms,
	           consequence);
}

/* A single digit 0..4, blanks around it allowed; -1 otherwise. */
static int parse_level(const char *value)
{
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value < '0' || *value > '0' + GPUCAP_LOG_DEBUG)
		return -1;
	int level = *value++ - '0';
	while (*value == ' ' || *value == '\t')
		value++;
	return *value == '\0' ? level : -1;
}

static void report_limits(void *ctx, enum gpucap_limits_level level, const char *message)
{
	(void)ctx;
	gpucap_log(level == GPUCAP_LIMITS_ERROR ? GPUCAP_LOG_ERROR : GPUCAP_LOG_WARN, "%s", message);
}

static void copy_string(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
}

/* ---- Compute caps ------------------------------------------------------------ */

#define SM_FORMS "a whole percentage from 0 to 100 (0 or 100: no SM cap), e.g. 30"
#define SM_CLOSED                                                                                            \
	"failing closed: the affected devices are throttled to 1% of the SM in this process; fix the value " \
	"or unset the variable"

/* One SM variable: unset, a percent (0: no cap), or malformed. */
struct sm_env {
	int state; /* 0 unset, 1 set, -1 malformed */
	uint32_t percent;
	char name[64];
};

static void read_sm_env(const char *name, const char *value, struct sm_env *out)
{
	if (out->state != 0)
		return; /* the first occurrence counts, as with getenv */
	snprintf(out->name, sizeof(out->name), "%s", name);
	uint32_t percent;
	if (gpucap_parse_percent(value, &percent)) {
		out->state = 1;
		out->percent = percent >= 100 ? 0 : percent;
	} else {
		out->state = -1;
		report_malformed(name, value, SM_FORMS, SM_CLOSED);
	}
}

/* "PREFIX<i>=value" with i a CUDA ordinal: stores into per_device[i]. Other
 * suffixes are ignored with a warning, as for the memory variables. */
static void scan_sm_devices(const char *prefix, struct sm_env *per_device)
{
	size_t len = strlen(prefix);
	for (char **e = environ; e && *e; e++) {
		if (strncmp(*e, prefix, len) != 0)
			continue;
		const char *eq = strchr(*e + len, '=');
		if (!eq)
			continue;
		char name[64];
		snprintf(name, sizeof(name), "%.*s", (int)(eq - *e), *e);
		const char *digits = *e + len;
		unsigned long ordinal = 0;
		bool ok = digits < eq && eq - digits <= 2;
		for (const char *p = digits; ok && p < eq; p++) {
			ok = *p >= '0' && *p <= '9';
			ordinal = ordinal * 10 + (unsigned long)(*p - '0');
		}
		if (!ok || ordinal >= GPUCAP_MAX_DEVICES) {
			gpucap_log(GPUCAP_LOG_WARN,
			           "%s is ignored: the suffix must be a CUDA device ordinal from 0 to %d",
			           name, GPUCAP_MAX_DEVICES - 1);
			continue;
		}
		read_sm_env(name, eq + 1, &per_device[ordinal]);
	}
}

static enum gpucap_sm_policy load_sm_policy(void)
{
	/* gpucap's own name wins over HAMi-core's. */
	const char *value = getenv("GPUCAP_SM_POLICY");
	if (value) {
		if (strcmp(value, "strict") == 0)
			return GPUCAP_SM_POLICY_STRICT;
		if (strcmp(value, "elastic") == 0)
			return GPUCAP_SM_POLICY_ELASTIC;
		if (strcmp(value, "disable") == 0)
			return GPUCAP_SM_POLICY_DISABLE;
		report_malformed("GPUCAP_SM_POLICY", value, "strict, elastic or disable",
		                 "using strict (the SM cap holds even for a lone tenant)");
		return GPUCAP_SM_POLICY_STRICT;
	}
	value = getenv("GPU_CORE_UTILIZATION_POLICY");
	if (value) {
		if (strcmp(value, "default") == 0 || strcmp(value, "force") == 0)
			return GPUCAP_SM_POLICY_STRICT;
		if (strcmp(value, "disable") == 0)
			return GPUCAP_SM_POLICY_DISABLE;
		report_malformed("GPU_CORE_UTILIZATION_POLICY", value, "default, force or disable",
		                 "using default (the SM cap holds even for a lone tenant)");
	}
	return GPUCAP_SM_POLICY_STRICT;
}

/*
 * SM limits: for ordinal i the first set of GPUCAP_SM_LIMIT_<i>,
 * CUDA_DEVICE_SM_LIMIT_<i>, GPUCAP_SM_LIMIT, CUDA_DEVICE_SM_LIMIT. The
 * device is registered with the lower of that and the limits file's value
 * (like memory, the region's entry then rules and `gpucap set --sm` changes
 * it live); the file's value is also this process's own ceiling. A
 * malformed variable naming the device fails it closed at 1%, locally:
 * the typo never loosens a cap and never reaches the region.
 */
static void load_sm(struct gpucap_config *config)
{
	static struct sm_env gpucap_dev[GPUCAP_MAX_DEVICES], hami_dev[GPUCAP_MAX_DEVICES];
	memset(gpucap_dev, 0, sizeof(gpucap_dev));
	memset(hami_dev, 0, sizeof(hami_dev));
	scan_sm_devices("GPUCAP_SM_LIMIT_", gpucap_dev);
	scan_sm_devices("CUDA_DEVICE_SM_LIMIT_", hami_dev);
	struct sm_env gpucap_all, hami_all;
	memset(&gpucap_all, 0, sizeof(gpucap_all));
	memset(&hami_all, 0, sizeof(hami_all));
	const char *value = getenv("GPUCAP_SM_LIMIT");
	if (value)
		read_sm_env("GPUCAP_SM_LIMIT", value, &gpucap_all);
	value = getenv("CUDA_DEVICE_SM_LIMIT");
	if (value)
		read_sm_env("CUDA_DEVICE_SM_LIMIT", value, &hami_all);

	bool any_cap = false;
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		struct gpucap_device_config *dev = &config->device[i];
		uint32_t file = dev->sm_limit > 0 && dev->sm_limit < 100 ? dev->sm_limit : 0;
		const struct sm_env *order[] = {&gpucap_dev[i], &hami_dev[i], &gpucap_all, &hami_all};
		bool closed = false, chosen = false;
		uint32_t env = 0;
		for (size_t k = 0; k < 4; k++) {
			closed |= order[k]->state < 0;
			if (order[k]->state > 0 && !chosen) {
				env = order[k]->percent;
				chosen = true;
			}
		}
		uint32_t reg = file;
		if (env && (!reg || env < reg))
			reg = env;
		dev->sm_limit = reg;
		config->sm.local_cap[i] = closed ? GPUCAP_SM_FAIL_CLOSED_PERCENT : file;
		any_cap |= reg != 0 || closed;
	}

	config->sm.policy = load_sm_policy();
	config->sm.calibrate = true;
	value = getenv("GPUCAP_SM_CALIBRATE");
	if (value && (strcmp(value, "off") == 0 || strcmp(value, "0") == 0))
		config->sm.calibrate = false;
	else if (value && strcmp(value, "on") != 0 && strcmp(value, "1") != 0)
		report_malformed("GPUCAP_SM_CALIBRATE", value, "on or off",
		                 "using on (capped throughput is calibrated against full load)");
	if (config->sm.policy == GPUCAP_SM_POLICY_DISABLE)
		gpucap_log(GPUCAP_LOG_WARN, "SM caps are disabled by policy (%s=disable): %s",
		           getenv("GPUCAP_SM_POLICY") ? "GPUCAP_SM_POLICY" : "GPU_CORE_UTILIZATION_POLICY",
		           any_cap ? "the configured SM limits are not enforced in this process"
		                   : "no SM limit will be enforced in this process");
}

void gpucap_config_load(struct gpucap_config *config)
{
	memset(config, 0, sizeof(*config));

	/* Log level first, so that what follows is reported at the right level. */
	config->log_level = GPUCAP_LOG_WARN;
	const char *level_names[] = {"GPUCAP_LOG_LEVEL", "LIBCUDA_LOG_LEVEL"};
	for (size_t i = 0; i < 2; i++) {
		const char *value = getenv(level_names[i]);
		if (!value)
			continue;
		int level = parse_level(value);
		if (level >= 0) {
			config->log_level = level;
		} else {
			report_malformed(level_names[i], value, LOG_LEVEL_FORMS,
			                 "using the default (1, warnings)");
		}
		break;
	}
	gpucap_log_set_level(config->log_level);

	/* Region path: the gpucap name wins over the HAMi-core one. Ignored in
	 * set-user-ID programs, which must not write where the caller says. */
	const char *path = secure_getenv("GPUCAP_REGION");
	if (!path || !*path)
		path = secure_getenv("CUDA_DEVICE_MEMORY_SHARED_CACHE");
	if (!path || !*path)
		path = GPUCAP_REGION_DEFAULT_PATH;
	copy_string(config->region_path, sizeof(config->region_path), path);

	/* Like the region path: never where a set-user-ID program's caller
	 * says. Only absolute paths: a relative one would name a different
	 * directory in each process's working directory. */
	const char *node_dir = secure_getenv("GPUCAP_NODE_DIR");
	if (node_dir && *node_dir && node_dir[0] != '/')
		report_malformed(
		    "GPUCAP_NODE_DIR", node_dir, "an absolute directory path",
		    "capped containers on a GPU do not take turns; set an absolute path (the node directory mounted into every container) or unset it");
	else if (node_dir && *node_dir)
		copy_string(config->node_dir, sizeof(config->node_dir), node_dir);

	const char *visible = getenv("CUDA_VISIBLE_DEVICES");
	if (visible) {
		config->visible_devices_set = true;
		copy_string(config->visible_devices, sizeof(config->visible_devices), visible);
	}

	/* Limits: the limits file, then the environment, which can only lower
	 * them (limits_file.h). Static: initialisation runs on one thread at a
	 * time, and the thread may have a small stack. */
	static struct gpucap_limits_file file;
	static struct gpucap_limit_choice choice[GPUCAP_LIMITS_DEVICES];
	gpucap_limits_file_load(secure_getenv("GPUCAP_LIMITS_FILE"), &file);
	gpucap_limits_resolve(environ, &file, choice, report_limits, NULL);
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		struct gpucap_device_config *dev = &config->device[i];
		dev->limit_bytes = choice[i].limit_bytes;
		dev->fail_closed = choice[i].fail_closed;
		dev->file_cap_bytes = choice[i].file_cap_bytes;
		dev->sm_limit = choice[i].sm_limit;
	}
	load_sm(config);

	/* Memory charged for each context. */
	config->context_bytes = GPUCAP_DEFAULT_CONTEXT_BYTES;
	const char *ctx = getenv("GPUCAP_CONTEXT_BYTES");
	if (ctx) {
		uint64_t bytes;
		if (gpucap_parse_size(ctx, &bytes)) {
			config->context_bytes = bytes;
			config->context_bytes_set = true;
		} else {
			report_malformed("GPUCAP_CONTEXT_BYTES", ctx, GPUCAP_SIZE_FORMS,
			                 "failing closed: every device is capped at 0 bytes");
			for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
				config->device[i].fail_closed = true;
				config->device[i].limit_bytes = 0;
			}
		}
	}
}

/* For "gpucap doctor" and other tools: whether libgpucap.so is loaded into a
 * process, with dlsym(RTLD_DEFAULT, "gpucap_preload_probe"). Costs nothing
 * and initialises nothing. Returns the library's name. */
GPUCAP_EXPORT const char *gpucap_preload_probe(void);
const char *gpucap_preload_probe(void)
{
	return "libgpucap.so";
}
