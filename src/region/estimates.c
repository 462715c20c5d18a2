/* SPDX-License-Identifier: Apache-2.0 */
/* Contexts charged at an estimate: each process marks, in its own slot, the
 * devices where it holds a context not yet measured, so that a process
 * refused a context can tell "full" from "full of estimates that are about
 * to shrink", and whether one of those is still inside the driver's
 * creation (it cannot shrink before that ends). Advisory words: a wrong bit
 * costs a bounded wait, never a byte of accounting. */
#include <stdatomic.h>

#include "platform.h"
#include "region_internal.h"

static void mark(gpucap_region *r, int device, bool on, bool creating)
{
	if (!r || r->slot < 0 || r->observer || !device_index_valid(r, device) || region_failed(r))
		return;
	uint64_t bit = UINT64_C(1) << device;
	struct slot_header *header = region_slot(r, (uint32_t)r->slot);
	_Atomic uint64_t *word = creating ? &header->context_creating : &header->context_estimates;
	/* Relaxed: the words order nothing; a peer that reads one late waits
	 * one more bounded step, or retries its admission once more. */
	if (on)
		atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(word, ~bit, memory_order_relaxed);
}

void gpucap_region_mark_context_estimate(gpucap_region *r, int device, bool estimated)
{
	mark(r, device, estimated, false);
}

void gpucap_region_mark_context_creating(gpucap_region *r, int device, bool creating)
{
	mark(r, device, creating, true);
}

bool gpucap_region_context_estimates_elsewhere(const gpucap_region *r, int device, bool *creating)
{
	if (creating)
		*creating = false;
	if (!r || !device_index_valid(r, device) || region_failed(r))
		return false;
	uint64_t bit = UINT64_C(1) << device;
	bool any = false;
	for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++) {
		if ((int)slot == r->slot ||
		    atomic_load_explicit(region_slot_state(r, slot), memory_order_relaxed) != SLOT_LIVE)
			continue;
		/* From the shared file, unvalidated by design: any bit only
		 * prolongs a wait its caller bounds. A dead owner's bits are
		 * ignored: its charges go back when its slot is reclaimed. */
		const struct slot_header *header = region_slot(r, slot);
		uint64_t marked = atomic_load_explicit(&header->context_estimates, memory_order_relaxed);
		uint64_t making = atomic_load_explicit(&header->context_creating, memory_order_relaxed);
		if (!((marked | making) & bit) || gpucap_lease_probe(r->fd, LEASE_SLOT(slot)) != 1)
			continue;
		any = true;
		if (!creating || (making & bit)) {
			if (creating)
				*creating = true;
			return true;
		}
	}
	return any;
}
