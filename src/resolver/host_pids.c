/* SPDX-License-Identifier: Apache-2.0 */
/* Matching region slots to host processes; see host_pids.h. */
#define _GNU_SOURCE /* readlink, major/minor */
#include "host_pids.h"
#include "proc_ids.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static const char *proc_root = "/proc";

void gpucap_resolver_set_proc_root(const char *root)
{
	proc_root = root ? root : "/proc";
}

static uint64_t namespace_inode_of(const char *pid_dir)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s/ns/pid", proc_root, pid_dir);
	return gpucap_pid_namespace_inode(path);
}

bool gpucap_resolver_on_host(void)
{
	return namespace_inode_of("self") == GPUCAP_INITIAL_PID_NAMESPACE_INODE;
}

/* The last NSpid field of a process: its PID in its own namespace. */
static long innermost_pid(const char *pid_dir)
{
	char path[512];
	long outer = 0, inner = 0;
	snprintf(path, sizeof(path), "%s/%s/status", proc_root, pid_dir);
	return gpucap_nspid(path, &outer, &inner) > 0 ? inner : 0;
}

enum maps_answer { MAPS_NO, MAPS_YES, MAPS_UNREADABLE };

/* Whether the process maps the file with this device and inode. */
static enum maps_answer maps_file(const char *pid_dir, dev_t dev, ino_t ino)
{
	char path[512], line[4608];
	snprintf(path, sizeof(path), "%s/%s/maps", proc_root, pid_dir);
	FILE *maps = fopen(path, "re");
	if (!maps)
		return MAPS_UNREADABLE;
	enum maps_answer answer = MAPS_NO;
	while (answer == MAPS_NO && fgets(line, sizeof(line), maps)) {
		unsigned major_dev, minor_dev;
		unsigned long long inode;
		/* address perms offset dev inode path */
		if (sscanf(line, "%*s %*s %*s %x:%x %llu", &major_dev, &minor_dev, &inode) == 3 &&
		    inode == (unsigned long long)ino && major_dev == major(dev) && minor_dev == minor(dev))
			answer = MAPS_YES;
	}
	fclose(maps);
	return answer;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return false;
	}
	return true;
}

/* Unknown slots of one snapshot, and the host PID found for each. */
struct wanted {
	const struct gpucap_process_view *process;
	long host_pid;
	bool unverified;
};

static void match_proc(struct wanted *wanted, unsigned count, const struct stat *file)
{
	DIR *dir = opendir(proc_root);
	if (!dir)
		return;
	struct dirent *entry;
	while ((entry = readdir(dir))) {
		if (!all_digits(entry->d_name))
			continue;
		uint64_t ns = namespace_inode_of(entry->d_name);
		long inner = 0;
		for (unsigned i = 0; i < count && ns; i++) {
			if (wanted[i].host_pid || wanted[i].process->pid_ns_inode != ns)
				continue;
			if (!inner)
				inner = innermost_pid(entry->d_name);
			if (inner != wanted[i].process->pid)
				continue;
			enum maps_answer maps = maps_file(entry->d_name, file->st_dev, file->st_ino);
			if (maps == MAPS_YES)
				wanted[i].host_pid = strtol(entry->d_name, NULL, 10);
			else if (maps == MAPS_UNREADABLE)
				wanted[i].unverified = true;
		}
	}
	closedir(dir);
}

gpucap_status gpucap_resolve_host_pids(gpucap_region *region, struct gpucap_resolve_counts *counts)
{
	struct gpucap_resolve_counts local;
	memset(&local, 0, sizeof(local));
	if (!counts)
		counts = &local;
	memset(counts, 0, sizeof(*counts));
	if (!region || !gpucap_resolver_on_host())
		return GPUCAP_ERR_INVALID;
	struct gpucap_snapshot *snapshot = gpucap_region_snapshot(region);
	if (!snapshot)
		return GPUCAP_ERR_IO;
	struct wanted *wanted =
	    calloc(snapshot->process_count ? snapshot->process_count : 1, sizeof(*wanted));
	if (!wanted) {
		gpucap_snapshot_free(snapshot);
		return GPUCAP_ERR_IO;
	}
	unsigned count = 0;
	for (uint32_t i = 0; i < snapshot->process_count; i++) {
		const struct gpucap_process_view *p = &snapshot->processes[i];
		if (p->alive && p->host_pid_source == GPUCAP_HOST_PID_UNKNOWN && p->pid > 0)
			wanted[count++].process = p;
	}
	counts->unknown = count;
	gpucap_status status = GPUCAP_OK;
	struct stat file;
	if (count && stat(gpucap_region_path(region), &file) != 0) {
		status = GPUCAP_ERR_IO;
	} else if (count) {
		match_proc(wanted, count, &file);
		for (unsigned i = 0; i < count; i++) {
			const struct gpucap_process_view *p = wanted[i].process;
			if (wanted[i].host_pid > 0 &&
			    gpucap_region_resolve_host_pid(region, p->slot, p->generation,
			                                   (int32_t)wanted[i].host_pid) == GPUCAP_OK)
				counts->resolved++;
			else if (wanted[i].unverified)
				counts->unverified++;
			else if (wanted[i].host_pid <= 0)
				counts->not_found++;
		}
	}
	free(wanted);
	gpucap_snapshot_free(snapshot);
	return status;
}
