/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The files of the node schedule, private to src/schedule: this tenant's
 * own file (created whole or not at all, written with pwrite, removed by
 * its last user) and the bounded, read-only scan of the other tenants'
 * files (opened without following links or blocking, read into private
 * memory, every byte checked; never mapped).
 */
#ifndef GPUCAP_SCHED_FILE_H
#define GPUCAP_SCHED_FILE_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpucap/region.h"
#include "sched_format.h"
#include "sched_layout.h"

/* "gpucap-sched-" + UUID + "." + 16 hex digits + NUL */
#define SCHED_NAME_MAX (sizeof(GPUCAP_SCHED_FILE_PREFIX) + GPUCAP_UUID_MAX + 18)

struct sched_own {
	int fd;
	int record;
	uint64_t tenant;
	char name[SCHED_NAME_MAX];
};

/* The file name of tenant's file for the GPU gpu_uuid (a checked UUID). */
void sched_file_name(char *buf, size_t len, const char *gpu_uuid, uint64_t tenant);

/*
 * Open (creating it when missing) the tenant's file in the directory dirfd
 * (named dir in messages), take a shared users lock and claim a record.
 * Statuses as gpucap_sched_open's.
 */
gpucap_status sched_own_open(int dirfd, const char *dir, const char *gpu_uuid, uint64_t tenant,
                             struct sched_own *own, char *why, size_t why_len);

/* Write the own record (sealed here). 0 or -errno. */
int sched_own_write(const struct sched_own *own, struct sched_record *r);

/* The own file has no name any more (removed by root or by another
 * container of this user), or was never opened. */
bool sched_own_lost(const struct sched_own *own);

/* Mark the record idle, give it back, and remove the file when no other
 * process uses it any more. */
void sched_own_close(int dirfd, struct sched_own *own);

/* A forked child: close the inherited descriptor only (its locks stay the
 * parent's). */
void sched_own_forget(struct sched_own *own);

struct sched_scan_result {
	uint32_t peers;   /* entries filled */
	uint32_t refused; /* files at a tenant's name that were refused */
	uint32_t removed; /* files of this user's dead tenants removed */
};

/*
 * The active tenants other than own_tenant, from the files of gpu_uuid in
 * dir (read through dirfd), at most max of them, at most
 * GPUCAP_SCHED_SCAN_MAX directory entries looked at. Each file is opened
 * read-only without following a link or blocking, must be a regular file
 * with one name and the exact size, and is read with pread into private
 * memory; a header or record that fails its checks is ignored. why gets
 * one line about the first file refused.
 */
struct sched_scan_result sched_scan_peers(DIR *dir, int dirfd, const char *dir_name, const char *gpu_uuid,
                                          uint64_t own_tenant, uint32_t euid, uint64_t now_ns,
                                          struct sched_entry *out, uint32_t max, char *why, size_t why_len);

/* Write one line into why (when given): the reason a file was refused. */
__attribute__((format(printf, 3, 4))) void sched_say(char *why, size_t why_len, const char *fmt, ...);

#endif
