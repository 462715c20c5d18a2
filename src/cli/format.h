/* SPDX-License-Identifier: Apache-2.0 */
/* How region values are shown to people and named in JSON, shared by the
 * commands so that status, reap and later top agree. */
#ifndef GPUCAP_CLI_FORMAT_H
#define GPUCAP_CLI_FORMAT_H

#include <gpucap/region.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLI_CELL_MAX 64

/* "512 MiB", "1.50 GiB". */
const char *cli_format_bytes(uint64_t bytes, char *buf, size_t len);
/* Like cli_format_bytes, with a minus sign for the transiently negative
 * per-kind counters a snapshot can catch mid-update. */
const char *cli_format_signed_bytes(int64_t bytes, char *buf, size_t len);
/* "unlimited" for GPUCAP_UNLIMITED and above. */
const char *cli_format_limit(uint64_t limit_bytes, char *buf, size_t len);
/* "none" for 0 and 100 (both mean no SM limit), else "40%". */
const char *cli_format_sm_limit(uint32_t sm_limit, char *buf, size_t len);
/* "2026-11-21T04:50:00Z"; "-" for 0. */
const char *cli_format_time(uint64_t unix_ns, char *buf, size_t len);

bool cli_limit_is_unlimited(uint64_t limit_bytes);
bool cli_sm_limit_is_none(uint32_t sm_limit);

/* JSON name of a host PID source: "unknown", "same_namespace", "nvml",
 * "host_resolver", "host_procfs". */
const char *cli_host_pid_source_key(gpucap_host_pid_source source);
/* Human words for it: "same pid namespace", "via NVML", ... */
const char *cli_host_pid_source_text(gpucap_host_pid_source source);

/* JSON name of how a delivered SM share was measured: "nvml" (NVML's busy
 * time), "gates" (the gates' own, without NVML), "launches" (beside a
 * neighbour, the launches' work at their cost alone), "unknown". */
const char *cli_sm_source_key(gpucap_sm_source source);

/* The process's usage of the snapshot's i-th listed device. The per-process
 * arrays are indexed by device index (entries live at hashed positions, so
 * the listed devices may have gaps between their indexes). NULL if out of
 * range. */
const struct gpucap_process_device_view *cli_process_device(const struct gpucap_snapshot *snapshot,
                                                            const struct gpucap_process_view *process,
                                                            uint32_t i);

/* Whether a process holds or uses anything on the device. */
bool cli_process_touches_device(const struct gpucap_process_device_view *device);

#endif
