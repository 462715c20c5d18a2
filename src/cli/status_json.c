/* SPDX-License-Identifier: Apache-2.0 */
#include "format.h"
#include "json.h"
#include "status_render.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Bump when a field changes meaning or disappears; adding fields does not. */
#define STATUS_SCHEMA_VERSION 1

void status_json_member_decimal(struct json_writer *w, const char *key, uint64_t value, unsigned decimals)
{
	if (decimals > 18)
		decimals = 18;
	uint64_t scale = 1;
	for (unsigned i = 0; i < decimals; i++)
		scale *= 10;
	char digits[48];
	uint64_t whole = value / scale, frac = value % scale;
	int n = snprintf(digits, sizeof(digits), "%" PRIu64, whole);
	if (frac && n > 0) {
		char tail[24];
		snprintf(tail, sizeof(tail), "%0*" PRIu64, (int)decimals, frac);
		size_t end = strlen(tail);
		while (end > 0 && tail[end - 1] == '0')
			tail[--end] = '\0';
		snprintf(digits + n, sizeof(digits) - (size_t)n, ".%s", tail);
	}
	/* The writer has no number type with a fraction: write the member's
	 * value in place of the one json_key leaves pending. */
	json_key(w, key);
	if (!w->after_key)
		return; /* misuse, recorded by json_key */
	w->after_key = false;
	fputs(digits, w->out);
}

uint32_t status_sm_duty_ppm(const struct gpucap_device_view *d)
{
	return cli_sm_limit_is_none(d->sm_limit) ? 1000000u : d->sm_duty_ppm;
}

void status_json_device_members(struct json_writer *w, const struct gpucap_device_view *d)
{
	json_member_int(w, "index", d->index);
	json_key(w, "uuid");
	json_string_bounded(w, d->uuid, GPUCAP_UUID_MAX);
	json_key(w, "limit_bytes");
	if (cli_limit_is_unlimited(d->limit_bytes))
		json_null(w);
	else
		json_uint(w, d->limit_bytes);
	json_member_uint(w, "charged_bytes", d->charged_bytes);
	json_member_uint(w, "in_use_bytes", d->in_use_bytes);
	json_member_uint(w, "peak_bytes", d->peak_bytes);
	json_key(w, "sm_limit_percent");
	if (cli_sm_limit_is_none(d->sm_limit))
		json_null(w);
	else
		json_uint(w, d->sm_limit);
	status_json_member_decimal(w, "sm_duty_ratio", status_sm_duty_ppm(d), 6);
	if (d->sm_share_known) {
		status_json_member_decimal(w, "sm_share_ratio", d->sm_share_ppm, 6);
	} else {
		json_key(w, "sm_share_ratio");
		json_null(w);
	}
	json_key(w, "sm_share_source");
	if (d->sm_share_known)
		json_string(w, cli_sm_source_key(d->sm_share_source));
	else
		json_null(w);
	if (d->sm_asked_known) {
		status_json_member_decimal(w, "sm_asked_ratio", d->sm_asked_ppm, 6);
	} else {
		json_key(w, "sm_asked_ratio");
		json_null(w);
	}
	json_member_uint(w, "refusals_total", d->refusals_total);
}

static void render_device(struct json_writer *w, const struct gpucap_device_view *d)
{
	json_object_begin(w);
	status_json_device_members(w, d);
	json_object_end(w);
}

void status_json_pid_members(struct json_writer *w, const struct gpucap_process_view *p)
{
	json_member_int(w, "pid", p->pid);
	json_key(w, "host_pid");
	if (p->host_pid > 0 && p->host_pid_source != GPUCAP_HOST_PID_UNKNOWN)
		json_int(w, p->host_pid);
	else
		json_null(w);
	json_member_string(w, "host_pid_source", cli_host_pid_source_key(p->host_pid_source));
}

void status_json_member_time(struct json_writer *w, const char *key, uint64_t unix_ns)
{
	json_key(w, key);
	if (unix_ns)
		json_uint(w, unix_ns);
	else
		json_null(w);
}

void status_json_process_device_members(struct json_writer *w, const struct gpucap_snapshot *snapshot,
                                        uint32_t device, const struct gpucap_process_device_view *d)
{
	json_member_int(w, "index", snapshot->devices[device].index);
	json_member_uint(w, "charged_bytes", d->charged_bytes);
	json_member_uint(w, "in_use_bytes", d->in_use_bytes);
}

static void render_process(struct json_writer *w, const struct gpucap_process_view *p,
                           const struct gpucap_snapshot *snapshot)
{
	json_object_begin(w);
	json_member_uint(w, "slot", p->slot);
	json_member_uint(w, "generation", p->generation);
	status_json_pid_members(w, p);
	json_member_bool(w, "alive", p->alive);
	json_key(w, "comm");
	json_string_bounded(w, p->comm, GPUCAP_COMM_MAX);
	json_member_uint(w, "started_unix_ns", p->started_unix_ns);
	status_json_member_time(w, "last_launch_unix_ns", p->last_launch_unix_ns);
	json_member_uint(w, "refusals", p->refusals);
	json_key(w, "devices");
	json_array_begin(w);
	for (uint32_t i = 0; i < snapshot->device_count; i++) {
		const struct gpucap_process_device_view *d = cli_process_device(snapshot, p, i);
		if (!d)
			continue;
		json_object_begin(w);
		status_json_process_device_members(w, snapshot, i, d);
		json_member_int(w, "context_bytes", d->kind_bytes[GPUCAP_KIND_CONTEXT]);
		json_member_int(w, "module_bytes", d->kind_bytes[GPUCAP_KIND_MODULE]);
		json_member_int(w, "data_bytes", d->kind_bytes[GPUCAP_KIND_DATA]);
		json_member_int(w, "driver_bytes", d->kind_bytes[GPUCAP_KIND_DRIVER]);
		json_object_end(w);
	}
	json_array_end(w);
	json_object_end(w);
}

bool status_render_json(const struct gpucap_snapshot *snapshot, FILE *out)
{
	struct json_writer w;
	json_init(&w, out);
	json_object_begin(&w);
	json_member_uint(&w, "schema_version", STATUS_SCHEMA_VERSION);
	json_key(&w, "path");
	json_string_bounded(&w, snapshot->path, sizeof(snapshot->path));
	json_member_uint(&w, "format_version", snapshot->format_version);
	json_member_uint(&w, "slot_capacity", snapshot->slot_capacity);
	json_member_uint(&w, "device_capacity", snapshot->device_capacity);
	json_member_uint(&w, "created_unix_ns", snapshot->created_unix_ns);
	json_member_bool(&w, "consistent", snapshot->consistent);
	json_member_uint(&w, "reclaimed_slots_total", snapshot->reclaimed_slots_total);
	json_member_uint(&w, "reclaimed_bytes_total", snapshot->reclaimed_bytes_total);
	json_key(&w, "devices");
	json_array_begin(&w);
	for (uint32_t i = 0; i < snapshot->device_count; i++)
		render_device(&w, &snapshot->devices[i]);
	json_array_end(&w);
	json_key(&w, "processes");
	json_array_begin(&w);
	for (uint32_t i = 0; i < snapshot->process_count; i++)
		render_process(&w, &snapshot->processes[i], snapshot);
	json_array_end(&w);
	json_object_end(&w);
	return json_finish(&w);
}
