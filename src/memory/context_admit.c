/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The charge for a new context, before the driver makes it.
 *
 * A context is charged at an estimate until it is measured (reconcile.c),
 * and the driver lists a new process some milliseconds after its context
 * exists. Processes that start together therefore charge their estimates
 * at once, and the region can look full only because of the estimates'
 * excess: 32 processes under 16 GiB on an H100 charged 640 MiB each for
 * contexts of 518 MiB, and 25 started where 30 would fit.
 *
 * So a context that would be refused while other processes of the region
 * still mark estimated contexts (their slots' words, estimates.c) is asked
 * for again as those are measured and their charges fall, a step at a
 * time, for at most GPUCAP_CONTEXT_WAIT_MS. Time in which one of them is
 * still inside the driver's creation does not count (up to
 * CONTEXT_WAIT_CEILING_NS in all): it cannot be measured before the driver
 * is done, and 32 processes starting together on an H100 took 5.2 to 5.5 s
 * to get their contexts, natively. Nothing is locked or awaited between
 * processes: each retry is one lock-free reservation, and a region that
 * holds no estimate refuses at once.
 */
#include "clock.h"
#include "log.h"
#include "memory_internal.h"

/* Between two tries: a few of the peers' measurements at their creation
 * (1 to 7 ms each), well under their reconcilers' 100 ms period. */
#define CONTEXT_RETRY_STEP_NS UINT64_C(5000000)
/* The whole wait, however long peers' creations take (a driver that never
 * finishes one). */
#define CONTEXT_WAIT_CEILING_NS UINT64_C(60000000000)

CUresult gpucap_context_admit(const struct gpucap_device *dev, uint64_t *bytes, const char *api)
{
	bool estimating = !memory_env.config->context_bytes_set && dev->region_index >= 0;
	*bytes = gpucap_context_estimate(dev);
	if (estimating)
		gpucap_region_mark_context_estimate(memory_env.region, dev->region_index, true);
	CUresult r = gpucap_admit(dev, GPUCAP_KIND_CONTEXT, *bytes);
	/* waited: in all; counted: while no peer was inside a creation. */
	uint64_t waited = 0, counted = 0, limit = (uint64_t)memory_env.config->context_wait_ms * 1000000;
	bool creating = false;
	while (r == CUDA_ERROR_OUT_OF_MEMORY && estimating && counted < limit &&
	       waited < CONTEXT_WAIT_CEILING_NS &&
	       gpucap_region_context_estimates_elsewhere(memory_env.region, dev->region_index, &creating)) {
		gpucap_clock_sleep(CONTEXT_RETRY_STEP_NS);
		waited += CONTEXT_RETRY_STEP_NS;
		if (!creating)
			counted += CONTEXT_RETRY_STEP_NS;
		/* A peer's measurement may also have set the region's size:
		 * this context's estimate falls with it. */
		*bytes = gpucap_context_estimate(dev);
		r = gpucap_admit(dev, GPUCAP_KIND_CONTEXT, *bytes);
	}
	if (r == CUDA_SUCCESS && estimating)
		gpucap_region_mark_context_creating(memory_env.region, dev->region_index, true);
	if (r != CUDA_SUCCESS) {
		if (waited)
			GPUCAP_LOG(
			    GPUCAP_LOG_DETAIL,
			    "device %d: a context is refused after %llu ms of waiting for contexts beside it to "
			    "be measured (%s)",
			    dev->ordinal, (unsigned long long)(waited / 1000000),
			    counted >= limit                    ? "GPUCAP_CONTEXT_WAIT_MS ran out"
			    : waited >= CONTEXT_WAIT_CEILING_NS ? "their creation took over a minute"
			                                        : "none is left to measure");
		gpucap_context_estimate_settle(dev);
		gpucap_refusal_note(dev->region_index, dev, *bytes, api);
	} else if (waited) {
		GPUCAP_LOG(
		    GPUCAP_LOG_DETAIL,
		    "device %d: a context was admitted after %llu ms, as contexts beside it were measured",
		    dev->ordinal, (unsigned long long)(waited / 1000000));
	}
	return r;
}
