/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "region_file.h"

#include "cli.h"
#include "default_paths.h"
#include "options.h"
#include "policy.h"

#include <region_reader.h>

#include <stdlib.h>

extern char **environ;

struct cli_region_path cli_region_path(const char *flag_value)
{
	/* The library's own default (per user outside a container). */
	static char default_region[4096];
	char ignored[512];
	gpucap_default_region_path(default_region, sizeof(default_region), false, ignored, sizeof(ignored));
	struct gpucap_policy_input input = {
	    .env = environ, .region_flag = flag_value, .default_region = default_region};
	struct gpucap_region_choice choice;
	gpucap_policy_region(&input, &choice);
	struct cli_region_path where = {choice.path, choice.name};
	return where;
}

int cli_region_attach(const char *command, const struct cli_region_path *where, bool observer,
                      gpucap_region **out)
{
	struct reader_attach how = {.observer = observer, .init_timeout_ms = 0};
	char err[1024] = "";
	switch (reader_attach(where->path, &how, out, NULL, err, sizeof(err))) {
	case READER_OK:
		return CLI_EXIT_OK;
	case READER_GONE:
		return cli_failure(
		    command,
		    "no region file at %s (path from %s); start a gpucap-limited process first or name the right file with --file or GPUCAP_REGION",
		    where->path, where->origin);
	case READER_FAILED:
		break;
	}
	return cli_failure(command, "%s (path from %s)", err, where->origin);
}

struct gpucap_snapshot *cli_region_snapshot(const char *command, gpucap_region *region)
{
	char err[1024] = "";
	struct gpucap_snapshot *snapshot = reader_snapshot(region, err, sizeof(err));
	if (!snapshot)
		cli_failure(command, "%s", err);
	return snapshot;
}

bool cli_region_guarded(const char *command, gpucap_region *region, void (*fn)(void *), void *arg)
{
	if (reader_run_guarded(fn, arg))
		return true;
	cli_failure(command, "region %s shrank while it was being used (SIGBUS): it was truncated",
	            gpucap_region_path(region));
	return false;
}

int cli_region_attach_snapshot(const char *command, const struct cli_region_path *where, bool observer,
                               gpucap_region **region, struct gpucap_snapshot **snapshot)
{
	int rc = cli_region_attach(command, where, observer, region);
	if (rc != CLI_EXIT_OK || !snapshot)
		return rc;
	*snapshot = cli_region_snapshot(command, *region);
	if (*snapshot)
		return CLI_EXIT_OK;
	gpucap_region_detach(*region);
	return CLI_EXIT_FAILURE;
}

bool cli_region_command_open(const struct cli_command *command, int argc, char **argv, bool observer,
                             struct cli_region_flags *flags, struct cli_region_path *where,
                             gpucap_region **region, struct gpucap_snapshot **snapshot, int *exit_code)
{
	if (!cli_parse_region_flags(command, argc, argv, flags, exit_code))
		return false;
	*where = cli_region_path(flags->file);
	*exit_code = cli_region_attach_snapshot(command->name, where, observer, region, snapshot);
	return *exit_code == CLI_EXIT_OK;
}
