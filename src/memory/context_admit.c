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
 *
 * Data allocations wait the same way (admit.c): on an H100, 8 processes
 * racing to fill a cap were refused while peers' contexts the driver had
 * not listed yet sat at the 640 MiB estimate, and held 93.7% of what the
 * cap had room for. A context at a size some process measured is no
 * estimate here (reconcile.c): waiting for it would gain nothing.
 */
#include "clock.h"
#include "log.h"
#include "memory_internal.h"

/* A charge of bytes for a context on dev is the blind default, above any
 * size a process of the region measured: its measurement may lower it
 * much, so peers refused meanwhile wait for it. A charge at a measured
 * size would fall by little: no one waits for it, nor for its creation. */
static bool charge_is_blind(const struct gpucap_device *dev, uint64_t bytes)
{
	uint64_t noted = gpucap_region_context_bytes(memory_env.region, dev->region_index);
	return !noted || bytes > noted + GPUCAP_CONTEXT_GROWTH_BYTES;
}

CUresult gpucap_context_admit(const struct gpucap_device *dev, uint64_t *bytes, const char *api)
{
	bool estimating = !memory_env.config->context_bytes_set && dev->region_index >= 0;
	*bytes = gpucap_context_estimate(dev);
	if (estimating)
		gpucap_region_mark_context_estimate(memory_env.region, dev->region_index,
		                                    charge_is_blind(dev, *bytes));
	CUresult r = gpucap_admit(dev, GPUCAP_KIND_CONTEXT, *bytes);
	struct gpucap_estimates_wait wait = {0, 0};
	while (r == CUDA_ERROR_OUT_OF_MEMORY && estimating &&
	       gpucap_estimates_wait(&wait, dev->region_index)) {
		/* A peer's measurement may also have set the region's size:
		 * this context's estimate falls with it. */
		*bytes = gpucap_context_estimate(dev);
		gpucap_region_mark_context_estimate(memory_env.region, dev->region_index,
		                                    charge_is_blind(dev, *bytes));
		r = gpucap_admit(dev, GPUCAP_KIND_CONTEXT, *bytes);
	}
	if (r == CUDA_SUCCESS && estimating && charge_is_blind(dev, *bytes))
		gpucap_region_mark_context_creating(memory_env.region, dev->region_index, true);
	if (r != CUDA_SUCCESS) {
		if (wait.waited_ns)
			GPUCAP_LOG(
			    GPUCAP_LOG_DETAIL,
			    "device %d: a context is refused after %llu ms of waiting for contexts beside it "
			    "to be measured (%s)",
			    dev->ordinal, (unsigned long long)(wait.waited_ns / 1000000),
			    gpucap_estimates_wait_end(&wait));
		gpucap_context_estimate_settle(dev);
		gpucap_refusal_note(dev->region_index, dev, *bytes, api);
	} else if (wait.waited_ns) {
		GPUCAP_LOG(
		    GPUCAP_LOG_DETAIL,
		    "device %d: a context was admitted after %llu ms, as contexts beside it were measured",
		    dev->ordinal, (unsigned long long)(wait.waited_ns / 1000000));
	}
	return r;
}
