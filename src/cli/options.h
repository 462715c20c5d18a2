/* SPDX-License-Identifier: Apache-2.0 */
/* Command-line option parsing shared by the commands. A small parser of our
 * own (rather than getopt_long) so that every mistake gets one line naming
 * the option and the way out, and so that "run" can stop exactly at its
 * command. */
#ifndef GPUCAP_CLI_OPTIONS_H
#define GPUCAP_CLI_OPTIONS_H

#include "default_paths.h"

#include <stdbool.h>

struct cli_command;

struct cli_option {
	const char *long_name; /* without the leading "--" */
	char short_name;       /* 0: none */
	bool takes_value;
	int id; /* returned by cli_next_option; must be >= 0 */
	/* For cli_option_loop: where it stores the option itself instead of
	 * returning its id, a flag as true, a value as typed. NULL: returned. */
	bool *flag;
	const char **value;
};

/* Table entries: options the command handles by id, and options the loop
 * stores. */
#define CLI_OPTION_FLAG(long_name, short_name, id)                                                           \
	{                                                                                                    \
		(long_name), (short_name), false, (id), NULL, NULL                                           \
	}
#define CLI_OPTION_VALUE(long_name, short_name, id)                                                          \
	{                                                                                                    \
		(long_name), (short_name), true, (id), NULL, NULL                                            \
	}
#define CLI_STORE_FLAG(long_name, short_name, target)                                                        \
	{                                                                                                    \
		(long_name), (short_name), false, 0, (target), NULL                                          \
	}
#define CLI_STORE_VALUE(long_name, short_name, target)                                                       \
	{                                                                                                    \
		(long_name), (short_name), true, 0, NULL, (target)                                           \
	}

enum {
	CLI_OPT_END = -1,   /* no more options; parser.index is the first operand */
	CLI_OPT_ERROR = -2, /* a usage error was printed */
	CLI_OPT_HELP = -3,  /* -h or --help */
};

struct cli_parser {
	const char *command; /* for messages */
	int argc;
	char **argv;
	int index; /* next argument to look at; starts at 1 */
	/* true: the first operand ends the options ("run CMD ..."); false: any
	 * operand is a usage error. */
	bool operands_allowed;
	const struct cli_option *matched; /* the option cli_next_option last returned */
};

void cli_parser_init(struct cli_parser *parser, const char *command, int argc, char **argv,
                     bool operands_allowed);

/* The next option's id (its value, if any, in *value), or one of CLI_OPT_*.
 * "--" ends the options and is consumed. */
int cli_next_option(struct cli_parser *parser, const struct cli_option *options, unsigned count,
                    const char **value);

/* For commands without operands: after CLI_OPT_END, a usage error if any
 * argument is left (e.g. "status -- extra"). Returns true when none is. */
bool cli_no_operands_left(const struct cli_parser *parser);

/*
 * The option loop every command runs, written once:
 *
 *	struct cli_option_loop loop =
 *	    CLI_OPTION_LOOP(&cli_command_NAME, argc, argv, NAME_options, false);
 *	int id;
 *	while ((id = cli_option_loop_next(&loop)) >= 0)
 *		... handle the options without a target: id and loop.value ...
 *	if (loop.stop)
 *		return loop.exit_code;
 *
 * -h/--help prints command->usage and stops with the exit code of writing
 * it; a mistake has had its one line and stops with CLI_EXIT_USAGE. For a
 * command without operands an argument left after "--" is such a mistake;
 * with operands loop.parser.index is the first one.
 */
struct cli_option_loop {
	struct cli_parser parser;
	const struct cli_command *command;
	const struct cli_option *options;
	unsigned count;
	const char *value; /* the value of the option just returned; NULL for a flag */
	bool stop;         /* the command must return exit_code now */
	int exit_code;
};

#define CLI_OPTION_COUNT(table) ((unsigned)(sizeof(table) / sizeof((table)[0])))

/* The loop over the options of table, an array (not a pointer). */
#define CLI_OPTION_LOOP(command, argc, argv, table, operands_allowed)                                        \
	cli_option_loop_start((command), (argc), (argv), (table), CLI_OPTION_COUNT(table), (operands_allowed))

struct cli_option_loop cli_option_loop_start(const struct cli_command *command, int argc, char **argv,
                                             const struct cli_option *options, unsigned count,
                                             bool operands_allowed);

/* The next option's id (>= 0), storing the options with a flag or value
 * target on the way; CLI_OPT_END once the options are over or the loop had
 * to stop (loop->stop). */
int cli_option_loop_next(struct cli_option_loop *loop);

/* The whole loop, for a table whose every option has a target. True when the
 * command goes on; false when it must return loop->exit_code. */
bool cli_option_loop_run(struct cli_option_loop *loop);

/* The usage lines of -f/--file and -h/--help, the same in every command
 * that reads one region. */
#define CLI_FILE_AND_HELP_USAGE                                                                              \
	"  -f, --file PATH  region file (default: $GPUCAP_REGION, then\n"                                    \
	"                   $CUDA_DEVICE_MEMORY_SHARED_CACHE, then\n"                                        \
	"                   " GPUCAP_DEFAULT_REGION_HELP ")\n"                                               \
	"  -h, --help       show this help\n"

/* The flags of the commands that read a region: [--json] [-f|--file PATH]. */
struct cli_region_flags {
	bool json;
	const char *file; /* NULL: not given */
};

/* Parse them (and -h/--help, which prints command->usage). Returns true when
 * the command should go on; false with *exit_code set after help or a usage
 * error. */
bool cli_parse_region_flags(const struct cli_command *command, int argc, char **argv,
                            struct cli_region_flags *flags, int *exit_code);

#endif
