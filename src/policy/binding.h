/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The limits file binds a container to one region.
 *
 * A limits file caps the container, so every process under it must count
 * its memory in one ledger. The path is pinned (policy.h), but a region
 * deleted and created again at that path is a second ledger: processes
 * still attached to the old file keep their memory there, and the new file
 * starts empty.
 *
 * Rule: every process under a limits file holds, for its life, an
 * open-file-description read lock on one byte of the limits file, at an
 * offset derived from its scope (its mount namespace: the container) and
 * its region's identity (the creation time the region records when it is
 * made). Locks drop when the process dies. After taking its own, a process
 * asks the kernel whether any lock is held at another offset of its scope:
 * if so, a process of the container on another region is alive under the
 * same file, and this one fails closed. Each process locks before it
 * looks, so of two processes on different regions the later to look sees
 * the other: at no time do two regions of one container admit memory
 * under one limits file. Scopes keep containers that share one file (the
 * same host file mounted into each) apart.
 *
 * Read locks never wait and never make another process wait; the check is
 * two F_OFD_GETLK queries at start-up.
 */
#ifndef GPUCAP_POLICY_BINDING_H
#define GPUCAP_POLICY_BINDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gpucap_binding {
	int fd; /* the limits file, holding our lock; -1: none */
};

#define GPUCAP_BINDING_NONE                                                                                  \
	{                                                                                                    \
		-1                                                                                           \
	}

/* This process's scope: its mount namespace (0 when /proc cannot say). */
uint64_t gpucap_binding_scope(void);

/* The lock offset for a region identity in a scope (never 0, below
 * 2^62). */
int64_t gpucap_binding_offset(uint64_t scope, uint64_t region_identity);

/*
 * Bind this process to the region with the given identity, in scope, under
 * the limits file at file_path. Returns true when no live process is bound to another
 * region under the file. False with one line in err (naming the file and
 * what to do) otherwise, or when the lock cannot be taken; b then holds no
 * lock.
 */
bool gpucap_binding_take(struct gpucap_binding *b, const char *file_path, uint64_t scope,
                         uint64_t region_identity, char *err, size_t err_len);

/* For tools: whether a live process of scope under the limits file at
 * file_path is bound to another region than the one with this identity (1),
 * none is
 * (0), or the kernel cannot say (-1, errno set). Takes no lock. */
int gpucap_binding_other_held(const char *file_path, uint64_t scope, uint64_t region_identity);

/* Drop the lock (at detach). */
void gpucap_binding_release(struct gpucap_binding *b);

/* In a forked child: forget the parent's descriptor without touching the
 * lock it shares with the parent. */
void gpucap_binding_forget(struct gpucap_binding *b);

#endif
