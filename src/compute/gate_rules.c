/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SM gate's decisions (gate_rules.h). Pure.
 */
#include "gate_rules.h"
#include "gpucap/region.h"

uint32_t sm_gate_duty(uint32_t cap, uint32_t region_cap, uint32_t published_duty_ppm)
{
	if (cap >= 100)
		return GPUCAP_SM_PPM;
	if (cap < region_cap)
		return cap * (GPUCAP_SM_PPM / 100);
	return published_duty_ppm ? published_duty_ppm : cap * (GPUCAP_SM_PPM / 100);
}

uint64_t sm_gate_quantum(uint32_t duty_ppm)
{
	if (duty_ppm >= GPUCAP_SM_PPM)
		return SM_QUANTUM_MAX_NS;
	uint64_t q = SM_QUANTUM_NS * GPUCAP_SM_PPM / (GPUCAP_SM_PPM - duty_ppm);
	return q > SM_QUANTUM_MAX_NS ? SM_QUANTUM_MAX_NS : q;
}

uint32_t sm_gate_phase_budget(uint32_t learnt, uint32_t duty_ppm)
{
	uint64_t budget = (uint64_t)learnt * sm_gate_quantum(duty_ppm) / SM_QUANTUM_NS;
	return budget > SM_BUDGET_MAX ? SM_BUDGET_MAX : budget < 1 ? 1 : (uint32_t)budget;
}

uint32_t sm_gate_budget_next(uint32_t budget, uint32_t launches, uint64_t busy_ns)
{
	if (launches == 0 || busy_ns == 0)
		return budget;
	uint64_t fit = (uint64_t)launches * SM_QUANTUM_NS / busy_ns;
	uint64_t next = fit < budget ? fit : (fit < (uint64_t)budget * 2 ? fit : (uint64_t)budget * 2);
	if (next < 1)
		next = 1;
	if (next > SM_BUDGET_MAX)
		next = SM_BUDGET_MAX;
	return (uint32_t)next;
}

uint64_t sm_gate_poll_step(uint64_t begin_ns, uint64_t now_ns)
{
	uint64_t step = (now_ns - begin_ns) / 32;
	return step < SM_POLL_MIN_NS ? SM_POLL_MIN_NS : step > SM_POLL_MAX_NS ? SM_POLL_MAX_NS : step;
}

uint64_t sm_gate_sure_busy(uint64_t start_ns, uint64_t last_launch_ns, uint64_t pending_at_ns)
{
	uint64_t from = last_launch_ns > start_ns ? last_launch_ns : start_ns;
	return pending_at_ns > from ? pending_at_ns - from : 0;
}

bool sm_gate_window_phase(uint64_t now_ns, uint64_t until_ns, uint64_t per_launch_ns, uint32_t budget,
                          uint64_t *end_ns, uint32_t *phase_budget)
{
	/* In a window a phase may last SM_TURN_QUANTUM_NS (fewer drains, so
	 * fewer idle gaps), never past the window's end. */
	uint64_t left = until_ns - now_ns;
	if (left > SM_TURN_QUANTUM_NS)
		left = SM_TURN_QUANTUM_NS;
	/* Launches that fill it, to the nearest: the last one ends on either
	 * side of the window's end alike. */
	uint64_t fit = per_launch_ns ? (left + per_launch_ns / 2) / per_launch_ns
	                             : (uint64_t)budget * left / SM_QUANTUM_NS;
	if (fit < 1)
		return false;
	*end_ns = now_ns + left;
	*phase_budget = fit > SM_BUDGET_MAX ? SM_BUDGET_MAX : (uint32_t)fit;
	return true;
}

uint64_t sm_gate_clock_open(uint64_t tat_ns, uint64_t now_ns)
{
	return tat_ns > now_ns + SM_TAT_SLACK_NS ? tat_ns : now_ns;
}

void sm_gate_account(const struct sm_gate_phase *p, struct sm_gate_account *out)
{
	/* A calibration burst's phases were paid for by its hold. */
	out->in_burst = p->start_ns >= p->burst_hold_ns && p->start_ns < p->burst_end_ns;
	out->charge = p->duty_ppm < GPUCAP_SM_PPM && p->busy_ns > 0 && !out->in_burst && !p->windowed;
	out->count = p->launches > 0 && p->busy_ns > 0;
	out->burst_work = out->count && out->in_burst && p->start_ns >= p->burst_measure_ns;
}
