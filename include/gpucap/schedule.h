/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpucap node schedule: capped containers on one GPU take turns.
 *
 * Two containers capped at 30% and 70% that each hold their own duty cycle
 * overlap their ON phases at random, and the GPU time-slices between their
 * contexts while they overlap: both lose work to the switches. In a
 * directory every container of the node mounts (GPUCAP_NODE_DIR) each
 * container (a *tenant*: one region) keeps a small file per GPU,
 * gpucap-sched-<GPU UUID>.<tenant id, 16 hex digits>, which only it writes.
 * Every process reads the other tenants' files and computes the same layout:
 * each active tenant a window of a common period, as long as its duty, and a
 * gate starts ON phases only inside its own tenant's window.
 *
 * A tenant's file holds a header and GPUCAP_SCHED_RECORDS process records.
 * Each launching process of the tenant owns a record by an OFD lease (the
 * kernel drops it when the process dies) and writes there, with pwrite, its
 * duty, its cap and the time of its latest ON phase. A tenant takes part
 * while a record was stamped in the last GPUCAP_SCHED_ACTIVE_NS.
 *
 * Trust (docs/threat-model.md, "The node schedule"): a tenant's file is
 * created whole (under a private name, then renamed) with mode 0644 by its
 * owner; nobody maps anyone's file, so truncating one crashes no reader;
 * everything read is checked (size, magic, version, checksums, one tenant
 * per file) and a bad file is ignored with one line. The length of a
 * tenant's window is its own duty, never read from any file: the others'
 * entries only decide where it lies, so a flood of fake tenants can move a
 * window, never shorten it. When claims exceed the period, windows overlap
 * (the GPU then time-slices, as without a schedule); no one's is shrunk.
 *
 * Concurrency: touch is a few relaxed stores into the handle (any thread);
 * refresh (one thread: gpucap's controller) writes the own record and reads
 * the peers with pread, then publishes the layout in the handle; window is
 * a bounded read of what refresh published. No lock, no wait, no system
 * call outside refresh, open and close. Clocks are CLOCK_MONOTONIC, which
 * every container of a host shares.
 */
#ifndef GPUCAP_SCHEDULE_H
#define GPUCAP_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpucap/region.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GPUCAP_SCHED_FORMAT_VERSION 2u
/* Process records per tenant file. A process that finds none runs without a
 * window (its own duty cycle still holds its cap). */
#define GPUCAP_SCHED_RECORDS 64u
/* At most this many other active tenants are laid out, at most this many of
 * them with files of one user, and at most this many directory entries
 * looked at per refresh: a flooded directory costs a bounded read, one user's
 * flood leaves room for the others, and at worst a flood takes coordination
 * away (windows overlap), never a window. */
#define GPUCAP_SCHED_PEERS_MAX         256u
#define GPUCAP_SCHED_PEERS_PER_UID_MAX 64u
#define GPUCAP_SCHED_SCAN_MAX          4096u
/* The common period, the same in every gpucap of a format. Long enough that the
 * two context switches per period and a phase spilling past a window's end
 * cost about 1%; short enough that a tenant never waits long for its turn. */
#define GPUCAP_SCHED_PERIOD_NS UINT64_C(100000000)
#define GPUCAP_SCHED_ACTIVE_NS UINT64_C(1000000000)
/* A layout older than this (refresh stopped) is not used: the tenant falls
 * back to its own duty cycle. */
#define GPUCAP_SCHED_LAYOUT_STALE_NS UINT64_C(2000000000)
#define GPUCAP_SCHED_PPM             1000000u
#define GPUCAP_SCHED_FILE_PREFIX     "gpucap-sched-"

typedef struct gpucap_sched gpucap_sched;

/*
 * open: this tenant's (nonzero) schedule file for the GPU named gpu_uuid in
 * dir (created whole when missing, mode 0644, owned by this process's user),
 * with a record claimed for this process. On failure *out is NULL and why
 * holds one line naming the file and what to do:
 *   GPUCAP_ERR_INVALID     bad dir, uuid or tenant
 *   GPUCAP_ERR_PERMISSION  dir or the file not writable, or the file is a
 *                          symbolic link, not a regular file, has other
 *                          names (hard links) or another owner
 *   GPUCAP_ERR_CORRUPT     the file is damaged and still in use
 *   GPUCAP_ERR_BUSY        the file is being made or removed: try again soon
 *   GPUCAP_ERR_FULL        every record is taken
 *   GPUCAP_ERR_IO          anything else the file system refused (a full
 *                          disk included: nothing is left behind)
 * The layout is empty (not shared) until the first refresh.
 */
gpucap_status gpucap_sched_open(const char *dir, const char *gpu_uuid, uint64_t tenant, gpucap_sched **out,
                                char *why, size_t why_len);

/* Give the record back, remove the file when this was its last user, and
 * release everything. */
void gpucap_sched_close(gpucap_sched *sched);

/* A forked child: forget the parent's handle without touching its record
 * (the lease belongs to the parent's open file). */
void gpucap_sched_forget(gpucap_sched *sched);

/* This process is about to run work under duty_ppm (1..GPUCAP_SCHED_PPM),
 * the time share its tenant's cap_ppm comes to. Relaxed stores into the
 * handle only; the next refresh writes them to the file. Any thread. */
void gpucap_sched_touch(gpucap_sched *sched, uint32_t duty_ppm, uint32_t cap_ppm, uint64_t now_ns);

/*
 * One thread at a time (gpucap's controller): write this process's record
 * when it changed (or every GPUCAP_SCHED_ACTIVE_NS / 10 while active), read
 * the other tenants' files and publish the layout that window reads.
 * Returns how many files at a tenant's name were refused (a link, not a
 * regular file, other names, wrong size or header); why gets one line
 * about the first of them.
 */
uint32_t gpucap_sched_refresh(gpucap_sched *sched, uint64_t now_ns, char *why, size_t why_len);

struct gpucap_sched_window {
	bool shared;        /* at least one other tenant is active: take turns */
	uint64_t period_ns; /* the common period */
	uint64_t offset_ns; /* where this tenant's window starts in each period */
	uint64_t length_ns; /* its length: duty_ppm of the period, whatever others claim */
	uint32_t tenants;   /* active tenants laid out, this one included */
	uint32_t total_ppm; /* their duties summed (over GPUCAP_SCHED_PPM: windows overlap) */
	uint32_t caps_ppm;  /* their caps summed (a duty stands in for a cap unknown) */
};

/* This tenant's window as of now_ns, for a duty of duty_ppm, from the layout
 * the latest refresh published (not shared when there is none, or it is
 * older than GPUCAP_SCHED_LAYOUT_STALE_NS). Any thread; never waits. */
void gpucap_sched_window(const gpucap_sched *sched, uint32_t duty_ppm, uint64_t now_ns,
                         struct gpucap_sched_window *out);

/*
 * When a new ON phase may start under window w: if now_ns is inside the
 * window, returns now_ns and sets *until_ns to the window's end; otherwise
 * returns the next opening. Without sharing: now_ns, *until_ns UINT64_MAX.
 */
uint64_t gpucap_sched_next_open(const struct gpucap_sched_window *w, uint64_t now_ns, uint64_t *until_ns);

/* The record this handle owns (tests and status). */
int gpucap_sched_slot(const gpucap_sched *sched);

#ifdef __cplusplus
}
#endif

#endif
