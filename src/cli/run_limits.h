/* SPDX-License-Identifier: Apache-2.0 */
/* What "gpucap run" checks before it starts the command: whether the region
 * the command will join already holds other limits than the ones asked for.
 * A device's entry in the region rules every process that uses it (the
 * first process registered it; "gpucap set" changes it), so a -m or --sm
 * that differs from it has no effect there, and the user is told so. */
#ifndef GPUCAP_CLI_RUN_LIMITS_H
#define GPUCAP_CLI_RUN_LIMITS_H

#include <stdbool.h>
#include <stdint.h>

struct run_limits_request {
	const char *memory; /* as typed; NULL: not asked */
	uint64_t memory_bytes;
	const char *sm;      /* as typed; NULL: not asked */
	uint32_t sm_percent; /* 0: no SM cap */
};

/* For each registered device of the region at path whose limit differs from
 * the request, print one warning line on stderr naming the limit that holds
 * and the "gpucap set" command that changes it. A missing or unreadable
 * region prints nothing: the command creates it, or the library reports it.
 * Returns how many lines were printed. */
unsigned run_warn_region_limits(const char *path, const char *origin,
                                const struct run_limits_request *request);

#endif
