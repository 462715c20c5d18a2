/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Leased files: the pieces every gpucap file shared between processes needs
 * (the accounting region, the node schedule), in one place:
 *
 *   - the safe open: no symbolic link, never blocking (a FIFO planted at the
 *     path cannot hang the caller), fstat of the opened descriptor, a regular
 *     file only, one name (link count 1), and the owner check;
 *   - create-once under a lease: exactly one process initialises a new or
 *     half-made file, the others wait for it a bounded time;
 *   - magic and version checks;
 *   - slot leases: an OFD lease plus an in-process claim, so that the
 *     exclusion holds between the threads of one process too, and a
 *     reclaim mark that tells a slot being reclaimed from a live owner's;
 *   - the SIGBUS-safe read of a mapping another party may truncate
 *     (mapping_guard.c): map and guard in one call, and a copy that says
 *     whether the mapping stayed whole.
 *
 * Errors come back as codes; callers turn them into their own one-line
 * message (which variable to change, which file to remove).
 */
#ifndef GPUCAP_LEASED_FILE_H
#define GPUCAP_LEASED_FILE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform.h"

typedef enum gpucap_file_check {
	GPUCAP_FILE_OK = 0,
	GPUCAP_FILE_OPEN_FAILED, /* open(2) failed: see the errno */
	GPUCAP_FILE_SYMLINK,     /* the path is a symbolic link */
	GPUCAP_FILE_NOT_REGULAR, /* a FIFO, device, socket or directory */
	GPUCAP_FILE_LINKS,       /* more than one name (or none left) */
	GPUCAP_FILE_OWNER,       /* owned by another user, not shared with us */
} gpucap_file_check;

struct gpucap_file_rules {
	bool create;       /* create a missing file with mode */
	bool writable;     /* open read-write */
	uint32_t mode;     /* for create */
	bool group_shared; /* accept a file of our group with mode g+rw */
	bool any_owner;    /* accept any owner (observers, root tools) */
};

/* Open path by the rules. On GPUCAP_FILE_OK *fd is open and *info filled;
 * otherwise *fd is -1 and *error holds the errno for OPEN_FAILED. */
gpucap_file_check gpucap_file_open(const char *path, const struct gpucap_file_rules *rules, int *fd,
                                   struct gpucap_file_info *info, int *error);
/* The same for name in the directory dirfd (the node schedule's tenants'
 * files are opened relative to the node directory). */
gpucap_file_check gpucap_file_openat(int dirfd, const char *name, const struct gpucap_file_rules *rules,
                                     int *fd, struct gpucap_file_info *info, int *error);
/* The checks alone, on an open descriptor: regular file, one name, owner
 * (as rules allow). *error holds the errno when fstat failed. */
gpucap_file_check gpucap_file_check_fd(int fd, const struct gpucap_file_rules *rules,
                                       struct gpucap_file_info *info, int *error);

/* What a header's magic word says, for formats whose magic ends in a
 * version: the low family_bits name the format, the rest the version. */
typedef enum gpucap_magic_verdict {
	GPUCAP_MAGIC_MATCH = 0,
	GPUCAP_MAGIC_EMPTY,         /* zero: never initialised */
	GPUCAP_MAGIC_OTHER_VERSION, /* our format, another version */
	GPUCAP_MAGIC_FOREIGN,       /* not ours */
} gpucap_magic_verdict;
gpucap_magic_verdict gpucap_magic_check(uint64_t found, uint64_t expected, unsigned family_bits);

/*
 * Create-once: make the file at fd ready, exactly once among all processes.
 * is_ready(fd, arg) says whether it is; initialise(fd, arg) makes it so and
 * is called only with the init lease (OFD lock at lease_offset) held and the
 * file still not ready. Others wait (sleeping, backing off) while a process
 * holds the lease, at most timeout_ms; an initialiser that died is replaced
 * (its lease is gone). Returns 0 when ready, -EBUSY on timeout, -EPERM when
 * the file is not ready and the caller may not initialise (may_initialise
 * false and nobody initialising), or initialise's own negative result.
 */
int gpucap_file_init_once(int fd, uint64_t lease_offset, bool may_initialise, uint32_t timeout_ms,
                          bool (*is_ready)(int fd, void *arg), int (*initialise)(int fd, void *arg),
                          void *arg);

/* Slot leases: take the in-process claim (*claim, one per slot per open
 * file description) and then the OFD lease at offset; false when a thread
 * of this process or another process holds either. Drop releases the lease
 * and then the claim. An owner holds its slot this way for its life. */
bool gpucap_slot_lease_take(int fd, _Atomic uint8_t *claim, uint64_t offset);
void gpucap_slot_lease_drop(int fd, _Atomic uint8_t *claim, uint64_t offset);

/*
 * Reclaiming a slot whose owner is gone: the same claim and lease, with the
 * slot's reclaim mark (a second OFD lease, at mark) held around the lease:
 * taken after the claim and before the lease, dropped after the lease. A
 * claimer that finds the slot lease held can then tell a slot being
 * reclaimed, which is free again a few steps later, from one a live owner
 * holds (gpucap_slot_being_reclaimed). A live owner's slot costs one probe
 * (no mark is taken for it). False when the slot is held, claimed or marked.
 */
bool gpucap_slot_reclaim_take(int fd, _Atomic uint8_t *claim, uint64_t offset, uint64_t mark);
void gpucap_slot_reclaim_drop(int fd, _Atomic uint8_t *claim, uint64_t offset, uint64_t mark);

/* Whether a reclaimer holds the slot now: a thread of this descriptor holds
 * the claim, or another descriptor holds the mark. */
bool gpucap_slot_being_reclaimed(int fd, const _Atomic uint8_t *claim, uint64_t mark);

/* Map len bytes of fd shared, guarded (mapping_guard.c): *failed is raised
 * if the file is cut under the mapping. NULL and *error on failure. Unmap
 * with gpucap_platform_unmap. */
void *gpucap_map_guarded(int fd, size_t len, bool writable, _Atomic uint32_t *failed, int *error);

/* Copy len bytes out of a guarded mapping; false when the file was cut (the
 * copy then holds zeros where the pages went and must not be used). */
bool gpucap_guarded_copy(void *dst, const void *src, size_t len, const _Atomic uint32_t *failed);

#endif
