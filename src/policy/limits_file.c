/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
/* The limits file (limits_file.h). */
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

#define LINE_FORMS                                                                                           \
	"expected \"memory = 8g\", \"memory.<i> = 4g\", \"sm = 50\", \"sm.<i> = 30\" or \"region = /path\""

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

/* "region = /absolute/path": the region the container's processes must use. */
static bool parse_region(const char *key, const char *value, const char *value_end, unsigned line,
                         const char *path, struct gpucap_limits_file *out)
{
	size_t len = (size_t)(value_end - value);
	(void)key;
	if (out->region_line) {
		set_error(out, "limits file %s:%u: \"region\" is already set on line %u; keep one of them",
		          path, line, out->region_line);
		return false;
	}
	if (len == 0 || value[0] != '/' || len >= sizeof(out->region)) {
		set_error(out,
		          "limits file %s:%u: \"region\" must be an absolute path of fewer than %zu bytes",
		          path, line, sizeof(out->region));
		return false;
	}
	memcpy(out->region, value, len);
	out->region[len] = '\0';
	out->region_line = line;
	return true;
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
	if (key_end - key == 6 && strncmp(key, "region", 6) == 0)
		return parse_region(key, value, value_end, line, path, out);
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
			    "limits file %s:%u: a memory limit of 0 is ambiguous; write \"unlimited\" for no cap, or hide the device with CUDA_VISIBLE_DEVICES",
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
			set_error(
			    out,
			    "limits file %s (from %s) is a symbolic link; it is not followed: put the file itself there",
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
		set_error(
		    out,
		    "limits file %s is owned by uid %u, not root, so it is not trusted; the node agent must write it as root (chown root %s)",
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
