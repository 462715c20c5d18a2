/* One scrape: expand the glob, read each region as an observer, render. No
 * region stays open between scrapes: containers come and go, and their
 * region files with them. */
#ifndef GPUCAP_EXPORTER_COLLECT_H
#define GPUCAP_EXPORTER_COLLECT_H

#include "labels.h"

#include <stdbool.h>
#include <stddef.h>

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

/* Run fn(arg) under the SIGBUS guard (installed first if need be). Returns
 * false if fn faulted with SIGBUS, in which case it was cut short. Other
 * threads and code outside such a call keep the default SIGBUS action. */
bool exp_run_guarded(void (*fn)(void *), void *arg);

/* Install the SIGBUS guard that turns a region file truncated under the
 * exporter's feet into a read error for that region instead of a crash.
 * Idempotent; exp_collector_new and exp_run_guarded call it. */
void exp_install_fault_guard(void);

#endif
