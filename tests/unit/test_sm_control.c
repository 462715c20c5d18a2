/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SM controller's pure step (src/compute/sm_control.h), driven directly:
 * a plant stands in for the GPU and NVML, time is a number.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "gate_rules.h"
#include "sm_control.h"

#define MS  UINT64_C(1000000)
#define SEC UINT64_C(1000000000)
#define PPM GPUCAP_SM_PPM

/* A device under control: time, what the gates charged, the published duty. */
struct plant {
	struct sm_control_inputs in;
	struct sm_control_state state;
	struct sm_control_decision out;
	uint32_t duty_ppm; /* published; 0 before the first step */
};

static void plant_start(struct plant *p, uint32_t cap_percent)
{
	memset(p, 0, sizeof(*p));
	p->in.now_ns = 1000 * SEC;
	p->in.cap_ppm = cap_percent * (PPM / 100);
	p->in.launching = true;
	sm_control_reset(&p->state, &p->in, 0, 0);
}

/* One step SM_STEP_NS later. The gates were busy the duty of the window;
 * NVML saw the container get share_permille of each duty unit (another
 * tenant shares the ON phases), others foreign_ppm. */
static void plant_step(struct plant *p, unsigned share_permille, uint32_t foreign_ppm)
{
	uint32_t duty = p->duty_ppm ? p->duty_ppm : p->in.cap_ppm;
	p->in.now_ns += SM_STEP_NS;
	p->in.busy_ns += SM_STEP_NS * duty / PPM;
	p->in.duty_ppm = p->duty_ppm;
	p->in.measured = true;
	uint64_t mine = (uint64_t)duty * share_permille / 1000;
	p->in.mine_ppm = mine > PPM ? PPM : (uint32_t)mine;
	p->in.foreign_ppm = foreign_ppm;
	p->in.work.busy_ns = p->in.busy_ns;
	p->in.work.launches += 500;
	assert_true(sm_control_due(&p->state, p->in.now_ns));
	sm_control_step(&p->in, &p->state, &p->out);
	assert_true(p->out.publish);
	p->duty_ppm = p->out.duty_ppm;
}

static uint32_t abs_diff(uint32_t a, uint32_t b)
{
	return a > b ? a - b : b - a;
}

/* Next to another tenant the container gets 60% of its ON time: the
 * integral raises the duty until the share is the cap, and stays there. */
static void integral_converges_to_the_cap(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 40; i++)
		plant_step(&p, 600, 0);
	uint32_t share = (uint32_t)((uint64_t)p.duty_ppm * 600 / 1000);
	assert_true(abs_diff(share, 300000) < 5000);
	assert_true(abs_diff(p.duty_ppm, 500000) < 8000);
	assert_int_equal(p.out.integral_ppm, (int32_t)p.duty_ppm - 300000);
	assert_int_equal(p.out.source, GPUCAP_SM_SOURCE_NVML);
	assert_int_equal(p.out.flags, 0);
	/* Alone (the share is the duty) it comes back down to the cap. */
	for (int i = 0; i < 40; i++)
		plant_step(&p, 1000, 0);
	assert_true(abs_diff(p.duty_ppm, 300000) < 5000);
}

/* A share that never comes (10% of the duty): the duty stops at 100% and
 * the integral at 100% - target, so it comes down within a few steps when
 * the share does; a share far above: the duty stops at half the target. */
static void clamps_stop_the_integral(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 40);
	for (int i = 0; i < 30; i++)
		plant_step(&p, 100, 0);
	assert_int_equal(p.duty_ppm, PPM);
	assert_int_equal(p.out.integral_ppm, (int32_t)(PPM - 400000));
	/* Full duty, all of it ours: 100% against 40%; the density is averaged
	 * over about 2 s. */
	for (int i = 0; i < 6; i++)
		plant_step(&p, 1000, 0);
	assert_true(p.duty_ppm < PPM * 8 / 10);

	plant_start(&p, 40);
	for (int i = 0; i < 30; i++)
		plant_step(&p, 3000, 0);
	assert_int_equal(p.duty_ppm, 200000);
	assert_int_equal(p.out.integral_ppm, -200000);
}

/* A live cap change scales the integral with the cap. */
static void live_cap_change_scales_the_integral(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 40; i++)
		plant_step(&p, 600, 0);
	int32_t before = p.state.integral_ppm;
	assert_true(before > 150000);
	p.in.cap_ppm = 600000;
	plant_step(&p, 600, 0);
	/* Scaled by 60/30, then one step of the law at the new target. */
	assert_true(p.state.cap_seen == 600000);
	assert_true(p.out.target_ppm == 600000);
	assert_true(p.out.integral_ppm > before);
	for (int i = 0; i < 40; i++)
		plant_step(&p, 600, 0);
	assert_int_equal(p.duty_ppm, PPM); /* 60% of ON time never reaches 60% */
}

/* No NVML: open loop, the duty is the cap, the gates' share is shown. */
static void open_loop_is_feed_forward(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	p.state.integral_ppm = 50000; /* left by an earlier holder */
	p.in.now_ns += SM_STEP_NS;
	p.in.busy_ns += SM_STEP_NS * 3 / 10;
	p.in.measured = false;
	sm_control_step(&p.in, &p.state, &p.out);
	assert_true(p.out.publish);
	assert_int_equal(p.out.duty_ppm, 300000);
	assert_int_equal(p.out.integral_ppm, 0);
	assert_int_equal(p.out.flags, GPUCAP_SM_FLAG_OPEN_LOOP);
	assert_int_equal(p.out.source, GPUCAP_SM_SOURCE_GATE);
	assert_true(abs_diff(p.out.share_ppm, 300000) < 1000);
}

/* NVML that sees nothing of a busy container: open loop, said on the 4th. */
static void nvml_blind_to_us_is_open_loop(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	unsigned warned = 0;
	for (int i = 0; i < 6; i++) {
		plant_step(&p, 0, 0);
		assert_int_equal(p.out.flags, GPUCAP_SM_FLAG_OPEN_LOOP);
		assert_int_equal(p.duty_ppm, 300000);
		warned += p.out.warn_mismatch;
		if (p.out.warn_mismatch)
			assert_int_equal(i, 3);
	}
	assert_int_equal(warned, 1);
}

/* Next to another tenant NVML leaves the container out of its list for
 * seconds at a time while the gates see it busy: the duty the closed loop
 * found is held through such a gap, not dropped to the feed-forward, and
 * only a longer blindness brings it back to the cap. */
static void nvml_gaps_hold_the_duty(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 40; i++)
		plant_step(&p, 600, 400000);
	uint32_t found = p.duty_ppm;
	assert_true(abs_diff(found, 500000) < 10000);
	for (int i = 0; i < 6; i++) {
		plant_step(&p, 0, 0);
		assert_int_equal(p.duty_ppm, found);
		assert_int_equal(p.out.flags, GPUCAP_SM_FLAG_OPEN_LOOP);
	}
	plant_step(&p, 600, 400000);
	assert_true(abs_diff(p.duty_ppm, found) < 10000);
	for (int i = 0; i < 20; i++)
		plant_step(&p, 0, 0);
	assert_true(abs_diff(p.duty_ppm, 300000) < 5000);
}

/* Two tenants taking time slices: NVML gives a window wholly to one of
 * them, so the container reads 0% (the neighbour busy) in half its windows
 * and twice its share in the others. Those zeros are readings: the duty
 * settles where the average is the cap (60%, half of each ON phase being
 * ours), not where the high windows alone are (30%). */
static void a_window_given_to_the_neighbour_is_a_reading(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	uint64_t duty_sum = 0;
	for (int i = 0; i < 80; i++) {
		plant_step(&p, i % 2 ? 0 : 1000, i % 2 ? 500000 : 0);
		assert_int_equal(p.out.flags, 0);
		if (i >= 60)
			duty_sum += p.duty_ppm;
	}
	assert_true(abs_diff((uint32_t)(duty_sum / 20), 600000) < 60000);
	/* Zeros for longer than a time slice could explain, with the
	 * neighbour busy, are a PID NVML names differently: open loop. */
	for (int i = 0; i < 30; i++)
		plant_step(&p, 0, 500000);
	assert_int_equal(p.out.flags, GPUCAP_SM_FLAG_OPEN_LOOP);
	assert_true(abs_diff(p.duty_ppm, 300000) < 5000);

	/* A container NVML has never shown busy: its zeros next to a busy
	 * neighbour are a naming problem from the first step, and the duty
	 * stays at the cap. */
	plant_start(&p, 30);
	for (int i = 0; i < 8; i++) {
		plant_step(&p, 0, 500000);
		assert_int_equal(p.out.flags, GPUCAP_SM_FLAG_OPEN_LOOP);
		assert_int_equal(p.duty_ppm, 300000);
	}
}

/* Elastic: nobody else for a second opens the cap; someone else closes it. */
static void elastic_opens_when_alone(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	p.in.elastic = true;
	plant_step(&p, 1000, 0);
	assert_false(p.out.flags & GPUCAP_SM_FLAG_ELASTIC_OPEN); /* 0.5 s alone */
	plant_step(&p, 1000, 0);
	assert_true(p.out.flags & GPUCAP_SM_FLAG_ELASTIC_OPEN);
	assert_int_equal(p.duty_ppm, PPM);
	plant_step(&p, 1000, 100000); /* another tenant at 10% */
	assert_false(p.out.flags & GPUCAP_SM_FLAG_ELASTIC_OPEN);
	assert_true(p.duty_ppm < PPM);
	plant_step(&p, 1000, 0);
	assert_false(p.out.flags & GPUCAP_SM_FLAG_ELASTIC_OPEN); /* not a second yet */
	/* Without NVML elastic cannot see others: the cap holds, and it says so. */
	plant_start(&p, 30);
	p.in.elastic = true;
	p.in.now_ns += 3 * SEC;
	p.in.measured = false;
	sm_control_step(&p.in, &p.state, &p.out);
	assert_true(p.out.warn_elastic_blind);
	assert_int_equal(p.out.duty_ppm, 300000);
}

/* Taking turns: the window is the share; feed-forward only, and caps that
 * fill the GPU ignore the weight. */
static void gappy_step(struct plant *p, unsigned density_permille, uint64_t held_ns);

static void taking_turns_is_feed_forward(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	sm_control_reset(&p.state, &p.in, 80000, 1500000);
	p.in.turns = true;
	p.in.turns_caps_ppm = 600000;
	for (int i = 0; i < 10; i++) {
		plant_step(&p, 900, 0); /* the work fills its window */
		assert_int_equal(p.out.integral_ppm, 0);
		assert_int_equal(p.duty_ppm, 200000); /* 30% / 1.5 */
	}
	p.in.turns_caps_ppm = 1000000;
	plant_step(&p, 900, 0);
	assert_int_equal(p.duty_ppm, 300000);
	assert_false(p.out.weight.start); /* no burst while taking turns */
}

/* A plant that takes turns with another container, their caps filling
 * the GPU. */
static void turns_plant_start(struct plant *p, uint32_t cap_percent)
{
	plant_start(p, cap_percent);
	p->in.turns = true;
	p->in.turns_caps_ppm = 1000000;
}

/* Taking turns, work that fills its window keeps the feed-forward and
 * keeps taking turns however NVML's samples alias with the schedule (96% of
 * the window in one step, 64% in the next); work that leaves gaps in its
 * window (busy 35% of it) gets a longer duty, until its busy share is the
 * cap (taking turns at first, then overlapping: the next test). */
static void taking_turns_lengthens_a_gappy_window(void **state)
{
	(void)state;
	struct plant p;
	turns_plant_start(&p, 30);
	for (int i = 0; i < 40; i++) {
		gappy_step(&p, i % 2 ? 960 : 640, 0);
		assert_true(abs_diff(p.duty_ppm, 300000) <= 1);
		assert_true(p.out.turns);
		assert_false(p.out.flags & GPUCAP_SM_FLAG_OVERLAP);
	}
	turns_plant_start(&p, 30);
	for (int i = 0; i < 30; i++)
		gappy_step(&p, 350, 0);
	assert_true(abs_diff(p.out.busy_ppm, 300000) < 10000);
	assert_true(abs_diff(p.duty_ppm, 857000) < 30000);
	/* NVML leaving the container out of its list for 5 s (an H100 did for 4.5 s,
	 * taking turns with another tenant) does not shrink the window. */
	uint32_t found = p.duty_ppm;
	for (int i = 0; i < 10; i++) {
		gappy_step(&p, 0, 0);
		assert_int_equal(p.duty_ppm, found);
	}
}

/* Work that leaves gaps in its window (busy 35% of it) stops taking turns
 * once its average has settled: it overlaps the others on its own duty
 * cycle (the flag tells its gates to take no window) and takes turns again
 * when it fills its duty. */
static void gappy_work_overlaps_instead_of_taking_turns(void **state)
{
	(void)state;
	struct plant p;
	turns_plant_start(&p, 30);
	int overlapping = -1;
	for (int i = 0; i < 30; i++) {
		gappy_step(&p, 350, 0);
		if (overlapping < 0 && (p.out.flags & GPUCAP_SM_FLAG_OVERLAP))
			overlapping = i;
		if (overlapping >= 0 && i > overlapping) {
			assert_false(p.out.turns);
			assert_true(p.out.flags & GPUCAP_SM_FLAG_OVERLAP);
		}
	}
	assert_true(overlapping >= 0 && overlapping < 6);
	int dense = -1;
	for (int i = 0; i < 20 && dense < 0; i++) {
		gappy_step(&p, 1000, 0);
		if (p.out.turns)
			dense = i;
	}
	assert_true(dense >= 0);
	assert_false(p.out.flags & GPUCAP_SM_FLAG_OVERLAP);
}

/* A plant whose controller may calibrate: bursts allowed, and this process
 * the container's only one launching. */
static void calibrating_plant_start(struct plant *p, uint32_t cap_percent)
{
	plant_start(p, cap_percent);
	p->in.calibrate = true;
	p->in.alone = true;
}

/* Steps (the work keeping the GPU busy, others at foreign_ppm) up to the
 * one at which a burst falls due: none starts before. */
static void before_burst(struct plant *p, uint32_t foreign_ppm)
{
	while (p->in.now_ns + SM_STEP_NS < p->state.weight.next_burst_ns) {
		plant_step(p, 1000, foreign_ppm);
		assert_false(p->out.weight.start);
	}
}

/* Calibration bursts: due 2.5 s after a new holder, held for burst x
 * (1/duty - 1) past the virtual clock, frozen while NVML holds it, then the
 * weight is full-load busy per launch / capped busy per launch. */
static void calibration_burst_is_scheduled_and_measured(void **state)
{
	(void)state;
	struct plant p;
	calibrating_plant_start(&p, 20);
	before_burst(&p, 0);
	plant_step(&p, 1000, 0);
	assert_true(p.out.weight.start);
	uint64_t now = p.in.now_ns;
	/* duty 20%: a 1 s burst would cost a 4 s hold, past SM_BURST_MAX_HOLD_NS:
	 * the burst shrinks to what a 2 s hold affords (2 s x 0.2 / 0.8). */
	uint64_t burst = SM_BURST_MAX_HOLD_NS * 200000 / 800000;
	assert_true(SM_BURST_MAX_HOLD_NS == UINT64_C(2000000000));
	uint64_t hold = now + burst * 800000 / 200000;
	assert_true(p.out.weight.hold_ns == hold);
	assert_true(p.out.weight.measure_ns == hold + burst / 2);
	assert_true(p.out.weight.end_ns == hold + burst);
	assert_true(p.out.weight.frozen);
	int32_t integral = p.state.integral_ppm;
	/* Frozen until the burst is over: the integral does not move. */
	while (p.in.now_ns + SM_STEP_NS < hold + burst + SM_BURST_FINISH_NS) {
		plant_step(&p, 300, 0);
		assert_int_equal(p.state.integral_ppm, integral);
		assert_false(p.out.weight.publish);
	}
	/* The burst ran its launches 1.5x faster than the capped ones. */
	uint64_t capped_per_launch = p.state.weight.before.busy_ns / p.state.weight.before.launches;
	p.in.burst.launches = 1000;
	p.in.burst.busy_ns = 1000 * capped_per_launch * 3 / 2;
	plant_step(&p, 1000, 0);
	assert_true(p.out.weight.publish);
	assert_true(abs_diff(p.out.weight.weight_ppm, 1500000) < 2000);
	/* It moves the duty by a third: measured again at the duty it sets. */
	assert_true(p.state.weight.next_burst_ns == p.in.now_ns + SM_BURST_SETTLE_NS);
	/* The target is now cap / weight. */
	assert_true(abs_diff(p.out.target_ppm, 133333) < 1000);
}

/* A GEMM whose clock depends on the duty: above 66% it is at its power
 * limit part of the time and runs 1.13 times as fast as at full load, below
 * 1.20 times (an H200 at cap 70). The first burst, its capped side measured
 * at the feed-forward duty of 70%, reads 1.13; measured again at the duty
 * that sets, it reads 1.20, which stands: the duty ends at 70 / 1.2, and no
 * quick burst follows once the figure stops moving. */
static void weight_is_measured_again_at_the_duty_it_sets(void **state)
{
	(void)state;
	struct plant p;
	calibrating_plant_start(&p, 70);
	const uint64_t full_ns = 200000; /* busy per launch at full load */
	uint64_t burst_end = 0;
	unsigned figures = 0;
	for (int i = 0; i < 60; i++) {
		uint32_t duty = p.duty_ppm ? p.duty_ppm : p.in.cap_ppm;
		uint64_t per_launch = full_ns * 1000 / (duty > 660000 ? 1130 : 1200);
		uint64_t busy = SM_STEP_NS * duty / PPM;
		p.in.now_ns += SM_STEP_NS;
		p.in.busy_ns += busy;
		p.in.duty_ppm = p.duty_ppm;
		p.in.measured = true;
		p.in.mine_ppm = duty;
		p.in.foreign_ppm = 0;
		p.in.work.busy_ns = p.in.busy_ns;
		p.in.work.launches += busy / per_launch;
		if (burst_end && p.in.now_ns >= burst_end) {
			p.in.burst.launches = 1000;
			p.in.burst.busy_ns = 1000 * full_ns;
		}
		sm_control_step(&p.in, &p.state, &p.out);
		p.duty_ppm = p.out.duty_ppm;
		if (p.out.weight.start) {
			burst_end = p.out.weight.end_ns;
			p.in.burst.launches = 0;
			p.in.burst.busy_ns = 0;
		}
		if (p.out.weight.publish) {
			burst_end = 0;
			if (++figures == 1)
				assert_true(abs_diff(p.out.weight.measured_ppm, 1130000) < 5000);
		}
	}
	assert_true(figures >= 2);
	assert_true(abs_diff(p.state.weight.weight_ppm, 1200000) < 5000);
	assert_true(abs_diff(p.duty_ppm, 583333) < 10000);
	assert_true(p.state.weight.next_burst_ns > p.in.now_ns + SM_BURST_SETTLE_NS);
}

/* No burst when it would not measure full load alone. */
static void calibration_burst_waits_for_quiet(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 40);
	p.in.calibrate = true;
	p.in.alone = false; /* another process of the container launches */
	before_burst(&p, 0);
	plant_step(&p, 1000, 0);
	assert_false(p.out.weight.start);
	assert_true(p.state.weight.next_burst_ns == p.in.now_ns + SM_BURST_RETRY_NS);

	calibrating_plant_start(&p, 40);
	before_burst(&p, SM_BURST_QUIET_PPM); /* another tenant at 2% */
	plant_step(&p, 1000, SM_BURST_QUIET_PPM);
	assert_false(p.out.weight.start);

	plant_start(&p, 40);
	p.in.alone = true; /* calibration off */
	for (int i = 0; i < 10; i++) {
		plant_step(&p, 1000, 0);
		assert_false(p.out.weight.start);
	}

	/* A cap this low would stall past SM_BURST_MAX_HOLD_NS for a burst
	 * too short to measure: not now. */
	calibrating_plant_start(&p, 3);
	before_burst(&p, 0);
	plant_step(&p, 1000, 0);
	assert_false(p.out.weight.start);
	assert_true(p.state.weight.next_burst_ns == p.in.now_ns + SM_BURST_PERIOD_NS);
}

/* A burst that measured too little asks again soon and publishes nothing. */
static void calibration_burst_too_short_retries(void **state)
{
	(void)state;
	struct plant p;
	calibrating_plant_start(&p, 40);
	before_burst(&p, 0);
	plant_step(&p, 1000, 0);
	assert_true(p.out.weight.start);
	uint64_t end = p.out.weight.end_ns;
	while (p.in.now_ns < end + SM_BURST_FINISH_NS)
		plant_step(&p, 1000, 0);
	assert_false(p.out.weight.publish);
	assert_int_equal(p.state.weight.weight_ppm, 0);
	assert_true(p.state.weight.next_burst_ns == p.in.now_ns + SM_BURST_RETRY_NS);
}

/* The same time twice is no window: nothing to publish. */
static void no_window_no_decision(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	sm_control_step(&p.in, &p.state, &p.out);
	assert_false(p.out.publish);
	assert_false(sm_control_due(&p.state, p.in.now_ns + SM_STEP_NS - 1));
}

/* ---- The gate's decisions (gate_rules.h) ---------------------------------- */

static void gate_duty_follows_the_controller(void **state)
{
	(void)state;
	assert_int_equal(sm_gate_duty(100, 100, 0), PPM);
	assert_int_equal(sm_gate_duty(30, 30, 0), 300000);      /* unset: the cap */
	assert_int_equal(sm_gate_duty(30, 30, 450000), 450000); /* the controller's */
	assert_int_equal(sm_gate_duty(20, 30, 450000), 200000); /* own ceiling: open loop */
}

static void gate_budget_fills_a_quantum(void **state)
{
	(void)state;
	/* 16 launches of 1 ms: 4 fit a quantum, down at once. */
	assert_int_equal(sm_gate_budget_next(16, 16, 16 * MS), 4);
	/* 16 launches of 10 us: 400 fit, up by doubling only. */
	assert_int_equal(sm_gate_budget_next(16, 16, 160000), 32);
	assert_int_equal(sm_gate_budget_next(16, 0, 0), 16);
	assert_int_equal(sm_gate_budget_next(16, 1, 100 * MS), 1);
	assert_int_equal(sm_gate_budget_next(SM_BUDGET_MAX, SM_BUDGET_MAX, 1000), SM_BUDGET_MAX);
}

static void gate_polls_grow_with_the_drain(void **state)
{
	(void)state;
	assert_true(sm_gate_poll_step(0, 0) == SM_POLL_MIN_NS);
	assert_true(sm_gate_poll_step(0, 32 * MS) == MS);
	assert_true(sm_gate_poll_step(0, 10 * SEC) == SM_POLL_MAX_NS);
}

static void gate_sure_busy_runs_from_the_last_launch(void **state)
{
	(void)state;
	/* Launches over 3 ms, work seen pending 50 ms after the start: the GPU
	 * surely ran from the last launch (3 ms) to that poll. */
	assert_true(sm_gate_sure_busy(SEC, SEC + 3 * MS, SEC + 50 * MS) == 47 * MS);
	/* No last launch recorded after the start: from the start. */
	assert_true(sm_gate_sure_busy(SEC, 0, SEC + 5 * MS) == 5 * MS);
	/* Never seen pending, or only before the last launch: nothing sure. */
	assert_true(sm_gate_sure_busy(SEC, SEC + 3 * MS, 0) == 0);
	assert_true(sm_gate_sure_busy(SEC, SEC + 3 * MS, SEC + 2 * MS) == 0);
}

static void gate_window_phase_fits_the_window(void **state)
{
	(void)state;
	uint64_t end;
	uint32_t budget;
	/* 10 ms left, 1 ms per launch: 10 launches, ends with the window. */
	assert_true(sm_gate_window_phase(SEC, SEC + 10 * MS, MS, 16, &end, &budget));
	assert_true(end == SEC + 10 * MS);
	assert_int_equal(budget, 10);
	/* A long window: one turn quantum at most. */
	assert_true(sm_gate_window_phase(SEC, SEC + SEC, MS, 16, &end, &budget));
	assert_true(end == SEC + SM_TURN_QUANTUM_NS);
	/* Not even one launch fits. */
	assert_false(sm_gate_window_phase(SEC, SEC + 400000, MS, 16, &end, &budget));
	/* Unknown launch length: the learnt budget, scaled. */
	assert_true(sm_gate_window_phase(SEC, SEC + 2 * MS, 0, 16, &end, &budget));
	assert_int_equal(budget, 8);
	/* The virtual clock opens phases, past a slack. */
	assert_true(sm_gate_clock_open(SEC + SM_TAT_SLACK_NS, SEC) == SEC);
	assert_true(sm_gate_clock_open(SEC + 5 * MS, SEC) == SEC + 5 * MS);
}

static void gate_accounts_phases(void **state)
{
	(void)state;
	struct sm_gate_account a;
	struct sm_gate_phase p = {.start_ns = 10 * SEC, .busy_ns = MS, .launches = 4, .duty_ppm = 300000};
	sm_gate_account(&p, &a);
	assert_true(a.charge && a.count && !a.in_burst && !a.burst_work);
	p.windowed = true; /* a node-schedule window is the duty */
	sm_gate_account(&p, &a);
	assert_false(a.charge);
	assert_true(a.count);
	p.windowed = false;
	p.burst_hold_ns = 9 * SEC;
	p.burst_measure_ns = 10 * SEC;
	p.burst_end_ns = 11 * SEC;
	sm_gate_account(&p, &a);
	assert_true(!a.charge && a.in_burst && a.burst_work);
	p.start_ns = 9 * SEC + 1; /* first half of the burst: not measured */
	sm_gate_account(&p, &a);
	assert_true(!a.charge && a.in_burst && !a.burst_work);
	p.start_ns = 11 * SEC; /* after it: charged again */
	sm_gate_account(&p, &a);
	assert_true(a.charge && !a.in_burst);
	p.duty_ppm = PPM; /* no cap: nothing to charge */
	sm_gate_account(&p, &a);
	assert_false(a.charge);
}

/* A program that leaves gaps: its kernels run density_permille of the time
 * its phases are open, and the gates were open open_ppm of the window (the
 * duty, or a calibration burst's hold and burst). NVML's device utilisation
 * is that busy share; the per-process figure reads half of it (as an H100
 * does for a training step), and only says whose kernels ran. */
/* One step whose gates were open open_ppm of it, with NVML's figures
 * (device_ppm UINT32_MAX: no device figure) and the launches it made. */
static void measured_step(struct plant *p, uint32_t open_ppm, uint32_t mine_ppm, uint32_t foreign_ppm,
                          uint32_t device_ppm, unsigned launches, uint64_t held_ns)
{
	p->in.now_ns += SM_STEP_NS;
	p->in.busy_ns += SM_STEP_NS * open_ppm / PPM;
	p->in.duty_ppm = p->duty_ppm;
	p->in.measured = true;
	p->in.device_known = device_ppm != UINT32_MAX;
	p->in.device_ppm = p->in.device_known ? device_ppm : 0;
	p->in.mine_ppm = mine_ppm;
	p->in.foreign_ppm = foreign_ppm;
	p->in.work.busy_ns = p->in.busy_ns;
	p->in.work.launches += launches;
	p->in.work.held_ns += held_ns;
	sm_control_step(&p->in, &p->state, &p->out);
	assert_true(p->out.publish);
	p->duty_ppm = p->out.duty_ppm;
}

static void window_step(struct plant *p, uint32_t open_ppm, unsigned density_permille, uint64_t held_ns)
{
	uint64_t busy = (uint64_t)open_ppm * density_permille / 1000;
	uint32_t device = busy > PPM ? PPM : (uint32_t)busy;
	measured_step(p, open_ppm, device / 2, 0, device, open_ppm ? 500 : 0, held_ns);
}

/* The same, the gates open the duty. */
static void gappy_step(struct plant *p, unsigned density_permille, uint64_t held_ns)
{
	window_step(p, p->duty_ppm ? p->duty_ppm : p->in.cap_ppm, density_permille, held_ns);
}

/* Work that keeps the GPU busy 35% of its open time, capped at 30%: the
 * duty must rise to about 30 / 35 for the busy share to be the cap, and it
 * gets there in a few steps (the per-process figure, half the time share,
 * does not mislead it). */
static void gappy_work_gets_its_cap(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 12; i++)
		gappy_step(&p, 350, 0);
	assert_true(abs_diff(p.out.busy_ppm, 300000) < 10000);
	assert_true(abs_diff(p.duty_ppm, 857000) < 30000);
	/* And holds there. */
	for (int i = 0; i < 20; i++)
		gappy_step(&p, 350, 0);
	assert_true(abs_diff(p.out.busy_ppm, 300000) < 5000);
}

/* A weight of 1.3 measured by a burst (the cap's clock boost) applies to
 * work that fills its duty: the time share aims at 30 / 1.3 = 23%. Work
 * that leaves gaps at its own pace (busy 35% of its duty) never ran at full
 * load: it aims at the cap itself, 30%. */
static void weight_applies_to_dense_work_only(void **state)
{
	(void)state;
	struct plant dense, gappy;
	plant_start(&dense, 30);
	sm_control_reset(&dense.state, &dense.in, 0, 1300000);
	plant_start(&gappy, 30);
	sm_control_reset(&gappy.state, &gappy.in, 0, 1300000);
	for (int i = 0; i < 24; i++) {
		gappy_step(&dense, 1000, 0);
		gappy_step(&gappy, 350, 0);
	}
	assert_true(abs_diff(dense.out.busy_ppm, 230769) < 10000);
	assert_true(abs_diff(gappy.out.busy_ppm, 300000) < 10000);
	/* Half way between gappy and dense, half the weight's effect. */
	struct sm_weight w = {.weight_ppm = 1300000};
	assert_int_equal(sm_weight_effective(&w, 700000, true), 1150000);
	assert_int_equal(sm_weight_effective(&w, 400000, true), PPM);
	assert_int_equal(sm_weight_effective(&w, 950000, true), 1300000);
	assert_int_equal(sm_weight_effective(&w, 0, false), 1300000);
}

/* Work busy 35% of its duty gets no weight, so it is never held for a
 * calibration burst, however long it runs alone. */
static void gappy_work_is_not_held_for_a_burst(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	p.in.alone = true;
	p.in.calibrate = true;
	for (int i = 0; i < 120; i++) {
		gappy_step(&p, 350, 0);
		assert_false(p.out.weight.start);
	}
}

/* A calibration burst runs the gates open for a second at full load after
 * a hold: busy shares of those windows, read against the controller's duty,
 * say nothing of the work's density (read so, they pulled this plant's duty
 * from 83% to 78%, and it took seconds to forget them). After a burst that
 * finds the weight unchanged, the duty stays where it was. */
static void calibration_burst_leaves_the_duty(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 50);
	p.in.alone = true;
	for (int i = 0; i < 16; i++)
		gappy_step(&p, 600, 0);
	uint32_t settled = p.duty_ppm;
	assert_true(abs_diff(settled, 833000) < 30000);
	p.in.calibrate = true;
	for (int i = 0; i < 8 && !p.out.weight.start; i++)
		gappy_step(&p, 600, 0);
	assert_true(p.out.weight.start);
	uint64_t hold = p.out.weight.hold_ns, end = p.out.weight.end_ns;
	uint64_t capped_per_launch = p.state.weight.before.busy_ns / p.state.weight.before.launches;
	while (p.in.now_ns + SM_STEP_NS <= hold)
		window_step(&p, 0, 600, 0);
	p.in.burst.launches = 1000;
	p.in.burst.busy_ns = 1000 * capped_per_launch;
	while (p.in.now_ns < end + SM_BURST_FINISH_NS)
		window_step(&p, PPM, 600, 0);
	assert_true(p.out.weight.publish);
	assert_int_equal(p.out.weight.weight_ppm, PPM);
	window_step(&p, PPM, 600, 0); /* NVML's average still holds the burst */
	for (int i = 0; i < 8; i++) {
		gappy_step(&p, 600, 0);
		assert_true(abs_diff(p.duty_ppm, settled) < 10000);
	}
}

/* Work whose natural busy share is busy_ppm: at a duty of 100% no launch
 * takes the gate (the gates see nothing), and NVML sees that share; below
 * it, the gates are open the duty and the work fills as much of it as its
 * share allows. */
static void natural_step(struct plant *p, uint32_t busy_ppm)
{
	if (p->duty_ppm < PPM) {
		uint32_t duty = p->duty_ppm ? p->duty_ppm : p->in.cap_ppm;
		uint64_t density = (uint64_t)busy_ppm * 1000 / duty;
		window_step(p, duty, density > 1000 ? 1000 : (unsigned)density, 0);
		return;
	}
	measured_step(p, 0, busy_ppm / 2, 0, busy_ppm, 0, 0);
}

/* Work that filled its duty at a cap of 70% turns into work that asks for
 * 42%: once the duty reaches 100% it stays there, though the gates, open,
 * see nothing and the density learnt from the dense work is stale. */
static void work_that_drops_below_its_cap_stays_free(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 70);
	for (int i = 0; i < 16; i++)
		natural_step(&p, 900000);
	assert_true(p.duty_ppm < 800000);
	int first_free = -1;
	for (int i = 0; i < 60; i++) {
		natural_step(&p, 420000);
		if (first_free < 0 && p.duty_ppm >= PPM)
			first_free = i;
		if (first_free >= 0)
			assert_int_equal(p.duty_ppm, PPM);
	}
	assert_true(first_free >= 0 && first_free < 30);
}

/* Work that asks for 35% under a cap of 70% runs free, pauses for 6 s
 * while another program uses the GPU (as the sides of bench/gpu/run.sh's
 * paired turns do), and comes back: it is still free, from its first
 * window on. Work that comes back dense instead is capped again within
 * two steps. */
static void work_free_before_a_pause_is_free_after_it(void **state)
{
	(void)state;
	struct plant p;
	for (int dense = 0; dense < 2; dense++) {
		plant_start(&p, 70);
		for (int i = 0; i < 20; i++)
			natural_step(&p, 350000);
		assert_int_equal(p.duty_ppm, PPM);
		for (int i = 0; i < 12; i++)
			measured_step(&p, 0, 0, 400000, 400000, 0, 0);
		assert_int_equal(p.duty_ppm, PPM);
		if (!dense) {
			for (int i = 0; i < 10; i++) {
				natural_step(&p, 350000);
				assert_int_equal(p.duty_ppm, PPM);
			}
			continue;
		}
		int capped = -1;
		for (int i = 0; i < 20 && capped < 0; i++) {
			natural_step(&p, 980000);
			if (p.duty_ppm < 800000)
				capped = i;
		}
		assert_true(capped >= 0 && capped < 2);
	}
}

/* Work that ran free under its cap (a slow start: busy 30% at a duty of
 * 100%, the gates open and blind) turns dense (98%): NVML's busy share is
 * the only witness of the new density, and the duty comes back to the cap
 * within 2 s. Read only through the gates, the density stayed at the slow
 * start's and the duty at 100% (a GEMM at cap 50 ran at 98% busy on an
 * H100); read through a density averaged with the slow start's, the duty
 * took 6.5 s to come within 10 points. */
static void free_work_that_turns_dense_is_capped_again(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 50);
	for (int i = 0; i < 20; i++)
		natural_step(&p, 300000);
	assert_int_equal(p.duty_ppm, PPM);
	int capped = -1;
	for (int i = 0; i < 30; i++) {
		natural_step(&p, 980000);
		if (capped < 0 && p.duty_ppm <= 600000)
			capped = i;
	}
	assert_true(capped >= 0 && capped < 4);
	assert_in_range(p.duty_ppm, 490000, 510000);
}

/* A tenant that takes turns (another container's record is seen, the caps
 * fill the GPU) with work that asks for 36% under a cap of 70%: its window
 * lengthens to the whole period, where no launch takes the gate and the
 * others lay out their windows without it. From then on its steps are a
 * free tenant's, not ones of taking turns, and it stays free; work that
 * turns dense is capped again and takes turns again. */
static void a_tenant_running_free_does_not_take_turns(void **state)
{
	(void)state;
	struct plant p;
	turns_plant_start(&p, 70);
	natural_step(&p, 360000);
	assert_true(p.out.turns);
	int free_at = -1;
	for (int i = 0; i < 60; i++) {
		natural_step(&p, 360000);
		if (free_at < 0 && p.duty_ppm >= PPM)
			free_at = i;
		if (free_at >= 0 && i > free_at) {
			assert_int_equal(p.duty_ppm, PPM);
			assert_false(p.out.turns);
		}
	}
	assert_true(free_at >= 0 && free_at < 30);
	int capped = -1;
	for (int i = 0; i < 10 && capped < 0; i++) {
		natural_step(&p, 980000);
		if (p.duty_ppm <= 800000)
			capped = i;
	}
	assert_true(capped >= 0 && capped < 4);
	natural_step(&p, 980000);
	assert_true(p.out.turns);
}

/* A tenant running free at a cap of 70% next to a busy neighbour: NVML
 * gives it the neighbour's time slices in a window now and then (81% with
 * the neighbour at 0%). Such a window is no change of work: the duty stays
 * at 100%. Alone, the same window is one
 * (free_work_that_turns_dense_is_capped_again). */
static void neighbour_step(struct plant *p, uint32_t mine_ppm, uint32_t foreign_ppm)
{
	uint32_t duty = p->duty_ppm ? p->duty_ppm : p->in.cap_ppm;
	measured_step(p, duty < PPM ? duty : 0, mine_ppm, foreign_ppm, UINT32_MAX, 500, 0);
}

static void a_neighbours_time_slice_leaves_a_free_tenant_free(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 70);
	for (int i = 0; i < 20; i++)
		neighbour_step(&p, 350000, 400000);
	assert_int_equal(p.duty_ppm, PPM);
	for (int i = 0; i < 10; i++) {
		neighbour_step(&p, i % 3 ? 400000 : 810000, i % 3 ? 400000 : 0);
		assert_int_equal(p.duty_ppm, PPM);
	}
	/* NVML gives the neighbour nothing for four windows in a row (two
	 * seconds; a third of its windows read 0% on an H100, so runs of two or
	 * more come every few seconds): still the same neighbour. */
	for (int i = 0; i < 12; i++) {
		neighbour_step(&p, i % 6 < 4 ? 810000 : 400000, i % 6 < 4 ? 0 : 400000);
		assert_int_equal(p.duty_ppm, PPM);
	}
}

/* Work that asks for 42% under a cap of 50%: each step finds its density
 * lower (its busy share stays put as the duty rises), yet it runs free
 * within 7 s, the warm-up bench/gpu/run_share.sh gives before measuring. */
static void work_just_under_its_cap_is_freed_in_time(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 50);
	int steps = 0;
	while (p.duty_ppm < PPM && steps < 40) {
		natural_step(&p, 420000);
		steps++;
	}
	assert_true((uint64_t)steps * SM_STEP_NS <= 7 * SEC);
}

/* Host-limited work: busy demand_ppm of the time when the gate does not
 * bind, density_ppm of each duty unit when it does. */
static void host_limited_step(struct plant *p, uint32_t demand_ppm, uint32_t density_ppm)
{
	uint32_t duty = p->duty_ppm ? p->duty_ppm : p->in.cap_ppm;
	uint64_t busy = (uint64_t)duty * density_ppm / PPM;
	if (busy > demand_ppm)
		busy = demand_ppm;
	window_step(p, duty, (unsigned)(busy * 1000 / duty), 0);
}

/* The host speeds up under a cap of 30% (busy 32% when free, then 40%, and
 * each duty unit's density with it): the density's sums, seconds long,
 * would follow over about 4 s, 5 points over the cap. Three windows in a
 * row off them restart the sums, and the whole step after the restart
 * brings the work to its cap: within 1 point from the fourth window on.
 * Windows that stray one at a time leave the sums alone. */
static void a_shift_of_the_density_is_followed_at_once(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 30; i++)
		host_limited_step(&p, 320000, 366000);
	assert_true(abs_diff(p.out.busy_ppm, 300000) < 3000);
	for (int i = 0; i < 12; i++) {
		host_limited_step(&p, 400000, 457000);
		if (i >= 3)
			assert_true(abs_diff(p.out.busy_ppm, 300000) < 10000);
	}
	uint32_t duty = p.duty_ppm;
	uint32_t density = p.state.density_ppm;
	for (int i = 0; i < 12; i++) {
		/* One window in three reads 25% high. */
		uint32_t d = i % 3 ? 457000 : 571000;
		host_limited_step(&p, 1000000, d);
		assert_true(abs_diff(p.state.density_ppm, density) < 60000);
	}
	assert_true(abs_diff(p.duty_ppm, duty) < 60000);
}

/* Gappy work (busy half of its duty) whose launches cost 100 us of GPU
 * time each alone. Beside a neighbour (busy 40%) the two contexts take
 * time slices: NVML still charges the container half of its duty, but
 * its kernels run stretch_permille / 1000 times longer, so its launches
 * do that much less work. */
static void sliced_step(struct plant *p, unsigned stretch_permille, uint32_t foreign_ppm)
{
	uint32_t duty = p->duty_ppm ? p->duty_ppm : p->in.cap_ppm;
	uint32_t mine = duty / 2;
	uint64_t work_ppm = (uint64_t)mine * 1000 / stretch_permille;
	unsigned launches = (unsigned)(work_ppm * (SM_STEP_NS / 1000) / PPM / 100);
	uint32_t device = mine + foreign_ppm > PPM ? PPM : mine + foreign_ppm;
	measured_step(p, duty, mine, foreign_ppm, device, launches, 0);
}

/* Capped at 30%, alone first: the share is NVML's busy time, and the
 * windows teach the cost of a launch. Then a neighbour stretches each
 * kernel 1.6 times: held at 30% of NVML's busy time the work would get
 * 30 / 1.6 = 19% (an H100 gave a training step capped at 30% 25.2% of its
 * work for 36.9% of the busy time). Counted by its launches it gets 30%,
 * at a duty of 0.3 * 1.6 / 0.5 = 96%, and status shows that share. With
 * the neighbour there from the start no cost is known: NVML's figure
 * stands. */
static void beside_a_neighbour_the_share_is_the_work_its_launches_did(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 20; i++)
		sliced_step(&p, 1000, 0);
	assert_false(p.out.by_work);
	assert_true(abs_diff(p.out.busy_ppm, 300000) < 10000);
	assert_true(sm_launch_cost_known(&p.state.launch_cost));
	for (int i = 0; i < 24; i++)
		sliced_step(&p, 1600, 400000);
	assert_true(p.out.by_work);
	assert_int_equal(p.out.source, GPUCAP_SM_SOURCE_LAUNCHES);
	assert_true(abs_diff(p.out.work_ppm, 300000) < 15000);
	assert_true(abs_diff(p.duty_ppm, 960000) < 40000);
	assert_true(abs_diff(p.out.share_ppm, 300000) < 20000);

	plant_start(&p, 30);
	for (int i = 0; i < 24; i++)
		sliced_step(&p, 1600, 400000);
	assert_false(p.out.by_work);
	assert_int_equal(p.out.source, GPUCAP_SM_SOURCE_NVML);
	assert_true(abs_diff(p.out.busy_ppm, 300000) < 15000);
}

/* The cost of a launch: decayed sums, trusted after SM_COST_WINDOWS
 * windows; a share is launches x cost over the window, at most all of it. */
static void a_launch_cost_is_learnt_from_windows_alone(void **state)
{
	(void)state;
	struct sm_launch_cost c = {0};
	for (unsigned i = 0; i < SM_COST_WINDOWS; i++) {
		assert_false(sm_launch_cost_known(&c));
		assert_int_equal(sm_launch_cost_share(&c, 1000, SM_STEP_NS), 0);
		sm_launch_cost_learn(&c, 150 * MS, 3000); /* 50 us a launch */
	}
	assert_true(sm_launch_cost_known(&c));
	assert_int_equal(sm_launch_cost_share(&c, 3000, SM_STEP_NS), 300000);
	assert_int_equal(sm_launch_cost_share(&c, 2, SM_STEP_NS), 200);
	assert_int_equal(sm_launch_cost_share(&c, 100000, SM_STEP_NS), PPM);
	assert_int_equal(sm_launch_cost_share(&c, UINT64_MAX, SM_STEP_NS), PPM);
	/* A window without launches teaches nothing. */
	struct sm_launch_cost before = c;
	sm_launch_cost_learn(&c, 400 * MS, 0);
	assert_memory_equal(&before, &c, sizeof(c));
	/* Work that changed: the cost follows over the sums' seconds. */
	for (int i = 0; i < 40; i++)
		sm_launch_cost_learn(&c, 150 * MS, 1500); /* 100 us a launch */
	assert_true(abs_diff(sm_launch_cost_share(&c, 1500, SM_STEP_NS), 300000) < 3000);
}

/* Work that asks for less than its cap (busy 20% of the time when never
 * held) runs unthrottled: the duty goes to 100%. */
static void work_below_its_cap_runs_free(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 8; i++)
		gappy_step(&p, 200, 0);
	assert_int_equal(p.duty_ppm, PPM);
}

/* The container's busy share is its part of the device's utilisation, by
 * the per-process figures; without the device's figure, its own. */
static void busy_share_splits_the_device(void **state)
{
	(void)state;
	struct sm_control_inputs in = {.measured = true,
	                               .device_known = true,
	                               .device_ppm = 600000,
	                               .mine_ppm = 200000,
	                               .foreign_ppm = 200000};
	assert_int_equal(sm_control_busy_share(&in), 300000);
	in.foreign_ppm = 0;
	assert_int_equal(sm_control_busy_share(&in), 600000);
	in.mine_ppm = 0;
	assert_int_equal(sm_control_busy_share(&in), 0);
	in.mine_ppm = 150000;
	in.device_known = false;
	assert_int_equal(sm_control_busy_share(&in), 150000);
	in.measured = false;
	assert_int_equal(sm_control_busy_share(&in), 0);
	/* A hostile or broken figure cannot make more than the whole GPU. */
	in = (struct sm_control_inputs){.measured = true,
	                                .device_known = true,
	                                .device_ppm = 4000000000u,
	                                .mine_ppm = 4000000000u,
	                                .foreign_ppm = 0};
	assert_int_equal(sm_control_busy_share(&in), PPM);
}

/* Asked: the delivered share scaled up by the time the launches were held.
 * Held 70% of each window while getting 30%: the work asked for all of the
 * GPU. Never held: it asked for what it got. */
static void asked_share_counts_the_time_held(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 10; i++)
		gappy_step(&p, 1000, SM_STEP_NS * 7 / 10);
	assert_true(abs_diff(p.out.share_ppm, 300000) < 10000);
	assert_true(p.out.asked_ppm > 950000);
	plant_start(&p, 30);
	for (int i = 0; i < 10; i++)
		gappy_step(&p, 200, 0);
	assert_int_equal(p.out.asked_ppm, p.out.share_ppm);
	assert_true(abs_diff(p.out.share_ppm, 200000) < 10000);
}

/* At a high duty a phase lasts longer, so its drain (which empties the
 * GPU's queue) comes less often; the OFF time stays about a quantum. */
static void gate_quantum_grows_with_the_duty(void **state)
{
	(void)state;
	assert_int_equal(sm_gate_quantum(0), SM_QUANTUM_NS);
	assert_int_equal(sm_gate_quantum(500000), 2 * SM_QUANTUM_NS);
	assert_int_equal(sm_gate_quantum(750000), 4 * SM_QUANTUM_NS);
	assert_int_equal(sm_gate_quantum(990000), SM_QUANTUM_MAX_NS);
	assert_int_equal(sm_gate_quantum(PPM), SM_QUANTUM_MAX_NS);
	assert_int_equal(sm_gate_phase_budget(16, 500000), 32);
	assert_int_equal(sm_gate_phase_budget(0, 0), 1);
	assert_int_equal(sm_gate_phase_budget(SM_BUDGET_MAX, 900000), SM_BUDGET_MAX);
}

/* Kernels of tens of milliseconds: one window's device reading aliases with
 * the bursts (0%, then twice the duty, then the duty, by turns) while the
 * per-process figure says the container ran all along. The readings that
 * say nothing (the device idle while our kernels ran) move nothing, and
 * the rest average out: the duty stays near the cap instead of doubling on
 * every empty window. */
static void bursty_readings_do_not_run_away(void **state)
{
	(void)state;
	struct plant p;
	plant_start(&p, 30);
	for (int i = 0; i < 40; i++) {
		uint32_t duty = p.duty_ppm ? p.duty_ppm : p.in.cap_ppm;
		p.in.now_ns += SM_STEP_NS;
		p.in.busy_ns += SM_STEP_NS * duty / PPM;
		p.in.duty_ppm = p.duty_ppm;
		p.in.measured = true;
		p.in.device_known = true;
		uint64_t reading = i % 3 == 0 ? 0 : i % 3 == 1 ? 2 * (uint64_t)duty : duty;
		p.in.device_ppm = reading > PPM ? PPM : (uint32_t)reading;
		p.in.mine_ppm = 300000;
		p.in.foreign_ppm = 0;
		p.in.work.busy_ns = p.in.busy_ns;
		p.in.work.launches += 10;
		sm_control_step(&p.in, &p.state, &p.out);
		p.duty_ppm = p.out.duty_ppm;
		if (i >= 10)
			assert_true(p.duty_ppm >= 200000 && p.duty_ppm <= 450000);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(integral_converges_to_the_cap),
	    cmocka_unit_test(gappy_work_gets_its_cap),
	    cmocka_unit_test(weight_applies_to_dense_work_only),
	    cmocka_unit_test(gappy_work_is_not_held_for_a_burst),
	    cmocka_unit_test(a_shift_of_the_density_is_followed_at_once),
	    cmocka_unit_test(work_below_its_cap_runs_free),
	    cmocka_unit_test(work_that_drops_below_its_cap_stays_free),
	    cmocka_unit_test(work_just_under_its_cap_is_freed_in_time),
	    cmocka_unit_test(nvml_gaps_hold_the_duty),
	    cmocka_unit_test(a_window_given_to_the_neighbour_is_a_reading),
	    cmocka_unit_test(free_work_that_turns_dense_is_capped_again),
	    cmocka_unit_test(work_free_before_a_pause_is_free_after_it),
	    cmocka_unit_test(a_tenant_running_free_does_not_take_turns),
	    cmocka_unit_test(a_neighbours_time_slice_leaves_a_free_tenant_free),
	    cmocka_unit_test(beside_a_neighbour_the_share_is_the_work_its_launches_did),
	    cmocka_unit_test(a_launch_cost_is_learnt_from_windows_alone),
	    cmocka_unit_test(busy_share_splits_the_device),
	    cmocka_unit_test(asked_share_counts_the_time_held),
	    cmocka_unit_test(bursty_readings_do_not_run_away),
	    cmocka_unit_test(clamps_stop_the_integral),
	    cmocka_unit_test(live_cap_change_scales_the_integral),
	    cmocka_unit_test(open_loop_is_feed_forward),
	    cmocka_unit_test(nvml_blind_to_us_is_open_loop),
	    cmocka_unit_test(elastic_opens_when_alone),
	    cmocka_unit_test(taking_turns_is_feed_forward),
	    cmocka_unit_test(taking_turns_lengthens_a_gappy_window),
	    cmocka_unit_test(gappy_work_overlaps_instead_of_taking_turns),
	    cmocka_unit_test(weight_is_measured_again_at_the_duty_it_sets),
	    cmocka_unit_test(calibration_burst_is_scheduled_and_measured),
	    cmocka_unit_test(calibration_burst_waits_for_quiet),
	    cmocka_unit_test(calibration_burst_too_short_retries),
	    cmocka_unit_test(calibration_burst_leaves_the_duty),
	    cmocka_unit_test(no_window_no_decision),
	    cmocka_unit_test(gate_duty_follows_the_controller),
	    cmocka_unit_test(gate_budget_fills_a_quantum),
	    cmocka_unit_test(gate_quantum_grows_with_the_duty),
	    cmocka_unit_test(gate_polls_grow_with_the_drain),
	    cmocka_unit_test(gate_sure_busy_runs_from_the_last_launch),
	    cmocka_unit_test(gate_window_phase_fits_the_window),
	    cmocka_unit_test(gate_accounts_phases),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
