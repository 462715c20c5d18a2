/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Joining the node schedule (sm_schedule.h). A device takes part once it is
 * capped in this process and GPUCAP_NODE_DIR names a directory; from then on
 * its gate reads windows from the handle published here.
 */
#define _GNU_SOURCE
#include "sm_schedule.h"
#include "compute_internal.h"
#include "log.h"

#include <stdatomic.h>
#include <string.h>

#define SCHED_RETRY_BUSY_NS UINT64_C(100000000)
#define SCHED_RETRY_NS      UINT64_C(10000000000)

static _Atomic(gpucap_sched *) handles[GPUCAP_MAX_DEVICES];
/* The controller thread's own bookkeeping. */
static uint64_t retry_at_ns[GPUCAP_MAX_DEVICES];
static bool reported[GPUCAP_MAX_DEVICES];
static bool refusal_reported[GPUCAP_MAX_DEVICES];

gpucap_sched *gpucap_sm_schedule_of(int ordinal)
{
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES)
		return NULL;
	return atomic_load_explicit(&handles[ordinal], memory_order_acquire);
}

bool gpucap_sm_schedule_shared(int ordinal, uint32_t duty_ppm, uint64_t now, uint32_t *caps_ppm)
{
	gpucap_sched *sched = gpucap_sm_schedule_of(ordinal);
	struct gpucap_sched_window w;
	gpucap_sched_window(sched, duty_ppm, now, &w);
	*caps_ppm = w.caps_ppm;
	return w.shared;
}

static void join(int ordinal, int region_index, uint64_t now)
{
	char uuid[GPUCAP_UUID_MAX] = "";
	int resolved_index;
	if (!compute_env.device_of || !compute_env.device_of(ordinal, &resolved_index, uuid) || !uuid[0])
		return;
	char why[512];
	gpucap_sched *sched = NULL;
	gpucap_status st =
	    gpucap_sched_open(compute_env.config->node_dir, uuid,
	                      gpucap_region_created_ns(compute_env.region), &sched, why, sizeof(why));
	if (st == GPUCAP_OK) {
		gpucap_sched_refresh(sched, now, NULL, 0);
		atomic_store_explicit(&handles[ordinal], sched, memory_order_release);
		GPUCAP_LOG(GPUCAP_LOG_INFO,
		           "device %d (region device %d) takes turns with other containers in %s (slot %d)",
		           ordinal, region_index, compute_env.config->node_dir, gpucap_sched_slot(sched));
		return;
	}
	retry_at_ns[ordinal] = now + (st == GPUCAP_ERR_BUSY ? SCHED_RETRY_BUSY_NS : SCHED_RETRY_NS);
	if (st != GPUCAP_ERR_BUSY && !reported[ordinal]) {
		reported[ordinal] = true;
		gpucap_log(GPUCAP_LOG_WARN,
		           "%s (device %d keeps its cap without taking turns; retrying every 10 s)", why,
		           ordinal);
	}
}

/* Write this process's record, read the other tenants' files; a file
 * refused there is reported once. */
static void refresh(int ordinal, gpucap_sched *sched, uint64_t now)
{
	char why[512];
	if (gpucap_sched_refresh(sched, now, why, sizeof(why)) > 0 && !refusal_reported[ordinal]) {
		refusal_reported[ordinal] = true;
		gpucap_log(GPUCAP_LOG_WARN, "%s", why);
	}
}

void gpucap_sm_schedule_refresh_all(uint64_t now)
{
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++) {
		gpucap_sched *sched = atomic_load_explicit(&handles[d], memory_order_relaxed);
		if (sched)
			refresh(d, sched, now);
	}
}

bool gpucap_sm_schedule_wanted(void)
{
	return compute_env.config->node_dir[0] && compute_env.region;
}

void gpucap_sm_schedule_join(int ordinal, int region_index, uint64_t now)
{
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES ||
	    atomic_load_explicit(&handles[ordinal], memory_order_relaxed) || now < retry_at_ns[ordinal])
		return;
	join(ordinal, region_index, now);
}

void gpucap_sm_schedule_after_fork(void)
{
	for (int d = 0; d < GPUCAP_MAX_DEVICES; d++) {
		gpucap_sched *sched = atomic_exchange_explicit(&handles[d], NULL, memory_order_relaxed);
		gpucap_sched_forget(sched);
		retry_at_ns[d] = 0;
		reported[d] = false;
		refusal_reported[d] = false;
	}
}
