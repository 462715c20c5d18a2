/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Crash points: named places in the region code where a test build can kill
 * the process, to check that every state a dying process can leave is one
 * its peers complete exactly (tests/stress/crash_points.c drives them; the
 * protocol they check is docs/region-protocol.md).
 *
 * In the library as shipped GPUCAP_CRASH_POINT expands to nothing. The test
 * build of the region (target gpucap_region_crash) defines
 * GPUCAP_CRASH_POINTS: then GPUCAP_CRASH_AT=name:N in the environment makes
 * the Nth hit of that point raise SIGKILL, and GPUCAP_CRASH_COUNTS=fd makes
 * the process write "name hits" lines to that descriptor when it calls
 * gpucap_crash_points_report.
 */
#ifndef GPUCAP_REGION_CRASH_POINT_H
#define GPUCAP_REGION_CRASH_POINT_H

#ifdef GPUCAP_CRASH_POINTS
void gpucap_crash_point(const char *name);
/* Forget the hits counted so far and read GPUCAP_CRASH_AT again (in a
 * child just forked, which inherited its parent's counts). */
void gpucap_crash_points_reset(void);
/* Stop killing in this process (a helper forked by a test scenario). */
void gpucap_crash_points_disarm(void);
/* Kill this process at the hit-th hit of name from now on, instead of what
 * GPUCAP_CRASH_AT says (name must be a string literal or outlive the call). */
void gpucap_crash_points_arm(const char *name, unsigned long hit);
/* The same, raising signal_number instead (SIGSTOP: a process that stalls
 * there, holding what it holds, until continued). */
void gpucap_crash_points_arm_signal(const char *name, unsigned long hit, int signal_number);
/* Write the hit counts to the GPUCAP_CRASH_COUNTS descriptor. */
void gpucap_crash_points_report(void);
#define GPUCAP_CRASH_POINT(name) gpucap_crash_point(name)
#else
#define GPUCAP_CRASH_POINT(name) ((void)0)
#endif

#endif
