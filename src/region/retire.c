/* SPDX-License-Identifier: Apache-2.0 */
/* What a process does to its slot as it exits while its threads may still
 * run (retire), and its refusal counters. */
#include <sched.h>
#include <stdatomic.h>

#include "platform.h"
#include "region_internal.h"

/* How long retire waits for this process's threads to leave the slot's
 * lanes: each is a few steps from done, but may be preempted there, so after
 * a few yields retire sleeps a millisecond at a time, about a second in all,
 * before it gives up (a thread stopped inside a lane operation). */
#define RETIRE_YIELDS 1024
#define RETIRE_SLEEPS 1000

/* Idle reserve a retired slot shows: so negative that a reservation from
 * reserve fails, releases (which add to it) never make it usable, and the 16
 * lanes' sum cannot overflow. */
#define RETIRED_CREDIT (-(INT64_C(1) << 58))

bool gpucap_region_note_refusal(gpucap_region *r, int device)
{
	if (!r || r->slot < 0 || r->observer || atomic_load_explicit(&r->retired, memory_order_relaxed))
		return false;
	/* A truncated file: nothing in it can be trusted or written; the
	 * sweepers of a healthy region, if there is one again, do the rest. */
	if (region_failed(r))
		return false;
	/* Relaxed: counters that order nothing; readers take them as they find
	 * them. */
	atomic_fetch_add_explicit(&region_slot(r, (uint32_t)r->slot)->refusals, 1, memory_order_relaxed);
	if (device_index_valid(r, device))
		atomic_fetch_add_explicit(&region_device(r, (uint32_t)device)->refusals, 1,
		                          memory_order_relaxed);
	return true;
}

/* waited counts the attempts made so far, over every lane. */
static bool take_lane(struct gpucap_region *r, uint32_t lane, unsigned *waited)
{
	for (;;) {
		if (lane_try_acquire(r, lane))
			return true;
		if (*waited >= RETIRE_YIELDS + RETIRE_SLEEPS)
			return false;
		if (++*waited <= RETIRE_YIELDS) {
			sched_yield();
		} else {
			gpucap_sleep_ns(1000 * 1000);
		}
	}
}

bool gpucap_region_retire(gpucap_region *r)
{
	if (!r || r->slot < 0 || r->observer || atomic_load_explicit(&r->retired, memory_order_relaxed))
		return false;
	/* A truncated file: nothing in it can be trusted or written; the
	 * sweepers of a healthy region, if there is one again, do the rest. */
	if (region_failed(r))
		return false;
	uint32_t slot = (uint32_t)r->slot;
	/* Release: partner of the acquire load in lane_acquire, so a thread
	 * that finds every lane held from now on gives up instead of waiting
	 * for lanes that are never released. */
	atomic_store_explicit(&r->retired, true, memory_order_release);
	unsigned waited = 0;
	for (uint32_t lane = 0; lane < r->geo.lanes; lane++) {
		if (take_lane(r, lane, &waited))
			continue;
		/* A thread stays inside a lane operation (stopped in a signal
		 * handler, say): leave the slot as it is, for the sweepers. */
		for (uint32_t held = 0; held < lane; held++)
			lane_release(r, held);
		atomic_store_explicit(&r->retired, false, memory_order_relaxed);
		return false;
	}
	/* Every lane is ours: no thread of this process moves a device total
	 * through the slot any more. Reserve from idle credit needs no lane, so
	 * the credit is poisoned first (acq_rel exchange: takes what releases
	 * added, as return_credit does); the bytes are in the granted words and
	 * go back below with them. */
	for (uint32_t lane = 0; lane < r->geo.lanes; lane++)
		for (uint32_t device = 0; device < r->geo.device_capacity; device++)
			atomic_exchange_explicit(&region_lane_device(r, slot, lane, device)->credit,
			                         RETIRED_CREDIT, memory_order_acq_rel);
	slot_return_charges(r, slot, NULL, NULL);
	/* Release: the lanes sum to zero before the slot reads FREE (partners:
	 * the acquire loads of claim_slot and snapshots). The lease stays held
	 * until the process is gone, so claim_slot passes this slot over while
	 * any thread of ours could still write into it, and the next owner
	 * clears the lanes it finds held. */
	atomic_store_explicit(region_slot_state(r, slot), SLOT_FREE, memory_order_release);
	return true;
}
