/* SPDX-License-Identifier: Apache-2.0 */
/* Which region file a command works on, and attaching to it with errors
 * reported the same way by every command. */
#ifndef GPUCAP_CLI_REGION_FILE_H
#define GPUCAP_CLI_REGION_FILE_H

#include <gpucap/region.h>

#include <stdbool.h>

struct cli_region_path {
	const char *path;
	/* Where the path came from, for error messages: "--file",
	 * "GPUCAP_REGION", "CUDA_DEVICE_MEMORY_SHARED_CACHE" or "default". */
	const char *origin;
};

/*
 * The region path, decided by src/policy (gpucap_policy_region) without a
 * limits file: --file PATH > $GPUCAP_REGION >
 * $CUDA_DEVICE_MEMORY_SHARED_CACHE > default. An empty variable counts as
 * unset. flag_value is the --file value or NULL.
 */
struct cli_region_path cli_region_path(const char *flag_value);

/*
 * Attach to the region through src/exporter/region_reader.h: the path is
 * opened only if it is a regular file with one link, never blocking, and the
 * attach runs under the SIGBUS guard. Observers map it read-only; nobody
 * creates it, since the CLI inspecting a path that does not exist means the
 * path is wrong. On failure prints one line and returns CLI_EXIT_FAILURE;
 * CLI_EXIT_OK with *out set otherwise.
 */
int cli_region_attach(const char *command, const struct cli_region_path *where, bool observer,
                      gpucap_region **out);

/* Copy the region under the SIGBUS guard; NULL after printing one line. */
struct gpucap_snapshot *cli_region_snapshot(const char *command, gpucap_region *region);

/* cli_region_attach, then, when snapshot is not NULL, cli_region_snapshot.
 * CLI_EXIT_OK with everything asked for held; otherwise nothing is held and
 * one line has been printed. */
int cli_region_attach_snapshot(const char *command, const struct cli_region_path *where, bool observer,
                               gpucap_region **region, struct gpucap_snapshot **snapshot);

struct cli_command;
struct cli_region_flags;

/*
 * The start of a command that works on one region and takes
 * [--json] [-f|--file PATH]: parse the flags (cli_parse_region_flags), pick
 * the path (cli_region_path) and cli_region_attach_snapshot. True with all of
 * it held; false with *exit_code set after help, a usage error or a failed
 * attach.
 */
bool cli_region_command_open(const struct cli_command *command, int argc, char **argv, bool observer,
                             struct cli_region_flags *flags, struct cli_region_path *where,
                             gpucap_region **region, struct gpucap_snapshot **snapshot, int *exit_code);

/* Run fn(arg), which uses the region's mapping, under the SIGBUS guard
 * (region_reader.h says what fn may keep in locals). False after printing
 * one line if the file shrank under it. */
bool cli_region_guarded(const char *command, gpucap_region *region, void (*fn)(void *), void *arg);

#endif
