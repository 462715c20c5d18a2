/* SPDX-License-Identifier: Apache-2.0 */
/*
 * GPU work as the gates count it: plain data shared by the gate (gate.c),
 * which adds finished phases up, and the pure controller (sm_control.h),
 * which turns totals into windows.
 */
#ifndef GPUCAP_COMPUTE_SM_WORK_H
#define GPUCAP_COMPUTE_SM_WORK_H

#include <stdint.h>

/* The busy time and launches of finished phases, and how long launches
 * were held at the gate (waiting for the clock, a window or a drain; the
 * waits of threads that wait at once add up). sure_ns: the part of busy_ns
 * in which the GPU certainly ran the work (sm_gate_sure_busy). */
struct gpucap_sm_work {
	uint64_t busy_ns;
	uint64_t sure_ns;
	uint64_t launches;
	uint64_t held_ns;
};

#endif
