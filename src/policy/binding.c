/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE /* F_OFD_SETLK, F_OFD_GETLK */
/* The container's one region under a limits file (binding.h). */
#include "binding.h"
#include "file_stat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Offsets: [scope * 2^32 + 1, scope * 2^32 + 2^32) for 2^30 scopes, all
 * below 2^62; the region's part is never 0. */
#define REGION_BITS 32
#define SCOPE_BITS  30

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return x;
}

static int64_t scope_start(uint64_t scope)
{
	return (int64_t)((mix(scope) & ((UINT64_C(1) << SCOPE_BITS) - 1)) << REGION_BITS);
}

int64_t gpucap_binding_offset(uint64_t scope, uint64_t region_identity)
{
	uint64_t part = mix(region_identity) & ((UINT64_C(1) << REGION_BITS) - 1);
	return scope_start(scope) + (int64_t)(part ? part : 1);
}

uint64_t gpucap_binding_scope(void)
{
	struct stat st;
	if (gpucap_stat("/proc/self/ns/mnt", &st) != 0)
		return 0;
	return ((uint64_t)st.st_dev << 32) ^ (uint64_t)st.st_ino;
}

/* Whether another open file description holds a lock in [start, start+len).
 * -1 when the kernel cannot say. */
static int held_by_other(int fd, int64_t start, int64_t len)
{
	if (len <= 0)
		return 0;
	struct flock probe;
	memset(&probe, 0, sizeof(probe));
	probe.l_type = F_WRLCK;
	probe.l_whence = SEEK_SET;
	probe.l_start = (off_t)start;
	probe.l_len = (off_t)len;
	if (fcntl(fd, F_OFD_GETLK, &probe) != 0)
		return -1;
	return probe.l_type != F_UNLCK;
}

/* Whether a lock is held in the scope at another offset than own. */
static int other_in_scope(int fd, uint64_t scope, int64_t own)
{
	int64_t start = scope_start(scope), end = start + (INT64_C(1) << REGION_BITS);
	int held = held_by_other(fd, start, own - start);
	return held == 0 ? held_by_other(fd, own + 1, end - own - 1) : held;
}

static int open_file(const char *path)
{
	return open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
}

bool gpucap_binding_take(struct gpucap_binding *b, const char *file_path, uint64_t scope,
                         uint64_t region_identity, char *err, size_t err_len)
{
	b->fd = open_file(file_path);
	if (b->fd < 0) {
		snprintf(
		    err, err_len,
		    "cannot open limits file %s to bind this process to its region: %s; make the file readable",
		    file_path, strerror(errno));
		return false;
	}
	int64_t offset = gpucap_binding_offset(scope, region_identity);
	struct flock own;
	memset(&own, 0, sizeof(own));
	own.l_type = F_RDLCK;
	own.l_whence = SEEK_SET;
	own.l_start = (off_t)offset;
	own.l_len = 1;
	/* Taken before looking, so that of two processes on different regions
	 * the one that looks later sees the other's lock. */
	if (fcntl(b->fd, F_OFD_SETLK, &own) != 0) {
		snprintf(
		    err, err_len,
		    "cannot lock limits file %s to bind this process to its region: %s; the file must be on a filesystem with open file description locks",
		    file_path, strerror(errno));
		gpucap_binding_release(b);
		return false;
	}
	int other = other_in_scope(b->fd, scope, offset);
	if (other == 0)
		return true;
	if (other < 0)
		snprintf(
		    err, err_len,
		    "cannot query the locks of limits file %s: %s; the file must be on a filesystem with open file description locks",
		    file_path, strerror(errno));
	else
		snprintf(
		    err, err_len,
		    "a live process under limits file %s uses another region than this one (the region was deleted and made again, or named differently): the file's cap counts one region per container; start this program again once the processes of the other region have exited",
		    file_path);
	gpucap_binding_release(b);
	return false;
}

int gpucap_binding_other_held(const char *file_path, uint64_t scope, uint64_t region_identity)
{
	int fd = open_file(file_path);
	if (fd < 0)
		return -1;
	int held = other_in_scope(fd, scope, gpucap_binding_offset(scope, region_identity));
	int saved = errno;
	close(fd);
	errno = saved;
	return held;
}

void gpucap_binding_release(struct gpucap_binding *b)
{
	if (b->fd >= 0)
		close(b->fd); /* the last descriptor of the description: the lock goes */
	b->fd = -1;
}

void gpucap_binding_forget(struct gpucap_binding *b)
{
	/* The parent's open file description stays open in the parent, and so
	 * does its lock. */
	if (b->fd >= 0)
		close(b->fd);
	b->fd = -1;
}
