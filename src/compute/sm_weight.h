/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The work weight of a capped busy second (docs/compute-caps.md, "Work
 * weight"): a pure part of the SM controller (sm_control.h). No clock, no
 * thread, no driver or region call: the caller hands in what it saw and
 * carries out the outcome.
 *
 * A GPU that idles between a capped container's ON phases stays cool and
 * runs its kernels at a higher clock than one held at full load (an H200
 * running fp16 GEMM back to back sits at its power limit at ~1.4 GHz; capped
 * at 50% it runs at 1.98 GHz). A time share of 30% then delivers ~35% of the
 * work the GPU does at full load. The weight measures that ratio for the
 * workload actually running:
 *
 *     weight = (busy time per launch at full load) / (busy time per launch now)
 *
 * The numerator comes from a calibration burst: the gate holds new phases
 * for burst x (1 / duty - 1), then runs them back to back for the burst
 * without charging the virtual clock, so over hold + burst the container
 * got exactly its duty. The controller then aims the time share at
 * cap / weight.
 *
 * A burst is only taken while this process is the container's only one
 * launching on the device, nobody else uses the GPU (others would make
 * "full load" a shared one), and the container is busy.
 */
#ifndef GPUCAP_COMPUTE_SM_WEIGHT_H
#define GPUCAP_COMPUTE_SM_WEIGHT_H

#include "sm_work.h"

#include <stdbool.h>
#include <stdint.h>

/* A new holder, or a new cap, waits this long: the controller settles first
 * (two to four steps). A burst's hold and the freeze after it stop the
 * integral for up to 3 s, so a burst due 0.5 s after the start left the
 * duty at its feed-forward that long (on an H100 the busy share of work that
 * leaves gaps stayed near the cap's feed-forward for about 2 s after the
 * first burst: bench/results/2026-12-07-h100-sm-share-short-windows.md). */
#define SM_BURST_FIRST_NS  UINT64_C(2500000000)
#define SM_BURST_PERIOD_NS UINT64_C(30000000000) /* then measures again this often */
#define SM_BURST_RETRY_NS  UINT64_C(5000000000)  /* sooner: too little was measured */
#define SM_BURST_DRIFT_NS  UINT64_C(10000000000) /* sooner: a new workload */
#define SM_BURST_DRIFT_PPM 250000u               /* per-launch time moved 25%: a new workload */
/* A figure that moves the duty by more than SM_BURST_MOVE_PPM of it is
 * measured again SM_BURST_SETTLE_NS later, at the duty it set, up to
 * SM_BURST_QUICK_MAX times in a row: the capped side of a burst is measured
 * at the duty in force before it, and the clock there may differ from the
 * clock at the duty the figure sets. On an H200 a GEMM capped at 70% read
 * 1.13 at the feed-forward duty of 70% (at its power limit part of the
 * time), while at the 63.5% that figure set it ran 1.20 times as fast as at
 * full load, and delivered 74.7% (bench/results/2026-12-07-h200-sm-share.md).
 * A figure taken at another duty than the standing one replaces it; one at
 * about the same duty is averaged in. */
#define SM_BURST_SETTLE_NS     UINT64_C(3000000000)
#define SM_BURST_MOVE_PPM      30000u
#define SM_BURST_QUICK_MAX     2u
#define SM_BURST_SAME_DUTY_PPM 50000u
/* The GPU's power management takes ~100 ms to pull the clock down to its
 * full-load value, and another limit acts near 1 s (an H200; bench/results):
 * a burst is as long as the hold allows, up to 1 s, and its second half is
 * measured. A hold of up to 2 s pays for a 0.86 s burst at 30%: the 0.43 s
 * one a 1 s hold paid for read a GEMM's weight 1.05-1.07 on an H100, where
 * the longer bursts of caps 50 and 70 read 1.17. */
#ifndef SM_BURST_NS /* a build may try another length (bench/gpu/run_share.sh experiments) */
#define SM_BURST_NS UINT64_C(1000000000)
#endif
#define SM_BURST_MIN_NS UINT64_C(80000000)
#define SM_BURST_MAX_HOLD_NS                                                                                 \
	UINT64_C(2000000000)         /* a launch waits longer only past the clock's debt (SM_WAIT_MAX_NS) */
#define SM_BURST_QUIET_PPM    20000u /* others must use less than 2% */
#define SM_BURST_MIN_LAUNCHES 8u
#define SM_BURST_FINISH_NS    UINT64_C(50000000)   /* the burst's last phases drain */
#define SM_BURST_FREEZE_NS    UINT64_C(1000000000) /* NVML's averages still hold the burst */

struct sm_weight {
	uint32_t weight_ppm; /* 0: not measured (1.0) */
	uint64_t next_burst_ns;
	uint64_t burst_end_ns;    /* a burst runs until then; 0: none */
	uint64_t freeze_until_ns; /* NVML's figures still hold the burst */
	uint64_t per_launch_ns;   /* busy per launch before the last burst */
	uint32_t before_duty_ppm; /* the duty in force while "before" was measured */
	uint32_t figure_duty_ppm; /* the same for the standing figure */
	unsigned quick;           /* bursts in a row measured again soon */
	struct gpucap_sm_work before;
	/* This process's work totals at the last control step. */
	struct gpucap_sm_work last;
	uint64_t last_ns;
};

/* What a control step knows. */
struct sm_weight_inputs {
	uint64_t now_ns;
	uint32_t duty_ppm;    /* the duty the gates apply now */
	uint32_t foreign_ppm; /* others' SM share */
	bool measured;        /* NVML figures (foreign_ppm) are real */
	bool calibrate;       /* bursts allowed (GPUCAP_SM_CALIBRATE) */
	uint64_t tat_ns;      /* the device's virtual clock */
	/* This process gated launches on the device: work holds its totals
	 * and burst the sums of the current burst's measured phases. */
	bool launching;
	struct gpucap_sm_work work;
	struct gpucap_sm_work burst;
	/* No other process of the container launched recently. */
	bool alone;
};

/* What the caller carries out. */
struct sm_weight_outcome {
	bool frozen; /* the integral must not move: a burst runs, or NVML still holds it */
	/* A burst ended with a figure: publish weight_ppm. */
	bool publish;
	uint32_t weight_ppm;
	uint32_t measured_ppm; /* this burst's own figure */
	uint64_t full_per_launch_ns;
	uint64_t capped_per_launch_ns;
	/* Start a burst on the gate: hold until hold_ns, run back to back until
	 * end_ns, measure the phases that start from measure_ns. */
	bool start;
	uint64_t hold_ns;
	uint64_t measure_ns;
	uint64_t end_ns;
};

/* A new holder: start from the weight the region holds. */
void sm_weight_reset(struct sm_weight *w, uint32_t published_ppm, uint64_t now_ns);

/* The cap changed: measure again soon. */
void sm_weight_soon(struct sm_weight *w, uint64_t now_ns);

/* One control step: finish a burst that ended (publishing the weight), or
 * start one when due. */
void sm_weight_step(struct sm_weight *w, const struct sm_weight_inputs *in, struct sm_weight_outcome *out);

/* Work that leaves gaps on the GPU at its own pace (a training step with
 * host work, a launch-bound loop) never held the GPU at full load: without a
 * cap it already runs at the clock a cap gives, so its capped busy second is
 * worth one of its own, whatever the burst measured. (On an H100 the
 * weights such work was given, the published share over the busy share
 * sampled from outside, ranged from about 0.88 to 1.17, from host gaps, not
 * clocks, and moved train and launch loops 5 to 7 points off their caps:
 * bench/results/2026-12-07-h100-sm-share.md.) So the weight applies in full
 * to work that fills its duty (density from SM_WEIGHT_DENSE_PPM), not at all
 * to work busy at most SM_WEIGHT_GAPPY_PPM of it, and in proportion between. */
#define SM_WEIGHT_GAPPY_PPM 500000u
#define SM_WEIGHT_DENSE_PPM 900000u

/* The weight that applies to work of this density (busy share per unit of
 * duty, ppm; unknown: the weight in full). */
uint32_t sm_weight_effective(const struct sm_weight *w, uint32_t density_ppm, bool density_known);

/* The time share that delivers cap_ppm of the work, at weight_ppm
 * (sm_weight_effective). */
uint32_t sm_weight_target(uint32_t weight_ppm, uint32_t cap_ppm);

#endif
