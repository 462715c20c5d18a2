/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap reap: return the charges of processes that died without detaching,
 * now rather than at the next refused reservation, and repair what damage
 * to the region can be repaired while its processes run; say what cannot. */
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

static void print_reclaimed(const struct gpucap_reclaim_report *report, FILE *out)
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

/* One line per kind of damage repaired; nothing when there was none. */
static void print_repaired(const struct gpucap_repair_report *report, FILE *out)
{
	const struct gpucap_reclaim_report *reclaim = &report->reclaim;
	char bytes[CLI_CELL_MAX], more[CLI_CELL_MAX];
	if (reclaim->damaged_slots)
		fprintf(out, "repaired: %u dead slot%s with a state word out of range (reclaimed above)\n",
		        (unsigned)reclaim->damaged_slots, reclaim->damaged_slots == 1 ? "" : "s");
	if (reclaim->damaged_bytes)
		fprintf(out, "repaired: wrote off %s of negative ledgers in dead slots\n",
		        cli_format_bytes(reclaim->damaged_bytes, bytes, sizeof(bytes)));
	if (report->slot_states_repaired)
		fprintf(out, "repaired: set the state word of %u live process%s back to live\n",
		        (unsigned)report->slot_states_repaired,
		        report->slot_states_repaired == 1 ? "" : "es");
	if (report->devices_repaired)
		fprintf(
		    out,
		    "repaired: set %u device total%s to the sum of the processes' ledgers (removed %s, added %s)\n",
		    (unsigned)report->devices_repaired, report->devices_repaired == 1 ? "" : "s",
		    cli_format_bytes(report->bytes_removed, bytes, sizeof(bytes)),
		    cli_format_bytes(report->bytes_added, more, sizeof(more)));
}

/* One line on stderr per kind of damage left; the number of lines. */
static unsigned print_unrepaired(const char *command, const struct gpucap_repair_report *report,
                                 const char *path)
{
	unsigned lines = 0;
	if (report->live_negative_ledgers) {
		cli_failure(
		    command,
		    "cannot repair %u device total%s in %s: a live process holds a negative ledger, which only that process could undo; stop the processes using the region and run 'gpucap reap' again, or remove the file once none runs",
		    (unsigned)report->live_negative_ledgers, report->live_negative_ledgers == 1 ? "" : "s",
		    path);
		lines++;
	}
	if (report->devices_unsettled) {
		cli_failure(
		    command,
		    "cannot repair %u device total%s in %s: the total kept changing while the ledgers were read; run 'gpucap reap' again",
		    (unsigned)report->devices_unsettled, report->devices_unsettled == 1 ? "" : "s", path);
		lines++;
	}
	return lines;
}

static bool print_json(const struct gpucap_repair_report *repair, const char *path,
                       const struct gpucap_snapshot *snapshot, FILE *out)
{
	const struct gpucap_reclaim_report *report = &repair->reclaim;
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
	json_key(&w, "repaired");
	json_object_begin(&w);
	json_member_uint(&w, "damaged_dead_slots", report->damaged_slots);
	json_member_uint(&w, "negative_ledger_bytes_written_off", report->damaged_bytes);
	json_member_uint(&w, "live_slot_states", repair->slot_states_repaired);
	json_member_uint(&w, "device_totals", repair->devices_repaired);
	json_member_uint(&w, "bytes_removed", repair->bytes_removed);
	json_member_uint(&w, "bytes_added", repair->bytes_added);
	json_object_end(&w);
	json_key(&w, "unrepaired");
	json_object_begin(&w);
	json_member_uint(&w, "live_negative_ledgers", repair->live_negative_ledgers);
	json_member_uint(&w, "unsettled_device_totals", repair->devices_unsettled);
	json_object_end(&w);
	json_object_end(&w);
	return json_finish(&w);
}

/* The repair touches the mapping: it runs under the SIGBUS guard, its
 * results kept in the job, not in locals. */
struct repair_job {
	gpucap_region *region;
	struct gpucap_repair_report report;
	gpucap_status status;
};

static void repair_guarded(void *arg)
{
	struct repair_job *job = arg;
	job->status = gpucap_region_repair(job->region, &job->report);
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
	struct repair_job job;
	memset(&job, 0, sizeof(job));
	job.region = region;
	if (!cli_region_guarded(command, region, repair_guarded, &job)) {
		gpucap_region_abandon(region);
		return CLI_EXIT_FAILURE;
	}
	struct gpucap_repair_report report = job.report;
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
		print_reclaimed(&report.reclaim, stdout);
		print_repaired(&report, stdout);
	}
	gpucap_region_detach(region);
	if (!printed)
		return cli_failure(command, "cannot format the report for %s", where.path);
	rc = cli_finish_output(command);
	/* After the report, so the lines on stderr follow what was done. */
	if (print_unrepaired(command, &report, where.path) > 0)
		return CLI_EXIT_FAILURE;
	return rc;
}

const struct cli_command cli_command_reap = {
    .name = "reap",
    .summary = "return the memory charged to processes that died",
    .usage = "usage: gpucap reap [--json] [--file PATH]\n"
             "\n"
             "Find process slots whose owner died without detaching and return their\n"
             "charges to the device totals, then repair damage to the region's counters\n"
             "(out-of-range slot states, negative ledgers of dead processes, device totals\n"
             "that disagree with the processes' ledgers). Says what it cannot repair, and\n"
             "exits 1 then. Safe to run at any time, alongside anything.\n"
             "\n"
             "  --json           print one JSON object (schema in docs/cli.md); bytes are integers\n"
    /* -f and -h read as in every command on one region */
    CLI_FILE_AND_HELP_USAGE,
    .run = reap_run,
};
