/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A region that comes after start-up: the attach at initialisation timed
 * out on another process initialising the file (stopped, or slow), and the
 * interception layer tries it again when asked (gpucap_memory_retry_with).
 * Asked on refusal paths only: a process that has its region never comes
 * here.
 */
#include "memory_internal.h"

void gpucap_memory_retry_with(bool (*attach_again)(void))
{
	memory_env.attach_again = attach_again;
}

void gpucap_memory_region_arrived(gpucap_region *region)
{
	/* Release: partner of the acquire in memory_region(); the region is
	 * attached, bound and holds its slot before any thread charges it. */
	atomic_store_explicit(&memory_env.region, region, memory_order_release);
}

bool gpucap_region_retry(void)
{
	if (memory_region())
		return true;
	/* Written before the library published READY, read-only after. */
	bool (*again)(void) = memory_env.attach_again;
	return again && again() && memory_region();
}
