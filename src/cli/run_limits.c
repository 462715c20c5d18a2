/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "run_limits.h"

#include <region_reader.h>

#include "format.h"
#include "utf8.h"

#include <gpucap/region.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* The region's SM limit as a percent cap, 0 for none. */
static uint32_t region_sm_cap(uint32_t sm_limit)
{
	return sm_limit > 0 && sm_limit < 100 ? sm_limit : 0;
}

static void format_sm(uint32_t percent, char *buf, size_t len)
{
	if (percent)
		snprintf(buf, len, "an SM cap of %u%%", (unsigned)percent);
	else
		snprintf(buf, len, "no SM cap");
}

static unsigned warn_device(const char *path, const char *origin, const struct gpucap_device_view *d,
                            const struct run_limits_request *request)
{
	char uuid[GPUCAP_UUID_MAX + 1];
	utf8_printable(d->uuid, GPUCAP_UUID_MAX, uuid, sizeof(uuid));
	unsigned printed = 0;
	if (request->memory && d->limit_bytes != request->memory_bytes) {
		char held[CLI_CELL_MAX];
		cli_format_limit(d->limit_bytes, held, sizeof(held));
		fprintf(
		    stderr,
		    "gpucap run: warning: region %s (path from %s) already caps device %d (%s) at %s, which holds over -m %s; change it with: gpucap set --memory %s --device %d --file %s\n",
		    path, origin, d->index, uuid, held, request->memory, request->memory, d->index, path);
		printed++;
	}
	uint32_t held_sm = region_sm_cap(d->sm_limit);
	if (request->sm && held_sm != request->sm_percent) {
		char held[32];
		format_sm(held_sm, held, sizeof(held));
		fprintf(
		    stderr,
		    "gpucap run: warning: region %s (path from %s) already gives device %d (%s) %s, which holds over --sm %s; change it with: gpucap set --sm %s --device %d --file %s\n",
		    path, origin, d->index, uuid, held, request->sm, request->sm, d->index, path);
		printed++;
	}
	return printed;
}

unsigned run_warn_region_limits(const char *path, const char *origin,
                                const struct run_limits_request *request)
{
	if (!request->memory && !request->sm)
		return 0;
	/* A region a tenant can write is read as the node's tools read one: no
	 * FIFO opened, one link, a truncation fails the read, not run. */
	struct gpucap_snapshot *snapshot = NULL;
	char err[512];
	if (reader_read(path, 0, &snapshot, err, sizeof(err)) != READER_OK)
		return 0;
	unsigned printed = 0;
	for (uint32_t i = 0; i < snapshot->device_count; i++)
		printed += warn_device(path, origin, &snapshot->devices[i], request);
	gpucap_snapshot_free(snapshot);
	return printed;
}
