/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Shared by the files of src/compute, never included from outside it.
 */
#ifndef GPUCAP_COMPUTE_INTERNAL_H
#define GPUCAP_COMPUTE_INTERNAL_H

#include "calls.h"
#include "compute.h"

/* The process as the compute layer sees it (gpucap_compute_start). Written
 * before the library publishes READY; read-only after, but for region. */
struct compute_env {
	const struct gpucap_config *config;
	/* NULL: nothing shared to throttle against. Set at start-up, or later,
	 * once, by an attach tried again (gpucap_compute_region_arrived, a
	 * release store): it only goes from NULL to a region, so a reader that
	 * saw it set keeps seeing it. Plain reads are seq_cst loads, which
	 * pair with that release. */
	_Atomic(gpucap_region *) region;
	gpucap_compute_device_fn device_of;
};

extern struct compute_env compute_env;

#endif
