#define _GNU_SOURCE
/* The limits file and the precedence of limits (limits_file.h). */
#include "limits_file.h"

#include "file_stat.h"
#include "gpucap/region.h"
#include "parse.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LINE_FORMS "expected \"memory = 8g\", \"memory.<i> = 4g\", \"sm = 50\" or \"sm.<i> = 30\""

__attribute__((format(printf, 2, 3))) static void set_error(struct gpucap_limits_file *out, const char *fmt,
                                                            ...)
{
	va_list args;
	va_start(args, fmt);
	vsnprintf(out->error, sizeof(out->error), fmt, args);
	va_end(args);
	out->state = GPUCAP_LIMITS_FILE_REFUSED;
}

static void reset(struct gpucap_limits_file *out, const char *path, const char *origin)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->path, sizeof(out->path), "%s", path ? path : "");
	out->origin = origin;
}

/* [begin, end) without blanks at either end. */
static void trim(const char **begin, const char **end)
{
	while (*begin < *end && (**begin == ' ' || **begin == '\t' || **begin == '\r'))
		(*begin)++;
	while (*end > *begin && ((*end)[-1] == ' ' || (*end)[-1] == '\t' || (*end)[-1] == '\r'))
		(*end)--;
}

/* "memory", "memory.<i>", "sm", "sm.<i>": the entry it names, or NULL. */
static struct gpucap_limits_entry *entry_for(struct gpucap_limits_file *out, const char *key, size_t len,
                                             bool *is_memory)
{
	const char *dot = memchr(key, '.', len);
	size_t name_len = dot ? (size_t)(dot - key) : len;
	bool memory = name_len == 6 && strncmp(key, "memory", 6) == 0;
	bool sm = name_len == 2 && strncmp(key, "sm", 2) == 0;
	if (!memory && !sm)
		return NULL;
	*is_memory = memory;
	if (!dot)
		return memory ? &out->memory_all : &out->sm_all;
	const char *digits = dot + 1;
	size_t digit_count = len - name_len - 1;
	if (digit_count == 0 || digit_count > 2)
		return NULL;
	unsigned index = 0;
	for (size_t i = 0; i < digit_count; i++) {
		if (digits[i] < '0' || digits[i] > '9')
			return NULL;
		index = index * 10 + (unsigned)(digits[i] - '0');
	}
	if (index >= GPUCAP_LIMITS_DEVICES)
		return NULL;
	return memory ? &out->memory[index] : &out->sm[index];
}

static bool parse_line(const char *begin, const char *end, unsigned line, const char *path,
                       struct gpucap_limits_file *out)
{
	const char *hash = memchr(begin, '#', (size_t)(end - begin));
	if (hash)
		end = hash;
	trim(&begin, &end);
	if (begin == end)
		return true;
	const char *eq = memchr(begin, '=', (size_t)(end - begin));
	if (!eq) {
		set_error(out, "limits file %s:%u: no '=' in \"%.*s\"; %s", path, line, (int)(end - begin),
		          begin, LINE_FORMS);
		return false;
	}
	const char *key = begin, *key_end = eq, *value = eq + 1, *value_end = end;
	trim(&key, &key_end);
	trim(&value, &value_end);
	bool is_memory = false;
	struct gpucap_limits_entry *entry = entry_for(out, key, (size_t)(key_end - key), &is_memory);
	if (!entry) {
		set_error(out,
		          "limits file %s:%u: unknown setting \"%.*s\" (device indexes go from 0 to %d); %s",
		          path, line, (int)(key_end - key), key, GPUCAP_LIMITS_DEVICES - 1, LINE_FORMS);
		return false;
	}
	if (entry->set) {
		set_error(out, "limits file %s:%u: \"%.*s\" is already set on line %u; keep one of them",
		          path, line, (int)(key_end - key), key, entry->line);
		return false;
	}
	char text[128];
	size_t value_len = (size_t)(value_end - value);
	if (value_len == 0 || value_len >= sizeof(text)) {
		set_error(out, "limits file %s:%u: \"%.*s\" has %s value; %s", path, line,
		          (int)(key_end - key), key, value_len ? "an overlong" : "no", LINE_FORMS);
		return false;
	}
	memcpy(text, value, value_len);
	text[value_len] = '\0';
	if (is_memory) {
		uint64_t bytes = 0;
		if (strcmp(text, "unlimited") == 0) {
			bytes = GPUCAP_UNLIMITED;
		} else if (!gpucap_parse_size(text, &bytes)) {
			set_error(out, "limits file %s:%u: \"%s\" is not a size; expected %s, or unlimited",
			          path, line, text, GPUCAP_SIZE_FORMS);
			return false;
		} else if (bytes == 0) {
			set_error(
			    out,
			    "limits file %s:%u: a memory limit of 0 is ambiguous; write \"unlimited\" for "
			    "no cap, or hide the device with CUDA_VISIBLE_DEVICES",
			    path, line);
			return false;
		}
		entry->value = bytes >= GPUCAP_BYTES_MAX ? GPUCAP_UNLIMITED : bytes;
	} else {
		uint32_t percent;
		if (!gpucap_parse_percent(text, &percent)) {
			set_error(out, "limits file %s:%u: \"%s\" is not an SM limit; expected %s", path,
			          line, text, GPUCAP_PERCENT_FORMS);
			return false;
		}
		entry->value = percent == 100 ? 0 : percent;
	}
	entry->set = true;
	entry->line = line;
	return true;
}

bool gpucap_limits_file_parse(const char *text, size_t len, const char *path, struct gpucap_limits_file *out)
{
	if (memchr(text, '\0', len)) {
		set_error(out, "limits file %s holds a NUL byte: it is not a text file; rewrite it", path);
		return false;
	}
	const char *p = text, *end = text + len;
	unsigned line = 0;
	while (p < end) {
		line++;
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *line_end = nl ? nl : end;
		if (!parse_line(p, line_end, line, path, out))
			return false;
		p = nl ? nl + 1 : end;
	}
	out->state = GPUCAP_LIMITS_FILE_LOADED;
	return true;
}

void gpucap_limits_file_read(const char *path, const char *origin, struct gpucap_limits_file *out)
{
	reset(out, path, origin);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		int error = errno;
		if (error == ELOOP)
			set_error(out,
			          "limits file %s (from %s) is a symbolic link; it is not followed: put the "
			          "file itself there",
			          path, origin);
		else if (error == ENOENT)
			set_error(out, "limits file %s (from %s) does not exist; create it or unset %s", path,
			          origin, "GPUCAP_LIMITS_FILE");
		else
			set_error(out, "cannot open limits file %s (from %s): %s; make it readable", path,
			          origin, strerror(error));
		return;
	}
	struct stat st;
	if (gpucap_fstat(fd, &st) != 0) {
		set_error(out, "cannot inspect limits file %s: %s", path, strerror(errno));
	} else if (!S_ISREG(st.st_mode)) {
		set_error(out, "limits file %s (from %s) is not a regular file; put a plain file there", path,
		          origin);
	} else if (st.st_uid != 0) {
		set_error(out,
		          "limits file %s is owned by uid %u, not root, so it is not trusted; the node "
		          "agent must write it as root (chown root %s)",
		          path, (unsigned)st.st_uid, path);
	} else if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		set_error(out,
		          "limits file %s has mode %04o: writable by %s, so it is not trusted; chmod go-w %s",
		          path, (unsigned)(st.st_mode & 07777),
		          (st.st_mode & S_IWOTH) ? "everyone" : "its group", path);
	} else if (st.st_size > GPUCAP_LIMITS_FILE_MAX_BYTES) {
		set_error(out, "limits file %s is %lld bytes, more than the %d a limits file may have", path,
		          (long long)st.st_size, GPUCAP_LIMITS_FILE_MAX_BYTES);
	} else {
		static char text[GPUCAP_LIMITS_FILE_MAX_BYTES + 1];
		size_t len = 0;
		for (;;) {
			ssize_t got = read(fd, text + len, sizeof(text) - len);
			if (got < 0 && errno == EINTR)
				continue;
			if (got < 0) {
				set_error(out, "cannot read limits file %s: %s", path, strerror(errno));
				break;
			}
			if (got == 0)
				break;
			len += (size_t)got;
			if (len == sizeof(text)) {
				set_error(out, "limits file %s grew past %d bytes while read", path,
				          GPUCAP_LIMITS_FILE_MAX_BYTES);
				break;
			}
		}
		if (out->state != GPUCAP_LIMITS_FILE_REFUSED)
			gpucap_limits_file_parse(text, len, path, out);
	}
	close(fd);
}

void gpucap_limits_file_load(const char *override, struct gpucap_limits_file *out)
{
	struct stat st;
	bool default_exists = gpucap_lstat(GPUCAP_LIMITS_FILE_DEFAULT, &st) == 0 || errno != ENOENT;
	bool have_override = override && override[0];
	if (default_exists) {
		gpucap_limits_file_read(GPUCAP_LIMITS_FILE_DEFAULT, "default", out);
		out->override_ignored = have_override && strcmp(override, GPUCAP_LIMITS_FILE_DEFAULT) != 0;
		return;
	}
	if (have_override) {
		gpucap_limits_file_read(override, "GPUCAP_LIMITS_FILE", out);
		return;
	}
	reset(out, GPUCAP_LIMITS_FILE_DEFAULT, "default");
}

/* ---- Precedence ---------------------------------------------------------- */

struct env_limit {
	int state; /* 0 unset, 1 valid, -1 malformed */
	uint64_t bytes;
	char name[64];
};

__attribute__((format(printf, 4, 5))) static void say(gpucap_limits_report_fn report, void *ctx,
                                                      enum gpucap_limits_level level, const char *fmt, ...)
{
	if (!report)
		return;
	char line[1024];
	va_list args;
	va_start(args, fmt);
	vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	report(ctx, level, line);
}

static void read_env_limit(const char *name, size_t name_len, const char *value, struct env_limit *out,
                           gpucap_limits_report_fn report, void *ctx)
{
	snprintf(out->name, sizeof(out->name), "%.*s", (int)name_len, name);
	uint64_t bytes;
	if (!gpucap_parse_size(value, &bytes)) {
		say(report, ctx, GPUCAP_LIMITS_ERROR,
		    "%s=\"%s\" is not valid; expected %s; failing closed: the affected devices are capped at "
		    "0 bytes",
		    out->name, value, GPUCAP_SIZE_FORMS);
		out->state = -1;
		return;
	}
	out->bytes = (bytes == 0 || bytes >= GPUCAP_BYTES_MAX) ? GPUCAP_UNLIMITED : bytes;
	out->state = 1;
}

/* Whether entry is "NAME=..." exactly; the value in *value. */
static bool env_is(const char *entry, const char *name, const char **value)
{
	size_t len = strlen(name);
	if (strncmp(entry, name, len) != 0 || entry[len] != '=')
		return false;
	*value = entry + len + 1;
	return true;
}

/* Per-device variables: PREFIX<i>=value with i a decimal CUDA ordinal. */
static void scan_device_limits(char *const *env, const char *prefix, struct env_limit *limits,
                               gpucap_limits_report_fn report, void *ctx)
{
	size_t prefix_len = strlen(prefix);
	for (char *const *e = env; e && *e; e++) {
		const char *entry = *e;
		if (strncmp(entry, prefix, prefix_len) != 0)
			continue;
		const char *p = entry + prefix_len;
		const char *eq = strchr(p, '=');
		if (!eq)
			continue;
		size_t name_len = (size_t)(eq - entry);
		unsigned long index = 0;
		bool digits = eq != p; /* an empty suffix is no ordinal: warned about below */
		for (const char *q = p; q < eq; q++) {
			if (*q < '0' || *q > '9') {
				digits = false;
				break;
			}
			index = index * 10 + (unsigned long)(*q - '0');
			if (index >= GPUCAP_LIMITS_DEVICES)
				break;
		}
		if (!digits || index >= GPUCAP_LIMITS_DEVICES) {
			say(report, ctx, GPUCAP_LIMITS_WARN,
			    "%.*s is ignored: the suffix must be a CUDA device index from 0 to %d",
			    (int)(name_len < 128 ? name_len : 128), entry, GPUCAP_LIMITS_DEVICES - 1);
			continue;
		}
		read_env_limit(entry, name_len, eq + 1, &limits[index], report, ctx);
	}
}

void gpucap_limits_resolve(char *const *env, const struct gpucap_limits_file *file,
                           struct gpucap_limit_choice out[GPUCAP_LIMITS_DEVICES],
                           gpucap_limits_report_fn report, void *ctx)
{
	static struct env_limit gpucap_dev[GPUCAP_LIMITS_DEVICES], hami_dev[GPUCAP_LIMITS_DEVICES];
	memset(gpucap_dev, 0, sizeof(gpucap_dev));
	memset(hami_dev, 0, sizeof(hami_dev));
	scan_device_limits(env, "GPUCAP_MEMORY_LIMIT_", gpucap_dev, report, ctx);
	scan_device_limits(env, "CUDA_DEVICE_MEMORY_LIMIT_", hami_dev, report, ctx);
	struct env_limit gpucap_all, hami_all;
	memset(&gpucap_all, 0, sizeof(gpucap_all));
	memset(&hami_all, 0, sizeof(hami_all));
	for (char *const *e = env; e && *e; e++) {
		const char *value;
		/* The first occurrence counts, as with getenv. */
		if (!gpucap_all.name[0] && env_is(*e, "GPUCAP_MEMORY_LIMIT", &value))
			read_env_limit("GPUCAP_MEMORY_LIMIT", 19, value, &gpucap_all, report, ctx);
		else if (!hami_all.name[0] && env_is(*e, "CUDA_DEVICE_MEMORY_LIMIT", &value))
			read_env_limit("CUDA_DEVICE_MEMORY_LIMIT", 24, value, &hami_all, report, ctx);
	}

	bool file_loaded = file && file->state == GPUCAP_LIMITS_FILE_LOADED;
	bool file_refused = file && file->state == GPUCAP_LIMITS_FILE_REFUSED;
	if (file_refused)
		say(report, ctx, GPUCAP_LIMITS_ERROR, "%s; failing closed: every device is capped at 0 bytes",
		    file->error);
	else if (file && file->override_ignored)
		say(report, ctx, GPUCAP_LIMITS_WARN,
		    "GPUCAP_LIMITS_FILE is ignored: the node's limits file %s exists and always applies",
		    GPUCAP_LIMITS_FILE_DEFAULT);

	for (int i = 0; i < GPUCAP_LIMITS_DEVICES; i++) {
		struct gpucap_limit_choice *c = &out[i];
		memset(c, 0, sizeof(*c));
		c->limit_bytes = GPUCAP_UNLIMITED;
		c->file_cap_bytes = GPUCAP_UNLIMITED;
		c->env_bytes = GPUCAP_UNLIMITED;

		/* The environment: the first set wins; any malformed one that
		 * names this device closes it, even if another would win. */
		const struct env_limit *order[] = {&gpucap_dev[i], &hami_dev[i], &gpucap_all, &hami_all};
		bool chosen = false;
		for (size_t k = 0; k < 4; k++) {
			if (order[k]->state < 0 && !c->fail_closed) {
				c->fail_closed = true;
				snprintf(c->why_closed, sizeof(c->why_closed), "%s is malformed",
				         order[k]->name);
			}
			if (order[k]->state > 0 && !chosen) {
				c->env_bytes = order[k]->bytes;
				snprintf(c->env_source, sizeof(c->env_source), "%s", order[k]->name);
				chosen = true;
			}
		}

		/* The file: per device beats global; it caps the environment. */
		if (file_loaded) {
			const struct gpucap_limits_entry *m = file->memory[i].set    ? &file->memory[i]
			                                      : file->memory_all.set ? &file->memory_all
			                                                             : NULL;
			if (m) {
				c->file_cap_bytes = m->value;
				c->file_line = m->line;
				if (file->memory[i].set)
					snprintf(c->file_source, sizeof(c->file_source), "memory.%d", i);
				else
					snprintf(c->file_source, sizeof(c->file_source), "memory");
			}
			const struct gpucap_limits_entry *s = file->sm[i].set    ? &file->sm[i]
			                                      : file->sm_all.set ? &file->sm_all
			                                                         : NULL;
			if (s) {
				c->sm_limit = (uint32_t)s->value;
				if (file->sm[i].set)
					snprintf(c->sm_source, sizeof(c->sm_source), "sm.%d", i);
				else
					snprintf(c->sm_source, sizeof(c->sm_source), "sm");
			}
		}
		c->limit_bytes = c->env_bytes < c->file_cap_bytes ? c->env_bytes : c->file_cap_bytes;

		if (file_refused && !c->fail_closed) {
			c->fail_closed = true;
			snprintf(c->why_closed, sizeof(c->why_closed), "the limits file is refused");
		}
		if (c->fail_closed)
			c->limit_bytes = 0;
	}
}
