/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE /* F_OFD_SETLK, F_OFD_GETLK */
#include "clock.h"
#include "platform.h"

#include "file_stat.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int gpucap_platform_openat(int dirfd, const char *path, bool create, bool writable, uint32_t mode)
{
	/* O_NONBLOCK: a FIFO planted at the path must not hang the open (the
	 * caller then refuses it after fstat); it changes nothing for a
	 * regular file. */
	int flags = (writable ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;
	if (create)
		flags |= O_CREAT;
	int fd;
	do
		fd = openat(dirfd, path, flags, (mode_t)mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

int gpucap_platform_open(const char *path, bool create, bool writable, uint32_t mode)
{
	return gpucap_platform_openat(AT_FDCWD, path, create, writable, mode);
}

int gpucap_platform_fstat(int fd, struct gpucap_file_info *info)
{
	struct stat st;
	if (gpucap_fstat(fd, &st) != 0)
		return -errno;
	info->regular = S_ISREG(st.st_mode);
	info->size = (uint64_t)st.st_size;
	info->uid = (uint32_t)st.st_uid;
	info->gid = (uint32_t)st.st_gid;
	info->mode = (uint32_t)(st.st_mode & 07777);
	info->links = (uint32_t)st.st_nlink;
	return 0;
}

int gpucap_platform_chmod(int fd, uint32_t mode)
{
	return fchmod(fd, (mode_t)mode) == 0 ? 0 : -errno;
}

void gpucap_platform_close(int fd)
{
	if (fd >= 0)
		close(fd);
}

ssize_t gpucap_platform_pread(int fd, void *buf, size_t len, uint64_t offset)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

int gpucap_platform_reset_file(int fd, uint64_t size)
{
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)size) != 0)
		return -errno;
	int rc = posix_fallocate(fd, 0, (off_t)size);
	/* Some file systems cannot preallocate; there a later fault could still
	 * find the disk full, but nothing better is possible. */
	if (rc != 0 && rc != EOPNOTSUPP && rc != EINVAL)
		return -rc;
	return 0;
}

void *gpucap_platform_map(int fd, size_t len, bool writable, int *error)
{
	void *addr = mmap(NULL, len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
	if (addr == MAP_FAILED) {
		*error = errno;
		return NULL;
	}
	return addr;
}

void gpucap_platform_unmap(void *addr, size_t len)
{
	if (!addr)
		return;
	gpucap_mapping_unguard(addr);
	munmap(addr, len);
}

static struct flock lease_range(short type, uint64_t offset)
{
	struct flock lock;
	memset(&lock, 0, sizeof(lock));
	lock.l_type = type;
	lock.l_whence = SEEK_SET;
	lock.l_start = (off_t)offset;
	lock.l_len = 1;
	return lock; /* l_pid must be 0 for OFD locks */
}

int gpucap_lease_try(int fd, uint64_t offset)
{
	struct flock lock = lease_range(F_WRLCK, offset);
	for (;;) {
		if (fcntl(fd, F_OFD_SETLK, &lock) == 0)
			return 0;
		if (errno == EINTR)
			continue;
		return (errno == EACCES || errno == EAGAIN) ? -EAGAIN : -errno;
	}
}

int gpucap_lease_probe(int fd, uint64_t offset)
{
	struct flock lock = lease_range(F_WRLCK, offset);
	for (;;) {
		if (fcntl(fd, F_OFD_GETLK, &lock) == 0)
			return lock.l_type == F_UNLCK ? 0 : 1;
		if (errno == EINTR)
			continue;
		return -errno;
	}
}

void gpucap_lease_drop(int fd, uint64_t offset)
{
	struct flock lock = lease_range(F_UNLCK, offset);
	while (fcntl(fd, F_OFD_SETLK, &lock) != 0 && errno == EINTR) {
	}
}

/* Clocks and sleeps go through the clock seam (clock.h), which tests may
 * replace with simulated time. */
uint64_t gpucap_clock_monotonic_ns(void)
{
	return gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC);
}

uint64_t gpucap_clock_realtime_ns(void)
{
	return gpucap_clock_now(GPUCAP_CLOCK_REALTIME);
}

void gpucap_sleep_ns(uint64_t ns)
{
	gpucap_clock_sleep(ns);
}

bool gpucap_platform_in_group(uint32_t gid)
{
	if (getegid() == (gid_t)gid)
		return true;
	gid_t groups[256];
	int n = getgroups(256, groups);
	for (int i = 0; i < n; i++)
		if (groups[i] == (gid_t)gid)
			return true;
	return false;
}

uint32_t gpucap_platform_euid(void)
{
	return (uint32_t)geteuid();
}

int32_t gpucap_platform_pid(void)
{
	return (int32_t)getpid();
}

void gpucap_platform_comm(char *buf, size_t len)
{
	char name[17] = {0}; /* the kernel's task name: at most 16 bytes */
	if (prctl(PR_GET_NAME, name, 0, 0, 0) != 0)
		name[0] = '\0';
	snprintf(buf, len, "%s", name);
}
