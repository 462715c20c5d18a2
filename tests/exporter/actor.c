/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in for a limited process, for the exporter tests: attaches to a
 * region, claims a slot under a given process name, registers devices and
 * reserves known byte counts, says "ready SLOT" and waits to be killed.
 *
 * usage: exporter_actor PATH COMM STEP...
 *   device UUID LIMIT SM   register UUID with LIMIT bytes ("unlimited" for
 *                          none) and SM percent (0: none); later reserves
 *                          charge it
 *   reserve KIND BYTES     KIND: context, module, data or driver
 *   launch UNIX_NS         record UNIX_NS as the time of the last kernel
 *                          launch (as the library does on each launch)
 *   share DELIVERED ASKED  take the device's controller lease for a minute
 *                          and publish, as the library's controller does,
 *                          the SM share delivered and the share the work
 *                          asked for (both in ppm)
 */
#define _POSIX_C_SOURCE 200809L

#include <gpucap/region.h>

#include "actor_support.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool parse_u64(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-')
		return false;
	*out = value;
	return true;
}

static int run_steps(gpucap_region *region, int argc, char **argv)
{
	int device = -1;
	int registered[64];
	int registered_count = 0;
	for (int i = 3; i < argc;) {
		if (strcmp(argv[i], "device") == 0 && i + 3 < argc) {
			uint64_t limit = GPUCAP_UNLIMITED, sm = 0;
			if (strcmp(argv[i + 2], "unlimited") != 0 && !parse_u64(argv[i + 2], &limit))
				return actor_fail("bad limit", argv[i + 2]);
			if (!parse_u64(argv[i + 3], &sm) || sm > 100)
				return actor_fail("bad sm limit", argv[i + 3]);
			device = gpucap_region_device_register(region, argv[i + 1], limit, (uint32_t)sm);
			if (device < 0)
				return actor_fail("device_register",
				                  gpucap_status_text((gpucap_status)-device));
			if (registered_count < 64)
				registered[registered_count++] = device;
			i += 4;
		} else if (strcmp(argv[i], "reserve") == 0 && i + 2 < argc) {
			int rc = actor_reserve(region, device, argv[i + 1], argv[i + 2], parse_u64);
			if (rc != 0)
				return rc;
			i += 3;
		} else if (strcmp(argv[i], "launch") == 0 && i + 1 < argc) {
			uint64_t unix_ns;
			if (!parse_u64(argv[i + 1], &unix_ns))
				return actor_fail("bad launch time", argv[i + 1]);
			gpucap_region_note_launch(region, unix_ns);
			i += 2;
		} else if (strcmp(argv[i], "share") == 0 && i + 2 < argc) {
			int rc = actor_publish_share(region, device, argv[i + 1], argv[i + 2],
			                             GPUCAP_SM_SOURCE_GATE);
			if (rc != 0)
				return rc;
			i += 3;
		} else {
			return actor_fail("bad step", argv[i]);
		}
	}
	/* Hand back the idle per-thread reserve: charged then equals in use and
	 * every figure is predictable. */
	for (int i = 0; i < registered_count; i++)
		gpucap_region_return_credit(region, registered[i]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return actor_fail(
		    "usage",
		    "exporter_actor PATH COMM [device UUID LIMIT SM] [reserve KIND BYTES] [launch UNIX_NS] [share DELIVERED ASKED]...");
	gpucap_region *region = actor_attach_claim(argv[1], argv[2]);
	if (!region)
		return 1;
	int rc = run_steps(region, argc, argv);
	if (rc != 0)
		return rc;
	actor_ready(region);
}
