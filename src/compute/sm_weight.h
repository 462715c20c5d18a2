/*
 * The work weight of a capped busy second (docs/compute-caps.md, "Work
 * weight"), owned by the SM controller thread.
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

#include "gate.h"

struct sm_weight {
	uint32_t weight_ppm; /* 0: not measured (1.0) */
	uint64_t next_probe_ns;
	uint64_t probe_end_ns;    /* a burst runs until then; 0: none */
	uint64_t freeze_until_ns; /* NVML's figures still hold the burst */
	uint64_t per_launch_ns;   /* busy per launch before the last burst */
	struct gpucap_sm_work before;
	/* This process's work totals at the last control step. */
	struct gpucap_sm_work last;
	uint64_t last_ns;
	int ordinal; /* -1: unknown */
};

/* What a control step knows. */
struct sm_weight_inputs {
	int device;           /* region device index */
	uint32_t duty_ppm;    /* the duty the gates apply now */
	uint32_t foreign_ppm; /* others' SM share */
	bool measured;        /* NVML figures (foreign_ppm) are real */
	uint64_t tat_ns;      /* the device's virtual clock */
};

/* A new holder: start from the weight the region holds. */
void sm_weight_reset(struct sm_weight *w, uint32_t published_ppm, uint64_t now_ns);

/* The cap changed: measure again soon. */
void sm_weight_soon(struct sm_weight *w, uint64_t now_ns);

/* One control step: finish a burst that ended (publishing the weight),
 * or start one when due. True while the integral must not move (a burst
 * runs, or NVML's averages still contain it). */
bool sm_weight_step(struct sm_weight *w, const struct sm_weight_inputs *in, uint64_t now_ns);

/* The time share that delivers cap_ppm of the full-load work. */
uint32_t sm_weight_target(const struct sm_weight *w, uint32_t cap_ppm);

#endif
