/*
 * Lazy, thread-safe initialisation and fork handling.
 *
 * State machine: NONE -> RUNNING -> READY. The first thread to need gpucap
 * moves NONE to RUNNING and does the work; others wait for READY (only
 * during those first milliseconds). After READY the hot path costs one
 * acquire load. A forked child goes back to NONE and initialises again on
 * its next call, attaching its own slot.
 */
#include "binding.h"
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
/* The process whose initialisation claimed gpucap.region's slot. */
static pid_t slot_owner;

/* This process's lock on the limits file, binding it to its region
 * (src/policy/binding.h). */
static struct gpucap_binding binding = GPUCAP_BINDING_NONE;

/* Under a limits file, the region must be the container's one: no live
 * process under the file may be bound to another. */
static gpucap_status bind_region(gpucap_region *region, char *err, size_t err_len)
{
	if (!gpucap.config.limits_file[0])
		return GPUCAP_OK;
	if (gpucap_binding_take(&binding, gpucap.config.limits_file, gpucap_binding_scope(),
	                        gpucap_region_created_ns(region), err, err_len))
		return GPUCAP_OK;
	return GPUCAP_ERR_INVALID;
}

static void attach_region(void)
{
	char err[512] = "";
	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = gpucap.config.region_path;
	options.group_shared = gpucap.config.region_group_shared;
	gpucap_region *region = NULL;
	/* Refused by the policy, which has said why and what to change. */
	if (gpucap.config.region_refused) {
		gpucap.region = NULL;
		return;
	}
	gpucap_status st = gpucap_region_attach(&options, &region, err, sizeof(err));
	bool hint = true;
	if (st == GPUCAP_OK) {
		st = bind_region(region, err, sizeof(err));
		hint = st == GPUCAP_OK;
		if (st != GPUCAP_OK) {
			gpucap_region_detach(region);
			region = NULL;
		}
	}
	if (st == GPUCAP_OK) {
		struct gpucap_slot_identity id;
		gpucap_identity_initial(&id);
		if (id.host_pid_source == GPUCAP_HOST_PID_UNKNOWN)
			GPUCAP_LOG(
			    GPUCAP_LOG_INFO,
			    "host PID not known inside this PID namespace; per-process attribution on the host waits for `gpucap resolve --watch` or `gpucap exporter` running on the host (compute caps do not need it)");
		st = gpucap_region_claim_slot(region, &id, err, sizeof(err));
		if (st != GPUCAP_OK) {
			gpucap_region_detach(region);
			region = NULL;
		}
	}
	if (st != GPUCAP_OK) {
		gpucap_binding_release(&binding);
		/* The region's line names the file and what is wrong with it. */
		const char *why = err[0] ? err : gpucap_status_text(st);
		if (strncmp(why, "gpucap: ", 8) == 0)
			why += 8;
		/* The policy adds which setting named the region; the binding's
		 * line names the limits file and the fix itself. */
		gpucap_log(GPUCAP_LOG_ERROR,
		           "%s%s%s%s; failing closed: every allocation returns CUDA_ERROR_OUT_OF_MEMORY", why,
		           hint ? " (" : "", hint ? gpucap.config.region_hint : "", hint ? ")" : "");
		region = NULL;
	}
	gpucap.region = region;
}

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
	if (gpucap.region)
		gpucap_region_abandon(gpucap.region);
	gpucap.region = NULL;
	gpucap_binding_forget(&binding);
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
	if (!gpucap.region)
		attach_region();
	/* Data flows one way: the memory and compute layers are told what they
	 * need, and the layer that owns the devices answers the gate's
	 * questions about them through this process's own wiring. */
	gpucap_memory_start(&gpucap.config, gpucap.region);
	gpucap_compute_start(&gpucap.config, gpucap.region, gpucap_memory_device);
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
	if (!gpucap.region || slot_owner != getpid())
		return;
	if (gpucap_region_retire(gpucap.region))
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
