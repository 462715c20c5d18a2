/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The settings of gpucap and the one precedence between their sources: the
 * environment, the node's limits file and a command's flags.
 *
 * gpucap_policy_resolve is pure: no getenv, no files, no logging. The
 * library (src/hook/config.c), gpucap doctor, set and run call it with what
 * they read, and print its diagnostics their own way, so what doctor
 * explains is exactly what the library does.
 */
#ifndef GPUCAP_POLICY_H
#define GPUCAP_POLICY_H

#include "gpucap/region.h"
#include "limits_file.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- The settings table (settings.def) ------------------------------------ */

enum {
	GPUCAP_SETTING_PER_DEVICE = 1u << 0,
	GPUCAP_SETTING_SECURE = 1u << 1,
	GPUCAP_SETTING_IN_LIBRARY = 1u << 2,
	GPUCAP_SETTING_IN_CLI = 1u << 3,
};

enum gpucap_setting_id {
#define SETTING(id, name, alias, flags, accepted, default_text, when_malformed) GPUCAP_SETTING_##id,
#include "settings.def"
#undef SETTING
	GPUCAP_SETTING_COUNT
};

struct gpucap_setting {
	const char *name;
	const char *alias; /* HAMi-core's name, or NULL */
	unsigned flags;
	const char *accepted;
	const char *default_text;
	const char *when_malformed;
};

extern const struct gpucap_setting gpucap_settings[GPUCAP_SETTING_COUNT];

/* The value of name in env (a NULL-terminated "NAME=value" array such as
 * environ), the first occurrence as getenv does; NULL when unset. */
const char *gpucap_policy_env_get(char *const *env, const char *name);

/* Whether the variable name[0..len) is one of the memory limit variables
 * (the gpucap name, the alias, and their _<i> forms). */
bool gpucap_policy_is_memory_variable(const char *name, size_t len);

/* Pick and read the limits file (limits_file.h's rules), its path override
 * taken from env unless secure. */
void gpucap_policy_load_file(char *const *env, bool secure, struct gpucap_limits_file *out);

/* ---- Precedence ------------------------------------------------------------- */

enum gpucap_policy_sm {
	GPUCAP_POLICY_SM_STRICT = 0,
	GPUCAP_POLICY_SM_ELASTIC = 1,
	GPUCAP_POLICY_SM_DISABLE = 2,
};

/* The SM share a malformed SM variable leaves the devices it names. */
#define GPUCAP_POLICY_SM_FAIL_CLOSED 1u
#define GPUCAP_POLICY_CONTEXT_BYTES  (UINT64_C(640) << 20)
/* How long a refused context waits for estimates of contexts beside it. */
#define GPUCAP_POLICY_CONTEXT_WAIT_MS  3000u
#define GPUCAP_POLICY_CONTEXT_WAIT_MAX 60000u
#define GPUCAP_POLICY_RECONCILE_MS     100u
#define GPUCAP_POLICY_RECONCILE_MIN    10u
#define GPUCAP_POLICY_RECONCILE_MAX    1000u

enum gpucap_origin {
	GPUCAP_FROM_DEFAULT = 0,
	GPUCAP_FROM_ENV = 1,  /* name: the variable */
	GPUCAP_FROM_FILE = 2, /* name: the file's key; line */
	GPUCAP_FROM_FLAG = 3, /* name: the flag, e.g. "--file" */
};

struct gpucap_source {
	enum gpucap_origin origin;
	char name[64];
	unsigned line;
};

struct gpucap_policy_device {
	/* Memory: the effective limit (GPUCAP_UNLIMITED: none; 0 when closed). */
	uint64_t memory_bytes;
	bool memory_closed;
	char why_closed[160];
	/* The limits file's cap (GPUCAP_UNLIMITED: none), enforced in the
	 * region whatever its limit says. */
	uint64_t file_cap_bytes;
	struct gpucap_source file_memory;
	/* The environment's value (GPUCAP_UNLIMITED: none). */
	uint64_t env_bytes;
	struct gpucap_source env_memory;
	/* SM: percent to register with (lower of file and environment; 0:
	 * none), and this process's own ceiling (the file's value, or
	 * GPUCAP_POLICY_SM_FAIL_CLOSED after a malformed variable; 0: none). */
	uint32_t sm_register;
	uint32_t sm_local_cap;
	struct gpucap_source sm_file, sm_env;
};

enum gpucap_diag_level { GPUCAP_DIAG_ERROR = 0, GPUCAP_DIAG_WARN = 1 };

struct gpucap_diag {
	enum gpucap_diag_level level;
	enum gpucap_setting_id setting;
	char text[640]; /* one line, without prefix: the thing, the problem, the fix */
};

#define GPUCAP_POLICY_DIAGS 24

/* HAMi's lock directory, which its device plugin mounts into every
 * container it gives a GPU. */
#define GPUCAP_HAMI_NODE_DIR "/tmp/vgpulock"

struct gpucap_policy_input {
	char *const *env; /* NULL-terminated "NAME=value"; NULL: empty */
	bool secure;      /* secure execution: GPUCAP_SETTING_SECURE rows are ignored */
	/* The limits file as read (NULL or ABSENT: none). */
	const struct gpucap_limits_file *file;
	/* A command's --file: the region it inspects. Beats everything and is
	 * never refused (tools may look at any region). NULL: none. */
	const char *region_flag;
	/* The region path when nothing names one: the caller's platform
	 * default (src/common/default_paths.h: per user outside a container).
	 * NULL: GPUCAP_REGION_DEFAULT_PATH. */
	const char *default_region;
	/* HAMi's lock directory (/tmp/vgpulock) is a directory here: the node
	 * directory when GPUCAP_NODE_DIR is unset. */
	bool hami_node_dir;
};

struct gpucap_policy {
	struct gpucap_policy_device device[GPUCAP_MAX_DEVICES];
	int log_level;
	struct gpucap_source log_level_from;
	enum gpucap_policy_sm sm_policy;
	struct gpucap_source sm_policy_from;
	bool sm_calibrate;
	char region_path[4096];
	struct gpucap_source region_from;
	/* A limits file is in force and the environment names another region:
	 * the library fails closed (the diagnostic says why and the fix). */
	bool region_refused;
	bool region_group;
	char node_dir[4096]; /* "": no turns */
	uint64_t context_bytes;
	/* GPUCAP_CONTEXT_BYTES was given (valid): the charge per context is
	 * that, never the measured footprint. */
	bool context_bytes_set;
	/* GPUCAP_CONTEXT_WAIT_MS: how long a context refused while other
	 * processes' contexts are still charged at their estimate waits for
	 * them to be measured. */
	uint32_t context_wait_ms;
	/* GPUCAP_RECONCILE_MS: the period of the reconciler thread, which
	 * takes the driver's per-process figure (NVML) for each device. */
	uint32_t reconcile_ms;
	bool visible_devices_set;
	char visible_devices[1024];
	/* A limits file is loaded: its cap binds the container (binding.h). */
	bool file_in_force;
	unsigned diag_count, diag_dropped;
	struct gpucap_diag diags[GPUCAP_POLICY_DIAGS];
};

/* The region path alone, as pointers into the input (the flag, the
 * environment, the file, or the default path). */
struct gpucap_region_choice {
	const char *path;
	enum gpucap_origin origin;
	const char *name; /* "--file", the variable, "region" (the file's key) or "default" */
	unsigned line;    /* the file's line */
	/* The environment's path and its variable (NULL: unset). */
	const char *env_path, *env_name;
	/* A limits file is loaded and the environment names another region. */
	bool refused;
};

void gpucap_policy_region(const struct gpucap_policy_input *in, struct gpucap_region_choice *out);

/*
 * Decide every setting. Per setting: the gpucap name beats the HAMi-core
 * alias; for per-device settings NAME_<i> beats ALIAS_<i> beats NAME beats
 * ALIAS. A loaded limits file beats the environment: its memory and SM
 * values are ceilings the environment can only lower, and its region (its
 * "region" key, else the default path) is the only region allowed. A
 * refused file or a malformed limit fails the devices it names closed.
 */
void gpucap_policy_resolve(const struct gpucap_policy_input *in, struct gpucap_policy *out);

/* For a region that cannot be attached: which setting named it and what to
 * change, e.g. "the path comes from GPUCAP_REGION: point it at a region this
 * user may use, or unset it". The region says what is wrong with the file;
 * this says where its name came from. */
void gpucap_policy_region_hint(const struct gpucap_policy *policy, char *buf, size_t len);

#endif
