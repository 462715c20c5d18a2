/* SPDX-License-Identifier: Apache-2.0 */
/* Lanes: which lane a thread uses, and exclusive use of a lane's operation
 * record among the threads of one process. */
#include <sched.h>
#include <stdatomic.h>

#include "region_internal.h"

static atomic_uint next_thread_number;
static _Thread_local uint32_t thread_number_plus_one;

uint32_t lane_of_this_thread(const struct gpucap_region *r)
{
	uint32_t number = thread_number_plus_one;
	if (number == 0) {
		number = atomic_fetch_add_explicit(&next_thread_number, 1, memory_order_relaxed) + 1;
		thread_number_plus_one = number;
	}
	return (number - 1) % r->geo.lanes;
}

bool lane_try_acquire(struct gpucap_region *r, uint32_t lane)
{
	struct lane_header *header = region_lane(r, (uint32_t)r->slot, lane);
	uint32_t expected = 0;
	/* A8: pairs with the R8 release in lane_release, so this thread sees
	 * the lane's credit and record as its previous user left them (I3). */
	return atomic_compare_exchange_strong_explicit(&header->busy, &expected, 1, memory_order_acquire,
	                                               memory_order_relaxed);
}

/* Threads that collide on a lane move to the next one. Only a process with
 * more threads than lanes inside an operation at once ever yields here, and
 * then only to its own threads, each a few atomic steps from done. */
uint32_t lane_acquire(struct gpucap_region *r)
{
	uint32_t start = lane_of_this_thread(r);
	for (;;) {
		for (uint32_t i = 0; i < r->geo.lanes; i++) {
			uint32_t lane = (start + i) % r->geo.lanes;
			if (lane_try_acquire(r, lane))
				return lane;
		}
		/* A retired handle holds every lane for good (retire.c). Acquire:
		 * partner of the release store there. */
		if (atomic_load_explicit(&r->retired, memory_order_acquire))
			return LANE_NONE;
		sched_yield();
	}
}

void lane_release(struct gpucap_region *r, uint32_t lane)
{
	/* R8: partner A8 in lane_try_acquire. */
	atomic_store_explicit(&region_lane(r, (uint32_t)r->slot, lane)->busy, 0, memory_order_release);
}
