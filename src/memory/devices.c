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
	const struct gpucap_device_config *cfg = &memory_env.config->device[ordinal];
	dev->fail_closed = cfg->fail_closed || !memory_env.region;
	dev->region_index = -1;
	/* A fail-closed device is refused locally and never registered, so a
	 * malformed variable here cannot set the limit other processes see. */
	if (memory_env.region && !cfg->fail_closed) {
		int index = gpucap_region_device_register(memory_env.region, dev->uuid, cfg->limit_bytes,
		                                          cfg->sm_limit);
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
