/*
 * The node schedule from the hook's side (include/gpucap/schedule.h): each
 * capped device's handle on its GPU's schedule file, joined by gpucap's
 * controller thread, never on the launch path.
 */
#ifndef GPUCAP_HOOK_SM_SCHEDULE_H
#define GPUCAP_HOOK_SM_SCHEDULE_H

#include "gpucap/schedule.h"

#include <stdbool.h>
#include <stdint.h>

/* The handle of a CUDA ordinal, or NULL (no GPUCAP_NODE_DIR, not joined yet,
 * or the file is unusable). One acquire load. */
gpucap_sched *gpucap_sm_schedule_of(int ordinal);

/* Whether region device region_index takes turns with another tenant now
 * (this process's gate there is in a shared schedule); *caps_ppm: the
 * active tenants' caps summed. */
bool gpucap_sm_schedule_shared(int region_index, uint32_t duty_ppm, uint64_t now_ns, uint32_t *caps_ppm);

/* Controller thread: join the schedules of capped devices not joined yet
 * (retrying a busy file soon and an unusable one every 10 s, reported once). */
void gpucap_sm_schedule_service(uint64_t now_ns);

/* Forked child: the handles are the parent's. */
void gpucap_sm_schedule_after_fork(void);

#endif
