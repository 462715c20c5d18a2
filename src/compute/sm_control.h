/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The SM controller as a pure function (docs/compute-caps.md): one control
 * step of one device maps what was measured and the controller's state to
 * the duty the gates apply. No thread, clock, driver, NVML or region call
 * happens in here; sm_controller.c gathers the inputs, calls
 * sm_control_step and carries out the decision, and the unit tests
 * (tests/unit/test_sm_control.c) drive it directly.
 *
 *     target = cap / weight              (sm_weight.h)
 *     duty   = clamp(target + I, target / 2, 100%)
 *     I     += k * (target / density - duty)   density = sum(share) / sum(duty)
 *                                        (back-computed from the clamp: no
 *                                         wind-up)
 *
 * The share is the container's busy share: the time in which its kernels
 * ran, the measure a native run's busy share is taken in (NVML's device
 * utilisation, split between tenants by their per-process figures, and
 * never less than the gates' sure busy time while alone on the GPU).
 * Beside a neighbour, whose time slices NVML charges to whichever context
 * held the GPU, it is the work of the window's launches at the cost a
 * launch had alone (sm_launch_cost.h), once that cost is known. A
 * program that leaves gaps on the GPU gets share = density * duty; the
 * step aims at the duty that gives the target at the density just seen,
 * so it converges in a few steps whatever the density (three windows in a
 * row well off it restart its sums: the work changed). Alone on the GPU
 * with work that keeps it busy the feed-forward duty = target is already
 * right and I only trims the measuring bias; next to another tenant the ON
 * phases are shared and I raises the duty until the share reaches the
 * target. Without
 * NVML figures it runs open loop (feed-forward only); taking turns on a node
 * schedule, the window is the share, so feed-forward only as well. Work that
 * leaves gaps in its window stops taking turns (it overlaps the others, as
 * without a node directory) until it fills its duty again.
 */
#ifndef GPUCAP_COMPUTE_SM_CONTROL_H
#define GPUCAP_COMPUTE_SM_CONTROL_H

#include "gpucap/region.h"
#include "sm_launch_cost.h"
#include "sm_weight.h"

#include <stdbool.h>
#include <stdint.h>

#define SM_STEP_NS            UINT64_C(500000000)  /* one control step per device */
#define SM_ELASTIC_NS         UINT64_C(1000000000) /* foreign use must be absent this long */
#define SM_ELASTIC_PPM        50000u               /* "foreign use": at least 5% */
#define SM_NEIGHBOUR_NS       UINT64_C(3000000000) /* a neighbour busy this recently still counts */
#define SM_IDLE_PPM           5000u                /* below 0.5%: the container is idle */
#define SM_MISMATCH_PPM       20000u               /* gates busy 2% while NVML shows nothing */
#define SM_MISMATCH_WARN      4u                   /* steps of mismatch before it is reported */
#define SM_MISMATCH_HOLD      12u                  /* steps of mismatch the correction is held through */
#define SM_GAIN_UP_PPM        1000000u             /* k when the share is below the cap */
#define SM_GAIN_DOWN_PPM      500000u              /* k when above */
#define SM_HELD_MAX_PPM       990000u              /* the most of a window counted as held */
#define SM_DENSITY_MAX_PPM    4000000u             /* a density reading is capped here */
#define SM_DENSITY_DECAY_PPM  875000u              /* weight of the sums' past at each window (~4 s) */
#define SM_TURNS_FULL_PPM     950000u              /* taking turns, the GPU is at full load */
#define SM_TURNS_GAPPY_PPM    600000u              /* taking turns, work this dense fills its window */
#define SM_TURNS_DENSE_PPM    800000u              /* overlapping, work this dense takes turns again */
#define SM_TURNS_GAIN_PPM     250000u              /* taking turns, k of the correction for gaps */
#define SM_TURNS_SETTLE_STEPS 4u                   /* steps of averaging before it corrects */
#define SM_PAUSE_STEPS        4u                   /* idle steps in a row: a pause */
#define SM_RESUMED_WINDOWS    2u      /* worked windows after a pause that may restart the density */
#define SM_SHIFT_PPM          200000u /* a window's density this far off the sums' (relative) */
#define SM_SHIFT_WINDOWS      3u      /* that many windows in a row: the work changed */
#define SM_FINE_LAUNCH_NS     UINT64_C(5000000) /* busy per launch under this: a window holds many launches */

/* One device's controller, owned by the lease holder's controller thread. */
struct sm_control_state {
	int32_t integral_ppm;
	uint32_t share_ppm;   /* smoothed over about a second, as published */
	uint32_t density_ppm; /* busy share per unit of duty (sm_control.c, work_density): what the duty steps
	                         on */
	bool density_known;
	/* Sums over the windows in which the container worked, each older one
	 * weighing SM_DENSITY_DECAY of the next: NVML's busy share, the gates'
	 * sure share, the duty applied. */
	uint64_t sum_busy_ppm;
	uint64_t sum_sure_ppm;
	uint64_t sum_duty_ppm;
	uint64_t last_sure_ns; /* this process's sure busy total at the last step */
	/* The telling windows in a row whose density lies on one side of the
	 * sums' density when the run began (work_density): that density, the
	 * side, how many, their busy share and duty. */
	uint32_t shift_from_ppm;
	int shift_side;
	unsigned shift_windows;
	uint64_t shift_busy_ppm;
	uint64_t shift_duty_ppm;
	unsigned idle_steps;        /* idle steps in a row */
	unsigned resumed_windows;   /* worked windows left of a return from a pause */
	uint64_t last_work_busy_ns; /* this process's gates' busy and launches at the last step */
	uint64_t last_launches;
	bool elastic_open; /* the last step let elastic run free */
	bool share_known;
	uint64_t last_step_ns;
	uint64_t last_busy_ns; /* the container's charged busy total at the last step */
	uint64_t last_held_ns; /* this process's launches' held total at the last step */
	uint64_t last_foreign_ns;
	uint32_t cap_seen; /* the cap (ppm) the integral was built for */
	unsigned mismatches;
	bool nvml_named_us;       /* NVML has shown the container busy since this controller began */
	unsigned steps;           /* since this process took the lease */
	uint32_t turns_share_ppm; /* taking turns: the busy share, averaged over ~2 s */
	unsigned turns_steps;
	bool overlap; /* the work leaves gaps in its window: no turns (GPUCAP_SM_FLAG_OVERLAP) */
	struct sm_launch_cost launch_cost; /* learnt alone; counts the share beside a neighbour */
	struct sm_weight weight;
};

struct sm_control_inputs {
	uint64_t now_ns;
	uint32_t cap_ppm;  /* the region's live limit, 1..99% in ppm */
	uint32_t duty_ppm; /* the duty published now; 0: unset (the cap applies) */
	uint64_t busy_ns;  /* the container's busy total, as the gates charged it */
	uint64_t tat_ns;   /* the device's virtual clock */
	bool elastic;      /* GPUCAP_SM_POLICY=elastic */
	bool calibrate;    /* calibration bursts allowed */
	/* NVML's per-process utilisation over the window: the container's and
	 * the others' share. measured false: NVML cannot tell (open loop). */
	bool measured;
	uint32_t mine_ppm;
	uint32_t foreign_ppm;
	/* NVML's device utilisation over the window (the share of time any
	 * kernel ran); device_known false: NVML cannot tell, and the
	 * per-process figures stand alone. */
	bool device_known;
	uint32_t device_ppm;
	/* The node schedule: the device takes turns with other tenants, whose
	 * active caps sum to turns_caps_ppm. */
	bool turns;
	uint32_t turns_caps_ppm;
	/* This process's gate on the device (sm_weight_inputs). */
	bool launching;
	struct gpucap_sm_work work;
	struct gpucap_sm_work burst;
	bool alone;
};

struct sm_control_decision {
	/* Publish to the region (gpucap_region_sm_publish). */
	bool publish;
	uint32_t duty_ppm;
	uint32_t share_ppm; /* delivered, shown as a share of the full-load work, like the cap */
	uint32_t asked_ppm; /* what the work asked for: the share, scaled up by the time held */
	gpucap_sm_source source;
	uint32_t flags; /* GPUCAP_SM_FLAG_* */
	int32_t integral_ppm;
	/* The calibration burst to start or the weight to publish. */
	struct sm_weight_outcome weight;
	/* Reasons to say something (the caller says each once). */
	bool warn_mismatch;      /* NVML sees none of the container's kernels */
	bool warn_elastic_blind; /* elastic without NVML: the cap holds */
	/* For the debug line. */
	uint32_t target_ppm;
	uint32_t gate_ppm;
	uint32_t busy_ppm; /* the container's busy share this window */
	bool by_work;      /* beside a neighbour: the share is the launches' work (sm_launch_cost.h) */
	uint32_t work_ppm; /* that share, when by_work */
	bool closed;
	bool turns; /* a step of taking turns: in.turns, below a duty of 100% */
};

/* A new lease holder: carry on from the published integral and weight; judge
 * elastic from now on (others may be busy). */
void sm_control_reset(struct sm_control_state *s, const struct sm_control_inputs *in, int32_t integral_ppm,
                      uint32_t weight_ppm);

/* Whether a step is due at now. */
bool sm_control_due(const struct sm_control_state *s, uint64_t now_ns);

/* The container's busy share from NVML's figures over one window: its
 * part (by per-process utilisation) of the device's utilisation, or its
 * per-process figure when the device's is unknown. */
uint32_t sm_control_busy_share(const struct sm_control_inputs *in);

/* One control step. */
void sm_control_step(const struct sm_control_inputs *in, struct sm_control_state *s,
                     struct sm_control_decision *out);

#endif
