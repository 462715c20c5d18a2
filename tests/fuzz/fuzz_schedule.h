/* SPDX-License-Identifier: Apache-2.0 */
/* What fuzz_schedule and the schedule seeds agree on: the GPU, the two
 * tenants and the clock. A seed's records are stamped shortly before
 * FUZZ_SCHED_NOW_NS, so that the harness, reading at that time, finds the
 * peer active. */
#ifndef GPUCAP_FUZZ_SCHEDULE_H
#define GPUCAP_FUZZ_SCHEDULE_H

#include <stdint.h>

#define FUZZ_SCHED_GPU "GPU-fuzz"
/* This process's tenant, and the peer whose file is the input. */
#define FUZZ_SCHED_OWN_TENANT  UINT64_C(0x7)
#define FUZZ_SCHED_PEER_TENANT UINT64_C(0xb2)
/* "gpucap-sched-GPU-fuzz.00000000000000b2" */
#define FUZZ_SCHED_PEER_NAME "gpucap-sched-" FUZZ_SCHED_GPU ".00000000000000b2"
/* Past the 60 s after which an idle tenant's file is removed. */
#define FUZZ_SCHED_NOW_NS UINT64_C(1000000000000)

#endif
