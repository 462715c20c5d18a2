/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The node schedule from the compute side (include/gpucap/schedule.h): each
 * capped device's handle on its GPU's schedule file, joined by gpucap's
 * controller thread, never on the launch path.
 */
#ifndef GPUCAP_COMPUTE_SM_SCHEDULE_H
#define GPUCAP_COMPUTE_SM_SCHEDULE_H

#include "gpucap/schedule.h"

#include <stdbool.h>
#include <stdint.h>

/* The handle of a CUDA ordinal, or NULL (no GPUCAP_NODE_DIR, not joined yet,
 * or the file is unusable). One acquire load. */
gpucap_sched *gpucap_sm_schedule_of(int ordinal);

/* Whether CUDA ordinal's gate takes turns with another tenant now (it is in
 * a shared schedule); *caps_ppm: the active tenants' caps summed. */
bool gpucap_sm_schedule_shared(int ordinal, uint32_t duty_ppm, uint64_t now_ns, uint32_t *caps_ppm);

/* Whether capped devices take turns at all (GPUCAP_NODE_DIR and a region). */
bool gpucap_sm_schedule_wanted(void);

/* Controller thread: join the schedule of a capped device (CUDA ordinal at
 * region device region_index) if it has not joined yet (retrying a busy
 * file soon and an unusable one every 10 s, reported once). */
void gpucap_sm_schedule_join(int ordinal, int region_index, uint64_t now_ns);

/* Controller thread: every joined device writes this process's record and
 * reads the other tenants' files (gpucap_sched_refresh); a refused peer
 * file is reported once per device. */
void gpucap_sm_schedule_refresh_all(uint64_t now_ns);

/* Forked child: the handles are the parent's. */
void gpucap_sm_schedule_after_fork(void);

#endif
