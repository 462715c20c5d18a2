/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The wait, bounded, for other processes' contexts at their blind estimate
 * to be measured: a context's admission (context_admit.c) and a data
 * allocation's (admit.c) retry their reservation a step at a time while it
 * lasts. It reads the region's estimate marks (estimates.c) and sleeps on
 * gpucap's clock; it charges nothing itself.
 */
#include "clock.h"
#include "memory_internal.h"

/* Between two tries: a few of the peers' measurements at their creation
 * (1 to 7 ms each), well under their reconcilers' 100 ms period. */
#define CONTEXT_RETRY_STEP_NS UINT64_C(5000000)
/* The whole wait, however long peers' creations take (a driver that never
 * finishes one). */
#define CONTEXT_WAIT_CEILING_NS UINT64_C(60000000000)

bool gpucap_estimates_wait(struct gpucap_estimates_wait *w, int region_index)
{
	uint64_t limit = (uint64_t)memory_env.config->context_wait_ms * 1000000;
	bool creating = false;
	if (w->counted_ns >= limit || w->waited_ns >= CONTEXT_WAIT_CEILING_NS ||
	    !gpucap_region_context_estimates_elsewhere(memory_env.region, region_index, &creating))
		return false;
	gpucap_clock_sleep(CONTEXT_RETRY_STEP_NS);
	w->waited_ns += CONTEXT_RETRY_STEP_NS;
	if (!creating)
		w->counted_ns += CONTEXT_RETRY_STEP_NS;
	return true;
}

const char *gpucap_estimates_wait_end(const struct gpucap_estimates_wait *w)
{
	return w->counted_ns >= (uint64_t)memory_env.config->context_wait_ms * 1000000
	           ? "GPUCAP_CONTEXT_WAIT_MS ran out"
	       : w->waited_ns >= CONTEXT_WAIT_CEILING_NS ? "their creation took over a minute"
	                                                 : "none is left to measure";
}
