/*
 * Shared by the files of src/compute, never included from outside it.
 */
#ifndef GPUCAP_COMPUTE_INTERNAL_H
#define GPUCAP_COMPUTE_INTERNAL_H

#include "calls.h"
#include "compute.h"

/* The process as the compute layer sees it (gpucap_compute_start). Written
 * before the library publishes READY; read-only after. */
struct compute_env {
	const struct gpucap_config *config;
	gpucap_region *region; /* NULL: nothing shared to throttle against */
	gpucap_compute_device_fn device_of;
};

extern struct compute_env compute_env;

#endif
