/*
 * This process's identity as recorded in its slot: its PID and, when it can
 * be known without waiting for anyone, its host PID.
 *
 * The initial PID namespace has a fixed inode number, so a process whose
 * /proc/self/ns/pid names it already knows its host PID: getpid(). Processes
 * in other namespaces are resolved later (the slot says "unknown" until then).
 */
#define _GNU_SOURCE /* readlink */
#include "hook.h"

#include <string.h>
#include <unistd.h>

#define INITIAL_PID_NAMESPACE "pid:[4026531836]"

void gpucap_identity_initial(struct gpucap_slot_identity *id)
{
	memset(id, 0, sizeof(*id));
	id->pid = (int32_t)getpid();
	char link[64];
	ssize_t n = readlink("/proc/self/ns/pid", link, sizeof(link) - 1);
	if (n <= 0)
		return;
	link[n] = '\0';
	if (strcmp(link, INITIAL_PID_NAMESPACE) == 0) {
		id->host_pid = id->pid;
		id->host_pid_source = GPUCAP_HOST_PID_SAME_NAMESPACE;
	}
}
