/* SPDX-License-Identifier: Apache-2.0 */
/* Process slots and their leases: claiming a slot, returning a slot's
 * charges, reclaiming the slots of dead processes, and detaching. */
#include <assert.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "crash_point.h"
#include "leased_file.h"
#include "platform.h"
#include "region_internal.h"

/* How often an attaching or querying process sweeps for dead peers. Sweeps cost one
 * fcntl per live slot, so electing one sweeper per interval keeps many
 * simultaneous starts from each sweeping every slot. */
#define ATTACH_SWEEP_INTERVAL_NS (UINT64_C(100) * 1000 * 1000)

static void zero_lane_counters(struct gpucap_region *r, uint32_t slot)
{
	for (uint32_t lane = 0; lane < r->geo.lanes; lane++) {
		struct lane_header *header = region_lane(r, slot, lane);
		atomic_store_explicit(&header->op, 0, memory_order_relaxed);
		atomic_store_explicit(&header->busy, 0, memory_order_relaxed);
		for (uint32_t device = 0; device < r->geo.device_capacity; device++) {
			struct lane_device *lane_device = region_lane_device(r, slot, lane, device);
			atomic_store_explicit(&lane_device->credit, 0, memory_order_relaxed);
			for (unsigned kind = 0; kind < GPUCAP_KIND_COUNT; kind++)
				atomic_store_explicit(&lane_device->kind_bytes[kind], 0,
				                      memory_order_relaxed);
		}
	}
}

/* The slot's lanes may hold opposite amounts (one thread allocates, another
 * frees), so the slot's charge is their sum. It is returned in one lane
 * operation on lane 0, which leaves the lanes summing to zero: a reclaimer
 * that dies half way leaves either the old sum or zero, never a partial. */
/* The caller holds the slot's lease and no operation of the slot is pending
 * (its tag was settled): nobody else writes these words. */
static void zero_granted(struct gpucap_region *r, uint32_t slot, uint32_t device)
{
	for (uint32_t lane = 0; lane < r->geo.lanes; lane++) {
		_Atomic uint64_t *granted = &region_lane_device(r, slot, lane, device)->granted;
		uint64_t word = atomic_load_explicit(granted, memory_order_relaxed);
		/* Same sequence: the next operation of a new owner follows on. */
		/* R10 (plain store; the reclaimer owns the dead slot's lanes, I3):
		 * partners A10 in readers and the next owner's first lane_move. */
		atomic_store_explicit(granted, granted_word(0, granted_seq(word)), memory_order_release);
	}
}

uint64_t slot_return_charges(struct gpucap_region *r, uint32_t slot, uint64_t *returned, uint64_t *damaged)
{
	uint64_t total_returned = 0;
	for (uint32_t device = 0; device < r->geo.device_capacity; device++) {
		struct device_entry *entry = region_device(r, device);
		/* A2: pairs with the registrant's R2 key CAS. */
		if (atomic_load_explicit(&entry->key, memory_order_acquire) == 0)
			continue;
		/* A5: pairs with the R5 CAS that may have left this slot's tag. */
		uint64_t word = atomic_load_explicit(&entry->charge, memory_order_acquire);
		uint32_t tag = charge_tag(word);
		if (tag > slot * r->geo.lanes && tag <= (slot + 1) * r->geo.lanes) {
			settle_tagged(r, device, word);
			/* lane_move clears a tag of its own lane before moving. */
			lane_move(r, slot, tag - 1 - slot * r->geo.lanes, device, 0, false);
			GPUCAP_CRASH_POINT("return.tag_settled");
		}
		/* 16 lanes of 48-bit amounts: the sum cannot overflow. */
		int64_t sum = 0;
		for (uint32_t lane = 0; lane < r->geo.lanes; lane++)
			/* A10: pairs with R10 of the user or a helper: every applied
			 * operation of the slot is in the sum (I1). */
			sum += granted_amount(atomic_load_explicit(
			    &region_lane_device(r, slot, lane, device)->granted, memory_order_acquire));
		if (sum < 0) {
			/* A slot never holds less than nothing: a negative ledger
			 * is damage (a hostile or broken writer), and returning it
			 * would raise the device total for good. Write it off. */
			zero_granted(r, slot, device);
			if (damaged)
				*damaged = sat_add_u64(*damaged, (uint64_t)0 - (uint64_t)sum);
			continue;
		}
		if (sum != 0)
			lane_move(r, slot, 0, device, -sum, false);
		GPUCAP_CRASH_POINT("return.device_returned");
		if (sum > 0) {
			total_returned += (uint64_t)sum;
			if (returned)
				returned[device] += (uint64_t)sum;
		}
	}
	return total_returned;
}

uint64_t slot_return_all(struct gpucap_region *r, uint32_t slot, uint64_t *returned, uint64_t *damaged)
{
	uint64_t total_returned = slot_return_charges(r, slot, returned, damaged);
	GPUCAP_CRASH_POINT("return.before_zeroing");
	zero_lane_counters(r, slot);
	return total_returned;
}

bool slot_lease_take(struct gpucap_region *r, uint32_t slot)
{
	return gpucap_slot_lease_take(r->fd, &r->slot_claim[slot], LEASE_SLOT(slot));
}

void slot_lease_drop(struct gpucap_region *r, uint32_t slot)
{
	gpucap_slot_lease_drop(r->fd, &r->slot_claim[slot], LEASE_SLOT(slot));
}

/* A reclaimer takes the slot with its reclaim mark, so that claimers can
 * tell it from a live owner (claim_slot waits for it, bounded). */
static bool slot_reclaim_take(struct gpucap_region *r, uint32_t slot)
{
	return gpucap_slot_reclaim_take(r->fd, &r->slot_claim[slot], LEASE_SLOT(slot), LEASE_RECLAIM(slot));
}

static void slot_reclaim_drop(struct gpucap_region *r, uint32_t slot)
{
	gpucap_slot_reclaim_drop(r->fd, &r->slot_claim[slot], LEASE_SLOT(slot), LEASE_RECLAIM(slot));
}

/* The caller holds the slot's lease and found it not FREE (LIVE, or a value
 * out of range that would otherwise hide its charges for good): its owner is
 * gone. */
static uint64_t reclaim_held_slot(struct gpucap_region *r, uint32_t slot,
                                  struct gpucap_reclaim_report *report)
{
	/* One reclaimer per slot: this thread holds the in-process claim, and
	 * so the lease for this handle alone. */
	assert(atomic_load_explicit(&r->slot_claim[slot], memory_order_relaxed) == 1);
	uint32_t state = atomic_load_explicit(region_slot_state(r, slot), memory_order_relaxed);
	if (report && state != SLOT_LIVE)
		report->damaged_slots++;
	uint64_t bytes = slot_return_all(r, slot, report ? report->bytes_per_device : NULL,
	                                 report ? &report->damaged_bytes : NULL);
	/* R6: I6, the lanes sum to zero before the slot reads FREE; partners
	 * A6 in claim_slot, reclaim_dead and snapshots. */
	atomic_store_explicit(region_slot_state(r, slot), SLOT_FREE, memory_order_release);
	GPUCAP_CRASH_POINT("reclaim.slot_freed");
	atomic_fetch_add_explicit(&r->header->reclaimed_slots_total, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&r->header->reclaimed_bytes_total, bytes, memory_order_relaxed);
	return bytes;
}

gpucap_status gpucap_region_reclaim_dead(gpucap_region *r, struct gpucap_reclaim_report *report)
{
	if (report)
		memset(report, 0, sizeof(*report));
	if (!r || r->observer)
		return GPUCAP_ERR_INVALID;
	if (region_failed(r))
		return GPUCAP_ERR_CORRUPT;
	for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++) {
		if ((int)slot == r->slot)
			continue;
		/* A6: pairs with R6 of the owner's claim (LIVE) or a reclaimer's FREE. */
		if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) == SLOT_FREE)
			continue;
		if (!slot_reclaim_take(r, slot))
			continue; /* alive, or being reclaimed by another thread or process */
		GPUCAP_CRASH_POINT("reclaim.lease_taken");
		/* Holding the lease, check again: another reclaimer may have
		 * finished between our look and our lease. */
		/* A6 again, under the lease and the in-process claim (I5): a
		 * reclaimer that finished before us stored FREE (R6) before
		 * dropping the lease. */
		if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) != SLOT_FREE) {
			uint64_t bytes = reclaim_held_slot(r, slot, report);
			if (report) {
				report->slots++;
				report->bytes += bytes;
			}
		}
		slot_reclaim_drop(r, slot);
	}
	atomic_store_explicit(&r->header->last_sweep_ns, gpucap_clock_monotonic_ns(), memory_order_relaxed);
	if (region_failed(r)) {
		if (report)
			memset(report, 0, sizeof(*report));
		return GPUCAP_ERR_CORRUPT;
	}
	return GPUCAP_OK;
}

void gpucap_region_maintain(gpucap_region *r)
{
	if (!r || r->observer)
		return;
	region_check_file(r);
	if (region_failed(r))
		return;
#ifdef GPUCAP_CRASH_POINTS
	/* The crash-point build sweeps only when asked (reclaim_dead): an
	 * election by the clock would make the Nth hit of a point differ from
	 * run to run. */
	return;
#endif
	uint64_t now = gpucap_clock_monotonic_ns();
	uint64_t last = atomic_load_explicit(&r->header->last_sweep_ns, memory_order_relaxed);
	if (last != 0 && now - last < ATTACH_SWEEP_INTERVAL_NS && now >= last)
		return;
	if (!atomic_compare_exchange_strong_explicit(&r->header->last_sweep_ns, &last, now,
	                                             memory_order_relaxed, memory_order_relaxed))
		return; /* another process was elected */
	gpucap_region_reclaim_dead(r, NULL);
}

static void write_identity(struct gpucap_region *r, uint32_t slot, const struct gpucap_slot_identity *id)
{
	struct slot_header *header = region_slot(r, slot);
	char comm[GPUCAP_COMM_MAX];
	memset(comm, 0, sizeof(comm));
	if (id && id->comm)
		snprintf(comm, sizeof(comm), "%s", id->comm);
	else
		gpucap_platform_comm(comm, sizeof(comm));
	uint64_t words[GPUCAP_COMM_MAX / 8];
	memcpy(words, comm, sizeof(words));
	for (unsigned i = 0; i < GPUCAP_COMM_MAX / 8; i++)
		atomic_store_explicit(&header->comm_words[i], words[i], memory_order_relaxed);
	int32_t pid = (id && id->pid) ? id->pid : gpucap_platform_pid();
	atomic_store_explicit(&header->pid, pid, memory_order_relaxed);
	atomic_store_explicit(&header->host_pid, id ? id->host_pid : 0, memory_order_relaxed);
	atomic_store_explicit(&header->host_pid_source, id ? (uint32_t)id->host_pid_source : 0,
	                      memory_order_relaxed);
	atomic_store_explicit(&header->started_unix_ns, gpucap_clock_realtime_ns(), memory_order_relaxed);
	atomic_store_explicit(&header->pid_ns_inode, id ? id->pid_ns_inode : 0, memory_order_relaxed);
	atomic_store_explicit(&header->resolved_host, 0, memory_order_relaxed);
	atomic_store_explicit(&header->last_launch_unix_ns, 0, memory_order_relaxed);
	atomic_store_explicit(&header->refusals, 0, memory_order_relaxed);
	atomic_store_explicit(&header->context_estimates, 0, memory_order_relaxed);
	atomic_store_explicit(&header->context_creating, 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&header->generation, 1, memory_order_relaxed);
	GPUCAP_CRASH_POINT("claim.identity_written");
	/* R6: the identity above is complete before anyone sees LIVE (A6). */
	atomic_store_explicit(region_slot_state(r, slot), SLOT_LIVE, memory_order_release);
	GPUCAP_CRASH_POINT("claim.slot_live");
}

/* Take the lease of one slot; true when the slot is now ours. */
static bool try_take(struct gpucap_region *r, uint32_t slot, const struct gpucap_slot_identity *id)
{
	if (!slot_lease_take(r, slot))
		return false;
	GPUCAP_CRASH_POINT("claim.lease_taken");
	/* A reclaimed slot's lanes were zeroed when it was freed; a retired
	 * one (its owner exited normally) still holds them: zero them here. */
	/* A6: pairs with R6; anything but FREE under our lease is a dead
	 * owner's slot to return first. */
	if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) != SLOT_FREE)
		reclaim_held_slot(r, slot, NULL); /* its owner died */
	else
		zero_lane_counters(r, slot); /* a retired owner left its lanes held */
	write_identity(r, slot, id);
	r->slot = (int)slot;
	return true;
}

/* What a scan that took no slot saw. */
struct claim_look {
	/* A slot we could not take is on its way to free: being reclaimed, or
	 * freed since we first looked at it. */
	bool reclaiming;
	/* What the second pass found in each slot, its generation and
	 * whether it read FREE, summed over the slots as scrambled words (so
	 * that changes in two slots do not cancel out). Every change a slot
	 * goes through (claimed, freed, reclaimed, claimed again) changes the
	 * pair, so two scans with the same signature saw no slot change
	 * between their looks but with a chance of 2^-64. */
	uint64_t signature;
};

/* A bijective scramble of the word (splitmix64's finaliser). */
static uint64_t scramble(uint64_t x)
{
	x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
	return x ^ (x >> 31);
}

/* One look at every slot: free ones first, then every slot again (live ones
 * whose owner may have died, ones freed since the first pass, free ones
 * whose lease someone held a moment ago). True when a slot is ours. */
static bool claim_scan(struct gpucap_region *r, const struct gpucap_slot_identity *id, uint32_t start,
                       struct claim_look *look)
{
	uint32_t capacity = r->geo.slot_capacity;
	look->reclaiming = false;
	look->signature = 0;
	for (int pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < capacity; i++) {
			uint32_t slot = (start + i) % capacity;
			/* A6: pairs with R6 (LIVE at claim, FREE at detach or reclaim). */
			bool free_slot = atomic_load_explicit(region_slot_state(r, slot),
			                                      memory_order_acquire) == SLOT_FREE;
			if (pass == 0 && !free_slot)
				continue;
			if (try_take(r, slot, id))
				return true;
			if (pass == 0)
				continue; /* looked at again, and counted, in the second pass */
			/* A6 again: a claimer's generation increment comes before
			 * its LIVE store (R6), so this state and the generation
			 * read after it belong to the same owner or a later one. */
			uint32_t state =
			    atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire);
			uint32_t generation =
			    atomic_load_explicit(&region_slot(r, slot)->generation, memory_order_relaxed);
			/* Slot (12 bits) above generation (32) above FREE (1):
			 * distinct looks give distinct words. */
			look->signature +=
			    scramble((uint64_t)slot << 33 | (uint64_t)generation << 1 | (state == SLOT_FREE));
			/* A reclaimer drops the lease before its mark, so a mark
			 * found after a failed take means a reclaim in progress; a
			 * slot that reads FREE now was freed since our look. */
			if (!look->reclaiming &&
			    (gpucap_slot_being_reclaimed(r->fd, &r->slot_claim[slot], LEASE_RECLAIM(slot)) ||
			     (!free_slot && state == SLOT_FREE)))
				look->reclaiming = true;
		}
	}
	return false;
}

gpucap_status gpucap_region_claim_slot(gpucap_region *r, const struct gpucap_slot_identity *id, char *err,
                                       size_t err_len)
{
	if (!r || r->observer || r->slot >= 0) {
		if (err && err_len)
			snprintf(err, err_len, "gpucap: region %s: %s", r ? r->path : "(none)",
			         !r            ? "no region"
			         : r->observer ? "an observer handle cannot claim a slot"
			                       : "this handle already holds a slot");
		return GPUCAP_ERR_INVALID;
	}
	if (region_failed(r)) {
		gpucap_region_failed(r, err, err_len);
		return GPUCAP_ERR_CORRUPT;
	}
	uint32_t capacity = r->geo.slot_capacity;
	/* Start at a different place per process so simultaneous starts
	 * rarely try the same slot. */
	uint64_t seed =
	    (uint64_t)gpucap_platform_pid() * UINT64_C(0x9E3779B97F4A7C15) ^ gpucap_clock_monotonic_ns();
	uint32_t start = (uint32_t)((seed >> 17) % capacity);
#ifdef GPUCAP_CRASH_POINTS
	start = 0; /* the same slots in every run of the crash-point harness */
#endif
	/* One scan looks at each slot at a different moment: while it runs, a
	 * slot it passed may be freed (its owner dies and is reclaimed) and the
	 * slot it was heading for taken by another claimer, so that it finds
	 * every slot held though one never stopped being free. The table is
	 * full only when two scans in a row found every slot held and no slot
	 * changed between them: then, at the moment between the two, each slot
	 * was held.
	 * When the only slots not held by live owners are being reclaimed,
	 * look again until their reclaimers free them: each has a few atomic
	 * steps per device left. A reclaimer that stalls (stopped, or
	 * descheduled for long) holds its slot past claim_wait_ms; then the
	 * table is full for now, and the caller is told so. The same bound
	 * ends a table that keeps changing under every scan. */
	uint64_t wait_ns = (uint64_t)(r->claim_wait_ms ? r->claim_wait_ms : 2000u) * 1000000u;
	uint64_t deadline = 0;
	uint64_t backoff_ns = 10000;
	struct claim_look look = {0};
	bool settled_before = false; /* the previous scan found every slot held */
	uint64_t signature_before = 0;
	for (;;) {
		if (claim_scan(r, id, start, &look)) {
			gpucap_region_maintain(r);
			if (gpucap_region_failed(r, err, err_len))
				return GPUCAP_ERR_CORRUPT;
			return GPUCAP_OK;
		}
		if (region_failed(r))
			break;
		if (!look.reclaiming && settled_before && look.signature == signature_before)
			break; /* full */
		settled_before = !look.reclaiming;
		signature_before = look.signature;
		uint64_t now = gpucap_clock_monotonic_ns();
		if (deadline == 0)
			deadline = now + wait_ns;
		else if (now >= deadline)
			break;
		gpucap_sleep_ns(backoff_ns);
		if (backoff_ns < 1000000)
			backoff_ns *= 2;
	}
	if (gpucap_region_failed(r, err, err_len))
		return GPUCAP_ERR_CORRUPT;
	if (err && err_len) {
		if (look.reclaiming)
			snprintf(
			    err, err_len,
			    "gpucap: region %s: all %u process slots are held by live processes or by a process that stalled while reclaiming one; try again, stop some processes, or create the region with more slots",
			    r->path, capacity);
		else
			snprintf(
			    err, err_len,
			    "gpucap: region %s: all %u process slots are held by live processes; stop some, or create the region with more slots",
			    r->path, capacity);
	}
	return GPUCAP_ERR_FULL;
}

void gpucap_region_set_host_pid(gpucap_region *r, int32_t host_pid, gpucap_host_pid_source source)
{
	if (!r || r->slot < 0 || region_failed(r))
		return;
	struct slot_header *header = region_slot(r, (uint32_t)r->slot);
	atomic_store_explicit(&header->host_pid_source, (uint32_t)source, memory_order_relaxed);
	/* R7-like: publishes host_pid_source with the pid; readers load the
	 * pid with acquire (fill_process). */
	atomic_store_explicit(&header->host_pid, host_pid, memory_order_release);
}

gpucap_status gpucap_region_resolve_host_pid(gpucap_region *r, uint32_t slot, uint32_t generation,
                                             int32_t host_pid)
{
	if (!r || r->observer || slot >= r->geo.slot_capacity || host_pid <= 0)
		return GPUCAP_ERR_INVALID;
	if (region_failed(r))
		return GPUCAP_ERR_CORRUPT;
	struct slot_header *header = region_slot(r, slot);
	/* A6 and the generation (relaxed increment published by R6): the
	 * resolver writes only for the owner it matched. */
	if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) != SLOT_LIVE ||
	    atomic_load_explicit(&header->generation, memory_order_acquire) != generation)
		return GPUCAP_ERR_STALE;
	/* Tagged with the generation, so a write that loses a race with the
	 * slot's reuse is ignored by readers rather than naming the new owner. */
	uint64_t word = ((uint64_t)generation << 32) | (uint32_t)host_pid;
	/* R7: partner A7 in fill_process, which reads the generation with it. */
	atomic_store_explicit(&header->resolved_host, word, memory_order_release);
	/* Re-check: a reuse that raced the store shows a new generation. */
	return atomic_load_explicit(&header->generation, memory_order_acquire) == generation
	           ? GPUCAP_OK
	           : GPUCAP_ERR_STALE;
}

void gpucap_region_note_launch(gpucap_region *r, uint64_t unix_ns)
{
	if (!r || r->slot < 0 || region_failed(r))
		return;
	atomic_store_explicit(&region_slot(r, (uint32_t)r->slot)->last_launch_unix_ns, unix_ns,
	                      memory_order_relaxed);
}

int gpucap_region_slot_index(const gpucap_region *r)
{
	return r ? r->slot : -1;
}

void slot_release_own(struct gpucap_region *r)
{
	if (!r || r->slot < 0)
		return;
	uint32_t slot = (uint32_t)r->slot;
	slot_return_all(r, slot, NULL, NULL);
	GPUCAP_CRASH_POINT("detach.returned");
	/* R6: I6, our lanes were returned above. */
	atomic_store_explicit(region_slot_state(r, slot), SLOT_FREE, memory_order_release);
	GPUCAP_CRASH_POINT("detach.slot_freed");
	slot_lease_drop(r, slot);
	r->slot = -1;
}
