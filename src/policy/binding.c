#define _GNU_SOURCE /* F_OFD_SETLK, F_OFD_GETLK */
/* The container's one region under a limits file (binding.h). */
#include "binding.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int64_t gpucap_binding_offset(uint64_t region_identity)
{
	/* A mix of all 64 bits, so identities that differ only in high bits
	 * still differ after the mask. */
	uint64_t x = region_identity;
	x ^= x >> 33;
	x *= UINT64_C(0xff51afd7ed558ccd);
	x ^= x >> 33;
	x *= UINT64_C(0xc4ceb9fe1a85ec53);
	x ^= x >> 33;
	return (int64_t)(x & ((UINT64_C(1) << 62) - 1)) + 1;
}

/* Whether another open file description holds a lock in [start, start+len)
 * (len 0: to the end of all offsets). -1 when the kernel cannot say. */
static int held_by_other(int fd, int64_t start, int64_t len)
{
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

bool gpucap_binding_take(struct gpucap_binding *b, const char *file_path, uint64_t region_identity, char *err,
                         size_t err_len)
{
	b->fd = open(file_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (b->fd < 0) {
		snprintf(err, err_len,
		         "cannot open limits file %s to bind this process to its region: %s; make the file "
		         "readable",
		         file_path, strerror(errno));
		return false;
	}
	int64_t offset = gpucap_binding_offset(region_identity);
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
		    "cannot lock limits file %s to bind this process to its region: %s; the file must be on "
		    "a filesystem with open file description locks",
		    file_path, strerror(errno));
		gpucap_binding_release(b);
		return false;
	}
	int before = held_by_other(b->fd, 0, offset);
	int after = before == 0 ? held_by_other(b->fd, offset + 1, 0) : before;
	if (before == 0 && after == 0)
		return true;
	if (before < 0 || after < 0)
		snprintf(err, err_len,
		         "cannot query the locks of limits file %s: %s; the file must be on a filesystem "
		         "with open file description locks",
		         file_path, strerror(errno));
	else
		snprintf(
		    err, err_len,
		    "a live process under limits file %s uses another region than this one (the region was "
		    "deleted and made again, or named differently): the file's cap counts one region per "
		    "container; start this program again once the processes of the other region have exited",
		    file_path);
	gpucap_binding_release(b);
	return false;
}

int gpucap_binding_other_held(const char *file_path, uint64_t region_identity)
{
	int fd = open(file_path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return -1;
	int64_t offset = gpucap_binding_offset(region_identity);
	int held = held_by_other(fd, 0, offset);
	if (held == 0)
		held = held_by_other(fd, offset + 1, 0);
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
