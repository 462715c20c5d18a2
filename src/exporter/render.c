/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "render.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct family_info {
	const char *name;
	const char *type;
	const char *help;
};

/* Order of output. Names carry their unit (Prometheus naming rules). */
static const struct family_info families[EXP_FAMILY_COUNT] = {
    [EXP_REGION_UP] =
        {"gpucap_region_up", "gauge",
         "1 if the region file could be read on this scrape, 0 if it is missing, corrupt or unreadable."},
    [EXP_REGION_READ_ERRORS] =
        {"gpucap_region_read_errors_total", "counter",
         "Scrapes on which the region file could not be read, since the exporter first saw the path."},
    [EXP_REGION_PROCESSES] = {"gpucap_region_processes", "gauge",
                              "Process slots in use, by state: alive, or dead and awaiting reclaim."},
    [EXP_REGION_RECLAIMED_SLOTS] = {"gpucap_region_reclaimed_slots_total", "counter",
                                    "Slots of dead processes reclaimed since the region was created."},
    [EXP_REGION_RECLAIMED_BYTES] =
        {"gpucap_region_reclaimed_bytes_total", "counter",
         "Bytes returned by reclaiming dead processes since the region was created."},
    [EXP_DEVICE_LIMIT] = {"gpucap_device_memory_limit_bytes", "gauge",
                          "Memory limit of the device in bytes; absent when the device has no limit."},
    [EXP_DEVICE_CHARGED] = {"gpucap_device_memory_charged_bytes", "gauge",
                            "Bytes counted against the limit, including the idle reserves of threads."},
    [EXP_DEVICE_IN_USE] = {"gpucap_device_memory_in_use_bytes", "gauge",
                           "Bytes in use by the processes of the region (charged minus idle reserves)."},
    [EXP_DEVICE_PEAK] = {"gpucap_device_memory_peak_bytes", "gauge",
                         "Highest charged total seen since the region was created, in bytes."},
    [EXP_DEVICE_SM_LIMIT] = {"gpucap_device_sm_limit_ratio", "gauge",
                             "Share of the device's SMs the region may use, 0 to 1 (1: no SM limit)."},
    [EXP_DEVICE_SM_DUTY] =
        {"gpucap_device_sm_duty_ratio", "gauge",
         "Fraction of time the SM throttle currently lets the region's kernels run on the device, 0 to 1 (1: no SM limit)."},
    [EXP_DEVICE_SM_SHARE] =
        {"gpucap_device_sm_share_ratio", "gauge",
         "Share of the device delivered to the region's processes (what their work got) over about the last second, 0 to 1; absent until measured."},
    [EXP_DEVICE_SM_ASKED] =
        {"gpucap_device_sm_asked_ratio", "gauge",
         "Share of the device the region's work asked for over about the last second (what it would have used unthrottled), 0 to 1; equals gpucap_device_sm_share_ratio unless the SM limit held the work back; absent until measured."},
    [EXP_DEVICE_REFUSALS] =
        {"gpucap_allocation_refusals_total", "counter",
         "Allocations refused on the device because they would pass its memory limit, since the region was created."},
    [EXP_PROCESS_IN_USE] = {"gpucap_process_memory_in_use_bytes", "gauge",
                            "Bytes a process has in use on a device."},
    [EXP_PROCESS_DRIVER] =
        {"gpucap_process_memory_driver_bytes", "gauge",
         "Bytes the driver holds for a process on a device that no allocation call asked for (part of in use); absent while none."},
    [EXP_PROCESS_ALIVE] =
        {"gpucap_process_alive", "gauge",
         "1 while the process owning the slot is alive, 0 once it died and its charges await reclaim."},
    [EXP_PROCESS_LAST_LAUNCH] =
        {"gpucap_process_last_launch_timestamp_seconds", "gauge",
         "Unix time at which the process last launched work on a GPU; absent if it never did."},
    [EXP_PROCESS_REFUSALS] =
        {"gpucap_process_allocation_refusals_total", "counter",
         "Allocations refused to the process because they would pass a memory limit, on every device."},
    [EXP_HAMI_USED] = {"hami_vgpu_memory_used_bytes", "gauge",
                       "HAMi-compatible name: bytes counted against the container's limit on the device."},
    [EXP_HAMI_LIMIT] = {"hami_vgpu_memory_limit_bytes", "gauge",
                        "HAMi-compatible name: the container's memory limit on the device in bytes."},
    [EXP_HAMI_UTILIZATION] =
        {"hami_container_device_utilization_ratio", "gauge",
         "HAMi-compatible name: SM share the container achieved on the device, in percent (0-100) as HAMi reports it; absent until measured."},
    [EXP_HAMI_LAST_KERNEL] =
        {"hami_container_last_kernel_elapsed_seconds", "gauge",
         "HAMi-compatible name: seconds since a process of the container last launched a kernel."},
    [EXP_HAMI_DEVICE_MEMORY] =
        {"hami_container_device_memory_bytes", "gauge",
         "HAMi-compatible name: bytes counted against the container's limit on the device."},
    [EXP_HAMI_CONTEXT] =
        {"hami_vgpu_memory_context_bytes", "gauge",
         "HAMi-compatible name: bytes of CUDA contexts the container's processes hold on the device."},
    [EXP_HAMI_MODULE] =
        {"hami_vgpu_memory_module_bytes", "gauge",
         "HAMi-compatible name: bytes of loaded modules the container's processes hold on the device."},
    [EXP_HAMI_BUFFER] =
        {"hami_vgpu_memory_buffer_bytes", "gauge",
         "HAMi-compatible name: bytes of allocations (buffers) the container's processes hold on the device."},
    [EXP_LEGACY_USED] = {"vGPU_device_memory_usage_in_bytes", "gauge",
                         "HAMi's legacy name of hami_vgpu_memory_used_bytes."},
    [EXP_LEGACY_LIMIT] = {"vGPU_device_memory_limit_in_bytes", "gauge",
                          "HAMi's legacy name of hami_vgpu_memory_limit_bytes."},
    [EXP_LEGACY_MEMORY_DESC] =
        {"Device_memory_desc_of_container", "gauge",
         "HAMi's legacy name: bytes counted against the limit, with the context, module, data and other bytes as labels."},
    [EXP_LEGACY_UTILIZATION] = {"Device_utilization_desc_of_container", "gauge",
                                "HAMi's legacy name of hami_container_device_utilization_ratio."},
    [EXP_LEGACY_LAST_KERNEL] = {"Device_last_kernel_of_container", "gauge",
                                "HAMi's legacy name of hami_container_last_kernel_elapsed_seconds."},
    [EXP_SCRAPE_DURATION] = {"gpucap_exporter_scrape_duration_seconds", "gauge",
                             "Time spent reading every region for this scrape, in seconds."},
};

/* Written once by the command line before the server thread starts (thread
 * creation orders it before every read), read on each scrape. */
static bool hami_legacy_names;

void exp_render_set_hami_legacy(bool on)
{
	hami_legacy_names = on;
}

void exp_render_init(struct exp_render *render, bool hami_metrics)
{
	render->hami_metrics = hami_metrics;
	render->hami_legacy = hami_metrics && hami_legacy_names;
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	render->now_unix_ns = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	for (int f = 0; f < EXP_FAMILY_COUNT; f++)
		exp_text_init(&render->family[f]);
}

void exp_render_discard(struct exp_render *render)
{
	for (int f = 0; f < EXP_FAMILY_COUNT; f++)
		exp_text_free(&render->family[f]);
}

static void label(struct exp_text *t, const char *name, const char *value, size_t max_len, bool *first)
{
	if (!value[0])
		return; /* empty means absent in Prometheus; leave it out */
	if (!*first)
		exp_text_puts(t, ",");
	*first = false;
	exp_text_puts(t, name);
	exp_text_puts(t, "=\"");
	exp_text_label_value(t, value, max_len);
	exp_text_puts(t, "\"");
}

static void int_label(struct exp_text *t, const char *name, int64_t value, bool *first)
{
	char digits[24];
	snprintf(digits, sizeof(digits), "%" PRId64, value);
	label(t, name, digits, sizeof(digits), first);
}

/* "name{region=...,namespace=...,pod=...,container=..." without the closing
 * brace, so callers can add their own labels. */
static void open_sample(struct exp_text *t, enum exp_family f, const char *path,
                        const struct exp_pod_labels *l, bool *first)
{
	exp_text_puts(t, families[f].name);
	exp_text_puts(t, "{");
	*first = true;
	label(t, "region", path, SIZE_MAX, first);
	label(t, "namespace", l->kube_namespace, sizeof(l->kube_namespace), first);
	label(t, "pod", l->pod, sizeof(l->pod), first);
	label(t, "container", l->container, sizeof(l->container), first);
}

static void close_uint(struct exp_text *t, uint64_t value)
{
	exp_text_printf(t, "} %" PRIu64 "\n", value);
}

/* value / 10^decimals, without trailing zeros: "0.3", "1", "31.2345". */
static void close_decimal(struct exp_text *t, uint64_t value, unsigned decimals)
{
	uint64_t scale = 1;
	for (unsigned i = 0; i < decimals; i++)
		scale *= 10;
	uint64_t frac = value % scale;
	if (!frac) {
		close_uint(t, value / scale);
		return;
	}
	char tail[24];
	snprintf(tail, sizeof(tail), "%0*" PRIu64, (int)decimals, frac);
	size_t end = strlen(tail);
	while (end > 0 && tail[end - 1] == '0')
		tail[--end] = '\0';
	exp_text_printf(t, "} %" PRIu64 ".%s\n", value / scale, tail);
}

#define PPM_DECIMALS         6 /* parts per million as a ratio */
#define PPM_PERCENT_DECIMALS 4 /* parts per million as a percentage */

static void device_sample(struct exp_render *r, enum exp_family f, const char *path,
                          const struct exp_pod_labels *l, const struct gpucap_device_view *d, uint64_t value)
{
	struct exp_text *t = &r->family[f];
	bool first;
	open_sample(t, f, path, l, &first);
	label(t, "device_uuid", d->uuid, sizeof(d->uuid), &first);
	int_label(t, "device_index", d->index, &first);
	close_uint(t, value);
}

static const struct gpucap_process_device_view *
process_device(const struct gpucap_snapshot *s, const struct gpucap_process_view *p, uint32_t i)
{
	if (!p->devices)
		return NULL;
	int index = s->devices[i].index;
	if (index < 0 || (uint32_t)index >= s->device_capacity)
		return NULL;
	return &p->devices[index];
}

static bool touches(const struct gpucap_process_device_view *d)
{
	if (d->charged_bytes || d->in_use_bytes)
		return true;
	for (int k = 0; k < GPUCAP_KIND_COUNT; k++) {
		if (d->kind_bytes[k])
			return true;
	}
	return false;
}

static void process_labels(struct exp_text *t, const struct gpucap_process_view *p, bool *first)
{
	int_label(t, "slot", p->slot, first);
	int_label(t, "pid", p->pid, first);
	if (p->host_pid > 0 && p->host_pid_source != GPUCAP_HOST_PID_UNKNOWN)
		int_label(t, "host_pid", p->host_pid, first);
	label(t, "comm", p->comm, sizeof(p->comm), first);
}

static void render_processes(struct exp_render *r, const char *path, const struct exp_pod_labels *l,
                             const struct gpucap_snapshot *s)
{
	for (uint32_t i = 0; i < s->process_count; i++) {
		const struct gpucap_process_view *p = &s->processes[i];
		struct exp_text *t = &r->family[EXP_PROCESS_ALIVE];
		bool first;
		open_sample(t, EXP_PROCESS_ALIVE, path, l, &first);
		process_labels(t, p, &first);
		close_uint(t, p->alive ? 1 : 0);
		if (p->last_launch_unix_ns) {
			t = &r->family[EXP_PROCESS_LAST_LAUNCH];
			open_sample(t, EXP_PROCESS_LAST_LAUNCH, path, l, &first);
			process_labels(t, p, &first);
			/* Microseconds: what a float64 of a Unix time still holds. */
			close_decimal(t, p->last_launch_unix_ns / 1000u, 6);
		}
		t = &r->family[EXP_PROCESS_REFUSALS];
		open_sample(t, EXP_PROCESS_REFUSALS, path, l, &first);
		process_labels(t, p, &first);
		close_uint(t, p->refusals);
		for (uint32_t d = 0; d < s->device_count; d++) {
			const struct gpucap_process_device_view *use = process_device(s, p, d);
			if (!use || !touches(use))
				continue;
			t = &r->family[EXP_PROCESS_IN_USE];
			open_sample(t, EXP_PROCESS_IN_USE, path, l, &first);
			process_labels(t, p, &first);
			label(t, "device_uuid", s->devices[d].uuid, sizeof(s->devices[d].uuid), &first);
			int_label(t, "device_index", s->devices[d].index, &first);
			close_uint(t, use->in_use_bytes);
			if (use->kind_bytes[GPUCAP_KIND_DRIVER] > 0) {
				t = &r->family[EXP_PROCESS_DRIVER];
				open_sample(t, EXP_PROCESS_DRIVER, path, l, &first);
				process_labels(t, p, &first);
				label(t, "device_uuid", s->devices[d].uuid, sizeof(s->devices[d].uuid),
				      &first);
				int_label(t, "device_index", s->devices[d].index, &first);
				close_uint(t, (uint64_t)use->kind_bytes[GPUCAP_KIND_DRIVER]);
			}
		}
	}
}

/* HAMi's container series: its labels (namespace, pod, container,
 * vdevice_index, device_uuid) after ours, or the legacy ones. */
static void hami_open(struct exp_text *t, enum exp_family f, const char *path, const struct exp_pod_labels *l,
                      uint32_t position, const struct gpucap_device_view *d, bool legacy, bool *first)
{
	if (!legacy) {
		open_sample(t, f, path, l, first);
		int_label(t, "vdevice_index", position, first);
		label(t, "device_uuid", d->uuid, sizeof(d->uuid), first);
		return;
	}
	exp_text_puts(t, families[f].name);
	exp_text_puts(t, "{");
	*first = true;
	label(t, "region", path, SIZE_MAX, first);
	label(t, "podnamespace", l->kube_namespace, sizeof(l->kube_namespace), first);
	label(t, "podname", l->pod, sizeof(l->pod), first);
	label(t, "ctrname", l->container, sizeof(l->container), first);
	int_label(t, "vdeviceid", position, first);
	label(t, "deviceuuid", d->uuid, sizeof(d->uuid), first);
}

static void hami_sample(struct exp_render *r, enum exp_family f, const char *path,
                        const struct exp_pod_labels *l, uint32_t position, const struct gpucap_device_view *d,
                        uint64_t value)
{
	struct exp_text *t = &r->family[f];
	bool first;
	hami_open(t, f, path, l, position, d, f >= EXP_LEGACY_USED, &first);
	close_uint(t, value);
}

static void hami_decimal_sample(struct exp_render *r, enum exp_family f, const char *path,
                                const struct exp_pod_labels *l, uint32_t position,
                                const struct gpucap_device_view *d, uint64_t value, unsigned decimals)
{
	struct exp_text *t = &r->family[f];
	bool first;
	hami_open(t, f, path, l, position, d, f >= EXP_LEGACY_USED, &first);
	close_decimal(t, value, decimals);
}

/* A device-labelled sample whose value is value / 10^decimals. */
static void device_decimal_sample(struct exp_render *r, enum exp_family f, const char *path,
                                  const struct exp_pod_labels *l, const struct gpucap_device_view *d,
                                  uint64_t value, unsigned decimals)
{
	struct exp_text *t = &r->family[f];
	bool first;
	open_sample(t, f, path, l, &first);
	label(t, "device_uuid", d->uuid, sizeof(d->uuid), &first);
	int_label(t, "device_index", d->index, &first);
	close_decimal(t, value, decimals);
}

/* Bytes of one kind the processes of the region hold on device i. */
static uint64_t kind_total(const struct gpucap_snapshot *s, uint32_t i, int kind)
{
	uint64_t total = 0;
	for (uint32_t p = 0; p < s->process_count; p++) {
		const struct gpucap_process_device_view *use = process_device(s, &s->processes[p], i);
		if (use && use->kind_bytes[kind] > 0)
			total += (uint64_t)use->kind_bytes[kind];
	}
	return total;
}

/* HAMi's monitor's series for device i, under its current names and, on
 * request, its legacy ones. */
static void render_hami(struct exp_render *r, const char *path, const struct exp_pod_labels *l,
                        const struct gpucap_snapshot *s, uint32_t i, uint64_t last_launch)
{
	const struct gpucap_device_view *d = &s->devices[i];
	bool limited = d->limit_bytes < GPUCAP_UNLIMITED;
	uint64_t context = kind_total(s, i, GPUCAP_KIND_CONTEXT);
	uint64_t module = kind_total(s, i, GPUCAP_KIND_MODULE);
	uint64_t data = kind_total(s, i, GPUCAP_KIND_DATA);
	uint64_t since_kernel = 0;
	if (last_launch && r->now_unix_ns > last_launch)
		since_kernel = (r->now_unix_ns - last_launch) / 1000000000u;

	hami_sample(r, EXP_HAMI_USED, path, l, i, d, d->charged_bytes);
	hami_sample(r, EXP_HAMI_DEVICE_MEMORY, path, l, i, d, d->charged_bytes);
	if (limited)
		hami_sample(r, EXP_HAMI_LIMIT, path, l, i, d, d->limit_bytes);
	hami_sample(r, EXP_HAMI_CONTEXT, path, l, i, d, context);
	hami_sample(r, EXP_HAMI_MODULE, path, l, i, d, module);
	hami_sample(r, EXP_HAMI_BUFFER, path, l, i, d, data);
	if (d->sm_share_known)
		hami_decimal_sample(r, EXP_HAMI_UTILIZATION, path, l, i, d, d->sm_share_ppm,
		                    PPM_PERCENT_DECIMALS);
	if (last_launch)
		hami_sample(r, EXP_HAMI_LAST_KERNEL, path, l, i, d, since_kernel);
	if (!r->hami_legacy)
		return;

	hami_sample(r, EXP_LEGACY_USED, path, l, i, d, d->charged_bytes);
	if (limited)
		hami_sample(r, EXP_LEGACY_LIMIT, path, l, i, d, d->limit_bytes);
	/* The breakdown rides in labels, as HAMi's legacy series carried it;
	 * "offset" is what the three kinds do not cover (idle reserves). */
	struct exp_text *t = &r->family[EXP_LEGACY_MEMORY_DESC];
	bool first;
	hami_open(t, EXP_LEGACY_MEMORY_DESC, path, l, i, d, true, &first);
	uint64_t kinds = context + module + data;
	int_label(t, "context", (int64_t)context, &first);
	int_label(t, "module", (int64_t)module, &first);
	int_label(t, "data", (int64_t)data, &first);
	int_label(t, "offset", d->charged_bytes > kinds ? (int64_t)(d->charged_bytes - kinds) : 0, &first);
	close_uint(t, d->charged_bytes);
	if (d->sm_share_known)
		hami_decimal_sample(r, EXP_LEGACY_UTILIZATION, path, l, i, d, d->sm_share_ppm,
		                    PPM_PERCENT_DECIMALS);
	if (last_launch)
		hami_sample(r, EXP_LEGACY_LAST_KERNEL, path, l, i, d, since_kernel);
}

static void render_devices(struct exp_render *r, const char *path, const struct exp_pod_labels *l,
                           const struct gpucap_snapshot *s)
{
	/* HAMi's "last kernel" is the container's: the latest launch of any of
	 * its processes, dead ones included. */
	uint64_t last_launch = 0;
	for (uint32_t p = 0; p < s->process_count; p++) {
		if (s->processes[p].last_launch_unix_ns > last_launch)
			last_launch = s->processes[p].last_launch_unix_ns;
	}
	for (uint32_t i = 0; i < s->device_count; i++) {
		const struct gpucap_device_view *d = &s->devices[i];
		bool limited = d->limit_bytes < GPUCAP_UNLIMITED;
		if (limited)
			device_sample(r, EXP_DEVICE_LIMIT, path, l, d, d->limit_bytes);
		device_sample(r, EXP_DEVICE_CHARGED, path, l, d, d->charged_bytes);
		device_sample(r, EXP_DEVICE_IN_USE, path, l, d, d->in_use_bytes);
		device_sample(r, EXP_DEVICE_PEAK, path, l, d, d->peak_bytes);

		struct exp_text *t = &r->family[EXP_DEVICE_SM_LIMIT];
		bool first;
		open_sample(t, EXP_DEVICE_SM_LIMIT, path, l, &first);
		label(t, "device_uuid", d->uuid, sizeof(d->uuid), &first);
		int_label(t, "device_index", d->index, &first);
		/* 0 and 100 (and anything out of range) mean no SM limit. */
		uint32_t percent = d->sm_limit > 0 && d->sm_limit < 100 ? d->sm_limit : 100;
		exp_text_printf(t, "} %u.%02u\n", percent / 100, percent % 100);

		/* Without an SM limit nothing is held back: duty 1. */
		uint32_t duty = percent < 100 ? d->sm_duty_ppm : 1000000u;
		device_decimal_sample(r, EXP_DEVICE_SM_DUTY, path, l, d, duty, PPM_DECIMALS);
		if (d->sm_share_known)
			device_decimal_sample(r, EXP_DEVICE_SM_SHARE, path, l, d, d->sm_share_ppm,
			                      PPM_DECIMALS);
		if (d->sm_asked_known)
			device_decimal_sample(r, EXP_DEVICE_SM_ASKED, path, l, d, d->sm_asked_ppm,
			                      PPM_DECIMALS);
		device_sample(r, EXP_DEVICE_REFUSALS, path, l, d, d->refusals_total);

		if (r->hami_metrics)
			render_hami(r, path, l, s, i, last_launch);
	}
}

void exp_render_region(struct exp_render *r, const char *path, const struct exp_pod_labels *l,
                       const struct gpucap_snapshot *s, uint64_t read_errors_total)
{
	bool first;
	struct exp_text *t = &r->family[EXP_REGION_UP];
	open_sample(t, EXP_REGION_UP, path, l, &first);
	close_uint(t, s ? 1 : 0);
	t = &r->family[EXP_REGION_READ_ERRORS];
	open_sample(t, EXP_REGION_READ_ERRORS, path, l, &first);
	close_uint(t, read_errors_total);
	if (!s)
		return;

	uint64_t alive = 0, dead = 0;
	for (uint32_t i = 0; i < s->process_count; i++) {
		if (s->processes[i].alive)
			alive++;
		else
			dead++;
	}
	const char *states[2] = {"alive", "dead"};
	uint64_t counts[2] = {alive, dead};
	for (int k = 0; k < 2; k++) {
		t = &r->family[EXP_REGION_PROCESSES];
		open_sample(t, EXP_REGION_PROCESSES, path, l, &first);
		label(t, "state", states[k], 8, &first);
		close_uint(t, counts[k]);
	}
	t = &r->family[EXP_REGION_RECLAIMED_SLOTS];
	open_sample(t, EXP_REGION_RECLAIMED_SLOTS, path, l, &first);
	close_uint(t, s->reclaimed_slots_total);
	t = &r->family[EXP_REGION_RECLAIMED_BYTES];
	open_sample(t, EXP_REGION_RECLAIMED_BYTES, path, l, &first);
	close_uint(t, s->reclaimed_bytes_total);

	render_devices(r, path, l, s);
	render_processes(r, path, l, s);
}

bool exp_render_finish(struct exp_render *r, double scrape_seconds, struct exp_text *out)
{
	struct exp_text *t = &r->family[EXP_SCRAPE_DURATION];
	exp_text_printf(t, "%s %.6f\n", families[EXP_SCRAPE_DURATION].name,
	                scrape_seconds >= 0 ? scrape_seconds : 0.0);
	bool ok = true;
	for (int f = 0; f < EXP_FAMILY_COUNT; f++) {
		t = &r->family[f];
		if (t->failed)
			ok = false;
		if (!t->len)
			continue;
		exp_text_printf(out, "# HELP %s %s\n# TYPE %s %s\n", families[f].name, families[f].help,
		                families[f].name, families[f].type);
		exp_text_append(out, t->data, t->len);
	}
	exp_render_discard(r);
	return ok && !out->failed;
}
