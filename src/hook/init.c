/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Lazy, thread-safe initialisation and fork handling.
 *
 * State machine: NONE -> RUNNING -> READY. The first thread to need gpucap
 * moves NONE to RUNNING and does the work; others wait for READY (only
 * during those first milliseconds). After READY the hot path costs one
 * acquire load. A forked child goes back to NONE and initialises again on
 * its next call, attaching its own slot.
 */
#include "calls.h"
#include "compute.h"
#include "hook.h"
#include "log.h"
#include "memory.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct gpucap_state gpucap;
atomic_int gpucap_init_state = GPUCAP_INIT_NONE;

static _Thread_local bool this_thread_in_init;
static atomic_bool atfork_registered;
/* The process whose initialisation claimed gpucap.region's slot (or whose
 * retry did, later: the same process). */
static pid_t slot_owner;

/* The child of fork has one thread and a copy of everything; it must not
 * touch the parent's slot, allocations or locks (another thread may have
 * held them at the instant of fork). */
static void after_fork_child(void)
{
	gpucap_memory_after_fork();
	gpucap_compute_after_fork();
	/* The parent's handle and slot stay the parent's: the child neither
	 * detaches it (that would return the parent's charges) nor keeps its
	 * descriptor (that would keep the parent's lease alive after the parent
	 * dies). It attaches its own on its next call. */
	gpucap_region *inherited = atomic_load_explicit(&gpucap.region, memory_order_relaxed);
	if (inherited)
		gpucap_region_abandon(inherited);
	atomic_store_explicit(&gpucap.region, NULL, memory_order_relaxed);
	gpucap_attach_after_fork();
	this_thread_in_init = false;
	atomic_store_explicit(&gpucap_init_state, GPUCAP_INIT_NONE, memory_order_release);
}

/* A real library that is itself preloaded could hand back our own wrapper;
 * never call ourselves. */
static bool is_own_wrapper(const void *fn)
{
	for (int j = 0; j < GPUCAP_HOOK_COUNT; j++)
		if (fn == gpucap_hooks[j].wrapper)
			return true;
	return false;
}

/* Fill gpucap_real and the driver's calls from the real libraries. */
static void resolve_real(void)
{
	for (int i = 0; i < GPUCAP_HOOK_COUNT; i++) {
		void *fn = gpucap_driver_symbol(gpucap_hooks[i].lib, gpucap_hooks[i].name);
		gpucap_real[i] = fn && is_own_wrapper(fn) ? NULL : fn;
	}
	gpucap_calls_resolve(is_own_wrapper);
}

static void initialise(void)
{
	gpucap_config_load(&gpucap.config);
	resolve_real();
	gpucap_region *region = atomic_load_explicit(&gpucap.region, memory_order_relaxed);
	if (!region) {
		gpucap_attach_at_start();
		region = atomic_load_explicit(&gpucap.region, memory_order_relaxed);
	}
	/* Data flows one way: the memory and compute layers are told what they
	 * need, and the layer that owns the devices answers the gate's
	 * questions about them through this process's own wiring; the memory
	 * layer asks for the region again the same way. */
	gpucap_memory_start(&gpucap.config, region);
	gpucap_memory_retry_with(gpucap_attach_again);
	gpucap_compute_start(&gpucap.config, region, gpucap_memory_device);
	static const struct gpucap_memory_observer observer = {gpucap_sm_context_gone, gpucap_sm_device_gone};
	gpucap_memory_observe(&observer);
	bool expected = false;
	if (atomic_compare_exchange_strong(&atfork_registered, &expected, true))
		pthread_atfork(NULL, NULL, after_fork_child);
	if (!gpucap_real[GPUCAP_ID_cuMemAlloc_v2])
		GPUCAP_LOG(GPUCAP_LOG_DETAIL, "%s", gpucap_driver_error(GPUCAP_LIB_CUDA));
	slot_owner = getpid();
	GPUCAP_LOG(GPUCAP_LOG_INFO, "initialised: region %s", gpucap.config.region_path);
}

/* A process that exits normally gives its charges and its slot back as it
 * goes, so that nothing waits for a sweep (processes that are killed, or
 * leave through _exit, are still swept by their peers). Other threads, the
 * application's or the SM controller's, may still run: retiring keeps the
 * mapping, and an allocation after it fails closed (a free returns
 * nothing: the bytes went back with the slot). A forked child never
 * initialised holds no slot of its own (the parent's was abandoned), and one
 * that did retires only its own. */
__attribute__((destructor)) static void return_slot_at_exit(void)
{
	/* Acquire: partner of the release that published READY, and with it
	 * gpucap.region. */
	if (atomic_load_explicit(&gpucap_init_state, memory_order_acquire) != GPUCAP_INIT_READY)
		return;
	/* Acquire: partner of the release store of a region attached late
	 * (attach.c). */
	gpucap_region *region = atomic_load_explicit(&gpucap.region, memory_order_acquire);
	if (!region || slot_owner != getpid())
		return;
	if (gpucap_region_retire(region))
		GPUCAP_LOG(GPUCAP_LOG_DEBUG, "exit: charges and slot returned to region %s",
		           gpucap.config.region_path);
	else
		GPUCAP_LOG(GPUCAP_LOG_DEBUG, "exit: slot left for the sweepers of region %s",
		           gpucap.config.region_path);
}

bool gpucap_init_slow(void)
{
	if (this_thread_in_init)
		return false;
	for (;;) {
		int state = atomic_load_explicit(&gpucap_init_state, memory_order_acquire);
		if (state == GPUCAP_INIT_READY)
			return true;
		if (state == GPUCAP_INIT_NONE) {
			int expected = GPUCAP_INIT_NONE;
			if (atomic_compare_exchange_strong_explicit(&gpucap_init_state, &expected,
			                                            GPUCAP_INIT_RUNNING, memory_order_acq_rel,
			                                            memory_order_acquire)) {
				this_thread_in_init = true;
				initialise();
				this_thread_in_init = false;
				atomic_store_explicit(&gpucap_init_state, GPUCAP_INIT_READY,
				                      memory_order_release);
				return true;
			}
			continue;
		}
		/* Another thread is initialising (a few milliseconds, once). */
		sched_yield();
	}
}
