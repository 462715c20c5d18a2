/* SPDX-License-Identifier: Apache-2.0 */
/* What every gpucap command shares: the command table entry, the exit codes
 * and the one-line error helpers. */
#ifndef GPUCAP_CLI_H
#define GPUCAP_CLI_H

/* Exit codes. They are part of the interface scripts rely on (docs/cli.md). */
enum {
	CLI_EXIT_OK = 0,
	CLI_EXIT_FAILURE = 1,
	CLI_EXIT_USAGE = 2,
	CLI_EXIT_CANNOT_EXEC = 127,
};

struct cli_command {
	const char *name;
	const char *summary; /* one line for "gpucap --help" */
	const char *usage;   /* full text for "gpucap NAME --help" */
	/* argv[0] is the command name; returns the process exit code. */
	int (*run)(int argc, char **argv);
};

/*
 * The command list. Adding a command is one line here plus its own file that
 * defines "const struct cli_command cli_command_NAME" (listed in
 * CMakeLists.txt).
 */
#define CLI_COMMANDS(X)                                                                                      \
	X(status)                                                                                            \
	X(reap)                                                                                              \
	X(top)                                                                                               \
	X(set)                                                                                               \
	X(doctor)                                                                                            \
	X(exporter)                                                                                          \
	X(resolve)                                                                                           \
	X(cdi)                                                                                               \
	X(run)

#define CLI_DECLARE_COMMAND(name) extern const struct cli_command cli_command_##name;
CLI_COMMANDS(CLI_DECLARE_COMMAND)
#undef CLI_DECLARE_COMMAND

/* Print "gpucap COMMAND: MESSAGE (see 'gpucap COMMAND --help')" on stderr as
 * one line; returns CLI_EXIT_USAGE. command may be NULL for the top level. */
__attribute__((format(printf, 2, 3))) int cli_usage_error(const char *command, const char *fmt, ...);

/* Print "gpucap COMMAND: MESSAGE" on stderr as one line; returns
 * CLI_EXIT_FAILURE. */
__attribute__((format(printf, 2, 3))) int cli_failure(const char *command, const char *fmt, ...);

/* Flush stdout; on a write error report it and return CLI_EXIT_FAILURE, else
 * CLI_EXIT_OK. Output that silently went nowhere must not look like success. */
int cli_finish_output(const char *command);

#endif
