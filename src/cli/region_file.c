#define _POSIX_C_SOURCE 200809L

#include "region_file.h"

#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

static void flatten(char *text)
{
	for (; *text; text++) {
		if (*text == '\n' || *text == '\r')
			*text = ' ';
	}
}

int cli_region_attach(const char *command, const struct cli_region_path *where, bool observer,
                      gpucap_region **out)
{
	struct stat st;
	if (lstat(where->path, &st) != 0 && errno == ENOENT) {
		return cli_failure(
		    command,
		    "no region file at %s (path from %s); start a gpucap-limited process first or name the right file with --file or GPUCAP_REGION",
		    where->path, where->origin);
	}

	struct gpucap_region_options options;
	memset(&options, 0, sizeof(options));
	options.path = where->path;
	options.observer = observer;
	options.existing_only = true; /* the commands never create a region */

	char err[1024] = "";
	gpucap_status status = gpucap_region_attach(&options, out, err, sizeof(err));
	if (status == GPUCAP_OK)
		return CLI_EXIT_OK;
	*out = NULL;
	flatten(err);
	/* The library's messages carry their own "gpucap: " prefix; ours already
	 * names gpucap and the command. */
	const char *message = err;
	if (strncmp(message, "gpucap: ", 8) == 0)
		message += 8;
	if (message[0])
		return cli_failure(command, "%s (path from %s)", message, where->origin);
	return cli_failure(command, "cannot attach to region %s (path from %s): %s", where->path,
	                   where->origin, gpucap_status_text(status));
}
