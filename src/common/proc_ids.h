/* SPDX-License-Identifier: Apache-2.0 */
/* Reading process identities from /proc: PID-namespace inodes and the NSpid
 * line. Shared by the library (its own identity), the SM controller and the
 * host-side resolver, so the three read /proc the same way. */
#ifndef GPUCAP_COMMON_PROC_IDS_H
#define GPUCAP_COMMON_PROC_IDS_H

#include <stdint.h>

/* The inode of the initial PID namespace (fixed by the kernel). */
#define GPUCAP_INITIAL_PID_NAMESPACE_INODE UINT64_C(4026531836)

/* The inode a ".../ns/pid" link names ("pid:[N]"); 0 when unreadable.
 * readlink only: no stat, whose symbol versions need a recent glibc. */
uint64_t gpucap_pid_namespace_inode(const char *link_path);

/* The first and last fields of the NSpid line of a ".../status" file and
 * how many there are; returns the count (0: unreadable or no such line). */
int gpucap_nspid(const char *status_path, long *outermost, long *innermost);

#endif
