/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Attaching the region: once at initialisation, and again later when that
 * attach timed out on another process initialising the file (stopped, or
 * slow) and the process failed closed.
 *
 * The retry runs on the memory layer's refusal paths (it calls
 * gpucap_attach_again, wired by init.c): a process that has its region never
 * comes here. The schedule (gpucap_attach_retry_due: 1 s after the first
 * refusal, then 2, 4, ... up to 60 s apart) runs on the platform clock, so
 * tests drive it on simulated time. One thread tries at a time, waiting at
 * most GPUCAP_ATTACH_RETRY_WAIT_MS for the initialiser; the others refuse at
 * once, as before. An initialiser that died left its lease behind it, so the
 * retry initialises the half-made file itself.
 *
 * A successful retry publishes the region with release stores (the hook's,
 * the compute layer's, and last the memory layer's, which admits
 * allocations): the readers load it with acquire or seq_cst, and the region
 * only ever goes from NULL to one handle, so a reader that saw it keeps
 * seeing it.
 */
#include "binding.h"
#include "clock.h"
#include "compute.h"
#include "hook.h"
#include "log.h"
#include "memory.h"

#include <stdatomic.h>
#include <string.h>

/* This process's lock on the limits file, binding it to its region
 * (src/policy/binding.h). Touched at initialisation and by the one thread
 * retrying (retrying, below, orders them). */
static struct gpucap_binding binding = GPUCAP_BINDING_NONE;

/* Set when the attach at initialisation timed out; cleared once a retry
 * attached or failed for another reason. */
static atomic_bool retry_wanted;
/* One thread retries at a time. Acquire CAS / release store: each retrier
 * sees binding, schedule and retry_wanted as the previous one left them. */
static atomic_bool retrying;
static struct gpucap_attach_retry schedule;

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

/* Attach (waiting at most timeout_ms for an initialiser; 0: the default),
 * bind to the limits file and claim a slot. On failure *out is NULL, err
 * says why and *hint whether the policy's hint (which setting named the
 * region) belongs after it. */
static gpucap_status attach_claim(uint32_t timeout_ms, gpucap_region **out, char *err, size_t err_len,
                                  bool *hint)
{
	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = gpucap.config.region_path;
	options.group_shared = gpucap.config.region_group_shared;
	options.init_timeout_ms = timeout_ms;
	gpucap_region *region = NULL;
	*out = NULL;
	*hint = true;
	gpucap_status st = gpucap_region_attach(&options, &region, err, err_len);
	if (st == GPUCAP_OK) {
		st = bind_region(region, err, err_len);
		*hint = st == GPUCAP_OK;
		if (st != GPUCAP_OK)
			gpucap_region_detach(region);
	}
	if (st == GPUCAP_OK) {
		struct gpucap_slot_identity id;
		gpucap_identity_initial(&id);
		if (id.host_pid_source == GPUCAP_HOST_PID_UNKNOWN)
			GPUCAP_LOG(
			    GPUCAP_LOG_INFO,
			    "host PID not known inside this PID namespace; per-process attribution on the host waits for `gpucap resolve --watch` or `gpucap exporter` running on the host (compute caps do not need it)");
		st = gpucap_region_claim_slot(region, &id, err, err_len);
		if (st != GPUCAP_OK)
			gpucap_region_detach(region);
	}
	if (st != GPUCAP_OK) {
		gpucap_binding_release(&binding);
		return st;
	}
	*out = region;
	return GPUCAP_OK;
}

/* The one line of a failed attach: the region's words, the policy's hint
 * (which setting named the region; the binding's line names the limits
 * file and the fix itself), and what the process does now. */
static void say_failing_closed(gpucap_status st, const char *err, bool hint, const char *what_now)
{
	const char *why = err[0] ? err : gpucap_status_text(st);
	if (strncmp(why, "gpucap: ", 8) == 0)
		why += 8;
	gpucap_log(GPUCAP_LOG_ERROR, "%s%s%s%s; %s", why, hint ? " (" : "",
	           hint ? gpucap.config.region_hint : "", hint ? ")" : "", what_now);
}

void gpucap_attach_at_start(void)
{
	/* Refused by the policy, which has said why and what to change. */
	if (gpucap.config.region_refused) {
		atomic_store_explicit(&gpucap.region, NULL, memory_order_relaxed);
		return;
	}
	char err[512] = "";
	bool hint;
	gpucap_region *region;
	gpucap_status st = attach_claim(0, &region, err, sizeof(err), &hint);
	if (st == GPUCAP_ERR_BUSY) {
		memset(&schedule, 0, sizeof(schedule));
		atomic_store_explicit(&retry_wanted, true, memory_order_relaxed);
		say_failing_closed(
		    st, err, hint,
		    "failing closed until it is ready: allocations return CUDA_ERROR_OUT_OF_MEMORY, and later allocations try the region again (after 1 s, then 2, 4, ... up to 60 s apart)");
	} else if (st != GPUCAP_OK) {
		say_failing_closed(st, err, hint,
		                   "failing closed: every allocation returns CUDA_ERROR_OUT_OF_MEMORY");
	}
	/* Relaxed: written before the library publishes READY (release), read
	 * after it. */
	atomic_store_explicit(&gpucap.region, region, memory_order_relaxed);
}

/* Publish a region attached late: to the hook (the exit path retires its
 * slot), the compute layer, and last the memory layer, whose first sight of
 * it admits allocations. Each is a release store, partner of its readers'
 * acquire (or seq_cst) loads: they see the region attached, bound and
 * holding its slot. */
static void publish(gpucap_region *region)
{
	atomic_store_explicit(&gpucap.region, region, memory_order_release);
	gpucap_compute_region_arrived(region);
	gpucap_memory_region_arrived(region);
}

/* One try, by the thread holding retrying. */
static bool retry_once(void)
{
	char err[512] = "";
	bool hint;
	gpucap_region *region;
	gpucap_status st = attach_claim(GPUCAP_ATTACH_RETRY_WAIT_MS, &region, err, sizeof(err), &hint);
	if (st == GPUCAP_OK) {
		publish(region);
		atomic_store_explicit(&retry_wanted, false, memory_order_relaxed);
		GPUCAP_LOG(
		    GPUCAP_LOG_INFO,
		    "region %s attached after its initialiser let it go; allocations are admitted again",
		    gpucap.config.region_path);
		return true;
	}
	if (st != GPUCAP_ERR_BUSY) {
		atomic_store_explicit(&retry_wanted, false, memory_order_relaxed);
		say_failing_closed(st, err, hint,
		                   "failing closed: every allocation returns CUDA_ERROR_OUT_OF_MEMORY");
		return false;
	}
	GPUCAP_LOG(GPUCAP_LOG_DEBUG,
	           "region %s: still being initialised by another process; tried again, failing closed",
	           gpucap.config.region_path);
	/* Read only: the schedule's words belong to gpucap_attach_retry_due. */
	if (__atomic_load_n(&schedule.tries, __ATOMIC_RELAXED) >= GPUCAP_ATTACH_RETRIES) {
		atomic_store_explicit(&retry_wanted, false, memory_order_relaxed);
		say_failing_closed(
		    st, err, hint,
		    "no more tries: every allocation returns CUDA_ERROR_OUT_OF_MEMORY until the process restarts");
	}
	return false;
}

bool gpucap_attach_again(void)
{
	/* Relaxed: a stale answer costs one refusal, or one CAS below. */
	if (!atomic_load_explicit(&retry_wanted, memory_order_relaxed))
		return false;
	bool expected = false;
	/* Acquire: partner of the release store below, by the previous
	 * retrier (see retrying). Others refuse at once. */
	if (!atomic_compare_exchange_strong_explicit(&retrying, &expected, true, memory_order_acquire,
	                                             memory_order_relaxed))
		return false;
	bool attached = false;
	if (atomic_load_explicit(&retry_wanted, memory_order_relaxed) &&
	    gpucap_attach_retry_due(&schedule, gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC)))
		attached = retry_once();
	atomic_store_explicit(&retrying, false, memory_order_release);
	return attached;
}

void gpucap_attach_after_fork(void)
{
	/* The child is alone (fork keeps one thread): plain resets. */
	gpucap_binding_forget(&binding);
	memset(&schedule, 0, sizeof(schedule));
	atomic_store_explicit(&retry_wanted, false, memory_order_relaxed);
	atomic_store_explicit(&retrying, false, memory_order_relaxed);
}
