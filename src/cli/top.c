/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap top: a refreshing view of one region, or of every region file
 * below a directory. Observer attach only: looking never creates or changes
 * a file. This file reads the options, loads each frame and runs the loop;
 * top_scan.c walks the directory, top_text.c draws. */
#define _POSIX_C_SOURCE 200809L

#include "top.h"
#include "cli.h"
#include "default_paths.h"
#include "format.h"
#include "json.h"
#include "options.h"
#include "region_file.h"
#include "status_render.h"

#include <region_reader.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

enum { OPT_INTERVAL, OPT_SORT };

struct top_request {
	bool json;
	bool once;
	const char *file;
	const char *dir;
	double interval;
	enum top_sort sort;
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
	memset(req, 0, sizeof(*req));
	req->interval = 1.0;
	*done = false;
	const struct cli_option top_options[] = {
	    CLI_STORE_FLAG("json", 0, &req->json), CLI_STORE_VALUE("file", 'f', &req->file),
	    CLI_STORE_VALUE("dir", 0, &req->dir),  CLI_OPTION_VALUE("interval", 'n', OPT_INTERVAL),
	    CLI_STORE_FLAG("once", 0, &req->once), CLI_OPTION_VALUE("sort", 's', OPT_SORT),
	};
	struct cli_option_loop loop = CLI_OPTION_LOOP(&cli_command_top, argc, argv, top_options, false);
	int id;
	while ((id = cli_option_loop_next(&loop)) >= 0) {
		const char *value = loop.value;
		switch (id) {
		case OPT_SORT: {
			int found = -1;
			for (int k = 0; k < TOP_SORT_COUNT; k++) {
				if (strcmp(value, top_sort_names[k]) == 0)
					found = k;
			}
			if (found < 0)
				return cli_usage_error(
				    command,
				    "invalid --sort value '%s': expected memory, pid, command or kernel",
				    value);
			req->sort = (enum top_sort)found;
			break;
		}
		case OPT_INTERVAL: {
			char *end;
			errno = 0;
			double seconds = strtod(value, &end);
			if (errno || end == value || *end || !(seconds >= 0.1 && seconds <= 3600))
				return cli_usage_error(
				    command,
				    "invalid --interval value '%s': expected seconds from 0.1 to 3600, e.g. 2 or 0.5",
				    value);
			req->interval = seconds;
			break;
		}
		}
	}
	*done = loop.stop;
	if (loop.stop)
		return loop.exit_code;
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

/* Every region below dir. Files that are not gpucap regions are counted;
 * regions that cannot be read are kept with their error. */
static int load_dir(const char *dir, struct top_frame *frame)
{
	const char *command = cli_command_top.name;
	struct top_scan scan;
	if (!top_scan_dir(dir, &scan))
		return cli_failure(
		    command,
		    "cannot read directory %s: %s; give the directory that holds the regions (e.g. /usr/local/vgpu/containers)",
		    dir, strerror(errno));
	frame->truncated = scan.truncated;
	int rc = CLI_EXIT_OK;
	size_t prefix = strlen(dir);
	while (prefix > 1 && dir[prefix - 1] == '/')
		prefix--;
	for (size_t i = 0; i < scan.count && rc == CLI_EXIT_OK; i++) {
		struct top_region *r = frame_add(frame, scan.paths[i]);
		if (!r) {
			rc = cli_failure(command, "out of memory while reading %s", dir);
			break;
		}
		gpucap_status status;
		if (!load_region(r, &status) &&
		    (status == GPUCAP_ERR_CORRUPT || status == GPUCAP_ERR_VERSION)) {
			/* Not a gpucap region (or one of another format): not shown. */
			frame->count--;
			frame->not_regions++;
		}
	}
	/* Labels point into the paths: set them once the array stops moving. */
	for (size_t i = 0; i < frame->count; i++) {
		struct top_region *r = &frame->regions[i];
		r->label =
		    strlen(r->path) > prefix && r->path[prefix] == '/' ? r->path + prefix + 1 : r->path;
	}
	top_scan_free(&scan);
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
	r->label = r->path;
	r->snapshot = cli_region_snapshot(cli_command_top.name, region);
	gpucap_region_detach(region);
	return r->snapshot ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
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
		if (d->sm_asked_known) {
			status_json_member_decimal(w, "sm_asked_percent", d->sm_asked_ppm, 4);
		} else {
			json_key(w, "sm_asked_percent");
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
		status_json_pid_members(w, p);
		json_key(w, "comm");
		json_string_bounded(w, p->comm, GPUCAP_COMM_MAX);
		json_member_bool(w, "alive", p->alive);
		json_member_uint(w, "memory_bytes", top_process_memory(s, p));
		/* last_launch_unix_ns is the name status --json uses; the older
		 * last_kernel_unix_ns stays until the next schema version. */
		static const char *const launch_names[] = {"last_launch_unix_ns", "last_kernel_unix_ns"};
		for (size_t k = 0; k < 2; k++)
			status_json_member_time(w, launch_names[k], p->last_launch_unix_ns);
		json_key(w, "devices");
		json_array_begin(w);
		for (uint32_t k = 0; k < s->device_count; k++) {
			const struct gpucap_process_device_view *d = cli_process_device(s, p, k);
			if (!d || !cli_process_touches_device(d))
				continue;
			json_object_begin(w);
			status_json_process_device_members(w, s, k, d);
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
	json_member_bool(&w, "dir_truncated", frame->truncated);
	json_object_end(&w);
	return json_finish(&w);
}

/* ---- Loop ----------------------------------------------------------------- */

/* The terminal's size, or $COLUMNS / $LINES when standard output is not a
 * terminal (0: no limit). */
static void terminal_size(bool tty, size_t *width, size_t *height)
{
	*width = *height = 0;
	struct winsize ws;
	if (tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
		*width = ws.ws_col;
		/* One row fewer: a newline after the last row would scroll the
		 * view's first line away. */
		*height = ws.ws_row > 1 ? ws.ws_row - 1u : 0;
		return;
	}
	const char *columns = getenv("COLUMNS");
	if (columns) {
		char *end;
		long value = strtol(columns, &end, 10);
		if (end != columns && !*end && value >= 20 && value <= 10000)
			*width = (size_t)value;
	}
}

/* Keys: the terminal in non-canonical mode without echo, so that q and s
 * act at once; restored on every way out of the loop. */
static struct termios saved_terminal;
static bool terminal_changed;

static bool keys_begin(void)
{
	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &saved_terminal) != 0)
		return false;
	struct termios raw = saved_terminal;
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	terminal_changed = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
	return terminal_changed;
}

static void keys_end(void)
{
	if (terminal_changed)
		tcsetattr(STDIN_FILENO, TCSANOW, &saved_terminal);
	terminal_changed = false;
}

enum wait_result { WAIT_TIMEOUT, WAIT_REDRAW, WAIT_QUIT };

/* Wait the interval; with keys, return early on q (quit) or s (next sort). */
static enum wait_result wait_interval(double seconds, bool keys, enum top_sort *sort)
{
	struct timespec now, until;
	clock_gettime(CLOCK_MONOTONIC, &now);
	until = now;
	until.tv_sec += (time_t)seconds;
	until.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (!stop_requested) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		long long left_ms =
		    (long long)(until.tv_sec - now.tv_sec) * 1000 + (until.tv_nsec - now.tv_nsec) / 1000000;
		if (left_ms <= 0)
			return WAIT_TIMEOUT;
		if (!keys) {
			struct timespec left = {(time_t)(left_ms / 1000), (long)(left_ms % 1000) * 1000000L};
			/* A signal ends the sleep early (no SA_RESTART): Ctrl-C is prompt. */
			nanosleep(&left, NULL);
			continue;
		}
		struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
		int ready = poll(&in, 1, (int)(left_ms > 1000 ? 1000 : left_ms));
		if (ready <= 0)
			continue;
		char key;
		if (read(STDIN_FILENO, &key, 1) != 1)
			continue;
		if (key == 'q' || key == 'Q')
			return WAIT_QUIT;
		if (key == 's' || key == 'S') {
			*sort = (enum top_sort)((*sort + 1) % TOP_SORT_COUNT);
			return WAIT_REDRAW;
		}
	}
	return WAIT_QUIT;
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
	struct top_view view = {.dir = req.dir, .interval = req.interval, .live = live, .sort = req.sort};
	view.keys = tty && keys_begin();
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
		top_sort_processes(&frame, view.sort);
		terminal_size(!req.json && isatty(STDOUT_FILENO), &view.width, &view.height);
		if (!tty)
			view.height = 0; /* a pipe or --once: every line */
		if (tty)
			fputs("\033[H\033[2J", stdout); /* home, clear: redraw in place */
		else if (live && !req.json && !first)
			fputc('\n', stdout); /* frames one after the other in a pipe */
		first = false;
		bool ok = req.json ? render_json(&frame, stdout) : top_render_text(&frame, &view, stdout);
		frame_free(&frame);
		if (!ok) {
			rc = cli_failure(command, "cannot format the view: out of memory");
			break;
		}
		rc = cli_finish_output(command);
		if (rc != CLI_EXIT_OK || !live)
			break;
		enum wait_result waited;
		while ((waited = wait_interval(req.interval, view.keys, &view.sort)) == WAIT_REDRAW &&
		       false) {
		}
		if (waited == WAIT_QUIT || stop_requested)
			break;
	}
	keys_end();
	if (tty) {
		fputs("\033[?25h", stdout); /* the cursor back */
		fflush(stdout);
	}
	return rc;
}

const struct cli_command cli_command_top = {
    .name = "top",
    .summary = "watch devices and processes, refreshing like nvidia-smi",
    .usage = "usage: gpucap top [--file PATH | --dir DIR] [--interval SEC] [--sort KEY] [--once] [--json]\n"
             "\n"
             "Show each device (limit, charged, in use, peak, SM limit, SM share) and each\n"
             "process (pid, host pid, memory, alive or dead, last kernel) of one region, or of\n"
             "every region below a directory, refreshed until q or Ctrl-C. With --dir, one line\n"
             "per GPU adds up every region on it: caps, use, processes. Reads without changing\n"
             "anything. Columns that do not fit the terminal are left out. SM share is n/a until\n"
             "the library has measured it; last kernel is how long ago the process last\n"
             "launched work, - if it never did. Keys: q quits, s changes the sort.\n"
             "\n"
             "  -f, --file PATH      region file (default: $GPUCAP_REGION, then\n"
             "                       $CUDA_DEVICE_MEMORY_SHARED_CACHE, then\n"
             "                       " GPUCAP_DEFAULT_REGION_HELP ")\n"
             "      --dir DIR        every region below DIR, in its folders too (up to 8 levels and 4096\n"
             "                       files; symbolic links are not followed; other files are skipped)\n"
             "  -n, --interval SEC   seconds between refreshes, 0.1 to 3600 (default 1)\n"
             "  -s, --sort KEY       order of the processes: memory (the default, most first), pid,\n"
             "                       command or kernel (most recent launch first)\n"
             "      --once           print one view and exit (for scripts and pipes)\n"
             "      --json           one JSON object per view, one per line (schema in docs/cli.md)\n"
             "  -h, --help           show this help\n",
    .run = top_run,
};
