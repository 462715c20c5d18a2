/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Real-GPU tests of memory shared between processes, threads and forks.
 *
 *   driver_sharing ipc CAP        legacy IPC: the importer is not charged
 *   driver_sharing vmmshare CAP   a cuMemCreate handle exported as a file
 *                                 descriptor and imported by another process:
 *                                 not charged to the importer
 *   driver_sharing threads CAP    8 threads fill the cap at once
 *   driver_sharing live CAP GPUCAP REGION
 *                                 `gpucap set` lowers and raises the limit while
 *                                 the process runs; the next allocation obeys
 *   driver_sharing fork CAP       a forked child (no exec) cannot take the
 *                                 parent's lease or charges; an exec'd child
 *                                 gets its own slot, returned after it exits
 * Every check prints ok/FAIL; the exit status is 0 when all hold.
 */
#define _GNU_SOURCE
#include <cuda.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MiB (UINT64_C(1) << 20)

static int failures;
#define CHECK(cond, ...)                                                                                     \
	do {                                                                                                 \
		bool check_ok_ = (cond); /* evaluated once: conditions may have effects */                   \
		printf(check_ok_ ? "  ok   " : "  FAIL ");                                                   \
		failures += !check_ok_;                                                                      \
		printf(__VA_ARGS__);                                                                         \
		printf("\n");                                                                                \
		fflush(stdout);                                                                              \
	} while (0)

static CUdevice device;
static CUcontext context;

static int cuda_start(void)
{
	if (cuInit(0) || cuDeviceGet(&device, 0) || cuDevicePrimaryCtxRetain(&context, device) ||
	    cuCtxSetCurrent(context))
		return -1;
	return 0;
}

static size_t free_now(void)
{
	size_t free_bytes = 0, total;
	cuMemGetInfo(&free_bytes, &total);
	return free_bytes;
}

static const char *name_of(CUresult rc)
{
	const char *name = NULL;
	cuGetErrorName(rc, &name);
	return name ? name : "?";
}

/* ---- legacy IPC --------------------------------------------------------- */
static int ipc(void)
{
	int to_importer[2], to_exporter[2];
	if (pipe(to_importer) || pipe(to_exporter))
		return 2;
	pid_t exporter = fork();
	if (exporter == 0) {
		CUdeviceptr ptr;
		CUipcMemHandle handle;
		if (cuda_start() || cuMemAlloc(&ptr, 256 * MiB) || cuIpcGetMemHandle(&handle, ptr))
			_exit(3);
		if (write(to_importer[1], &handle, sizeof(handle)) != (ssize_t)sizeof(handle))
			_exit(4);
		char c;
		if (read(to_exporter[0], &c, 1) != 1) /* hold until the importer is done */
			_exit(5);
		cuMemFree(ptr);
		_exit(0);
	}
	if (cuda_start())
		return 3;
	CUipcMemHandle handle;
	if (read(to_importer[0], &handle, sizeof(handle)) != (ssize_t)sizeof(handle))
		return 4;
	size_t before = free_now();
	CUdeviceptr mapped;
	CUresult rc = cuIpcOpenMemHandle(&mapped, handle, CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS);
	size_t during = free_now();
	CHECK(rc == CUDA_SUCCESS, "cuIpcOpenMemHandle: %s", name_of(rc));
	CHECK(during == before, "importing 256 MiB is not charged again: free %zu before, %zu after", before,
	      during);
	if (rc == CUDA_SUCCESS)
		cuIpcCloseMemHandle(mapped);
	CHECK(free_now() == before, "closing the import returns nothing: free %zu", free_now());
	if (write(to_exporter[1], "x", 1) != 1)
		return 5;
	int status;
	waitpid(exporter, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exporter exited cleanly");
	return 0;
}

/* ---- VMM shareable handles -------------------------------------------- */
static int send_fd(int socket_fd, int fd)
{
	char byte = 0;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	char control[CMSG_SPACE(sizeof(int))];
	memset(control, 0, sizeof(control));
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	return sendmsg(socket_fd, &msg, 0) == 1 ? 0 : -1;
}

static int receive_fd(int socket_fd)
{
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	char control[CMSG_SPACE(sizeof(int))];
	struct msghdr msg = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = sizeof(control)};
	if (recvmsg(socket_fd, &msg, 0) != 1)
		return -1;
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	int fd = -1;
	if (cmsg && cmsg->cmsg_type == SCM_RIGHTS)
		memcpy(&fd, CMSG_DATA(cmsg), sizeof(int));
	return fd;
}

static int vmmshare(void)
{
	int sockets[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sockets))
		return 2;
	pid_t exporter = fork();
	if (exporter == 0) {
		CUmemAllocationProp prop;
		memset(&prop, 0, sizeof(prop));
		prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
		prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
		prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
		CUmemGenericAllocationHandle handle;
		int fd = -1;
		if (cuda_start())
			_exit(3);
		prop.location.id = device;
		if (cuMemCreate(&handle, 256 * MiB, &prop, 0) ||
		    cuMemExportToShareableHandle(&fd, handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0))
			_exit(4);
		if (send_fd(sockets[1], fd))
			_exit(5);
		char c;
		if (read(sockets[1], &c, 1) != 1)
			_exit(6);
		cuMemRelease(handle);
		_exit(0);
	}
	if (cuda_start())
		return 3;
	int fd = receive_fd(sockets[0]);
	CHECK(fd >= 0, "received the exported file descriptor");
	size_t before = free_now();
	CUmemGenericAllocationHandle imported;
	CUresult rc = cuMemImportFromShareableHandle(&imported, (void *)(uintptr_t)fd,
	                                             CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
	CHECK(rc == CUDA_SUCCESS, "cuMemImportFromShareableHandle: %s", name_of(rc));
	CHECK(free_now() == before, "the imported 256 MiB is not charged again: free %zu before, %zu after",
	      before, free_now());
	if (rc == CUDA_SUCCESS) {
		rc = cuMemRelease(imported);
		CHECK(rc == CUDA_SUCCESS && free_now() == before,
		      "releasing the import returns nothing: %s, free %zu", name_of(rc), free_now());
	}
	if (write(sockets[0], "x", 1) != 1)
		return 5;
	int status;
	waitpid(exporter, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exporter exited cleanly");
	return 0;
}

/* ---- threads ------------------------------------------------------------ */
#define THREADS 8
struct filler {
	long chunks;
	CUresult last;
	CUdeviceptr ptrs[512];
};

static pthread_barrier_t start_line;

static void *fill(void *arg)
{
	struct filler *f = arg;
	cuCtxSetCurrent(context);
	pthread_barrier_wait(&start_line);
	while (f->chunks < 512 && (f->last = cuMemAlloc(&f->ptrs[f->chunks], 32 * MiB)) == CUDA_SUCCESS)
		f->chunks++;
	return NULL;
}

static int threads(uint64_t cap)
{
	if (cuda_start())
		return 3;
	size_t before = free_now();
	pthread_t tids[THREADS];
	struct filler fillers[THREADS];
	memset(fillers, 0, sizeof(fillers));
	pthread_barrier_init(&start_line, NULL, THREADS);
	for (int i = 0; i < THREADS; i++)
		pthread_create(&tids[i], NULL, fill, &fillers[i]);
	long chunks = 0;
	int oom = 0;
	for (int i = 0; i < THREADS; i++) {
		pthread_join(tids[i], NULL);
		chunks += fillers[i].chunks;
		oom += fillers[i].last == CUDA_ERROR_OUT_OF_MEMORY;
	}
	uint64_t taken = (uint64_t)chunks * 32 * MiB;
	CHECK(oom == THREADS, "all %d threads stopped with CUDA_ERROR_OUT_OF_MEMORY (%d did)", THREADS, oom);
	CHECK(taken <= before && taken + 32 * MiB * THREADS > before,
	      "threads took %llu MiB of the %zu MiB free under a %llu MiB cap",
	      (unsigned long long)(taken / MiB), before / MiB, (unsigned long long)(cap / MiB));
	for (int i = 0; i < THREADS; i++)
		for (long c = 0; c < fillers[i].chunks; c++)
			cuMemFree(fillers[i].ptrs[c]);
	CHECK(free_now() == before, "after freeing, free %zu == %zu at start", free_now(), before);
	return 0;
}

/* ---- fork --------------------------------------------------------------- */
static int fork_test(const char *self, uint64_t cap)
{
	if (cuda_start())
		return 3;
	CUdeviceptr ptr;
	CHECK(cuMemAlloc(&ptr, 256 * MiB) == CUDA_SUCCESS, "parent allocates 256 MiB");
	size_t parent_free = free_now();
	pid_t child = fork();
	if (child == 0) {
		/* CUDA is unusable in a forked child; calls must fail cleanly. */
		size_t f = 0, t = 0;
		CUresult rc = cuMemGetInfo(&f, &t);
		printf("  info forked child: cuMemGetInfo -> %s\n", name_of(rc));
		_exit(0);
	}
	int status;
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "forked child (no exec) exits cleanly");
	CHECK(free_now() == parent_free, "the parent's charge is untouched by the child: free %zu",
	      free_now());
	char cap_text[32];
	snprintf(cap_text, sizeof(cap_text), "%llu", (unsigned long long)cap);
	child = fork();
	if (child == 0) {
		execl(self, self, "child-allocates", cap_text, (char *)NULL);
		_exit(127);
	}
	waitpid(child, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	      "exec'd child allocated under the cap and exited");
	/* The child's slot is reclaimed by the next sweep; a query starts one at
	 * most 100 ms after the last. */
	usleep(250 * 1000);
	CHECK(free_now() == parent_free,
	      "after the exec'd child exits, its charge is gone: free %zu, expected %zu", free_now(),
	      parent_free);
	cuMemFree(ptr);
	return 0;
}

/* ---- live limit changes -------------------------------------------------- */
static double seconds_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int live(const char *gpucap, const char *region)
{
	if (cuda_start())
		return 3;
	CUdeviceptr held, extra;
	CHECK(cuMemAlloc(&held, 512 * MiB) == CUDA_SUCCESS, "allocate 512 MiB under the starting cap");
	char command[1024];
	snprintf(command, sizeof(command), "%s set --file %s --memory 256m --device all", gpucap, region);
	double t0 = seconds_now();
	CHECK(system(command) == 0, "gpucap set --memory 256m (below the 512 MiB held plus the context)");
	CUresult rc = cuMemAlloc(&extra, 2 * MiB);
	double obeyed = seconds_now() - t0;
	CHECK(rc == CUDA_ERROR_OUT_OF_MEMORY, "the next allocation is refused: %s, %.3f s after the change",
	      name_of(rc), obeyed);
	CHECK(obeyed < 1.0, "obeyed within 1 s");
	size_t free_bytes = 1, total = 0;
	cuMemGetInfo(&free_bytes, &total);
	CHECK(total == 256 * MiB && free_bytes == 0,
	      "cuMemGetInfo shows the new total %zu and free clamped to 0 (%zu)", total, free_bytes);
	snprintf(command, sizeof(command), "%s set --file %s --memory 4g --device all", gpucap, region);
	t0 = seconds_now();
	CHECK(system(command) == 0, "gpucap set --memory 4g");
	rc = cuMemAlloc(&extra, 1024 * MiB);
	CHECK(rc == CUDA_SUCCESS, "a 1 GiB allocation succeeds after raising: %s, %.3f s after the change",
	      name_of(rc), seconds_now() - t0);
	if (rc == CUDA_SUCCESS)
		cuMemFree(extra);
	cuMemFree(held);
	return 0;
}

static int child_allocates(void)
{
	CUdeviceptr ptr;
	if (cuda_start() || cuMemAlloc(&ptr, 128 * MiB))
		return 3;
	return 0; /* exits holding it: the driver frees, a peer reclaims the slot */
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: driver_sharing ipc|vmmshare|threads|fork CAP\n");
		return 2;
	}
	uint64_t cap = strtoull(argv[2], NULL, 10);
	int rc = 2;
	if (!strcmp(argv[1], "ipc"))
		rc = ipc();
	else if (!strcmp(argv[1], "vmmshare"))
		rc = vmmshare();
	else if (!strcmp(argv[1], "threads"))
		rc = threads(cap);
	else if (!strcmp(argv[1], "fork"))
		rc = fork_test(argv[0], cap);
	else if (!strcmp(argv[1], "live") && argc >= 5)
		rc = live(argv[3], argv[4]);
	else if (!strcmp(argv[1], "child-allocates"))
		return child_allocates();
	if (rc)
		printf("  FAIL set-up step returned %d\n", rc);
	printf("%s: %s\n", argv[1], rc || failures ? "FAILED" : "passed");
	return rc || failures ? 1 : 0;
}
