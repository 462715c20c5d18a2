/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node's limits file: picking it, its trust checks and its lines
 * (docs/configuration.md). What it means next to the environment is
 * policy.h's business. No state, no logging: problems are in out->error.
 */
#ifndef GPUCAP_LIMITS_FILE_H
#define GPUCAP_LIMITS_FILE_H

#include "gpucap/region.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GPUCAP_LIMITS_FILE_DEFAULT "/etc/gpucap/limits.conf"
#define GPUCAP_LIMITS_DEVICES      GPUCAP_MAX_DEVICES
/* A limits file larger than this is refused (it is a handful of lines). */
#define GPUCAP_LIMITS_FILE_MAX_BYTES 65536

enum gpucap_limits_file_state {
	GPUCAP_LIMITS_FILE_ABSENT = 0,   /* no file: the environment alone decides */
	GPUCAP_LIMITS_FILE_LOADED = 1,   /* read and valid */
	GPUCAP_LIMITS_FILE_REFUSED = -1, /* unsafe, missing or malformed: fail closed */
};

/* One value of the file: set or not, and the line that set it. */
struct gpucap_limits_entry {
	bool set;
	unsigned line;
	uint64_t value; /* bytes (GPUCAP_UNLIMITED: none) or percent */
};

struct gpucap_limits_file {
	enum gpucap_limits_file_state state;
	char path[4096];
	/* "GPUCAP_LIMITS_FILE" or "default". */
	const char *origin;
	/* Set when GPUCAP_LIMITS_FILE named another file and was ignored because
	 * the default file exists. */
	bool override_ignored;
	struct gpucap_limits_entry memory_all;
	struct gpucap_limits_entry memory[GPUCAP_LIMITS_DEVICES];
	struct gpucap_limits_entry sm_all;
	struct gpucap_limits_entry sm[GPUCAP_LIMITS_DEVICES];
	/* "region = PATH": the one region the container's processes may use
	 * (absolute; "" when the file has no such line). */
	char region[4096];
	unsigned region_line;
	/* REFUSED: one line naming the file (and line), the problem and the fix. */
	char error[1024];
};

/*
 * Pick the limits file and read it. override is the value of
 * GPUCAP_LIMITS_FILE (NULL or "" when unset). Rules:
 *   - the default file, when it exists, is the limits file; an override
 *     naming another path is then ignored (override_ignored), so that a
 *     variable cannot steer a process away from the node's limits;
 *   - otherwise the override, if set, is the limits file, and must exist;
 *   - otherwise there is no limits file.
 * The file must be a regular file owned by root and not writable by group or
 * others; it is opened with O_NOFOLLOW.
 */
void gpucap_limits_file_load(const char *override, struct gpucap_limits_file *out);

/* Read and check one file (origin as given). */
void gpucap_limits_file_read(const char *path, const char *origin, struct gpucap_limits_file *out);

/* Parse the text of a limits file (no checks on the file itself). Returns
 * false with out->error set on the first malformed line. */
bool gpucap_limits_file_parse(const char *text, size_t len, const char *path, struct gpucap_limits_file *out);

#endif
