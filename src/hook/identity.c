/* SPDX-License-Identifier: Apache-2.0 */
/*
 * This process's identity as recorded in its slot: its PID, its PID
 * namespace and, when it can be known at once and without asking anyone, its
 * host PID. Nothing here waits for another process or for the driver.
 *
 * Host PID tiers, first match wins:
 *   same namespace  /proc/self/ns/pid is the initial namespace (its inode
 *                   number is fixed by the kernel): the host PID is getpid().
 *   host procfs     /proc is the initial namespace's procfs (a container
 *                   that did not mount its own): NSpid's first field is the
 *                   PID in that procfs's namespace, i.e. the host PID.
 *                   Checked through /proc/1/ns/pid, or kthreadd when that
 *                   link is not readable.
 *   host resolver   otherwise the slot says "unknown" until a resolver on the
 *                   host (gpucap resolve, gpucap exporter) matches the slot's
 *                   (namespace, PID) to a host process and records it.
 * NVML is no help inside a namespace: it reports PIDs translated into the
 * caller's namespace, i.e. getpid() again.
 */
#define _GNU_SOURCE /* readlink */
#include "hook.h"
#include "proc_ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Whether /proc belongs to the initial PID namespace. Its init's namespace
 * link says so when readable (it is not to everyone); otherwise kthreadd,
 * PID 2 with parent 0, is visible only in the initial namespace's /proc. */
static bool proc_is_initial_namespace(void)
{
	if (gpucap_pid_namespace_inode("/proc/1/ns/pid") == GPUCAP_INITIAL_PID_NAMESPACE_INODE)
		return true;
	FILE *status = fopen("/proc/2/status", "re");
	if (!status)
		return false;
	char line[128];
	bool kthreadd = false, orphan = false;
	while (fgets(line, sizeof(line), status)) {
		if (strcmp(line, "Name:\tkthreadd\n") == 0)
			kthreadd = true;
		else if (strcmp(line, "PPid:\t0\n") == 0)
			orphan = true;
	}
	fclose(status);
	return kthreadd && orphan;
}

void gpucap_identity_initial(struct gpucap_slot_identity *id)
{
	memset(id, 0, sizeof(*id));
	id->pid = (int32_t)getpid();
	id->pid_ns_inode = gpucap_pid_namespace_inode("/proc/self/ns/pid");
	if (id->pid_ns_inode == GPUCAP_INITIAL_PID_NAMESPACE_INODE) {
		id->host_pid = id->pid;
		id->host_pid_source = GPUCAP_HOST_PID_SAME_NAMESPACE;
		return;
	}
	/* When /proc is the initial namespace's, /proc/self/status speaks in
	 * host PIDs. */
	if (proc_is_initial_namespace()) {
		long outer = 0, inner = 0;
		if (gpucap_nspid("/proc/self/status", &outer, &inner) >= 2 && outer > 0 &&
		    outer <= INT32_MAX) {
			id->host_pid = (int32_t)outer;
			id->host_pid_source = GPUCAP_HOST_PID_HOST_PROCFS;
		}
	}
}
