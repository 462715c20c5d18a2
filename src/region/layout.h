/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The region file format: owns every byte offset and bit layout of the shared
 * file. Nothing outside src/region may depend on it.
 *
 *   [ header: 4096 bytes ][ device table ][ slot states ][ slot table ]
 *
 * Slot states (free or live) sit packed in their own table, so scans for a
 * free slot, for dead peers or for a snapshot touch a page or two, not one
 * page per slot.
 *
 * Every word other processes touch is a lock-free 32- or 64-bit atomic.
 *
 * Charges. A device's charged total lives in one 64-bit word: the total in
 * the high 48 bits and a tag in the low 16 bits. The tag names the lane whose
 * operation last moved the total (0: none pending). Each slot has lanes (one
 * per thread, by thread number), and each lane records, per device, how much
 * it has been granted: a signed 48-bit amount with a 16-bit sequence number.
 *
 * To move a device total, a lane writes its operation record (device, amount,
 * sequence), CASes the device word to the new total with its own tag, applies
 * the amount to its granted word (a CAS keyed by the sequence, so applying is
 * idempotent) and clears the tag. Anyone who finds a tag first applies that
 * lane's operation. So at every instant:
 *
 *     device total == sum of all lanes' granted + the tagged operation if it
 *                     is not applied yet
 *
 * and a process that dies at any instruction leaves a state its reclaimer
 * completes exactly.
 */
#ifndef GPUCAP_REGION_LAYOUT_H
#define GPUCAP_REGION_LAYOUT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "gpucap/region.h"

#if ATOMIC_LLONG_LOCK_FREE != 2 || ATOMIC_INT_LOCK_FREE != 2
#error "the region needs lock-free 32- and 64-bit atomics"
#endif

#define REGION_MAGIC       UINT64_C(0x0031524143555047) /* "GPUCAR1\0" little-endian */
#define REGION_HEADER_SIZE 4096u

enum region_state {
	REGION_EMPTY = 0,
	REGION_INITIALIZING = 1,
	REGION_READY = 2,
};

#define REGION_DEFAULT_SLOTS   1024u
#define REGION_MAX_SLOTS       4095u
#define REGION_DEFAULT_DEVICES 16u
#define REGION_MAX_DEVICES     ((unsigned)GPUCAP_MAX_DEVICES)
#define REGION_LANES           16u

/* Lease byte offsets: far past the end of the file, so they never alias data. */
#define LEASE_BASE        (UINT64_C(1) << 40)
#define LEASE_INIT        (LEASE_BASE + 0)
#define LEASE_SLOT(index) (LEASE_BASE + 4096 + (uint64_t)(index))
/* Held by a reclaimer around LEASE_SLOT(index) (leased_file.h): tells a slot
 * being reclaimed from one a live owner holds. */
#define LEASE_RECLAIM(index) (LEASE_BASE + 8192 + (uint64_t)(index))

struct region_header {
	_Atomic uint64_t magic;
	_Atomic uint32_t state;
	uint32_t format_version;
	uint64_t layout_size;
	uint32_t header_size;
	uint32_t device_capacity;
	uint32_t slot_capacity;
	uint32_t lanes_per_slot;
	uint32_t device_entry_size;
	uint32_t slot_size;
	uint32_t lane_size;
	uint32_t lane_device_size;
	uint64_t devices_offset;
	uint64_t slot_states_offset;
	uint64_t slots_offset;
	uint64_t created_unix_ns;
	uint64_t layout_checksum; /* FNV-1a of the fields from format_version on */
	_Atomic uint64_t reclaimed_slots_total;
	_Atomic uint64_t reclaimed_bytes_total;
	_Atomic uint64_t last_sweep_ns;
	_Atomic uint64_t underflows; /* releases that found less charged than returned */
};

/* Device charge word. */
#define CHARGE_TAG_BITS 16
#define CHARGE_TAG_MASK ((UINT64_C(1) << CHARGE_TAG_BITS) - 1)
static inline uint64_t charge_total(uint64_t word)
{
	return word >> CHARGE_TAG_BITS;
}
static inline uint32_t charge_tag(uint64_t word)
{
	return (uint32_t)(word & CHARGE_TAG_MASK);
}
static inline uint64_t charge_word(uint64_t total, uint32_t tag)
{
	return (total << CHARGE_TAG_BITS) | tag;
}

#define UUID_WORDS (GPUCAP_UUID_MAX / 8)

struct device_entry {
	_Atomic uint64_t key;      /* 0: free; else a hash of the UUID, never 0 */
	_Atomic uint64_t limit;    /* bytes + 1; 0: not yet set */
	_Atomic uint64_t peak;     /* highest charged total */
	_Atomic uint32_t sm_limit; /* percent + 1; 0: not yet set */
	_Atomic uint32_t uuid_ready;
	_Atomic uint64_t uuid_words[UUID_WORDS]; /* NUL-padded UUID text */
	/* SM share (src/region/sm.c). Files made before these fields hold 0
	 * here, so 0 means "unset" in each. */
	_Atomic uint64_t sm_tat_ns;      /* virtual clock (CLOCK_MONOTONIC ns), GCRA; 0: unset */
	_Atomic uint64_t sm_lease;       /* controller lease: until (ms) << 16 | owner slot + 1; 0: none */
	_Atomic uint64_t sm_busy_ns;     /* busy time charged by every gate, total */
	_Atomic uint32_t sm_duty_ppm;    /* duty the gates apply; 0: unset (the cap) */
	_Atomic uint32_t sm_share_ppm;   /* measured share, EWMA; valid per sm_state */
	_Atomic uint32_t sm_state;       /* SM_STATE_* bits (sm.c) */
	_Atomic int32_t sm_integral_ppm; /* controller's integral term */
	_Atomic uint32_t sm_weight_ppm;  /* work weight of a busy second (sm.c); 0: unset, 1.0 */
	_Atomic uint32_t context_kib;    /* measured footprint of one context, KiB; 0: unknown */
	/* Share the container's work asked for (what it would have used
	 * unthrottled), ppm; published beside sm_share_ppm (sm.c). Files made
	 * before hold 0: unknown. */
	_Atomic uint32_t sm_asked_ppm;
	uint8_t pad0[192 - 32 - 8 * UUID_WORDS - 48 - 4 - 8];
	/* Allocations refused on this device over the region's life (relaxed
	 * adds by the refusing process; files made before hold 0). */
	_Atomic uint64_t refusals;
	/* On its own cache line: the only word contended across processes. */
	_Atomic uint64_t charge;
	uint8_t pad1[56];
};
_Static_assert(sizeof(struct device_entry) == 256, "device entry layout");
_Static_assert(offsetof(struct device_entry, charge) == 192, "charge on its own cache line");
_Static_assert(offsetof(struct device_entry, refusals) == 184, "refusals in the former padding");

struct slot_header {
	uint32_t reserved0; /* the state lives in the slot states table */
	_Atomic uint32_t generation;
	_Atomic int32_t pid;
	_Atomic int32_t host_pid;
	_Atomic uint32_t host_pid_source;
	uint32_t reserved;
	_Atomic uint64_t started_unix_ns;
	_Atomic uint64_t comm_words[GPUCAP_COMM_MAX / 8];
	_Atomic uint64_t pid_ns_inode; /* the owner's PID namespace; 0: unknown */
	/* Written by a host-side resolver for another process's slot: the
	 * slot generation it resolved in the high 32 bits, the host PID in the
	 * low 32. A value whose generation is not the slot's is stale. */
	_Atomic uint64_t resolved_host;
	_Atomic uint64_t last_launch_unix_ns; /* 0: no kernel launched yet */
	/* Allocations refused to this owner (relaxed adds by the owner; zeroed
	 * when the slot is claimed; files made before hold 0). */
	_Atomic uint64_t refusals;
	/* Devices on which the owner holds a context charged at an estimate,
	 * not yet measured: bit i for device index i (estimates.c; zeroed when
	 * the slot is claimed; files made before hold 0). */
	_Atomic uint64_t context_estimates;
	/* Devices on which the owner is inside the driver's creation of such a
	 * context: bit i for device index i (estimates.c; zeroed when the slot
	 * is claimed; files made before hold 0). */
	_Atomic uint64_t context_creating;
	uint8_t pad[256 - 112];
};
_Static_assert(sizeof(struct slot_header) == 256, "slot header layout");
_Static_assert(offsetof(struct slot_header, refusals) == 88, "refusals in the former padding");
_Static_assert(offsetof(struct slot_header, context_estimates) == 96, "estimates in the former padding");
_Static_assert(offsetof(struct slot_header, context_creating) == 104, "creating in the former padding");

enum slot_state {
	SLOT_FREE = 0,
	SLOT_LIVE = 1,
};

/* Lane operation record: valid bit, device index, sequence number. */
#define OP_VALID (UINT64_C(1) << 63)
static inline uint64_t op_word(uint32_t device, uint32_t seq)
{
	return OP_VALID | ((uint64_t)device << 16) | (seq & 0xffffu);
}
static inline uint32_t op_device(uint64_t op)
{
	return (uint32_t)((op >> 16) & 0xffffu);
}
static inline uint32_t op_seq(uint64_t op)
{
	return (uint32_t)(op & 0xffffu);
}

struct lane_header {
	_Atomic uint32_t busy; /* a thread of the owner is moving a device total */
	uint32_t reserved;
	_Atomic uint64_t op;
	_Atomic int64_t op_amount;
	uint8_t pad[64 - 24];
};
_Static_assert(sizeof(struct lane_header) == 64, "lane header layout");

/* Granted word: signed 48-bit amount, 16-bit sequence. */
static inline int64_t granted_amount(uint64_t word)
{
	return (int64_t)word >> 16;
}
static inline uint32_t granted_seq(uint64_t word)
{
	return (uint32_t)(word & 0xffffu);
}
static inline uint64_t granted_word(int64_t amount, uint32_t seq)
{
	return ((uint64_t)amount << 16) | (seq & 0xffffu);
}

struct lane_device {
	_Atomic uint64_t granted; /* see above */
	_Atomic int64_t credit;   /* granted but not in use: the lane's reserve */
	_Atomic int64_t kind_bytes[GPUCAP_KIND_COUNT];
};
_Static_assert(sizeof(struct lane_device) == 48, "lane device layout");

/* Sizes, offsets and the header checksum for a given capacity. */
struct region_geometry {
	uint32_t device_capacity;
	uint32_t slot_capacity;
	uint32_t lanes;
	uint32_t lane_size;
	uint32_t slot_size;
	uint64_t devices_offset;
	uint64_t slot_states_offset;
	uint64_t slots_offset;
	uint64_t layout_size;
};

static inline struct region_geometry region_geometry_for(uint32_t device_capacity, uint32_t slot_capacity)
{
	struct region_geometry g;
	g.device_capacity = device_capacity;
	g.slot_capacity = slot_capacity;
	g.lanes = REGION_LANES;
	uint32_t lane_bytes =
	    (uint32_t)(sizeof(struct lane_header) + device_capacity * sizeof(struct lane_device));
	g.lane_size = (lane_bytes + 63u) & ~63u;
	g.slot_size = (uint32_t)sizeof(struct slot_header) + g.lanes * g.lane_size;
	g.devices_offset = REGION_HEADER_SIZE;
	g.slot_states_offset = g.devices_offset + (uint64_t)device_capacity * sizeof(struct device_entry);
	g.slots_offset =
	    g.slot_states_offset + (((uint64_t)slot_capacity * sizeof(uint32_t) + 4095u) & ~UINT64_C(4095));
	g.layout_size = g.slots_offset + (uint64_t)slot_capacity * g.slot_size;
	g.layout_size = (g.layout_size + 4095u) & ~UINT64_C(4095);
	return g;
}

#endif
