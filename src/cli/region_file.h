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
 * Attach to the region. Observers map it read-only and never create it; a
 * non-observer attach still refuses to create a missing file, since the CLI
 * inspecting a path that does not exist means the path is wrong.
 * On failure prints one line and returns CLI_EXIT_FAILURE; CLI_EXIT_OK with
 * *out set otherwise.
 */
int cli_region_attach(const char *command, const struct cli_region_path *where, bool observer,
                      gpucap_region **out);

#endif
