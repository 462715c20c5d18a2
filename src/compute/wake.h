/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gate thread's sleep, and the kicks that cut it short (wake.c). The
 * gate (gate.c) kicks; the gate thread (sm_controller.c) sleeps.
 */
#ifndef GPUCAP_COMPUTE_WAKE_H
#define GPUCAP_COMPUTE_WAKE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Whether the gate thread serves drains (false before it starts, if it
 * could not, and once the process exits). Set by the thread's starter and
 * by the thread when it ends. */
extern atomic_bool gpucap_sm_gate_running;

/* Whether the gate thread serves drains. */
bool gpucap_sm_gate_thread_running(void);

/* Wake the gate thread by deadline_ns (0: now) if it sleeps past it: a drain
 * was requested, or a phase opened that it must close if no launch does. */
void gpucap_sm_gate_thread_kick(uint64_t deadline_ns);

/* Gate thread, at the start of a pass over the gates: kicks from here on
 * are either seen by the pass or left for gpucap_sm_wake_sleep. */
void gpucap_sm_wake_pass(void);

/* Gate thread: sleep until wake_ns (CLOCK_MONOTONIC) or an earlier kick,
 * unless *stopping. */
void gpucap_sm_wake_sleep(uint64_t wake_ns, const atomic_bool *stopping);

/* Wake the gate thread now, whatever it waits for (the process exits). */
void gpucap_sm_wake_interrupt(void);

/* Forked child: the parent's thread and lock are not the child's. */
void gpucap_sm_wake_after_fork(void);

#endif
