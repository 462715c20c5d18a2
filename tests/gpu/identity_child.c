/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Processes whose identity tests/gpu/identity_ns.sh checks against the host's
 * view of them.
 *
 *   identity_child launch N STOPFILE GOFILE
 *   identity_child probe      (cuInit alone; prints "cuInit CODE")
 *
 * The launcher forks N children, which wait at a gate; it prints "forked N",
 * waits for GOFILE to appear and then releases them all at once. Run inside
 * `unshare --pid --fork --mount-proc` the launcher is the namespace's init,
 * so its children are all in that namespace, and the script can release two
 * namespaces at the same instant by creating one GOFILE.
 *
 * Each child: cuInit, primary context, a 1 MiB allocation, then prints
 * "ready PID" (PID as the child sees itself, i.e. inside its namespace) and
 * holds all of it until STOPFILE appears, so the host can compare the region,
 * /proc and NVML while every process is alive. A child that fails prints
 * "failed PID STEP CODE" instead. Every wait is bounded (30 s), so nothing
 * outlives a script that died.
 *
 * The launcher renames itself identity_launch after forking, so that on the
 * host only the children are named identity_child. It prints
 * "launcher done ok=K failed=F" and exits 0 when every child succeeded.
 */
#define _GNU_SOURCE
#include <cuda.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 256
#define WAIT_LIMIT_S 30

/* Set before the gate opens: a gate closed because the launcher gave up
 * (no GOFILE) must not start anyone. */
static atomic_int *released;

/* One write per line: the children share the launcher's output file, and a
 * line split across writes could interleave with another child's. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
	char line[128];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, args);
	va_end(args);
	if (n > 0 && write(STDOUT_FILENO, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1) < 0)
		_exit(7);
}

static bool exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* Returns false when the file did not appear within the limit. */
static bool wait_for_file(const char *path)
{
	struct timespec pause = {0, 10 * 1000 * 1000};
	for (int i = 0; i < WAIT_LIMIT_S * 100; i++) {
		if (exists(path))
			return true;
		nanosleep(&pause, NULL);
	}
	return false;
}

static int child(int gate_fd, const char *stopfile)
{
	char c;
	if (read(gate_fd, &c, 1) != 0 || !atomic_load(released))
		return 2;
	int pid = (int)getpid();
	CUdevice device;
	CUcontext context;
	CUdeviceptr ptr;
	CUresult rc;
	if ((rc = cuInit(0)) != CUDA_SUCCESS) {
		say("failed %d cuInit %d\n", pid, (int)rc);
		return 3;
	}
	if ((rc = cuDeviceGet(&device, 0)) != CUDA_SUCCESS ||
	    (rc = cuDevicePrimaryCtxRetain(&context, device)) != CUDA_SUCCESS ||
	    (rc = cuCtxSetCurrent(context)) != CUDA_SUCCESS) {
		say("failed %d context %d\n", pid, (int)rc);
		return 3;
	}
	if ((rc = cuMemAlloc(&ptr, 1 << 20)) != CUDA_SUCCESS) {
		say("failed %d alloc %d\n", pid, (int)rc);
		return 3;
	}
	say("ready %d\n", pid);
	bool stopped = wait_for_file(stopfile);
	cuMemFree(ptr);
	cuDevicePrimaryCtxRelease(device);
	return stopped ? 0 : 6;
}

static int launch(int n, const char *stopfile, const char *gofile)
{
	int gate[2];
	released = mmap(NULL, sizeof(*released), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (released == MAP_FAILED || pipe(gate))
		return 2;
	pid_t pids[MAX_CHILDREN];
	for (int i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] < 0) {
			say("launcher fork failed after %d children\n", i);
			n = i;
			break;
		}
		if (pids[i] == 0) {
			close(gate[1]);
			exit(child(gate[0], stopfile));
		}
	}
	close(gate[0]);
	prctl(PR_SET_NAME, "identity_launch", 0, 0, 0);
	say("forked %d\n", n);
	bool go = wait_for_file(gofile);
	atomic_store(released, go);
	close(gate[1]); /* wakes every child at once */
	int ok = 0, failed = 0;
	for (int i = 0; i < n; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) == pids[i] && WIFEXITED(status) && WEXITSTATUS(status) == 0)
			ok++;
		else
			failed++;
	}
	say("launcher done ok=%d failed=%d%s\n", ok, failed, go ? "" : " (no go file)");
	return failed || !go ? 1 : 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "probe") == 0) {
		/* Whether the driver itself starts here, without gpucap. */
		CUresult rc = cuInit(0);
		printf("cuInit %d\n", (int)rc);
		return rc == CUDA_SUCCESS ? 0 : 1;
	}
	if (argc != 5 || strcmp(argv[1], "launch") != 0) {
		fprintf(stderr, "usage: identity_child launch N STOPFILE GOFILE\n");
		return 2;
	}
	int n = atoi(argv[2]);
	if (n < 1 || n > MAX_CHILDREN) {
		fprintf(stderr, "identity_child: N must be 1..%d\n", MAX_CHILDREN);
		return 2;
	}
	return launch(n, argv[3], argv[4]);
}
