/* SPDX-License-Identifier: Apache-2.0 */
/* Crash points for the test build of the region (see crash_point.h). Not
 * part of the shipped library. */
#define _GNU_SOURCE
#include "crash_point.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_POINTS   64
#define NAME_MAX_LEN 48

struct point {
	const char *_Atomic name; /* the literal passed by the code; NULL: free */
	_Atomic unsigned long hits;
};

static struct point points[MAX_POINTS];
static char target[NAME_MAX_LEN];
static unsigned long target_hit;
static atomic_int armed = -1; /* -1: not read yet, 0: off, 1: on */
static int target_signal = SIGKILL;

static void read_target(void)
{
	const char *at = getenv("GPUCAP_CRASH_AT");
	const char *colon = at ? strrchr(at, ':') : NULL;
	if (colon && (size_t)(colon - at) < sizeof(target)) {
		memcpy(target, at, (size_t)(colon - at));
		target[colon - at] = '\0';
		target_hit = strtoul(colon + 1, NULL, 10);
	}
	atomic_store(&armed, target_hit > 0 ? 1 : 0);
}

static struct point *point_of(const char *name)
{
	for (unsigned i = 0; i < MAX_POINTS; i++) {
		const char *current = atomic_load(&points[i].name);
		if (current == NULL) {
			const char *expected = NULL;
			if (atomic_compare_exchange_strong(&points[i].name, &expected, name))
				return &points[i];
			current = expected;
		}
		if (current == name || strcmp(current, name) == 0)
			return &points[i];
	}
	return NULL;
}

void gpucap_crash_point(const char *name)
{
	if (atomic_load(&armed) < 0)
		read_target();
	struct point *point = point_of(name);
	if (!point)
		return;
	unsigned long hit = atomic_fetch_add(&point->hits, 1) + 1;
	if (atomic_load(&armed) == 1 && hit == target_hit && strcmp(name, target) == 0)
		raise(target_signal);
}

void gpucap_crash_points_reset(void)
{
	for (unsigned i = 0; i < MAX_POINTS; i++)
		atomic_store(&points[i].hits, 0);
	target[0] = '\0';
	target_hit = 0;
	target_signal = SIGKILL;
	atomic_store(&armed, -1);
}

void gpucap_crash_points_disarm(void)
{
	atomic_store(&armed, 0);
}

static void arm(const char *name, unsigned long hit, int signal_number)
{
	atomic_store(&armed, 0);
	snprintf(target, sizeof(target), "%s", name);
	struct point *point = point_of(name);
	target_hit = hit + (point ? atomic_load(&point->hits) : 0);
	target_signal = signal_number;
	atomic_store(&armed, 1);
}

void gpucap_crash_points_arm(const char *name, unsigned long hit)
{
	arm(name, hit, SIGKILL);
}

void gpucap_crash_points_arm_signal(const char *name, unsigned long hit, int signal_number)
{
	arm(name, hit, signal_number);
}

void gpucap_crash_points_report(void)
{
	const char *fd_text = getenv("GPUCAP_CRASH_COUNTS");
	if (!fd_text)
		return;
	int fd = atoi(fd_text);
	for (unsigned i = 0; i < MAX_POINTS; i++) {
		const char *name = atomic_load(&points[i].name);
		if (!name)
			continue;
		dprintf(fd, "%s %lu\n", name, atomic_load(&points[i].hits));
	}
}
