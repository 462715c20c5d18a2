/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The gate thread's sleep and the kicks that cut it short (wake.h).
 *
 * The sleeper publishes when it wakes (wake_at_ns), then looks for kicks;
 * a kicker stores its deadline (kick_ns), then reads the wake time. Both
 * sides use sequentially consistent operations, so at least one of them
 * sees the other: either the sleeper shortens its sleep to the kick, or the
 * kicker signals the condition variable.
 */
#define _POSIX_C_SOURCE 200809L
#include "wake.h"
#include "clock.h"

#include <pthread.h>

atomic_bool gpucap_sm_gate_running;

static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cond = PTHREAD_COND_INITIALIZER;
/* When the sleeping thread wakes (0 while it is awake), and the earliest
 * deadline launches asked for since it last looked at the gates. */
static _Atomic uint64_t wake_at_ns = UINT64_MAX;
static _Atomic uint64_t kick_ns = UINT64_MAX;

bool gpucap_sm_gate_thread_running(void)
{
	return atomic_load_explicit(&gpucap_sm_gate_running, memory_order_seq_cst);
}

void gpucap_sm_wake_pass(void)
{
	atomic_store_explicit(&kick_ns, UINT64_MAX, memory_order_seq_cst);
}

void gpucap_sm_wake_sleep(uint64_t wake, const atomic_bool *stopping)
{
	pthread_mutex_lock(&wake_lock);
	/* Publish the wake time, then look for kicks: a kicker stores its
	 * deadline, then reads the wake time, so one of us sees the other. */
	atomic_store_explicit(&wake_at_ns, wake, memory_order_seq_cst);
	uint64_t kicked = atomic_load_explicit(&kick_ns, memory_order_seq_cst);
	if (kicked < wake) {
		wake = kicked;
		atomic_store_explicit(&wake_at_ns, wake, memory_order_seq_cst);
	}
	/* The wait is short (a tick at most): a kick or the next tick corrects
	 * any jump of the wall clock the condition variable runs on. */
	if (!atomic_load_explicit(stopping, memory_order_acquire))
		gpucap_clock_wait(&wake_cond, &wake_lock, wake);
	atomic_store_explicit(&wake_at_ns, 0, memory_order_seq_cst);
	pthread_mutex_unlock(&wake_lock);
}

void gpucap_sm_gate_thread_kick(uint64_t deadline_ns)
{
	uint64_t kicked = atomic_load_explicit(&kick_ns, memory_order_seq_cst);
	while (deadline_ns < kicked &&
	       !atomic_compare_exchange_weak_explicit(&kick_ns, &kicked, deadline_ns, memory_order_seq_cst,
	                                              memory_order_seq_cst)) {
	}
	/* Signal only a thread that sleeps past the deadline (a lock and a
	 * signal, at most once per phase); an awake one reads kick_ns. */
	if (atomic_load_explicit(&wake_at_ns, memory_order_seq_cst) <= deadline_ns)
		return;
	pthread_mutex_lock(&wake_lock);
	if (atomic_load_explicit(&wake_at_ns, memory_order_seq_cst) > deadline_ns)
		gpucap_clock_wake_all(&wake_cond);
	pthread_mutex_unlock(&wake_lock);
}

void gpucap_sm_wake_interrupt(void)
{
	pthread_mutex_lock(&wake_lock);
	gpucap_clock_wake_all(&wake_cond);
	pthread_mutex_unlock(&wake_lock);
}

void gpucap_sm_wake_after_fork(void)
{
	atomic_store_explicit(&gpucap_sm_gate_running, false, memory_order_relaxed);
	atomic_store_explicit(&wake_at_ns, UINT64_MAX, memory_order_relaxed);
	atomic_store_explicit(&kick_ns, UINT64_MAX, memory_order_relaxed);
	pthread_mutex_init(&wake_lock, NULL);
	pthread_cond_init(&wake_cond, NULL);
}
