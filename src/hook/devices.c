/*
 * CUDA ordinals -> GPU UUIDs -> region devices.
 *
 * The region is keyed by UUID, so whatever CUDA_VISIBLE_DEVICES does to the
 * ordinals (indices, UUIDs, MIG UUIDs, any order) the physical device is
 * charged. The per-device limit is looked up by the ordinal as this process
 * sees it (CUDA_DEVICE_MEMORY_LIMIT_<i>).
 */
#include "hook.h"
#include "log.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

/* Per region device: the limits file's cap in this process, 0 for none.
 * Written when a device is resolved, before it is published. */
static _Atomic uint64_t file_caps[GPUCAP_MAX_DEVICES];

static struct gpucap_device devices[GPUCAP_MAX_DEVICES] = {
    [0 ... GPUCAP_MAX_DEVICES - 1] = {.primary_lock = PTHREAD_MUTEX_INITIALIZER, .region_index = -1},
};

static void format_uuid(const CUuuid *uuid, const char *prefix, char *out, size_t len)
{
	const unsigned char *b = (const unsigned char *)uuid->bytes;
	snprintf(out, len, "%s-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", prefix,
	         b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
	         b[14], b[15]);
}

/* CUDA reports the same 16 bytes for a MIG instance as NVML shows after
 * "MIG-". When CUDA_VISIBLE_DEVICES names the device that way, key it so. */
static const char *uuid_prefix(const char *hex_part)
{
	if (!gpucap.config.visible_devices_set)
		return "GPU";
	const char *hit = strstr(gpucap.config.visible_devices, hex_part);
	if (hit && hit - gpucap.config.visible_devices >= 4 && strncmp(hit - 4, "MIG-", 4) == 0)
		return "MIG";
	return "GPU";
}

static CUresult resolve(struct gpucap_device *dev, CUdevice ordinal)
{
	CUuuid uuid;
	CUresult r = CUDA_ERROR_NOT_FOUND;
	gpucap_fn_cuDeviceGetUuid_v2 get_v2 = GPUCAP_REAL(cuDeviceGetUuid_v2);
	gpucap_fn_cuDeviceGetUuid get_v1 = GPUCAP_REAL(cuDeviceGetUuid);
	if (get_v2)
		r = get_v2(&uuid, ordinal);
	if (r != CUDA_SUCCESS && get_v1)
		r = get_v1(&uuid, ordinal);
	if (r != CUDA_SUCCESS)
		return r;

	char plain[GPUCAP_UUID_MAX];
	format_uuid(&uuid, "GPU", plain, sizeof(plain));
	format_uuid(&uuid, uuid_prefix(plain + 4), dev->uuid, sizeof(dev->uuid));
	dev->ordinal = ordinal;
	const struct gpucap_device_config *cfg = &gpucap.config.device[ordinal];
	dev->fail_closed = cfg->fail_closed || !gpucap.region;
	dev->region_index = -1;
	/* A fail-closed device is refused locally and never registered, so a
	 * malformed variable here cannot set the limit other processes see. */
	if (gpucap.region && !cfg->fail_closed) {
		int index =
		    gpucap_region_device_register(gpucap.region, dev->uuid, cfg->limit_bytes, cfg->sm_limit);
		if (index < 0) {
			gpucap_log(GPUCAP_LOG_ERROR,
			           "cannot register device %d (%s) in the region: %s; failing closed for it",
			           ordinal, dev->uuid, gpucap_status_text((gpucap_status)-index));
			dev->fail_closed = true;
		} else {
			dev->region_index = index;
			gpucap_device_note_file_cap(index, cfg->file_cap_bytes);
		}
	}
	GPUCAP_LOG(GPUCAP_LOG_DETAIL, "device %d is %s (region entry %d)", ordinal, dev->uuid,
	           dev->region_index);
	return CUDA_SUCCESS;
}

CUresult gpucap_device_get(CUdevice ordinal, struct gpucap_device **out)
{
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES)
		return CUDA_ERROR_INVALID_DEVICE;
	struct gpucap_device *dev = &devices[ordinal];
	for (;;) {
		int state = atomic_load_explicit(&dev->state, memory_order_acquire);
		if (state == 2) {
			*out = dev;
			return CUDA_SUCCESS;
		}
		if (state == 0) {
			int expected = 0;
			if (!atomic_compare_exchange_strong(&dev->state, &expected, 1))
				continue;
			CUresult r = resolve(dev, ordinal);
			/* A driver error (not initialised, bad ordinal) is the caller's
			 * answer; try again next time. */
			atomic_store_explicit(&dev->state, r == CUDA_SUCCESS ? 2 : 0, memory_order_release);
			if (r != CUDA_SUCCESS)
				return r;
			*out = dev;
			return CUDA_SUCCESS;
		}
		sched_yield();
	}
}

CUresult gpucap_device_current(struct gpucap_device **out)
{
	gpucap_fn_cuCtxGetDevice get = GPUCAP_REAL(cuCtxGetDevice);
	if (!get)
		return CUDA_ERROR_NOT_FOUND;
	CUdevice ordinal;
	CUresult r = get(&ordinal);
	if (r != CUDA_SUCCESS)
		return r;
	return gpucap_device_get(ordinal, out);
}

void gpucap_devices_reset(void)
{
	for (int i = 0; i < GPUCAP_MAX_DEVICES; i++) {
		atomic_store(&devices[i].state, 0);
		devices[i].region_index = -1;
		devices[i].fail_closed = false;
		devices[i].primary_refs = 0;
		pthread_mutex_init(&devices[i].primary_lock, NULL);
		atomic_store_explicit(&file_caps[i], 0, memory_order_relaxed);
	}
}

void gpucap_device_note_file_cap(int region_index, uint64_t cap)
{
	if (region_index < 0 || region_index >= GPUCAP_MAX_DEVICES || cap == 0 || cap >= GPUCAP_UNLIMITED)
		return;
	/* The region admits against the lower of its limit and this cap in one
	 * CAS, so a raised region limit cannot lift the file's cap. */
	gpucap_region_set_local_cap(gpucap.region, region_index, cap);
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
	return gpucap_reserve(gpucap.region, region_index, kind, bytes);
}

CUresult gpucap_admit_index(int region_index, gpucap_kind kind, uint64_t bytes)
{
	if (bytes == 0)
		return CUDA_SUCCESS;
	if (region_index < 0 || !gpucap.region)
		return CUDA_ERROR_OUT_OF_MEMORY;
	uint64_t cap = file_cap_of(region_index);
	if (cap && bytes > cap)
		return CUDA_ERROR_OUT_OF_MEMORY;
	gpucap_status st = reserve_capped(region_index, kind, bytes, cap);
	if (st == GPUCAP_ERR_OVER_LIMIT) {
		/* Pools may have released memory since they were last asked, and
		 * this process's idle reserve counts against the file's cap. */
		gpucap_pools_reconcile_all(region_index);
		if (cap) {
			/* The region reclaims dead peers only before its own
			 * refusals; the file's cap needs the same. */
			gpucap_region_return_credit(gpucap.region, region_index);
			gpucap_region_reclaim_dead(gpucap.region, NULL);
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
	if (bytes == 0 || region_index < 0 || !gpucap.region)
		return;
	gpucap_release(gpucap.region, region_index, kind, bytes);
}

bool gpucap_device_usage(int region_index, uint64_t *limit, uint64_t *charged)
{
	if (region_index < 0 || !gpucap.region)
		return false;
	/* A peer that exited still counts until someone sweeps; queries are
	 * where users look, so let them start the (rate-limited) sweep. */
	gpucap_region_maintain(gpucap.region);
	if (!gpucap_region_device_usage(gpucap.region, region_index, limit, charged))
		return false;
	uint64_t cap = file_cap_of(region_index);
	if (cap && cap < *limit)
		*limit = cap;
	return true;
}
