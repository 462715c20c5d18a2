/* SPDX-License-Identifier: Apache-2.0 */
/* The memory layer's life cycle: what it is given at start-up, and what a
 * forked child forgets. */
#include "memory_internal.h"

struct memory_env memory_env;

/* Before a refusal the pools give back what they no longer hold, and a
 * context still charged at its estimate is measured. */
static void before_refusal(int region_index)
{
	gpucap_pools_reconcile_all(region_index);
	gpucap_reconcile_before_refusal(region_index);
}

void gpucap_memory_start(const struct gpucap_config *config, gpucap_region *region)
{
	memory_env.config = config;
	/* Relaxed: the library's READY (release) publishes it. */
	atomic_store_explicit(&memory_env.region, region, memory_order_relaxed);
	gpucap_admit_before_refusal(before_refusal);
}

void gpucap_memory_observe(const struct gpucap_memory_observer *observer)
{
	memory_env.observer = *observer;
}

void gpucap_memory_after_fork(void)
{
	gpucap_track_forget_all();
	gpucap_graph_runs_after_fork();
	gpucap_pools_forget_all();
	gpucap_devices_reset();
	gpucap_refusal_after_fork();
	gpucap_reconcile_after_fork();
	gpucap_ledger_moves_after_fork();
	/* The child is alone (fork keeps one thread). */
	atomic_store_explicit(&memory_env.region, NULL, memory_order_relaxed);
}
