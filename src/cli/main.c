/* SPDX-License-Identifier: Apache-2.0 */
/* gpucap: the command-line front end. Dispatches to the commands listed in
 * CLI_COMMANDS (cli.h). */
#include "cli.h"

#include <stdio.h>
#include <string.h>

#ifndef GPUCAP_VERSION
#error "GPUCAP_VERSION must come from the build (project version)"
#endif
#ifndef GPUCAP_BUILD_ID
#define GPUCAP_BUILD_ID "unknown"
#endif
#ifndef GPUCAP_BUILD_DATE
#define GPUCAP_BUILD_DATE "unknown"
#endif

#define CLI_COMMAND_ENTRY(name) &cli_command_##name,
static const struct cli_command *const commands[] = {CLI_COMMANDS(CLI_COMMAND_ENTRY)};
#undef CLI_COMMAND_ENTRY

#define COMMAND_COUNT (sizeof(commands) / sizeof(commands[0]))

static const struct cli_command *find_command(const char *name)
{
	for (size_t i = 0; i < COMMAND_COUNT; i++) {
		if (strcmp(commands[i]->name, name) == 0)
			return commands[i];
	}
	return NULL;
}

static void print_help(FILE *out)
{
	fputs("usage: gpucap COMMAND [OPTIONS]\n"
	      "\n"
	      "Cap GPU memory and SM (compute) share for the processes of a container sharing\n"
	      "an NVIDIA GPU, and account for them in a region file: run programs under the\n"
	      "caps, watch and change them live, check a node, export metrics.\n"
	      "\n"
	      "commands:\n",
	      out);
	for (size_t i = 0; i < COMMAND_COUNT; i++)
		fprintf(out, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
	fputs("\n"
	      "  --help     show this help; gpucap COMMAND --help shows a command's options\n"
	      "  --version  show the version\n"
	      "\n"
	      "exit status: 0 ok, 1 failure, 2 usage error; run exits with its command's status.\n"
	      "Reference: docs/cli.md; first steps: README.md (Quick start).\n",
	      out);
}

static int help_command(const char *name)
{
	const struct cli_command *command = find_command(name);
	if (!command)
		return cli_usage_error(NULL, "unknown command '%s'", name);
	fputs(command->usage, stdout);
	return cli_finish_output(NULL);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_help(stderr);
		return CLI_EXIT_USAGE;
	}
	const char *first = argv[1];
	if (strcmp(first, "--help") == 0 || strcmp(first, "-h") == 0 || strcmp(first, "help") == 0) {
		if (argc > 3)
			return cli_usage_error(NULL, "unexpected argument '%s'", argv[3]);
		if (argc == 3)
			return help_command(argv[2]);
		print_help(stdout);
		return cli_finish_output(NULL);
	}
	if (strcmp(first, "--version") == 0 || strcmp(first, "-V") == 0) {
		if (argc > 2)
			return cli_usage_error(NULL, "unexpected argument '%s'", argv[2]);
		fputs("gpucap " GPUCAP_VERSION " (build " GPUCAP_BUILD_ID ", " GPUCAP_BUILD_DATE ")\n",
		      stdout);
		return cli_finish_output(NULL);
	}
	if (first[0] == '-')
		return cli_usage_error(NULL, "unknown option '%s'; options go after the command", first);
	const struct cli_command *command = find_command(first);
	if (!command)
		return cli_usage_error(NULL, "unknown command '%s'", first);
	return command->run(argc - 1, argv + 1);
}
