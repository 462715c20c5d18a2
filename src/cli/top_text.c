/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap top: the text view. With --dir it opens with one line per GPU
 * (every region on it added up: caps, use, processes), then shows each
 * region. Columns that do not fit the terminal are left out, least useful
 * first. */
#define _POSIX_C_SOURCE 200809L

#include "format.h"
#include "status_render.h"
#include "table.h"
#include "top.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

const char *const top_sort_names[TOP_SORT_COUNT] = {"memory", "pid", "command", "kernel"};

uint64_t top_process_memory(const struct gpucap_snapshot *s, const struct gpucap_process_view *p)
{
	uint64_t total = 0;
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct gpucap_process_device_view *d = cli_process_device(s, p, i);
		if (d)
			total += d->in_use_bytes;
	}
	return total;
}

/* ---- Sorting -------------------------------------------------------------- */

/* qsort has no context argument; the CLI sorts one snapshot at a time. */
static const struct gpucap_snapshot *sorting;
static enum top_sort sorting_by;

static int compare_u64_desc(uint64_t a, uint64_t b)
{
	return a > b ? -1 : a < b ? 1 : 0;
}

static int compare_processes(const void *left, const void *right)
{
	const struct gpucap_process_view *a = left, *b = right;
	int order = 0;
	switch (sorting_by) {
	case TOP_SORT_MEMORY:
		order = compare_u64_desc(top_process_memory(sorting, a), top_process_memory(sorting, b));
		break;
	case TOP_SORT_KERNEL:
		order = compare_u64_desc(a->last_launch_unix_ns, b->last_launch_unix_ns);
		break;
	case TOP_SORT_COMMAND:
		order = strncmp(a->comm, b->comm, GPUCAP_COMM_MAX);
		break;
	case TOP_SORT_PID:
	case TOP_SORT_COUNT:
		break;
	}
	if (order == 0)
		order = a->pid < b->pid ? -1 : a->pid > b->pid ? 1 : 0;
	return order ? order : (a->slot < b->slot ? -1 : a->slot > b->slot ? 1 : 0);
}

void top_sort_processes(struct top_frame *frame, enum top_sort sort)
{
	for (size_t i = 0; i < frame->count; i++) {
		struct gpucap_snapshot *s = frame->regions[i].snapshot;
		if (!s || s->process_count < 2)
			continue;
		sorting = s;
		sorting_by = sort;
		qsort(s->processes, s->process_count, sizeof(*s->processes), compare_processes);
		sorting = NULL;
	}
}

/* ---- Fitting -------------------------------------------------------------- */

/* Hide columns in the order given until the table fits width (0: any). */
static void fit_table(struct cli_table *table, size_t width, const unsigned *drop_order, size_t drops)
{
	for (size_t i = 0; width && i < drops && cli_table_width(table) > width; i++)
		cli_table_hide(table, drop_order[i]);
}

/* ---- Per-GPU summary ------------------------------------------------------ */

struct gpu_total {
	char uuid[GPUCAP_UUID_MAX + 1];
	unsigned regions;
	unsigned uncapped; /* regions without a memory cap on it */
	uint64_t caps;     /* sum of the finite caps */
	uint64_t charged;
	uint64_t in_use;
	unsigned alive, dead; /* processes holding memory on it */
	unsigned sm_capped;
	uint64_t sm_caps; /* sum of the SM caps, percent */
	unsigned share_known;
	uint64_t share_ppm; /* sum of the delivered shares */
	unsigned asked_known;
	uint64_t asked_ppm; /* sum of the asked shares: above 100% when the GPU is oversubscribed */
};

static struct gpu_total *find_gpu(struct gpu_total *gpus, size_t *count, size_t max, const char *uuid)
{
	for (size_t i = 0; i < *count; i++) {
		if (strncmp(gpus[i].uuid, uuid, GPUCAP_UUID_MAX) == 0)
			return &gpus[i];
	}
	if (*count == max)
		return NULL;
	struct gpu_total *g = &gpus[(*count)++];
	memset(g, 0, sizeof(*g));
	memcpy(g->uuid, uuid, GPUCAP_UUID_MAX);
	g->uuid[GPUCAP_UUID_MAX] = '\0';
	return g;
}

static void add_region(struct gpu_total *g, const struct gpucap_snapshot *s, uint32_t i)
{
	const struct gpucap_device_view *d = &s->devices[i];
	g->regions++;
	if (cli_limit_is_unlimited(d->limit_bytes))
		g->uncapped++;
	else
		g->caps += d->limit_bytes;
	g->charged += d->charged_bytes;
	g->in_use += d->in_use_bytes;
	if (!cli_sm_limit_is_none(d->sm_limit)) {
		g->sm_capped++;
		g->sm_caps += d->sm_limit;
	}
	if (d->sm_share_known) {
		g->share_known++;
		g->share_ppm += d->sm_share_ppm;
	}
	if (d->sm_asked_known) {
		g->asked_known++;
		g->asked_ppm += d->sm_asked_ppm;
	}
	for (uint32_t p = 0; p < s->process_count; p++) {
		const struct gpucap_process_device_view *pd = cli_process_device(s, &s->processes[p], i);
		if (pd && cli_process_touches_device(pd)) {
			if (s->processes[p].alive)
				g->alive++;
			else
				g->dead++;
		}
	}
}

/* A GPU UUID cut to its first 8 hex digits, for narrow terminals: unique
 * enough to tell a node's GPUs apart. */
static void short_uuid(char *uuid)
{
	const size_t keep = 12; /* "GPU-" and 8 hex digits */
	if (strlen(uuid) > keep + 1)
		strcpy(uuid + keep, "\u2026");
}

static bool render_summary(const struct top_frame *frame, size_t width, FILE *out)
{
	enum { MAX_GPUS = 64 };
	struct gpu_total gpus[MAX_GPUS];
	size_t count = 0;
	for (size_t r = 0; r < frame->count; r++) {
		const struct gpucap_snapshot *s = frame->regions[r].snapshot;
		for (uint32_t i = 0; s && i < s->device_count; i++) {
			struct gpu_total *g = find_gpu(gpus, &count, MAX_GPUS, s->devices[i].uuid);
			if (g)
				add_region(g, s, i);
		}
	}
	if (count == 0)
		return true;
	static const char *const headers[] = {"GPU",       "REGIONS", "CAPS",         "CHARGED", "IN USE",
	                                      "PROCESSES", "SM CAPS", "SM DELIVERED", "SM ASKED"};
	struct cli_table *table = cli_table_new(9, headers, "lrrrrrrrr");
	if (!table)
		return false;
	bool ok = true;
	for (size_t i = 0; i < count && ok; i++) {
		const struct gpu_total *g = &gpus[i];
		char uuid[GPUCAP_UUID_MAX * 3 + 1], regions[16], caps[CLI_CELL_MAX], charged[CLI_CELL_MAX],
		    in_use[CLI_CELL_MAX], processes[48], sm[CLI_CELL_MAX], share[CLI_CELL_MAX] = "n/a";
		char asked[CLI_CELL_MAX] = "n/a";
		utf8_printable(g->uuid, GPUCAP_UUID_MAX, uuid, sizeof(uuid));
		if (width && width < 110)
			short_uuid(uuid);
		snprintf(regions, sizeof(regions), "%u", g->regions);
		cli_format_bytes(g->caps, caps, sizeof(caps));
		if (g->uncapped == g->regions)
			snprintf(caps, sizeof(caps), "unlimited");
		else if (g->uncapped)
			snprintf(caps + strlen(caps), sizeof(caps) - strlen(caps), " +%u unlimited",
			         g->uncapped);
		if (g->dead)
			snprintf(processes, sizeof(processes), "%u (+%u dead)", g->alive, g->dead);
		else
			snprintf(processes, sizeof(processes), "%u", g->alive);
		if (g->sm_capped)
			snprintf(sm, sizeof(sm), "%llu%%", (unsigned long long)g->sm_caps);
		else
			snprintf(sm, sizeof(sm), "none");
		if (g->share_known)
			status_format_ppm_percent((uint32_t)(g->share_ppm > 1000000 ? 1000000 : g->share_ppm),
			                          share, sizeof(share));
		if (g->asked_known)
			status_format_ppm_percent(
			    (uint32_t)(g->asked_ppm > UINT32_MAX ? UINT32_MAX : g->asked_ppm), asked,
			    sizeof(asked));
		const char *cells[] = {uuid,
		                       regions,
		                       caps,
		                       cli_format_bytes(g->charged, charged, sizeof(charged)),
		                       cli_format_bytes(g->in_use, in_use, sizeof(in_use)),
		                       processes,
		                       sm,
		                       share,
		                       asked};
		ok = cli_table_add_row(table, cells);
	}
	static const unsigned drops[] = {3, 8, 7, 6, 1};
	fit_table(table, width, drops, sizeof(drops) / sizeof(drops[0]));
	if (ok)
		cli_table_print(table, out);
	cli_table_free(table);
	return ok;
}

/* ---- Regions -------------------------------------------------------------- */

static bool render_devices(const struct gpucap_snapshot *s, size_t width, FILE *out)
{
	static const char *const headers[] = {"DEVICE", "UUID",     "LIMIT",        "CHARGED", "IN USE",
	                                      "PEAK",   "SM LIMIT", "SM DELIVERED", "SM ASKED"};
	struct cli_table *table = cli_table_new(9, headers, "rlrrrrrrr");
	if (!table)
		return false;
	bool ok = true;
	for (uint32_t i = 0; i < s->device_count && ok; i++) {
		struct status_device_text text;
		const char *cells[STATUS_DEVICE_CELLS + 2];
		status_device_cells(&s->devices[i], &text, cells);
		cells[STATUS_DEVICE_CELLS] = text.share;
		cells[STATUS_DEVICE_CELLS + 1] = text.asked;
		ok = cli_table_add_row(table, cells);
	}
	/* The UUID goes before the shares: the DEVICE index and the region's
	 * label still name the device, and the shares are why top is open. */
	static const unsigned drops[] = {5, 3, 1, 8, 7};
	fit_table(table, width, drops, sizeof(drops) / sizeof(drops[0]));
	if (ok)
		cli_table_print(table, out);
	cli_table_free(table);
	return ok;
}

static bool render_processes(const struct gpucap_snapshot *s, uint64_t now_ns, size_t width, FILE *out)
{
	static const char *const headers[] = {"PID",   "HOST PID", "COMMAND",    "MEMORY",
	                                      "STATE", "DEVICES",  "LAST KERNEL"};
	struct cli_table *table = cli_table_new(7, headers, "rrlrllr");
	if (!table)
		return false;
	bool ok = true;
	for (uint32_t i = 0; i < s->process_count && ok; i++) {
		const struct gpucap_process_view *p = &s->processes[i];
		char pid[16], host_pid[16], comm[GPUCAP_COMM_MAX * 3 + 1], memory[CLI_CELL_MAX], devices[256],
		    last_kernel[CLI_CELL_MAX];
		snprintf(pid, sizeof(pid), "%d", (int)p->pid);
		if (p->host_pid > 0 && p->host_pid_source != GPUCAP_HOST_PID_UNKNOWN)
			snprintf(host_pid, sizeof(host_pid), "%d", (int)p->host_pid);
		else
			snprintf(host_pid, sizeof(host_pid), "unknown");
		utf8_printable(p->comm, GPUCAP_COMM_MAX, comm, sizeof(comm));
		size_t used = 0;
		devices[0] = '\0';
		for (uint32_t k = 0; k < s->device_count; k++) {
			const struct gpucap_process_device_view *d = cli_process_device(s, p, k);
			if (!d || !cli_process_touches_device(d) || used >= sizeof(devices) - 16)
				continue;
			used += (size_t)snprintf(devices + used, sizeof(devices) - used, "%s%d",
			                         used ? "," : "", s->devices[k].index);
		}
		const char *cells[] = {
		    pid,
		    host_pid,
		    comm,
		    cli_format_bytes(top_process_memory(s, p), memory, sizeof(memory)),
		    p->alive ? "alive" : "dead",
		    devices[0] ? devices : "-",
		    status_format_age(p->last_launch_unix_ns, now_ns, last_kernel, sizeof(last_kernel))};
		ok = cli_table_add_row(table, cells);
	}
	static const unsigned drops[] = {1, 6, 5};
	fit_table(table, width, drops, sizeof(drops) / sizeof(drops[0]));
	if (ok)
		cli_table_print(table, out);
	cli_table_free(table);
	return ok;
}

/* Display columns of UTF-8 text. */
static size_t columns_of(const char *text)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++)
		n += (*p & 0xC0) != 0x80;
	return n;
}

/* Byte offset of display column n of text. */
static size_t offset_of_column(const char *text, size_t n)
{
	size_t i = 0;
	for (size_t seen = 0; text[i]; i++) {
		if (((unsigned char)text[i] & 0xC0) != 0x80 && seen++ == n)
			break;
	}
	return i;
}

/* Cut the middle of a region's label so that its line fits width: the
 * start (the container) and the end (the file) say the most. */
static void fit_label(char *label, size_t width, size_t others)
{
	size_t have = columns_of(label);
	if (!width || others + have <= width || width < others + 12)
		return;
	size_t budget = width - others - 1; /* one column for the ellipsis */
	size_t head = offset_of_column(label, budget / 2);
	size_t tail = offset_of_column(label, have - (budget - budget / 2));
	memmove(label + head + 3, label + tail, strlen(label + tail) + 1);
	memcpy(label + head, "\u2026", 3);
}

static bool render_region(const struct top_region *r, uint64_t now_ns, size_t width, FILE *out)
{
	char label[sizeof(r->path) * 3];
	utf8_printable(r->label, sizeof(r->path), label, sizeof(label));
	if (!r->snapshot) {
		char error[sizeof(r->error) * 3];
		utf8_printable(r->error, sizeof(r->error), error, sizeof(error));
		fprintf(out, "region %s: cannot read: %s\n", label, error);
		return true;
	}
	const struct gpucap_snapshot *s = r->snapshot;
	uint32_t dead = 0;
	for (uint32_t i = 0; i < s->process_count; i++)
		dead += !s->processes[i].alive;
	char rest[160];
	snprintf(rest, sizeof(rest), ": %u processes (%u dead), %u devices%s", (unsigned)s->process_count,
	         (unsigned)dead, (unsigned)s->device_count, s->consistent ? "" : " (changed while read)");
	fit_label(label, width, strlen("region ") + strlen(rest));
	fprintf(out, "region %s%s\n", label, rest);
	if (s->device_count && !render_devices(s, width, out))
		return false;
	if (s->process_count && !render_processes(s, now_ns, width, out))
		return false;
	return true;
}

/* ---- The frame ------------------------------------------------------------ */

/* Copy text to out, each line cut to width display columns (UTF-8 aware)
 * and at most height lines, the last saying how many were left out. */
static void emit_fitted(const char *text, size_t width, size_t height, FILE *out)
{
	size_t lines = 0;
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	size_t shown = 0;
	for (const char *line = text; *line; shown++) {
		const char *end = strchr(line, '\n');
		size_t len = end ? (size_t)(end - line) : strlen(line);
		if (height && shown + 1 == height && lines > height) {
			fprintf(out, "... %zu more lines (a wider or taller terminal shows them)\n",
			        lines - shown);
			return;
		}
		size_t cut = len, columns = 0;
		for (size_t i = 0; width && i < len; i++) {
			if (((unsigned char)line[i] & 0xC0) != 0x80 && columns++ == width) {
				cut = i;
				break;
			}
		}
		fwrite(line, 1, cut, out);
		fputc('\n', out);
		line += len + (end ? 1 : 0);
	}
}

static bool render_body(const struct top_frame *frame, const struct top_view *view, FILE *out)
{
	char when[64];
	cli_format_time(frame->time_ns, when, sizeof(when));
	if (view->live && view->keys)
		fprintf(out, "gpucap top  %s  every %gs  sort: %s  (s: sort, q: quit)\n\n", when,
		        view->interval, top_sort_names[view->sort]);
	else if (view->live)
		fprintf(out, "gpucap top  %s  every %gs, Ctrl-C to quit\n\n", when, view->interval);
	else
		fprintf(out, "gpucap top  %s\n\n", when);
	if (frame->count == 0)
		fprintf(out, "no gpucap regions in %s\n", view->dir ? view->dir : "-");
	if (view->dir && frame->count) {
		if (!render_summary(frame, view->width, out))
			return false;
		fputc('\n', out);
	}
	for (size_t i = 0; i < frame->count; i++) {
		if (i)
			fputc('\n', out);
		if (!render_region(&frame->regions[i], frame->time_ns, view->width, out))
			return false;
	}
	if (frame->not_regions == 1)
		fprintf(out, "\n(1 other file below %s is not a gpucap region)\n", view->dir);
	else if (frame->not_regions)
		fprintf(out, "\n(%zu other files below %s are not gpucap regions)\n", frame->not_regions,
		        view->dir);
	if (frame->truncated)
		fprintf(
		    out,
		    "(stopped at %d directory levels or %d files below %s: give a directory closer to the regions)\n",
		    TOP_SCAN_MAX_DEPTH, TOP_SCAN_MAX_FILES, view->dir);
	return true;
}

bool top_render_text(const struct top_frame *frame, const struct top_view *view, FILE *out)
{
	char *text = NULL;
	size_t len = 0;
	FILE *buffer = open_memstream(&text, &len);
	if (!buffer)
		return false;
	bool ok = render_body(frame, view, buffer);
	if (fclose(buffer) != 0)
		ok = false;
	if (ok && text)
		emit_fitted(text, view->width, view->height, out);
	free(text);
	return ok;
}
