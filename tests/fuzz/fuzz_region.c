/* SPDX-License-Identifier: Apache-2.0 */
/* The region file's validation and reading: attach an arbitrary file image
 * as an observer (as status, top and the exporter do) and copy it. Nothing
 * in the file may make this crash, read out of bounds or overflow. */
#include "fuzz_file.h"

#include <gpucap/region.h>

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *path = fuzz_write_file("region", data, size);
	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = path;
	options.observer = true;
	options.existing_only = true;
	options.init_timeout_ms = 1; /* an all-zero header waits for an initialiser */
	gpucap_region *region = NULL;
	char err[512];
	if (gpucap_region_attach(&options, &region, err, sizeof(err)) != GPUCAP_OK)
		return 0;
	struct gpucap_snapshot *snapshot = gpucap_region_snapshot(region);
	gpucap_snapshot_free(snapshot);
	gpucap_region_detach(region);
	return 0;
}
