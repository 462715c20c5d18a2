#define _POSIX_C_SOURCE 200809L

#include "region_file.h"

#include "cli.h"

#include <region_reader.h>

#include <stdlib.h>

static const char *nonempty_env(const char *name)
{
	const char *value = getenv(name);
	return value && value[0] ? value : NULL;
}

struct cli_region_path cli_region_path(const char *flag_value)
{
	struct cli_region_path where;
	const char *env;
	if (flag_value) {
		where.path = flag_value;
		where.origin = "--file";
	} else if ((env = nonempty_env("GPUCAP_REGION"))) {
		where.path = env;
		where.origin = "GPUCAP_REGION";
	} else if ((env = nonempty_env("CUDA_DEVICE_MEMORY_SHARED_CACHE"))) {
		where.path = env;
		where.origin = "CUDA_DEVICE_MEMORY_SHARED_CACHE";
	} else {
		where.path = GPUCAP_REGION_DEFAULT_PATH;
		where.origin = "default";
	}
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
		    "no region file at %s (path from %s); start a gpucap-limited process first "
		    "or name the right file with --file or GPUCAP_REGION",
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
