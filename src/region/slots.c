/* Process slots and their leases: claiming a slot, returning a slot's
 * charges, reclaiming the slots of dead processes, and detaching. */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

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
uint64_t slot_return_charges(struct gpucap_region *r, uint32_t slot, uint64_t *returned)
{
	uint64_t total_returned = 0;
	for (uint32_t device = 0; device < r->geo.device_capacity; device++) {
		struct device_entry *entry = region_device(r, device);
		if (atomic_load_explicit(&entry->key, memory_order_acquire) == 0)
			continue;
		uint64_t word = atomic_load_explicit(&entry->charge, memory_order_acquire);
		uint32_t tag = charge_tag(word);
		if (tag > slot * r->geo.lanes && tag <= (slot + 1) * r->geo.lanes) {
			settle_tagged(r, device, word);
			/* lane_move clears a tag of its own lane before moving. */
			lane_move(r, slot, tag - 1 - slot * r->geo.lanes, device, 0, false);
		}
		int64_t sum = 0;
		for (uint32_t lane = 0; lane < r->geo.lanes; lane++)
			sum += granted_amount(atomic_load_explicit(
			    &region_lane_device(r, slot, lane, device)->granted, memory_order_acquire));
		if (sum != 0)
			lane_move(r, slot, 0, device, -sum, false);
		if (sum > 0) {
			total_returned += (uint64_t)sum;
			if (returned)
				returned[device] += (uint64_t)sum;
		}
	}
	return total_returned;
}

uint64_t slot_return_all(struct gpucap_region *r, uint32_t slot, uint64_t *returned)
{
	uint64_t total_returned = slot_return_charges(r, slot, returned);
	zero_lane_counters(r, slot);
	return total_returned;
}

/* The caller holds the slot's lease and found it LIVE: its owner is gone. */
static uint64_t reclaim_held_slot(struct gpucap_region *r, uint32_t slot, uint64_t *returned)
{
	uint64_t bytes = slot_return_all(r, slot, returned);
	atomic_store_explicit(region_slot_state(r, slot), SLOT_FREE, memory_order_release);
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
	uint64_t *per_device = report ? report->bytes_per_device : NULL;
	for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++) {
		if ((int)slot == r->slot)
			continue;
		if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) != SLOT_LIVE)
			continue;
		if (gpucap_lease_try(r->fd, LEASE_SLOT(slot)) != 0)
			continue; /* alive, or being reclaimed by someone else */
		/* Holding the lease, check again: another reclaimer may have
		 * finished between our look and our lease. */
		if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) == SLOT_LIVE) {
			uint64_t bytes = reclaim_held_slot(r, slot, per_device);
			if (report) {
				report->slots++;
				report->bytes += bytes;
			}
		}
		gpucap_lease_drop(r->fd, LEASE_SLOT(slot));
	}
	atomic_store_explicit(&r->header->last_sweep_ns, gpucap_clock_monotonic_ns(), memory_order_relaxed);
	return GPUCAP_OK;
}

void gpucap_region_maintain(gpucap_region *r)
{
	if (!r || r->observer)
		return;
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
	atomic_fetch_add_explicit(&header->generation, 1, memory_order_relaxed);
	atomic_store_explicit(region_slot_state(r, slot), SLOT_LIVE, memory_order_release);
}

/* Take the lease of one slot; true when the slot is now ours. */
static bool try_take(struct gpucap_region *r, uint32_t slot, const struct gpucap_slot_identity *id)
{
	if (gpucap_lease_try(r->fd, LEASE_SLOT(slot)) != 0)
		return false;
	if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) == SLOT_LIVE)
		reclaim_held_slot(r, slot, NULL); /* its owner died */
	else
		zero_lane_counters(r, slot); /* a retired owner left its lanes held */
	write_identity(r, slot, id);
	r->slot = (int)slot;
	return true;
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
	uint32_t capacity = r->geo.slot_capacity;
	/* Start at a different place per process so simultaneous starts
	 * rarely try the same slot. */
	uint64_t seed =
	    (uint64_t)gpucap_platform_pid() * UINT64_C(0x9E3779B97F4A7C15) ^ gpucap_clock_monotonic_ns();
	uint32_t start = (uint32_t)((seed >> 17) % capacity);
	for (int pass = 0; pass < 2; pass++) {
		/* First pass: free slots; second: live-looking slots whose owner
		 * may have died. */
		uint32_t wanted = pass == 0 ? SLOT_FREE : SLOT_LIVE;
		for (uint32_t i = 0; i < capacity; i++) {
			uint32_t slot = (start + i) % capacity;
			if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) != wanted)
				continue;
			if (try_take(r, slot, id)) {
				gpucap_region_maintain(r);
				return GPUCAP_OK;
			}
		}
	}
	if (err && err_len)
		snprintf(
		    err, err_len,
		    "gpucap: region %s: all %u process slots are held by live processes; stop some, or create the region with more slots",
		    r->path, capacity);
	return GPUCAP_ERR_FULL;
}

void gpucap_region_set_host_pid(gpucap_region *r, int32_t host_pid, gpucap_host_pid_source source)
{
	if (!r || r->slot < 0)
		return;
	struct slot_header *header = region_slot(r, (uint32_t)r->slot);
	atomic_store_explicit(&header->host_pid_source, (uint32_t)source, memory_order_relaxed);
	atomic_store_explicit(&header->host_pid, host_pid, memory_order_release);
}

gpucap_status gpucap_region_resolve_host_pid(gpucap_region *r, uint32_t slot, uint32_t generation,
                                             int32_t host_pid)
{
	if (!r || r->observer || slot >= r->geo.slot_capacity || host_pid <= 0)
		return GPUCAP_ERR_INVALID;
	struct slot_header *header = region_slot(r, slot);
	if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) != SLOT_LIVE ||
	    atomic_load_explicit(&header->generation, memory_order_acquire) != generation)
		return GPUCAP_ERR_STALE;
	/* Tagged with the generation, so a write that loses a race with the
	 * slot's reuse is ignored by readers rather than naming the new owner. */
	uint64_t word = ((uint64_t)generation << 32) | (uint32_t)host_pid;
	atomic_store_explicit(&header->resolved_host, word, memory_order_release);
	return atomic_load_explicit(&header->generation, memory_order_acquire) == generation
	           ? GPUCAP_OK
	           : GPUCAP_ERR_STALE;
}

void gpucap_region_note_launch(gpucap_region *r, uint64_t unix_ns)
{
	if (!r || r->slot < 0)
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
	slot_return_all(r, slot, NULL);
	atomic_store_explicit(region_slot_state(r, slot), SLOT_FREE, memory_order_release);
	gpucap_lease_drop(r->fd, LEASE_SLOT(slot));
	r->slot = -1;
}
