/* SPDX-License-Identifier: Apache-2.0 */
/* Contexts charged at an estimate: each process marks, in its own slot, the
 * devices where it holds a context not yet measured, so that a process
 * refused a context can tell "full" from "full of estimates that are about
 * to shrink". Advisory words: a wrong bit costs a bounded wait, never a
 * byte of accounting. */
#include <stdatomic.h>

#include "platform.h"
#include "region_internal.h"

void gpucap_region_mark_context_estimate(gpucap_region *r, int device, bool estimated)
{
	if (!r || r->slot < 0 || r->observer || !device_index_valid(r, device) || region_failed(r))
		return;
	uint64_t bit = UINT64_C(1) << device;
	_Atomic uint64_t *word = &region_slot(r, (uint32_t)r->slot)->context_estimates;
	/* Relaxed: the word orders nothing; a peer that reads it late waits
	 * one more bounded step, or retries its admission once more. */
	if (estimated)
		atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
	else
		atomic_fetch_and_explicit(word, ~bit, memory_order_relaxed);
}

bool gpucap_region_context_estimates_elsewhere(const gpucap_region *r, int device)
{
	if (!r || !device_index_valid(r, device) || region_failed(r))
		return false;
	uint64_t bit = UINT64_C(1) << device;
	for (uint32_t slot = 0; slot < r->geo.slot_capacity; slot++) {
		if ((int)slot == r->slot ||
		    atomic_load_explicit(region_slot_state(r, slot), memory_order_relaxed) != SLOT_LIVE)
			continue;
		/* From the shared file, unvalidated by design: any bit only
		 * prolongs a wait its caller bounds. A dead owner's bit is
		 * ignored: its charges go back when its slot is reclaimed. */
		uint64_t marked =
		    atomic_load_explicit(&region_slot(r, slot)->context_estimates, memory_order_relaxed);
		if ((marked & bit) && gpucap_lease_probe(r->fd, LEASE_SLOT(slot)) == 1)
			return true;
	}
	return false;
}
