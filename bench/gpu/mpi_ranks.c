/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One rank of an `mpirun -np N` job that uses no MPI library: the rank and
 * size come from Open MPI's environment, barriers are files in a shared
 * directory. Every rank opens its own context on GPU 0.
 *
 *   mpirun ... mpi_ranks start|fill DIR
 *
 * start: cuInit, primary context, first 1 MiB allocation; each rank reports
 *        its start time from GPUCAP_T0_NS (CLOCK_REALTIME, taken by the shell
 *        just before mpirun, so mpirun's own start-up is in it, natively and
 *        under gpucap alike). Rank 0 prints p50 and max over the ranks.
 * fill:  start, then allocate 256 MiB chunks until an allocation fails and
 *        write what was granted to DIR/fill.RANK; when every rank has done so
 *        (all still holding their memory), rank 0 runs the shell command in
 *        GPUCAP_MPI_CHECK, whose exit status becomes rank 0's. Only then do
 *        the ranks free their memory and exit.
 *
 * Rank 0 prints "mpi_ranks mode=M size=N p50_ms=.. max_ms=.. failed=F".
 * Exit status: 0 ok; 1 a rank failed to start, a chunk allocation stopped
 * with another error than CUDA_ERROR_OUT_OF_MEMORY, a barrier timed out, or
 * the check failed; 2 usage.
 */
#define _GNU_SOURCE
#include <cuda.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK            (UINT64_C(256) << 20)
#define MAX_CHUNKS       4096
#define MAX_RANKS        256
#define BARRIER_LIMIT_MS 60000

static const char *dir;
static int rank, size;

static uint64_t realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool write_file(const char *name, const char *text)
{
	char path[4096], tmp[4200];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return false;
	bool ok = fputs(text, f) >= 0;
	ok = fclose(f) == 0 && ok;
	/* Renamed into place, so a reader never sees half a file. */
	return ok && rename(tmp, path) == 0;
}

static int count_prefix(const char *prefix)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int count = 0;
	size_t len = strlen(prefix);
	struct dirent *e;
	while ((e = readdir(d)))
		count += strncmp(e->d_name, prefix, len) == 0;
	closedir(d);
	return count;
}

/* Every rank creates NAME.RANK and waits for size of them. A rank that died
 * never arrives, so the wait is bounded and its failure reported. */
static bool barrier(const char *name)
{
	char mine[256], prefix[256];
	snprintf(mine, sizeof(mine), "%s.%d", name, rank);
	snprintf(prefix, sizeof(prefix), "%s.", name);
	if (!write_file(mine, ""))
		return false;
	struct timespec pause = {0, 2 * 1000 * 1000};
	for (int waited = 0; waited < BARRIER_LIMIT_MS; waited += 2) {
		if (count_prefix(prefix) >= size)
			return true;
		nanosleep(&pause, NULL);
	}
	fprintf(stderr, "mpi_ranks rank %d: barrier %s timed out (%d of %d ranks)\n", rank, name,
	        count_prefix(prefix), size);
	return false;
}

static int env_int(const char *name, int fallback)
{
	const char *value = getenv(name);
	return value && *value ? atoi(value) : fallback;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Rank 0: every rank's start time, from the files written before the
 * barrier. */
static int report_starts(const char *mode)
{
	double ms[MAX_RANKS];
	int got = 0, failed = 0;
	for (int r = 0; r < size; r++) {
		char path[4096];
		snprintf(path, sizeof(path), "%s/start.%d", dir, r);
		FILE *f = fopen(path, "r");
		double value = -1;
		if (!f || fscanf(f, "%*d %*d %lf", &value) != 1 || value < 0)
			failed++;
		else
			ms[got++] = value;
		if (f)
			fclose(f);
	}
	qsort(ms, (size_t)got, sizeof(ms[0]), compare_double);
	double p50 = got ? ms[(size_t)(0.5 * (got - 1) + 0.5)] : -1, max = got ? ms[got - 1] : -1;
	printf("mpi_ranks mode=%s size=%d p50_ms=%.1f max_ms=%.1f failed=%d\n", mode, size, p50, max, failed);
	fflush(stdout);
	return failed;
}

int main(int argc, char **argv)
{
	if (argc != 3 || (strcmp(argv[1], "start") != 0 && strcmp(argv[1], "fill") != 0)) {
		fprintf(stderr, "usage: mpi_ranks start|fill DIR (under mpirun; GPUCAP_T0_NS set)\n");
		return 2;
	}
	const char *mode = argv[1];
	dir = argv[2];
	rank = env_int("OMPI_COMM_WORLD_RANK", env_int("PMIX_RANK", -1));
	size = env_int("OMPI_COMM_WORLD_SIZE", -1);
	const char *t0_text = getenv("GPUCAP_T0_NS");
	if (rank < 0 || size < 1 || size > MAX_RANKS || rank >= size || !t0_text) {
		fprintf(
		    stderr,
		    "mpi_ranks: needs OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE (<= %d) and GPUCAP_T0_NS\n",
		    MAX_RANKS);
		return 2;
	}
	uint64_t t0 = strtoull(t0_text, NULL, 10);

	CUdevice device;
	CUcontext context;
	CUdeviceptr first;
	CUresult rc;
	const char *step = "cuInit";
	rc = cuInit(0);
	if (rc == CUDA_SUCCESS) {
		step = "context";
		rc = cuDeviceGet(&device, 0);
		if (rc == CUDA_SUCCESS)
			rc = cuDevicePrimaryCtxRetain(&context, device);
		if (rc == CUDA_SUCCESS)
			rc = cuCtxSetCurrent(context);
	}
	if (rc == CUDA_SUCCESS) {
		step = "first allocation";
		rc = cuMemAlloc(&first, 1 << 20);
	}
	double start_ms = (double)(realtime_ns() - t0) / 1e6;
	bool started = rc == CUDA_SUCCESS;
	char line[512];
	if (started)
		snprintf(line, sizeof(line), "%d %d %.3f\n", rank, (int)getpid(), start_ms);
	else
		snprintf(line, sizeof(line), "%d %d failed %s %d\n", rank, (int)getpid(), step, (int)rc);
	char name[64];
	snprintf(name, sizeof(name), "start.%d", rank);
	if (!write_file(name, line))
		fprintf(stderr, "mpi_ranks rank %d: cannot write %s/%s\n", rank, dir, name);
	if (!started)
		fprintf(stderr, "mpi_ranks rank %d: %s failed: %d\n", rank, step, (int)rc);
	/* The 1 MiB was only the start; the fill's sum is chunks and contexts. */
	if (started)
		cuMemFree(first);

	int status = started ? 0 : 1;
	if (!barrier("started"))
		return 1;
	if (rank == 0 && report_starts(mode))
		status = 1;
	if (strcmp(mode, "start") == 0)
		return status;

	/* A rank that could not start still takes part in the barriers, so the
	 * others are not left waiting for it. */
	static CUdeviceptr chunks[MAX_CHUNKS];
	int count = 0;
	rc = CUDA_ERROR_NOT_INITIALIZED;
	while (started && count < MAX_CHUNKS && (rc = cuMemAlloc(&chunks[count], CHUNK)) == CUDA_SUCCESS)
		count++;
	snprintf(line, sizeof(line), "rank=%d pid=%d chunks=%d granted_bytes=%llu stop=%d\n", rank,
	         (int)getpid(), count, (unsigned long long)((uint64_t)count * CHUNK), (int)rc);
	fputs(line, stdout);
	fflush(stdout);
	snprintf(name, sizeof(name), "fill.%d", rank);
	if (!write_file(name, line))
		status = 1;
	if (rc != CUDA_ERROR_OUT_OF_MEMORY)
		status = 1;
	if (!barrier("filled"))
		return 1;
	if (rank == 0) {
		const char *check = getenv("GPUCAP_MPI_CHECK");
		/* The check runs gpucap and python: they must not load the hook. */
		unsetenv("LD_PRELOAD");
		int check_status = check && *check ? system(check) : -1;
		if (check_status != 0)
			status = 1;
	}
	if (!barrier("checked"))
		return 1;
	for (int i = 0; i < count; i++)
		cuMemFree(chunks[i]);
	if (started)
		cuDevicePrimaryCtxRelease(device);
	return status;
}
