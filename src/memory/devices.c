/* SPDX-License-Identifier: Apache-2.0 */
/*
 * CUDA ordinals -> GPU UUIDs -> region devices.
 *
 * The region is keyed by UUID, so whatever CUDA_VISIBLE_DEVICES does to the
 * ordinals (indices, UUIDs, MIG UUIDs, any order) the physical device is
 * charged. The per-device limit is looked up by the ordinal as this process
 * sees it (CUDA_DEVICE_MEMORY_LIMIT_<i>).
 */
#include "log.h"
#include "memory_internal.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>

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
	if (!memory_env.config->visible_devices_set)
		return "GPU";
	const char *hit = strstr(memory_env.config->visible_devices, hex_part);
	if (hit && hit - memory_env.config->visible_devices >= 4 && strncmp(hit - 4, "MIG-", 4) == 0)
		return "MIG";
	return "GPU";
}

void gpucap_device_note_file_cap(int region_index, uint64_t cap)
{
	/* The one place the limits file's cap is enforced: the region admits
	 * against the lower of its limit and this handle's cap in one CAS, so a
	 * raised region limit cannot lift it, and reports it as the limit. */
	if (region_index >= 0 && cap < GPUCAP_UNLIMITED)
		gpucap_region_set_local_cap(memory_env.region, region_index, cap);
}

/* Register dev in region with its configured limits. The index is stored
 * before fail_closed is cleared (seq_cst, both): a thread that sees the
 * device charged sees its entry. */
static void register_device(struct gpucap_device *dev, gpucap_region *region)
{
	const struct gpucap_device_config *cfg = &memory_env.config->device[dev->ordinal];
	int index = gpucap_region_device_register(region, dev->uuid, cfg->limit_bytes, cfg->sm_limit);
	if (index < 0) {
		gpucap_log(GPUCAP_LOG_ERROR,
		           "cannot register device %d (%s) in the region: %s; failing closed for it",
		           dev->ordinal, dev->uuid, gpucap_status_text((gpucap_status)-index));
		return;
	}
	atomic_store(&dev->region_index, index);
	gpucap_device_note_file_cap(index, cfg->file_cap_bytes);
	atomic_store(&dev->fail_closed, false);
}

/* *awaiting: the device fails closed only for want of a region. */
static CUresult resolve(struct gpucap_device *dev, CUdevice ordinal, bool *awaiting)
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
	const struct gpucap_device_config *cfg = &memory_env.config->device[ordinal];
	gpucap_region *region = memory_region();
	atomic_store(&dev->fail_closed, true);
	atomic_store(&dev->region_index, -1);
	*awaiting = !region && !cfg->fail_closed;
	/* A fail-closed device is refused locally and never registered, so a
	 * malformed variable here cannot set the limit other processes see. */
	if (region && !cfg->fail_closed)
		register_device(dev, region);
	GPUCAP_LOG(GPUCAP_LOG_DETAIL, "device %d is %s (region entry %d)", ordinal, dev->uuid,
	           atomic_load(&dev->region_index));
	return CUDA_SUCCESS;
}

/* A device resolved while the process had no region, now that it has one
 * (an attach tried again): registered by the thread that takes it out of
 * AWAITING_REGION; the others use it as it is meanwhile, failing closed. */
static void register_late(struct gpucap_device *dev)
{
	gpucap_region *region = memory_region();
	if (!region)
		return;
	int expected = DEVICE_AWAITING_REGION;
	/* Acquire: partner of the release that published the resolution. */
	if (!atomic_compare_exchange_strong_explicit(&dev->state, &expected, DEVICE_REGISTERING,
	                                             memory_order_acquire, memory_order_relaxed))
		return;
	register_device(dev, region);
	GPUCAP_LOG(GPUCAP_LOG_DETAIL, "device %d is %s (region entry %d, registered late)", dev->ordinal,
	           dev->uuid, atomic_load(&dev->region_index));
	/* Release: partner of the acquire loads in gpucap_device_get. */
	atomic_store_explicit(&dev->state, DEVICE_READY, memory_order_release);
}

CUresult gpucap_device_get(CUdevice ordinal, struct gpucap_device **out)
{
	if (ordinal < 0 || ordinal >= GPUCAP_MAX_DEVICES)
		return CUDA_ERROR_INVALID_DEVICE;
	struct gpucap_device *dev = &devices[ordinal];
	for (;;) {
		int state = atomic_load_explicit(&dev->state, memory_order_acquire);
		if (state == DEVICE_READY) {
			*out = dev;
			return CUDA_SUCCESS;
		}
		if (state == DEVICE_UNKNOWN) {
			int expected = DEVICE_UNKNOWN;
			if (!atomic_compare_exchange_strong(&dev->state, &expected, DEVICE_RESOLVING))
				continue;
			bool awaiting = false;
			CUresult r = resolve(dev, ordinal, &awaiting);
			/* A driver error (not initialised, bad ordinal) is the caller's
			 * answer; try again next time. */
			int next = r != CUDA_SUCCESS ? DEVICE_UNKNOWN
			           : awaiting        ? DEVICE_AWAITING_REGION
			                             : DEVICE_READY;
			atomic_store_explicit(&dev->state, next, memory_order_release);
			if (r != CUDA_SUCCESS)
				return r;
			/* The region may have come while it was resolved. */
			if (awaiting)
				register_late(dev);
			*out = dev;
			return CUDA_SUCCESS;
		}
		if (state == DEVICE_AWAITING_REGION || state == DEVICE_REGISTERING) {
			if (state == DEVICE_AWAITING_REGION)
				register_late(dev);
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
		atomic_store(&devices[i].state, DEVICE_UNKNOWN);
		atomic_store(&devices[i].region_index, -1);
		atomic_store(&devices[i].fail_closed, false);
		devices[i].primary_refs = 0;
		devices[i].primary_bytes = 0;
		pthread_mutex_init(&devices[i].primary_lock, NULL);
	}
}

bool gpucap_memory_device(int ordinal, int *region_index, char uuid[GPUCAP_UUID_MAX])
{
	*region_index = -1;
	struct gpucap_device *dev;
	if (gpucap_device_get(ordinal, &dev) != CUDA_SUCCESS)
		return false;
	*region_index = dev->region_index;
	if (uuid)
		memcpy(uuid, dev->uuid, GPUCAP_UUID_MAX);
	return dev->region_index >= 0;
}

bool gpucap_device_retry(const struct gpucap_device *dev)
{
	if (!gpucap_region_retry())
		return false;
	/* Getting the device again registers it if it was waiting for the
	 * region (register_late); the device of an ordinal is always the same
	 * object. */
	struct gpucap_device *again;
	if (gpucap_device_get(dev->ordinal, &again) != CUDA_SUCCESS || again != dev)
		return false;
	return !atomic_load(&again->fail_closed);
}
