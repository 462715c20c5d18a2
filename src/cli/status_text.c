/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap status, for people: aligned tables. */
#define _POSIX_C_SOURCE 200809L

#include "format.h"
#include "status_render.h"
#include "table.h"
#include "utf8.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

const char *status_format_ppm_percent(uint32_t ppm, char *buf, size_t len)
{
	uint64_t tenths = ((uint64_t)ppm + 500) / 1000; /* of a percent */
	snprintf(buf, len, "%" PRIu64 ".%u%%", tenths / 10, (unsigned)(tenths % 10));
	return buf;
}

const char *status_format_age(uint64_t unix_ns, uint64_t now_ns, char *buf, size_t len)
{
	if (unix_ns == 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	uint64_t age_ns = now_ns > unix_ns ? now_ns - unix_ns : 0;
	uint64_t s = age_ns / 1000000000u;
	if (s < 60)
		snprintf(buf, len, "%" PRIu64 ".%" PRIu64 "s ago", s, (age_ns / 100000000u) % 10);
	else if (s < 3600)
		snprintf(buf, len, "%" PRIu64 "m%02" PRIu64 "s ago", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%" PRIu64 "h%02" PRIu64 "m ago", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%" PRIu64 "d%02" PRIu64 "h ago", s / 86400, s % 86400 / 3600);
	return buf;
}

static uint64_t now_unix_ns(void)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

void status_device_cells(const struct gpucap_device_view *d, struct status_device_text *text,
                         const char **cells)
{
	snprintf(text->index, sizeof(text->index), "%d", d->index);
	utf8_printable(d->uuid, GPUCAP_UUID_MAX, text->uuid, sizeof(text->uuid));
	snprintf(text->share, sizeof(text->share), "n/a");
	if (d->sm_share_known)
		status_format_ppm_percent(d->sm_share_ppm, text->share, sizeof(text->share));
	snprintf(text->asked, sizeof(text->asked), "n/a");
	if (d->sm_asked_known)
		status_format_ppm_percent(d->sm_asked_ppm, text->asked, sizeof(text->asked));
	cells[0] = text->index;
	cells[1] = text->uuid;
	cells[2] = cli_format_limit(d->limit_bytes, text->limit, sizeof(text->limit));
	cells[3] = cli_format_bytes(d->charged_bytes, text->charged, sizeof(text->charged));
	cells[4] = cli_format_bytes(d->in_use_bytes, text->in_use, sizeof(text->in_use));
	cells[5] = cli_format_bytes(d->peak_bytes, text->peak, sizeof(text->peak));
	cells[6] = cli_format_sm_limit(d->sm_limit, text->sm, sizeof(text->sm));
}

static bool render_devices(const struct gpucap_snapshot *snapshot, FILE *out)
{
	if (snapshot->device_count == 0) {
		fputs("devices: none registered yet\n", out);
		return true;
	}
	static const char *const headers[] = {"DEVICE",       "UUID",     "LIMIT",    "CHARGED",
	                                      "IN USE",       "PEAK",     "SM LIMIT", "SM DUTY",
	                                      "SM DELIVERED", "SM ASKED", "REFUSED"};
	struct cli_table *table = cli_table_new(11, headers, "rlrrrrrrrrr");
	if (!table)
		return false;
	bool ok = true;
	for (uint32_t i = 0; i < snapshot->device_count && ok; i++) {
		const struct gpucap_device_view *d = &snapshot->devices[i];
		struct status_device_text text;
		const char *cells[STATUS_DEVICE_CELLS + 4];
		status_device_cells(d, &text, cells);
		char duty[CLI_CELL_MAX] = "-", refused[24];
		/* No SM limit: no throttle, so no duty to show. */
		if (!cli_sm_limit_is_none(d->sm_limit))
			status_format_ppm_percent(d->sm_duty_ppm, duty, sizeof(duty));
		snprintf(refused, sizeof(refused), "%" PRIu64, d->refusals_total);
		cells[STATUS_DEVICE_CELLS] = duty;
		cells[STATUS_DEVICE_CELLS + 1] = text.share;
		cells[STATUS_DEVICE_CELLS + 2] = text.asked;
		cells[STATUS_DEVICE_CELLS + 3] = refused;
		ok = cli_table_add_row(table, cells);
	}
	if (ok)
		cli_table_print(table, out);
	cli_table_free(table);
	return ok;
}

/* One row per slot; a slot that holds memory on several devices gets one
 * continuation row per further device, with the slot columns left blank. */
static bool add_process_rows(struct cli_table *table, const struct gpucap_process_view *p,
                             const struct gpucap_snapshot *snapshot, uint64_t now_ns)
{
	uint32_t device_count = snapshot->device_count;
	char slot[16], pid[16], host_pid[64], comm[GPUCAP_COMM_MAX + 1], last_kernel[CLI_CELL_MAX],
	    refused[24];
	snprintf(refused, sizeof(refused), "%" PRIu64, p->refusals);
	status_format_age(p->last_launch_unix_ns, now_ns, last_kernel, sizeof(last_kernel));
	snprintf(slot, sizeof(slot), "%u", (unsigned)p->slot);
	snprintf(pid, sizeof(pid), "%d", (int)p->pid);
	if (p->host_pid > 0 && p->host_pid_source != GPUCAP_HOST_PID_UNKNOWN)
		snprintf(host_pid, sizeof(host_pid), "%d (%s)", (int)p->host_pid,
		         cli_host_pid_source_text(p->host_pid_source));
	else
		snprintf(host_pid, sizeof(host_pid), "unknown");
	utf8_printable(p->comm, GPUCAP_COMM_MAX, comm, sizeof(comm));
	const char *state = p->alive ? "alive" : "dead, awaiting reclaim";

	bool first = true;
	for (uint32_t i = 0; i < device_count || first; i++) {
		char device[16] = "-", charged[CLI_CELL_MAX] = "0 B", in_use[CLI_CELL_MAX] = "0 B",
		     context[CLI_CELL_MAX] = "0 B", module[CLI_CELL_MAX] = "0 B", data[CLI_CELL_MAX] = "0 B",
		     driver[CLI_CELL_MAX] = "0 B";
		if (i < device_count) {
			const struct gpucap_process_device_view *d = cli_process_device(snapshot, p, i);
			if (!d || !cli_process_touches_device(d))
				continue;
			snprintf(device, sizeof(device), "%d", snapshot->devices[i].index);
			cli_format_bytes(d->charged_bytes, charged, sizeof(charged));
			cli_format_bytes(d->in_use_bytes, in_use, sizeof(in_use));
			cli_format_signed_bytes(d->kind_bytes[GPUCAP_KIND_CONTEXT], context, sizeof(context));
			cli_format_signed_bytes(d->kind_bytes[GPUCAP_KIND_MODULE], module, sizeof(module));
			cli_format_signed_bytes(d->kind_bytes[GPUCAP_KIND_DATA], data, sizeof(data));
			cli_format_signed_bytes(d->kind_bytes[GPUCAP_KIND_DRIVER], driver, sizeof(driver));
		}
		const char *cells[] = {
		    first ? slot : "",
		    first ? pid : "",
		    first ? host_pid : "",
		    first ? state : "",
		    first ? comm : "",
		    first ? last_kernel : "",
		    first ? refused : "",
		    device,
		    charged,
		    in_use,
		    context,
		    module,
		    data,
		    driver,
		};
		if (!cli_table_add_row(table, cells))
			return false;
		first = false;
	}
	return true;
}

static bool render_processes(const struct gpucap_snapshot *snapshot, FILE *out)
{
	if (snapshot->process_count == 0) {
		fputs("processes: none attached\n", out);
		return true;
	}
	static const char *const headers[] = {"SLOT",        "PID",     "HOST PID", "STATE",   "COMMAND",
	                                      "LAST KERNEL", "REFUSED", "DEVICE",   "CHARGED", "IN USE",
	                                      "CONTEXT",     "MODULE",  "DATA",     "DRIVER"};
	struct cli_table *table = cli_table_new(14, headers, "rrlllrrrrrrrrr");
	if (!table)
		return false;
	bool ok = true;
	uint64_t now_ns = now_unix_ns();
	for (uint32_t i = 0; i < snapshot->process_count && ok; i++)
		ok = add_process_rows(table, &snapshot->processes[i], snapshot, now_ns);
	if (ok)
		cli_table_print(table, out);
	cli_table_free(table);
	return ok;
}

static void render_summary(const struct gpucap_snapshot *snapshot, FILE *out)
{
	uint32_t dead = 0;
	for (uint32_t i = 0; i < snapshot->process_count; i++) {
		if (!snapshot->processes[i].alive)
			dead++;
	}
	char created[64], reclaimed[CLI_CELL_MAX];
	char path[sizeof(snapshot->path)];
	utf8_printable(snapshot->path, sizeof(snapshot->path), path, sizeof(path));
	fprintf(out, "region:    %s (format %u, created %s)\n", path, (unsigned)snapshot->format_version,
	        cli_format_time(snapshot->created_unix_ns, created, sizeof(created)));
	fprintf(out, "slots:     %u in use of %u, %u dead awaiting reclaim\n",
	        (unsigned)snapshot->process_count, (unsigned)snapshot->slot_capacity, (unsigned)dead);
	fprintf(out, "devices:   %u registered of %u\n", (unsigned)snapshot->device_count,
	        (unsigned)snapshot->device_capacity);
	fprintf(out, "reclaimed: %llu dead slots, %s since the region was created\n",
	        (unsigned long long)snapshot->reclaimed_slots_total,
	        cli_format_bytes(snapshot->reclaimed_bytes_total, reclaimed, sizeof(reclaimed)));
	if (!snapshot->consistent)
		fputs(
		    "note:      the region changed while it was read; totals may be off by in-flight reservations\n",
		    out);
	if (dead)
		fputs("hint:      run 'gpucap reap' to return the charges of dead processes now\n", out);
}

bool status_render_text(const struct gpucap_snapshot *snapshot, FILE *out)
{
	render_summary(snapshot, out);
	fputc('\n', out);
	if (!render_devices(snapshot, out))
		return false;
	fputc('\n', out);
	return render_processes(snapshot, out);
}
