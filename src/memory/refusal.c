/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a refusal leaves behind: a count in the region (per process and per
 * device, read by `gpucap status` and the exporter) and, for the first
 * refusal of the process only, one warning line saying why and where to
 * look. Runs on the refusal path only; the admissions that succeed never
 * come here.
 */
#include "log.h"
#include "memory_internal.h"

#include <stdio.h>

/* Set by the first refusal of the process; a forked child starts afresh. */
static atomic_bool warned;

void gpucap_refusal_after_fork(void)
{
	atomic_store_explicit(&warned, false, memory_order_relaxed);
}

/* "1.50 GiB", "512 B": two decimals, binary units. */
static const char *human_bytes(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	unsigned unit = 0;
	uint64_t scale = 1;
	while (unit + 1 < sizeof(units) / sizeof(units[0]) && bytes / scale >= 1024) {
		scale *= 1024;
		unit++;
	}
	if (unit == 0) {
		snprintf(buf, len, "%llu B", (unsigned long long)bytes);
		return buf;
	}
	uint64_t whole = bytes / scale;
	uint64_t hundredths = (bytes % scale) * 100 / scale;
	snprintf(buf, len, "%llu.%02u %s", (unsigned long long)whole, (unsigned)hundredths, units[unit]);
	return buf;
}

/* What the warning says about the device, from a snapshot: this process's
 * charge, the container's total, how many processes hold a charge, and the
 * UUID (false: out of memory). */
struct device_use {
	uint64_t own;
	uint64_t total;
	uint32_t holders;
	char uuid[GPUCAP_UUID_MAX];
};

static bool device_use(int region_index, struct device_use *use)
{
	struct gpucap_snapshot *snap = gpucap_region_snapshot(memory_env.region);
	if (!snap)
		return false;
	for (uint32_t d = 0; d < snap->device_count; d++)
		if (snap->devices[d].index == region_index) {
			use->total = snap->devices[d].charged_bytes;
			snprintf(use->uuid, sizeof(use->uuid), "%s", snap->devices[d].uuid);
		}
	for (uint32_t p = 0; p < snap->process_count; p++) {
		const struct gpucap_process_view *proc = &snap->processes[p];
		uint64_t charged = proc->devices[region_index].charged_bytes;
		if (charged == 0)
			continue;
		use->holders++;
		if (proc->self)
			use->own = charged;
	}
	gpucap_snapshot_free(snap);
	return true;
}

static void warn_first(int region_index, const struct gpucap_device *dev, uint64_t bytes, const char *api)
{
	char where[48], request[64], cap_text[32], own_text[32], total_text[32];
	/* Memory the driver takes behind a call (module globals, graph pools)
	 * has no size the call declares: say so rather than "0 B". */
	if (bytes) {
		char human[32];
		snprintf(request, sizeof(request), "%s (%llu bytes)",
		         human_bytes(bytes, human, sizeof(human)), (unsigned long long)bytes);
	} else {
		snprintf(request, sizeof(request), "the memory the driver took for it");
	}
	if (dev)
		snprintf(where, sizeof(where), "device %d", dev->ordinal);
	else
		snprintf(where, sizeof(where), "region device %d", region_index);
	uint64_t limit = 0, charged = 0;
	/* The region's limit already holds the limits file's cap (set as the
	 * handle's own ceiling when the device was resolved). */
	if (!gpucap_region_device_usage(memory_env.region, region_index, &limit, &charged))
		limit = 0;
	struct device_use use = {0, charged, 0, ""};
	device_use(region_index, &use);
	const char *uuid = dev && dev->uuid[0] ? dev->uuid : use.uuid[0] ? use.uuid : "UUID unknown";
	GPUCAP_LOG(
	    GPUCAP_LOG_WARN,
	    "allocation refused: %s of %s on %s (%s) would pass its cap of %s; in use: %s by this process, %s by the container (%u process%s); later refusals in this process are counted, not printed; see `gpucap status --file %s`",
	    api, request, where, uuid, human_bytes(limit, cap_text, sizeof(cap_text)),
	    human_bytes(use.own, own_text, sizeof(own_text)),
	    human_bytes(use.total, total_text, sizeof(total_text)), (unsigned)use.holders,
	    use.holders == 1 ? "" : "es", gpucap_region_path(memory_env.region));
}

void gpucap_refusal_note(int region_index, const struct gpucap_device *dev, uint64_t bytes, const char *api)
{
	if (!api)
		api = "allocation";
	bool counted = memory_env.region && region_index >= 0 &&
	               gpucap_region_note_refusal(memory_env.region, region_index);
	GPUCAP_LOG(GPUCAP_LOG_DEBUG, "refused %llu bytes (%s) on region device %d", (unsigned long long)bytes,
	           api, region_index);
	/* A device that fails closed had its error line at start-up, naming the
	 * cause, and a process that is exiting refuses what it no longer
	 * accounts for: a warning would add nothing. */
	if (!counted || (dev && dev->fail_closed))
		return;
	/* Relaxed: the flag orders nothing else; the exchange alone makes one
	 * refusal the first. */
	if (!atomic_exchange_explicit(&warned, true, memory_order_relaxed))
		warn_first(region_index, dev, bytes, api);
}
