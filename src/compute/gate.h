/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SM gate: a drain-measured duty cycle on every launch path
 * (docs/compute-caps.md).
 *
 * Per process and device, launches pass freely during an ON phase. An ON
 * phase ends after SM_QUANTUM_NS of wall time or a learnt launch budget;
 * then one thread (elected by CAS; the others wait for it) records an event
 * on each stream launched to in the phase, waits for them, and charges the
 * busy time (drain done - phase start) divided by the duty to the device's
 * virtual clock in the region. No ON phase starts before the clock. So the
 * GPU is busy `duty` of the time, whatever the kernel lengths or the queue
 * depth, and the processes of a container share one clock and one cap.
 *
 * Cost without a cap: gpucap_sm_armed is 0 and a launch is one load of it
 * and a predictable branch before the driver call.
 */
#ifndef GPUCAP_COMPUTE_GATE_H
#define GPUCAP_COMPUTE_GATE_H

#include "compute_internal.h"
#include "gate_rules.h"
#include "sm_work.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Streams tracked per device and phase (more are counted, not drained: the
 * phase is then charged its wall time). */
#define SM_STREAMS 16
/* Longest wait for a drain; then the phase is charged up to now. */
#define SM_DRAIN_MAX_NS UINT64_C(2000000000)
/* Longest a launch waits for the virtual clock (one debt, plus slack), and
 * the step of that wait, at which a live cap change is noticed. */
#define SM_SLEEP_MAX_NS  (GPUCAP_SM_MAX_DEBT_NS + UINT64_C(100000000))
#define SM_SLEEP_STEP_NS UINT64_C(100000000)
/* Longest a launch waits for another thread's drain and sleep. */
#define SM_WAIT_MAX_NS (SM_DRAIN_MAX_NS + SM_SLEEP_MAX_NS + UINT64_C(400000000))
/* A phase nobody closed this long after its quantum is closed by the
 * controller thread, so idle time is not charged as busy. */
#define SM_IDLE_CLOSE_NS UINT64_C(2000000)

/* The gate of a launch on hStream (compute.h, gpucap_compute_gate, once
 * the policy allows throttling and the threads are started). per_thread:
 * the call came through a _ptsz entry point, where a NULL stream means the
 * per-thread stream. Waits while the device's duty cycle is off (bounded by
 * SM_WAIT_MAX_NS); never fails. */
void gpucap_sm_gate(CUstream hStream, bool per_thread);

/* Keep gpucap_sm_armed current: set while some device this process may
 * launch on is throttled (the gate thread calls it every tick). */
void gpucap_sm_refresh_armed(void);

/* Forked child: forget the gates' phases and streams. */
void gpucap_sm_gates_after_fork(void);

/* ---- Between the gate and the controller (gate.c) ---------------------- */

/* The region device a CUDA ordinal's gate throttles; -1 before its first
 * launch. */
int gpucap_sm_region_index_of(int ordinal);

/* The CUDA ordinal whose gate throttles region device region_index in this
 * process; -1 when none has launched there. */
int gpucap_sm_ordinal_of(int region_index);

/* This process's totals on a CUDA ordinal since it started. */
void gpucap_sm_work_totals(int ordinal, struct gpucap_sm_work *out);

/*
 * A calibration burst on a CUDA ordinal (docs/compute-caps.md, "work
 * weight"): no phase starts before hold_ns; from then until end_ns phases
 * run back to back, without waiting for the virtual clock and without
 * charging it (the hold paid for them in advance); the phases that start in
 * [measure_ns, end_ns) are summed for gpucap_sm_burst_result. False for an
 * ordinal this process never launched on.
 */
bool gpucap_sm_burst_start(int ordinal, uint64_t hold_ns, uint64_t measure_ns, uint64_t end_ns);
void gpucap_sm_burst_result(int ordinal, struct gpucap_sm_work *out);

/* This process's SM cap for a CUDA ordinal at a region device, percent
 * (1..100, 100: none): the region's live limit, lowered by the process's
 * own ceiling. */
uint32_t gpucap_sm_cap_of(int ordinal, int region_index);

/* The gate thread's work (sm_controller.c calls it in a loop): start the
 * drains closers requested, poll the running ones and finish them (charge,
 * reopen), and drain phases that outlived their quantum by SM_IDLE_CLOSE_NS
 * without a launch closing them. Returns when it needs to run next
 * (UINT64_MAX: nothing pending). */
uint64_t gpucap_sm_service(uint64_t now_ns);

/* The gate thread is stopping: reopen the phases it was draining. */
void gpucap_sm_service_stop(void);

/* Put the calling thread in relaxed capture mode for good (gpucap's own
 * threads: they never capture and must not disturb a capture). */
void gpucap_sm_thread_relaxed(void);

/* Whether any gate has been used (devices this process launched on). */
bool gpucap_sm_any_gate_used(void);

#endif
