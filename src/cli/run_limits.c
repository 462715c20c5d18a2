#define _POSIX_C_SOURCE 200809L

#include "run_limits.h"

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
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
		return 0;
	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = path;
	options.observer = true;
	options.existing_only = true;
	gpucap_region *region = NULL;
	char err[512];
	if (gpucap_region_attach(&options, &region, err, sizeof(err)) != GPUCAP_OK)
		return 0;
	struct gpucap_snapshot *snapshot = gpucap_region_snapshot(region);
	gpucap_region_detach(region);
	if (!snapshot)
		return 0;
	unsigned printed = 0;
	for (uint32_t i = 0; i < snapshot->device_count; i++)
		printed += warn_device(path, origin, &snapshot->devices[i], request);
	gpucap_snapshot_free(snapshot);
	return printed;
}
