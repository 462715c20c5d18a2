/* gpucap top: a refreshing view of one region, or of every region file in a
 * directory. Observer attach only: looking never creates or changes a file. */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"
#include "format.h"
#include "json.h"
#include "options.h"
#include "region_file.h"
#include "status_render.h"
#include "table.h"
#include "utf8.h"

#include <region_reader.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { OPT_JSON, OPT_FILE, OPT_DIR, OPT_INTERVAL, OPT_ONCE };

static const struct cli_option top_options[] = {
    {"json", 0, false, OPT_JSON},          {"file", 'f', true, OPT_FILE}, {"dir", 0, true, OPT_DIR},
    {"interval", 'n', true, OPT_INTERVAL}, {"once", 0, false, OPT_ONCE},
};

struct top_request {
	bool json;
	bool once;
	const char *file;
	const char *dir;
	double interval;
};

/* One region of a frame: attached and copied, or why not. */
struct top_region {
	char path[4096];
	struct gpucap_snapshot *snapshot; /* NULL: see error */
	char error[1024];
};

struct top_frame {
	uint64_t time_ns;
	struct top_region *regions;
	size_t count;
	size_t not_regions; /* --dir: files that are not gpucap regions */
};

static volatile sig_atomic_t stop_requested;

static void on_signal(int signo)
{
	(void)signo;
	stop_requested = 1;
}

static int parse_request(int argc, char **argv, struct top_request *req, bool *done)
{
	const char *command = cli_command_top.name;
	struct cli_parser parser;
	cli_parser_init(&parser, command, argc, argv, false);
	memset(req, 0, sizeof(*req));
	req->interval = 1.0;
	*done = false;
	for (;;) {
		const char *value;
		int id = cli_next_option(&parser, top_options, sizeof(top_options) / sizeof(top_options[0]),
		                         &value);
		if (id == CLI_OPT_END)
			break;
		if (id == CLI_OPT_ERROR)
			return CLI_EXIT_USAGE;
		if (id == CLI_OPT_HELP) {
			fputs(cli_command_top.usage, stdout);
			*done = true;
			return cli_finish_output(command);
		}
		switch (id) {
		case OPT_JSON:
			req->json = true;
			break;
		case OPT_ONCE:
			req->once = true;
			break;
		case OPT_FILE:
			req->file = value;
			break;
		case OPT_DIR:
			req->dir = value;
			break;
		case OPT_INTERVAL: {
			char *end;
			errno = 0;
			double seconds = strtod(value, &end);
			if (errno || end == value || *end || !(seconds >= 0.1 && seconds <= 3600))
				return cli_usage_error(
				    command,
				    "invalid --interval value '%s': expected seconds from 0.1 to "
				    "3600, e.g. 2 or 0.5",
				    value);
			req->interval = seconds;
			break;
		}
		}
	}
	if (!cli_no_operands_left(&parser))
		return CLI_EXIT_USAGE;
	if (req->file && req->dir)
		return cli_usage_error(command, "--file and --dir exclude each other; give one");
	return CLI_EXIT_OK;
}

static void frame_free(struct top_frame *frame)
{
	for (size_t i = 0; i < frame->count; i++)
		gpucap_snapshot_free(frame->regions[i].snapshot);
	free(frame->regions);
	memset(frame, 0, sizeof(*frame));
}

static struct top_region *frame_add(struct top_frame *frame, const char *path)
{
	struct top_region *grown = realloc(frame->regions, (frame->count + 1) * sizeof(*grown));
	if (!grown)
		return NULL;
	frame->regions = grown;
	struct top_region *r = &frame->regions[frame->count++];
	memset(r, 0, sizeof(*r));
	snprintf(r->path, sizeof(r->path), "%s", path);
	return r;
}

/* Attach as an observer and copy; false with the reason and status kept. */
static bool load_region(struct top_region *r, gpucap_status *status)
{
	struct reader_attach how = {.observer = true, .init_timeout_ms = 0};
	gpucap_region *region = NULL;
	if (reader_attach(r->path, &how, &region, status, r->error, sizeof(r->error)) != READER_OK)
		return false;
	r->snapshot = reader_snapshot(region, r->error, sizeof(r->error));
	gpucap_region_detach(region);
	return r->snapshot != NULL;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every regular file of dir that attaches as a region, by name. Files that
 * are not gpucap regions are counted; regions that cannot be read are kept
 * with their error. */
static int load_dir(const char *dir, struct top_frame *frame)
{
	const char *command = cli_command_top.name;
	DIR *d = opendir(dir);
	if (!d)
		return cli_failure(command, "cannot read directory %s: %s; give a directory of region files",
		                   dir, strerror(errno));
	char **names = NULL;
	size_t count = 0;
	struct dirent *entry;
	while ((entry = readdir(d)) != NULL) {
		if (entry->d_name[0] == '.')
			continue;
		char **grown = realloc(names, (count + 1) * sizeof(*names));
		char *copy = strdup(entry->d_name);
		if (!grown || !copy) {
			free(copy);
			free(grown ? grown : names);
			closedir(d);
			return cli_failure(command, "out of memory while listing %s", dir);
		}
		names = grown;
		names[count++] = copy;
	}
	closedir(d);
	if (count > 1)
		qsort(names, count, sizeof(*names), compare_names);
	int rc = CLI_EXIT_OK;
	for (size_t i = 0; i < count; i++) {
		char path[4096];
		struct stat st;
		int n = snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		bool regular =
		    n > 0 && (size_t)n < sizeof(path) && lstat(path, &st) == 0 && S_ISREG(st.st_mode);
		/* Audit logs sit next to their regions. */
		size_t len = strlen(names[i]);
		bool audit = len > 6 && strcmp(names[i] + len - 6, ".audit") == 0;
		if (!regular || audit || rc != CLI_EXIT_OK)
			continue;
		struct top_region *r = frame_add(frame, path);
		if (!r) {
			rc = cli_failure(command, "out of memory while reading %s", dir);
			continue;
		}
		gpucap_status status;
		if (!load_region(r, &status) &&
		    (status == GPUCAP_ERR_CORRUPT || status == GPUCAP_ERR_VERSION)) {
			/* Not a gpucap region (or one of another format): not shown. */
			frame->count--;
			frame->not_regions++;
		}
	}
	for (size_t i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return rc;
}

static int load_frame(const struct top_request *req, struct top_frame *frame)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	memset(frame, 0, sizeof(*frame));
	frame->time_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	if (req->dir)
		return load_dir(req->dir, frame);
	struct cli_region_path where = cli_region_path(req->file);
	gpucap_region *region;
	int rc = cli_region_attach(cli_command_top.name, &where, true, &region);
	if (rc != CLI_EXIT_OK)
		return rc;
	struct top_region *r = frame_add(frame, where.path);
	if (!r) {
		gpucap_region_detach(region);
		return cli_failure(cli_command_top.name, "out of memory while reading %s", where.path);
	}
	r->snapshot = cli_region_snapshot(cli_command_top.name, region);
	gpucap_region_detach(region);
	return r->snapshot ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

/* ---- Text ----------------------------------------------------------------- */

static uint64_t process_memory(const struct gpucap_snapshot *s, const struct gpucap_process_view *p)
{
	uint64_t total = 0;
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct gpucap_process_device_view *d = cli_process_device(s, p, i);
		if (d)
			total += d->in_use_bytes;
	}
	return total;
}

static bool render_region_text(const struct top_region *r, uint64_t now_ns, FILE *out)
{
	char path[sizeof(r->path)];
	utf8_printable(r->path, sizeof(r->path), path, sizeof(path));
	if (!r->snapshot) {
		char error[sizeof(r->error)];
		utf8_printable(r->error, sizeof(r->error), error, sizeof(error));
		fprintf(out, "region %s: cannot read: %s\n", path, error);
		return true;
	}
	const struct gpucap_snapshot *s = r->snapshot;
	uint32_t dead = 0;
	for (uint32_t i = 0; i < s->process_count; i++)
		dead += !s->processes[i].alive;
	fprintf(out, "region %s: %u processes (%u dead awaiting reclaim), %u devices%s\n", path,
	        (unsigned)s->process_count, (unsigned)dead, (unsigned)s->device_count,
	        s->consistent ? "" : " (changed while read)");

	bool ok = true;
	if (s->device_count) {
		static const char *const headers[] = {"DEVICE", "UUID", "LIMIT",    "CHARGED",
		                                      "IN USE", "PEAK", "SM LIMIT", "SM SHARE"};
		struct cli_table *table = cli_table_new(8, headers, "rlrrrrrr");
		if (!table)
			return false;
		for (uint32_t i = 0; i < s->device_count && ok; i++) {
			const struct gpucap_device_view *d = &s->devices[i];
			char index[16], uuid[GPUCAP_UUID_MAX + 1], limit[CLI_CELL_MAX], charged[CLI_CELL_MAX],
			    in_use[CLI_CELL_MAX], peak[CLI_CELL_MAX], sm[CLI_CELL_MAX],
			    share[CLI_CELL_MAX] = "n/a";
			snprintf(index, sizeof(index), "%d", d->index);
			utf8_printable(d->uuid, GPUCAP_UUID_MAX, uuid, sizeof(uuid));
			if (d->sm_share_known)
				status_format_ppm_percent(d->sm_share_ppm, share, sizeof(share));
			const char *cells[] = {index,
			                       uuid,
			                       cli_format_limit(d->limit_bytes, limit, sizeof(limit)),
			                       cli_format_bytes(d->charged_bytes, charged, sizeof(charged)),
			                       cli_format_bytes(d->in_use_bytes, in_use, sizeof(in_use)),
			                       cli_format_bytes(d->peak_bytes, peak, sizeof(peak)),
			                       cli_format_sm_limit(d->sm_limit, sm, sizeof(sm)),
			                       share};
			ok = cli_table_add_row(table, cells);
		}
		if (ok)
			cli_table_print(table, out);
		cli_table_free(table);
	}
	if (ok && s->process_count) {
		static const char *const headers[] = {"PID",   "HOST PID", "COMMAND",    "MEMORY",
		                                      "STATE", "DEVICES",  "LAST KERNEL"};
		struct cli_table *table = cli_table_new(7, headers, "rrlrllr");
		if (!table)
			return false;
		for (uint32_t i = 0; i < s->process_count && ok; i++) {
			const struct gpucap_process_view *p = &s->processes[i];
			char pid[16], host_pid[16], comm[GPUCAP_COMM_MAX + 1], memory[CLI_CELL_MAX],
			    devices[256], last_kernel[CLI_CELL_MAX];
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
			const char *cells[] = {pid,
			                       host_pid,
			                       comm,
			                       cli_format_bytes(process_memory(s, p), memory, sizeof(memory)),
			                       p->alive ? "alive" : "dead",
			                       devices[0] ? devices : "-",
			                       status_format_age(p->last_launch_unix_ns, now_ns, last_kernel,
			                                         sizeof(last_kernel))};
			ok = cli_table_add_row(table, cells);
		}
		if (ok)
			cli_table_print(table, out);
		cli_table_free(table);
	}
	return ok;
}

static bool render_text(const struct top_frame *frame, const struct top_request *req, bool live, FILE *out)
{
	char when[64];
	cli_format_time(frame->time_ns, when, sizeof(when));
	if (live)
		fprintf(out, "gpucap top  %s  every %gs, Ctrl-C to quit\n\n", when, req->interval);
	else
		fprintf(out, "gpucap top  %s\n\n", when);
	if (frame->count == 0)
		fprintf(out, "no gpucap regions in %s\n", req->dir ? req->dir : "-");
	for (size_t i = 0; i < frame->count; i++) {
		if (i)
			fputc('\n', out);
		if (!render_region_text(&frame->regions[i], frame->time_ns, out))
			return false;
	}
	if (frame->not_regions == 1)
		fprintf(out, "\n(1 other file in %s is not a gpucap region)\n", req->dir);
	else if (frame->not_regions)
		fprintf(out, "\n(%zu other files in %s are not gpucap regions)\n", frame->not_regions,
		        req->dir);
	return true;
}

/* ---- JSON ----------------------------------------------------------------- */

static void render_region_json(struct json_writer *w, const struct top_region *r)
{
	json_object_begin(w);
	json_member_string(w, "path", r->path);
	if (!r->snapshot) {
		json_member_string(w, "error", r->error);
		json_object_end(w);
		return;
	}
	const struct gpucap_snapshot *s = r->snapshot;
	json_member_bool(w, "consistent", s->consistent);
	json_key(w, "devices");
	json_array_begin(w);
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct gpucap_device_view *d = &s->devices[i];
		json_object_begin(w);
		status_json_device_members(w, d); /* the same members as `status --json` */
		if (d->sm_share_known) {
			status_json_member_decimal(w, "sm_share_percent", d->sm_share_ppm, 4);
		} else {
			json_key(w, "sm_share_percent");
			json_null(w);
		}
		json_object_end(w);
	}
	json_array_end(w);
	json_key(w, "processes");
	json_array_begin(w);
	for (uint32_t i = 0; i < s->process_count; i++) {
		const struct gpucap_process_view *p = &s->processes[i];
		json_object_begin(w);
		json_member_uint(w, "slot", p->slot);
		json_member_int(w, "pid", p->pid);
		json_key(w, "host_pid");
		if (p->host_pid > 0 && p->host_pid_source != GPUCAP_HOST_PID_UNKNOWN)
			json_int(w, p->host_pid);
		else
			json_null(w);
		json_member_string(w, "host_pid_source", cli_host_pid_source_key(p->host_pid_source));
		json_key(w, "comm");
		json_string_bounded(w, p->comm, GPUCAP_COMM_MAX);
		json_member_bool(w, "alive", p->alive);
		json_member_uint(w, "memory_bytes", process_memory(s, p));
		json_key(w, "last_kernel_unix_ns");
		if (p->last_launch_unix_ns)
			json_uint(w, p->last_launch_unix_ns);
		else
			json_null(w);
		json_key(w, "devices");
		json_array_begin(w);
		for (uint32_t k = 0; k < s->device_count; k++) {
			const struct gpucap_process_device_view *d = cli_process_device(s, p, k);
			if (!d || !cli_process_touches_device(d))
				continue;
			json_object_begin(w);
			json_member_int(w, "index", s->devices[k].index);
			json_member_uint(w, "charged_bytes", d->charged_bytes);
			json_member_uint(w, "in_use_bytes", d->in_use_bytes);
			json_object_end(w);
		}
		json_array_end(w);
		json_object_end(w);
	}
	json_array_end(w);
	json_object_end(w);
}

static bool render_json(const struct top_frame *frame, FILE *out)
{
	struct json_writer w;
	json_init(&w, out);
	json_object_begin(&w);
	json_member_uint(&w, "schema_version", 1);
	json_member_uint(&w, "time_unix_ns", frame->time_ns);
	json_key(&w, "regions");
	json_array_begin(&w);
	for (size_t i = 0; i < frame->count; i++)
		render_region_json(&w, &frame->regions[i]);
	json_array_end(&w);
	json_member_uint(&w, "other_files", frame->not_regions);
	json_object_end(&w);
	return json_finish(&w);
}

/* ---- Loop ----------------------------------------------------------------- */

static void sleep_interval(double seconds)
{
	struct timespec left = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
	/* A signal ends the sleep early (no SA_RESTART): Ctrl-C is prompt. */
	while (!stop_requested && nanosleep(&left, &left) != 0 && errno == EINTR) {
	}
}

static int top_run(int argc, char **argv)
{
	const char *command = cli_command_top.name;
	struct top_request req;
	bool done;
	int rc = parse_request(argc, argv, &req, &done);
	if (rc != CLI_EXIT_OK || done)
		return rc;

	/* Redraw in place only on a terminal; a pipe gets one frame after the
	 * other (JSON: one object per line). */
	bool tty = !req.json && !req.once && isatty(STDOUT_FILENO);
	bool live = !req.once;
	if (live) {
		struct sigaction sa;
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = on_signal;
		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
		sigaction(SIGHUP, &sa, NULL);
	}
	if (tty)
		fputs("\033[?25l", stdout); /* hide the cursor while redrawing */
	bool first = true;
	for (;;) {
		struct top_frame frame;
		rc = load_frame(&req, &frame);
		if (rc != CLI_EXIT_OK) {
			frame_free(&frame);
			break;
		}
		if (tty)
			fputs("\033[H\033[2J", stdout); /* home, clear: redraw in place */
		else if (live && !req.json && !first)
			fputc('\n', stdout); /* frames one after the other in a pipe */
		first = false;
		bool ok = req.json ? render_json(&frame, stdout) : render_text(&frame, &req, live, stdout);
		frame_free(&frame);
		if (!ok) {
			rc = cli_failure(command, "cannot format the view: out of memory");
			break;
		}
		rc = cli_finish_output(command);
		if (rc != CLI_EXIT_OK || !live)
			break;
		sleep_interval(req.interval);
		if (stop_requested)
			break;
	}
	if (tty) {
		fputs("\033[?25h", stdout); /* the cursor back */
		fflush(stdout);
	}
	return rc;
}

const struct cli_command cli_command_top = {
    .name = "top",
    .summary = "watch devices and processes, refreshing like nvidia-smi",
    .usage = "usage: gpucap top [--file PATH | --dir DIR] [--interval SEC] [--once] [--json]\n"
             "\n"
             "Show each device (limit, charged, in use, peak, SM limit, SM share) and each\n"
             "process (pid, host pid, memory, alive or dead, last kernel) of one region, or of\n"
             "every region file in a directory, refreshed until Ctrl-C. Reads without changing\n"
             "anything. SM share is n/a until the library has measured it; last kernel is how\n"
             "long ago the process last launched work, - if it never did.\n"
             "\n"
             "  -f, --file PATH      region file (default: $GPUCAP_REGION, then\n"
             "                       $CUDA_DEVICE_MEMORY_SHARED_CACHE, then " GPUCAP_REGION_DEFAULT_PATH ")\n"
             "      --dir DIR        every region file in DIR (files that are not regions are skipped)\n"
             "  -n, --interval SEC   seconds between refreshes, 0.1 to 3600 (default 1)\n"
             "      --once           print one view and exit (for scripts and pipes)\n"
             "      --json           one JSON object per view, one per line (schema in docs/cli.md)\n"
             "  -h, --help           show this help\n",
    .run = top_run,
};
