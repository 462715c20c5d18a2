/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap top --dir: find the region files below a directory. Every
 * deployment keeps its regions somewhere below one node directory:
 * HAMi's /usr/local/vgpu/containers/<pod>_<container>/<uuid>.cache,
 * Volcano's /tmp/vgpu/<uuid>.cache, or a gpucap directory per container. */
#define _POSIX_C_SOURCE 200809L

#include "top.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool add_path(struct top_scan *scan, const char *path)
{
	char **grown = realloc(scan->paths, (scan->count + 1) * sizeof(*grown));
	if (!grown)
		return false;
	scan->paths = grown;
	scan->paths[scan->count] = strdup(path);
	if (!scan->paths[scan->count])
		return false;
	scan->count++;
	return true;
}

static bool is_audit_log(const char *name)
{
	size_t len = strlen(name);
	return len > 6 && strcmp(name + len - 6, ".audit") == 0;
}

/* fd: an open directory (consumed). False only when memory runs out. */
static bool walk(int fd, const char *path, int depth, struct top_scan *scan)
{
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return true;
	}
	bool ok = true;
	struct dirent *entry;
	while (ok && (entry = readdir(d)) != NULL) {
		const char *name = entry->d_name;
		if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
			continue;
		if (scan->count >= TOP_SCAN_MAX_FILES) {
			scan->truncated = true;
			break;
		}
		char child[4096];
		int n = snprintf(child, sizeof(child), "%s/%s", path, name);
		if (n < 0 || (size_t)n >= sizeof(child))
			continue;
		struct stat st;
		/* lstat: a symbolic link is neither followed nor read. */
		if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISREG(st.st_mode)) {
			if (!is_audit_log(name))
				ok = add_path(scan, child);
		} else if (S_ISDIR(st.st_mode)) {
			if (depth + 1 >= TOP_SCAN_MAX_DEPTH) {
				scan->truncated = true;
				continue;
			}
			int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			if (sub >= 0)
				ok = walk(sub, child, depth + 1, scan);
		}
	}
	closedir(d);
	return ok;
}

static int compare_paths(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

bool top_scan_dir(const char *dir, struct top_scan *scan)
{
	memset(scan, 0, sizeof(*scan));
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return false;
	/* Paths as the user wrote the directory, without a doubled slash. */
	char base[4096];
	snprintf(base, sizeof(base), "%s", dir);
	size_t len = strlen(base);
	while (len > 1 && base[len - 1] == '/')
		base[--len] = '\0';
	if (!walk(fd, strcmp(base, "/") == 0 ? "" : base, 0, scan)) {
		top_scan_free(scan);
		errno = ENOMEM;
		return false;
	}
	if (scan->count > 1)
		qsort(scan->paths, scan->count, sizeof(*scan->paths), compare_paths);
	return true;
}

void top_scan_free(struct top_scan *scan)
{
	for (size_t i = 0; i < scan->count; i++)
		free(scan->paths[i]);
	free(scan->paths);
	memset(scan, 0, sizeof(*scan));
}
