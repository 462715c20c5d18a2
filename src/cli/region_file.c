#define _POSIX_C_SOURCE 200809L

#include "region_file.h"

#include "cli.h"
#include "default_paths.h"
#include "policy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
