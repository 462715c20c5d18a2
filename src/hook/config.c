#define _GNU_SOURCE
/* Environment configuration, read once at initialisation. */
#include "hook.h"
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

/* Parse one limit variable. Returns 1 when set and valid (out filled), 0
 * when unset, -1 when malformed (reported). */
static int read_limit(const char *name, const char *value, uint64_t *out)
{
	if (!value)
		return 0;
	uint64_t bytes;
	if (!gpucap_parse_size(value, &bytes)) {
		report_malformed(name, value, GPUCAP_SIZE_FORMS,
		                 "failing closed: the affected devices are capped at 0 bytes");
		return -1;
	}
	*out = (bytes == 0 || bytes >= GPUCAP_BYTES_MAX) ? GPUCAP_UNLIMITED : bytes;
	return 1;
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

struct limit_source {
	int state; /* 0 unset, 1 valid, -1 malformed */
	uint64_t bytes;
};

/* Per-device variables: PREFIX<i>=value with i a decimal CUDA ordinal. */
static void scan_device_limits(const char *prefix, struct limit_source *sources)
{
	size_t prefix_len = strlen(prefix);
	for (char **env = environ; env && *env; env++) {
		const char *entry = *env;
		if (strncmp(entry, prefix, prefix_len) != 0)
			continue;
		const char *p = entry + prefix_len;
		const char *eq = strchr(p, '=');
		if (!eq || eq == p)
			continue;
		char name[128];
		size_t name_len = (size_t)(eq - entry);
		if (name_len >= sizeof(name))
			continue;
		memcpy(name, entry, name_len);
		name[name_len] = '\0';
		unsigned long index = 0;
		bool digits = true;
		for (const char *q = p; q < eq; q++) {
			if (*q < '0' || *q > '9') {
				digits = false;
				break;
			}
			index = index * 10 + (unsigned long)(*q - '0');
			if (index >= GPUCAP_MAX_DEVICES)
				break;
		}
		if (!digits || index >= GPUCAP_MAX_DEVICES) {
			gpucap_log(GPUCAP_LOG_WARN,
			           "%s is ignored: the suffix must be a CUDA device index from 0 to %d", name,
			           GPUCAP_MAX_DEVICES - 1);
			continue;
		}
		sources[index].state = read_limit(name, eq + 1, &sources[index].bytes);
	}
}

static void copy_string(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src);
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

	const char *visible = getenv("CUDA_VISIBLE_DEVICES");
	if (visible) {
		config->visible_devices_set = true;
		copy_string(config->visible_devices, sizeof(config->visible_devices), visible);
	}

	/* Limits. Precedence for device i, first set wins:
	 *   GPUCAP_MEMORY_LIMIT_<i>, CUDA_DEVICE_MEMORY_LIMIT_<i>,
	 *   GPUCAP_MEMORY_LIMIT, CUDA_DEVICE_MEMORY_LIMIT.
	 * Any malformed variable that names device i (or all devices) makes
	 * device i fail closed, even if another variable would win. */
	struct limit_source gpucap_dev[GPUCAP_MAX_DEVICES], hami_dev[GPUCAP_MAX_DEVICES];
	memset(gpucap_dev, 0, sizeof(gpucap_dev));
	memset(hami_dev, 0, sizeof(hami_dev));
	scan_device_limits("GPUCAP_MEMORY_LIMIT_", gpucap_dev);
	scan_device_limits("CUDA_DEVICE_MEMORY_LIMIT_", hami_dev);
	struct limit_source gpucap_all = {0, 0}, hami_all = {0, 0};
	gpucap_all.state =
	    read_limit("GPUCAP_MEMORY_LIMIT", getenv("GPUCAP_MEMORY_LIMIT"), &gpucap_all.bytes);
	hami_all.state =
	    read_limit("CUDA_DEVICE_MEMORY_LIMIT", getenv("CUDA_DEVICE_MEMORY_LIMIT"), &hami_all.bytes);

	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		const struct limit_source *order[] = {&gpucap_dev[i], &hami_dev[i], &gpucap_all, &hami_all};
		struct gpucap_device_config *dev = &config->device[i];
		dev->limit_bytes = GPUCAP_UNLIMITED;
		dev->fail_closed = false;
		bool chosen = false;
		for (size_t k = 0; k < 4; k++) {
			if (order[k]->state < 0)
				dev->fail_closed = true;
			if (order[k]->state > 0 && !chosen) {
				dev->limit_bytes = order[k]->bytes;
				chosen = true;
			}
		}
		if (dev->fail_closed)
			dev->limit_bytes = 0;
	}

	/* Memory charged for each context. */
	config->context_bytes = GPUCAP_DEFAULT_CONTEXT_BYTES;
	const char *ctx = getenv("GPUCAP_CONTEXT_BYTES");
	if (ctx) {
		uint64_t bytes;
		if (gpucap_parse_size(ctx, &bytes)) {
			config->context_bytes = bytes;
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
