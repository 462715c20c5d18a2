/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a launch of the container's work is worth in GPU time, learnt
 * while the container is alone on the device, so that beside a neighbour
 * its share is counted in work, not in NVML's busy time (docs/compute-caps.md).
 *
 * Two contexts that share a GPU take time slices: a kernel of one runs
 * longer while the other's slices come between, and NVML charges the
 * slices to whichever context held the GPU. On an H100 a training step
 * capped at 30% beside an uncapped one was held at 36.9% of NVML's busy
 * time, and that time did 25.2% of the work it did alone
 * (bench/results/2026-12-07-h100-memory-final.md). The launches it made
 * are the work it got: at the cost per launch it had alone, launches x
 * cost over the window is the share a native run would need to do them,
 * the measure a cap promises.
 *
 * Pure: plain data in and out, no clock, driver or NVML call.
 */
#ifndef GPUCAP_COMPUTE_SM_LAUNCH_COST_H
#define GPUCAP_COMPUTE_SM_LAUNCH_COST_H

#include <stdbool.h>
#include <stdint.h>

#define SM_COST_WINDOWS   4u      /* windows alone before the cost is trusted */
#define SM_COST_DECAY_PPM 875000u /* weight of the sums' past at each window (~4 s) */
#define SM_COST_MILLI     1000u   /* launches are summed in thousandths (the decay keeps fractions) */

/* Decayed sums over the windows in which the container worked alone with
 * its launches counted: the busy time they took and their number. */
struct sm_launch_cost {
	uint64_t busy_ns;
	uint64_t milli_launches;
	unsigned windows;
};

/* A window alone: busy_ns of the container's GPU time for launches. */
void sm_launch_cost_learn(struct sm_launch_cost *c, uint64_t busy_ns, uint64_t launches);

bool sm_launch_cost_known(const struct sm_launch_cost *c);

/* The share (ppm, at most all of it) that launches over window_ns are
 * worth at the learnt cost. */
uint32_t sm_launch_cost_share(const struct sm_launch_cost *c, uint64_t launches, uint64_t window_ns);

#endif
