/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The fake driver's clock (fake_clock.c), exported by the fake libcuda.so.1
 * for the tests and the fake NVML, and handed to libgpucap through the
 * clock seam (src/platform/clock.h, symbol gpucap_test_clock).
 *
 * GPUCAP_TEST_CLOCK=simulated turns it into simulated time: it starts at
 * the system's monotonic time and moves only when every thread that uses it
 * waits (a sleep, a timed wait, a kernel the fake GPU runs): then it jumps
 * to the earliest deadline. A thread joins on its first call and leaves
 * when it ends. What a test measures then depends on the code alone, never
 * on how busy the machine is. GPUCAP_TEST_CLOCK_FILE=path shares one
 * simulated clock between the processes that name the same file (tenants
 * taking turns; GPUCAP_TEST_CLOCK_PARTIES=n holds time until n have
 * joined). Unset, these are the system's clock and sleeps.
 */
#ifndef FAKE_CLOCK_H
#define FAKE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>

#define FAKE_CLOCK_FILE_ENV "GPUCAP_TEST_CLOCK_FILE"
/* With a shared file: time stands still until this many processes joined
 * (so that the first one cannot run ahead while the others start). */
#define FAKE_CLOCK_PARTIES_ENV "GPUCAP_TEST_CLOCK_PARTIES"

bool fakeclock_simulated(void);
uint64_t fakeclock_now(void);          /* monotonic ns */
uint64_t fakeclock_realtime_now(void); /* wall-clock ns (simulated: a fixed offset from now) */
void fakeclock_sleep_until(uint64_t deadline_ns);
void fakeclock_sleep(uint64_t ns);
/* Call before pthread_create: the new thread counts as running until it
 * first uses the clock (else time could move before it ever ran). */
void fakeclock_thread_starting(void);
void fakeclock_thread_start_failed(void);
/* The new thread's first call: it takes the place counted for it. */
void fakeclock_thread_begin(void);
/* The calling thread blocks outside the clock (pthread_join, waitpid):
 * time may move without it meanwhile. */
void fakeclock_idle_begin(void);
void fakeclock_idle_end(void);

/* For fakecuda.c's fork handlers (after its own lock). */
void fake_clock_fork_prepare(void);
void fake_clock_fork_parent(void);
void fake_clock_fork_child(void);

#endif
