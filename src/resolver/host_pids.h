/* SPDX-License-Identifier: Apache-2.0 */
/* Host-side resolution of region slots' host PIDs through /proc. Owns the
 * matching rules (namespace inode, innermost NSpid, region file mapped). */
#ifndef GPUCAP_RESOLVER_HOST_PIDS_H
#define GPUCAP_RESOLVER_HOST_PIDS_H

#include "gpucap/region.h"

struct gpucap_resolve_counts {
	unsigned unknown;    /* live slots without a host PID before the pass */
	unsigned resolved;   /* host PIDs recorded by the pass */
	unsigned not_found;  /* no host process matched (not visible from here) */
	unsigned unverified; /* matched, but the process's maps could not be read */
};

/* Where /proc is (tests point it at a fake tree). NULL: "/proc". */
void gpucap_resolver_set_proc_root(const char *root);

/* True when this process runs in the initial PID namespace, where /proc's
 * PIDs are host PIDs. */
bool gpucap_resolver_on_host(void);

/*
 * One pass: for each live slot of region with no host PID, find the host
 * process in the slot's PID namespace with the slot's PID that maps the
 * region file, and record it. region must be writable (not an observer);
 * it needs no slot. Returns GPUCAP_OK, or GPUCAP_ERR_IO when /proc or the
 * region file cannot be read, GPUCAP_ERR_INVALID when not on the host.
 * Wait: none; cost: one readlink per /proc entry when some slot is unknown,
 * nothing otherwise.
 */
gpucap_status gpucap_resolve_host_pids(gpucap_region *region, struct gpucap_resolve_counts *counts);

#endif
