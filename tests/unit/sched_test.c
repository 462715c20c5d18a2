/* SPDX-License-Identifier: Apache-2.0 */
/* Helpers of the node schedule's unit tests (sched_test.h). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sched_test.h"

const char *node_dir(const char *name)
{
	const char *dir = scratch_path(name);
	assert_int_equal(mkdir(dir, 0755), 0);
	return dir;
}

const char *tenant_name(const char *uuid, uint64_t tenant)
{
	static char names[4][256];
	static int next;
	char *out = names[next++ % 4];
	snprintf(out, sizeof(names[0]), "%s%s.%016llx", GPUCAP_SCHED_FILE_PREFIX, uuid,
	         (unsigned long long)tenant);
	return out;
}

const char *tenant_path(const char *dir, const char *uuid, uint64_t tenant)
{
	static char paths[4][1024];
	static int next;
	char *out = paths[next++ % 4];
	snprintf(out, sizeof(paths[0]), "%s/%s", dir, tenant_name(uuid, tenant));
	return out;
}

int dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(d);
	return n;
}

gpucap_sched *sched_open_ok(const char *dir, const char *uuid, uint64_t tenant)
{
	char why[512] = "";
	gpucap_sched *s = NULL;
	gpucap_status st = gpucap_sched_open(dir, uuid, tenant, &s, why, sizeof(why));
	if (st != GPUCAP_OK)
		fprintf(stderr, "open failed: %s\n", why);
	assert_int_equal(st, GPUCAP_OK);
	assert_non_null(s);
	return s;
}

void expect_open_fails(const char *dir, const char *uuid, uint64_t tenant, gpucap_status want,
                       const char *needle)
{
	char why[512] = "";
	gpucap_sched *s = SENTINEL_HANDLE;
	gpucap_status st = gpucap_sched_open(dir, uuid, tenant, &s, why, sizeof(why));
	if (st != want)
		fprintf(stderr, "status %d, not %d: %s\n", st, want, why);
	assert_int_equal(st, want);
	assert_null(s);
	assert_true(why[0] != '\0');
	assert_null(strchr(why, '\n'));
	if (needle && !strstr(why, needle)) {
		fprintf(stderr, "why \"%s\" lacks \"%s\"\n", why, needle);
		fail();
	}
}

void settle(gpucap_sched **handles, int n, uint64_t now_ns)
{
	for (int round = 0; round < 2; round++)
		for (int i = 0; i < n; i++)
			gpucap_sched_refresh(handles[i], now_ns, NULL, 0);
}

struct gpucap_sched_window window_of(const gpucap_sched *s, uint32_t duty_ppm, uint64_t now_ns)
{
	struct gpucap_sched_window w;
	memset(&w, 0xa5, sizeof(w));
	gpucap_sched_window(s, duty_ppm, now_ns, &w);
	return w;
}

void raw_pread(const char *path, off_t offset, void *data, size_t len)
{
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, data, len, offset), (ssize_t)len);
	close(fd);
}

void raw_pwrite(const char *path, off_t offset, const void *data, size_t len)
{
	int fd = open(path, O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, len, offset), (ssize_t)len);
	close(fd);
}

struct sched_record record_read(const char *dir, const char *uuid, uint64_t tenant, unsigned index)
{
	struct sched_record r;
	raw_pread(tenant_path(dir, uuid, tenant), SCHED_HEADER_SIZE + (off_t)index * SCHED_RECORD_SIZE, &r,
	          sizeof(r));
	return r;
}

void record_write(const char *dir, const char *uuid, uint64_t tenant, unsigned index,
                  const struct sched_record *r)
{
	raw_pwrite(tenant_path(dir, uuid, tenant), SCHED_HEADER_SIZE + (off_t)index * SCHED_RECORD_SIZE, r,
	           sizeof(*r));
}

void set_mtime_ago(const char *path, int seconds)
{
	struct timespec t[2];
	assert_int_equal(clock_gettime(CLOCK_REALTIME, &t[0]), 0);
	t[0].tv_sec -= seconds;
	t[1] = t[0];
	assert_int_equal(utimensat(AT_FDCWD, path, t, AT_SYMLINK_NOFOLLOW), 0);
}

void make_file(const char *path, size_t len, mode_t mode)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, mode);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)len), 0);
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

int forge_peer_raw(const char *dir, const char *uuid, uint64_t tenant, uint32_t duty_ppm, uint64_t active_ns)
{
	static unsigned char buf[SCHED_FILE_SIZE];
	memset(buf, 0, sizeof(buf));
	struct sched_file_header h = {
	    .magic = SCHED_MAGIC,
	    .format_version = GPUCAP_SCHED_FORMAT_VERSION,
	    .header_size = SCHED_HEADER_SIZE,
	    .record_size = SCHED_RECORD_SIZE,
	    .record_count = GPUCAP_SCHED_RECORDS,
	    .tenant = tenant,
	};
	sched_seal_header(&h);
	memcpy(buf, &h, sizeof(h));
	struct sched_record r = {
	    .tenant = tenant, .active_ns = active_ns, .duty_ppm = duty_ppm, .cap_ppm = duty_ppm};
	sched_seal_record(&r);
	memcpy(buf + SCHED_HEADER_SIZE, &r, sizeof(r));
	int fd = open(tenant_path(dir, uuid, tenant), O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return -errno;
	int rc = pwrite(fd, buf, sizeof(buf), 0) == (ssize_t)sizeof(buf) ? 0 : -EIO;
	close(fd);
	return rc;
}

void forge_peer(const char *dir, const char *uuid, uint64_t tenant, uint32_t duty_ppm, uint64_t active_ns)
{
	assert_int_equal(forge_peer_raw(dir, uuid, tenant, duty_ppm, active_ns), 0);
}

void remove_peer(const char *dir, const char *uuid, uint64_t tenant)
{
	assert_int_equal(unlink(tenant_path(dir, uuid, tenant)), 0);
}
