#define _GNU_SOURCE
/*
 * A test double for libnvidia-ml.so.1: every physical device of
 * FAKECUDA_DEVICES (NVML ignores CUDA_VISIBLE_DEVICES), each with
 * FAKECUDA_TOTAL_BYTES of memory, FAKENVML_USED_BYTES of it in use.
 */
#include "cuda_abi.h"
#include "fake_common.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_EXPORT __attribute__((visibility("default")))

struct nvmlDevice_st {
	int index;
};

static struct nvmlDevice_st handles[FAKE_MAX_DEVICES];
static bool initialised;
static unsigned long long total, used;

FAKE_EXPORT nvmlReturn_t nvmlInit_v2(void)
{
	fake_devices_load();
	for (int i = 0; i < FAKE_MAX_DEVICES; i++)
		handles[i].index = i;
	const char *t = getenv("FAKECUDA_TOTAL_BYTES");
	const char *u = getenv("FAKENVML_USED_BYTES");
	total = t ? strtoull(t, NULL, 0) : (16ull << 30);
	used = u ? strtoull(u, NULL, 0) : 0;
	initialised = true;
	return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlInit(void)
{
	return nvmlInit_v2();
}

FAKE_EXPORT nvmlReturn_t nvmlShutdown(void)
{
	initialised = false;
	return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *n)
{
	if (!initialised)
		return NVML_ERROR_UNINITIALIZED;
	if (!n)
		return NVML_ERROR_INVALID_ARGUMENT;
	*n = (unsigned int)fake_device_count();
	return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
	if (!initialised)
		return NVML_ERROR_UNINITIALIZED;
	if (!device || index >= (unsigned int)fake_device_count())
		return NVML_ERROR_INVALID_ARGUMENT;
	*device = &handles[index];
	return NVML_SUCCESS;
}

static bool valid(nvmlDevice_t device)
{
	return initialised && device && device >= handles && device < handles + fake_device_count();
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned int *index)
{
	if (!valid(device) || !index)
		return NVML_ERROR_INVALID_ARGUMENT;
	*index = (unsigned int)device->index;
	return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
	if (!valid(device) || !uuid)
		return NVML_ERROR_INVALID_ARGUMENT;
	const char *text = fake_device_uuid(device->index);
	if (strlen(text) + 1 > length)
		return NVML_ERROR_INSUFFICIENT_SIZE;
	memcpy(uuid, text, strlen(text) + 1);
	return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
	if (!valid(device) || !memory)
		return NVML_ERROR_INVALID_ARGUMENT;
	memory->total = total;
	memory->used = used;
	memory->free = total - used;
	return NVML_SUCCESS;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *memory)
{
	if (!valid(device) || !memory)
		return NVML_ERROR_INVALID_ARGUMENT;
	if (memory->version != nvmlMemory_v2)
		return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
	memory->total = total;
	memory->reserved = 1 << 20;
	memory->used = used;
	memory->free = total - used - memory->reserved;
	return NVML_SUCCESS;
}
