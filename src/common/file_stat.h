/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stat(2) by system call, for code linked into libgpucap.so: glibc 2.33 gave
 * fstat, lstat and stat new symbol versions with no older ones to bind to
 * (they used to be inline wrappers), so calling them would make the library
 * unloadable under older glibc. The kernel's struct stat is glibc's on the
 * architectures gpucap builds for (x86-64, aarch64).
 * Needs _GNU_SOURCE (syscall, AT_EMPTY_PATH) in the including file.
 */
#ifndef GPUCAP_COMMON_FILE_STAT_H
#define GPUCAP_COMMON_FILE_STAT_H

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline int gpucap_fstat(int fd, struct stat *st)
{
	return (int)syscall(SYS_newfstatat, fd, "", st, AT_EMPTY_PATH);
}

static inline int gpucap_stat(const char *path, struct stat *st)
{
	return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, 0);
}

static inline int gpucap_lstat(const char *path, struct stat *st)
{
	return (int)syscall(SYS_newfstatat, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

#endif
