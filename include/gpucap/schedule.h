/*
 * gpucap node schedule: capped containers on one GPU take turns.
 *
 * Two containers capped at 30% and 70% that each hold their own duty cycle
 * overlap their ON phases at random, and the GPU time-slices between their
 * contexts while they overlap: both lose work to the switches. A schedule
 * file per GPU, in a directory every container of the node mounts
 * (GPUCAP_NODE_DIR), lets them agree on a common period instead: each
 * container (a *tenant*: one region) gets a window of the period as long as
 * its duty, the windows laid end to end in the order of the tenants' ids, and
 * a gate starts ON phases only inside its tenant's window.
 *
 * The file holds a header and a table of process slots. Each launching
 * process of a capped device owns one slot by an OFD lease on the file (the
 * kernel drops it when the process dies, however it dies) and writes into it
 * its tenant, its duty and, at every ON phase it starts, the time. A tenant
 * takes part while one of its slots was written in the last
 * GPUCAP_SCHED_ACTIVE_NS: a dead or idle tenant's window disappears within
 * that time, without anyone waiting for it or guessing from PIDs.
 *
 * Trust: every process of the node can write the file. Nothing read from it
 * can raise a tenant above its own duty (its window is at most its duty of
 * the period); hostile contents can only shift or shorten windows, and
 * contents out of range are ignored or clamped.
 *
 * Concurrency: open claims a slot with non-blocking leases; touch and window
 * are plain loads and stores on the mapping (no system call, no wait).
 * Clocks are CLOCK_MONOTONIC, which every container of a host shares.
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

#define GPUCAP_SCHED_FORMAT_VERSION 1u
/* Process slots per GPU. A process that finds none runs without a window
 * (its own duty cycle still holds its cap). */
#define GPUCAP_SCHED_SLOTS 128u
/* The common period, written by the file's creator. Long enough that the
 * two context switches per period and a phase spilling past a window's end
 * cost about 1%; short enough that a tenant never waits long for its turn. */
#define GPUCAP_SCHED_PERIOD_NS     UINT64_C(100000000)
#define GPUCAP_SCHED_PERIOD_MIN_NS UINT64_C(10000000)
#define GPUCAP_SCHED_PERIOD_MAX_NS UINT64_C(1000000000)
#define GPUCAP_SCHED_ACTIVE_NS     UINT64_C(1000000000)
#define GPUCAP_SCHED_PPM           1000000u
#define GPUCAP_SCHED_FILE_PREFIX   "gpucap-sched-"

typedef struct gpucap_sched gpucap_sched;

/*
 * open: the schedule file of the GPU named gpu_uuid in dir (created when
 * missing, mode 0666: the directory's permissions decide who takes part),
 * with a slot claimed for tenant (nonzero). On failure *out is NULL and why
 * holds one line naming the file and what to do:
 *   GPUCAP_ERR_INVALID     bad dir, uuid or tenant
 *   GPUCAP_ERR_PERMISSION  a symbolic link, not a regular file (a directory
 *                          included), a file with other names (hard links),
 *                          or not writable
 *   GPUCAP_ERR_CORRUPT     not a gpucap schedule file, or a damaged header
 *   GPUCAP_ERR_VERSION     another format version
 *   GPUCAP_ERR_BUSY        another process is creating it: try again later
 *   GPUCAP_ERR_FULL        every slot is taken
 *   GPUCAP_ERR_IO          anything else the file system refused
 */
gpucap_status gpucap_sched_open(const char *dir, const char *gpu_uuid, uint64_t tenant, gpucap_sched **out,
                                char *why, size_t why_len);

/* Give the slot back and release everything. */
void gpucap_sched_close(gpucap_sched *sched);

/* A forked child: forget the parent's handle without touching its slot (the
 * lease belongs to the parent's open file). */
void gpucap_sched_forget(gpucap_sched *sched);

/* This process is about to run work under duty_ppm (1..GPUCAP_SCHED_PPM),
 * the time share its tenant's cap_ppm comes to. */
void gpucap_sched_touch(gpucap_sched *sched, uint32_t duty_ppm, uint32_t cap_ppm, uint64_t now_ns);

struct gpucap_sched_window {
	bool shared;        /* at least one other tenant is active: take turns */
	uint64_t period_ns; /* the common period */
	uint64_t offset_ns; /* where this tenant's window starts in each period */
	uint64_t length_ns; /* its length: at most duty_ppm of the period */
	uint32_t tenants;   /* active tenants, this one included */
	uint32_t total_ppm; /* their duties summed (before any shrinking) */
	uint32_t caps_ppm;  /* their caps summed (a duty stands in for a cap unknown) */
};

/* This tenant's window as of now_ns, for a duty of duty_ppm. */
void gpucap_sched_window(const gpucap_sched *sched, uint32_t duty_ppm, uint64_t now_ns,
                         struct gpucap_sched_window *out);

/*
 * When a new ON phase may start under window w: if now_ns is inside the
 * window, returns now_ns and sets *until_ns to the window's end; otherwise
 * returns the next opening. Without sharing: now_ns, *until_ns UINT64_MAX.
 */
uint64_t gpucap_sched_next_open(const struct gpucap_sched_window *w, uint64_t now_ns, uint64_t *until_ns);

/* The slot this handle owns (tests and status). */
int gpucap_sched_slot(const gpucap_sched *sched);

#ifdef __cplusplus
}
#endif

#endif
