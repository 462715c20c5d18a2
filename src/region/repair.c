/* SPDX-License-Identifier: Apache-2.0 */
/* Repair: what a root tool (gpucap reap) can put right in a damaged region
 * while its processes run, and what it can only report. */
#include <stdatomic.h>
#include <string.h>

#include "platform.h"
#include "region_internal.h"

#define REPAIR_TRIES 8

/* A live owner's state word out of range: the owner only ever writes LIVE
 * (at claim) and FREE (at detach), so a CAS from the damaged value to LIVE
 * loses to its detach and never undoes it. */
static void repair_live_states(struct gpucap_region *r, struct gpucap_repair_report *report)
{
	for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++) {
		_Atomic uint32_t *state = region_slot_state(r, slot);
		/* A6: pairs with the owner's R6 stores. */
		uint32_t seen = atomic_load_explicit(state, memory_order_acquire);
		if (seen == SLOT_FREE || seen == SLOT_LIVE)
			continue;
		if (gpucap_lease_probe(r->fd, LEASE_SLOT(slot)) != 1)
			continue; /* dead: reclaim_dead returned it; or free now */
		/* R6/A6 (acq_rel): pairs with the owner's release stores of its
		 * state; it cannot undo the owner's FREE (the CAS then fails). */
		if (atomic_compare_exchange_strong_explicit(state, &seen, SLOT_LIVE, memory_order_acq_rel,
		                                            memory_order_acquire))
			report->slot_states_repaired++;
	}
}

/* The sum of every held slot's ledger on device, or false when a slot of a
 * live owner holds a negative ledger (only the owner can undo that). */
static bool ledgers_sum(const struct gpucap_region *r, uint32_t device, int64_t *out)
{
	int64_t total = 0;
	bool sane = true;
	for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++) {
		/* A6. */
		if (atomic_load_explicit(region_slot_state(r, slot), memory_order_acquire) == SLOT_FREE)
			continue;
		int64_t slot_sum = 0;
		for (uint32_t lane = 0; lane < r->geo.lanes; lane++)
			/* A10: pairs with R10. */
			slot_sum += granted_amount(atomic_load_explicit(
			    &region_lane_device(r, slot, lane, device)->granted, memory_order_acquire));
		if (slot_sum < 0)
			sane = false;
		total = sat_add_i64(total, slot_sum);
	}
	*out = total;
	return sane;
}

/* Set a device total to the sum of the ledgers when the two differ while
 * nothing moves. The word is read before and after the ledgers, untagged
 * both times and equal, and the sum must come out the same twice in a row:
 * an operation landing in between changes the word (an operation that
 * comes back to the very same total between two reads, twice, is the one
 * case this cannot see). */
static void repair_total(struct gpucap_region *r, uint32_t device, struct gpucap_repair_report *report)
{
	struct device_entry *entry = region_device(r, device);
	int64_t previous_sum = -1;
	for (int attempt = 0; attempt < REPAIR_TRIES; attempt++) {
		/* A5: pairs with the last mover's R5; with the re-read below it
		 * brackets the sum of the ledgers. */
		uint64_t before = atomic_load_explicit(&entry->charge, memory_order_acquire);
		if (charge_tag(before) != 0) {
			settle_tagged(r, device, before);
			continue;
		}
		int64_t sum;
		bool sane = ledgers_sum(r, device, &sum);
		/* A5: the second bracket. */
		uint64_t after = atomic_load_explicit(&entry->charge, memory_order_acquire);
		if (after != before) {
			previous_sum = -1;
			continue;
		}
		if (!sane) {
			report->live_negative_ledgers++;
			return;
		}
		if ((uint64_t)sum == charge_total(before))
			return; /* nothing to repair */
		if (sum != previous_sum) {
			previous_sum = sum;
			continue;
		}
		uint64_t fixed = (uint64_t)sum > GPUCAP_BYTES_MAX ? GPUCAP_BYTES_MAX : (uint64_t)sum;
		/* R5 (acq_rel): the same CAS every operation on the total uses;
		 * it fails if any of them landed since `before` (I1 restored). */
		if (atomic_compare_exchange_strong_explicit(&entry->charge, &before, charge_word(fixed, 0),
		                                            memory_order_acq_rel, memory_order_acquire)) {
			report->devices_repaired++;
			if (fixed < charge_total(before))
				report->bytes_removed =
				    sat_add_u64(report->bytes_removed, charge_total(before) - fixed);
			else
				report->bytes_added =
				    sat_add_u64(report->bytes_added, fixed - charge_total(before));
			return;
		}
	}
	report->devices_unsettled++;
}

gpucap_status gpucap_region_repair(gpucap_region *r, struct gpucap_repair_report *report)
{
	struct gpucap_repair_report local;
	if (!report)
		report = &local;
	memset(report, 0, sizeof(*report));
	gpucap_status status = gpucap_region_reclaim_dead(r, &report->reclaim);
	if (status != GPUCAP_OK)
		return status;
	repair_live_states(r, report);
	for (uint32_t device = 0; device < r->geo.device_capacity; device++)
		/* A2: pairs with R2. */
		if (atomic_load_explicit(&region_device(r, device)->key, memory_order_acquire) != 0)
			repair_total(r, device, report);
	if (region_failed(r)) {
		memset(report, 0, sizeof(*report));
		return GPUCAP_ERR_CORRUPT;
	}
	return GPUCAP_OK;
}
