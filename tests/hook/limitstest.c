/*
 * Limits-file tests: libgpucap.so preloaded over the fake driver, with a
 * limits file named by GPUCAP_LIMITS_FILE. The file must be owned by root,
 * so these tests need root; without it they exit 77 (CTest SKIP_RETURN_CODE)
 * after saying why.
 *
 * Every scenario runs in a child process (the library reads its
 * configuration once per process); the parent writes the file and checks.
 */
#define _GNU_SOURCE
#include "check.h"
#include "cuda_api.h"
#include "gpucap/region.h"
#include "self_exec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB   (UINT64_C(1) << 20)
#define DEV_A "GPU-00000000-0000-0000-0000-0000000000a0"
#define SKIP  77

static char dir[128];
static char region_path[192];
static char limits_path[192];
static char self_path[4096];

static void cleanup(void)
{
	if (!dir[0])
		return;
	unlink(region_path);
	unlink(limits_path);
	char link[256];
	snprintf(link, sizeof(link), "%s/link.conf", dir);
	unlink(link);
	rmdir(dir);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/gpucap-limitstest-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	chmod(dir, 0755);
	snprintf(region_path, sizeof(region_path), "%s/region", dir);
	snprintf(limits_path, sizeof(limits_path), "%s/limits.conf", dir);
	atexit(cleanup);
}

static void write_limits(const char *text, uid_t owner, mode_t mode)
{
	FILE *f = fopen(limits_path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	CHECK(fclose(f) == 0);
	CHECK(chown(limits_path, owner, 0) == 0);
	CHECK(chmod(limits_path, mode) == 0);
}

static gpucap_region *attach(bool observer)
{
	struct gpucap_region_options o;
	memset(&o, 0, sizeof(o));
	o.path = region_path;
	o.observer = observer;
	gpucap_region *r = NULL;
	char err[256];
	if (gpucap_region_attach(&o, &r, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "attach: %s\n", err);
		exit(1);
	}
	return r;
}

/* Run this program as "child SCENARIO" with the given limit variables;
 * returns its exit status and its stderr in err. */
static int run_child(const char *scenario, const char *env_limit, const char *limits_file, char *err,
                     size_t err_len)
{
	char region[256], limit[128], file[256];
	snprintf(region, sizeof(region), "GPUCAP_REGION=%s", region_path);
	snprintf(limit, sizeof(limit), "CUDA_DEVICE_MEMORY_LIMIT=%s", env_limit ? env_limit : "");
	snprintf(file, sizeof(file), "GPUCAP_LIMITS_FILE=%s", limits_file);
	const char *env[] = {region,
	                     "GPUCAP_CONTEXT_BYTES=0",
	                     "FAKECUDA_TOTAL_BYTES=1073741824",
	                     "GPUCAP_MEMORY_LIMIT=",
	                     limit,
	                     file,
	                     NULL};
	const char *args[] = {"child", scenario, NULL};
	int rc = self_run(self_path, err, err_len, env, args);
	if (err[0])
		fprintf(stderr, "child %s said: %s", scenario, err);
	return rc;
}

static unsigned count_lines(const char *text)
{
	unsigned n = 0;
	for (; *text; text++)
		n += *text == '\n';
	return n;
}

/* ---- Children ------------------------------------------------------------ */

static void start_device(int ordinal)
{
	CU(cuInit(0));
	CUcontext ctx;
	CU(cuDevicePrimaryCtxRetain(&ctx, ordinal));
	CU(cuCtxSetCurrent(ctx));
}

/* Device 0 must show and enforce exactly LIMITSTEST_EXPECT bytes: the view's
 * total is the cap, the cap fits, one byte more is refused. */
static int child_expect(void)
{
	uint64_t expect = strtoull(getenv("LIMITSTEST_EXPECT"), NULL, 10);
	start_device(0);
	size_t free_bytes, total;
	CU(cuMemGetInfo_v2(&free_bytes, &total));
	CHECK_EQ(expect, total);
	CU(cuDeviceTotalMem_v2(&total, 0));
	CHECK_EQ(expect, total);
	CUdeviceptr p, q;
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&p, expect + MiB));
	CU(cuMemAlloc_v2(&p, expect - MiB));
	CHECK_EQ(CUDA_ERROR_OUT_OF_MEMORY, cuMemAlloc_v2(&q, 2 * MiB));
	CU(cuMemAlloc_v2(&q, MiB));
	CU(cuMemFree_v2(q));
	CU(cuMemFree_v2(p));
	return 0;
}

/* Like child_expect, but first raises the region's limit for device 0 to
 * 1 GiB through a writable handle, as a user who can write the region file
 * could: the file's cap must still hold. */
static int child_raised(void)
{
	start_device(0);
	CUdeviceptr p;
	CU(cuMemAlloc_v2(&p, MiB));
	gpucap_region *r = attach(false);
	int index = gpucap_region_device_find(r, DEV_A);
	CHECK(index >= 0);
	CHECK_EQ(GPUCAP_OK, gpucap_region_set_limit(r, index, 1024 * MiB));
	gpucap_region_detach(r);
	CU(cuMemFree_v2(p));
	return child_expect();
}

/* Exit 3 when device 0 and 1 both refuse 1 MiB with exactly
 * CUDA_ERROR_OUT_OF_MEMORY (fail closed), 0 when both allocate. */
static int child_alloc_both(void)
{
	CU(cuInit(0));
	int code = 0;
	for (int i = 0; i < 2; i++) {
		CUcontext c;
		CUresult r = cuDevicePrimaryCtxRetain(&c, i);
		if (r == CUDA_SUCCESS) {
			CU(cuCtxSetCurrent(c));
			CUdeviceptr p;
			r = cuMemAlloc_v2(&p, MiB);
		}
		if (r == CUDA_ERROR_OUT_OF_MEMORY)
			code |= 1 << i;
		else if (r != CUDA_SUCCESS)
			return 100 + (int)r;
	}
	return code;
}

/* ---- Cases --------------------------------------------------------------- */

static void expect_limit(const char *what, const char *env_limit, uint64_t bytes, bool raise)
{
	char value[32], err[4096];
	snprintf(value, sizeof(value), "%llu", (unsigned long long)bytes);
	setenv("LIMITSTEST_EXPECT", value, 1);
	unlink(region_path);
	int rc = run_child(raise ? "raised" : "expect", env_limit, limits_path, err, sizeof(err));
	if (rc != 0) {
		fprintf(stderr, "%s: child exited %d\n", what, rc);
		exit(1);
	}
	/* The probe's one refusal prints its one warning, nothing else. */
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, "allocation refused") != NULL);
}

/* The file beats the environment; the environment can only lower it. */
static void test_file_wins(void)
{
	write_limits("# written by the node agent\nmemory = 32m\nmemory.1 = 8m  # the small one\nsm = 50\n",
	             0, 0644);
	expect_limit("a higher CUDA_DEVICE_MEMORY_LIMIT", "1g", 32 * MiB, false);
	expect_limit("no variable", NULL, 32 * MiB, false);
	expect_limit("a lower CUDA_DEVICE_MEMORY_LIMIT", "16m", 16 * MiB, false);
	/* The region entry was registered with the effective limit and the SM
	 * limit from the file. */
	gpucap_region *r = attach(true);
	struct gpucap_snapshot *s = gpucap_region_snapshot(r);
	CHECK(s != NULL);
	bool found = false;
	for (uint32_t i = 0; i < s->device_count; i++) {
		if (strcmp(s->devices[i].uuid, DEV_A) == 0) {
			found = true;
			CHECK_EQ(16 * MiB, s->devices[i].limit_bytes);
			CHECK_EQ(50, s->devices[i].sm_limit);
		}
	}
	CHECK(found);
	gpucap_snapshot_free(s);
	gpucap_region_detach(r);
}

/* Raising the region's limit does not lift the file's cap. */
static void test_region_raised(void)
{
	write_limits("memory = 32m\n", 0, 0644);
	expect_limit("the region limit raised to 1 GiB", "1g", 32 * MiB, true);
}

static void expect_refused(const char *what, const char *file, const char *needle)
{
	char err[4096];
	unlink(region_path);
	int rc = run_child("alloc-both", "1g", file, err, sizeof(err));
	if (rc != 3) {
		fprintf(stderr, "%s: want both devices refused (exit 3), got exit %d\n", what, rc);
		exit(1);
	}
	if (count_lines(err) != 1 || !strstr(err, needle) || !strstr(err, "failing closed")) {
		fprintf(stderr, "%s: want one error line naming %s, got: %s\n", what, needle, err);
		exit(1);
	}
}

/* A file that cannot be trusted or read fails every device closed. */
static void test_refused(void)
{
	write_limits("memory = 32m\n", 1, 0644);
	expect_refused("a file owned by uid 1", limits_path, "not root");
	write_limits("memory = 32m\n", 0, 0664);
	expect_refused("a group-writable file", limits_path, "chmod go-w");
	write_limits("memory = 32m\n", 0, 0646);
	expect_refused("a world-writable file", limits_path, "chmod go-w");
	write_limits("memory = 32m\n", 0, 0644);
	char link[256];
	snprintf(link, sizeof(link), "%s/link.conf", dir);
	CHECK(symlink(limits_path, link) == 0);
	expect_refused("a symbolic link", link, "symbolic link");
	char missing[256];
	snprintf(missing, sizeof(missing), "%s/missing.conf", dir);
	expect_refused("a missing file", missing, "does not exist");
	expect_refused("a directory", dir, "not a regular file");

	char where[256];
	snprintf(where, sizeof(where), "%s:3", limits_path);
	write_limits("# ok\nmemory = 32m\nmemory = lots\n", 0, 0644);
	expect_refused("a malformed size", limits_path, where);
	write_limits("# ok\nmemory = 32m\nbanana = 1\n", 0, 0644);
	expect_refused("an unknown key", limits_path, where);
	write_limits("# ok\nmemory = 32m\nmemory 64m\n", 0, 0644);
	expect_refused("a line without '='", limits_path, where);
	write_limits("# ok\nmemory = 32m\nmemory = 64m\n", 0, 0644);
	expect_refused("a key set twice", limits_path, where);
	write_limits("# ok\nsm = 50\nsm.1 = 101\n", 0, 0644);
	expect_refused("an SM limit over 100", limits_path, where);

	/* Back to a good file: allocations work again. */
	char err[4096];
	write_limits("memory = 32m\n", 0, 0644);
	unlink(region_path);
	CHECK_EQ(0, run_child("alloc-both", "1g", limits_path, err, sizeof(err)));
}

int main(int argc, char **argv)
{
	ssize_t len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	CHECK(len > 0);
	self_path[len] = '\0';
	if (argc >= 3 && strcmp(argv[1], "child") == 0) {
		snprintf(region_path, sizeof(region_path), "%s", getenv("GPUCAP_REGION"));
		if (strcmp(argv[2], "expect") == 0)
			return child_expect();
		if (strcmp(argv[2], "raised") == 0)
			return child_raised();
		if (strcmp(argv[2], "alloc-both") == 0)
			return child_alloc_both();
		return 2;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: %s file-wins|region-raised|refused\n", argv[0]);
		return 2;
	}
	if (geteuid() != 0) {
		printf(
		    "SKIPPED: the limits file must be owned by root, so this test must run as root (euid is %u)\n",
		    (unsigned)geteuid());
		return SKIP;
	}
	struct stat st;
	if (lstat("/etc/gpucap/limits.conf", &st) == 0) {
		printf(
		    "SKIPPED: /etc/gpucap/limits.conf exists on this machine and always applies, so GPUCAP_LIMITS_FILE cannot point the test at its own file\n");
		return SKIP;
	}
	setup();
	if (strcmp(argv[1], "file-wins") == 0)
		test_file_wins();
	else if (strcmp(argv[1], "region-raised") == 0)
		test_region_raised();
	else if (strcmp(argv[1], "refused") == 0)
		test_refused();
	else
		return 2;
	printf("ok %s\n", argv[1]);
	return 0;
}
