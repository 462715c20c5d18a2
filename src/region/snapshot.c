/* SPDX-License-Identifier: Apache-2.0 */
/* Snapshots for readers: a copy of the device table and the live slots.
 * Readers never wait: each device's total is cross-checked against the sum
 * of the lanes a bounded number of times. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "region_internal.h"

#define SNAPSHOT_TRIES 16

/* The pending tagged amount of a device, and the slot it belongs to. */
static int64_t pending_for(const struct gpucap_region *r, uint32_t device, uint64_t word, uint32_t *slot)
{
	uint32_t tag = charge_tag(word);
	*slot = UINT32_MAX;
	int64_t amount = pending_tagged_amount(r, device, word);
	if (amount != 0 && tag != 0)
		*slot = (tag - 1) / r->geo.lanes;
	return amount;
}

static void read_comm(const struct slot_header *header, char *out)
{
	uint64_t words[GPUCAP_COMM_MAX / 8];
	for (unsigned i = 0; i < GPUCAP_COMM_MAX / 8; i++)
		words[i] = atomic_load_explicit(&header->comm_words[i], memory_order_relaxed);
	memcpy(out, words, GPUCAP_COMM_MAX);
	out[GPUCAP_COMM_MAX - 1] = '\0';
}

static void fill_process(const struct gpucap_region *r, uint32_t slot, struct gpucap_process_view *view,
                         const int64_t *pending_amount, const uint32_t *pending_slot)
{
	const struct slot_header *header = region_slot(r, slot);
	view->slot = slot;
	view->generation = atomic_load_explicit(&header->generation, memory_order_relaxed);
	view->pid = atomic_load_explicit(&header->pid, memory_order_relaxed);
	/* Acquire: pairs with the owner's release store in set_host_pid,
	 * so the source read next belongs to this pid. */
	view->host_pid = atomic_load_explicit(&header->host_pid, memory_order_acquire);
	uint32_t source = atomic_load_explicit(&header->host_pid_source, memory_order_relaxed);
	view->host_pid_source =
	    source <= GPUCAP_HOST_PID_HOST_PROCFS ? (gpucap_host_pid_source)source : GPUCAP_HOST_PID_UNKNOWN;
	if (view->host_pid <= 0)
		view->host_pid_source = GPUCAP_HOST_PID_UNKNOWN;
	if (view->host_pid_source == GPUCAP_HOST_PID_UNKNOWN) {
		/* A7: pairs with the resolver's R7; the generation in the word tells
		 * whether it names this owner. */
		uint64_t resolved = atomic_load_explicit(&header->resolved_host, memory_order_acquire);
		int32_t host_pid = (int32_t)(uint32_t)resolved;
		if ((uint32_t)(resolved >> 32) == view->generation && host_pid > 0) {
			view->host_pid = host_pid;
			view->host_pid_source = GPUCAP_HOST_PID_HOST_RESOLVER;
		} else {
			view->host_pid = 0;
		}
	}
	view->pid_ns_inode = atomic_load_explicit(&header->pid_ns_inode, memory_order_relaxed);
	view->last_launch_unix_ns = atomic_load_explicit(&header->last_launch_unix_ns, memory_order_relaxed);
	view->refusals = atomic_load_explicit(&header->refusals, memory_order_relaxed);
	view->context_estimates = atomic_load_explicit(&header->context_estimates, memory_order_relaxed);
	view->started_unix_ns = atomic_load_explicit(&header->started_unix_ns, memory_order_relaxed);
	read_comm(header, view->comm);
	view->self = (int)slot == r->slot;
	view->alive = view->self || gpucap_lease_probe(r->fd, LEASE_SLOT(slot)) == 1;
	for (uint32_t device = 0; device < r->geo.device_capacity; device++) {
		struct gpucap_process_device_view *out = &view->devices[device];
		memset(out, 0, sizeof(*out));
		/* An operation already counted in the device total but not yet
		 * applied to its lane belongs to this slot's charge. */
		int64_t granted = pending_slot[device] == slot ? pending_amount[device] : 0, credit = 0;
		for (uint32_t lane = 0; lane < r->geo.lanes; lane++) {
			const struct lane_device *lane_device = region_lane_device(r, slot, lane, device);
			/* A10: pairs with R10 (user or helper). */
			granted = sat_add_i64(granted, granted_amount(atomic_load_explicit(
			                                   &lane_device->granted, memory_order_acquire)));
			credit = sat_add_i64(
			    credit, atomic_load_explicit(&lane_device->credit, memory_order_relaxed));
			for (unsigned kind = 0; kind < GPUCAP_KIND_COUNT; kind++)
				out->kind_bytes[kind] =
				    sat_add_i64(out->kind_bytes[kind],
				                atomic_load_explicit(&lane_device->kind_bytes[kind],
				                                     memory_order_relaxed));
		}
		out->charged_bytes = granted > 0 ? (uint64_t)granted : 0;
		/* credit may be negative (a damaged file): in use is then at most
		 * what is charged. */
		out->in_use_bytes = credit <= 0        ? out->charged_bytes
		                    : granted > credit ? (uint64_t)granted - (uint64_t)credit
		                                       : 0;
	}
}

/* Read every live slot between two reads of every device word. When no word
 * moved and each device total equals its slots' sum, the copy is exact. */
static bool read_processes(const struct gpucap_region *r, struct gpucap_snapshot *snap)
{
	uint32_t devices = r->geo.device_capacity;
	uint64_t before[REGION_MAX_DEVICES], after[REGION_MAX_DEVICES];
	int64_t pending_amount[REGION_MAX_DEVICES];
	uint32_t pending_slot[REGION_MAX_DEVICES];
	for (uint32_t d = 0; d < devices; d++) {
		/* A5: pairs with the last mover's R5; with the re-read below it
		 * brackets the slot reads (no move in between: I1 must add up). */
		before[d] = atomic_load_explicit(&region_device(r, d)->charge, memory_order_acquire);
		pending_amount[d] = pending_for(r, d, before[d], &pending_slot[d]);
	}
	snap->process_count = 0;
	for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++) {
		/* Any state but FREE: an out-of-range one still holds charges. */
		/* A6: pairs with R6 of claims, detaches and reclaims. */
		if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) == SLOT_FREE)
			continue;
		fill_process(r, slot, &snap->processes[snap->process_count++], pending_amount, pending_slot);
	}
	bool consistent = true;
	for (uint32_t d = 0; d < devices; d++) {
		/* A5 again: the second bracket. */
		after[d] = atomic_load_explicit(&region_device(r, d)->charge, memory_order_acquire);
		if (after[d] != before[d]) {
			consistent = false;
			continue;
		}
		int64_t sum = pending_slot[d] == UINT32_MAX ? pending_amount[d] : 0;
		for (uint32_t p = 0; p < snap->process_count; p++) {
			uint64_t charged = snap->processes[p].devices[d].charged_bytes;
			sum = sat_add_i64(sum, charged > INT64_MAX ? INT64_MAX : (int64_t)charged);
		}
		if (sum < 0 || (uint64_t)sum != charge_total(before[d]))
			consistent = false;
	}
	for (uint32_t d = 0; d < devices; d++)
		snap->devices[d].charged_bytes = charge_total(before[d]);
	return consistent;
}

/* The compute-cap part of a device view. The duty is the published one, or
 * the cap itself (the gates' feed-forward) before any controller ran. A
 * share (delivered or asked) is known only while its publisher's lease is
 * recent: a figure no live controller refreshes is history, not a
 * measurement. */
#define SM_SHARE_FRESH_NS UINT64_C(3000000000)

static void fill_sm(const struct gpucap_region *r, uint32_t device, struct gpucap_device_view *view,
                    uint64_t now_ns)
{
	struct gpucap_sm_state sm;
	if (!gpucap_region_sm_read(r, (int)device, now_ns, &sm))
		return;
	uint32_t cap_ppm = sm.sm_limit >= 100 ? GPUCAP_SM_PPM : sm.sm_limit * (GPUCAP_SM_PPM / 100);
	view->sm_duty_ppm = sm.sm_limit >= 100 ? GPUCAP_SM_PPM : (sm.duty_ppm ? sm.duty_ppm : cap_ppm);
	view->sm_share_known = sm.share_source != GPUCAP_SM_SOURCE_NONE && sm.lease_slot >= 0 &&
	                       sm.lease_until_ns + SM_SHARE_FRESH_NS >= now_ns;
	view->sm_share_ppm = view->sm_share_known ? sm.share_ppm : 0;
	view->sm_share_source = view->sm_share_known ? sm.share_source : GPUCAP_SM_SOURCE_NONE;
	/* The asked share rides on the share's freshness. A 0 beside a
	 * non-zero share is a publisher that does not write demand; beside a
	 * zero share it is the idle work's own figure. */
	view->sm_asked_known = view->sm_share_known && (sm.asked_ppm != 0 || sm.share_ppm == 0);
	view->sm_asked_ppm = view->sm_asked_known ? sm.asked_ppm : 0;
}

struct gpucap_snapshot *gpucap_region_snapshot(gpucap_region *r)
{
	if (!r)
		return NULL;
	region_check_file(r);
	if (region_failed(r))
		return NULL;
	struct gpucap_snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap)
		return NULL;
	uint32_t devices = r->geo.device_capacity, slots = r->geo.slot_capacity;
	snap->slot_capacity = slots;
	snap->device_capacity = devices;
	snap->devices = calloc(devices, sizeof(*snap->devices));
	snap->processes = calloc(slots, sizeof(*snap->processes));
	if (!snap->devices || !snap->processes) {
		gpucap_snapshot_free(snap);
		return NULL;
	}
	for (uint32_t slot = 0; slot < slots; slot++) {
		snap->processes[slot].devices = calloc(devices, sizeof(*snap->processes[slot].devices));
		if (!snap->processes[slot].devices) {
			gpucap_snapshot_free(snap);
			return NULL;
		}
	}
	memcpy(snap->path, r->path, sizeof(snap->path));
	snap->format_version = r->header->format_version;
	snap->created_unix_ns = r->header->created_unix_ns;
	snap->reclaimed_slots_total =
	    atomic_load_explicit(&r->header->reclaimed_slots_total, memory_order_relaxed);
	snap->reclaimed_bytes_total =
	    atomic_load_explicit(&r->header->reclaimed_bytes_total, memory_order_relaxed);

	for (int attempt = 0; attempt < SNAPSHOT_TRIES && !snap->consistent; attempt++)
		snap->consistent = read_processes(r, snap);

	/* Compact the device table to registered entries, in index order. */
	uint64_t now_ns = gpucap_clock_monotonic_ns();
	uint64_t charged[REGION_MAX_DEVICES];
	for (uint32_t d = 0; d < devices; d++)
		charged[d] = snap->devices[d].charged_bytes;
	snap->device_count = 0;
	for (uint32_t device = 0; device < devices; device++) {
		const struct device_entry *entry = region_device(r, device);
		/* A2: pairs with R2. */
		if (atomic_load_explicit(&entry->key, memory_order_acquire) == 0)
			continue;
		struct gpucap_device_view *view = &snap->devices[snap->device_count++];
		memset(view, 0, sizeof(*view));
		view->index = (int)device;
		device_uuid_read(entry, view->uuid);
		view->limit_bytes =
		    /* A4: pairs with R4. */
		    stored_limit_bytes(atomic_load_explicit(&entry->limit, memory_order_acquire));
		uint32_t sm = atomic_load_explicit(&entry->sm_limit, memory_order_relaxed);
		view->sm_limit = sm == 0 ? 100 : sm - 1;
		fill_sm(r, device, view, now_ns);
		view->peak_bytes = atomic_load_explicit(&entry->peak, memory_order_relaxed);
		view->refusals_total = atomic_load_explicit(&entry->refusals, memory_order_relaxed);
		view->charged_bytes = charged[device];
		for (uint32_t p = 0; p < snap->process_count; p++)
			view->in_use_bytes =
			    sat_add_u64(view->in_use_bytes, snap->processes[p].devices[device].in_use_bytes);
	}
	if (region_failed(r)) {
		/* Truncated while being copied: what was read is not the file. */
		gpucap_snapshot_free(snap);
		return NULL;
	}
	return snap;
}

void gpucap_snapshot_free(struct gpucap_snapshot *snap)
{
	if (!snap)
		return;
	if (snap->processes)
		for (uint32_t p = 0; p < snap->slot_capacity; p++)
			free(snap->processes[p].devices);
	free(snap->processes);
	free(snap->devices);
	free(snap);
}
