/* SPDX-License-Identifier: Apache-2.0 */
/* The one precedence of gpucap's settings (policy.h). Pure: it reads only
 * its input and writes only its output. */
#include "policy.h"

#include "parse.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LOG_LEVEL_FORMS "a whole number from 0 (errors only) to 4 (debug)"
#define SM_FORMS        "a whole percentage from 0 to 100 (0 or 100: no SM cap), e.g. 30"
#define MEMORY_CLOSED   "failing closed: the affected devices are capped at 0 bytes"
#define SM_CLOSED                                                                                            \
	"failing closed: the affected devices are throttled to 1% of the SM in this process; fix the value " \
	"or unset the variable"

__attribute__((format(printf, 4, 5))) static void diag(struct gpucap_policy *out,
                                                       enum gpucap_diag_level level,
                                                       enum gpucap_setting_id setting, const char *fmt, ...)
{
	if (out->diag_count == GPUCAP_POLICY_DIAGS) {
		out->diag_dropped++;
		return;
	}
	struct gpucap_diag *d = &out->diags[out->diag_count++];
	d->level = level;
	d->setting = setting;
	va_list args;
	va_start(args, fmt);
	vsnprintf(d->text, sizeof(d->text), fmt, args);
	va_end(args);
}

static void source(struct gpucap_source *s, enum gpucap_origin origin, const char *name, unsigned line)
{
	s->origin = origin;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->line = line;
}

/* The setting's value by its gpucap name, else its alias; *name says which.
 * Secure rows are unset in secure execution; empty counts as unset when
 * empty_unset. */
static const char *lookup(const struct gpucap_policy_input *in, enum gpucap_setting_id id, bool empty_unset,
                          const char **name)
{
	const struct gpucap_setting *s = &gpucap_settings[id];
	if (in->secure && (s->flags & GPUCAP_SETTING_SECURE))
		return NULL;
	const char *names[2] = {s->name, s->alias};
	for (int i = 0; i < 2; i++) {
		if (!names[i])
			continue;
		const char *value = gpucap_policy_env_get(in->env, names[i]);
		if (value && (!empty_unset || value[0])) {
			*name = names[i];
			return value;
		}
	}
	return NULL;
}

/* ---- Per-device limits ------------------------------------------------------ */

/* One limit variable: unset, valid or malformed. */
struct env_limit {
	int state; /* 0 unset, 1 valid, -1 malformed */
	uint64_t value;
	char name[64];
};

/* Parses one value into *value; false when malformed. */
typedef bool (*limit_parser)(const char *text, uint64_t *value);

static bool parse_memory(const char *text, uint64_t *value)
{
	if (!gpucap_parse_size(text, value))
		return false;
	if (*value == 0 || *value >= GPUCAP_BYTES_MAX)
		*value = GPUCAP_UNLIMITED;
	return true;
}

static bool parse_sm(const char *text, uint64_t *value)
{
	uint32_t percent;
	if (!gpucap_parse_percent(text, &percent))
		return false;
	*value = percent >= 100 ? 0 : percent;
	return true;
}

struct limit_kind {
	enum gpucap_setting_id id;
	limit_parser parse;
	const char *forms;
	const char *closed;
};

static const struct limit_kind memory_kind = {GPUCAP_SETTING_MEMORY_LIMIT, parse_memory, GPUCAP_SIZE_FORMS,
                                              MEMORY_CLOSED};
static const struct limit_kind sm_kind = {GPUCAP_SETTING_SM_LIMIT, parse_sm, SM_FORMS, SM_CLOSED};

static void read_limit(struct gpucap_policy *out, const struct limit_kind *kind, const char *name,
                       size_t name_len, const char *value, struct env_limit *limit)
{
	if (limit->state != 0)
		return; /* the first occurrence counts, as with getenv */
	snprintf(limit->name, sizeof(limit->name), "%.*s", (int)name_len, name);
	if (kind->parse(value, &limit->value)) {
		limit->state = 1;
		return;
	}
	limit->state = -1;
	diag(out, GPUCAP_DIAG_ERROR, kind->id, "%s=\"%.200s\" is not valid; expected %s; %s", limit->name,
	     value, kind->forms, kind->closed);
}

/* NAME_<i>=value for each CUDA ordinal i into per_device[i]; other suffixes
 * are ignored with a warning. */
static void scan_devices(const struct gpucap_policy_input *in, struct gpucap_policy *out,
                         const struct limit_kind *kind, const char *prefix_name, struct env_limit *per_device)
{
	char prefix[64];
	size_t prefix_len = (size_t)snprintf(prefix, sizeof(prefix), "%s_", prefix_name);
	for (char *const *e = in->env; e && *e; e++) {
		const char *entry = *e;
		if (strncmp(entry, prefix, prefix_len) != 0)
			continue;
		const char *digits = entry + prefix_len;
		const char *eq = strchr(digits, '=');
		if (!eq)
			continue;
		size_t name_len = (size_t)(eq - entry);
		unsigned long index = 0;
		bool ok = eq > digits && eq - digits <= 2;
		for (const char *p = digits; ok && p < eq; p++) {
			ok = *p >= '0' && *p <= '9';
			index = index * 10 + (unsigned long)(*p - '0');
		}
		if (!ok || index >= GPUCAP_MAX_DEVICES) {
			diag(out, GPUCAP_DIAG_WARN, kind->id,
			     "%.*s is ignored: the suffix must be a CUDA device index from 0 to %d",
			     (int)(name_len < 128 ? name_len : 128), entry, GPUCAP_MAX_DEVICES - 1);
			continue;
		}
		read_limit(out, kind, entry, name_len, eq + 1, &per_device[index]);
	}
}

/* The four candidates of a per-device setting, in precedence order. */
struct limit_env {
	struct env_limit name_dev[GPUCAP_MAX_DEVICES], alias_dev[GPUCAP_MAX_DEVICES];
	struct env_limit name_all, alias_all;
};

static void read_limit_env(const struct gpucap_policy_input *in, struct gpucap_policy *out,
                           const struct limit_kind *kind, struct limit_env *env)
{
	memset(env, 0, sizeof(*env));
	const struct gpucap_setting *s = &gpucap_settings[kind->id];
	scan_devices(in, out, kind, s->name, env->name_dev);
	scan_devices(in, out, kind, s->alias, env->alias_dev);
	const char *value = gpucap_policy_env_get(in->env, s->name);
	if (value)
		read_limit(out, kind, s->name, strlen(s->name), value, &env->name_all);
	value = gpucap_policy_env_get(in->env, s->alias);
	if (value)
		read_limit(out, kind, s->alias, strlen(s->alias), value, &env->alias_all);
}

/* Ordinal i: the first valid candidate (chosen), and the first malformed
 * one (closed), which fails the device even when another would win. */
static void pick(const struct limit_env *env, int i, const struct env_limit **chosen,
                 const struct env_limit **closed)
{
	const struct env_limit *order[] = {&env->name_dev[i], &env->alias_dev[i], &env->name_all,
	                                   &env->alias_all};
	*chosen = *closed = NULL;
	for (size_t k = 0; k < 4; k++) {
		if (order[k]->state < 0 && !*closed)
			*closed = order[k];
		if (order[k]->state > 0 && !*chosen)
			*chosen = order[k];
	}
}

static const struct gpucap_limits_entry *file_entry(const struct gpucap_limits_entry *per_device,
                                                    const struct gpucap_limits_entry *all, int i,
                                                    const char *key, struct gpucap_source *from)
{
	const struct gpucap_limits_entry *e = per_device[i].set ? &per_device[i] : all->set ? all : NULL;
	if (!e)
		return NULL;
	char name[32];
	if (e == all)
		snprintf(name, sizeof(name), "%s", key);
	else
		snprintf(name, sizeof(name), "%s.%d", key, i);
	source(from, GPUCAP_FROM_FILE, name, e->line);
	return e;
}

static void resolve_limits(const struct gpucap_policy_input *in, struct gpucap_policy *out, bool file_loaded,
                           bool file_refused)
{
	/* Static: the tables are large and resolution runs on one thread at a
	 * time (initialisation, or a command). */
	static struct limit_env memory, sm;
	read_limit_env(in, out, &memory_kind, &memory);
	read_limit_env(in, out, &sm_kind, &sm);
	const struct gpucap_limits_file *file = in->file;
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		struct gpucap_policy_device *d = &out->device[i];
		d->env_bytes = d->file_cap_bytes = GPUCAP_UNLIMITED;
		const struct env_limit *chosen, *closed;

		pick(&memory, i, &chosen, &closed);
		if (closed) {
			d->memory_closed = true;
			snprintf(d->why_closed, sizeof(d->why_closed), "%s is malformed", closed->name);
		}
		if (chosen) {
			d->env_bytes = chosen->value;
			source(&d->env_memory, GPUCAP_FROM_ENV, chosen->name, 0);
		}
		const struct gpucap_limits_entry *m =
		    file_loaded ? file_entry(file->memory, &file->memory_all, i, "memory", &d->file_memory)
		                : NULL;
		if (m)
			d->file_cap_bytes = m->value;
		d->memory_bytes = d->env_bytes < d->file_cap_bytes ? d->env_bytes : d->file_cap_bytes;
		if (file_refused && !d->memory_closed) {
			d->memory_closed = true;
			snprintf(d->why_closed, sizeof(d->why_closed), "the limits file is refused");
		}
		if (out->region_refused && !d->memory_closed) {
			d->memory_closed = true;
			snprintf(d->why_closed, sizeof(d->why_closed),
			         "%s names another region than the limits file", out->region_from.name);
		}
		if (d->memory_closed)
			d->memory_bytes = 0;

		/* SM: the file's value is a ceiling; the environment may only
		 * lower it; a malformed variable throttles locally, never in the
		 * region. */
		pick(&sm, i, &chosen, &closed);
		uint32_t from_file = 0, from_env = 0;
		const struct gpucap_limits_entry *s =
		    file_loaded ? file_entry(file->sm, &file->sm_all, i, "sm", &d->sm_file) : NULL;
		if (s)
			from_file = (uint32_t)s->value;
		if (chosen) {
			from_env = (uint32_t)chosen->value;
			source(&d->sm_env, GPUCAP_FROM_ENV, chosen->name, 0);
		}
		d->sm_register = from_file;
		if (from_env && (!d->sm_register || from_env < d->sm_register))
			d->sm_register = from_env;
		d->sm_local_cap = closed ? GPUCAP_POLICY_SM_FAIL_CLOSED : from_file;
	}
}

/* ---- Single settings ---------------------------------------------------------- */

/* A single digit 0..4, blanks around it allowed; -1 otherwise. */
static int parse_level(const char *value)
{
	while (*value == ' ' || *value == '\t')
		value++;
	if (*value < '0' || *value > '4')
		return -1;
	int level = *value++ - '0';
	while (*value == ' ' || *value == '\t')
		value++;
	return *value == '\0' ? level : -1;
}

static void resolve_log_level(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	out->log_level = 1;
	const char *name;
	const char *value = lookup(in, GPUCAP_SETTING_LOG_LEVEL, false, &name);
	if (!value)
		return;
	int level = parse_level(value);
	if (level < 0) {
		diag(out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_LOG_LEVEL,
		     "%s=\"%.200s\" is not valid; expected %s; using the default (1, warnings)", name, value,
		     LOG_LEVEL_FORMS);
		return;
	}
	out->log_level = level;
	source(&out->log_level_from, GPUCAP_FROM_ENV, name, 0);
}

static void resolve_sm_policy(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	out->sm_policy = GPUCAP_POLICY_SM_STRICT;
	const char *name;
	const char *value = lookup(in, GPUCAP_SETTING_SM_POLICY, false, &name);
	if (!value)
		return;
	bool hami = strcmp(name, gpucap_settings[GPUCAP_SETTING_SM_POLICY].alias) == 0;
	source(&out->sm_policy_from, GPUCAP_FROM_ENV, name, 0);
	if (strcmp(value, "disable") == 0)
		out->sm_policy = GPUCAP_POLICY_SM_DISABLE;
	else if (!hami && strcmp(value, "elastic") == 0)
		out->sm_policy = GPUCAP_POLICY_SM_ELASTIC;
	else if (!(hami ? strcmp(value, "default") == 0 || strcmp(value, "force") == 0
	                : strcmp(value, "strict") == 0))
		diag(
		    out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_SM_POLICY,
		    "%s=\"%.200s\" is not valid; expected %s; using %s (the SM cap holds even for a lone tenant)",
		    name, value, hami ? "default, force or disable" : "strict, elastic or disable",
		    hami ? "default" : "strict");
}

static void resolve_calibrate(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	out->sm_calibrate = true;
	const char *name;
	const char *value = lookup(in, GPUCAP_SETTING_SM_CALIBRATE, false, &name);
	if (!value || strcmp(value, "on") == 0 || strcmp(value, "1") == 0)
		return;
	if (strcmp(value, "off") == 0 || strcmp(value, "0") == 0)
		out->sm_calibrate = false;
	else
		diag(
		    out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_SM_CALIBRATE,
		    "%s=\"%.200s\" is not valid; expected on or off; using on (capped throughput is calibrated against full load)",
		    name, value);
}

static void resolve_region_group(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	const char *name;
	const char *value = lookup(in, GPUCAP_SETTING_REGION_GROUP, true, &name);
	if (!value || strcmp(value, "0") == 0)
		return;
	if (strcmp(value, "1") == 0)
		out->region_group = true;
	else
		diag(out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_REGION_GROUP,
		     "%s=\"%.200s\" is not valid; expected 0 or 1; using 0 (private region)", name, value);
}

static void resolve_node_dir(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	const char *name;
	const char *value = lookup(in, GPUCAP_SETTING_NODE_DIR, false, &name);
	if (!value) {
		/* HAMi mounts its lock directory into every container it gives a
		 * GPU: the containers of a node take turns there by default. */
		if (in->hami_node_dir)
			snprintf(out->node_dir, sizeof(out->node_dir), "%s", GPUCAP_HAMI_NODE_DIR);
		return;
	}
	if (!*value)
		return; /* set empty: this container does not take turns */
	/* Only absolute paths: a relative one would name a different
	 * directory in each process's working directory. */
	if (value[0] != '/' || strlen(value) >= sizeof(out->node_dir))
		diag(
		    out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_NODE_DIR,
		    "%s=\"%.200s\" is not valid; expected an absolute directory path; capped containers on a GPU do not take turns; set an absolute path (the node directory mounted into every container) or unset it",
		    name, value);
	else
		snprintf(out->node_dir, sizeof(out->node_dir), "%s", value);
}

/* A setting in whole milliseconds from lo to hi; otherwise (or unset) the
 * default, with a warning when it was set. */
static uint32_t resolve_ms(const struct gpucap_policy_input *in, struct gpucap_policy *out,
                           enum gpucap_setting_id id, uint32_t lo, uint32_t hi, uint32_t fallback)
{
	const char *name;
	const char *value = lookup(in, id, false, &name);
	if (!value)
		return fallback;
	uint64_t ms;
	/* Sizes and counts share one parser; a suffix makes no sense here. */
	if (strspn(value, " 0123456789") == strlen(value) && gpucap_parse_size(value, &ms) && ms >= lo &&
	    ms <= hi)
		return (uint32_t)ms;
	diag(out, GPUCAP_DIAG_WARN, id,
	     "%s=\"%.200s\" is not valid; expected whole milliseconds from %u to %u; using the default (%u)",
	     name, value, lo, hi, fallback);
	return fallback;
}

static void resolve_context_wait(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	out->context_wait_ms = resolve_ms(in, out, GPUCAP_SETTING_CONTEXT_WAIT_MS, 0,
	                                  GPUCAP_POLICY_CONTEXT_WAIT_MAX, GPUCAP_POLICY_CONTEXT_WAIT_MS);
}

static void resolve_reconcile(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	out->reconcile_ms = resolve_ms(in, out, GPUCAP_SETTING_RECONCILE_MS, GPUCAP_POLICY_RECONCILE_MIN,
	                               GPUCAP_POLICY_RECONCILE_MAX, GPUCAP_POLICY_RECONCILE_MS);
}

static void resolve_context_bytes(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	out->context_bytes = GPUCAP_POLICY_CONTEXT_BYTES;
	const char *name;
	const char *value = lookup(in, GPUCAP_SETTING_CONTEXT_BYTES, false, &name);
	if (!value)
		return;
	if (gpucap_parse_size(value, &out->context_bytes)) {
		out->context_bytes_set = true;
		return;
	}
	out->context_bytes = GPUCAP_POLICY_CONTEXT_BYTES;
	diag(out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_CONTEXT_BYTES,
	     "%s=\"%.200s\" is not valid; expected %s; failing closed: every device is capped at 0 bytes",
	     name, value, GPUCAP_SIZE_FORMS);
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		struct gpucap_policy_device *d = &out->device[i];
		if (!d->memory_closed)
			snprintf(d->why_closed, sizeof(d->why_closed), "%s is malformed", name);
		d->memory_closed = true;
		d->memory_bytes = 0;
	}
}

void gpucap_policy_region(const struct gpucap_policy_input *in, struct gpucap_region_choice *out)
{
	memset(out, 0, sizeof(*out));
	const struct gpucap_limits_file *file = in->file;
	bool file_loaded = file && file->state == GPUCAP_LIMITS_FILE_LOADED;
	out->env_path = lookup(in, GPUCAP_SETTING_REGION, true, &out->env_name);
	out->path =
	    in->default_region && *in->default_region ? in->default_region : GPUCAP_REGION_DEFAULT_PATH;
	out->name = "default";
	if (in->region_flag) {
		out->path = in->region_flag;
		out->origin = GPUCAP_FROM_FLAG;
		out->name = "--file";
	} else if (file_loaded && file->region_line) {
		out->path = file->region;
		out->origin = GPUCAP_FROM_FILE;
		out->name = "region";
		out->line = file->region_line;
	} else if (out->env_path && !file_loaded) {
		out->path = out->env_path;
		out->origin = GPUCAP_FROM_ENV;
		out->name = out->env_name;
	}
	/* A loaded limits file pins the region: its "region" line, or the
	 * default path, is the only one its cap may be counted in, so the
	 * environment naming another is refused rather than followed. Tools
	 * given --file may look at any region. */
	out->refused =
	    !in->region_flag && file_loaded && out->env_path && strcmp(out->env_path, out->path) != 0;
}

static void resolve_region(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	struct gpucap_region_choice choice;
	gpucap_policy_region(in, &choice);
	const char *path =
	    strlen(choice.path) < sizeof(out->region_path) ? choice.path : GPUCAP_REGION_DEFAULT_PATH;
	snprintf(out->region_path, sizeof(out->region_path), "%s", path);
	source(&out->region_from, choice.origin, choice.name, choice.line);
	if (!choice.refused)
		return;
	const struct gpucap_limits_file *file = in->file;
	out->region_refused = true;
	source(&out->region_from, GPUCAP_FROM_ENV, choice.env_name, 0);
	if (file->region_line)
		diag(
		    out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_REGION,
		    "%s=\"%.200s\" names another region than the limits file %s (region = %s, line %u), whose cap counts one region per container; failing closed: every allocation returns CUDA_ERROR_OUT_OF_MEMORY; unset %s",
		    choice.env_name, choice.env_path, file->path, file->region, file->region_line,
		    choice.env_name);
	else
		diag(
		    out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_REGION,
		    "%s=\"%.200s\" names another region than %s, the only one the limits file %s allows (it has no \"region\" line), whose cap counts one region per container; failing closed: every allocation returns CUDA_ERROR_OUT_OF_MEMORY; unset %s, or have the node agent add \"region = %.200s\" to the file",
		    choice.env_name, choice.env_path, GPUCAP_REGION_DEFAULT_PATH, file->path, choice.env_name,
		    choice.env_path);
}

void gpucap_policy_region_hint(const struct gpucap_policy *policy, char *buf, size_t len)
{
	const struct gpucap_source *from = &policy->region_from;
	switch (from->origin) {
	case GPUCAP_FROM_ENV:
		snprintf(buf, len,
		         "the path comes from %s: point it at a region this user may use, or unset it",
		         from->name);
		break;
	case GPUCAP_FROM_FILE:
		snprintf(
		    buf, len,
		    "the path comes from the limits file's region line %u: the node agent must fix the file or the region",
		    from->line);
		break;
	case GPUCAP_FROM_FLAG:
		snprintf(buf, len, "the path comes from --file: name another region");
		break;
	default:
		snprintf(buf, len, "the path is the default: set %s to a region this user may use",
		         gpucap_settings[GPUCAP_SETTING_REGION].name);
		break;
	}
}

void gpucap_policy_resolve(const struct gpucap_policy_input *in, struct gpucap_policy *out)
{
	memset(out, 0, sizeof(*out));
	const struct gpucap_limits_file *file = in->file;
	bool file_loaded = file && file->state == GPUCAP_LIMITS_FILE_LOADED;
	bool file_refused = file && file->state == GPUCAP_LIMITS_FILE_REFUSED;
	out->file_in_force = file_loaded;

	resolve_log_level(in, out);
	if (file_refused)
		diag(out, GPUCAP_DIAG_ERROR, GPUCAP_SETTING_LIMITS_FILE,
		     "%s; failing closed: every device is capped at 0 bytes", file->error);
	else if (file && file->override_ignored)
		diag(out, GPUCAP_DIAG_WARN, GPUCAP_SETTING_LIMITS_FILE,
		     "GPUCAP_LIMITS_FILE is ignored: the node's limits file %s exists and always applies",
		     GPUCAP_LIMITS_FILE_DEFAULT);
	resolve_region(in, out);
	resolve_limits(in, out, file_loaded, file_refused);
	resolve_context_bytes(in, out);
	resolve_context_wait(in, out);
	resolve_reconcile(in, out);
	resolve_sm_policy(in, out);
	resolve_calibrate(in, out);
	resolve_region_group(in, out);
	resolve_node_dir(in, out);

	const char *name;
	const char *visible = lookup(in, GPUCAP_SETTING_VISIBLE_DEVICES, false, &name);
	if (visible) {
		out->visible_devices_set = true;
		snprintf(out->visible_devices, sizeof(out->visible_devices), "%s", visible);
	}
}
