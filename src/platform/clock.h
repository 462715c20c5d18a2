/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The clock seam: every clock read, sleep and timed wait of the compute
 * layer (src/compute) goes through here, so that tests can run it on
 * simulated time.
 *
 * In production these are clock_gettime, nanosleep and
 * pthread_cond_timedwait. A test may replace them with a simulated clock,
 * under two conditions that never hold by accident:
 *   - the environment sets GPUCAP_TEST_CLOCK=simulated, and
 *   - the CUDA driver library gpucap loaded exports the symbol
 *     gpucap_test_clock, a struct gpucap_clock_ops whose magic and version
 *     match. Only the test double of the driver (tests/fakedriver) does; a
 *     real libcuda.so.1 never does, so the variable alone changes nothing.
 * The choice is made at start-up (gpucap_clock_adopt), before any thread of
 * gpucap's runs. src/platform's own clocks and sleeps (platform.h) come
 * through here too, so the region's waits follow the same clock.
 */
#ifndef GPUCAP_PLATFORM_CLOCK_H
#define GPUCAP_PLATFORM_CLOCK_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

enum gpucap_clock_id {
	GPUCAP_CLOCK_MONOTONIC = 0,
	GPUCAP_CLOCK_REALTIME = 1,
};

/* Nanoseconds on a clock. */
uint64_t gpucap_clock_now(enum gpucap_clock_id id);

/* Sleep until the monotonic clock reads deadline_ns (EINTR resumes). */
void gpucap_clock_sleep_until(uint64_t deadline_ns);

/* Sleep ns nanoseconds. */
void gpucap_clock_sleep(uint64_t ns);

/* The caller holds mutex: release it and wait until gpucap_clock_wake_all
 * on cond or the monotonic deadline, then take it again. May return early;
 * the caller checks its condition again. */
void gpucap_clock_wait(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns);

/* Wake every waiter on cond. The caller holds the mutex the waiters pass
 * (so none of them is between its check and its wait). */
void gpucap_clock_wake_all(pthread_cond_t *cond);

/* A thread is about to be created (call before pthread_create): a
 * simulated clock counts it as running from now on, so that time does not
 * move while it has yet to run. */
void gpucap_clock_thread_starting(void);

/* The pthread_create after gpucap_clock_thread_starting failed. */
void gpucap_clock_thread_start_failed(void);

/* First call of a thread announced by gpucap_clock_thread_starting: it takes
 * the place its creator counted for it. */
void gpucap_clock_thread_begin(void);

/* ---- The test seam ------------------------------------------------------ */

#define GPUCAP_TEST_CLOCK_ENV     "GPUCAP_TEST_CLOCK"
#define GPUCAP_TEST_CLOCK_VALUE   "simulated"
#define GPUCAP_TEST_CLOCK_SYMBOL  "gpucap_test_clock"
#define GPUCAP_TEST_CLOCK_MAGIC   UINT64_C(0x6770756361706b31) /* "gpucapk1" */
#define GPUCAP_TEST_CLOCK_VERSION 3u

struct gpucap_clock_ops {
	uint64_t magic;   /* GPUCAP_TEST_CLOCK_MAGIC */
	uint32_t version; /* GPUCAP_TEST_CLOCK_VERSION */
	uint32_t size;    /* sizeof(struct gpucap_clock_ops) */
	uint64_t (*now)(enum gpucap_clock_id id);
	void (*sleep_until)(uint64_t deadline_ns);
	void (*wait)(pthread_cond_t *cond, pthread_mutex_t *mutex, uint64_t deadline_ns);
	void (*wake_all)(pthread_cond_t *cond);
	void (*thread_starting)(void);
	void (*thread_start_failed)(void);
	void (*thread_begin)(void);
};

/* Whether the environment asks for the simulated clock (cheap; the caller
 * then looks the symbol up in the driver it loaded). */
bool gpucap_clock_test_requested(void);

/* Use ops (the driver's gpucap_test_clock symbol, or a unit test's table)
 * from now on, if the environment asks for it and ops is a valid table.
 * Returns whether the simulated clock is in use. Call before gpucap's
 * threads start. NULL (with the variable set): back to the system's clocks,
 * for a unit test that simulated time for one case. */
bool gpucap_clock_adopt(const struct gpucap_clock_ops *ops);

#endif
