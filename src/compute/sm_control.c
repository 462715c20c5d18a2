/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One control step of the SM controller (sm_control.h). Pure: the same
 * inputs and state give the same decision.
 */
#include "sm_control.h"

#include <string.h>

void sm_control_reset(struct sm_control_state *s, const struct sm_control_inputs *in, int32_t integral_ppm,
                      uint32_t weight_ppm)
{
	memset(s, 0, sizeof(*s));
	s->integral_ppm = integral_ppm;
	s->cap_seen = in->cap_ppm;
	sm_weight_reset(&s->weight, weight_ppm, in->now_ns);
	s->last_step_ns = in->now_ns;
	s->last_busy_ns = in->busy_ns;
	s->last_held_ns = in->work.held_ns;
	s->last_work_busy_ns = in->work.busy_ns;
	s->last_launches = in->work.launches;
	s->last_foreign_ns = in->now_ns;
}

bool sm_control_due(const struct sm_control_state *s, uint64_t now_ns)
{
	return now_ns - s->last_step_ns >= SM_STEP_NS;
}

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The share the gates charged over the window, in ppm. */
static uint32_t gate_share(uint64_t busy, uint64_t window)
{
	uint64_t ppm = busy * 1000u / (window / 1000u ? window / 1000u : 1);
	return ppm > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)ppm;
}

uint32_t sm_control_busy_share(const struct sm_control_inputs *in)
{
	if (!in->measured)
		return 0;
	if (!in->device_known)
		return in->mine_ppm;
	/* Per-process smUtil says whose kernels ran, not for how long: on an
	 * H100 it reads half the device's figure for a training step and more
	 * than it for tiny kernels. The device's utilisation is the time. */
	uint64_t all = (uint64_t)in->mine_ppm + in->foreign_ppm;
	if (all == 0)
		return 0;
	uint64_t mine = (uint64_t)in->device_ppm * in->mine_ppm / all;
	return mine > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)mine;
}

/* The time launches of this process were held over the window, in ppm of
 * it (bounded: a share cannot be scaled up without end). */
static uint32_t held_share(const struct sm_control_inputs *in, struct sm_control_state *s, uint64_t window)
{
	uint64_t total = in->launching ? in->work.held_ns : 0;
	uint64_t held = total >= s->last_held_ns ? total - s->last_held_ns : 0;
	s->last_held_ns = total;
	uint64_t ppm = held * 1000u / (window / 1000u ? window / 1000u : 1);
	return ppm > SM_HELD_MAX_PPM ? SM_HELD_MAX_PPM : (uint32_t)ppm;
}

/* The duty that gives the target at the work's density (busy share per
 * unit of duty, ppm), within a factor of two of the applied one. */
static int64_t duty_for_target(int64_t applied, int64_t target, int64_t density)
{
	if (density <= 0)
		return 2 * applied;
	return clamp64(target * (int64_t)GPUCAP_SM_PPM / density, applied / 2, 2 * applied);
}

/* Whether the window's launches were small enough for its busy share to
 * tell the work's density (many launches, not a few long kernels whose
 * readings alias with the windows), by this process's gates. */
static bool fine_grained(const struct sm_control_inputs *in, uint64_t busy, uint64_t launches)
{
	return in->launching && launches > 0 && busy / launches < SM_FINE_LAUNCH_NS;
}

/* This process's launches that the gates counted over the window (none
 * when it does not launch: its totals then say nothing), and their busy
 * time by the gates. */
static uint64_t window_launches(const struct sm_control_inputs *in, struct sm_control_state *s,
                                uint64_t *gate_busy_ns)
{
	uint64_t busy = in->work.busy_ns - s->last_work_busy_ns;
	uint64_t launches = in->work.launches - s->last_launches;
	s->last_work_busy_ns = in->work.busy_ns;
	s->last_launches = in->work.launches;
	*gate_busy_ns = in->launching ? busy : 0;
	return in->launching ? launches : 0;
}

/* -1, 0 or 1: a window's density (busy over duty) below, near or above
 * from_ppm by more than SM_SHIFT. */
static int density_side(uint32_t from_ppm, uint32_t busy_ppm, uint32_t duty_ppm)
{
	uint64_t density = (uint64_t)busy_ppm * GPUCAP_SM_PPM / (duty_ppm ? duty_ppm : 1);
	uint64_t margin = (uint64_t)from_ppm * SM_SHIFT_PPM / GPUCAP_SM_PPM;
	if (density > (uint64_t)from_ppm + margin)
		return 1;
	if (density + margin < from_ppm)
		return -1;
	return 0;
}

static void shift_forget(struct sm_control_state *s)
{
	s->shift_side = 0;
	s->shift_windows = 0;
	s->shift_busy_ppm = 0;
	s->shift_duty_ppm = 0;
}

/* What the duty steps on: the work's density, its busy share per unit of
 * duty, as a ratio of sums over the last seconds of work. The density is
 * the workload's own whatever the duty, so averaging it adds no lag to the
 * loop; and a ratio of sums is not thrown by work that comes in bursts
 * longer than a window (50 ms kernels at a low cap run once every few
 * windows, and NVML's samples of them land in one window or the next). The
 * busy share is NVML's, but never less than the gates' sure share
 * (sm_gate_sure_busy; 0 when another tenant shares the GPU): where NVML
 * under-reads long kernels the gates know they ran.
 *
 * A density that really moved, though, the sums follow only over their
 * seconds: a training step whose host sped up (busy 28% to 40% at the same
 * duty, on an H100) ran 5 points over a cap of 30% for the 4 s the sums
 * took. So SM_SHIFT_WINDOWS telling windows in a row (many small launches,
 * no neighbour, not taking turns, a busy share to read) off the density the
 * run began from by more than SM_SHIFT on the same side start the sums
 * again from those windows: noise that large rarely comes three times
 * running, and a restart in either direction keeps the density unbiased. Windows of a few long kernels alias
 * with NVML's samples, and a neighbour's time slices empty whole windows: neither tells. */
static bool work_density(struct sm_control_state *s, uint32_t busy_ppm, uint32_t sure_ppm, uint32_t applied,
                         bool telling)
{
	bool restarted = false;
	uint32_t seen = busy_ppm > sure_ppm ? busy_ppm : sure_ppm;
	telling = telling && seen >= SM_MISMATCH_PPM && s->density_known;
	/* A run is judged against the density it began from: the sums,
	 * following the run, would otherwise end it before it is long enough. */
	int side =
	    telling ? density_side(s->shift_windows ? s->shift_from_ppm : s->density_ppm, seen, applied) : 0;
	if (side == 0 || side != s->shift_side)
		shift_forget(s);
	if (side != 0 && s->shift_windows == 0)
		s->shift_from_ppm = s->density_ppm;
	s->shift_side = side;
	if (side != 0) {
		/* A window's sure share is folded into its busy one: both are
		 * floors of what ran. */
		s->shift_windows++;
		s->shift_busy_ppm += seen;
		s->shift_duty_ppm += applied;
	}
	if (s->shift_windows >= SM_SHIFT_WINDOWS) {
		s->sum_busy_ppm = s->shift_busy_ppm;
		s->sum_sure_ppm = 0;
		s->sum_duty_ppm = s->shift_duty_ppm;
		shift_forget(s); /* the next shift is judged against the restarted sums */
		restarted = true;
	} else {
		s->sum_busy_ppm = s->sum_busy_ppm * SM_DENSITY_DECAY_PPM / GPUCAP_SM_PPM + busy_ppm;
		s->sum_sure_ppm = s->sum_sure_ppm * SM_DENSITY_DECAY_PPM / GPUCAP_SM_PPM + sure_ppm;
		s->sum_duty_ppm = s->sum_duty_ppm * SM_DENSITY_DECAY_PPM / GPUCAP_SM_PPM + applied;
	}
	uint64_t busy = s->sum_busy_ppm > s->sum_sure_ppm ? s->sum_busy_ppm : s->sum_sure_ppm;
	uint64_t density = busy * GPUCAP_SM_PPM / (s->sum_duty_ppm ? s->sum_duty_ppm : 1);
	s->density_ppm = density > SM_DENSITY_MAX_PPM ? SM_DENSITY_MAX_PPM : (uint32_t)density;
	s->density_known = true;
	return restarted;
}

/* Taking turns, the window is the duty: work that keeps the GPU busy in
 * its window gets its share by construction, and NVML's per-process
 * samples alias with the schedule's period (a tenant reads 96% in one step
 * and 64% in the next), so a plain integral would pull the duty anywhere.
 * Work that leaves gaps in its window, though, gets only its density of it.
 * So the share is averaged over about 2 s, and only a density clearly below
 * full (the averaged share under SM_TURNS_GAPPY_PPM of the duty) moves the
 * duty, toward the one that gives the target; otherwise the correction
 * fades and the feed-forward holds. Such work also stops taking turns
 * (turns_gappy). */
static int64_t turns_integral(struct sm_control_state *s, bool closed, uint32_t applied, int64_t target,
                              uint32_t busy_ppm)
{
	/* The correction of a duty cycle of its own means nothing for a
	 * window: taking turns starts from the feed-forward. */
	int64_t integral = s->turns_steps ? s->integral_ppm : 0;
	if (!closed)
		return 0;
	s->turns_share_ppm = s->turns_steps++ ? (3 * s->turns_share_ppm + busy_ppm) / 4 : busy_ppm;
	if (s->turns_steps < SM_TURNS_SETTLE_STEPS)
		return integral;
	if ((uint64_t)s->turns_share_ppm * GPUCAP_SM_PPM >= (uint64_t)applied * SM_TURNS_GAPPY_PPM)
		return integral / 2;
	int64_t density = applied ? (int64_t)s->turns_share_ppm * (int64_t)GPUCAP_SM_PPM / applied : 0;
	int64_t error = duty_for_target(applied, target, density) - (int64_t)applied;
	return integral + error * SM_TURNS_GAIN_PPM / (int64_t)GPUCAP_SM_PPM;
}

/* Whether work taking turns leaves gaps in its window (turns_integral's
 * average, settled, under SM_TURNS_GAPPY_PPM of the duty). Such work, a
 * training step or a launch loop whose host feeds the GPU at its own pace,
 * only gets the GPU while its window is open: held outside it, the host
 * waits too, so it needs a window of its cap over its density (86% of the
 * period for a training step busy 35% of the time at a cap of 30%), and
 * two such tenants claim more than the period. On an H100 two training
 * steps at 30% and 70% taking turns got 18% and 31% of the GPU's work,
 * and 26% and 31% each on its own duty cycle, overlapping
 * (bench/results/2026-12-07-h100-sm-share-final.md). So gappy work
 * overlaps: its gates keep to its own duty cycle and stamp no record, and
 * the others lay out their windows without it. */
static bool turns_gappy(const struct sm_control_state *s, uint32_t applied)
{
	return s->turns_steps >= SM_TURNS_SETTLE_STEPS &&
	       (uint64_t)s->turns_share_ppm * GPUCAP_SM_PPM < (uint64_t)applied * SM_TURNS_GAPPY_PPM;
}

void sm_control_step(const struct sm_control_inputs *in, struct sm_control_state *s,
                     struct sm_control_decision *out)
{
	memset(out, 0, sizeof(*out));
	uint64_t now = in->now_ns;
	int64_t cap = in->cap_ppm;
	uint64_t window = now - s->last_step_ns;
	if (window == 0)
		return;
	/* What the gates charged: the container's busy time as they see it. */
	uint64_t busy = in->busy_ns - s->last_busy_ns;
	s->last_busy_ns = in->busy_ns;
	s->last_step_ns = now;
	uint32_t gate_ppm = gate_share(busy, window);
	uint32_t held_ppm = held_share(in, s, window);
	uint64_t sure_total = in->launching ? in->work.sure_ns : 0;
	uint32_t sure_ppm =
	    gate_share(sure_total >= s->last_sure_ns ? sure_total - s->last_sure_ns : 0, window);
	s->last_sure_ns = sure_total;
	if (s->cap_seen && in->cap_ppm != s->cap_seen) {
		/* A new cap: the bias the integral trims scales with it. */
		s->integral_ppm = (int32_t)((int64_t)s->integral_ppm * cap / (int64_t)s->cap_seen);
		sm_weight_soon(&s->weight, now);
	}
	s->cap_seen = in->cap_ppm;
	out->gate_ppm = gate_ppm;

	uint32_t mine = in->measured ? in->mine_ppm : 0;
	uint32_t foreign = in->measured ? in->foreign_ppm : 0;
	bool closed = in->measured;
	/* NVML that sees none of the container's kernels while the gates are
	 * busy is not attributing them to us: integrating that would lift the
	 * cap. A PID it names differently drops the container for good; with
	 * no one else busy either, its list has a gap. Then the correction is
	 * held for SM_MISMATCH_HOLD steps, and fades to the feed-forward.
	 * With another tenant busy, though, a window NVML gives wholly to the
	 * neighbour is a reading: two tenants taking time slices on an H100
	 * read 0% in a third of the windows and about twice their share in the
	 * rest, so holding through the zeros counted the high windows alone and
	 * held a tenant at half its cap. Past SM_MISMATCH_HOLD such windows in a row
	 * it is a naming problem after all; and a container NVML has never
	 * shown busy is one from the start (no step of it runs uncapped). */
	bool mismatch = false;
	if (closed && mine < SM_IDLE_PPM && gate_ppm >= SM_MISMATCH_PPM) {
		++s->mismatches;
		bool neighbour_reading =
		    s->nvml_named_us && foreign >= SM_ELASTIC_PPM && s->mismatches <= SM_MISMATCH_HOLD;
		if (!neighbour_reading) {
			closed = false;
			mismatch = true;
			out->warn_mismatch =
			    s->mismatches ==
			    (foreign >= SM_ELASTIC_PPM ? SM_MISMATCH_HOLD + 1 : SM_MISMATCH_WARN);
		}
	} else if (closed) {
		s->mismatches = 0;
		if (mine >= SM_IDLE_PPM)
			s->nvml_named_us = true;
	}
	out->closed = closed;

	if (closed && foreign >= SM_ELASTIC_PPM)
		s->last_foreign_ns = now;
	bool neighbour_lately = now - s->last_foreign_ns < SM_NEIGHBOUR_NS;
	/* Taking turns with other containers, the window is an exact time
	 * share by construction: the feed-forward alone, unless the work
	 * leaves gaps in its window (turns_integral). Caps that fill the GPU keep it at full load, where a
	 * busy second is worth one (the work weight applies to idle gaps). No burst starts while taking turns
	 * (the others count as busy); one already under way is finished.
	 * Not at a duty of 100%, though: no launch takes the gate there, so
	 * this container stamps no record and the others lay out their
	 * windows without it; its step is a free tenant's, as they see it (on
	 * an H100 the cap-70 tenant of two held its duty at 100% as taking
	 * turns while the cap-30 one saw no one). What taking turns learnt is
	 * kept for a window that comes back below 100%. */
	uint32_t applied = in->duty_ppm ? in->duty_ppm : in->cap_ppm;
	bool turns = in->turns && !s->overlap && applied < GPUCAP_SM_PPM;

	uint32_t busy_ppm = closed ? sm_control_busy_share(in) : 0;
	out->busy_ppm = busy_ppm;
	/* Beside a neighbour the share is the work the window's launches did
	 * at the cost a launch had alone (sm_launch_cost.h): NVML's busy time
	 * then holds the neighbour's time slices. Only where the gates count
	 * the launches (below a duty of 100%) and not taking turns (the
	 * window is the share there). */
	uint64_t gate_busy_ns;
	uint64_t launches = window_launches(in, s, &gate_busy_ns);
	bool counted = in->launching && !turns && applied < GPUCAP_SM_PPM;
	bool beside = foreign >= SM_ELASTIC_PPM || neighbour_lately;
	bool by_work = closed && counted && beside && sm_launch_cost_known(&s->launch_cost);
	uint32_t measured = by_work ? sm_launch_cost_share(&s->launch_cost, launches, window) : busy_ppm;
	out->by_work = by_work;
	out->work_ppm = by_work ? measured : 0;
	/* Through a gap in NVML's attribution the share shown stays the last
	 * one measured: the gates' figure, gaps included, would read high. */
	uint32_t share = closed ? measured : gate_ppm;
	if (!(mismatch && s->share_known && s->mismatches <= SM_MISMATCH_HOLD)) {
		s->share_ppm = s->share_known ? (s->share_ppm + share) / 2 : share;
		s->share_known = true;
	}
	out->flags = closed ? 0 : GPUCAP_SM_FLAG_OPEN_LOOP;
	out->source = by_work  ? GPUCAP_SM_SOURCE_LAUNCHES
	              : closed ? GPUCAP_SM_SOURCE_NVML
	                       : GPUCAP_SM_SOURCE_GATE;

	if (in->elastic) {
		if (!closed) {
			out->warn_elastic_blind = true;
		} else {
			if (now - s->last_foreign_ns >= SM_ELASTIC_NS) {
				out->publish = true;
				out->duty_ppm = GPUCAP_SM_PPM;
				out->share_ppm = s->share_ppm;
				out->asked_ppm = s->share_ppm; /* nothing held */
				out->flags |=
				    GPUCAP_SM_FLAG_ELASTIC_OPEN | (s->overlap ? GPUCAP_SM_FLAG_OVERLAP : 0);
				s->elastic_open = true;
				out->integral_ppm = s->integral_ppm;
				out->target_ppm = GPUCAP_SM_PPM;
				return;
			}
		}
	}

	out->turns = turns;
	if (!in->turns || s->overlap)
		s->turns_steps = 0;
	struct sm_weight_inputs w = {
	    .now_ns = now,
	    .duty_ppm = applied,
	    .foreign_ppm = turns ? GPUCAP_SM_PPM : foreign,
	    .measured = closed,
	    /* Work whose density says the weight will not apply to it
	     * (sm_weight_effective) is not held for a burst that measures it. */
	    .calibrate = in->calibrate && !(s->density_known && s->density_ppm <= SM_WEIGHT_GAPPY_PPM),
	    .tat_ns = in->tat_ns,
	    .launching = in->launching,
	    .work = in->work,
	    .burst = in->burst,
	    .alone = in->alone,
	};
	sm_weight_step(&s->weight, &w, &out->weight);
	/* A window in which the container worked: its phases ran, its
	 * launches were held, or it ends inside the time its work paid for
	 * (the clock ahead: a launch would wait; a launch held for seconds
	 * counts as held only when it goes). After NVML's first window (it
	 * began before the launches), and outside a calibration burst and
	 * NVML's memory of it: the burst's gates are open whatever the duty, so
	 * its busy share over the duty is no density (read so, it pulled the
	 * duty down after a burst). At a duty of 100% no launch takes the gate,
	 * so NVML's busy share is the only witness: work that ran free through
	 * a slow start and then turned dense read the slow start's density for
	 * good, and was never capped again. */
	bool worked = gate_ppm >= SM_MISMATCH_PPM || held_ppm >= SM_MISMATCH_PPM || in->tat_ns > now ||
	              (applied >= GPUCAP_SM_PPM && busy_ppm >= SM_MISMATCH_PPM);
	/* Running free, the work's busy share is its own demand, unthrottled.
	 * Above the cap, the work has changed (a slow start over): its density
	 * starts again from this window, as the seconds of history would
	 * otherwise hold the duty near 100% while the work took the GPU. Not
	 * with a neighbour busy in the last SM_NEIGHBOUR_NS: NVML then gives
	 * this container the neighbour's time slices now and then (81% of an
	 * H100 for a training step that asked for 35%), and each such window
	 * pulled a tenant running free down to 86% of duty. A memory of one
	 * second is too short for that: with a third of the neighbour's
	 * windows reading none, two in a row come every few seconds (on an
	 * H100 the cap-70 tenant of two still dropped to 85% in 9 of its 40
	 * steps). The sums, a few seconds long, still follow work that really
	 * changed. */
	/* Except in the first windows back from a pause (SM_PAUSE_STEPS idle
	 * ones): a neighbour seen while this container idled says nothing of
	 * its time slices, and work that was free before the pause keeps its
	 * duty of 100% through it (below), so work that comes back dense must
	 * be capped at once, not after the neighbour's memory. */
	bool idle_window = closed && mine < SM_IDLE_PPM && gate_ppm < SM_IDLE_PPM;
	if (idle_window) {
		s->idle_steps++;
	} else if (worked) {
		if (s->idle_steps >= SM_PAUSE_STEPS)
			s->resumed_windows = SM_RESUMED_WINDOWS;
		s->idle_steps = 0;
	}
	bool resuming = worked && s->resumed_windows > 0;
	if (resuming)
		s->resumed_windows--;
	if (!turns && applied >= GPUCAP_SM_PPM && busy_ppm > in->cap_ppm && (!neighbour_lately || resuming))
		s->sum_busy_ppm = s->sum_sure_ppm = s->sum_duty_ppm = 0;
	bool fine = fine_grained(in, gate_busy_ns, launches);
	bool shifted = false;
	if (closed && worked && s->steps > 0 && !out->weight.frozen) {
		shifted =
		    work_density(s, measured, foreign < SM_ELASTIC_PPM && !turns && !by_work ? sure_ppm : 0,
		                 applied, fine && !turns && !neighbour_lately);
		/* Alone, the window teaches what its launches cost: NVML's busy
		 * time, or the gates' sure time where NVML under-reads. */
		if (counted && !beside) {
			uint32_t alone_ppm = busy_ppm > sure_ppm ? busy_ppm : sure_ppm;
			sm_launch_cost_learn(&s->launch_cost, alone_ppm * window / GPUCAP_SM_PPM, launches);
		}
	} else {
		shift_forget(s);
	}
	/* Overlapping, work that fills its duty again takes turns again. */
	if (s->overlap && s->density_known && s->density_ppm >= SM_TURNS_DENSE_PPM)
		s->overlap = false;
	bool frozen = out->weight.frozen && !turns;
	uint32_t weight = sm_weight_effective(&s->weight, s->density_ppm, s->density_known);
	int64_t target =
	    turns && in->turns_caps_ppm >= SM_TURNS_FULL_PPM ? cap : sm_weight_target(weight, in->cap_ppm);

	int64_t integral = s->integral_ppm;
	if (mismatch) {
		/* Held, taking turns too (a correction of a duty cycle of its
		 * own means nothing for a window: none is held into one). */
		if (turns && !s->turns_steps)
			integral = 0;
		if (s->mismatches > SM_MISMATCH_HOLD)
			integral /= 2;
	} else if (turns) {
		integral = turns_integral(s, closed, applied, target, busy_ppm);
		if (turns_gappy(s, applied)) {
			/* From the next step on its own duty cycle, at the duty
			 * found for its window: the density the duty steps on
			 * starts from the windows' readings. */
			s->overlap = true;
			s->turns_steps = 0;
		}
	} else if (!closed) {
		integral = 0; /* open loop: feed-forward only */
	} else if (s->elastic_open) {
		/* Back from running free: the cap starts again from its
		 * feed-forward, not from a step off the duty of 100%. */
		integral = 0;
		s->elastic_open = false;
	} else if (frozen || s->steps++ == 0) {
		/* A calibration burst, or NVML's first window (it began before
		 * the launches): the share says nothing about the duty. */
	} else if (idle_window) {
		/* Idle: forget the correction rather than wind it up; but not
		 * the freedom of work that asked for less than its cap (the
		 * duty at 100%): forgotten, each return from a pause ran at the
		 * cap until the step after (on the fake GPU, 0.925 of native
		 * over the first second back; likely why a training step under
		 * a cap of 70%, in 2 s turns between others' on an H100, ran at
		 * 0.91 of native). Work that comes back dense is capped again
		 * within two steps (busy above the cap at a duty of 100% in the
		 * first windows back restarts the density). */
		if (applied < GPUCAP_SM_PPM)
			integral /= 2;
	} else if (!s->density_known) {
		/* Nothing launched yet to tell the work's density. */
	} else {
		int64_t error = duty_for_target(applied, target, s->density_ppm) - (int64_t)applied;
		/* The step down is half a step, against overshoot; but right
		 * after a shift the density is fresh, and the whole step is the
		 * one that brings the work back to its target. */
		int64_t gain = error < 0 && !shifted ? SM_GAIN_DOWN_PPM : SM_GAIN_UP_PPM;
		integral += error * gain / (int64_t)GPUCAP_SM_PPM;
	}
	int64_t duty = clamp64(target + integral, target / 2 > 0 ? target / 2 : 1, GPUCAP_SM_PPM);
	integral = duty - target; /* back-calculation: the clamp is where the integral stops */
	s->integral_ppm = (int32_t)integral;

	/* Shown as a share of the work, like the cap. */
	uint64_t shown = (uint64_t)s->share_ppm * weight / GPUCAP_SM_PPM;
	if (shown > GPUCAP_SM_PPM)
		shown = GPUCAP_SM_PPM;
	/* Held for a part h of the window, the work would have taken the share
	 * over the rest of it: share / (1 - h). */
	uint64_t asked = shown * GPUCAP_SM_PPM / (GPUCAP_SM_PPM - held_ppm);
	out->publish = true;
	if (s->overlap)
		out->flags |= GPUCAP_SM_FLAG_OVERLAP;
	out->duty_ppm = (uint32_t)duty;
	out->share_ppm = (uint32_t)shown;
	out->asked_ppm = asked > GPUCAP_SM_PPM ? GPUCAP_SM_PPM : (uint32_t)asked;
	out->integral_ppm = s->integral_ppm;
	out->target_ppm = (uint32_t)target;
}
