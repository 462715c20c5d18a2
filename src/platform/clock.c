/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The clock seam (clock.h): the system's clocks, or a test's simulated one.
 */
#define _GNU_SOURCE
#include "clock.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* NULL: the system's clocks. Written once by gpucap_clock_adopt before
 * gpucap's threads exist; the release store pairs with the acquire load in
 * ops(), so a thread that sees the table sees it whole. */
static _Atomic(const struct gpucap_clock_ops *) simulated;

static const struct gpucap_clock_ops *ops(void)
{
	return atomic_load_explicit(&simulated, memory_order_acquire);
}

static uint64_t system_ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

uint64_t gpucap_clock_now(enum gpucap_clock_id id)
{
	const struct gpucap_clock_ops *o = ops();
	if (o)
		return o->now(id);
	return system_ns(id == GPUCAP_CLOCK_REALTIME ? CLOCK_REALTIME : CLOCK_MONOTONIC);
}

void gpucap_clock_sleep_until(uint64_t deadline_ns)
{
	const struct gpucap_clock_ops *o = ops();
	if (o) {
		o->sleep_until(deadline_ns);
		return;
	}
	struct timespec ts = {(time_t)(deadline_ns / UINT64_C(1000000000)),
	                      (long)(deadline_ns % UINT64_C(1000000000))};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
	}
}

void gpucap_clock_sleep(uint64_t ns)
{
	gpucap_clock_sleep_until(gpucap_clock_now(GPUCAP_CLOCK_MONOTONIC) + ns);
}

void gpucap_clock_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns)
{
	const struct gpucap_clock_ops *o = ops();
	if (o) {
		o->wait(cond, mutex, deadline_ns);
		return;
	}
	uint64_t now = system_ns(CLOCK_MONOTONIC);
	if (deadline_ns <= now)
		return;
	/* The condition variables are statically initialised, so they run on
	 * CLOCK_REALTIME: the wait is converted, and callers wait in short
	 * steps, so a clock jump costs at most one step. */
	uint64_t at = system_ns(CLOCK_REALTIME) + (deadline_ns - now);
	struct timespec ts = {(time_t)(at / UINT64_C(1000000000)), (long)(at % UINT64_C(1000000000))};
	pthread_cond_timedwait(cond, mutex, &ts);
}

void gpucap_clock_wake_all(pthread_cond_t *cond)
{
	const struct gpucap_clock_ops *o = ops();
	if (o) {
		o->wake_all(cond);
		return;
	}
	pthread_cond_broadcast(cond);
}

void gpucap_clock_thread_starting(void)
{
	const struct gpucap_clock_ops *o = ops();
	if (o)
		o->thread_starting();
}

void gpucap_clock_thread_start_failed(void)
{
	const struct gpucap_clock_ops *o = ops();
	if (o)
		o->thread_start_failed();
}

void gpucap_clock_thread_begin(void)
{
	const struct gpucap_clock_ops *o = ops();
	if (o)
		o->thread_begin();
}

bool gpucap_clock_test_requested(void)
{
	const char *value = getenv(GPUCAP_TEST_CLOCK_ENV);
	return value && strcmp(value, GPUCAP_TEST_CLOCK_VALUE) == 0;
}

bool gpucap_clock_adopt(const struct gpucap_clock_ops *o)
{
	if (!o && gpucap_clock_test_requested()) {
		atomic_store_explicit(&simulated, NULL, memory_order_release);
		return false;
	}
	if (!gpucap_clock_test_requested() || !o || o->magic != GPUCAP_TEST_CLOCK_MAGIC ||
	    o->version != GPUCAP_TEST_CLOCK_VERSION || o->size != sizeof(*o) || !o->now || !o->sleep_until ||
	    !o->wait || !o->wake_all || !o->thread_starting || !o->thread_start_failed || !o->thread_begin)
		return false;
	atomic_store_explicit(&simulated, o, memory_order_release);
	return true;
}
