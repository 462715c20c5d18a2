#define _POSIX_C_SOURCE 200809L

#include "collect.h"

#include "exp_log.h"
#include "render.h"
#include "text.h"

#include <gpucap/region.h>

#include <errno.h>
#include <glob.h>
#include <host_pids.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* How long an attach may wait for another process that is creating the
 * file. Short: creating takes far less, a region being created now is simply
 * read next scrape, and every empty file left behind costs this much on
 * every scrape. */
#define ATTACH_TIMEOUT_MS 50

/* What the exporter remembers about a path between scrapes: its error
 * counter and the last error it logged (NULL: readable last time). */
struct path_state {
	char *path;
	uint64_t read_errors;
	char *last_error;
};

struct exp_collector {
	const char *pattern;
	const struct exp_path_rule *rule;
	bool hami_metrics;
	bool resolve_host_pids;
	struct path_state *states; /* sorted by path (strcmp) */
	size_t state_count;
};

/* ---- SIGBUS guard -------------------------------------------------------
 * Regions are memory-mapped. If a file is truncated while it is mapped,
 * reading past the new end raises SIGBUS. The region files live in
 * directories the containers can write, so a tenant must not be able to kill
 * the node's exporter that way: reads are bracketed by sigsetjmp and the
 * handler jumps back when the fault happens inside a guarded read on the
 * same thread. Anywhere else SIGBUS keeps its default action. */

static _Thread_local sigjmp_buf *volatile fault_jump;

static void on_sigbus(int sig)
{
	sigjmp_buf *jump = fault_jump;
	if (jump) {
		fault_jump = NULL;
		siglongjmp(*jump, 1);
	}
	/* Not ours: restore the default action; returning re-runs the faulting
	 * access, which then terminates the process as usual. */
	signal(sig, SIG_DFL);
}

void exp_install_fault_guard(void)
{
	/* Look rather than remember: someone else (a test framework, a
	 * library) may have replaced the handler since. */
	struct sigaction current;
	if (sigaction(SIGBUS, NULL, &current) == 0 && !(current.sa_flags & SA_SIGINFO) &&
	    current.sa_handler == on_sigbus)
		return;
	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_handler = on_sigbus;
	sigemptyset(&action.sa_mask);
	action.sa_flags = SA_NODEFER;
	sigaction(SIGBUS, &action, NULL);
}

/* ---- reading one region ------------------------------------------------- */

enum read_outcome { READ_OK, READ_FAILED, READ_GONE };

static void tidy_message(char *text)
{
	static const char prefix[] = "gpucap: ";
	if (strncmp(text, prefix, sizeof(prefix) - 1) == 0)
		memmove(text, text + sizeof(prefix) - 1, strlen(text) - (sizeof(prefix) - 1) + 1);
	for (char *p = text; *p; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
}

bool exp_run_guarded(void (*fn)(void *), void *arg)
{
	exp_install_fault_guard();
	sigjmp_buf jump;
	if (sigsetjmp(jump, 1) != 0)
		return false; /* fault_jump was cleared by the handler */
	fault_jump = &jump;
	fn(arg);
	fault_jump = NULL;
	return true;
}

/* One read. Everything the fault path needs is in memory reached through
 * job, never in locals that a longjmp would clobber. */
struct read_job {
	const char *path;
	bool resolve_host_pids;
	char *err;
	size_t err_len;
	gpucap_status status;
	gpucap_region *volatile region;
	struct gpucap_snapshot *volatile snapshot;
};

/* Attach as an observer and copy; when resolving host PIDs, attach
 * writable (an existing file only) and record them first. */
static void attach_and_copy(void *arg)
{
	struct read_job *job = arg;
	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = job->path;
	options.observer = !job->resolve_host_pids;
	options.existing_only = true;
	options.init_timeout_ms = ATTACH_TIMEOUT_MS;
	gpucap_region *attached = NULL;
	job->status = gpucap_region_attach(&options, &attached, job->err, job->err_len);
	job->region = attached;
	if (job->status != GPUCAP_OK)
		return;
	if (job->resolve_host_pids)
		gpucap_resolve_host_pids(attached, NULL); /* what stays unknown shows as unknown */
	job->snapshot = gpucap_region_snapshot(attached);
}

static enum read_outcome read_guarded(const char *path, bool resolve_host_pids, struct gpucap_snapshot **out,
                                      char *err, size_t err_len)
{
	struct read_job job;
	memset(&job, 0, sizeof(job));
	job.path = path;
	job.resolve_host_pids = resolve_host_pids;
	job.err = err;
	job.err_len = err_len;
	err[0] = '\0';
	bool completed = exp_run_guarded(attach_and_copy, &job);
	if (job.region)
		gpucap_region_detach(job.region);
	if (!completed) {
		/* A snapshot half copied when the fault hit is not freed: it is
		 * unreachable from here. This only happens when a file is
		 * truncated while it is being read. */
		snprintf(err, err_len, "region %s shrank while it was being read (SIGBUS): it was truncated",
		         path);
		return READ_FAILED;
	}
	if (job.status != GPUCAP_OK) {
		/* It vanished between the glob and the open: gone, not broken. */
		struct stat st;
		if (job.status == GPUCAP_ERR_IO && lstat(path, &st) != 0 && errno == ENOENT)
			return READ_GONE;
		if (!err[0])
			snprintf(err, err_len, "cannot read region %s: %s", path,
			         gpucap_status_text(job.status));
		tidy_message(err);
		return READ_FAILED;
	}
	if (!job.snapshot) {
		snprintf(err, err_len, "cannot copy region %s: out of memory", path);
		return READ_FAILED;
	}
	*out = job.snapshot;
	return READ_OK;
}

static enum read_outcome read_region(const char *path, bool resolve_host_pids, struct gpucap_snapshot **out,
                                     char *err, size_t err_len)
{
	*out = NULL;
	struct stat st;
	if (lstat(path, &st) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return READ_GONE;
		snprintf(err, err_len, "cannot look at region %s: %s", path, strerror(errno));
		return READ_FAILED;
	}
	/* Opening a FIFO or device would block or have side effects; the
	 * region code would refuse them anyway, after the open. */
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, err_len, "region %s is not a regular file%s; check the --regions pattern", path,
		         S_ISDIR(st.st_mode)   ? " but a directory"
		         : S_ISLNK(st.st_mode) ? " but a symbolic link"
		                               : "");
		return READ_FAILED;
	}
	return read_guarded(path, resolve_host_pids, out, err, err_len);
}

/* ---- the collector ------------------------------------------------------ */

void exp_collector_resolve_host_pids(struct exp_collector *c, bool on)
{
	c->resolve_host_pids = on;
}

struct exp_collector *exp_collector_new(const char *pattern, const struct exp_path_rule *rule,
                                        bool hami_metrics)
{
	struct exp_collector *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->pattern = pattern;
	c->rule = rule;
	c->hami_metrics = hami_metrics;
	exp_install_fault_guard();
	return c;
}

static void free_states(struct path_state *states, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		free(states[i].path);
		free(states[i].last_error);
	}
	free(states);
}

void exp_collector_free(struct exp_collector *c)
{
	if (!c)
		return;
	free_states(c->states, c->state_count);
	free(c);
}

static int compare_paths(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Log a failure only when it differs from the last one logged for the path,
 * and a recovery once. */
static void note_outcome(struct path_state *state, enum read_outcome outcome, const char *err)
{
	if (outcome == READ_OK) {
		if (state->last_error) {
			exp_log("region %s is readable again", state->path);
			free(state->last_error);
			state->last_error = NULL;
		}
		return;
	}
	state->read_errors++;
	if (state->last_error && strcmp(state->last_error, err) == 0)
		return;
	exp_log("%s", err);
	free(state->last_error);
	state->last_error = strdup(err); /* NULL on OOM: logs again next time */
}

char *exp_collector_scrape(struct exp_collector *c, size_t *len)
{
	double started = now_seconds();
	glob_t matches;
	memset(&matches, 0, sizeof(matches));
	int rc = glob(c->pattern, GLOB_NOSORT, NULL, &matches);
	if (rc != 0 && rc != GLOB_NOMATCH) {
		globfree(&matches);
		if (rc == GLOB_NOSPACE)
			return NULL;
		exp_log("cannot expand --regions '%s'; reporting no regions", c->pattern);
		memset(&matches, 0, sizeof(matches));
	}
	size_t count = rc == 0 ? matches.gl_pathc : 0;
	if (count > 1)
		qsort(matches.gl_pathv, count, sizeof(char *), compare_paths);

	struct path_state *states = count ? calloc(count, sizeof(*states)) : NULL;
	if (count && !states) {
		globfree(&matches);
		return NULL;
	}
	/* Carry each path's state over from the last scrape (both sorted). */
	size_t old = 0, kept = 0;
	for (size_t i = 0; i < count; i++) {
		const char *path = matches.gl_pathv[i];
		while (old < c->state_count && strcmp(c->states[old].path, path) < 0)
			old++;
		if (old < c->state_count && strcmp(c->states[old].path, path) == 0) {
			states[kept] = c->states[old];
			c->states[old].path = NULL;
			c->states[old].last_error = NULL;
			old++;
		} else {
			states[kept].path = strdup(path);
			if (!states[kept].path) {
				free_states(states, kept);
				globfree(&matches);
				return NULL;
			}
		}
		kept++;
	}
	globfree(&matches);
	free_states(c->states, c->state_count);
	c->states = states;
	c->state_count = kept;

	struct exp_render render;
	exp_render_init(&render, c->hami_metrics);
	for (size_t i = 0; i < c->state_count; i++) {
		struct path_state *state = &c->states[i];
		struct gpucap_snapshot *snapshot = NULL;
		char err[1024];
		enum read_outcome outcome =
		    read_region(state->path, c->resolve_host_pids, &snapshot, err, sizeof(err));
		if (outcome == READ_GONE)
			continue; /* deleted since the glob: nothing to report */
		note_outcome(state, outcome, err);
		struct exp_pod_labels labels;
		exp_path_labels(c->rule, state->path, &labels);
		exp_render_region(&render, state->path, &labels, snapshot, state->read_errors);
		gpucap_snapshot_free(snapshot);
	}
	struct exp_text out;
	exp_text_init(&out);
	if (!exp_render_finish(&render, now_seconds() - started, &out)) {
		exp_text_free(&out);
		return NULL;
	}
	return exp_text_take(&out, len);
}
