/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gpucap accounting region: the public API.
 *
 * A region is one memory-mapped file shared by every process of a container.
 * It holds a device table (keyed by GPU UUID: limit, charged bytes, peak, SM
 * limit) and a table of process slots. Processes update it without locks and
 * any of them may die at any instruction.
 *
 * Concurrency contract
 * --------------------
 * Every operation below states: the memory ordering it provides, what it may
 * run alongside, and its worst-case wait. "Any" means any number of threads
 * of any number of processes.
 *
 *   operation               may run alongside              worst-case wait
 *   ----------------------  -----------------------------  -------------------------
 *   attach                  any operation                  init_timeout_ms, only while
 *                                                          another process initialises
 *                                                          a new file
 *   claim_slot              any operation                  none while a slot is free or held by
 *                                                          a live owner; when the only other
 *                                                          slots are being reclaimed, it looks
 *                                                          again until their reclaimers free
 *                                                          them (a few atomic steps per device
 *                                                          each), at most init_timeout_ms: a
 *                                                          stalled reclaimer then gives FULL
 *   device_register         any operation                  none (lock-free)
 *   reserve / release       any operation                  none between processes (lock-free);
 *                                                          within one, a thread yields only
 *                                                          while all 16 lanes of its slot are
 *                                                          busy (more than 16 of its own
 *                                                          threads inside an operation), for
 *                                                          its own threads, each a few steps
 *                                                          from done
 *   snapshot                any operation                  none (bounded retries)
 *   reclaim_dead            any operation                  none (non-blocking leases)
 *   set_limit / set_sm      any operation                  none
 *   detach                  any operation on other handles none; the caller's own threads
 *                                                          must have stopped using it
 *   retire                  any operation, the caller's    about 1 s at most, only while
 *                           own threads' included          its own threads finish a lane
 *                                                          operation
 *   note_refusal            any operation                  none (two relaxed adds)
 *
 * The protocol behind this table (who writes each word, linearization
 * points, the release/acquire pairs, the bounds relied on) is argued in
 * docs/region-protocol.md.
 *
 * Lock-free here means: a thread never waits for another thread or process
 * to make progress. A stalled or dead peer cannot block anyone; a CAS retry
 * only happens because some other operation completed.
 *
 * Crash safety: each process slot is a lease the kernel holds for its owner
 * (an OFD byte-range lock on the region file). When the owner dies, for any
 * reason, the lease disappears and the slot's charges are returned exactly
 * once by whoever reclaims it. Process IDs are never used to decide liveness.
 *
 * Truncation: the file is shared with every process of the container, and a
 * page of a shared mapping past the file's end raises SIGBUS. The region
 * guards each mapping it makes (src/platform/mapping_guard.c): a SIGBUS at
 * an address inside a region mapping makes the handle fail closed and puts
 * private zero pages in place of the mapping, so the access completes; a
 * SIGBUS anywhere else goes to the handler the application had installed
 * before (or takes the default action). The SIGBUS handler is installed once
 * per process, at the first attach, and chains to the previous one; an
 * application that replaces it afterwards takes such faults itself.
 */
#ifndef GPUCAP_REGION_H
#define GPUCAP_REGION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GPUCAP_REGION_DEFAULT_PATH   "/tmp/cudevshr.cache"
#define GPUCAP_REGION_FORMAT_VERSION 2u

/* Largest byte count the region can hold for one device (256 TiB - 1). A
 * limit at or above it means "no limit". */
#define GPUCAP_BYTES_MAX ((UINT64_C(1) << 48) - 1)
#define GPUCAP_UNLIMITED GPUCAP_BYTES_MAX

#define GPUCAP_UUID_MAX 96
/* Devices a region can hold, and CUDA ordinals a process can use: the one
 * definition of the limit. */
#define GPUCAP_MAX_DEVICES 64
#define GPUCAP_COMM_MAX    32

typedef enum gpucap_status {
	GPUCAP_OK = 0,
	GPUCAP_ERR_OVER_LIMIT, /* the reservation would pass the device limit */
	GPUCAP_ERR_INVALID,    /* a bad argument from the caller */
	GPUCAP_ERR_IO,         /* the file system refused (permissions, space, ...) */
	GPUCAP_ERR_CORRUPT,    /* the file is damaged or not a gpucap region */
	GPUCAP_ERR_VERSION,    /* the file has another format version */
	GPUCAP_ERR_FULL,       /* no free slot or device entry */
	GPUCAP_ERR_BUSY,       /* another process initialised for too long */
	GPUCAP_ERR_PERMISSION, /* the file is owned by another user, or unsafe */
	GPUCAP_ERR_NO_SLOT,    /* the handle holds no slot (observer handle) */
	GPUCAP_ERR_STALE,      /* the slot no longer holds the process named */
} gpucap_status;

/* What a charge is for, for the per-process breakdown. */
typedef enum gpucap_kind {
	GPUCAP_KIND_CONTEXT = 0,
	GPUCAP_KIND_MODULE = 1,
	GPUCAP_KIND_DATA = 2,
	/* What the driver holds for the process beyond every intercepted
	 * charge (its own per-process figure less the rest of the ledger). */
	GPUCAP_KIND_DRIVER = 3,
	GPUCAP_KIND_COUNT = 4,
} gpucap_kind;

/* How a slot's host PID was learnt (see gpucap status). */
typedef enum gpucap_host_pid_source {
	GPUCAP_HOST_PID_UNKNOWN = 0,
	GPUCAP_HOST_PID_SAME_NAMESPACE = 1,
	GPUCAP_HOST_PID_NVML = 2,
	GPUCAP_HOST_PID_HOST_RESOLVER = 3,
	GPUCAP_HOST_PID_HOST_PROCFS = 4,
} gpucap_host_pid_source;

typedef struct gpucap_region gpucap_region;

struct gpucap_region_options {
	/* File path; NULL means GPUCAP_REGION_DEFAULT_PATH. */
	const char *path;
	/* Observer: map read-only, claim no slot, never create or repair. */
	bool observer;
	/* Let members of the file's group share the region: the file is created
	 * 0660 instead of 0600 and a file owned by another user of our group is
	 * accepted. */
	bool group_shared;
	/* Used only when this call creates the file; 0 picks the default. */
	uint32_t slot_capacity;   /* default 1024, at most 4095 */
	uint32_t device_capacity; /* default 16, at most GPUCAP_MAX_DEVICES */
	/* How long to wait for another process that is creating the file.
	 * 0 picks the default (2000 ms). */
	uint32_t init_timeout_ms;
	/* Open an existing file only: never create one (tools that act on
	 * regions they found, such as a host-side resolver). Root may then
	 * attach writable to a file another user owns. */
	bool existing_only;
};

/* Identity recorded in the caller's slot. All fields optional. */
struct gpucap_slot_identity {
	int32_t pid;      /* 0: getpid() */
	int32_t host_pid; /* 0: unknown */
	gpucap_host_pid_source host_pid_source;
	uint64_t pid_ns_inode; /* inode of the PID namespace pid lives in; 0: unknown */
	const char *comm;      /* NULL: read from /proc/self/comm */
};

/*
 * attach: open or create the region file and map it.
 *
 * Exactly one process initialises a new file; an initialiser that dies half
 * way is detected through its lease and the file is initialised again.
 * Everyone else maps the file in parallel, without waiting, once it is ready.
 * Every field read from the file is validated before use.
 *
 * On failure, returns an error and writes one line into err (if err_len > 0)
 * naming the file, the problem and how to fix it.
 *
 * Ordering: acquire on the header's ready state. Wait: only while another
 * process initialises the file, at most init_timeout_ms.
 */
gpucap_status gpucap_region_attach(const struct gpucap_region_options *options, gpucap_region **out,
                                   char *err, size_t err_len);

/*
 * attach_detailed: attach, reporting a refusal as data: the status, what is
 * wrong (a gpucap_region_problem) and one line naming the file and the
 * problem, without a fix. The caller adds the fix that fits how it was told
 * the path (a variable, a flag, a config file): gpucap_region_problem_hint
 * gives the default, which names CUDA_DEVICE_MEMORY_SHARED_CACHE.
 * gpucap_region_attach is this plus that default hint, as one line.
 */
typedef enum gpucap_region_problem {
	GPUCAP_PROBLEM_NONE = 0,
	GPUCAP_PROBLEM_INVALID,      /* a bad argument */
	GPUCAP_PROBLEM_PATH,         /* the path is empty or too long */
	GPUCAP_PROBLEM_CAPACITY,     /* more slots or devices than a region holds */
	GPUCAP_PROBLEM_SYMLINK,      /* the path is a symbolic link */
	GPUCAP_PROBLEM_NOT_REGULAR,  /* a directory, FIFO, device or socket */
	GPUCAP_PROBLEM_LINKS,        /* the file has more than one name */
	GPUCAP_PROBLEM_OWNER,        /* owned by another user, not shared with us */
	GPUCAP_PROBLEM_MISSING,      /* no such file (and not creating) */
	GPUCAP_PROBLEM_NO_DIRECTORY, /* its directory does not exist */
	GPUCAP_PROBLEM_ACCESS,       /* permission denied */
	GPUCAP_PROBLEM_READ_ONLY,    /* read-only file system */
	GPUCAP_PROBLEM_NO_SPACE,     /* no space to create it */
	GPUCAP_PROBLEM_VERSION,      /* another format version */
	GPUCAP_PROBLEM_FOREIGN,      /* not a gpucap region */
	GPUCAP_PROBLEM_CORRUPT,      /* a damaged header */
	GPUCAP_PROBLEM_TRUNCATED,    /* shorter than its header says */
	GPUCAP_PROBLEM_EMPTY,        /* not initialised, and nobody initialising it */
	GPUCAP_PROBLEM_INIT_TIMEOUT, /* another process initialised it for too long */
	GPUCAP_PROBLEM_SYSTEM,       /* a system call failed (the detail says which) */
} gpucap_region_problem;

struct gpucap_region_error {
	gpucap_status status;
	gpucap_region_problem problem;
	char detail[640]; /* "region PATH has 2 names (hard links); ...", no "gpucap: " prefix, no fix */
};

gpucap_status gpucap_region_attach_detailed(const struct gpucap_region_options *options, gpucap_region **out,
                                            struct gpucap_region_error *error);
/* The default fix for a problem (naming CUDA_DEVICE_MEMORY_SHARED_CACHE), or "". */
const char *gpucap_region_problem_hint(gpucap_region_problem problem);

/*
 * attach_retry_due: after an attach failed with GPUCAP_ERR_BUSY (another
 * process initialised the file for longer than init_timeout_ms), whether the
 * caller should try to attach again now. Callers keep one zeroed
 * struct gpucap_attach_retry and ask where they would otherwise fail closed;
 * the first retry is due 1 s after the first ask, then after 2, 4, ... up to
 * 60 s, at most GPUCAP_ATTACH_RETRIES times in all. Among threads asking at
 * once exactly one gets true per due time. Retry with a short
 * init_timeout_ms: the caller is usually on an allocation path.
 * now_ns: any monotonic clock (tests pass simulated time). Wait: none.
 */
#define GPUCAP_ATTACH_RETRIES 32u
struct gpucap_attach_retry {
	uint64_t next_ns; /* touched only by gpucap_attach_retry_due */
	uint32_t tries;
};
bool gpucap_attach_retry_due(struct gpucap_attach_retry *retry, uint64_t now_ns);

/*
 * claim_slot: take a process slot and its lease. A slot whose owner died is
 * reclaimed on the way (its charges returned) and reused. Call once per
 * process; a handle holds at most one slot.
 *
 * A slot being reclaimed (a reclaimer holds its lease and its reclaim
 * mark) is not held by a live process: when no slot is free and some are
 * being reclaimed, claim_slot looks again, backing off from 10 us to 1 ms,
 * until one is free or init_timeout_ms (the attach option; default 2 s) has
 * passed. Fails with GPUCAP_ERR_FULL when every slot is held by a live
 * process, or, after that wait, by a reclaimer that stalled (stopped or
 * descheduled); the message says which. Wait: none, or that bound.
 */
gpucap_status gpucap_region_claim_slot(gpucap_region *region, const struct gpucap_slot_identity *id,
                                       char *err, size_t err_len);

/* Update the host PID recorded in this process's slot (release store). */
void gpucap_region_set_host_pid(gpucap_region *region, int32_t host_pid, gpucap_host_pid_source source);

/*
 * resolve_host_pid: record, from outside the process, the host PID of the
 * process holding slot at the given generation (as read in a snapshot).
 * For host-side resolvers that matched the slot's (pid_ns_inode, pid) to a
 * host process. If the slot was freed or reused meanwhile, the value is
 * written under the old generation and readers ignore it, so a late write
 * never names the wrong process. Needs a writable handle (no slot needed).
 * Returns GPUCAP_ERR_INVALID for a bad slot, pid or handle, GPUCAP_ERR_STALE
 * when the slot no longer holds that generation.
 * Ordering: release store of one 64-bit word. Wait: none.
 */
gpucap_status gpucap_region_resolve_host_pid(gpucap_region *region, uint32_t slot, uint32_t generation,
                                             int32_t host_pid);

/*
 * note_refusal: count one allocation refused to this process on device (a
 * relaxed add to this process's slot and to the device's total). False,
 * counting nothing, without a slot or once the handle is retired (the
 * process is exiting: what fails then is not over any limit). For the
 * refusal path only. Wait: none.
 */
bool gpucap_region_note_refusal(gpucap_region *region, int device);

/* note_launch: record when this process last launched work (relaxed store
 * into its own slot; callers rate-limit it). Wait: none. */
void gpucap_region_note_launch(gpucap_region *region, uint64_t unix_ns);

/*
 * device_register: find the device entry for uuid, or create it with the
 * given limit (bytes; GPUCAP_UNLIMITED for none) and sm_limit (percent, 0 or
 * 100 for none). An existing entry keeps its limit: limits change only
 * through gpucap_region_set_limit. Returns the device index (>= 0) or a
 * negative gpucap_status.
 *
 * Two processes registering the same UUID at once always get the same entry.
 * Ordering: acquire/release on the entry key. Wait: none.
 */
int gpucap_region_device_register(gpucap_region *region, const char *uuid, uint64_t limit_bytes,
                                  uint32_t sm_limit);

/* The index of the entry for uuid, or -1. */
int gpucap_region_device_find(const gpucap_region *region, const char *uuid);

/*
 * reserve: charge bytes of the given kind to this process on device, before
 * the memory is allocated. Succeeds only if the device's charged total stays
 * within its limit; GPUCAP_ERR_OVER_LIMIT otherwise, after first reclaiming
 * the slots of dead processes. A successful reserve must be matched by a
 * release of the same kind and size when the allocation fails or is freed.
 *
 * Many threads of one process may call it at once: each thread works on its
 * own lane of the slot, so they share no lock and no hot cache line, and the
 * totals stay exact.
 *
 * Ordering: the admission is a single CAS (acq_rel) on the device's charge
 * word; a reservation that succeeds is ordered before the caller's later
 * operations. Wait: none.
 */
gpucap_status gpucap_reserve(gpucap_region *region, int device, gpucap_kind kind, uint64_t bytes);

/* release: return bytes reserved earlier. Same ordering and wait as reserve. */
void gpucap_release(gpucap_region *region, int device, gpucap_kind kind, uint64_t bytes);

/* own_kind_bytes: this process's in-use bytes on device, by kind (summed
 * over its lanes; relaxed loads, not a consistent cut). False without a
 * slot or for an invalid index. Wait: none. */
bool gpucap_region_own_kind_bytes(const gpucap_region *region, int device, int64_t out[GPUCAP_KIND_COUNT]);

/* Smallest and largest context footprint the region records (a value read
 * from the file outside them is treated as unset: no driver makes a context
 * under 16 MiB, and a neighbour's tiny figure must not shrink the charge of
 * every context after it). */
#define GPUCAP_CONTEXT_BYTES_MIN (UINT64_C(16) << 20)
#define GPUCAP_CONTEXT_BYTES_MAX (UINT64_C(16) << 30)

/* context_bytes: the measured device-memory footprint of one context on
 * device, as the first process to measure it noted it; 0 when unknown or
 * invalid. note_context_bytes records it (rounded up to KiB; 0 or more
 * than GPUCAP_CONTEXT_BYTES_MAX is ignored). Relaxed: a hint for the next
 * process's first charge. Wait: none. */
uint64_t gpucap_region_context_bytes(const gpucap_region *region, int device);
void gpucap_region_note_context_bytes(gpucap_region *region, int device, uint64_t bytes);

/* mark_context_estimate: this process holds (estimated) or no longer holds
 * a context on device charged at an estimate, not yet measured.
 * mark_context_creating: this process is (creating) or is no longer inside
 * the driver's creation of such a context.
 * context_estimates_elsewhere: another live process of the region holds
 * such a context; *creating (may be NULL): one of them is still inside the
 * driver's creation (read from the shared file: hints, which only prolong
 * a bounded wait). Relaxed. Wait: none. */
void gpucap_region_mark_context_estimate(gpucap_region *region, int device, bool estimated);
void gpucap_region_mark_context_creating(gpucap_region *region, int device, bool creating);
bool gpucap_region_context_estimates_elsewhere(const gpucap_region *region, int device, bool *creating);

/*
 * return_credit: give back every byte this process holds in reserve on the
 * device but does not use (threads keep a small reserve to stay off the
 * shared word). Reserve calls it by itself before refusing.
 */
void gpucap_region_return_credit(gpucap_region *region, int device);

/*
 * device_usage: one device's limit and charged total as the caller sees it:
 * the lower of the shared limit and the handle's own cap, and the device
 * total less the caller's own idle reserve, which it can still use. This is what memory queries
 * (cuMemGetInfo, NVML) answer with; a snapshot is for tools. Ordering: acquire. Wait: none (a few loads).
 * Returns false for an index that holds no device.
 */
bool gpucap_region_device_usage(const gpucap_region *region, int device, uint64_t *limit_bytes,
                                uint64_t *charged_bytes);

/*
 * set_local_cap: a ceiling this handle applies on top of the device's shared
 * limit, e.g. from a root-owned limits file that a writer of the region file
 * cannot change. Reservations through this handle are admitted against the
 * lower of the two inside the same CAS, and its idle reserve is sized by it.
 * It can only be lowered. Wait: none.
 */
void gpucap_region_set_local_cap(gpucap_region *region, int device, uint64_t cap_bytes);

/* Change a device's limits (release stores). Lowering below the charged total
 * is allowed: new reservations are refused until usage falls. */
gpucap_status gpucap_region_set_limit(gpucap_region *region, int device, uint64_t limit_bytes);
gpucap_status gpucap_region_set_sm_limit(gpucap_region *region, int device, uint32_t sm_limit);

struct gpucap_reclaim_report {
	uint32_t slots;                                /* dead slots reclaimed by this call */
	uint64_t bytes;                                /* bytes returned to the device totals */
	uint64_t bytes_per_device[GPUCAP_MAX_DEVICES]; /* indexed by device */
	/* Damage healed on the way: dead slots whose state word was out of
	 * range (reclaimed like dead ones), and negative ledgers of dead slots
	 * written off without raising the device totals. */
	uint32_t damaged_slots;
	uint64_t damaged_bytes;
};

/*
 * reclaim_dead: find slots whose lease is gone, take each lease, and return
 * their charges. Each dead slot is reclaimed exactly once even when several
 * processes reclaim at once, and a reclaimer that dies half way leaves work
 * the next one completes exactly. Costs one fcntl per live slot.
 * Wait: none (non-blocking lease probes).
 */
gpucap_status gpucap_region_reclaim_dead(gpucap_region *region, struct gpucap_reclaim_report *report);

struct gpucap_repair_report {
	struct gpucap_reclaim_report reclaim; /* dead slots returned on the way */
	uint32_t slot_states_repaired;        /* live owners' state words out of range, set LIVE */
	uint32_t devices_repaired;            /* totals set to the sum of their ledgers */
	uint64_t bytes_removed;               /* by which those totals fell */
	uint64_t bytes_added;                 /* by which those totals rose */
	/* What cannot be repaired now, and why: */
	uint32_t live_negative_ledgers; /* a live owner's ledger is negative: stop that process */
	uint32_t devices_unsettled;     /* the total kept moving: run the repair again */
};

/*
 * repair: for a damaged region (tools such as gpucap reap). Reclaims dead
 * slots (healing their damage, see gpucap_reclaim_report), sets out-of-range
 * state words of live owners back to LIVE, and sets each device total that
 * differs from the sum of its slots' ledgers to that sum, when the total
 * holds still while the ledgers are read. Reports what it could not do.
 * Needs a writable handle. Wait: none (bounded retries).
 */
gpucap_status gpucap_region_repair(gpucap_region *region, struct gpucap_repair_report *report);

/*
 * maintain: reclaim dead slots if no process has swept in the last 100 ms.
 * One caller per interval is elected by a CAS; the others return at once.
 * Call it from queries so that a process that exited stops counting soon.
 * Wait: none.
 */
void gpucap_region_maintain(gpucap_region *region);

/* ---- Snapshots ------------------------------------------------------------ */

/* Where a published share figure comes from. */
typedef enum gpucap_sm_source {
	GPUCAP_SM_SOURCE_NONE = 0, /* nothing measured yet */
	GPUCAP_SM_SOURCE_NVML = 1, /* per-process utilisation from NVML */
	GPUCAP_SM_SOURCE_GATE = 2, /* estimated from the gates' own busy time */
	/* Beside a neighbour: the work of the launches the gates counted, at
	 * the busy time a launch took while the container was alone (an
	 * older reader takes it for no figure). */
	GPUCAP_SM_SOURCE_LAUNCHES = 3,
} gpucap_sm_source;

struct gpucap_device_view {
	int index;
	char uuid[GPUCAP_UUID_MAX];
	uint64_t limit_bytes;   /* GPUCAP_UNLIMITED: none */
	uint64_t charged_bytes; /* counted against the limit; includes idle reserves */
	uint64_t in_use_bytes;  /* sum of the processes' in-use bytes */
	uint64_t peak_bytes;
	uint32_t sm_limit;
	uint32_t sm_duty_ppm;             /* current throttle duty, parts per million */
	uint32_t sm_share_ppm;            /* SM share delivered over the last ~second, ppm */
	bool sm_share_known;              /* false: no measurement yet */
	gpucap_sm_source sm_share_source; /* how it was measured; NONE while unknown */
	/* SM share the region's work asked for over the same window: what it
	 * would have used unthrottled, ppm. Equals the delivered share when the
	 * cap held nothing back, more when it did. Known only while the share
	 * is (same publisher, same freshness), and when the publisher wrote one:
	 * a stored 0 beside a non-zero share is a publisher that does not
	 * publish demand (unknown); beside a zero share it is a known 0. */
	uint32_t sm_asked_ppm;
	bool sm_asked_known;
	uint64_t refusals_total; /* allocations refused on this device since the region was made */
};

struct gpucap_process_device_view {
	uint64_t charged_bytes;                /* counted against the limit */
	uint64_t in_use_bytes;                 /* charged minus idle reserve */
	int64_t kind_bytes[GPUCAP_KIND_COUNT]; /* in use, by kind */
};

struct gpucap_process_view {
	uint32_t slot;
	uint32_t generation;
	int32_t pid;
	int32_t host_pid;
	gpucap_host_pid_source host_pid_source;
	bool alive; /* false: the owner died and the slot awaits reclaiming */
	bool self;  /* the slot held by this handle */
	uint64_t started_unix_ns;
	uint64_t pid_ns_inode;        /* 0: unknown */
	uint64_t last_launch_unix_ns; /* 0: never launched */
	uint64_t refusals;            /* allocations refused to this process, every device */
	/* Devices (bit i: device index i) where it holds a context charged at
	 * an estimate that others may wait to see measured. */
	uint64_t context_estimates;
	char comm[GPUCAP_COMM_MAX];
	/* [device_capacity], indexed by device index (as in gpucap_device_view) */
	struct gpucap_process_device_view *devices;
};

struct gpucap_snapshot {
	char path[4096];
	uint32_t format_version;
	uint32_t slot_capacity;
	uint32_t device_capacity;
	uint64_t created_unix_ns;
	uint64_t reclaimed_slots_total;
	uint64_t reclaimed_bytes_total;
	/* true when each device's charged total equals the sum of its slots'
	 * charges as read, i.e. no operation moved under the reader. */
	bool consistent;
	uint32_t device_count;
	struct gpucap_device_view *devices;
	uint32_t process_count;
	struct gpucap_process_view *processes;
};

/*
 * snapshot: copy the region into a freshly allocated snapshot. Readers never
 * wait for writers: each device is read with a bounded number of retries
 * and the result says whether the copy is consistent.
 * Returns NULL only when memory runs out. Free with gpucap_snapshot_free.
 */
struct gpucap_snapshot *gpucap_region_snapshot(gpucap_region *region);
void gpucap_snapshot_free(struct gpucap_snapshot *snapshot);

/*
 * detach: return every byte this handle's slot holds, free the slot, drop the
 * lease and unmap. Threads of this process must have stopped using the
 * handle. A process that exits without detaching is reclaimed by its peers.
 */
void gpucap_region_detach(gpucap_region *region);

/*
 * retire: for a process that is exiting while its other threads may still
 * run. Returns every byte this handle's slot holds, exactly once, and frees
 * the slot, but keeps the mapping and the lease: the lease goes with the
 * process, so no other process reuses the slot while a thread of this one
 * may still touch it, and no sweeper sees a dead slot. From then on,
 * through this handle, a reservation that needs the device total fails
 * (GPUCAP_ERR_NO_SLOT), a reservation from idle reserve finds none, and a
 * release returns nothing (the slot's bytes went back already). Waits for
 * this process's threads to leave the slot's lanes (each a few steps from
 * done), about a second at most; returns false, having changed nothing, when
 * one does not (the slot is then reclaimed after exit, as for a killed
 * process).
 */
bool gpucap_region_retire(gpucap_region *region);

/* After fork, in the child: drop the inherited handle without touching the
 * parent's slot or lease (the child claims its own slot on a new handle). */
void gpucap_region_abandon(gpucap_region *region);

/*
 * failed: true when this handle has failed closed because its file was
 * truncated or replaced while mapped; then writes one line into err naming
 * the file and the fix. A truncated region never kills the process: the
 * region guards its mappings (see "Truncation" at the top of this file), and
 * from the fault on reserve returns GPUCAP_ERR_CORRUPT, release does nothing,
 * snapshot returns NULL, and the handle stays failed until detached. The file
 * is also compared with the mapping (size, magic) by maintain and snapshot,
 * which catches a file cut and grown back. Wait: none (one load).
 */
bool gpucap_region_failed(const gpucap_region *region, char *err, size_t err_len);

/* The path this handle is attached to. */
const char *gpucap_region_path(const gpucap_region *region);

/* When the file was created (CLOCK_REALTIME ns, never 0 in a valid
 * region): with the path, what tells one region from another on a node. */
uint64_t gpucap_region_created_ns(const gpucap_region *region);

/* Whether this handle's attach created and initialised the file. */
bool gpucap_region_initialised_here(const gpucap_region *region);

/* The slot index this handle holds, or -1. */
int gpucap_region_slot_index(const gpucap_region *region);

/* Text for a status code ("over limit", ...). */
const char *gpucap_status_text(gpucap_status status);

/* ---- SM share ------------------------------------------------------------- */
/*
 * What the processes of a container share, per device, to hold its SM cap
 * (docs/compute-caps.md):
 *
 *   - a virtual clock (GCRA "theoretical arrival time", TAT): each gate
 *     charges the busy time of one ON phase divided by the duty, and no new
 *     ON phase starts before the clock. One 64-bit word, moved by CAS.
 *   - a controller lease: one process per device runs the control step; the
 *     lease expires by itself, so a dead owner is replaced without waiting.
 *   - the controller's output: the duty gates apply, the measured share
 *     delivered, its source, the integral term (so a new owner continues),
 *     and the share the container's work asked for (for reports only).
 *
 * All times are CLOCK_MONOTONIC nanoseconds and are passed in by the caller
 * (now_ns), so that the arithmetic is testable. Every value read from the
 * file is validated: a value out of range is treated as unset or clamped,
 * and a virtual clock further ahead than GPUCAP_SM_MAX_DEBT_NS is pulled
 * back, so a corrupt file delays launches by at most that much once.
 *
 *   operation        may run alongside   worst-case wait
 *   ---------------  ------------------  ---------------
 *   sm_read / limit  any operation       none (a few loads)
 *   sm_tat / charge  any operation       none (CAS retries only when a peer moved the word)
 *   sm_lease         any operation       none
 *   sm_publish       any operation       none (relaxed stores; the lease holder calls it)
 *   sm_publish_asked any operation       none (one relaxed store; the lease holder calls it)
 */

#define GPUCAP_SM_PPM 1000000u
/* How far ahead of now the virtual clock may run: one cycle's debt. */
#define GPUCAP_SM_MAX_DEBT_NS UINT64_C(1000000000)
/* Longest busy time one charge may carry. */
#define GPUCAP_SM_MAX_BUSY_NS UINT64_C(10000000000)

/*
 * The work weight of a busy second: how much more work the container's
 * kernels do per second of GPU time at its capped duty than the same
 * kernels would at full load (a GPU that idles between ON phases runs at a
 * higher clock than one held at its power limit). The controller measures
 * it and aims the time share at cap / weight, so that the cap is a share of
 * what the GPU delivers at full load. Stored in ppm; values outside this
 * range are treated as unset (1.0). Never below 1: a GPU does not slow a
 * kernel down because it is less loaded, so a lower figure is noise.
 */
#define GPUCAP_SM_WEIGHT_MIN_PPM 1000000u
#define GPUCAP_SM_WEIGHT_MAX_PPM 1600000u

/* Flags published with the share. */
#define GPUCAP_SM_FLAG_OPEN_LOOP    (1u << 4) /* NVML unavailable: duty is the cap, uncorrected */
#define GPUCAP_SM_FLAG_ELASTIC_OPEN (1u << 5) /* elastic policy, no foreign use: duty 100% */
/* The work leaves gaps on the GPU: the container's gates keep to their own
 * duty cycle and take no window of the node schedule (docs/compute-caps.md). */
#define GPUCAP_SM_FLAG_OVERLAP (1u << 6)

struct gpucap_sm_state {
	uint32_t sm_limit;  /* percent, 1..100; 100: no cap */
	uint32_t duty_ppm;  /* 0: unset (gates use the cap) */
	uint32_t share_ppm; /* delivered share; meaningful when share_source != NONE */
	gpucap_sm_source share_source;
	uint32_t asked_ppm;      /* share the work asked for, <= GPUCAP_SM_PPM; 0: unknown (unset) */
	uint32_t flags;          /* GPUCAP_SM_FLAG_* */
	int32_t integral_ppm;    /* within +-GPUCAP_SM_PPM */
	uint32_t weight_ppm;     /* work weight; 0: unset (1.0), else within the WEIGHT range */
	uint64_t busy_ns;        /* busy time charged on the device, total */
	uint64_t tat_ns;         /* the virtual clock (0: unset) */
	uint64_t lease_until_ns; /* 0: no lease */
	int32_t lease_slot;      /* slot of the lease holder, -1: none */
	char uuid[GPUCAP_UUID_MAX];
};

/*
 * sm_read: the SM state of a device, validated (see above). now_ns judges
 * the lease and the clock. Returns false for an index that holds no device.
 * Ordering: relaxed loads (each field is one word; the set is not a
 * consistent cut). Wait: none.
 */
bool gpucap_region_sm_read(const gpucap_region *region, int device, uint64_t now_ns,
                           struct gpucap_sm_state *out);

/* The device's SM limit in percent (1..100; 100 for none, an unset or
 * invalid entry, or an invalid index). One relaxed load: launch paths use it. */
uint32_t gpucap_region_sm_limit(const gpucap_region *region, int device);

/* The published duty in ppm (1..GPUCAP_SM_PPM), or 0 when unset or invalid.
 * One relaxed load. */
uint32_t gpucap_region_sm_duty(const gpucap_region *region, int device);

/* The published GPUCAP_SM_FLAG_* (0 for an invalid index). One relaxed load:
 * a gate reads it when a phase starts. */
uint32_t gpucap_region_sm_flags(const gpucap_region *region, int device);

/*
 * sm_tat: the virtual clock as of now_ns. A clock further ahead than
 * now_ns + GPUCAP_SM_MAX_DEBT_NS is pulled back to that (CAS; a read-only
 * handle only clamps its answer). 0 when unset or for an invalid index.
 * Ordering: acquire. Wait: none.
 */
uint64_t gpucap_region_sm_tat(gpucap_region *region, int device, uint64_t now_ns);

/*
 * sm_charge: account one ON phase that started at on_start_ns and kept the
 * GPU busy for busy_ns, at duty_ppm (0 or more than GPUCAP_SM_PPM count as
 * GPUCAP_SM_PPM):
 *
 *     TAT = min(max(TAT, on_start) + busy * PPM / duty, now + MAX_DEBT)
 *
 * and add busy_ns to the device's busy total. Returns the new TAT, or 0
 * (nothing charged) for an invalid index or a read-only handle. Concurrent
 * charges all land: a CAS loop on one word.
 * Ordering: acq_rel on the clock word. Wait: none (lock-free).
 */
uint64_t gpucap_region_sm_charge(gpucap_region *region, int device, uint64_t on_start_ns, uint64_t busy_ns,
                                 uint32_t duty_ppm, uint64_t now_ns);

/*
 * sm_lease: take or renew the device's controller lease for ttl_ns. True
 * when the caller's slot holds it now. A lease held by another slot is
 * respected until it expires; a lease whose expiry is implausibly far ahead
 * (corrupt) counts as expired. Needs a handle holding a slot.
 * Ordering: acq_rel CAS. Wait: none.
 */
bool gpucap_region_sm_lease(gpucap_region *region, int device, uint64_t now_ns, uint64_t ttl_ns);

/*
 * sm_publish: the lease holder's output: duty (ppm, 1..GPUCAP_SM_PPM; 0
 * resets it to unset, so that gates use the cap), measured share (ppm), its
 * source, flags and the integral term. Values out of range are clamped.
 * Ordering: release stores (the duty last, so a gate that sees it sees the
 * rest). Wait: none.
 */
void gpucap_region_sm_publish(gpucap_region *region, int device, uint32_t duty_ppm, uint32_t share_ppm,
                              gpucap_sm_source source, uint32_t flags, int32_t integral_ppm);

/*
 * sm_publish_weight: the lease holder's measured work weight (ppm; 0
 * resets it to unset). A value outside the WEIGHT range is clamped into it.
 * Ordering: relaxed store. Wait: none.
 */
void gpucap_region_sm_publish_weight(gpucap_region *region, int device, uint32_t weight_ppm);

/*
 * sm_publish_asked: the lease holder's estimate of the share the container's
 * work asked for over the window of the published share (ppm): what it
 * would have used unthrottled. Equal to the delivered share when the cap
 * held nothing back, more when it did, so that a reader tells "held at the
 * cap" from "used less than the cap". A value above GPUCAP_SM_PPM is
 * clamped to it; 0 means unknown to readers when the share is not 0. A
 * read-only handle or an invalid index: nothing happens. Read back through
 * sm_read (asked_ppm) and the snapshot (sm_asked_ppm, sm_asked_known).
 * Ordering: one relaxed store, not ordered with the other published words
 * (readers take it as a figure of its own). Wait: none.
 */
void gpucap_region_sm_publish_asked(gpucap_region *region, int device, uint32_t asked_ppm);

#ifdef __cplusplus
}
#endif

#endif
