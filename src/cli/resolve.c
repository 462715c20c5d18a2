/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap resolve: record the host PIDs of processes that run in other PID
 * namespaces (containers), from the host, where /proc shows both views. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "cli.h"
#include "json.h"
#include "options.h"

#include <errno.h>
#include <glob.h>
#include <host_pids.h>
#include <region_reader.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { OPT_REGIONS, OPT_FILE, OPT_INTERVAL };

static volatile sig_atomic_t stop_requested;

static void request_stop(int signo)
{
	(void)signo;
	stop_requested = 1;
}

struct resolve_request {
	const char *pattern; /* glob, or a single path */
	bool single_file;    /* --file: pattern is one path, which must exist */
	bool watch;
	bool json;
	long interval_ms;
};

/* The pass writes the mapping: it runs under the SIGBUS guard, its results
 * kept in the job, not in locals. */
struct resolve_job {
	gpucap_region *region;
	struct gpucap_resolve_counts *counts;
	gpucap_status status;
};

static void resolve_guarded(void *arg)
{
	struct resolve_job *job = arg;
	job->status = gpucap_resolve_host_pids(job->region, job->counts);
}

/* One region: attach writable (existing file only), one pass, detach. */
static gpucap_status resolve_one(const char *path, struct gpucap_resolve_counts *counts, char *err,
                                 size_t err_len)
{
	struct reader_attach how = {.observer = false, .init_timeout_ms = 0};
	gpucap_region *region = NULL;
	gpucap_status status;
	if (reader_attach(path, &how, &region, &status, err, err_len) != READER_OK)
		return status == GPUCAP_OK ? GPUCAP_ERR_IO : status;
	struct resolve_job job = {.region = region, .counts = counts, .status = GPUCAP_ERR_IO};
	if (!reader_run_guarded(resolve_guarded, &job)) {
		gpucap_region_abandon(region);
		snprintf(err, err_len, "region %s shrank while it was being read (SIGBUS): it was truncated",
		         path);
		return GPUCAP_ERR_IO;
	}
	gpucap_region_detach(region);
	if (job.status != GPUCAP_OK)
		snprintf(err, err_len, "region %s: cannot read /proc or the region file", path);
	return job.status;
}

static void print_counts_json(struct json_writer *w, const char *path, const struct gpucap_resolve_counts *c)
{
	json_object_begin(w);
	json_member_string(w, "path", path);
	json_member_uint(w, "unknown_before", c->unknown);
	json_member_uint(w, "resolved", c->resolved);
	json_member_uint(w, "not_found", c->not_found);
	json_member_uint(w, "unverified", c->unverified);
	json_object_end(w);
}

/* One pass over every matching region. Returns the number of regions that
 * failed; lines go to stdout (results) and stderr (failures). */
static unsigned pass(const struct resolve_request *req, struct json_writer *w)
{
	glob_t matches;
	memset(&matches, 0, sizeof(matches));
	/* --file names one path: never a pattern, even if it holds glob
	 * characters. */
	int rc = 0;
	char *single[] = {(char *)req->pattern, NULL};
	if (req->single_file) {
		matches.gl_pathc = 1;
		matches.gl_pathv = single;
	} else {
		rc = glob(req->pattern, 0, NULL, &matches);
	}
	unsigned failed = 0;
	for (size_t i = 0; rc == 0 && i < matches.gl_pathc; i++) {
		const char *path = matches.gl_pathv[i];
		struct gpucap_resolve_counts counts;
		char err[1024] = "";
		memset(&counts, 0, sizeof(counts));
		if (resolve_one(path, &counts, err, sizeof(err)) != GPUCAP_OK) {
			failed++;
			const char *message = strncmp(err, "gpucap: ", 8) == 0 ? err + 8 : err;
			fprintf(stderr, "gpucap resolve: %s\n", message);
			continue;
		}
		if (w)
			print_counts_json(w, path, &counts);
		else if (!req->watch || counts.resolved || counts.unverified)
			printf("%s: %u without a host PID, %u resolved, %u not found, %u unverified\n", path,
			       counts.unknown, counts.resolved, counts.not_found, counts.unverified);
	}
	if (!req->single_file)
		globfree(&matches);
	if (req->watch)
		fflush(stdout);
	return failed;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static int parse_request(int argc, char **argv, struct resolve_request *req, int *exit_code)
{
	const char *command = cli_command_resolve.name;
	memset(req, 0, sizeof(*req));
	req->interval_ms = 200;
	const struct cli_option resolve_options[] = {
	    CLI_OPTION_VALUE("regions", 'r', OPT_REGIONS), CLI_OPTION_VALUE("file", 'f', OPT_FILE),
	    CLI_STORE_FLAG("watch", 'w', &req->watch),     CLI_OPTION_VALUE("interval", 0, OPT_INTERVAL),
	    CLI_STORE_FLAG("json", 0, &req->json),
	};
	struct cli_option_loop loop =
	    CLI_OPTION_LOOP(&cli_command_resolve, argc, argv, resolve_options, false);
	int id;
	while ((id = cli_option_loop_next(&loop)) >= 0) {
		const char *value = loop.value;
		if (id == OPT_REGIONS || id == OPT_FILE) {
			if (req->pattern)
				return *exit_code =
				           cli_usage_error(command, "give one --regions GLOB or --file PATH"),
				       false;
			req->pattern = value;
			req->single_file = id == OPT_FILE;
		} else {
			char *end;
			req->interval_ms = strtol(value, &end, 10);
			if (*end || end == value || req->interval_ms < 10 || req->interval_ms > 60000)
				return *exit_code = cli_usage_error(
				           command,
				           "--interval '%s' is not a number of milliseconds from 10 to 60000",
				           value),
				       false;
		}
	}
	if (loop.stop)
		return *exit_code = loop.exit_code, false;
	if (!req->pattern || !req->pattern[0])
		return *exit_code = cli_usage_error(command, "--regions GLOB or --file PATH is required"),
		       false;
	if (req->watch && req->json)
		return *exit_code = cli_usage_error(
		           command, "--json prints one pass; it cannot be combined with --watch"),
		       false;
	return true;
}

/* A --file that is not there, or a --regions pattern that matches nothing
 * in a single pass, is almost always a typo: say so rather than idle. A
 * pattern may match nothing yet under --watch (no container started). */
static int check_targets(const struct resolve_request *req)
{
	const char *command = cli_command_resolve.name;
	if (req->single_file) {
		struct stat st;
		if (stat(req->pattern, &st) != 0)
			return cli_failure(
			    command,
			    "cannot use --file %s: %s; name an existing region file (gpucap status --file PATH shows one)",
			    req->pattern, strerror(errno));
		return CLI_EXIT_OK;
	}
	glob_t matches;
	memset(&matches, 0, sizeof(matches));
	bool none = glob(req->pattern, 0, NULL, &matches) != 0 || matches.gl_pathc == 0;
	globfree(&matches);
	if (none && !req->watch)
		return cli_failure(
		    command,
		    "no file matches --regions '%s'; check the pattern (quote it so that the shell does not expand it)",
		    req->pattern);
	if (none)
		fprintf(
		    stderr,
		    "gpucap resolve: no file matches --regions '%s' yet; watching for regions to appear\n",
		    req->pattern);
	return CLI_EXIT_OK;
}

static int resolve_run(int argc, char **argv)
{
	const char *command = cli_command_resolve.name;
	struct resolve_request req;
	int exit_code = CLI_EXIT_OK;
	if (!parse_request(argc, argv, &req, &exit_code))
		return exit_code;
	int rc = check_targets(&req);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (!gpucap_resolver_on_host())
		return cli_failure(
		    command,
		    "this process is not in the host's PID namespace, so /proc cannot show host PIDs; run it on the host (in Kubernetes: a pod with hostPID: true)");
	if (!req.watch) {
		struct json_writer w;
		if (req.json) {
			json_init(&w, stdout);
			json_object_begin(&w);
			json_member_uint(&w, "schema_version", 1);
			json_key(&w, "regions");
			json_array_begin(&w);
		}
		unsigned failed = pass(&req, req.json ? &w : NULL);
		if (req.json) {
			json_array_end(&w);
			json_object_end(&w);
			if (!json_finish(&w))
				return cli_failure(command, "cannot write the JSON report");
		}
		rc = cli_finish_output(command);
		return failed ? CLI_EXIT_FAILURE : rc;
	}
	signal(SIGINT, request_stop);
	signal(SIGTERM, request_stop);
	while (!stop_requested) {
		pass(&req, NULL);
		sleep_ms(req.interval_ms);
	}
	return cli_finish_output(command);
}

const struct cli_command cli_command_resolve = {
    .name = "resolve",
    .summary = "record host PIDs of processes in containers (run on the host)",
    .usage = "usage: gpucap resolve (--regions GLOB | --file PATH) [--watch [--interval MS]] [--json]\n"
             "\n"
             "A process in a PID namespace (a container) cannot learn its host PID, which host tools\n"
             "and NVML on the host use. Run on the host, this matches each region slot without a host\n"
             "PID to the host process with the same PID namespace and PID that maps the region file,\n"
             "and records it (gpucap status then shows it, source \"via host resolver\").\n"
             "\n"
             "  -r, --regions GLOB  region files, a glob(3) pattern (quote it)\n"
             "  -f, --file PATH     one region file\n"
             "  -w, --watch         keep resolving every --interval until SIGINT/SIGTERM; prints a\n"
             "                      line only when it records something\n"
             "      --interval MS   time between passes with --watch (default 200, 10 to 60000)\n"
             "      --json          print one JSON object for the pass (schema in docs/cli.md)\n"
             "  -h, --help          show this help\n"
             "\n"
             "Exit status: 0 every region was read; 1 a region or /proc could not be read, the --file\n"
             "does not exist, --regions matches nothing (without --watch), or not run on the host;\n"
             "2 usage error.\n",
    .run = resolve_run,
};
