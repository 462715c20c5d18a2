/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel seam: files, mappings, leases and clocks used by the region.
 * Nothing else in src/region issues system calls. */
#ifndef GPUCAP_PLATFORM_H
#define GPUCAP_PLATFORM_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct gpucap_file_info {
	bool regular;
	uint64_t size;
	uint32_t uid;
	uint32_t gid;
	uint32_t mode;  /* permission bits */
	uint32_t links; /* hard links (names) */
};

/* Open the region file without following a final symbolic link, without
 * blocking (O_NONBLOCK: a FIFO cannot hang it), close-on-exec.
 * Returns an fd or -errno. With create, a missing file is created with mode. */
int gpucap_platform_open(const char *path, bool create, bool writable, uint32_t mode);
/* The same, relative to the directory dirfd (AT_FDCWD: the working one). */
int gpucap_platform_openat(int dirfd, const char *path, bool create, bool writable, uint32_t mode);
int gpucap_platform_fstat(int fd, struct gpucap_file_info *info);
/* Set the exact permission bits (umask does not apply). 0 or -errno. */
int gpucap_platform_chmod(int fd, uint32_t mode);
void gpucap_platform_close(int fd);

/* Read len bytes at offset; returns bytes read or -errno. */
ssize_t gpucap_platform_pread(int fd, void *buf, size_t len, uint64_t offset);
/* Make the file exactly size bytes of zeros, with the blocks allocated now so
 * a full disk is an error here and never a SIGBUS later. 0 or -errno. */
int gpucap_platform_reset_file(int fd, uint64_t size);

void *gpucap_platform_map(int fd, size_t len, bool writable, int *error);
/* Unmaps, and drops the mapping's guard if it has one. */
void gpucap_platform_unmap(void *addr, size_t len);

/* Mapping guard (mapping_guard.c): from now on, a SIGBUS at an address in
 * [base, base + len) (the file was truncated under the mapping) raises
 * *failed and replaces the whole range with private zero pages, so the
 * faulting access completes instead of killing the process. The owner of the
 * mapping checks *failed after each operation and fails closed. SIGBUS at
 * any other address goes to the handler installed before (or the default
 * action). 0, -EINVAL, or -ENOSPC when 256 mappings are guarded already. */
int gpucap_mapping_guard(void *base, size_t len, _Atomic uint32_t *failed);
/* Stop guarding the mapping at base (before unmapping it). */
void gpucap_mapping_unguard(void *base);

/* Leases: exclusive OFD byte-range locks. The kernel drops them when the last
 * descriptor of the open file description closes, including on SIGKILL.
 * try: 0 when taken, -EAGAIN when another description holds it, other -errno.
 * probe: 1 when another description holds it, 0 when free, -errno. */
int gpucap_lease_try(int fd, uint64_t offset);
int gpucap_lease_probe(int fd, uint64_t offset);
void gpucap_lease_drop(int fd, uint64_t offset);

uint64_t gpucap_clock_monotonic_ns(void);
uint64_t gpucap_clock_realtime_ns(void);
void gpucap_sleep_ns(uint64_t ns);

/* The caller's groups include gid. */
bool gpucap_platform_in_group(uint32_t gid);
uint32_t gpucap_platform_euid(void);
int32_t gpucap_platform_pid(void);
/* The task name (as in /proc/self/comm) into buf (NUL-terminated, at most len-1 bytes). */
void gpucap_platform_comm(char *buf, size_t len);

#endif
