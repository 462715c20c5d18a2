/* SPDX-License-Identifier: Apache-2.0 */
/* The exposition: Prometheus text format 0.0.4. Samples are gathered per
 * metric family while regions are visited, so that each family's samples
 * come out together under one HELP and TYPE line, as the format requires. */
#ifndef GPUCAP_EXPORTER_RENDER_H
#define GPUCAP_EXPORTER_RENDER_H

#include <gpucap/region.h>

#include "labels.h"
#include "text.h"

#include <stdbool.h>
#include <stdint.h>

#define EXP_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

enum exp_family {
	EXP_REGION_UP,
	EXP_REGION_READ_ERRORS,
	EXP_REGION_PROCESSES,
	EXP_REGION_RECLAIMED_SLOTS,
	EXP_REGION_RECLAIMED_BYTES,
	EXP_DEVICE_LIMIT,
	EXP_DEVICE_CHARGED,
	EXP_DEVICE_IN_USE,
	EXP_DEVICE_PEAK,
	EXP_DEVICE_SM_LIMIT,
	EXP_DEVICE_SM_DUTY,
	EXP_DEVICE_SM_SHARE,
	EXP_DEVICE_SM_ASKED,
	EXP_DEVICE_REFUSALS,
	EXP_PROCESS_IN_USE,
	EXP_PROCESS_DRIVER,
	EXP_PROCESS_ALIVE,
	EXP_PROCESS_LAST_LAUNCH,
	EXP_PROCESS_REFUSALS,
	EXP_HAMI_USED,
	EXP_HAMI_LIMIT,
	EXP_HAMI_UTILIZATION,
	EXP_HAMI_LAST_KERNEL,
	EXP_HAMI_DEVICE_MEMORY,
	EXP_HAMI_CONTEXT,
	EXP_HAMI_MODULE,
	EXP_HAMI_BUFFER,
	EXP_LEGACY_USED,
	EXP_LEGACY_LIMIT,
	EXP_LEGACY_MEMORY_DESC,
	EXP_LEGACY_UTILIZATION,
	EXP_LEGACY_LAST_KERNEL,
	EXP_SCRAPE_DURATION,
	EXP_FAMILY_COUNT
};

struct exp_render {
	bool hami_metrics;
	bool hami_legacy; /* exp_render_set_hami_legacy, when hami_metrics */
	/* Wall-clock time of the scrape (Unix ns), for HAMi's "seconds since the
	 * last kernel"; exp_render_init sets it, tests may override it. */
	uint64_t now_unix_ns;
	struct exp_text family[EXP_FAMILY_COUNT];
};

void exp_render_init(struct exp_render *render, bool hami_metrics);

/* Also emit the names HAMi's monitor used before 2026 (only with its legacy
 * flag today), with their labels (podnamespace, podname, ctrname, vdeviceid,
 * deviceuuid), next to the hami_* set. Set once, before the exporter serves:
 * exp_render_init reads it on every scrape. */
void exp_render_set_hami_legacy(bool on);

/* Add one region's samples. snapshot NULL: the region could not be read this
 * scrape (up 0, no other samples but its error counter). */
void exp_render_region(struct exp_render *render, const char *path, const struct exp_pod_labels *labels,
                       const struct gpucap_snapshot *snapshot, uint64_t read_errors_total);

/* Append every family with samples, then the scrape duration, to out; frees
 * the per-family buffers. False when memory ran out. */
bool exp_render_finish(struct exp_render *render, double scrape_seconds, struct exp_text *out);

/* Free the per-family buffers without output. */
void exp_render_discard(struct exp_render *render);

#endif
