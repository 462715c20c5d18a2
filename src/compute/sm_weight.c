/*
 * The work weight of a capped busy second, measured with calibration bursts
 * (sm_weight.h). Runs on the SM controller thread, in the process holding
 * the device's controller lease.
 */
#define _GNU_SOURCE
#include "sm_weight.h"
#include "log.h"

#include <string.h>
#include <time.h>

#define PROBE_FIRST_NS  UINT64_C(500000000)   /* a new holder, or a new cap, waits this long */
#define PROBE_PERIOD_NS UINT64_C(30000000000) /* then measures again this often */
#define PROBE_RETRY_NS  UINT64_C(5000000000)  /* sooner: too little was measured */
#define PROBE_DRIFT_NS  UINT64_C(10000000000) /* sooner: a new workload */
#define PROBE_DRIFT_PPM 250000u               /* per-launch time moved 25%: a new workload */
/* The GPU's power management takes ~100 ms to pull the clock down to its
 * full-load value, and another limit acts near 1 s (an H200; bench/results):
 * a burst is as long as the hold allows, up to 1 s, and its second half is
 * measured. */
#define PROBE_BURST_NS     UINT64_C(1000000000)
#define PROBE_MIN_BURST_NS UINT64_C(80000000)
#define PROBE_MAX_HOLD_NS  UINT64_C(1000000000) /* within one of the gate's waits (SM_SLEEP_MAX_NS) */
#define PROBE_QUIET_PPM    20000u               /* others must use less than 2% */
#define PROBE_MIN_LAUNCHES 8u
#define PROBE_FINISH_NS    UINT64_C(50000000)   /* the burst's last phases drain */
#define PROBE_FREEZE_NS    UINT64_C(1000000000) /* NVML's averages still hold the burst */
#define OTHERS_LAUNCH_NS   UINT64_C(2000000000) /* a peer that launched this recently is active */

static uint64_t real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* Whether no other process of the container launched recently: the burst
 * must be the container's only work, and the gate measures this process's. */
static bool only_launcher(void)
{
	struct gpucap_snapshot *snap = gpucap_region_snapshot(compute_env.region);
	if (!snap)
		return false;
	uint64_t now = real_ns();
	bool alone = true;
	for (uint32_t i = 0; i < snap->process_count && alone; i++) {
		const struct gpucap_process_view *p = &snap->processes[i];
		if (p->alive && !p->self && p->last_launch_unix_ns &&
		    p->last_launch_unix_ns + OTHERS_LAUNCH_NS > now)
			alone = false;
	}
	gpucap_snapshot_free(snap);
	return alone;
}

void sm_weight_reset(struct sm_weight *w, uint32_t published_ppm, uint64_t now_ns)
{
	memset(w, 0, sizeof(*w));
	w->weight_ppm = published_ppm;
	w->next_probe_ns = now_ns + PROBE_FIRST_NS;
	w->ordinal = -1;
}

void sm_weight_soon(struct sm_weight *w, uint64_t now_ns)
{
	if (!w->probe_end_ns && w->next_probe_ns > now_ns + PROBE_FIRST_NS)
		w->next_probe_ns = now_ns + PROBE_FIRST_NS;
}

uint32_t sm_weight_target(const struct sm_weight *w, uint32_t cap_ppm)
{
	if (!w->weight_ppm)
		return cap_ppm;
	uint64_t target = (uint64_t)cap_ppm * GPUCAP_SM_PPM / w->weight_ppm;
	return target > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)target;
}

static void finish_burst(struct sm_weight *w, int device, uint64_t now)
{
	struct gpucap_sm_work full;
	gpucap_sm_probe_result(w->ordinal, &full);
	w->probe_end_ns = 0;
	if (full.launches < PROBE_MIN_LAUNCHES || w->before.launches < PROBE_MIN_LAUNCHES ||
	    full.busy_ns == 0 || w->before.busy_ns == 0) {
		w->next_probe_ns = now + PROBE_RETRY_NS;
		return;
	}
	uint64_t full_per_launch = full.busy_ns / full.launches;
	uint64_t capped_per_launch = w->before.busy_ns / w->before.launches;
	if (capped_per_launch == 0) {
		w->next_probe_ns = now + PROBE_RETRY_NS;
		return;
	}
	uint64_t measured = full_per_launch * GPUCAP_SM_PPM / capped_per_launch;
	if (measured < GPUCAP_SM_WEIGHT_MIN_PPM)
		measured = GPUCAP_SM_WEIGHT_MIN_PPM;
	if (measured > GPUCAP_SM_WEIGHT_MAX_PPM)
		measured = GPUCAP_SM_WEIGHT_MAX_PPM;
	/* The first figure stands; later ones are averaged in (each is taken at
	 * the duty the previous one set, so they converge). */
	w->weight_ppm = w->weight_ppm ? (uint32_t)((w->weight_ppm + measured) / 2) : (uint32_t)measured;
	gpucap_region_sm_publish_weight(compute_env.region, device, w->weight_ppm);
	GPUCAP_LOG(
	    GPUCAP_LOG_DEBUG,
	    "SM work weight of device %d: %.3f (this burst %.3f: %.1f us per launch at full load, %.1f us capped)",
	    device, w->weight_ppm / 1e6, measured / 1e6, full_per_launch / 1e3, capped_per_launch / 1e3);
	w->per_launch_ns = capped_per_launch;
	w->next_probe_ns = now + PROBE_PERIOD_NS;
}

bool sm_weight_step(struct sm_weight *w, const struct sm_weight_inputs *in, uint64_t now)
{
	if (w->ordinal < 0)
		w->ordinal = gpucap_sm_ordinal_of(in->device);
	struct gpucap_sm_work current;
	gpucap_sm_work_totals(w->ordinal, &current);
	struct gpucap_sm_work window = {0, 0};
	uint64_t span = 0;
	if (w->last_ns) {
		window.busy_ns = current.busy_ns - w->last.busy_ns;
		window.launches = current.launches - w->last.launches;
		span = now - w->last_ns;
	}
	w->last = current;
	w->last_ns = now;

	if (w->probe_end_ns) {
		if (now >= w->probe_end_ns + PROBE_FINISH_NS)
			finish_burst(w, in->device, now);
		return true;
	}
	bool frozen = now < w->freeze_until_ns;
	if (!compute_env.config->sm.calibrate || w->ordinal < 0 || !in->measured || span == 0 ||
	    window.launches < PROBE_MIN_LAUNCHES)
		return frozen;

	/* The workload changed (its per-launch time moved): measure again. A
	 * window that held a burst's phases says nothing about that. */
	uint64_t per_launch = window.busy_ns / window.launches;
	if (w->per_launch_ns && !frozen) {
		uint64_t drift = per_launch > w->per_launch_ns ? per_launch - w->per_launch_ns
		                                               : w->per_launch_ns - per_launch;
		if (drift * GPUCAP_SM_PPM > w->per_launch_ns * (uint64_t)PROBE_DRIFT_PPM &&
		    w->next_probe_ns > now + PROBE_DRIFT_NS)
			w->next_probe_ns = now + PROBE_DRIFT_NS;
	}
	uint64_t duty = in->duty_ppm;
	if (now < w->next_probe_ns || in->foreign_ppm >= PROBE_QUIET_PPM || duty == 0 ||
	    duty >= GPUCAP_SM_PPM * 97 / 100)
		return frozen;
	/* Busy: the gates were at least half their duty busy. */
	if (window.busy_ns * GPUCAP_SM_PPM < span * duty / 2)
		return frozen;
	if (!only_launcher()) {
		w->next_probe_ns = now + PROBE_RETRY_NS;
		return frozen;
	}
	uint64_t burst = PROBE_BURST_NS;
	uint64_t affordable = PROBE_MAX_HOLD_NS * duty / (GPUCAP_SM_PPM - duty);
	if (burst > affordable)
		burst = affordable;
	if (burst < PROBE_MIN_BURST_NS) {
		w->next_probe_ns = now + PROBE_PERIOD_NS; /* a cap this low: the hold would stall */
		return frozen;
	}
	uint64_t hold = (now > in->tat_ns ? now : in->tat_ns) + burst * (GPUCAP_SM_PPM - duty) / duty;
	uint64_t measure = hold + burst / 2;
	if (!gpucap_sm_probe_start(w->ordinal, hold, measure, hold + burst))
		return frozen;
	w->before = window;
	w->probe_end_ns = hold + burst;
	w->freeze_until_ns = w->probe_end_ns + PROBE_FREEZE_NS;
	return true;
}
