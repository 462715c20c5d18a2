/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
/*
 * A test double for libnvidia-ml.so.1: every physical device of
 * FAKECUDA_DEVICES (NVML ignores CUDA_VISIBLE_DEVICES), each with
 * FAKECUDA_TOTAL_BYTES of memory, FAKENVML_USED_BYTES of it in use.
 *
 * Per-process utilisation (nvmlDeviceGetProcessUtilization) reports, for
 * every device, one fresh sample per entry of FAKENVML_PROCESS_UTIL
 * ("PID:SM,..."; PID "self" is the calling process) or of what a test set
 * with fakenvml_set_process_util. FAKENVML_PROCESS_UTIL=unsupported makes
 * the call fail with NVML_ERROR_NOT_SUPPORTED. FAKENVML_SELF_GAPS="ON:OFF"
 * lists this process in ON calls, then leaves it out of OFF calls, and so on
 * (next to another tenant an H100 left a process out of its list for
 * seconds at a time). SM "busy" reports what the
 * fake CUDA driver's device 0 was busy since the previous call (the share a
 * lone process gets), as the real NVML measures it.
 * nvmlDeviceGetUtilizationRates and nvmlDeviceGetSamples report the
 * device's busy share the same way, plus the figures of the other processes
 * a test made up (their kernels run on the same device);
 * FAKENVML_DEVICE_UTIL overrides it.
 */
#include "cuda_abi.h"
#include "fake_common.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAKE_EXPORT __attribute__((visibility("default")))

struct nvmlDevice_st {
	int index;
};

static struct nvmlDevice_st handles[FAKE_MAX_DEVICES];
/* gpucap's reconciler and its SM controller initialise NVML from their own
 * threads, possibly at once: the setup runs once, under setup_lock. */
static atomic_bool initialised;
static pthread_mutex_t setup_lock = PTHREAD_MUTEX_INITIALIZER;
static bool set_up;
static unsigned long long total, used;

FAKE_EXPORT nvmlReturn_t nvmlInit_v2(void)
{
	pthread_mutex_lock(&setup_lock);
	if (set_up) {
		initialised = true;
		pthread_mutex_unlock(&setup_lock);
		return NVML_SUCCESS;
	}
	set_up = true;
	fake_devices_load();
	for (int i = 0; i < FAKE_MAX_DEVICES; i++)
		handles[i].index = i;
	const char *t = getenv("FAKECUDA_TOTAL_BYTES");
	const char *u = getenv("FAKENVML_USED_BYTES");
	total = t ? strtoull(t, NULL, 0) : (16ull << 30);
	used = u ? strtoull(u, NULL, 0) : 0;
	initialised = true;
	pthread_mutex_unlock(&setup_lock);
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

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
	if (!initialised)
		return NVML_ERROR_UNINITIALIZED;
	if (!uuid || !device)
		return NVML_ERROR_INVALID_ARGUMENT;
	for (int i = 0; i < fake_device_count(); i++) {
		if (strcmp(fake_device_uuid(i), uuid) == 0) {
			*device = &handles[i];
			return NVML_SUCCESS;
		}
	}
	return NVML_ERROR_NOT_FOUND;
}

/* ---- Per-process utilisation -------------------------------------------------- */

#define MAX_UTIL 16

struct util_entry {
	unsigned int pid;
	unsigned int sm; /* UTIL_MEASURED: from the fake CUDA driver's clock */
};

#define UTIL_MEASURED UINT_MAX

static pthread_mutex_t util_lock = PTHREAD_MUTEX_INITIALIZER;
static struct util_entry util[MAX_UTIL];
static int util_count = -1; /* -1: not read from the environment yet */
static bool util_unsupported;

static void util_load_locked(void)
{
	if (util_count >= 0)
		return;
	util_count = 0;
	const char *spec = getenv("FAKENVML_PROCESS_UTIL");
	if (!spec)
		return;
	if (strcmp(spec, "unsupported") == 0) {
		util_unsupported = true;
		return;
	}
	char copy[1024];
	snprintf(copy, sizeof(copy), "%s", spec);
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item && util_count < MAX_UTIL;
	     item = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(item, ':');
		if (!colon)
			continue;
		*colon = '\0';
		unsigned int pid =
		    strcmp(item, "self") == 0 ? (unsigned int)getpid() : (unsigned int)atoi(item);
		util[util_count].pid = pid;
		util[util_count].sm =
		    strcmp(colon + 1, "busy") == 0 ? UTIL_MEASURED : (unsigned int)atoi(colon + 1);
		util_count++;
	}
}

static void util_prepare(void)
{
	pthread_mutex_lock(&util_lock);
}

static void util_release(void)
{
	pthread_mutex_unlock(&util_lock);
}

__attribute__((constructor)) static void util_atfork(void)
{
	pthread_atfork(util_prepare, util_release, util_release);
}

/* Set (sm > 0) or remove (sm == 0) the utilisation NVML reports for pid
 * (0: the calling process). */
FAKE_EXPORT void fakenvml_set_process_util(unsigned int pid, unsigned int sm)
{
	if (pid == 0)
		pid = (unsigned int)getpid();
	pthread_mutex_lock(&util_lock);
	util_load_locked();
	int i = 0;
	while (i < util_count && util[i].pid != pid)
		i++;
	if (sm == 0 && i < util_count) {
		util[i] = util[--util_count];
	} else if (sm > 0 && i < MAX_UTIL) {
		util[i].pid = pid;
		util[i].sm = sm;
		if (i == util_count)
			util_count++;
	}
	pthread_mutex_unlock(&util_lock);
}

/* The fake CUDA driver's clock (tests/fakedriver/fake_clock.h), which may be
 * simulated; the system's when that library is not loaded. */
static uint64_t fake_clock(bool realtime)
{
	uint64_t (*now)(void) =
	    (uint64_t(*)(void))dlsym(RTLD_DEFAULT, realtime ? "fakeclock_realtime_now" : "fakeclock_now");
	if (now)
		return now();
	struct timespec ts;
	clock_gettime(realtime ? CLOCK_REALTIME : CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The fake GPU's state, read before util_lock is taken: the fake driver's
 * lock and clock nest outside it (fork handlers), never inside. */
struct gpu_reading {
	uint64_t now_ns;
	uint64_t busy_ns;
	bool known;
};

static struct gpu_reading read_gpu(void)
{
	struct gpu_reading g = {fake_clock(false), 0, false};
	uint64_t (*busy_ns)(int) = (uint64_t(*)(int))dlsym(RTLD_DEFAULT, "fakecuda_busy_ns");
	if (busy_ns) {
		g.busy_ns = busy_ns(0);
		g.known = true;
	}
	return g;
}

/* Device 0's busy percent since the previous call (caller holds util_lock). */
static unsigned int measured_util(struct gpu_reading g)
{
	static uint64_t last_busy, last_ns;
	if (!g.known)
		return 0;
	unsigned int percent = 0;
	if (last_ns && g.now_ns > last_ns && g.busy_ns >= last_busy)
		percent = (unsigned int)((g.busy_ns - last_busy) * 100u / (g.now_ns - last_ns));
	last_busy = g.busy_ns;
	last_ns = g.now_ns;
	return percent > 100 ? 100 : percent;
}

/* The device's busy percent since the previous reading: the share of the
 * time in which the fake CUDA driver's device 0 ran work (its idle gaps
 * between launches count as idle, as the real counter's do), plus the
 * figures of the other processes a test made up (their kernels run on the
 * same device), or what FAKENVML_DEVICE_UTIL says. */
static unsigned int device_busy_percent(const char *fixed)
{
	struct gpu_reading gpu = read_gpu();
	static uint64_t last_busy, last_ns;
	pthread_mutex_lock(&util_lock);
	unsigned int percent = 0;
	if (fixed) {
		percent = (unsigned int)atoi(fixed);
	} else {
		if (gpu.known && last_ns && gpu.now_ns > last_ns && gpu.busy_ns >= last_busy)
			percent = (unsigned int)((gpu.busy_ns - last_busy) * 100u / (gpu.now_ns - last_ns));
		util_load_locked();
		for (int i = 0; i < util_count; i++)
			if (util[i].pid != (unsigned int)getpid() && util[i].sm != UTIL_MEASURED)
				percent += util[i].sm;
	}
	if (gpu.known) {
		last_busy = gpu.busy_ns;
		last_ns = gpu.now_ns;
	}
	pthread_mutex_unlock(&util_lock);
	return percent > 100 ? 100 : percent;
}

/* FAKENVML_DEVICE_UTIL=unsupported: neither call answers. */
FAKE_EXPORT nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization)
{
	if (!valid(device) || !utilization)
		return NVML_ERROR_INVALID_ARGUMENT;
	const char *fixed = getenv("FAKENVML_DEVICE_UTIL");
	if (fixed && strcmp(fixed, "unsupported") == 0)
		return NVML_ERROR_NOT_SUPPORTED;
	utilization->gpu = device_busy_percent(fixed);
	utilization->memory = 0;
	return NVML_SUCCESS;
}

/* Utilisation samples: one per call, covering the time since the previous
 * reading. FAKENVML_DEVICE_SAMPLES=unsupported: only the rates answer. */
FAKE_EXPORT nvmlReturn_t nvmlDeviceGetSamples(nvmlDevice_t device, nvmlSamplingType_t type,
                                              unsigned long long last_seen, nvmlValueType_t *value_type,
                                              unsigned int *count, nvmlSample_t *samples)
{
	if (!valid(device) || !value_type || !count)
		return NVML_ERROR_INVALID_ARGUMENT;
	const char *fixed = getenv("FAKENVML_DEVICE_UTIL");
	const char *off = getenv("FAKENVML_DEVICE_SAMPLES");
	if ((fixed && strcmp(fixed, "unsupported") == 0) || (off && strcmp(off, "unsupported") == 0) ||
	    type != NVML_GPU_UTILIZATION_SAMPLES)
		return NVML_ERROR_NOT_SUPPORTED;
	unsigned long long now_us = fake_clock(true) / 1000u;
	if (now_us <= last_seen)
		return NVML_ERROR_NOT_FOUND;
	if (!samples || *count < 1) {
		*count = 1;
		return samples ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
	}
	*value_type = NVML_VALUE_TYPE_UNSIGNED_INT;
	samples[0].timeStamp = now_us;
	samples[0].sampleValue.uiVal = device_busy_percent(fixed);
	*count = 1;
	return NVML_SUCCESS;
}

/* Whether this call lists this process (FAKENVML_SELF_GAPS; caller holds
 * util_lock). */
static bool self_in_list(void)
{
	static unsigned long calls;
	unsigned on = 0, off = 0;
	const char *gaps = getenv("FAKENVML_SELF_GAPS");
	if (!gaps || sscanf(gaps, "%u:%u", &on, &off) != 2 || on + off == 0)
		return true;
	return calls++ % (on + off) < on;
}

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                                         nvmlProcessUtilizationSample_t *samples,
                                                         unsigned int *count, unsigned long long last_seen)
{
	if (!valid(device) || !count)
		return NVML_ERROR_INVALID_ARGUMENT;
	unsigned long long now_us = fake_clock(true) / 1000u;
	struct gpu_reading gpu = read_gpu();
	pthread_mutex_lock(&util_lock);
	util_load_locked();
	nvmlReturn_t r = NVML_SUCCESS;
	unsigned int n = (unsigned int)util_count;
	if (util_unsupported) {
		r = NVML_ERROR_NOT_SUPPORTED;
	} else if (n == 0 || now_us <= last_seen) {
		r = NVML_ERROR_NOT_FOUND;
	} else if (!samples || *count < n) {
		*count = n;
		r = NVML_ERROR_INSUFFICIENT_SIZE;
	} else {
		bool self_listed = self_in_list();
		unsigned int listed = 0;
		for (unsigned int i = 0; i < n; i++) {
			if (!self_listed && util[i].pid == (unsigned int)getpid())
				continue;
			memset(&samples[listed], 0, sizeof(samples[listed]));
			samples[listed].pid = util[i].pid;
			samples[listed].timeStamp = now_us;
			samples[listed].smUtil =
			    util[i].sm == UTIL_MEASURED ? measured_util(gpu) : util[i].sm;
			listed++;
		}
		*count = listed;
		if (listed == 0)
			r = NVML_ERROR_NOT_FOUND;
	}
	pthread_mutex_unlock(&util_lock);
	return r;
}

/* ---- Per-process memory -------------------------------------------------------
 *
 * This process (getpid(), as NVML names it inside a PID namespace) is listed
 * on a device where it holds anything, with what the fake CUDA driver says
 * it holds there in all (fake_usage.c). Other processes are not modelled.
 * FAKENVML_PROCESSES=unsupported makes the call fail. */

static _Atomic uint64_t process_queries;

FAKE_EXPORT nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *infoCount,
                                                                 nvmlProcessInfo_t *infos)
{
	process_queries++;
	if (!valid(device) || !infoCount)
		return NVML_ERROR_INVALID_ARGUMENT;
	const char *mode = getenv("FAKENVML_PROCESSES");
	if (mode && strcmp(mode, "unsupported") == 0)
		return NVML_ERROR_NOT_SUPPORTED;
	int (*process_used)(int, uint64_t *) =
	    (int (*)(int, uint64_t *))dlsym(RTLD_DEFAULT, "fakecuda_process_used_physical");
	uint64_t bytes = 0;
	unsigned int n = process_used && process_used(device->index, &bytes) ? 1u : 0u;
	if (*infoCount < n || (n && !infos)) {
		*infoCount = n;
		return NVML_ERROR_INSUFFICIENT_SIZE;
	}
	if (n) {
		memset(&infos[0], 0, sizeof(infos[0]));
		infos[0].pid = (unsigned int)getpid();
		infos[0].usedGpuMemory = bytes;
	}
	*infoCount = n;
	return NVML_SUCCESS;
}

/* Counters for the tests: "process_queries", the calls above. */
FAKE_EXPORT uint64_t fakenvml_stat(const char *name)
{
	if (name && strcmp(name, "process_queries") == 0)
		return process_queries;
	return 0;
}

#define FAKE_ROWS_NVML
#include "fake_rows.h"
