/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "bench_util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void bench_print_header(int argc, char **argv)
{
	char date[64] = "?";
	time_t now = time(NULL);
	struct tm tm;
	if (gmtime_r(&now, &tm))
		strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
	char host[256] = "?";
	if (gethostname(host, sizeof host - 1) != 0)
		strcpy(host, "?");
	host[sizeof host - 1] = '\0';
	printf("# date=%s host=%s nproc=%ld cmd:", date, host, sysconf(_SC_NPROCESSORS_ONLN));
	for (int i = 0; i < argc; i++)
		printf(" %s", argv[i]);
	printf("\n");
	fflush(stdout);
}

void *bench_shared_alloc(size_t bytes)
{
	void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED) {
		perror("bench: mmap shared");
		exit(2);
	}
	return mem;
}

void bench_shared_free(void *mem, size_t bytes)
{
	munmap(mem, bytes);
}

void bench_gate_reset(struct bench_gate *gate)
{
	atomic_store(&gate->arrived, 0);
	atomic_store(&gate->open, 0);
	atomic_store(&gate->opened_ns, 0);
}

void bench_gate_pass(struct bench_gate *gate)
{
	atomic_fetch_add_explicit(&gate->arrived, 1, memory_order_acq_rel);
	/* Yield while waiting: there may be more contenders than cores, and a
	 * waiter must not steal the core of one that has not arrived yet. */
	while (!atomic_load_explicit(&gate->open, memory_order_acquire))
		sched_yield();
}

uint64_t bench_gate_open_when(struct bench_gate *gate, unsigned count, unsigned timeout_ms)
{
	uint64_t deadline = bench_now_ns() + (uint64_t)timeout_ms * 1000000u;
	bool all = true;
	while (atomic_load_explicit(&gate->arrived, memory_order_acquire) < count) {
		if (bench_now_ns() > deadline) {
			all = false;
			break;
		}
		sched_yield();
	}
	uint64_t now = bench_now_ns();
	atomic_store_explicit(&gate->opened_ns, now, memory_order_relaxed);
	atomic_store_explicit(&gate->open, 1, memory_order_release);
	return all ? now : 0;
}

static int compare_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

void bench_sort_u64(uint64_t *values, size_t count)
{
	qsort(values, count, sizeof *values, compare_u64);
}

uint64_t bench_percentile(const uint64_t *sorted, size_t count, double p)
{
	if (count == 0)
		return 0;
	/* Nearest rank: the smallest value with at least p% of samples at or below it. */
	double rank = p / 100.0 * (double)count;
	size_t index = (size_t)rank;
	if ((double)index < rank)
		index++;
	if (index > 0)
		index--;
	if (index >= count)
		index = count - 1;
	return sorted[index];
}

bool bench_parse_uint(const char *text, unsigned long min, unsigned long max, unsigned long *out)
{
	if (!text || *text < '0' || *text > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long value = strtoul(text, &end, 10);
	if (errno || *end != '\0' || value < min || value > max)
		return false;
	*out = value;
	return true;
}

bool bench_parse_counts(const char *text, unsigned *out, unsigned max, unsigned limit, unsigned *count)
{
	char buf[256];
	if (!text || strlen(text) >= sizeof buf)
		return false;
	strcpy(buf, text);
	unsigned n = 0;
	char *save = NULL;
	for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
		unsigned long value;
		if (n == max || !bench_parse_uint(item, 1, limit, &value))
			return false;
		out[n++] = (unsigned)value;
	}
	*count = n;
	return n > 0;
}

bool bench_workdir_create(const char *base, char *out, size_t out_len)
{
	if (!base)
		base = getenv("TMPDIR");
	if (!base || !*base)
		base = "/tmp";
	int len = snprintf(out, out_len, "%s/gpucap-bench-XXXXXX", base);
	if (len < 0 || (size_t)len >= out_len)
		return false;
	if (!mkdtemp(out)) {
		fprintf(stderr, "bench: cannot create a work directory under %s: %s\n", base,
		        strerror(errno));
		return false;
	}
	return true;
}

void bench_workdir_remove(const char *dir)
{
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *entry;
		char path[PATH_MAX];
		while ((entry = readdir(d))) {
			if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
				continue;
			snprintf(path, sizeof path, "%s/%s", dir, entry->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(dir);
}

uint64_t bench_random_next(uint64_t *state)
{
	/* splitmix64: full period, good enough spread, one multiply chain. */
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

uint64_t bench_random_size(uint64_t *state, uint64_t max_bytes)
{
	unsigned top = 0;
	while (top < 63 && (UINT64_C(2) << top) <= max_bytes)
		top++;
	uint64_t r = bench_random_next(state);
	unsigned bits = (unsigned)(r % (top + 1));
	uint64_t span = UINT64_C(1) << bits;
	uint64_t size = span + ((r >> 8) & (span - 1));
	return size > max_bytes ? max_bytes : size;
}

const char *bench_verdict(bool met)
{
	return met ? "met" : "missed";
}
