/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Limits-file tests: libgpucap.so preloaded over the fake driver, with a
 * limits file named by GPUCAP_LIMITS_FILE. The file must be owned by root,
 * so these tests need root; without it they exit 77 (CTest SKIP_RETURN_CODE)
 * after saying why. The file caps the container: processes naming their
 * own regions, or a region deleted under live processes, get nothing
 * beyond its cap; "tenant" runs those attacks as the user nobody.
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
#include <grp.h>
#include <pwd.h>
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
static char region_path[320];
static char limits_path[192];
static char tenant_dir[192];
static char self_path[4096];

/* How the next child starts: its region variable (NULL: none, so the limits
 * file's region applies), which variable carries it, and its user (0: as
 * the test). */
static const char *child_region;
static const char *child_region_var = "GPUCAP_REGION";
static uid_t child_uid;

static void cleanup(void)
{
	if (!dir[0])
		return;
	unlink(region_path);
	unlink(limits_path);
	char link[256];
	snprintf(link, sizeof(link), "%s/link.conf", dir);
	unlink(link);
	if (tenant_dir[0]) {
		char path[256];
		snprintf(path, sizeof(path), "%s/region", tenant_dir);
		unlink(path);
		snprintf(path, sizeof(path), "%s/mine", tenant_dir);
		unlink(path);
		rmdir(tenant_dir);
	}
	for (int i = 0; i < 3; i++) {
		char own[256];
		snprintf(own, sizeof(own), "%s/own-%d", dir, i);
		unlink(own);
	}
	rmdir(dir);
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/gpucap-limitstest-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	chmod(dir, 0755);
	snprintf(region_path, sizeof(region_path), "%s/region", dir);
	snprintf(limits_path, sizeof(limits_path), "%s/limits.conf", dir);
	child_region = region_path;
	atexit(cleanup);
}

/* The node agent's file: text, then the line naming the container's
 * region. */
static void write_limits(const char *text, uid_t owner, mode_t mode)
{
	FILE *f = fopen(limits_path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fprintf(f, "region = %s\n", region_path);
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

/* In a child about to exec itself: the region variable and the user the
 * test asked for. */
static void become_child(void)
{
	unsetenv("GPUCAP_REGION");
	unsetenv("CUDA_DEVICE_MEMORY_SHARED_CACHE");
	if (child_region)
		setenv(child_region_var, child_region, 1);
	if (child_uid) {
		struct passwd *pw = getpwuid(child_uid);
		gid_t gid = pw ? pw->pw_gid : (gid_t)child_uid;
		if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
		    setresuid(child_uid, child_uid, child_uid) != 0) {
			perror("becoming the tenant");
			_exit(126);
		}
	}
}

/* Run this program as "child SCENARIO" with the given limit variables;
 * returns its exit status and its stderr in err. */
static int run_child(const char *scenario, const char *env_limit, const char *limits_file, char *err,
                     size_t err_len)
{
	char limit[128], file[256];
	snprintf(limit, sizeof(limit), "CUDA_DEVICE_MEMORY_LIMIT=%s", env_limit ? env_limit : "");
	snprintf(file, sizeof(file), "GPUCAP_LIMITS_FILE=%s", limits_file);
	const char *env[] = {"GPUCAP_CONTEXT_BYTES=0",
	                     "FAKECUDA_TOTAL_BYTES=1073741824",
	                     "GPUCAP_MEMORY_LIMIT=",
	                     limit,
	                     file,
	                     NULL};
	const char *args[] = {"child", scenario, NULL};
	int rc = self_run_as(self_path, err, err_len, env, args, become_child);
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

/* Hold LIMITSTEST_HOLD_MIB MiB on device 0: say 'r' on stdout once held
 * (or 'n' when refused), then keep it until stdin closes. */
static int child_hold(void)
{
	uint64_t mib = strtoull(getenv("LIMITSTEST_HOLD_MIB"), NULL, 10);
	start_device(0);
	CUdeviceptr p;
	CUresult r = cuMemAlloc_v2(&p, mib * MiB);
	char said = r == CUDA_SUCCESS ? 'r' : 'n';
	CHECK_EQ(1, write(STDOUT_FILENO, &said, 1));
	char buf[16];
	while (read(STDIN_FILENO, buf, sizeof(buf)) > 0) {
	}
	if (r == CUDA_SUCCESS)
		CU(cuMemFree_v2(p));
	return 0;
}

/* Exit 0 when LIMITSTEST_TRY_MIB MiB on device 0 are granted, 3 when they
 * are refused with exactly CUDA_ERROR_OUT_OF_MEMORY. With "delete" first
 * removes the container's region, as a tenant resetting its ledger would. */
static int child_try(bool delete_region)
{
	if (delete_region)
		CHECK(unlink(getenv("LIMITSTEST_REGION")) == 0);
	uint64_t mib = strtoull(getenv("LIMITSTEST_TRY_MIB"), NULL, 10);
	CU(cuInit(0));
	CUcontext ctx;
	CUresult r = cuDevicePrimaryCtxRetain(&ctx, 0);
	if (r == CUDA_SUCCESS) {
		CU(cuCtxSetCurrent(ctx));
		CUdeviceptr p;
		r = cuMemAlloc_v2(&p, mib * MiB);
		if (r == CUDA_SUCCESS)
			CU(cuMemFree_v2(p));
	}
	return r == CUDA_SUCCESS ? 0 : r == CUDA_ERROR_OUT_OF_MEMORY ? 3 : 100 + (int)r;
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

/* A process of the container holding memory until released. */
struct holder {
	pid_t pid;
	int release_fd;
};

static struct holder start_holder(uint64_t mib)
{
	char value[32];
	snprintf(value, sizeof(value), "%llu", (unsigned long long)mib);
	setenv("LIMITSTEST_HOLD_MIB", value, 1);
	int ready[2], release[2];
	CHECK(pipe(ready) == 0 && pipe(release) == 0);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		dup2(ready[1], STDOUT_FILENO);
		dup2(release[0], STDIN_FILENO);
		close(ready[0]);
		close(release[1]);
		setenv("GPUCAP_CONTEXT_BYTES", "0", 1);
		setenv("FAKECUDA_TOTAL_BYTES", "1073741824", 1);
		unsetenv("CUDA_DEVICE_MEMORY_LIMIT");
		unsetenv("GPUCAP_MEMORY_LIMIT");
		setenv("GPUCAP_LIMITS_FILE", limits_path, 1);
		become_child();
		execl(self_path, self_path, "child", "hold", (char *)NULL);
		_exit(127);
	}
	close(ready[1]);
	close(release[0]);
	char said = 0;
	CHECK_EQ(1, read(ready[0], &said, 1));
	close(ready[0]);
	if (said != 'r') {
		fprintf(stderr, "the holder could not take %llu MiB\n", (unsigned long long)mib);
		exit(1);
	}
	struct holder h = {pid, release[1]};
	return h;
}

static void stop_holder(struct holder h)
{
	close(h.release_fd);
	int status;
	CHECK(waitpid(h.pid, &status, 0) == h.pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Try mib MiB in a new process; its exit code (0 granted, 3 refused), its
 * error text in err. */
static int try_alloc(const char *scenario, uint64_t mib, char *err, size_t err_len)
{
	char value[32];
	snprintf(value, sizeof(value), "%llu", (unsigned long long)mib);
	setenv("LIMITSTEST_TRY_MIB", value, 1);
	return run_child(scenario, NULL, limits_path, err, err_len);
}

static void expect_refused_line(const char *what, int rc, const char *err, const char *needle)
{
	if (rc != 3 || count_lines(err) != 1 || !strstr(err, limits_path) || !strstr(err, needle)) {
		fprintf(stderr, "%s: want exit 3 and one line naming %s and \"%s\", got exit %d: %s\n", what,
		        limits_path, needle, rc, err);
		exit(1);
	}
}

/* Processes naming their own regions under a limits file get nothing: the
 * file names the container's region and the others are refused. */
static void test_own_regions(void)
{
	write_limits("memory = 64m\n", 0, 0644);
	unlink(region_path);
	child_region = NULL; /* the file's region */
	struct holder holder = start_holder(60);
	char err[4096];
	for (int i = 0; i < 3; i++) {
		char own[256];
		snprintf(own, sizeof(own), "%s/own-%d", dir, i);
		child_region = own;
		child_region_var = i == 2 ? "CUDA_DEVICE_MEMORY_SHARED_CACHE" : "GPUCAP_REGION";
		int rc = try_alloc("try", 1, err, sizeof(err));
		expect_refused_line("a process naming its own region", rc, err, "names another region");
		struct stat st;
		CHECK(lstat(own, &st) != 0 && errno == ENOENT); /* never created */
	}
	child_region_var = "GPUCAP_REGION";
	/* Naming the file's own region is allowed, and counted with the
	 * holder's 60 MiB. */
	child_region = region_path;
	CHECK_EQ(0, try_alloc("try", 4, err, sizeof(err)));
	CHECK_EQ(3, try_alloc("try", 5, err, sizeof(err)));
	/* The refusal says why, once. */
	CHECK_EQ(1, count_lines(err));
	CHECK(strstr(err, "allocation refused") != NULL);
	stop_holder(holder);
	CHECK_EQ(0, try_alloc("try", 64, err, sizeof(err)));
}

/* A region deleted and made again under live processes starts empty; its
 * processes fail closed until the old region's processes are gone. */
static void test_recreated(void)
{
	write_limits("memory = 64m\n", 0, 0644);
	unlink(region_path);
	child_region = NULL;
	struct holder holder = start_holder(60);
	CHECK(unlink(region_path) == 0);
	char err[4096];
	int rc = try_alloc("try", 1, err, sizeof(err));
	expect_refused_line("a process of the recreated region", rc, err, "uses another region");
	rc = try_alloc("try", 1, err, sizeof(err));
	expect_refused_line("a second process of the recreated region", rc, err, "uses another region");
	stop_holder(holder);
	CHECK_EQ(0, try_alloc("try", 64, err, sizeof(err)));
	CHECK_EQ(0, count_lines(err));
}

/* The same attacks by a tenant that is not root: its own region, then the
 * container's region deleted under a live holder. */
static void test_tenant(void)
{
	struct passwd *pw = getpwnam("nobody");
	if (!pw) {
		printf("SKIPPED: no user nobody to play the tenant\n");
		exit(SKIP);
	}
	snprintf(tenant_dir, sizeof(tenant_dir), "%s/tenant", dir);
	CHECK(mkdir(tenant_dir, 0755) == 0);
	CHECK(chown(tenant_dir, pw->pw_uid, pw->pw_gid) == 0);
	snprintf(region_path, sizeof(region_path), "%s/region", tenant_dir);
	write_limits("memory = 64m\n", 0, 0644);
	child_uid = pw->pw_uid;
	child_region = NULL;
	struct holder holder = start_holder(60);
	char err[4096], mine[256];
	snprintf(mine, sizeof(mine), "%s/mine", tenant_dir);
	child_region = mine;
	int rc = try_alloc("try", 1, err, sizeof(err));
	expect_refused_line("the tenant naming its own region", rc, err, "names another region");
	child_region = NULL;
	setenv("LIMITSTEST_REGION", region_path, 1);
	rc = try_alloc("delete-try", 1, err, sizeof(err));
	expect_refused_line("the tenant deleting its region", rc, err, "uses another region");
	stop_holder(holder);
	CHECK_EQ(0, try_alloc("try", 64, err, sizeof(err)));
	child_uid = 0;
}

int main(int argc, char **argv)
{
	ssize_t len = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	CHECK(len > 0);
	self_path[len] = '\0';
	if (argc >= 3 && strcmp(argv[1], "child") == 0) {
		const char *region = getenv("GPUCAP_REGION");
		snprintf(region_path, sizeof(region_path), "%s", region ? region : "");
		if (strcmp(argv[2], "expect") == 0)
			return child_expect();
		if (strcmp(argv[2], "raised") == 0)
			return child_raised();
		if (strcmp(argv[2], "alloc-both") == 0)
			return child_alloc_both();
		if (strcmp(argv[2], "hold") == 0)
			return child_hold();
		if (strcmp(argv[2], "try") == 0)
			return child_try(false);
		if (strcmp(argv[2], "delete-try") == 0)
			return child_try(true);
		return 2;
	}
	if (argc != 2) {
		fprintf(stderr, "usage: %s file-wins|region-raised|refused|own-regions|recreated|tenant\n",
		        argv[0]);
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
	else if (strcmp(argv[1], "own-regions") == 0)
		test_own_regions();
	else if (strcmp(argv[1], "recreated") == 0)
		test_recreated();
	else if (strcmp(argv[1], "tenant") == 0)
		test_tenant();
	else
		return 2;
	printf("ok %s\n", argv[1]);
	return 0;
}
