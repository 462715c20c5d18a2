/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "actor_support.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int actor_fail(const char *what, const char *detail)
{
	fprintf(stderr, "%s: %s: %s\n", program_invocation_short_name, what, detail);
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

int actor_reserve(gpucap_region *region, int device, const char *kind_text, const char *bytes_text,
                  bool (*parse_bytes)(const char *, uint64_t *))
{
	gpucap_kind kind;
	uint64_t bytes;
	if (!parse_kind(kind_text, &kind))
		return actor_fail("bad kind", kind_text);
	if (!parse_bytes(bytes_text, &bytes))
		return actor_fail("bad size", bytes_text);
	if (device < 0)
		return actor_fail("reserve", "no device step before it");
	gpucap_status status = gpucap_reserve(region, device, kind, bytes);
	if (status != GPUCAP_OK)
		return actor_fail("reserve", gpucap_status_text(status));
	return 0;
}

gpucap_region *actor_attach_claim(const char *path, const char *comm)
{
	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = path;
	char err[1024] = "";
	gpucap_region *region;
	gpucap_status status = gpucap_region_attach(&options, &region, err, sizeof(err));
	if (status != GPUCAP_OK) {
		actor_fail("attach", err[0] ? err : gpucap_status_text(status));
		return NULL;
	}
	struct gpucap_slot_identity id;
	memset(&id, 0, sizeof(id));
	id.host_pid = (int32_t)getpid();
	id.host_pid_source = GPUCAP_HOST_PID_SAME_NAMESPACE;
	id.comm = comm;
	status = gpucap_region_claim_slot(region, &id, err, sizeof(err));
	if (status != GPUCAP_OK) {
		actor_fail("claim_slot", err[0] ? err : gpucap_status_text(status));
		return NULL;
	}
	return region;
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

/* Longer than any test runs: the share stays fresh throughout. */
#define SHARE_LEASE_NS UINT64_C(60000000000)

int actor_publish_share(gpucap_region *region, int device, const char *delivered_text, const char *asked_text,
                        gpucap_sm_source source)
{
	uint64_t delivered, asked;
	if (!parse_ppm(delivered_text, &delivered))
		return actor_fail("bad delivered share", delivered_text);
	if (!parse_ppm(asked_text, &asked))
		return actor_fail("bad asked share", asked_text);
	if (device < 0)
		return actor_fail("share", "no device step before it");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	if (!gpucap_region_sm_lease(region, device, now_ns, SHARE_LEASE_NS))
		return actor_fail("share", "another slot holds the device's controller lease");
	/* Duty 0: unset, so the views show the cap as the duty. */
	gpucap_region_sm_publish(region, device, 0, (uint32_t)delivered, source, 0, 0);
	gpucap_region_sm_publish_asked(region, device, (uint32_t)asked);
	return 0;
}

_Noreturn void actor_ready(gpucap_region *region)
{
	printf("ready %d\n", gpucap_region_slot_index(region));
	fflush(stdout);
	/* Never detach: a kill leaves a dead slot, as a crash would. */
	for (;;)
		pause();
}
