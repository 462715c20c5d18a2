/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "test_support.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[512];

const char *scratch_dir(void)
{
	if (dir[0])
		return dir;
	const char *base = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/gpucap-test-XXXXXX", base && *base ? base : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		exit(99);
	}
	return dir;
}

const char *scratch_path(const char *name)
{
	static char paths[8][640];
	static int next;
	char *out = paths[next++ % 8];
	snprintf(out, sizeof(paths[0]), "%s/%s", scratch_dir(), name);
	return out;
}

void scratch_remove(void)
{
	if (!dir[0])
		return;
	char command[1200];
	snprintf(command, sizeof(command), "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
	if (system(command) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	dir[0] = '\0';
}

gpucap_region *test_attach(const char *path)
{
	struct gpucap_region_options options = {.path = path, .slot_capacity = 64, .device_capacity = 4};
	gpucap_region *region = NULL;
	char err[512];
	if (gpucap_region_attach(&options, &region, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "attach failed: %s\n", err);
		exit(98);
	}
	return region;
}

gpucap_region *test_attach_claim(const char *path)
{
	gpucap_region *region = test_attach(path);
	char err[512];
	if (gpucap_region_claim_slot(region, NULL, err, sizeof(err)) != GPUCAP_OK) {
		fprintf(stderr, "claim failed: %s\n", err);
		exit(97);
	}
	return region;
}

int wait_child(pid_t pid)
{
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			return -1; /* ECHILD: already collected (a stop-the-world waitpid took its exit) */
	}
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return -1;
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
