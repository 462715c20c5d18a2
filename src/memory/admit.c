/*
 * Admission: the charge to the region before an allocation, within the
 * region's limit and the limits file's cap, and its return; and the common
 * shape of the simple allocation paths (charge, allocate, track).
 */
#include "log.h"
#include "memory_internal.h"

#include <stdlib.h>

/* Per region device: the limits file's cap in this process, 0 for none.
 * Written when a device is resolved, before it is published. */
static _Atomic uint64_t file_caps[GPUCAP_MAX_DEVICES];

/* Registered once by the pools (gpucap_memory_start), before any charge. */
static void (*before_refusal)(int region_index);

void gpucap_admit_before_refusal(void (*reclaim)(int region_index))
{
	before_refusal = reclaim;
}

void gpucap_file_caps_reset(void)
{
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++)
		atomic_store_explicit(&file_caps[i], 0, memory_order_relaxed);
}

void gpucap_device_note_file_cap(int region_index, uint64_t cap)
{
	if (region_index < 0 || region_index >= GPUCAP_MAX_DEVICES || cap == 0 || cap >= GPUCAP_UNLIMITED)
		return;
	/* The region admits against the lower of its limit and this cap in one
	 * CAS, so a raised region limit cannot lift the file's cap. */
	gpucap_region_set_local_cap(memory_env.region, region_index, cap);
	uint64_t current = atomic_load_explicit(&file_caps[region_index], memory_order_relaxed);
	while ((current == 0 || cap < current) &&
	       !atomic_compare_exchange_weak_explicit(&file_caps[region_index], &current, cap,
	                                              memory_order_relaxed, memory_order_relaxed)) {
	}
}

static uint64_t file_cap_of(int region_index)
{
	return region_index < GPUCAP_MAX_DEVICES
	           ? atomic_load_explicit(&file_caps[region_index], memory_order_relaxed)
	           : 0;
}

static gpucap_status reserve_capped(int region_index, gpucap_kind kind, uint64_t bytes, uint64_t cap)
{
	(void)cap; /* applied by the region through gpucap_region_set_local_cap */
	return gpucap_reserve(memory_env.region, region_index, kind, bytes);
}

CUresult gpucap_admit_index(int region_index, gpucap_kind kind, uint64_t bytes)
{
	if (bytes == 0)
		return CUDA_SUCCESS;
	if (region_index < 0 || !memory_env.region)
		return CUDA_ERROR_OUT_OF_MEMORY;
	uint64_t cap = file_cap_of(region_index);
	if (cap && bytes > cap)
		return CUDA_ERROR_OUT_OF_MEMORY;
	gpucap_status st = reserve_capped(region_index, kind, bytes, cap);
	if (st == GPUCAP_ERR_OVER_LIMIT) {
		/* Pools may have released memory since they were last asked, and
		 * this process's idle reserve counts against the file's cap. */
		if (before_refusal)
			before_refusal(region_index);
		if (cap) {
			/* The region reclaims dead peers only before its own
			 * refusals; the file's cap needs the same. */
			gpucap_region_return_credit(memory_env.region, region_index);
			gpucap_region_reclaim_dead(memory_env.region, NULL);
		}
		st = reserve_capped(region_index, kind, bytes, cap);
	}
	return st == GPUCAP_OK ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

CUresult gpucap_admit(const struct gpucap_device *dev, gpucap_kind kind, uint64_t bytes)
{
	if (bytes == 0)
		return CUDA_SUCCESS;
	if (dev->fail_closed)
		return CUDA_ERROR_OUT_OF_MEMORY;
	return gpucap_admit_index(dev->region_index, kind, bytes);
}

void gpucap_unadmit_index(int region_index, gpucap_kind kind, uint64_t bytes)
{
	if (bytes == 0 || region_index < 0 || !memory_env.region)
		return;
	gpucap_release(memory_env.region, region_index, kind, bytes);
}

bool gpucap_device_usage(int region_index, uint64_t *limit, uint64_t *charged)
{
	if (region_index < 0 || !memory_env.region)
		return false;
	/* A peer that exited still counts until someone sweeps; queries are
	 * where users look, so let them start the (rate-limited) sweep. */
	gpucap_region_maintain(memory_env.region);
	if (!gpucap_region_device_usage(memory_env.region, region_index, limit, charged))
		return false;
	uint64_t cap = file_cap_of(region_index);
	if (cap && cap < *limit)
		*limit = cap;
	return true;
}

/* ---- Tracking helpers ------------------------------------------------------ */

/* Put entry in the map. Should the map be unable to grow (the host is out of
 * memory), the allocation keeps its charge until the process exits: counted
 * too high, never too low. */
void gpucap_track_put(struct gpucap_track_entry *entry)
{
	if (gpucap_track_insert(entry))
		return;
	GPUCAP_LOG(GPUCAP_LOG_WARN,
	           "out of host memory: %llu bytes stay charged on region device %d until exit",
	           (unsigned long long)entry->bytes, entry->region_index);
	free(entry);
}

void gpucap_track(struct gpucap_track_entry *entry, enum gpucap_track_tag tag, uint64_t key, int region_index,
                  gpucap_kind kind, uint64_t bytes, struct gpucap_pool *pool)
{
	entry->tag = (uint8_t)tag;
	entry->key = key;
	entry->region_index = (int16_t)region_index;
	entry->kind = (uint8_t)kind;
	entry->bytes = bytes;
	entry->pool = pool;
	gpucap_track_put(entry);
}

void gpucap_track_settle(struct gpucap_track_entry *entry, CUresult r)
{
	if (!entry)
		return;
	if (r == CUDA_SUCCESS)
		gpucap_track_release(entry);
	else
		gpucap_track_put(entry);
}

void gpucap_track_release(struct gpucap_track_entry *entry)
{
	gpucap_unadmit_index(entry->region_index, (gpucap_kind)entry->kind, entry->bytes);
	free(entry);
}

CUresult gpucap_simple_admit(const struct simple_alloc *a, struct gpucap_track_entry **entry)
{
	*entry = gpucap_track_new();
	if (!*entry)
		return CUDA_ERROR_OUT_OF_MEMORY;
	CUresult r = gpucap_admit(a->dev, a->kind, a->bytes);
	if (r != CUDA_SUCCESS) {
		free(*entry);
		*entry = NULL;
		gpucap_refusal_note(a->dev->region_index, a->dev, a->bytes, a->api);
	}
	return r;
}

void gpucap_simple_done(const struct simple_alloc *a, struct gpucap_track_entry *entry, CUresult r,
                        uint64_t key)
{
	if (r != CUDA_SUCCESS) {
		gpucap_unadmit_index(a->dev->region_index, a->kind, a->bytes);
		free(entry);
		return;
	}
	gpucap_track(entry, a->tag, key, a->dev->region_index, a->kind, a->bytes, NULL);
}
