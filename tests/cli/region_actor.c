/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A stand-in for a limited process, for the CLI tests: it attaches to a
 * region, claims a slot, charges memory, says "ready" and then waits to be
 * killed, so tests can show live processes and (after SIGKILL) dead ones.
 *
 * usage: region_actor PATH STEP...
 *   device UUID LIMIT     register UUID (LIMIT: a size or "unlimited") and
 *                         make it the device later reserves charge
 *   reserve KIND BYTES    KIND: context, module or data
 *   share DELIVERED ASKED take the device's controller lease for a minute
 *                         and publish, as the library's controller does, the
 *                         SM share delivered and the share the work asked
 *                         for (both in ppm), measured by the gates
 *   share-by-launches DELIVERED ASKED
 *                         the same, measured by launches beside a neighbour
 * Prints "ready SLOT" on stdout when every step succeeded; prints one error
 * line and exits 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <gpucap/region.h>

#include "actor_support.h"
#include "parse.h"

#include <string.h>

static int run_steps(gpucap_region *region, int argc, char **argv)
{
	int device = -1;
	int registered[64];
	int registered_count = 0;
	for (int i = 2; i < argc;) {
		if (strcmp(argv[i], "device") == 0 && i + 2 < argc) {
			uint64_t limit = GPUCAP_UNLIMITED;
			if (strcmp(argv[i + 2], "unlimited") != 0 && !gpucap_parse_size(argv[i + 2], &limit))
				return actor_fail("bad limit", argv[i + 2]);
			device = gpucap_region_device_register(region, argv[i + 1], limit, 0);
			if (device < 0)
				return actor_fail("device_register",
				                  gpucap_status_text((gpucap_status)-device));
			if (registered_count < 64)
				registered[registered_count++] = device;
			i += 3;
		} else if (strcmp(argv[i], "reserve") == 0 && i + 2 < argc) {
			int rc = actor_reserve(region, device, argv[i + 1], argv[i + 2], gpucap_parse_size);
			if (rc != 0)
				return rc;
			i += 3;
		} else if ((strcmp(argv[i], "share") == 0 || strcmp(argv[i], "share-by-launches") == 0) &&
		           i + 2 < argc) {
			gpucap_sm_source source =
			    strcmp(argv[i], "share") == 0 ? GPUCAP_SM_SOURCE_GATE : GPUCAP_SM_SOURCE_LAUNCHES;
			int rc = actor_publish_share(region, device, argv[i + 1], argv[i + 2], source);
			if (rc != 0)
				return rc;
			i += 3;
		} else {
			return actor_fail("bad step", argv[i]);
		}
	}
	/* Hand back the idle per-thread reserve so that charged equals in use
	 * and the tests can predict every number exactly. */
	for (int i = 0; i < registered_count; i++)
		gpucap_region_return_credit(region, registered[i]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return actor_fail(
		    "usage",
		    "region_actor PATH [device UUID LIMIT] [reserve KIND BYTES] [share DELIVERED ASKED]...");
	gpucap_region *region = actor_attach_claim(argv[1], NULL);
	if (!region)
		return 1;
	int rc = run_steps(region, argc, argv);
	if (rc != 0)
		return rc;
	actor_ready(region);
}
