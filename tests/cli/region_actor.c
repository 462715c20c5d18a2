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
 *                         for (both in ppm)
 * Prints "ready SLOT" on stdout when every step succeeded; prints one error
 * line and exits 1 otherwise.
 */
#define _POSIX_C_SOURCE 200809L

#include <gpucap/region.h>

#include "parse.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what, const char *detail)
{
	fprintf(stderr, "region_actor: %s: %s\n", what, detail);
	return 1;
}

static bool parse_kind(const char *text, gpucap_kind *kind)
{
	static const char *const names[GPUCAP_KIND_COUNT] = {"context", "module", "data", "driver"};
	for (int k = 0; k < GPUCAP_KIND_COUNT; k++) {
		if (strcmp(text, names[k]) == 0) {
			*kind = (gpucap_kind)k;
			return true;
		}
	}
	return false;
}

/* A whole number that fits the 32-bit ppm words; out-of-range values are
 * passed on, so that the region's clamping shows. */
static bool parse_ppm(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-' || value > UINT32_MAX)
		return false;
	*out = value;
	return true;
}

/* Longer than any CLI test runs: the share stays fresh throughout. */
#define SHARE_LEASE_NS UINT64_C(60000000000)

static int publish_share(gpucap_region *region, int device, const char *delivered_text,
                         const char *asked_text)
{
	uint64_t delivered, asked;
	if (!parse_ppm(delivered_text, &delivered))
		return fail("bad delivered share", delivered_text);
	if (!parse_ppm(asked_text, &asked))
		return fail("bad asked share", asked_text);
	if (device < 0)
		return fail("share", "no device step before it");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	if (!gpucap_region_sm_lease(region, device, now_ns, SHARE_LEASE_NS))
		return fail("share", "another slot holds the device's controller lease");
	/* Duty 0: unset, so the view shows the cap as the duty. */
	gpucap_region_sm_publish(region, device, 0, (uint32_t)delivered, GPUCAP_SM_SOURCE_GATE, 0, 0);
	gpucap_region_sm_publish_asked(region, device, (uint32_t)asked);
	return 0;
}

static int run_steps(gpucap_region *region, int argc, char **argv)
{
	int device = -1;
	int registered[64];
	int registered_count = 0;
	for (int i = 2; i < argc;) {
		if (strcmp(argv[i], "device") == 0 && i + 2 < argc) {
			uint64_t limit = GPUCAP_UNLIMITED;
			if (strcmp(argv[i + 2], "unlimited") != 0 && !gpucap_parse_size(argv[i + 2], &limit))
				return fail("bad limit", argv[i + 2]);
			device = gpucap_region_device_register(region, argv[i + 1], limit, 0);
			if (device < 0)
				return fail("device_register", gpucap_status_text((gpucap_status)-device));
			if (registered_count < 64)
				registered[registered_count++] = device;
			i += 3;
		} else if (strcmp(argv[i], "reserve") == 0 && i + 2 < argc) {
			gpucap_kind kind;
			uint64_t bytes;
			if (!parse_kind(argv[i + 1], &kind))
				return fail("bad kind", argv[i + 1]);
			if (!gpucap_parse_size(argv[i + 2], &bytes))
				return fail("bad size", argv[i + 2]);
			if (device < 0)
				return fail("reserve", "no device step before it");
			gpucap_status status = gpucap_reserve(region, device, kind, bytes);
			if (status != GPUCAP_OK)
				return fail("reserve", gpucap_status_text(status));
			i += 3;
		} else if (strcmp(argv[i], "share") == 0 && i + 2 < argc) {
			int rc = publish_share(region, device, argv[i + 1], argv[i + 2]);
			if (rc != 0)
				return rc;
			i += 3;
		} else {
			return fail("bad step", argv[i]);
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
		return fail(
		    "usage",
		    "region_actor PATH [device UUID LIMIT] [reserve KIND BYTES] [share DELIVERED ASKED]...");
	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = argv[1];
	char err[1024] = "";
	gpucap_region *region;
	gpucap_status status = gpucap_region_attach(&options, &region, err, sizeof(err));
	if (status != GPUCAP_OK)
		return fail("attach", err[0] ? err : gpucap_status_text(status));
	struct gpucap_slot_identity id;
	memset(&id, 0, sizeof(id));
	id.host_pid = (int32_t)getpid();
	id.host_pid_source = GPUCAP_HOST_PID_SAME_NAMESPACE;
	status = gpucap_region_claim_slot(region, &id, err, sizeof(err));
	if (status != GPUCAP_OK)
		return fail("claim_slot", err[0] ? err : gpucap_status_text(status));
	int rc = run_steps(region, argc, argv);
	if (rc != 0)
		return rc;
	printf("ready %d\n", gpucap_region_slot_index(region));
	fflush(stdout);
	/* Wait to be killed; never detach, so a SIGKILL leaves a dead slot. */
	for (;;)
		pause();
}
