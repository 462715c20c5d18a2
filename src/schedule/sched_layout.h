/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The placement rule of the node schedule, a pure function: every process
 * that sees the same tenants computes the same windows, and nothing another
 * tenant claims changes the length of this tenant's window.
 */
#ifndef GPUCAP_SCHED_LAYOUT_H
#define GPUCAP_SCHED_LAYOUT_H

#include <stdbool.h>
#include <stdint.h>

struct sched_entry {
	uint64_t tenant;
	uint32_t uid;       /* owner of the tenant's file (the kernel says so, not the file) */
	uint32_t duty_ppm;  /* 1..GPUCAP_SCHED_PPM */
	uint32_t cap_ppm;   /* 1..GPUCAP_SCHED_PPM */
	uint64_t group_ppm; /* filled by sched_layout: the duties of the uid's tenants summed */
};

struct sched_placement {
	bool shared;         /* another tenant is active */
	uint32_t offset_ppm; /* where the own window starts, in millionths of the period */
	uint32_t tenants;
	uint32_t total_ppm; /* duties summed, saturated */
	uint32_t caps_ppm;  /* caps summed, saturated */
};

/*
 * Entries e[0..n) (reordered in place), own_tenant among them. Windows are
 * laid end to end in the order (uid's claimed duty summed ascending, uid,
 * tenant): a user who claims much is placed last. Each window is exactly
 * its tenant's duty. Claims past the end of the period start over at its
 * beginning (the running sum modulo the period), overlapping the first
 * windows, and a window that would cross the end is moved back to end
 * there. A claim therefore moves other windows but never shortens one.
 */
void sched_layout(struct sched_entry *e, uint32_t n, uint64_t own_tenant, struct sched_placement *out);

/* Where a window of len_ppm starting at offset_ppm is kept inside the
 * period (it never wraps). */
uint32_t sched_fit_offset(uint64_t offset_ppm, uint32_t len_ppm);

#endif
