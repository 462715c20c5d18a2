/* gpucap run: start a command under the limiter. Everything it does is set
 * the environment the preload library reads, then exec, so the command keeps
 * its PID, signals and exit status. */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"
#include "options.h"
#include "parse.h"
#include "policy.h"
#include "preload_library.h"

#include <gpucap/region.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { OPT_MEMORY, OPT_DEVICES, OPT_FILE };

static const struct cli_option run_options[] = {
    {"memory", 'm', true, OPT_MEMORY},
    {"devices", 0, true, OPT_DEVICES},
    {"file", 'f', true, OPT_FILE},
};

struct run_request {
	const char *memory; /* as typed, NULL: leave the limit alone */
	uint64_t memory_bytes;
	const char *devices;
	const char *file;
	char **argv; /* the command */
};

static int parse_request(int argc, char **argv, struct run_request *request, bool *help)
{
	const char *command = cli_command_run.name;
	struct cli_parser parser;
	cli_parser_init(&parser, command, argc, argv, true);
	memset(request, 0, sizeof(*request));
	*help = false;
	for (;;) {
		const char *value;
		int id = cli_next_option(&parser, run_options, sizeof(run_options) / sizeof(run_options[0]),
		                         &value);
		if (id == CLI_OPT_END)
			break;
		if (id == CLI_OPT_ERROR)
			return CLI_EXIT_USAGE;
		if (id == CLI_OPT_HELP) {
			*help = true;
			return CLI_EXIT_OK;
		}
		if (id == OPT_MEMORY)
			request->memory = value;
		else if (id == OPT_DEVICES)
			request->devices = value;
		else if (id == OPT_FILE)
			request->file = value;
	}
	if (request->memory) {
		if (!gpucap_parse_size(request->memory, &request->memory_bytes))
			return cli_usage_error(command,
			                       "invalid -m/--memory value '%s': expected " GPUCAP_SIZE_FORMS,
			                       request->memory);
		/* The library reads 0 as "no limit"; asking for it by accident
		 * would quietly uncap the command. */
		if (request->memory_bytes == 0)
			return cli_usage_error(
			    command, "-m/--memory must be more than 0 bytes; leave it out for no limit");
		/* Likewise for sizes the region cannot hold: the library reads
		 * them as "no limit". */
		if (request->memory_bytes >= GPUCAP_BYTES_MAX)
			return cli_usage_error(command,
			                       "-m/--memory '%s' is not below the largest limit (256 TiB - 1 "
			                       "byte); leave it out for no limit",
			                       request->memory);
	}
	if (request->devices && request->devices[0] == '\0')
		return cli_usage_error(command, "--devices needs a list such as 0,1 or a GPU UUID");
	if (request->file && request->file[0] == '\0')
		return cli_usage_error(command, "--file needs a path");
	if (parser.index >= argc)
		return cli_usage_error(
		    command, "missing the command to run, e.g. gpucap run -m 8g -- python train.py");
	request->argv = argv + parser.index;
	return CLI_EXIT_OK;
}

static int set_variable(const char *name, const char *value)
{
	if (setenv(name, value, 1) != 0)
		return cli_failure(cli_command_run.name, "cannot set %s: %s", name, strerror(errno));
	return CLI_EXIT_OK;
}

extern char **environ;

/* The region path made absolute, since the command may change directory
 * before its first CUDA call. */
static int set_region_file(const char *file)
{
	char absolute[PATH_MAX];
	if (file[0] == '/') {
		if ((size_t)snprintf(absolute, sizeof(absolute), "%s", file) >= sizeof(absolute))
			return cli_failure(cli_command_run.name, "--file path is too long: %s", file);
	} else {
		char cwd[PATH_MAX];
		if (!getcwd(cwd, sizeof(cwd)))
			return cli_failure(
			    cli_command_run.name,
			    "cannot resolve --file %s: current directory unknown (%s); give an "
			    "absolute path",
			    file, strerror(errno));
		if ((size_t)snprintf(absolute, sizeof(absolute), "%s/%s", cwd, file) >= sizeof(absolute))
			return cli_failure(cli_command_run.name, "--file path is too long: %s", file);
	}
	const struct gpucap_setting *region = &gpucap_settings[GPUCAP_SETTING_REGION];
	int rc = set_variable(region->alias, absolute);
	/* The gpucap name wins over the alias; an inherited one must not point
	 * the command at another file than --file. */
	if (rc == CLI_EXIT_OK && gpucap_policy_env_get(environ, region->name))
		rc = set_variable(region->name, absolute);
	return rc;
}

/* Whether name is one of the memory limit variables besides
 * CUDA_DEVICE_MEMORY_LIMIT, which -m sets. */
static bool is_other_limit_variable(const char *name, size_t len)
{
	const char *set_by_run = gpucap_settings[GPUCAP_SETTING_MEMORY_LIMIT].alias;
	if (len == strlen(set_by_run) && strncmp(name, set_by_run, len) == 0)
		return false;
	return gpucap_policy_is_memory_variable(name, len);
}

/* The library lets per-device and GPUCAP_ variables win over
 * CUDA_DEVICE_MEMORY_LIMIT; inherited ones would silently override -m. */
static int clear_other_limits(void)
{
	for (;;) {
		char name[256];
		bool found = false;
		for (char **entry = environ; entry && *entry; entry++) {
			const char *equals = strchr(*entry, '=');
			size_t len = equals ? (size_t)(equals - *entry) : strlen(*entry);
			if (len < sizeof(name) && is_other_limit_variable(*entry, len)) {
				memcpy(name, *entry, len);
				name[len] = '\0';
				found = true;
				break;
			}
		}
		if (!found)
			return CLI_EXIT_OK;
		/* Restart the scan after each removal: unsetenv may reshuffle
		 * environ. */
		if (unsetenv(name) != 0)
			return cli_failure(cli_command_run.name, "cannot unset %s: %s", name,
			                   strerror(errno));
	}
}

/* Under a limits file the library refuses a region other than the file's;
 * say so now rather than start a command that cannot allocate. */
static int check_region_allowed(void)
{
	static struct gpucap_limits_file file;
	static struct gpucap_policy policy;
	gpucap_policy_load_file(environ, false, &file);
	struct gpucap_policy_input input = {.env = environ, .file = &file};
	gpucap_policy_resolve(&input, &policy);
	if (!policy.region_refused)
		return CLI_EXIT_OK;
	for (unsigned i = 0; i < policy.diag_count; i++) {
		if (policy.diags[i].setting == GPUCAP_SETTING_REGION)
			return cli_failure(cli_command_run.name, "%s", policy.diags[i].text);
	}
	return cli_failure(cli_command_run.name, "the region is refused by the limits file %s", file.path);
}

static int prepare_environment(const struct run_request *request)
{
	char library[PATH_MAX];
	int rc = cli_find_preload_library(cli_command_run.name, library, sizeof(library));
	if (rc != CLI_EXIT_OK)
		return rc;
	char *preload = cli_preload_prepend(library, getenv("LD_PRELOAD"));
	if (!preload)
		return cli_failure(cli_command_run.name, "out of memory while building LD_PRELOAD");
	rc = set_variable("LD_PRELOAD", preload);
	free(preload);
	if (rc == CLI_EXIT_OK && request->memory)
		rc = clear_other_limits();
	if (rc == CLI_EXIT_OK && request->memory) {
		char bytes[32];
		snprintf(bytes, sizeof(bytes), "%" PRIu64, request->memory_bytes);
		rc = set_variable("CUDA_DEVICE_MEMORY_LIMIT", bytes);
	}
	if (rc == CLI_EXIT_OK && request->devices)
		rc = set_variable("CUDA_VISIBLE_DEVICES", request->devices);
	if (rc == CLI_EXIT_OK && request->file)
		rc = set_region_file(request->file);
	if (rc == CLI_EXIT_OK)
		rc = check_region_allowed();
	return rc;
}

static int run_run(int argc, char **argv)
{
	struct run_request request;
	bool help;
	int rc = parse_request(argc, argv, &request, &help);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (help) {
		fputs(cli_command_run.usage, stdout);
		return cli_finish_output(cli_command_run.name);
	}
	rc = prepare_environment(&request);
	if (rc != CLI_EXIT_OK)
		return rc;
	fflush(NULL);
	execvp(request.argv[0], request.argv);
	int saved = errno;
	cli_failure(cli_command_run.name,
	            "cannot execute '%s': %s; check the command name, PATH and permissions", request.argv[0],
	            strerror(saved));
	return CLI_EXIT_CANNOT_EXEC;
}

const struct cli_command cli_command_run = {
    .name = "run",
    .summary = "run a command with a GPU memory cap",
    .usage = "usage: gpucap run [-m SIZE] [--devices LIST] [--file PATH] [--] CMD [ARGS...]\n"
             "\n"
             "Run CMD with libgpucap.so preloaded, so its CUDA memory is capped and\n"
             "accounted. gpucap replaces itself with CMD: the exit status is CMD's\n"
             "(127 if CMD cannot be executed).\n"
             "\n"
             "  -m, --memory SIZE  cap each visible device at SIZE (e.g. 8g, 512m; powers\n"
             "                     of 1024); sets CUDA_DEVICE_MEMORY_LIMIT and drops\n"
             "                     inherited per-device and GPUCAP_MEMORY_LIMIT limits\n"
             "  --devices LIST     devices CMD may see (e.g. 0,1 or GPU UUIDs); sets\n"
             "                     CUDA_VISIBLE_DEVICES\n"
             "  -f, --file PATH    region file shared with other processes; sets\n"
             "                     CUDA_DEVICE_MEMORY_SHARED_CACHE\n"
             "  -h, --help         show this help\n"
             "\n"
             "The library is looked up next to the gpucap binary (., ../lib, ../<libdir>);\n"
             "set GPUCAP_LIBRARY to use another one.\n",
    .run = run_run,
};
