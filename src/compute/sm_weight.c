/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The work weight of a capped busy second, measured with calibration bursts
 * (sm_weight.h). Pure: everything it knows comes in sm_weight_inputs.
 */
#include "sm_weight.h"
#include "gpucap/region.h"

#include <string.h>

void sm_weight_reset(struct sm_weight *w, uint32_t published_ppm, uint64_t now_ns)
{
	memset(w, 0, sizeof(*w));
	w->weight_ppm = published_ppm;
	w->next_burst_ns = now_ns + SM_BURST_FIRST_NS;
}

void sm_weight_soon(struct sm_weight *w, uint64_t now_ns)
{
	if (!w->burst_end_ns && w->next_burst_ns > now_ns + SM_BURST_FIRST_NS)
		w->next_burst_ns = now_ns + SM_BURST_FIRST_NS;
}

uint32_t sm_weight_effective(const struct sm_weight *w, uint32_t density_ppm, bool density_known)
{
	if (!w->weight_ppm)
		return GPUCAP_SM_PPM;
	if (!density_known || density_ppm >= SM_WEIGHT_DENSE_PPM)
		return w->weight_ppm;
	if (density_ppm <= SM_WEIGHT_GAPPY_PPM)
		return GPUCAP_SM_PPM;
	int64_t excess = (int64_t)w->weight_ppm - (int64_t)GPUCAP_SM_PPM;
	int64_t part = excess * (int64_t)(density_ppm - SM_WEIGHT_GAPPY_PPM) /
	               (int64_t)(SM_WEIGHT_DENSE_PPM - SM_WEIGHT_GAPPY_PPM);
	return (uint32_t)((int64_t)GPUCAP_SM_PPM + part);
}

uint32_t sm_weight_target(uint32_t weight_ppm, uint32_t cap_ppm)
{
	if (!weight_ppm)
		return cap_ppm;
	uint64_t target = (uint64_t)cap_ppm * GPUCAP_SM_PPM / weight_ppm;
	return target > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)target;
}

static void finish_burst(struct sm_weight *w, const struct sm_weight_inputs *in,
                         struct sm_weight_outcome *out)
{
	const struct gpucap_sm_work *full = &in->burst;
	uint64_t now = in->now_ns;
	w->burst_end_ns = 0;
	if (full->launches < SM_BURST_MIN_LAUNCHES || w->before.launches < SM_BURST_MIN_LAUNCHES ||
	    full->busy_ns == 0 || w->before.busy_ns == 0) {
		w->next_burst_ns = now + SM_BURST_RETRY_NS;
		return;
	}
	uint64_t full_per_launch = full->busy_ns / full->launches;
	uint64_t capped_per_launch = w->before.busy_ns / w->before.launches;
	if (capped_per_launch == 0) {
		w->next_burst_ns = now + SM_BURST_RETRY_NS;
		return;
	}
	uint64_t measured = full_per_launch * GPUCAP_SM_PPM / capped_per_launch;
	if (measured < GPUCAP_SM_WEIGHT_MIN_PPM)
		measured = GPUCAP_SM_WEIGHT_MIN_PPM;
	if (measured > GPUCAP_SM_WEIGHT_MAX_PPM)
		measured = GPUCAP_SM_WEIGHT_MAX_PPM;
	uint64_t old = w->weight_ppm ? w->weight_ppm : GPUCAP_SM_PPM;
	uint64_t same = (uint64_t)w->figure_duty_ppm * SM_BURST_SAME_DUTY_PPM / GPUCAP_SM_PPM;
	uint64_t apart = w->before_duty_ppm > w->figure_duty_ppm ? w->before_duty_ppm - w->figure_duty_ppm
	                                                         : w->figure_duty_ppm - w->before_duty_ppm;
	/* A figure taken at about the standing one's duty is averaged in;
	 * the first, or one taken at another duty, stands on its own. */
	w->weight_ppm =
	    w->weight_ppm && apart <= same ? (uint32_t)((w->weight_ppm + measured) / 2) : (uint32_t)measured;
	w->figure_duty_ppm = w->before_duty_ppm;
	/* The duty moves by old / new: far enough, and the figure is taken
	 * again at the duty it sets (SM_BURST_SETTLE_NS). */
	uint64_t moved = old > w->weight_ppm ? old - w->weight_ppm : w->weight_ppm - old;
	bool again = moved * GPUCAP_SM_PPM > (uint64_t)w->weight_ppm * SM_BURST_MOVE_PPM &&
	             w->quick < SM_BURST_QUICK_MAX;
	w->quick = again ? w->quick + 1 : 0;
	out->publish = true;
	out->weight_ppm = w->weight_ppm;
	out->measured_ppm = (uint32_t)measured;
	out->full_per_launch_ns = full_per_launch;
	out->capped_per_launch_ns = capped_per_launch;
	w->per_launch_ns = capped_per_launch;
	w->next_burst_ns = now + (again ? SM_BURST_SETTLE_NS : SM_BURST_PERIOD_NS);
}

void sm_weight_step(struct sm_weight *w, const struct sm_weight_inputs *in, struct sm_weight_outcome *out)
{
	memset(out, 0, sizeof(*out));
	uint64_t now = in->now_ns;
	struct gpucap_sm_work current = in->launching ? in->work : (struct gpucap_sm_work){0};
	struct gpucap_sm_work window = {0};
	uint64_t span = 0;
	if (w->last_ns) {
		window.busy_ns = current.busy_ns - w->last.busy_ns;
		window.launches = current.launches - w->last.launches;
		span = now - w->last_ns;
	}
	w->last = current;
	w->last_ns = now;

	if (w->burst_end_ns) {
		if (now >= w->burst_end_ns + SM_BURST_FINISH_NS)
			finish_burst(w, in, out);
		out->frozen = true;
		return;
	}
	bool frozen = now < w->freeze_until_ns;
	out->frozen = frozen;
	if (!in->calibrate || !in->launching || !in->measured || span == 0 ||
	    window.launches < SM_BURST_MIN_LAUNCHES)
		return;

	/* The workload changed (its per-launch time moved): measure again. A
	 * window that held a burst's phases says nothing about that. */
	uint64_t per_launch = window.busy_ns / window.launches;
	if (w->per_launch_ns && !frozen) {
		uint64_t drift = per_launch > w->per_launch_ns ? per_launch - w->per_launch_ns
		                                               : w->per_launch_ns - per_launch;
		if (drift * GPUCAP_SM_PPM > w->per_launch_ns * (uint64_t)SM_BURST_DRIFT_PPM &&
		    w->next_burst_ns > now + SM_BURST_DRIFT_NS)
			w->next_burst_ns = now + SM_BURST_DRIFT_NS;
	}
	uint64_t duty = in->duty_ppm;
	if (now < w->next_burst_ns || in->foreign_ppm >= SM_BURST_QUIET_PPM || duty == 0 ||
	    duty >= GPUCAP_SM_PPM * 97 / 100)
		return;
	/* Busy: the gates were at least half their duty busy. */
	if (window.busy_ns * GPUCAP_SM_PPM < span * duty / 2)
		return;
	if (!in->alone) {
		w->next_burst_ns = now + SM_BURST_RETRY_NS;
		return;
	}
	uint64_t burst = SM_BURST_NS;
	uint64_t affordable = SM_BURST_MAX_HOLD_NS * duty / (GPUCAP_SM_PPM - duty);
	if (burst > affordable)
		burst = affordable;
	if (burst < SM_BURST_MIN_NS) {
		w->next_burst_ns = now + SM_BURST_PERIOD_NS; /* a cap this low: the hold would stall */
		return;
	}
	uint64_t hold = (now > in->tat_ns ? now : in->tat_ns) + burst * (GPUCAP_SM_PPM - duty) / duty;
	out->start = true;
	out->hold_ns = hold;
	out->measure_ns = hold + burst / 2;
	out->end_ns = hold + burst;
	w->before = window;
	w->before_duty_ppm = (uint32_t)duty;
	w->burst_end_ns = hold + burst;
	w->freeze_until_ns = w->burst_end_ns + SM_BURST_FREEZE_NS;
	out->frozen = true;
}
