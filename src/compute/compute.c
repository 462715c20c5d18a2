/* SPDX-License-Identifier: Apache-2.0 */
/* The compute layer's entry points (compute.h): its life cycle and the way
 * a launch reaches the gate. */
#include "clock.h"
#include "compute_internal.h"
#include "driver.h"
#include "gate.h"
#include "sm_controller.h"
#include "sm_schedule.h"
#include "wake.h"

struct compute_env compute_env;

void gpucap_compute_start(const struct gpucap_config *config, gpucap_region *region,
                          gpucap_compute_device_fn device_of)
{
	compute_env.config = config;
	/* Relaxed: the library's READY (release) publishes it. */
	atomic_store_explicit(&compute_env.region, region, memory_order_relaxed);
	compute_env.device_of = device_of;
	/* Tests only: the fake driver's simulated clock (src/platform/clock.h
	 * says why this cannot happen with a real driver). Looked up before the
	 * first launch starts gpucap's threads. */
	if (gpucap_clock_test_requested())
		gpucap_clock_adopt(gpucap_driver_symbol(GPUCAP_LIB_CUDA, GPUCAP_TEST_CLOCK_SYMBOL));
}

void gpucap_compute_gate(CUstream hStream, bool per_thread)
{
	if (compute_env.config->sm.policy == GPUCAP_SM_POLICY_DISABLE) {
		atomic_store_explicit(&gpucap_sm_armed, 0, memory_order_release);
		return;
	}
	gpucap_sm_controller_start();
	gpucap_sm_gate(hStream, per_thread);
}

void gpucap_compute_after_fork(void)
{
	gpucap_sm_schedule_after_fork();
	gpucap_sm_controller_after_fork();
	gpucap_sm_wake_after_fork();
	/* Last: it sets the armed flag again, so the next launch looks. */
	gpucap_sm_gates_after_fork();
	atomic_store_explicit(&compute_env.region, NULL, memory_order_relaxed); /* the child is alone */
}

void gpucap_compute_region_arrived(gpucap_region *region)
{
	/* Release: partner of every (seq_cst) read of compute_env.region; the
	 * region is attached and holds its slot before a gate uses it. The
	 * gate thread sees it at its next tick (gpucap_sm_refresh_armed). */
	atomic_store_explicit(&compute_env.region, region, memory_order_release);
}
