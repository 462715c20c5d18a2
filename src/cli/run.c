/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap run: start a command under the limiter. Everything it does is set
 * the environment the preload library reads, then exec, so the command keeps
 * its PID, signals and exit status. */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"
#include "options.h"
#include "parse.h"
#include "policy.h"
#include "preload_library.h"
#include "region_file.h"
#include "run_limits.h"

#include <gpucap/region.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct run_request {
	const char *memory; /* as typed, NULL: leave the limit alone */
	uint64_t memory_bytes;
	const char *sm;      /* as typed, NULL: leave the SM limit alone */
	uint32_t sm_percent; /* 0: no SM cap */
	const char *devices;
	const char *file;
	const char *node_dir;
	char **argv; /* the command */
};

static int parse_request(int argc, char **argv, struct run_request *request, bool *done)
{
	const char *command = cli_command_run.name;
	memset(request, 0, sizeof(*request));
	const struct cli_option run_options[] = {
	    CLI_STORE_VALUE("memory", 'm', &request->memory),   CLI_STORE_VALUE("sm", 0, &request->sm),
	    CLI_STORE_VALUE("devices", 0, &request->devices),   CLI_STORE_VALUE("file", 'f', &request->file),
	    CLI_STORE_VALUE("node-dir", 0, &request->node_dir),
	};
	struct cli_option_loop loop = CLI_OPTION_LOOP(&cli_command_run, argc, argv, run_options, true);
	*done = !cli_option_loop_run(&loop);
	if (*done)
		return loop.exit_code;
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
			return cli_usage_error(
			    command,
			    "-m/--memory '%s' is not below the largest limit (256 TiB - 1 byte); leave it out for no limit",
			    request->memory);
	}
	if (request->sm) {
		if (!gpucap_parse_percent(request->sm, &request->sm_percent))
			return cli_usage_error(
			    command,
			    "invalid --sm value '%s': expected a whole percentage from 0 to 100 (0 or 100: no SM cap), e.g. 30",
			    request->sm);
		if (request->sm_percent >= 100)
			request->sm_percent = 0;
	}
	if (request->node_dir && request->node_dir[0] == '\0')
		return cli_usage_error(
		    command, "--node-dir needs the node directory shared by the containers of a GPU");
	if (request->devices && request->devices[0] == '\0')
		return cli_usage_error(command, "--devices needs a list such as 0,1 or a GPU UUID");
	if (request->file && request->file[0] == '\0')
		return cli_usage_error(command, "--file needs a path");
	if (loop.parser.index >= argc)
		return cli_usage_error(
		    command, "missing the command to run, e.g. gpucap run -m 8g -- python train.py");
	request->argv = argv + loop.parser.index;
	return CLI_EXIT_OK;
}

static int set_variable(const char *name, const char *value)
{
	if (setenv(name, value, 1) != 0)
		return cli_failure(cli_command_run.name, "cannot set %s: %s", name, strerror(errno));
	return CLI_EXIT_OK;
}

/* A path made absolute, since the command may change directory before its
 * first CUDA call (and the library takes only absolute node directories). */
static int make_absolute(const char *flag, const char *path, char *absolute, size_t len)
{
	if (path[0] == '/') {
		if ((size_t)snprintf(absolute, len, "%s", path) >= len)
			return cli_failure(cli_command_run.name, "%s path is too long: %s", flag, path);
		return CLI_EXIT_OK;
	}
	char cwd[PATH_MAX];
	if (!getcwd(cwd, sizeof(cwd)))
		return cli_failure(
		    cli_command_run.name,
		    "cannot resolve %s %s: current directory unknown (%s); give an absolute path", flag, path,
		    strerror(errno));
	if ((size_t)snprintf(absolute, len, "%s/%s", cwd, path) >= len)
		return cli_failure(cli_command_run.name, "%s path is too long: %s", flag, path);
	return CLI_EXIT_OK;
}

static int set_region_file(const char *file)
{
	char absolute[PATH_MAX];
	int rc = make_absolute("--file", file, absolute, sizeof(absolute));
	if (rc != CLI_EXIT_OK)
		return rc;
	rc = set_variable("CUDA_DEVICE_MEMORY_SHARED_CACHE", absolute);
	/* GPUCAP_REGION wins over CUDA_DEVICE_MEMORY_SHARED_CACHE; an inherited
	 * one must not point the command at another file than --file. */
	if (rc == CLI_EXIT_OK && getenv("GPUCAP_REGION"))
		rc = set_variable("GPUCAP_REGION", absolute);
	return rc;
}

/* The node directory through which capped containers on a GPU take turns.
 * It must exist: the library would otherwise report it in every process. */
static int set_node_dir(const char *dir)
{
	char absolute[PATH_MAX];
	int rc = make_absolute("--node-dir", dir, absolute, sizeof(absolute));
	if (rc != CLI_EXIT_OK)
		return rc;
	struct stat st;
	if (stat(absolute, &st) != 0 || !S_ISDIR(st.st_mode))
		return cli_failure(
		    cli_command_run.name,
		    "--node-dir %s is not a directory; create it (the same directory in every container of the node) or leave --node-dir out",
		    absolute);
	return set_variable("GPUCAP_NODE_DIR", absolute);
}

extern char **environ;

/* The limit variables the library reads besides the one run sets: for
 * memory GPUCAP_MEMORY_LIMIT, GPUCAP_MEMORY_LIMIT_<i> and
 * CUDA_DEVICE_MEMORY_LIMIT_<i>; for SM GPUCAP_SM_LIMIT, GPUCAP_SM_LIMIT_<i>
 * and CUDA_DEVICE_SM_LIMIT_<i>. */
struct limit_family {
	const char *gpucap_prefix; /* the name and its _<i> forms */
	const char *hami_prefix;   /* only its _<i> forms */
};

static const struct limit_family memory_family = {"GPUCAP_MEMORY_LIMIT", "CUDA_DEVICE_MEMORY_LIMIT"};
static const struct limit_family sm_family = {"GPUCAP_SM_LIMIT", "CUDA_DEVICE_SM_LIMIT"};

static bool is_other_limit_variable(const struct limit_family *family, const char *name, size_t len)
{
	const char *const prefixes[] = {family->gpucap_prefix, family->hami_prefix};
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		size_t prefix_len = strlen(prefixes[i]);
		if (len < prefix_len || strncmp(name, prefixes[i], prefix_len) != 0)
			continue;
		if (len == prefix_len)
			return i == 0;
		if (name[prefix_len] != '_' || len == prefix_len + 1)
			continue;
		size_t d = prefix_len + 1;
		while (d < len && name[d] >= '0' && name[d] <= '9')
			d++;
		if (d == len)
			return true;
	}
	return false;
}

/* The library lets per-device and GPUCAP_ variables win over
 * CUDA_DEVICE_MEMORY_LIMIT and CUDA_DEVICE_SM_LIMIT; inherited ones would
 * silently override -m and --sm. */
static int clear_other_limits(const struct limit_family *family)
{
	for (;;) {
		char name[256];
		bool found = false;
		for (char **entry = environ; entry && *entry; entry++) {
			const char *equals = strchr(*entry, '=');
			size_t len = equals ? (size_t)(equals - *entry) : strlen(*entry);
			if (len < sizeof(name) && is_other_limit_variable(family, *entry, len)) {
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
		rc = clear_other_limits(&memory_family);
	if (rc == CLI_EXIT_OK && request->memory) {
		char bytes[32];
		snprintf(bytes, sizeof(bytes), "%" PRIu64, request->memory_bytes);
		rc = set_variable("CUDA_DEVICE_MEMORY_LIMIT", bytes);
	}
	if (rc == CLI_EXIT_OK && request->sm)
		rc = clear_other_limits(&sm_family);
	if (rc == CLI_EXIT_OK && request->sm) {
		char percent[16];
		snprintf(percent, sizeof(percent), "%u", (unsigned)request->sm_percent);
		rc = set_variable("CUDA_DEVICE_SM_LIMIT", percent);
	}
	if (rc == CLI_EXIT_OK && request->devices)
		rc = set_variable("CUDA_VISIBLE_DEVICES", request->devices);
	if (rc == CLI_EXIT_OK && request->file)
		rc = set_region_file(request->file);
	if (rc == CLI_EXIT_OK && request->node_dir)
		rc = set_node_dir(request->node_dir);
	if (rc == CLI_EXIT_OK)
		rc = check_region_allowed();
	return rc;
}

/* The region the command will join, with the environment as set above. */
static void warn_region_limits(const struct run_request *request)
{
	struct cli_region_path where = cli_region_path(NULL);
	if (request->file)
		where.origin = "--file";
	struct run_limits_request limits = {
	    .memory = request->memory,
	    .memory_bytes = request->memory_bytes,
	    .sm = request->sm,
	    .sm_percent = request->sm_percent,
	};
	run_warn_region_limits(where.path, where.origin, &limits);
}

static int run_run(int argc, char **argv)
{
	struct run_request request;
	bool done;
	int rc = parse_request(argc, argv, &request, &done);
	if (rc != CLI_EXIT_OK || done)
		return rc;
	rc = prepare_environment(&request);
	if (rc != CLI_EXIT_OK)
		return rc;
	warn_region_limits(&request);
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
    .summary = "run a command with GPU memory and SM caps",
    .usage =
        "usage: gpucap run [-m SIZE] [--sm PCT] [--devices LIST] [--file PATH] [--node-dir DIR] [--] CMD [ARGS...]\n"
        "\n"
        "Run CMD with libgpucap.so preloaded, so its CUDA memory and SM share are capped\n"
        "and accounted. gpucap replaces itself with CMD: the exit status is CMD's\n"
        "(127 if CMD cannot be executed).\n"
        "\n"
        "  -m, --memory SIZE  cap each visible device at SIZE (e.g. 8g, 512m; powers\n"
        "                     of 1024); sets CUDA_DEVICE_MEMORY_LIMIT and drops\n"
        "                     inherited per-device and GPUCAP_MEMORY_LIMIT limits\n"
        "      --sm PCT       cap each visible device at PCT percent of its SM work\n"
        "                     (0 or 100: none); sets CUDA_DEVICE_SM_LIMIT and drops\n"
        "                     inherited per-device and GPUCAP_SM_LIMIT limits\n"
        "      --devices LIST devices CMD may see (e.g. 0,1 or GPU UUIDs); sets\n"
        "                     CUDA_VISIBLE_DEVICES\n"
        "  -f, --file PATH    region file shared with other processes; sets\n"
        "                     CUDA_DEVICE_MEMORY_SHARED_CACHE\n"
        "      --node-dir DIR node directory shared by the containers of a GPU, so that\n"
        "                     capped ones take turns; sets GPUCAP_NODE_DIR\n"
        "  -h, --help         show this help\n"
        "\n"
        "A device already in the region keeps the region's limits: the first process\n"
        "registered them. run then says so, and 'gpucap set' changes them.\n"
        "The library is looked up next to the gpucap binary (., ../lib, ../<libdir>,\n"
        "../<libdir>/gpucap, where the package puts it); set GPUCAP_LIBRARY to use\n"
        "another one.\n",
    .run = run_run,
};
