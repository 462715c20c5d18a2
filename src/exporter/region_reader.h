/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Reading region files that other users can write, from the node's root
 * tools: `gpucap status`, `top`, `resolve`, `set`, `reap`, `doctor` and the
 * exporter all go through here, so one set of rules holds for all of them.
 *
 * A tenant controls its region's directory. It can swap the file for a FIFO,
 * a device node, a symbolic link or a hard link to someone else's file
 * between any two system calls, and it can truncate the file while a tool
 * has it mapped. So:
 *   - a path is opened with O_NOFOLLOW|O_NONBLOCK|O_NOCTTY, and the open
 *     descriptor (not the path) is checked: a regular file with one link;
 *   - every access to a mapping runs under a SIGBUS guard, so a file
 *     truncated under a reader fails that read instead of killing the tool.
 *
 * This library links into the CLI whether or not the exporter is built.
 */
#ifndef GPUCAP_REGION_READER_H
#define GPUCAP_REGION_READER_H

#include <gpucap/region.h>

#include <stdbool.h>
#include <stddef.h>

enum reader_path {
	READER_PATH_OK,      /* a regular file with one link */
	READER_PATH_GONE,    /* nothing there (ENOENT, ENOTDIR) */
	READER_PATH_EMPTY,   /* 0 bytes or a blank header: being created, or abandoned */
	READER_PATH_REFUSED, /* anything else: err says what and how to fix it */
};

/*
 * Look at the path without following a link, then open it read-only with
 * O_NOFOLLOW|O_NONBLOCK|O_NOCTTY and check the open descriptor: a regular
 * file, one link, the same file the first look saw. Nothing but a regular
 * file is ever opened, and no open can block. An empty file, or one whose
 * first bytes are all zero, is reported at once (READER_PATH_EMPTY), never
 * waited for or initialised: the tools only read regions that exist. err gets one line (no "gpucap: " prefix)
 * unless READER_PATH_OK.
 */
enum reader_path reader_check_path(const char *path, char *err, size_t err_len);

/*
 * Run fn(arg) under the SIGBUS guard, installing it first if need be.
 * Returns false if fn faulted with SIGBUS, in which case it was cut short:
 * fn must keep anything it needs afterwards in memory reached through arg,
 * never in locals. Other threads and code outside such a call keep the
 * default SIGBUS action.
 */
bool reader_run_guarded(void (*fn)(void *), void *arg);

/* Install the guard's handler. Idempotent; reader_run_guarded calls it. */
void reader_install_fault_guard(void);

enum reader_result {
	READER_OK,
	READER_GONE,   /* the path does not exist (any more) */
	READER_FAILED, /* err says why, in one line */
};

struct reader_attach {
	bool observer;            /* read-only mapping, no slot */
	unsigned init_timeout_ms; /* 0: the region code's default */
};

/*
 * Check the path (reader_check_path), then attach the region under the
 * guard, existing files only. Observers map it read-only; the others map it
 * writable, for the root tools that record host PIDs, set limits or reclaim.
 * On READER_OK every later access to *out must run under reader_run_guarded
 * too. err gets one line on failure, without the "gpucap: " prefix. status
 * (may be NULL) gets the region code's verdict: GPUCAP_ERR_PERMISSION for a
 * path refused before opening, GPUCAP_ERR_BUSY for an empty file,
 * GPUCAP_ERR_IO for one that is gone or shrank under the reader.
 */
enum reader_result reader_attach(const char *path, const struct reader_attach *how, gpucap_region **out,
                                 gpucap_status *status, char *err, size_t err_len);

/* Copy the region under the guard. NULL when memory ran out or the file
 * shrank during the copy; err then says which. A copy cut short by the
 * fault is not freed (nothing reaches it any more): a known, bounded leak
 * per truncation. */
struct gpucap_snapshot *reader_snapshot(gpucap_region *region, char *err, size_t err_len);

/* reader_attach as an observer, reader_snapshot, detach. */
enum reader_result reader_read(const char *path, unsigned init_timeout_ms, struct gpucap_snapshot **out,
                               char *err, size_t err_len);

#endif
