/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap status: what the region holds, read as an observer so that looking
 * never changes what is looked at. */
#include "cli.h"
#include "default_paths.h"
#include "options.h"
#include "region_file.h"
#include "status_render.h"

#include <stdio.h>

static int status_run(int argc, char **argv)
{
	const char *command = cli_command_status.name;
	struct cli_region_flags flags;
	struct cli_region_path where;
	gpucap_region *region;
	struct gpucap_snapshot *snapshot;
	int rc;
	if (!cli_region_command_open(&cli_command_status, argc, argv, true, &flags, &where, &region,
	                             &snapshot, &rc))
		return rc;
	bool rendered =
	    flags.json ? status_render_json(snapshot, stdout) : status_render_text(snapshot, stdout);
	gpucap_snapshot_free(snapshot);
	gpucap_region_detach(region);
	if (!rendered)
		return cli_failure(command, "cannot format the status of %s: out of memory", where.path);
	return cli_finish_output(command);
}

const struct cli_command cli_command_status = {
    .name = "status",
    .summary = "show devices, limits and the processes charged to them",
    .usage = "usage: gpucap status [--json] [--file PATH]\n"
             "\n"
             "Show each device (limit, charged, in use, peak, SM limit, allocations refused)\n"
             "and each process slot (pid, host pid, alive or dead awaiting reclaim,\n"
             "allocations refused, bytes per device by kind).\n"
             "Reads the region without changing it.\n"
             "\n"
             "  --json           print one JSON object (schema in docs/cli.md); bytes are integers\n"
    /* -f and -h read as in every command on one region */
    CLI_FILE_AND_HELP_USAGE,
    .run = status_run,
};
