/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Writes the binary seeds of corpus/region and corpus/schedule: small but
 * complete files as the library makes them, so the fuzzer starts from
 * valid layouts. The schedule seeds are a peer tenant's files as
 * fuzz_schedule reads them (fuzz_schedule.h). Run once after a format
 * change:
 *   fuzz_make_seeds tests/fuzz/corpus
 */
#define _POSIX_C_SOURCE 200809L

#include <gpucap/region.h>
#include <gpucap/schedule.h>

#include "fuzz_schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int copy_file(const char *from, const char *to, long max_bytes)
{
	FILE *in = fopen(from, "rb");
	FILE *out = fopen(to, "wb");
	if (!in || !out) {
		fprintf(stderr, "fuzz_make_seeds: cannot copy %s to %s\n", from, to);
		return 1;
	}
	int c;
	for (long n = 0; (max_bytes < 0 || n < max_bytes) && (c = fgetc(in)) != EOF; n++)
		fputc(c, out);
	fclose(in);
	return fclose(out) == 0 ? 0 : 1;
}

static int make_region(const char *path)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = path;
	o.slot_capacity = 2;
	o.device_capacity = 2;
	char err[512];
	gpucap_region *r;
	if (gpucap_region_attach(&o, &r, err, sizeof(err)) != GPUCAP_OK ||
	    gpucap_region_claim_slot(r, NULL, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "fuzz_make_seeds: %s\n", err);
		return 1;
	}
	int d = gpucap_region_device_register(r, "GPU-seed-0000", UINT64_C(1) << 30, 0);
	if (d < 0 || gpucap_reserve(r, d, GPUCAP_KIND_DATA, UINT64_C(5) << 20) != GPUCAP_OK ||
	    gpucap_region_set_sm_limit(r, d, 30) != GPUCAP_OK) {
		fprintf(stderr, "fuzz_make_seeds: cannot charge the seed region\n");
		return 1;
	}
	gpucap_region_abandon(r); /* the slot stays charged, its owner "dead" */
	return 0;
}

/* One schedule seed: the peer tenant's file with one process record per
 * entry of duties (0 ends the list, at most 4), each touched at touched_ns
 * (0: claimed, never touched) and written by a refresh at that time. */
static int make_schedule_seed(const char *dir, const char *corpus, const char *seed, const uint32_t *duties,
                              uint64_t touched_ns)
{
	gpucap_sched *processes[4] = {NULL, NULL, NULL, NULL};
	char why[512], from[512], to[4096];
	int rc = 0;
	for (int i = 0; i < 4 && duties[i] && rc == 0; i++) {
		if (gpucap_sched_open(dir, FUZZ_SCHED_GPU, FUZZ_SCHED_PEER_TENANT, &processes[i], why,
		                      sizeof(why)) != GPUCAP_OK) {
			fprintf(stderr, "fuzz_make_seeds: %s\n", why);
			rc = 1;
			break;
		}
		if (touched_ns) {
			gpucap_sched_touch(processes[i], duties[i], duties[i], touched_ns);
			gpucap_sched_refresh(processes[i], touched_ns, why, sizeof(why));
		}
	}
	if (rc == 0) {
		snprintf(from, sizeof(from), "%s/%s", dir, FUZZ_SCHED_PEER_NAME);
		snprintf(to, sizeof(to), "%s/schedule/%s", corpus, seed);
		rc = copy_file(from, to, -1);
	}
	for (int i = 0; i < 4; i++)
		gpucap_sched_close(processes[i]); /* the last removes the file */
	return rc;
}

static int make_schedule_seeds(const char *dir, const char *corpus)
{
	static const uint32_t one[] = {300000, 0}, two[] = {200000, 500000, 0}, most[] = {900000, 0};
	const uint64_t now = FUZZ_SCHED_NOW_NS, second = UINT64_C(1000000000);
	/* Active: one process, two of them, and a duty that with the harness's
	 * own 30% overfills the period. */
	if (make_schedule_seed(dir, corpus, "one-tenant", one, now - second / 100) ||
	    make_schedule_seed(dir, corpus, "two-processes", two, now - second / 100) ||
	    make_schedule_seed(dir, corpus, "over-period", most, now - second / 100))
		return 1;
	/* Not active: idle a while (kept), never active (removed as dead), and
	 * stamped in the future (not believed). */
	if (make_schedule_seed(dir, corpus, "idle-tenant", one, now - 30 * second) ||
	    make_schedule_seed(dir, corpus, "never-active", one, 0) ||
	    make_schedule_seed(dir, corpus, "future-stamp", one, now + second))
		return 1;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: fuzz_make_seeds CORPUS_DIR\n");
		return 2;
	}
	char dir[] = "/tmp/gpucap-seeds-XXXXXX";
	if (!mkdtemp(dir))
		return 1;
	char region[256], target[4096];
	snprintf(region, sizeof(region), "%s/region", dir);
	if (make_region(region))
		return 1;
	snprintf(target, sizeof(target), "%s/region/small-region", argv[1]);
	if (copy_file(region, target, -1))
		return 1;
	snprintf(target, sizeof(target), "%s/region/header-only", argv[1]);
	if (copy_file(region, target, 4096))
		return 1;
	unlink(region);

	int rc = make_schedule_seeds(dir, argv[1]);
	rmdir(dir);
	return rc;
}
