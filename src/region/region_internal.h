/* SPDX-License-Identifier: Apache-2.0 */
/* The per-process region handle and the internal operations shared by the
 * files of src/region. Owns: address arithmetic into the mapping, the lane
 * protocol entry points, and the credit policy constants. */
#ifndef GPUCAP_REGION_INTERNAL_H
#define GPUCAP_REGION_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpucap/region.h"
#include "layout.h"

/* Internal functions shared by the files of src/region keep short names in
 * the code, and carry the gpucap_region_ prefix in the archive, so that
 * libgpucap-region.a exports nothing a program linking it could clash with. */
#define device_index_valid    gpucap_region_device_index_valid
#define device_uuid_read      gpucap_region_device_uuid_read
#define lane_acquire          gpucap_region_lane_acquire
#define lane_move             gpucap_region_lane_move
#define lane_of_this_thread   gpucap_region_lane_of_this_thread
#define lane_release          gpucap_region_lane_release
#define lane_try_acquire      gpucap_region_lane_try_acquire
#define pending_tagged_amount gpucap_region_pending_tagged_amount
#define region_check_file     gpucap_region_check_file
#define settle_tagged         gpucap_region_settle_tagged
#define slot_lease_drop       gpucap_region_slot_lease_drop
#define slot_lease_take       gpucap_region_slot_lease_take
#define slot_release_own      gpucap_region_slot_release_own
#define slot_return_all       gpucap_region_slot_return_all

struct gpucap_region {
	char path[4096];
	int fd;
	bool observer;
	uint8_t *base;
	size_t map_size;
	struct region_header *header;
	struct region_geometry geo;
	int slot; /* -1: none */
	bool initialised_here;
	/* Set by gpucap_region_retire: the slot went back while this process's
	 * threads may still run; its lanes stay held for good. */
	_Atomic bool retired;
	/* This handle's own ceiling per device, below the shared limit. */
	_Atomic uint64_t local_cap[REGION_MAX_DEVICES];
	/* In-process claims on slots, taken before a slot lease and dropped
	 * after it. A lease is an OFD lock: it belongs to the handle's open
	 * file description, which every thread of this process shares, so the
	 * kernel cannot tell two of our threads apart. The claim can: one
	 * thread per slot per handle, and the lease then excludes every other
	 * handle and process. */
	_Atomic uint8_t slot_claim[REGION_MAX_SLOTS];
	/* How long claim_slot waits for reclaimers to free slots when no other
	 * slot is free (the attach option init_timeout_ms). */
	uint32_t claim_wait_ms;
	/* Raised when the file was truncated under the mapping (by the mapping
	 * guard, src/platform/mapping_guard.c) or found replaced: the mapping
	 * then holds private zero pages and every operation fails closed. */
	_Atomic uint32_t failed;
};

/* The handle failed closed: nothing it reads from the mapping is the file. */
static inline bool region_failed(const struct gpucap_region *r)
{
	return atomic_load_explicit(&r->failed, memory_order_relaxed) != 0;
}

/* attach.c: compare the file's size and magic with the mapping (one fstat;
 * maintain and snapshot call it, off the hot path), and fail closed on a
 * change. */
void region_check_file(struct gpucap_region *r);

/* Take the in-process claim and then the lease of a slot; false when a
 * thread of this handle or another process holds either. */
bool slot_lease_take(struct gpucap_region *r, uint32_t slot);
/* Drop the lease, then the claim (in that order: a thread that takes the
 * claim next must not find the lease still ours, half dropped). */
void slot_lease_drop(struct gpucap_region *r, uint32_t slot);

/* A lane keeps a small reserve ("credit") so that threads reserve and release
 * on their own cache line. Credit counts against the limit like any charge;
 * these bound how much may sit idle. */
#define CREDIT_CHUNK (UINT64_C(2) << 20)
#define CREDIT_KEEP  CREDIT_CHUNK
#define CREDIT_HIGH  (2 * CREDIT_CHUNK)
#define CREDIT_MIN   (UINT64_C(64) << 10)

static inline struct device_entry *region_device(const struct gpucap_region *r, uint32_t index)
{
	return (struct device_entry *)(r->base + r->geo.devices_offset +
	                               (uint64_t)index * sizeof(struct device_entry));
}

static inline struct slot_header *region_slot(const struct gpucap_region *r, uint32_t slot)
{
	return (struct slot_header *)(r->base + r->geo.slots_offset + (uint64_t)slot * r->geo.slot_size);
}

/* SLOT_FREE or SLOT_LIVE. */
static inline _Atomic uint32_t *region_slot_state(const struct gpucap_region *r, uint32_t slot)
{
	return (_Atomic uint32_t *)(r->base + r->geo.slot_states_offset) + slot;
}

static inline struct lane_header *region_lane(const struct gpucap_region *r, uint32_t slot, uint32_t lane)
{
	return (struct lane_header *)((uint8_t *)region_slot(r, slot) + sizeof(struct slot_header) +
	                              (uint64_t)lane * r->geo.lane_size);
}

static inline struct lane_device *region_lane_device(const struct gpucap_region *r, uint32_t slot,
                                                     uint32_t lane, uint32_t device)
{
	return (struct lane_device *)((uint8_t *)region_lane(r, slot, lane) + sizeof(struct lane_header) +
	                              (uint64_t)device * sizeof(struct lane_device));
}

/* Tags name a lane: slot * lanes + lane + 1 (0 means no tag). */
static inline uint32_t lane_tag(const struct gpucap_region *r, uint32_t slot, uint32_t lane)
{
	return slot * r->geo.lanes + lane + 1;
}

/* Sums of values read from the file saturate: a hostile or damaged file
 * can hold any bits, and a sum must never overflow (undefined behaviour). */
static inline int64_t sat_add_i64(int64_t a, int64_t b)
{
	int64_t sum;
	if (!__builtin_add_overflow(a, b, &sum))
		return sum;
	return b > 0 ? INT64_MAX : INT64_MIN;
}

static inline uint64_t sat_add_u64(uint64_t a, uint64_t b)
{
	uint64_t sum;
	return __builtin_add_overflow(a, b, &sum) ? UINT64_MAX : sum;
}

/* A device limit as stored (bytes + 1, 0 = unset) to bytes; unset fails closed. */
static inline uint64_t stored_limit_bytes(uint64_t stored)
{
	return stored == 0 ? 0 : stored - 1;
}

/* The limit this handle admits against: the shared limit, or its own lower
 * ceiling. */
static inline uint64_t effective_limit(const struct gpucap_region *r, uint32_t device)
{
	/* A4: pairs with R4 (register's CAS, set_limit's store). */
	uint64_t limit =
	    stored_limit_bytes(atomic_load_explicit(&region_device(r, device)->limit, memory_order_acquire));
	uint64_t cap = atomic_load_explicit(&r->local_cap[device], memory_order_relaxed);
	if (limit > GPUCAP_BYTES_MAX)
		limit = GPUCAP_BYTES_MAX;
	return cap < limit ? cap : limit;
}

/* charge.c: move a device total through a lane the caller owns exclusively
 * (a thread holding the lane's busy flag, or the holder of the slot lease
 * when the owner is gone). check_limit refuses growth past the limit. */
gpucap_status lane_move(struct gpucap_region *r, uint32_t slot, uint32_t lane, uint32_t device,
                        int64_t amount, bool check_limit);
/* Apply the operation named by the tag in observed (a value of the device's
 * charge word), if it is still current and not yet applied. */
void settle_tagged(struct gpucap_region *r, uint32_t device, uint64_t observed);
/* The amount of the tagged operation that is charged on the device but not
 * yet applied to its lane (0 if none). */
int64_t pending_tagged_amount(const struct gpucap_region *r, uint32_t device, uint64_t observed);

/* lanes.c: lane choice for the calling thread. */
uint32_t lane_of_this_thread(const struct gpucap_region *r);
/* LANE_NONE: every lane is held and the handle is retired. */
#define LANE_NONE UINT32_MAX
uint32_t lane_acquire(struct gpucap_region *r);
bool lane_try_acquire(struct gpucap_region *r, uint32_t lane);
void lane_release(struct gpucap_region *r, uint32_t lane);

/* slots.c: return every charge of a slot whose lease the caller holds. Adds
 * the returned bytes per device to returned (may be NULL), and to damaged
 * (may be NULL) the bytes of negative ledgers written off. */
uint64_t slot_return_all(struct gpucap_region *r, uint32_t slot, uint64_t *returned, uint64_t *damaged);
/* slots.c: the same, leaving the lanes' counters and busy flags as they are
 * (the caller holds every lane). Only gpucap_-prefixed symbols leave the
 * library. */
#define slot_return_charges gpucap_region_slot_return_charges
uint64_t slot_return_charges(struct gpucap_region *r, uint32_t slot, uint64_t *returned, uint64_t *damaged);

/* slots.c: return everything the handle's own slot holds, free it and drop
 * its lease. */
void slot_release_own(struct gpucap_region *r);

/* devices.c */
bool device_index_valid(const struct gpucap_region *r, int device);
void device_uuid_read(const struct device_entry *entry, char *out);

#endif
