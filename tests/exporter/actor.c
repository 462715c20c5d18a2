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

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int fail(const char *what, const char *detail)
{
	fprintf(stderr, "exporter_actor: %s: %s\n", what, detail);
	return 1;
}

static int parse_u64(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno || end == text || *end || text[0] == '-')
		return 0;
	*out = value;
	return 1;
}

/* Longer than any exporter test runs: the share stays fresh throughout. */
#define SHARE_LEASE_NS UINT64_C(60000000000)

static int publish_share(gpucap_region *region, int device, const char *delivered_text,
                         const char *asked_text)
{
	uint64_t delivered, asked;
	if (!parse_u64(delivered_text, &delivered) || delivered > UINT32_MAX)
		return fail("bad delivered share", delivered_text);
	if (!parse_u64(asked_text, &asked) || asked > UINT32_MAX)
		return fail("bad asked share", asked_text);
	if (device < 0)
		return fail("share", "no device step before it");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	if (!gpucap_region_sm_lease(region, device, now_ns, SHARE_LEASE_NS))
		return fail("share", "another slot holds the device's controller lease");
	/* Duty 0: unset, so the views show the cap as the duty. */
	gpucap_region_sm_publish(region, device, 0, (uint32_t)delivered, GPUCAP_SM_SOURCE_GATE, 0, 0);
	gpucap_region_sm_publish_asked(region, device, (uint32_t)asked);
	return 0;
}

static int run_steps(gpucap_region *region, int argc, char **argv)
{
	static const char *const kinds[GPUCAP_KIND_COUNT] = {"context", "module", "data", "driver"};
	int device = -1;
	int registered[64];
	int registered_count = 0;
	for (int i = 3; i < argc;) {
		if (strcmp(argv[i], "device") == 0 && i + 3 < argc) {
			uint64_t limit = GPUCAP_UNLIMITED, sm = 0;
			if (strcmp(argv[i + 2], "unlimited") != 0 && !parse_u64(argv[i + 2], &limit))
				return fail("bad limit", argv[i + 2]);
			if (!parse_u64(argv[i + 3], &sm) || sm > 100)
				return fail("bad sm limit", argv[i + 3]);
			device = gpucap_region_device_register(region, argv[i + 1], limit, (uint32_t)sm);
			if (device < 0)
				return fail("device_register", gpucap_status_text((gpucap_status)-device));
			if (registered_count < 64)
				registered[registered_count++] = device;
			i += 4;
		} else if (strcmp(argv[i], "reserve") == 0 && i + 2 < argc) {
			int kind = -1;
			for (int k = 0; k < GPUCAP_KIND_COUNT; k++) {
				if (strcmp(argv[i + 1], kinds[k]) == 0)
					kind = k;
			}
			uint64_t bytes;
			if (kind < 0)
				return fail("bad kind", argv[i + 1]);
			if (!parse_u64(argv[i + 2], &bytes))
				return fail("bad size", argv[i + 2]);
			if (device < 0)
				return fail("reserve", "no device step before it");
			gpucap_status status = gpucap_reserve(region, device, (gpucap_kind)kind, bytes);
			if (status != GPUCAP_OK)
				return fail("reserve", gpucap_status_text(status));
			i += 3;
		} else if (strcmp(argv[i], "launch") == 0 && i + 1 < argc) {
			uint64_t unix_ns;
			if (!parse_u64(argv[i + 1], &unix_ns))
				return fail("bad launch time", argv[i + 1]);
			gpucap_region_note_launch(region, unix_ns);
			i += 2;
		} else if (strcmp(argv[i], "share") == 0 && i + 2 < argc) {
			int rc = publish_share(region, device, argv[i + 1], argv[i + 2]);
			if (rc != 0)
				return rc;
			i += 3;
		} else {
			return fail("bad step", argv[i]);
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
		return fail(
		    "usage",
		    "exporter_actor PATH COMM [device UUID LIMIT SM] [reserve KIND BYTES] [launch UNIX_NS] [share DELIVERED ASKED]...");
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
	id.comm = argv[2];
	status = gpucap_region_claim_slot(region, &id, err, sizeof(err));
	if (status != GPUCAP_OK)
		return fail("claim_slot", err[0] ? err : gpucap_status_text(status));
	int rc = run_steps(region, argc, argv);
	if (rc != 0)
		return rc;
	printf("ready %d\n", gpucap_region_slot_index(region));
	fflush(stdout);
	/* Never detach: a kill leaves a dead slot, as a crash would. */
	for (;;)
		pause();
}
