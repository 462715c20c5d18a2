/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "collect.h"

#include "exp_log.h"
#include "render.h"
#include "text.h"

#include <gpucap/region.h>

#include <errno.h>
#include <glob.h>
#include <host_pids.h>
#include <region_reader.h>
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
	struct exp_budget budget;
	uint64_t (*clock_ns)(void *context);
	void *clock_context;
	/* Where the next scrape starts reading, so that regions left unread when
	 * a scrape ran out of budget are read first next time. */
	size_t next_first;
};

/* ---- reading one region ------------------------------------------------- */

enum read_outcome { READ_OK, READ_FAILED, READ_GONE };

/* Samples one region adds: per process one per device plus its liveness and
 * last launch, per device at most ten, and a few for the region. */
static uint64_t region_series(const struct gpucap_snapshot *s)
{
	uint64_t devices = s->device_count;
	return (uint64_t)s->process_count * (devices + 2) + devices * 10 + 8;
}

/* Record the host PIDs first (writable attach), then copy. */
struct resolve_job {
	gpucap_region *region;
};

static void resolve_guarded(void *arg)
{
	struct resolve_job *job = arg;
	gpucap_resolve_host_pids(job->region, NULL); /* what stays unknown shows as unknown */
}

static enum read_outcome read_region(const struct exp_collector *c, const char *path,
                                     struct gpucap_snapshot **out, char *err, size_t err_len)
{
	*out = NULL;
	struct reader_attach how = {.observer = !c->resolve_host_pids, .init_timeout_ms = ATTACH_TIMEOUT_MS};
	gpucap_region *region = NULL;
	enum reader_result result = reader_attach(path, &how, &region, NULL, err, err_len);
	if (result == READER_GONE)
		return READ_GONE;
	if (result != READER_OK)
		return READ_FAILED;
	struct resolve_job job = {.region = region};
	if (c->resolve_host_pids && !reader_run_guarded(resolve_guarded, &job)) {
		gpucap_region_abandon(region);
		snprintf(err, err_len, "region %s shrank while it was being read (SIGBUS): it was truncated",
		         path);
		return READ_FAILED;
	}
	struct gpucap_snapshot *snapshot = reader_snapshot(region, err, err_len);
	gpucap_region_detach(region);
	if (!snapshot)
		return READ_FAILED;
	uint64_t series = region_series(snapshot);
	if (series > c->budget.region_series) {
		snprintf(
		    err, err_len,
		    "region %s lists %u processes on %u devices, more than the %zu samples the exporter reports for one region; it is left out: reap or remove it",
		    path, snapshot->process_count, snapshot->device_count, c->budget.region_series);
		gpucap_snapshot_free(snapshot);
		return READ_FAILED;
	}
	*out = snapshot;
	return READ_OK;
}

/* ---- the collector ------------------------------------------------------ */

static uint64_t monotonic_ns(void *context)
{
	(void)context;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct exp_budget exp_budget_default(void)
{
	struct exp_budget budget = {
	    .region_series = EXP_BUDGET_REGION_SERIES,
	    .scrape_bytes = EXP_BUDGET_SCRAPE_BYTES,
	    .scrape_ns = EXP_BUDGET_SCRAPE_NS,
	};
	return budget;
}

void exp_collector_set_budget(struct exp_collector *c, const struct exp_budget *budget)
{
	c->budget = *budget;
}

void exp_collector_set_clock(struct exp_collector *c, uint64_t (*clock_ns)(void *context), void *context)
{
	c->clock_ns = clock_ns ? clock_ns : monotonic_ns;
	c->clock_context = clock_ns ? context : NULL;
}

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
	c->budget = exp_budget_default();
	c->clock_ns = monotonic_ns;
	reader_install_fault_guard();
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

static size_t rendered_bytes(const struct exp_render *render)
{
	size_t bytes = 0;
	for (int f = 0; f < EXP_FAMILY_COUNT; f++)
		bytes += render->family[f].len;
	return bytes;
}

char *exp_collector_scrape(struct exp_collector *c, size_t *len)
{
	uint64_t started = c->clock_ns(c->clock_context);
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
	/* Start where the last scrape ran out of budget, if it did. */
	size_t first = c->next_first < c->state_count ? c->next_first : 0;
	c->next_first = 0;
	bool over_budget = false;
	for (size_t k = 0; k < c->state_count; k++) {
		size_t i = (first + k) % c->state_count;
		struct path_state *state = &c->states[i];
		struct gpucap_snapshot *snapshot = NULL;
		char err[1024];
		enum read_outcome outcome;
		if (!over_budget) {
			uint64_t spent_ns = c->clock_ns(c->clock_context) - started;
			size_t bytes = rendered_bytes(&render);
			if (spent_ns >= c->budget.scrape_ns || bytes >= c->budget.scrape_bytes) {
				over_budget = true;
				c->next_first = i;
			}
		}
		if (over_budget) {
			snprintf(
			    err, sizeof(err),
			    "region %s was not read on this scrape: the scrape reached its budget (%zu bytes or %.1f s) first; it is read first on the next one",
			    state->path, c->budget.scrape_bytes, (double)c->budget.scrape_ns / 1e9);
			outcome = READ_FAILED;
		} else {
			outcome = read_region(c, state->path, &snapshot, err, sizeof(err));
		}
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
	double seconds = (double)(c->clock_ns(c->clock_context) - started) / 1e9;
	if (!exp_render_finish(&render, seconds, &out)) {
		exp_text_free(&out);
		return NULL;
	}
	return exp_text_take(&out, len);
}
