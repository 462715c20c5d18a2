#define _GNU_SOURCE
/* Configuration, read once at initialisation: the environment and the
 * limits file. */
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

/* For "gpucap doctor" and other tools: whether libgpucap.so is loaded into a
 * process, with dlsym(RTLD_DEFAULT, "gpucap_preload_probe"). Costs nothing
 * and initialises nothing. Returns the library's name. */
GPUCAP_EXPORT const char *gpucap_preload_probe(void);
const char *gpucap_preload_probe(void)
{
	return "libgpucap.so";
}
