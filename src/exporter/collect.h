/* SPDX-License-Identifier: Apache-2.0 */
/* One scrape: expand the glob, read each region as an observer, render. No
 * region stays open between scrapes: containers come and go, and their
 * region files with them. */
#ifndef GPUCAP_EXPORTER_COLLECT_H
#define GPUCAP_EXPORTER_COLLECT_H

#include "labels.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct exp_collector;

/* rule and pattern must outlive the collector. NULL when memory runs out. */
struct exp_collector *exp_collector_new(const char *pattern, const struct exp_path_rule *rule,
                                        bool hami_metrics);
void exp_collector_free(struct exp_collector *collector);

/* Before each read, record the host PIDs of processes in other PID
 * namespaces (src/resolver): regions are then attached writable. Only
 * meaningful in the host's PID namespace. Off by default. */
void exp_collector_resolve_host_pids(struct exp_collector *collector, bool on);

/* Read every region and return the exposition (free with free()), or NULL
 * when memory ran out. Regions that cannot be read are reported in the
 * exposition and logged on stderr, one line per path each time its error
 * changes. Not thread-safe: one scrape at a time per collector. */
char *exp_collector_scrape(struct exp_collector *collector, size_t *len);

/*
 * What one scrape may cost, so that no tenant's region file can make the
 * exposition huge or the scrape slow for everyone:
 *   region_series  a region that would add more samples is reported as not
 *                  readable (gpucap_region_up 0) and logged;
 *   scrape_bytes,  once the exposition is this large, or the scrape has
 *   scrape_ns      taken this long, the remaining regions are reported as
 *                  not read this time; the next scrape starts with them.
 */
struct exp_budget {
	size_t region_series;
	size_t scrape_bytes;
	uint64_t scrape_ns;
};
#define EXP_BUDGET_REGION_SERIES ((size_t)20000)
#define EXP_BUDGET_SCRAPE_BYTES  ((size_t)16 << 20)
#define EXP_BUDGET_SCRAPE_NS     (UINT64_C(5) * 1000000000u)
struct exp_budget exp_budget_default(void);
void exp_collector_set_budget(struct exp_collector *collector, const struct exp_budget *budget);

/* The clock the scrape's time budget and duration are measured with
 * (nanoseconds, monotonic); NULL restores CLOCK_MONOTONIC. For tests. */
void exp_collector_set_clock(struct exp_collector *collector, uint64_t (*clock_ns)(void *context),
                             void *context);

#endif
