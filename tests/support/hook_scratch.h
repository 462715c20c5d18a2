/* SPDX-License-Identifier: Apache-2.0 */
/* A scratch directory for a test program run with libgpucap.so preloaded:
 * /tmp/gpucap-<name>-XXXXXX, GPUCAP_REGION set to the "region" file in it,
 * and everything in it removed at exit unless the variable keep names is
 * set (to look at what a failed test left). */
#ifndef GPUCAP_TEST_HOOK_SCRATCH_H
#define GPUCAP_TEST_HOOK_SCRATCH_H

#include "check.h"

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *hook_scratch_dir;
static const char *hook_scratch_keep;

static inline void hook_scratch_cleanup(void)
{
	if (!hook_scratch_dir || !hook_scratch_dir[0] || (hook_scratch_keep && getenv(hook_scratch_keep)))
		return;
	DIR *d = opendir(hook_scratch_dir);
	if (d) {
		char path[512];
		for (struct dirent *e = readdir(d); e; e = readdir(d)) {
			if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
				continue;
			snprintf(path, sizeof(path), "%s/%s", hook_scratch_dir, e->d_name);
			unlink(path);
		}
		closedir(d);
	}
	rmdir(hook_scratch_dir);
}

/* Fill dir (dir_len bytes) and region (region_len bytes), export
 * GPUCAP_REGION, and clean up at exit. */
static inline void hook_scratch_region(const char *name, const char *keep, char *dir, size_t dir_len,
                                       char *region, size_t region_len)
{
	snprintf(dir, dir_len, "/tmp/gpucap-%s-XXXXXX", name);
	CHECK(mkdtemp(dir) != NULL);
	snprintf(region, region_len, "%s/region", dir);
	setenv("GPUCAP_REGION", region, 1);
	hook_scratch_dir = dir;
	hook_scratch_keep = keep;
	atexit(hook_scratch_cleanup);
}

#endif
