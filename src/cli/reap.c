/* gpucap reap: return the charges of processes that died without detaching,
 * now rather than at the next refused reservation. */
#include "cli.h"
#include "default_paths.h"
#include "format.h"
#include "json.h"
#include "options.h"
#include "region_file.h"

#include <region_reader.h>

#include <stdio.h>
#include <string.h>

#define REPORT_DEVICES (sizeof(((struct gpucap_reclaim_report *)0)->bytes_per_device) / sizeof(uint64_t))

/* The UUID of device index, or "" when the snapshot does not know it. */
static const char *device_uuid(const struct gpucap_snapshot *snapshot, unsigned index)
{
	for (uint32_t i = 0; snapshot && i < snapshot->device_count; i++) {
		if (snapshot->devices[i].index == (int)index)
			return snapshot->devices[i].uuid;
	}
	return "";
}

static void print_text(const struct gpucap_reclaim_report *report, FILE *out)
{
	char total[CLI_CELL_MAX];
	fprintf(out, "reclaimed %u dead slot%s, returned %s", (unsigned)report->slots,
	        report->slots == 1 ? "" : "s", cli_format_bytes(report->bytes, total, sizeof(total)));
	const char *separator = " (";
	for (unsigned i = 0; i < REPORT_DEVICES; i++) {
		if (!report->bytes_per_device[i])
			continue;
		char bytes[CLI_CELL_MAX];
		fprintf(out, "%sdevice %u: %s", separator, i,
		        cli_format_bytes(report->bytes_per_device[i], bytes, sizeof(bytes)));
		separator = ", ";
	}
	fputs(separator[0] == ',' ? ")\n" : "\n", out);
}

static bool print_json(const struct gpucap_reclaim_report *report, const char *path,
                       const struct gpucap_snapshot *snapshot, FILE *out)
{
	struct json_writer w;
	json_init(&w, out);
	json_object_begin(&w);
	json_member_uint(&w, "schema_version", 1);
	json_member_string(&w, "path", path);
	json_member_uint(&w, "reclaimed_slots", report->slots);
	json_member_uint(&w, "returned_bytes", report->bytes);
	json_key(&w, "devices");
	json_array_begin(&w);
	for (unsigned i = 0; i < REPORT_DEVICES; i++) {
		if (!report->bytes_per_device[i])
			continue;
		json_object_begin(&w);
		json_member_uint(&w, "index", i);
		json_key(&w, "uuid");
		json_string_bounded(&w, device_uuid(snapshot, i), GPUCAP_UUID_MAX);
		json_member_uint(&w, "returned_bytes", report->bytes_per_device[i]);
		json_object_end(&w);
	}
	json_array_end(&w);
	json_object_end(&w);
	return json_finish(&w);
}

/* The reclaim touches the mapping: it runs under the SIGBUS guard, its
 * results kept in the job, not in locals. */
struct reclaim_job {
	gpucap_region *region;
	struct gpucap_reclaim_report report;
	gpucap_status status;
};

static void reclaim_guarded(void *arg)
{
	struct reclaim_job *job = arg;
	job->status = gpucap_region_reclaim_dead(job->region, &job->report);
}

static int reap_run(int argc, char **argv)
{
	const char *command = cli_command_reap.name;
	struct cli_region_flags flags;
	struct cli_region_path where;
	gpucap_region *region;
	int rc;
	if (!cli_region_command_open(&cli_command_reap, argc, argv, false, &flags, &where, &region, NULL,
	                             &rc))
		return rc;
	struct reclaim_job job;
	memset(&job, 0, sizeof(job));
	job.region = region;
	if (!cli_region_guarded(command, region, reclaim_guarded, &job)) {
		gpucap_region_abandon(region);
		return CLI_EXIT_FAILURE;
	}
	struct gpucap_reclaim_report report = job.report;
	gpucap_status status = job.status;
	if (status != GPUCAP_OK) {
		rc = cli_failure(command, "cannot reclaim dead slots in %s: %s", where.path,
		                 gpucap_status_text(status));
		gpucap_region_detach(region);
		return rc;
	}
	bool printed = true;
	if (flags.json) {
		/* Only for the device UUIDs; a snapshot that fails leaves them empty
		 * rather than hiding what was reclaimed. */
		char ignored[1024];
		struct gpucap_snapshot *snapshot = reader_snapshot(region, ignored, sizeof(ignored));
		printed = print_json(&report, where.path, snapshot, stdout);
		gpucap_snapshot_free(snapshot);
	} else {
		print_text(&report, stdout);
	}
	gpucap_region_detach(region);
	if (!printed)
		return cli_failure(command, "cannot format the report for %s", where.path);
	return cli_finish_output(command);
}

const struct cli_command cli_command_reap = {
    .name = "reap",
    .summary = "return the memory charged to processes that died",
    .usage = "usage: gpucap reap [--json] [--file PATH]\n"
             "\n"
             "Find process slots whose owner died without detaching and return their\n"
             "charges to the device totals. Safe to run at any time, alongside anything.\n"
             "\n"
             "  --json           print one JSON object (schema in docs/cli.md); bytes are integers\n"
    /* -f and -h read as in every command on one region */
    CLI_FILE_AND_HELP_USAGE,
    .run = reap_run,
};
