/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "format.h"

#include "parse.h"

#include <stdio.h>
#include <time.h>

const char *cli_format_bytes(uint64_t bytes, char *buf, size_t len)
{
	return gpucap_format_size(bytes, buf, (unsigned)len);
}

const char *cli_format_signed_bytes(int64_t bytes, char *buf, size_t len)
{
	if (bytes >= 0)
		return cli_format_bytes((uint64_t)bytes, buf, len);
	char magnitude[CLI_CELL_MAX];
	cli_format_bytes((uint64_t)0 - (uint64_t)bytes, magnitude, sizeof(magnitude));
	snprintf(buf, len, "-%s", magnitude);
	return buf;
}

bool cli_limit_is_unlimited(uint64_t limit_bytes)
{
	return limit_bytes >= GPUCAP_UNLIMITED;
}

bool cli_sm_limit_is_none(uint32_t sm_limit)
{
	return sm_limit == 0 || sm_limit >= 100;
}

const char *cli_format_limit(uint64_t limit_bytes, char *buf, size_t len)
{
	if (cli_limit_is_unlimited(limit_bytes)) {
		snprintf(buf, len, "unlimited");
		return buf;
	}
	return cli_format_bytes(limit_bytes, buf, len);
}

const char *cli_format_sm_limit(uint32_t sm_limit, char *buf, size_t len)
{
	if (cli_sm_limit_is_none(sm_limit))
		snprintf(buf, len, "none");
	else
		snprintf(buf, len, "%u%%", (unsigned)sm_limit);
	return buf;
}

const char *cli_format_time(uint64_t unix_ns, char *buf, size_t len)
{
	time_t seconds = (time_t)(unix_ns / 1000000000u);
	struct tm tm;
	if (unix_ns == 0 || !gmtime_r(&seconds, &tm) || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, len, "-");
	return buf;
}

const char *cli_host_pid_source_key(gpucap_host_pid_source source)
{
	switch (source) {
	case GPUCAP_HOST_PID_SAME_NAMESPACE:
		return "same_namespace";
	case GPUCAP_HOST_PID_NVML:
		return "nvml";
	case GPUCAP_HOST_PID_HOST_RESOLVER:
		return "host_resolver";
	case GPUCAP_HOST_PID_HOST_PROCFS:
		return "host_procfs";
	case GPUCAP_HOST_PID_UNKNOWN:
	default:
		return "unknown";
	}
}

const char *cli_sm_source_key(gpucap_sm_source source)
{
	switch (source) {
	case GPUCAP_SM_SOURCE_NVML:
		return "nvml";
	case GPUCAP_SM_SOURCE_GATE:
		return "gates";
	case GPUCAP_SM_SOURCE_LAUNCHES:
		return "launches";
	case GPUCAP_SM_SOURCE_NONE:
	default:
		return "unknown";
	}
}

const char *cli_host_pid_source_text(gpucap_host_pid_source source)
{
	switch (source) {
	case GPUCAP_HOST_PID_SAME_NAMESPACE:
		return "same pid namespace";
	case GPUCAP_HOST_PID_NVML:
		return "via NVML";
	case GPUCAP_HOST_PID_HOST_RESOLVER:
		return "via host resolver";
	case GPUCAP_HOST_PID_HOST_PROCFS:
		return "from the host's /proc";
	case GPUCAP_HOST_PID_UNKNOWN:
	default:
		return "unknown";
	}
}

bool cli_process_touches_device(const struct gpucap_process_device_view *device)
{
	if (device->charged_bytes || device->in_use_bytes)
		return true;
	for (int k = 0; k < GPUCAP_KIND_COUNT; k++) {
		if (device->kind_bytes[k])
			return true;
	}
	return false;
}

const struct gpucap_process_device_view *cli_process_device(const struct gpucap_snapshot *snapshot,
                                                            const struct gpucap_process_view *process,
                                                            uint32_t i)
{
	if (i >= snapshot->device_count || !process->devices)
		return NULL;
	int index = snapshot->devices[i].index;
	if (index < 0 || (uint32_t)index >= snapshot->device_capacity)
		return NULL;
	return &process->devices[index];
}
