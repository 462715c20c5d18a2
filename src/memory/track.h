/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Live allocations: a lock-free map from (tag, key) to the caller's entry
 * (track.c).
 */
#ifndef GPUCAP_MEMORY_TRACK_H
#define GPUCAP_MEMORY_TRACK_H

#include <stdbool.h>
#include <stdint.h>

enum gpucap_track_tag {
	GPUCAP_TRACK_PTR = 1,        /* device pointer: linear, managed, pool */
	GPUCAP_TRACK_HANDLE = 2,     /* cuMemCreate handle */
	GPUCAP_TRACK_ARRAY = 3,      /* CUarray */
	GPUCAP_TRACK_MIPMAP = 4,     /* CUmipmappedArray */
	GPUCAP_TRACK_CTX = 5,        /* CUcontext from cuCtxCreate */
	GPUCAP_TRACK_GRAPH_EXEC = 6, /* CUgraphExec that allocates, not run yet (charges nothing) */
};

struct gpucap_pool;

struct gpucap_track_entry {
	uint64_t key;
	uint8_t tag;
	uint8_t kind;
	int16_t region_index;
	int16_t ordinal; /* GPUCAP_TRACK_GRAPH_EXEC: the CUDA device of its allocations */
	uint64_t bytes;
	struct gpucap_pool *pool; /* allocations from a stream-ordered pool */
};

/* The map takes no lock: any number of threads may insert and remove at
 * once, and none ever waits for another. It never reads an entry after
 * inserting it, so a removed entry is wholly the remover's. */

/* A zeroed entry, or NULL when memory runs out. Released with free(). */
struct gpucap_track_entry *gpucap_track_new(void);
/* Publish entry under (entry->tag, entry->key). False only when the map had
 * to grow and memory ran out: the entry is then not in the map and is still
 * the caller's. */
bool gpucap_track_insert(struct gpucap_track_entry *entry);
/* Unlink and return an entry for (tag, key), or NULL. Of threads removing
 * the same key at once, exactly one gets each entry. */
struct gpucap_track_entry *gpucap_track_remove(enum gpucap_track_tag tag, uint64_t key);
/* Forked child: start from an empty map (the parent's entries are left
 * allocated and untouched). Only while the process has one thread. */
void gpucap_track_forget_all(void);

#endif
