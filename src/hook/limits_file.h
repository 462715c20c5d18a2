/*
 * Where each device's limits come from: the node's limits file and the
 * environment, and the precedence between them (docs/configuration.md).
 *
 * Shared by libgpucap.so (src/hook/config.c) and "gpucap doctor", so that
 * what doctor explains is exactly what the library does. No state, no
 * logging: messages go to the caller's report function.
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

/* ---- Precedence ---------------------------------------------------------- */

/* What one CUDA ordinal gets. */
struct gpucap_limit_choice {
	uint64_t limit_bytes; /* effective limit; GPUCAP_UNLIMITED: none; 0 when fail_closed */
	bool fail_closed;
	/* The limits file's memory cap for this ordinal (GPUCAP_UNLIMITED: none).
	 * The library enforces it on every reservation, whatever the region's
	 * limit says. */
	uint64_t file_cap_bytes;
	uint32_t sm_limit; /* percent; 0: none */
	/* Explanations, for gpucap doctor. */
	char env_source[64];  /* variable that gave the environment's limit; "" none */
	uint64_t env_bytes;   /* its value (GPUCAP_UNLIMITED: none) */
	char file_source[32]; /* "memory.3" or "memory"; "" none */
	unsigned file_line;   /* line of file_source */
	char sm_source[32];   /* "sm.3" or "sm"; "" none */
	char why_closed[160]; /* fail_closed: which setting caused it */
};

enum gpucap_limits_level { GPUCAP_LIMITS_ERROR = 0, GPUCAP_LIMITS_WARN = 1 };

/* Receives each problem as one line, without prefix. */
typedef void (*gpucap_limits_report_fn)(void *ctx, enum gpucap_limits_level level, const char *message);

/*
 * Decide every ordinal's limits from env (a NULL-terminated "NAME=value"
 * array such as environ) and file (NULL: no file). Precedence for the
 * environment, first set wins: GPUCAP_MEMORY_LIMIT_<i>,
 * CUDA_DEVICE_MEMORY_LIMIT_<i>, GPUCAP_MEMORY_LIMIT, CUDA_DEVICE_MEMORY_LIMIT.
 * A loaded file beats the environment: the effective limit is the smaller of
 * the file's (memory.<i>, else memory) and the environment's, so the
 * environment can only lower it. A refused file or a malformed variable
 * naming the ordinal fails it closed.
 */
void gpucap_limits_resolve(char *const *env, const struct gpucap_limits_file *file,
                           struct gpucap_limit_choice out[GPUCAP_LIMITS_DEVICES],
                           gpucap_limits_report_fn report, void *ctx);

#endif
