/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SM gate's decisions as pure functions (gate.c applies them): no
 * atomics, no clock, no driver or region call. The unit tests
 * (tests/unit/test_sm_control.c) drive them directly.
 */
#ifndef GPUCAP_COMPUTE_GATE_RULES_H
#define GPUCAP_COMPUTE_GATE_RULES_H

#include <stdbool.h>
#include <stdint.h>

/* Wall time of an ON phase. Short enough that a throttled program sees a
 * smooth rate (a 30% cap is 4 ms on, about 9 ms off), long enough that the
 * drain (a few microseconds of driver calls) costs under 1%. */
#define SM_QUANTUM_NS UINT64_C(4000000)
/* At a high duty a phase lasts longer, so that the OFF time between phases
 * stays about SM_QUANTUM_NS and the drains that end phases (each empties
 * the GPU's queue) come less often: quantum / (1 - duty), up to this. */
#define SM_QUANTUM_MAX_NS UINT64_C(32000000)
/* Launch budget of a first phase; then learnt so that one phase queues about
 * one quantum of GPU work. */
#define SM_BUDGET_INITIAL 16u
#define SM_BUDGET_MAX     65536u
/* Longest phase inside a node-schedule window. */
#define SM_TURN_QUANTUM_NS UINT64_C(16000000)
/* The first launch of a phase waits when the clock is further ahead than
 * this (a few timer slacks: shorter sleeps would oversleep anyway). */
#define SM_TAT_SLACK_NS UINT64_C(100000)
/* Drain polling: from POLL_MIN, growing with the drain so that the error on
 * the measured busy time stays near 3% (it only ever makes busy longer). */
#define SM_POLL_MIN_NS UINT64_C(20000)
#define SM_POLL_MAX_NS UINT64_C(2000000)

/* The duty (ppm) a process applies on a device whose cap (percent, the
 * region's limit lowered by the process's own ceiling) is cap: the
 * controller's published duty (0: unset) for the region's limit; a lower
 * ceiling of the process's own is applied as it is, open loop. */
uint32_t sm_gate_duty(uint32_t cap, uint32_t region_cap, uint32_t published_duty_ppm);

/* The wall time of an ON phase at duty (ppm). */
uint64_t sm_gate_quantum(uint32_t duty_ppm);

/* The launch budget of a phase at duty: the learnt budget (which queues one
 * SM_QUANTUM_NS of work) scaled to that phase's quantum. */
uint32_t sm_gate_phase_budget(uint32_t learnt, uint32_t duty_ppm);

/* The launch budget after a phase that queued launches and was busy busy_ns:
 * launches that queue one quantum at that rate; down at once (a deep queue
 * makes long phases), up by doubling. */
uint32_t sm_gate_budget_next(uint32_t budget, uint32_t launches, uint64_t busy_ns);

/* When to poll a drain that began at begin next, from now. */
uint64_t sm_gate_poll_step(uint64_t begin_ns, uint64_t now_ns);

/* The part of a phase in which the GPU certainly ran its work: from its last
 * launch (or its start) to the last poll of its drain that found the work
 * pending (pending_at, 0: none). Work queued and not yet done keeps the GPU
 * busy, so this is a floor of the phase's busy time, where the phase's
 * busy_ns (end - start) is a ceiling that includes the program's own gaps.
 * Only the container's own work runs then if no other tenant shares the GPU. */
uint64_t sm_gate_sure_busy(uint64_t start_ns, uint64_t last_launch_ns, uint64_t pending_at_ns);

/* A phase that opens at now inside a node-schedule window ending at until:
 * true with its end and launch budget (per_launch_ns: busy per launch so
 * far, 0: unknown, then budget scales the learnt one), false when not even
 * one launch fits before the window ends. */
bool sm_gate_window_phase(uint64_t now_ns, uint64_t until_ns, uint64_t per_launch_ns, uint32_t budget,
                          uint64_t *end_ns, uint32_t *phase_budget);

/* When a phase may open on the virtual clock tat: now, unless the clock is
 * further ahead than the slack. */
uint64_t sm_gate_clock_open(uint64_t tat_ns, uint64_t now_ns);

/* What a finished phase that started at start and was busy busy_ns is: */
struct sm_gate_phase {
	uint64_t start_ns;
	uint64_t busy_ns;
	uint32_t launches;
	uint32_t duty_ppm;
	bool windowed; /* inside a node-schedule window: the window is the duty */
	/* The calibration burst on the gate (0: none). */
	uint64_t burst_hold_ns;
	uint64_t burst_measure_ns;
	uint64_t burst_end_ns;
};

struct sm_gate_account {
	bool charge;     /* to the virtual clock: busy / duty */
	bool count;      /* in the work totals */
	bool in_burst;   /* paid for by the burst's hold */
	bool burst_work; /* in the burst's measured sums */
};

void sm_gate_account(const struct sm_gate_phase *phase, struct sm_gate_account *out);

#endif
