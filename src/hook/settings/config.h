/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The settings of libgpucap.so, decided once at initialisation by
 * src/policy (config.c hands it the environment and the limits file):
 * plain data. src/memory and src/compute read their part through the
 * pointers they are given when the library starts; nothing below src/hook
 * calls config.c.
 */
#ifndef GPUCAP_HOOK_CONFIG_H
#define GPUCAP_HOOK_CONFIG_H

#include "gpucap/region.h"

#include <stdbool.h>
#include <stdint.h>

#define GPUCAP_DEFAULT_CONTEXT_BYTES (UINT64_C(640) << 20)

struct gpucap_device_config {
	uint64_t limit_bytes;    /* GPUCAP_UNLIMITED: none */
	bool fail_closed;        /* a malformed value applies to this device */
	uint64_t file_cap_bytes; /* the limits file's cap (GPUCAP_UNLIMITED: none) */
	uint32_t sm_limit;       /* percent to register with: lower of file and environment; 0: none */
};

/* Compute caps (docs/compute-caps.md). */
enum gpucap_sm_policy {
	GPUCAP_SM_POLICY_STRICT = 0,  /* the cap is a cap, even for a lone tenant */
	GPUCAP_SM_POLICY_ELASTIC = 1, /* idle capacity may be used while no one else wants it */
	GPUCAP_SM_POLICY_DISABLE = 2, /* no compute throttle in this process */
};

/* The SM share a malformed SM variable leaves the devices it names: the
 * most restrictive cap there is (fail closed, like memory). */
#define GPUCAP_SM_FAIL_CLOSED_PERCENT 1u

struct gpucap_sm_config {
	enum gpucap_sm_policy policy;
	/* This process's own ceiling per CUDA ordinal, in percent (0: none): the
	 * limits file's SM value, or GPUCAP_SM_FAIL_CLOSED_PERCENT after a
	 * malformed variable. Applied on top of the region's live limit. */
	uint32_t local_cap[GPUCAP_MAX_DEVICES];
	/* Measure the work weight of a capped busy second with calibration
	 * bursts (GPUCAP_SM_CALIBRATE, docs/compute-caps.md); default on. */
	bool calibrate;
};

struct gpucap_config {
	struct gpucap_device_config device[GPUCAP_MAX_DEVICES];
	struct gpucap_sm_config sm;
	uint64_t context_bytes;
	/* GPUCAP_CONTEXT_BYTES was given: it overrides the measured size. */
	bool context_bytes_set;
	uint32_t context_wait_ms; /* GPUCAP_CONTEXT_WAIT_MS */
	uint32_t reconcile_ms;    /* GPUCAP_RECONCILE_MS; 0: the default */
	char region_path[4096];
	/* The environment named another region than the limits file allows:
	 * no region is attached, every device fails closed. */
	bool region_refused;
	bool region_group_shared; /* GPUCAP_REGION_GROUP=1 */
	/* Which setting named the region and what to change, for a region that
	 * cannot be attached. */
	char region_hint[256];
	/* The limits file in force ("" when none): the region attached is
	 * bound to it (src/policy/binding.h). */
	char limits_file[4096];
	/* GPUCAP_NODE_DIR: the host directory of the node schedule files
	 * (include/gpucap/schedule.h); empty: capped containers do not take
	 * turns. */
	char node_dir[4096];
	char visible_devices[1024]; /* CUDA_VISIBLE_DEVICES as read at init */
	bool visible_devices_set;
	int log_level;
};

/* Read the environment and the limits file once and decide with
 * gpucap_policy_resolve. Malformed values are reported (one line each) and
 * mark the affected devices fail-closed. */
void gpucap_config_load(struct gpucap_config *config);

#endif
