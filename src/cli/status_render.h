/* SPDX-License-Identifier: Apache-2.0 */
/* The two renderings of a region snapshot for "gpucap status". */
#ifndef GPUCAP_CLI_STATUS_RENDER_H
#define GPUCAP_CLI_STATUS_RENDER_H

#include "format.h"

#include <gpucap/region.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Aligned tables for people. False when memory runs out. */
bool status_render_text(const struct gpucap_snapshot *snapshot, FILE *out);

/* One JSON object; the schema is documented in docs/cli.md. False on a
 * writer misuse (a bug). */
bool status_render_json(const struct gpucap_snapshot *snapshot, FILE *out);

/* ---- Shared with gpucap top (src/cli/top.c) ---- */

struct json_writer;

/* Parts per million as a percentage with one decimal: "31.2%". */
const char *status_format_ppm_percent(uint32_t ppm, char *buf, size_t len);

/* How long before now_ns unix_ns was: "0.3s ago", "12m05s ago", "3h12m ago",
 * "2d03h ago"; "-" when unix_ns is 0 (never). A time after now_ns (clocks of
 * two processes) counts as "0.0s ago". */
const char *status_format_age(uint64_t unix_ns, uint64_t now_ns, char *buf, size_t len);

/* A member "key": value / 10^decimals as a JSON number with no trailing
 * zeros ("0.3", "1", "31.2345"). Ratios are ppm with 6 decimals. */
void status_json_member_decimal(struct json_writer *writer, const char *key, uint64_t value,
                                unsigned decimals);

/* The members of one device's object in `status --json` (index, uuid,
 * bytes, SM limit, duty, delivered and asked share), between the caller's braces; `top
 * --json` adds its own after them. */
void status_json_device_members(struct json_writer *writer, const struct gpucap_device_view *device);

/* "pid", "host_pid" (null when unknown) and "host_pid_source" of one
 * process, as both `status --json` and `top --json` write them. */
void status_json_pid_members(struct json_writer *writer, const struct gpucap_process_view *process);

/* A member "key": unix_ns, or null when unix_ns is 0 (never). */
void status_json_member_time(struct json_writer *writer, const char *key, uint64_t unix_ns);

/* "index", "charged_bytes" and "in_use_bytes" of one process on one device
 * (device: its position in snapshot->devices). */
void status_json_process_device_members(struct json_writer *writer, const struct gpucap_snapshot *snapshot,
                                        uint32_t device, const struct gpucap_process_device_view *usage);

/* The text both `status` and `top` show for a device. */
enum { STATUS_DEVICE_CELLS = 7 }; /* DEVICE, UUID, LIMIT, CHARGED, IN USE, PEAK, SM LIMIT */
struct status_device_text {
	char index[16], uuid[GPUCAP_UUID_MAX + 1], limit[CLI_CELL_MAX], charged[CLI_CELL_MAX],
	    in_use[CLI_CELL_MAX], peak[CLI_CELL_MAX], sm[CLI_CELL_MAX];
	char share[CLI_CELL_MAX]; /* SM DELIVERED: "n/a" until known */
	char asked[CLI_CELL_MAX]; /* SM ASKED: "n/a" until known */
};

/* Fill text from device and point cells[0 .. STATUS_DEVICE_CELLS - 1] at it. */
void status_device_cells(const struct gpucap_device_view *device, struct status_device_text *text,
                         const char **cells);

/* The throttle duty shown for a device: 1 (1000000 ppm) when it has no SM
 * limit, since nothing is held back then; the region's figure otherwise. */
uint32_t status_sm_duty_ppm(const struct gpucap_device_view *device);

#endif
