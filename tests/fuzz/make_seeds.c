/*
 * Writes the binary seeds of corpus/region and corpus/schedule: small but
 * complete files as the library makes them, so the fuzzer starts from
 * valid layouts. Run once after a format change:
 *   fuzz_make_seeds tests/fuzz/corpus
 */
#define _POSIX_C_SOURCE 200809L

#include <gpucap/region.h>
#include <gpucap/schedule.h>

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

	gpucap_sched *sched = NULL;
	char why[512];
	if (gpucap_sched_open(dir, "GPU-seed", 7, &sched, why, sizeof(why)) != GPUCAP_OK) {
		fprintf(stderr, "fuzz_make_seeds: %s\n", why);
		return 1;
	}
	gpucap_sched_touch(sched, 300000, 300000, 1000000000u);
	char sched_path[256];
	snprintf(sched_path, sizeof(sched_path), "%s/%sGPU-seed", dir, GPUCAP_SCHED_FILE_PREFIX);
	snprintf(target, sizeof(target), "%s/schedule/one-tenant", argv[1]);
	int rc = copy_file(sched_path, target, -1);
	gpucap_sched_close(sched);
	unlink(sched_path);
	rmdir(dir);
	return rc;
}
