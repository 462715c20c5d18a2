/* Snapshots for readers: a copy of the device table and the live slots.
 * Readers never wait: each device's total is cross-checked against the sum
 * of the lanes a bounded number of times. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"
#include "region_internal.h"

#define SNAPSHOT_TRIES 16

static int64_t slot_granted(const struct gpucap_region *r, uint32_t slot, uint32_t device)
{
	int64_t sum = 0;
	for (uint32_t lane = 0; lane < r->geo.lanes; lane++)
		sum += granted_amount(atomic_load_explicit(
		    &region_lane_device(r, slot, lane, device)->granted, memory_order_acquire));
	return sum;
}

/* True when the device's total, read twice unchanged, equals the sum of the
 * live slots' granted amounts plus a tagged operation not yet applied. */
static bool device_consistent(const struct gpucap_region *r, uint32_t device)
{
	const struct device_entry *entry = region_device(r, device);
	for (int attempt = 0; attempt < SNAPSHOT_TRIES; attempt++) {
		uint64_t before = atomic_load_explicit(&entry->charge, memory_order_acquire);
		int64_t sum = pending_tagged_amount(r, device, before);
		for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++)
			if (atomic_load_explicit(&region_slot(r, slot)->state, memory_order_acquire) ==
			    SLOT_LIVE)
				sum += slot_granted(r, slot, device);
		uint64_t after = atomic_load_explicit(&entry->charge, memory_order_acquire);
		if (before != after)
			continue;
		return sum >= 0 && (uint64_t)sum == charge_total(before);
	}
	return false;
}

static void read_comm(const struct slot_header *header, char *out)
{
	uint64_t words[GPUCAP_COMM_MAX / 8];
	for (unsigned i = 0; i < GPUCAP_COMM_MAX / 8; i++)
		words[i] = atomic_load_explicit(&header->comm_words[i], memory_order_relaxed);
	memcpy(out, words, GPUCAP_COMM_MAX);
	out[GPUCAP_COMM_MAX - 1] = '\0';
}

static void fill_process(const struct gpucap_region *r, uint32_t slot, struct gpucap_process_view *view)
{
	const struct slot_header *header = region_slot(r, slot);
	view->slot = slot;
	view->generation = atomic_load_explicit(&header->generation, memory_order_relaxed);
	view->pid = atomic_load_explicit(&header->pid, memory_order_relaxed);
	view->host_pid = atomic_load_explicit(&header->host_pid, memory_order_acquire);
	uint32_t source = atomic_load_explicit(&header->host_pid_source, memory_order_relaxed);
	view->host_pid_source = source <= GPUCAP_HOST_PID_HOST_RESOLVER ? (gpucap_host_pid_source)source
	                                                                : GPUCAP_HOST_PID_UNKNOWN;
	view->started_unix_ns = atomic_load_explicit(&header->started_unix_ns, memory_order_relaxed);
	read_comm(header, view->comm);
	view->self = (int)slot == r->slot;
	view->alive = view->self || gpucap_lease_probe(r->fd, LEASE_SLOT(slot)) == 1;
	for (uint32_t device = 0; device < r->geo.device_capacity; device++) {
		struct gpucap_process_device_view *out = &view->devices[device];
		int64_t granted = 0, credit = 0;
		for (uint32_t lane = 0; lane < r->geo.lanes; lane++) {
			const struct lane_device *lane_device = region_lane_device(r, slot, lane, device);
			granted +=
			    granted_amount(atomic_load_explicit(&lane_device->granted, memory_order_acquire));
			credit += atomic_load_explicit(&lane_device->credit, memory_order_relaxed);
			for (unsigned kind = 0; kind < GPUCAP_KIND_COUNT; kind++)
				out->kind_bytes[kind] += atomic_load_explicit(&lane_device->kind_bytes[kind],
				                                              memory_order_relaxed);
		}
		out->charged_bytes = granted > 0 ? (uint64_t)granted : 0;
		out->in_use_bytes = granted > credit ? (uint64_t)(granted - credit) : 0;
	}
}

struct gpucap_snapshot *gpucap_region_snapshot(gpucap_region *r)
{
	if (!r)
		return NULL;
	struct gpucap_snapshot *snap = calloc(1, sizeof(*snap));
	if (!snap)
		return NULL;
	uint32_t devices = r->geo.device_capacity, slots = r->geo.slot_capacity;
	snap->devices = calloc(devices, sizeof(*snap->devices));
	snap->processes = calloc(slots, sizeof(*snap->processes));
	if (!snap->devices || !snap->processes) {
		gpucap_snapshot_free(snap);
		return NULL;
	}
	memcpy(snap->path, r->path, sizeof(snap->path));
	snap->format_version = r->header->format_version;
	snap->slot_capacity = slots;
	snap->device_capacity = devices;
	snap->created_unix_ns = r->header->created_unix_ns;
	snap->reclaimed_slots_total =
	    atomic_load_explicit(&r->header->reclaimed_slots_total, memory_order_relaxed);
	snap->reclaimed_bytes_total =
	    atomic_load_explicit(&r->header->reclaimed_bytes_total, memory_order_relaxed);

	for (uint32_t slot = 0; slot < slots; slot++) {
		if (atomic_load_explicit(&region_slot(r, slot)->state, memory_order_acquire) != SLOT_LIVE)
			continue;
		struct gpucap_process_view *view = &snap->processes[snap->process_count];
		view->devices = calloc(devices, sizeof(*view->devices));
		if (!view->devices) {
			gpucap_snapshot_free(snap);
			return NULL;
		}
		snap->process_count++;
		fill_process(r, slot, view);
	}

	snap->consistent = true;
	for (uint32_t device = 0; device < devices; device++) {
		const struct device_entry *entry = region_device(r, device);
		if (atomic_load_explicit(&entry->key, memory_order_acquire) == 0)
			continue;
		struct gpucap_device_view *view = &snap->devices[snap->device_count++];
		view->index = (int)device;
		device_uuid_read(entry, view->uuid);
		view->limit_bytes =
		    stored_limit_bytes(atomic_load_explicit(&entry->limit, memory_order_acquire));
		uint32_t sm = atomic_load_explicit(&entry->sm_limit, memory_order_relaxed);
		view->sm_limit = sm == 0 ? 100 : sm - 1;
		view->peak_bytes = atomic_load_explicit(&entry->peak, memory_order_relaxed);
		if (!device_consistent(r, device))
			snap->consistent = false;
		view->charged_bytes =
		    charge_total(atomic_load_explicit(&entry->charge, memory_order_acquire));
		for (uint32_t p = 0; p < snap->process_count; p++)
			view->in_use_bytes += snap->processes[p].devices[device].in_use_bytes;
	}
	return snap;
}

void gpucap_snapshot_free(struct gpucap_snapshot *snap)
{
	if (!snap)
		return;
	if (snap->processes)
		for (uint32_t p = 0; p < snap->process_count; p++)
			free(snap->processes[p].devices);
	free(snap->processes);
	free(snap->devices);
	free(snap);
}
