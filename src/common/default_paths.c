/* SPDX-License-Identifier: Apache-2.0 */
/* See default_paths.h. Linked into libgpucap.so: libc only, and stat by
 * system call (file_stat.h). */
#define _GNU_SOURCE /* secure_getenv, syscall */
#include "default_paths.h"

#include "file_stat.h"
#include "proc_ids.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool exists(const char *path)
{
	return access(path, F_OK) == 0;
}

bool gpucap_in_container(void)
{
	uint64_t pid_ns = gpucap_pid_namespace_inode("/proc/self/ns/pid");
	if (pid_ns && pid_ns != GPUCAP_INITIAL_PID_NAMESPACE_INODE)
		return true;
	const char *kubernetes = secure_getenv("KUBERNETES_SERVICE_HOST");
	const char *container = secure_getenv("container");
	return exists("/.dockerenv") || exists("/run/.containerenv") || (kubernetes && *kubernetes) ||
	       (container && *container) || exists("/usr/local/vgpu");
}

/* The private directory must be this user's alone: another user who made
 * it first could otherwise read, replace or remove the region. */
static bool check_private_dir(const char *dir, unsigned uid, char *err, size_t err_len)
{
	struct stat st;
	if (gpucap_lstat(dir, &st) != 0) {
		snprintf(
		    err, err_len,
		    "cannot use region directory %s: %s; create it with mode 0700 or set GPUCAP_REGION to a path of your own",
		    dir, strerror(errno));
		return false;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(
		    err, err_len,
		    "region directory %s is not a directory (a symbolic link or a file); remove it, or set GPUCAP_REGION to a path of your own",
		    dir);
		return false;
	}
	if (st.st_uid != uid) {
		snprintf(
		    err, err_len,
		    "region directory %s belongs to uid %u, not to you (uid %u); have it removed, or set GPUCAP_REGION to a path of your own",
		    dir, (unsigned)st.st_uid, (unsigned)uid);
		return false;
	}
	if (st.st_mode & 077) {
		snprintf(err, err_len, "region directory %s is open to others (mode %04o); run chmod 700 %s",
		         dir, (unsigned)(st.st_mode & 07777), dir);
		return false;
	}
	return true;
}

bool gpucap_region_path_for(const char *tmp_dir, unsigned uid, bool in_container, bool create_dir, char *buf,
                            size_t len, char *err, size_t err_len)
{
	if (err_len)
		err[0] = '\0';
	if (uid == 0 || in_container) {
		snprintf(buf, len, "%s/%s", tmp_dir, GPUCAP_REGION_FILE_NAME);
		return true;
	}
	char dir[4096];
	snprintf(dir, sizeof(dir), "%s/gpucap-%u", tmp_dir, uid);
	snprintf(buf, len, "%s/%s", dir, GPUCAP_REGION_FILE_NAME);
	if (create_dir && mkdir(dir, 0700) != 0 && errno != EEXIST) {
		snprintf(
		    err, err_len,
		    "cannot create region directory %s: %s; create it with mode 0700 or set GPUCAP_REGION to a path of your own",
		    dir, strerror(errno));
		return false;
	}
	if (!create_dir && !exists(dir))
		return true; /* nothing to check yet: the first limited process creates it */
	return check_private_dir(dir, uid, err, err_len);
}

bool gpucap_default_region_path(char *buf, size_t len, bool create_dir, char *err, size_t err_len)
{
	unsigned uid = (unsigned)geteuid();
	/* Root needs no container test (and no /proc read). */
	bool in_container = uid != 0 && gpucap_in_container();
	return gpucap_region_path_for("/tmp", uid, in_container, create_dir, buf, len, err, err_len);
}

bool gpucap_hami_node_dir_present(void)
{
	struct stat st;
	return gpucap_stat("/tmp/vgpulock", &st) == 0 && S_ISDIR(st.st_mode);
}
