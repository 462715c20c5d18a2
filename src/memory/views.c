/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
/*
 * What applications and nvidia-smi see: with a limit, total is the limit
 * (never more than the card), used is what the region has charged, and free
 * is total - used clamped at 0 (never more than the card has free). Without
 * a limit the driver's figures pass through unchanged. A device that fails
 * closed shows 0 total and 0 free.
 */
#include "log.h"
#include "memory_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

struct view {
	bool limited;
	uint64_t total;
	uint64_t free;
	uint64_t used;
};

/* Compute the view for a device from the real figures. */
static struct view view_for(const struct gpucap_device *dev, uint64_t real_total, uint64_t real_free)
{
	struct view v = {false, real_total, real_free,
	                 real_total - (real_free < real_total ? real_free : real_total)};
	if (dev->fail_closed) {
		v.limited = true;
		v.total = 0;
		v.free = 0;
		v.used = 0;
		return v;
	}
	uint64_t limit, charged;
	if (!gpucap_device_usage(dev->region_index, &limit, &charged) || limit >= GPUCAP_UNLIMITED)
		return v;
	v.limited = true;
	v.total = limit < real_total ? limit : real_total;
	v.used = charged;
	v.free = charged >= v.total ? 0 : v.total - charged;
	if (v.free > real_free)
		v.free = real_free;
	return v;
}

CUresult on_mem_get_info(CUresult (*real)(size_t *, size_t *), size_t *freeBytes, size_t *totalBytes)
{
	if (!freeBytes || !totalBytes)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult r = real(freeBytes, totalBytes);
	struct gpucap_device *dev;
	if (r != CUDA_SUCCESS || gpucap_device_current(&dev) != CUDA_SUCCESS)
		return r;
	struct view v = view_for(dev, *totalBytes, *freeBytes);
	*totalBytes = v.total;
	*freeBytes = v.free;
	return r;
}

CUresult on_device_total_mem(CUresult (*real)(size_t *, CUdevice), size_t *bytes, CUdevice ordinal)
{
	if (!bytes)
		return CUDA_ERROR_INVALID_VALUE;
	CUresult r = real(bytes, ordinal);
	struct gpucap_device *dev;
	if (r != CUDA_SUCCESS || gpucap_device_get(ordinal, &dev) != CUDA_SUCCESS)
		return r;
	struct view v = view_for(dev, *bytes, *bytes);
	*bytes = v.total;
	return r;
}

/* ---- NVML ---------------------------------------------------------------- */

/* The CUDA ordinal this process would give an NVML device, from
 * CUDA_VISIBLE_DEVICES (indices, GPU-/MIG- UUIDs or their prefixes), or -1
 * when the device is not visible to CUDA. Without CUDA_VISIBLE_DEVICES the
 * NVML index is taken as the ordinal. */
static int ordinal_of_nvml_device(const char *uuid, unsigned int nvml_index, bool have_index)
{
	if (!memory_env.config->visible_devices_set)
		return have_index ? (int)nvml_index : -1;
	char list[sizeof(memory_env.config->visible_devices)];
	memcpy(list, memory_env.config->visible_devices, sizeof(list));
	int ordinal = 0;
	char *save = NULL;
	for (char *item = strtok_r(list, ",", &save); item; item = strtok_r(NULL, ",", &save), ordinal++) {
		while (*item == ' ')
			item++;
		if (item[0] >= '0' && item[0] <= '9') {
			char *end;
			unsigned long index = strtoul(item, &end, 10);
			if (*end != '\0' && *end != ' ')
				return -1; /* CUDA stops at the first invalid entry */
			if (have_index && index == nvml_index)
				return ordinal;
		} else if (strncmp(item, "GPU-", 4) == 0 || strncmp(item, "MIG-", 4) == 0) {
			size_t len = strlen(item);
			while (len && item[len - 1] == ' ')
				item[--len] = '\0';
			if (len > 4 && strncmp(uuid, item, len) == 0)
				return ordinal;
		} else {
			return -1;
		}
	}
	return -1;
}

/* The region device for an NVML device: found by UUID, or registered with
 * this process's limit for the matching CUDA ordinal. */
static bool nvml_device(nvmlDevice_t device, struct gpucap_device *out)
{
	gpucap_fn_nvmlDeviceGetUUID get_uuid = GPUCAP_REAL(nvmlDeviceGetUUID);
	char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE];
	if (!get_uuid || get_uuid(device, uuid, sizeof(uuid)) != NVML_SUCCESS)
		return false;
	memset(out, 0, sizeof(*out));
	out->region_index = -1;
	gpucap_fn_nvmlDeviceGetIndex get_index = GPUCAP_REAL(nvmlDeviceGetIndex);
	unsigned int index = 0;
	bool have_index = get_index && get_index(device, &index) == NVML_SUCCESS;
	int ordinal = ordinal_of_nvml_device(uuid, index, have_index);
	const struct gpucap_device_config *cfg =
	    ordinal >= 0 && ordinal < GPUCAP_MAX_DEVICES ? &memory_env.config->device[ordinal] : NULL;
	if (!memory_env.region) {
		out->fail_closed = true;
		return true;
	}
	if (cfg && cfg->fail_closed) {
		out->fail_closed = true;
		return true;
	}
	out->region_index = gpucap_region_device_find(memory_env.region, uuid);
	if (out->region_index < 0 && cfg && cfg->limit_bytes < GPUCAP_UNLIMITED) {
		int registered =
		    gpucap_region_device_register(memory_env.region, uuid, cfg->limit_bytes, cfg->sm_limit);
		out->region_index = registered >= 0 ? registered : -1;
	}
	if (out->region_index >= 0 && cfg)
		gpucap_device_note_file_cap(out->region_index, cfg->file_cap_bytes);
	return out->region_index >= 0;
}

/* The view of an NVML device's memory from the real figures; false when
 * the figures pass through unchanged. */
static bool nvml_view(nvmlDevice_t device, unsigned long long total, unsigned long long free_bytes,
                      struct view *v)
{
	struct gpucap_device dev;
	if (!nvml_device(device, &dev))
		return false;
	*v = view_for(&dev, total, free_bytes);
	return v->limited;
}

nvmlReturn_t on_nvml_memory_info(nvmlReturn_t (*real)(nvmlDevice_t, nvmlMemory_t *), nvmlDevice_t device,
                                 nvmlMemory_t *memory)
{
	nvmlReturn_t r = real(device, memory);
	struct view v;
	if (r == NVML_SUCCESS && memory && nvml_view(device, memory->total, memory->free, &v)) {
		memory->total = v.total;
		memory->free = v.free;
		memory->used = v.used;
	}
	return r;
}

nvmlReturn_t on_nvml_memory_info_v2(nvmlReturn_t (*real)(nvmlDevice_t, nvmlMemory_v2_t *),
                                    nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
	nvmlReturn_t r = real(device, memory);
	struct view v;
	if (r == NVML_SUCCESS && memory && nvml_view(device, memory->total, memory->free, &v)) {
		/* Inside the cap there is no driver-reserved share: total = used + free. */
		memory->total = v.total;
		memory->reserved = 0;
		memory->free = v.free;
		memory->used = v.used;
	}
	return r;
}
