/* SPDX-License-Identifier: Apache-2.0 */
#include "options.h"

#include "cli.h"

#include <stdio.h>
#include <string.h>

void cli_parser_init(struct cli_parser *parser, const char *command, int argc, char **argv,
                     bool operands_allowed)
{
	parser->command = command;
	parser->argc = argc;
	parser->argv = argv;
	parser->index = 1;
	parser->operands_allowed = operands_allowed;
	parser->matched = NULL;
}

static const struct cli_option *find_long(const struct cli_option *options, unsigned count, const char *name,
                                          size_t name_len)
{
	for (unsigned i = 0; i < count; i++) {
		if (strlen(options[i].long_name) == name_len &&
		    strncmp(options[i].long_name, name, name_len) == 0)
			return &options[i];
	}
	return NULL;
}

static const struct cli_option *find_short(const struct cli_option *options, unsigned count, char name)
{
	for (unsigned i = 0; i < count; i++) {
		if (options[i].short_name && options[i].short_name == name)
			return &options[i];
	}
	return NULL;
}

static int matched(struct cli_parser *parser, const struct cli_option *option)
{
	parser->matched = option;
	return option->id;
}

static int take_value(struct cli_parser *parser, const char *shown, const char **value)
{
	if (parser->index >= parser->argc) {
		cli_usage_error(parser->command, "option '%s' needs a value", shown);
		return CLI_OPT_ERROR;
	}
	*value = parser->argv[parser->index++];
	return 0;
}

static int parse_long(struct cli_parser *parser, const char *arg, const struct cli_option *options,
                      unsigned count, const char **value)
{
	const char *name = arg + 2;
	const char *equals = strchr(name, '=');
	size_t name_len = equals ? (size_t)(equals - name) : strlen(name);
	if (name_len == 4 && strncmp(name, "help", 4) == 0 && !equals)
		return CLI_OPT_HELP;
	const struct cli_option *option = find_long(options, count, name, name_len);
	if (!option) {
		cli_usage_error(parser->command, "unknown option '--%.*s'", (int)name_len, name);
		return CLI_OPT_ERROR;
	}
	if (!option->takes_value) {
		if (equals) {
			cli_usage_error(parser->command, "option '--%s' takes no value", option->long_name);
			return CLI_OPT_ERROR;
		}
		return matched(parser, option);
	}
	if (equals) {
		*value = equals + 1;
		return matched(parser, option);
	}
	if (take_value(parser, arg, value) != 0)
		return CLI_OPT_ERROR;
	return matched(parser, option);
}

static int parse_short(struct cli_parser *parser, const char *arg, const struct cli_option *options,
                       unsigned count, const char **value)
{
	/* One short option per argument: "-m 8g" or "-m8g". Bundling flags buys
	 * nothing with this few options and makes mistakes harder to name. */
	if (arg[1] == 'h' && arg[2] == '\0')
		return CLI_OPT_HELP;
	const struct cli_option *option = find_short(options, count, arg[1]);
	if (!option) {
		cli_usage_error(parser->command, "unknown option '-%c'", arg[1]);
		return CLI_OPT_ERROR;
	}
	if (!option->takes_value) {
		if (arg[2] != '\0') {
			cli_usage_error(parser->command, "unknown option '%s'", arg);
			return CLI_OPT_ERROR;
		}
		return matched(parser, option);
	}
	if (arg[2] != '\0') {
		*value = arg + 2;
		return matched(parser, option);
	}
	if (take_value(parser, arg, value) != 0)
		return CLI_OPT_ERROR;
	return matched(parser, option);
}

int cli_next_option(struct cli_parser *parser, const struct cli_option *options, unsigned count,
                    const char **value)
{
	*value = NULL;
	parser->matched = NULL;
	if (parser->index >= parser->argc)
		return CLI_OPT_END;
	const char *arg = parser->argv[parser->index];
	if (strcmp(arg, "--") == 0) {
		parser->index++;
		return CLI_OPT_END;
	}
	if (arg[0] != '-' || arg[1] == '\0') {
		if (parser->operands_allowed)
			return CLI_OPT_END;
		cli_usage_error(parser->command, "unexpected argument '%s'", arg);
		return CLI_OPT_ERROR;
	}
	parser->index++;
	if (arg[1] == '-')
		return parse_long(parser, arg, options, count, value);
	return parse_short(parser, arg, options, count, value);
}

bool cli_no_operands_left(const struct cli_parser *parser)
{
	if (parser->index >= parser->argc)
		return true;
	cli_usage_error(parser->command, "unexpected argument '%s'", parser->argv[parser->index]);
	return false;
}

struct cli_option_loop cli_option_loop_start(const struct cli_command *command, int argc, char **argv,
                                             const struct cli_option *options, unsigned count,
                                             bool operands_allowed)
{
	struct cli_option_loop loop = {.command = command, .options = options, .count = count};
	cli_parser_init(&loop.parser, command->name, argc, argv, operands_allowed);
	return loop;
}

static int stop_loop(struct cli_option_loop *loop, int exit_code)
{
	loop->stop = true;
	loop->exit_code = exit_code;
	return CLI_OPT_END;
}

int cli_option_loop_next(struct cli_option_loop *loop)
{
	if (loop->stop)
		return CLI_OPT_END;
	int id = cli_next_option(&loop->parser, loop->options, loop->count, &loop->value);
	for (const struct cli_option *option = loop->parser.matched;
	     option && (option->flag || option->value); option = loop->parser.matched) {
		if (option->flag)
			*option->flag = true;
		else
			*option->value = loop->value;
		id = cli_next_option(&loop->parser, loop->options, loop->count, &loop->value);
	}
	if (id == CLI_OPT_ERROR)
		return stop_loop(loop, CLI_EXIT_USAGE);
	if (id == CLI_OPT_HELP) {
		fputs(loop->command->usage, stdout);
		return stop_loop(loop, cli_finish_output(loop->command->name));
	}
	if (id == CLI_OPT_END && !loop->parser.operands_allowed && !cli_no_operands_left(&loop->parser))
		return stop_loop(loop, CLI_EXIT_USAGE);
	return id;
}

bool cli_option_loop_run(struct cli_option_loop *loop)
{
	/* Every option has a target: the loop returns only at the end. */
	cli_option_loop_next(loop);
	return !loop->stop;
}

bool cli_parse_region_flags(const struct cli_command *command, int argc, char **argv,
                            struct cli_region_flags *flags, int *exit_code)
{
	flags->json = false;
	flags->file = NULL;
	const struct cli_option options[] = {
	    CLI_STORE_FLAG("json", 0, &flags->json),
	    CLI_STORE_VALUE("file", 'f', &flags->file),
	};
	struct cli_option_loop loop = CLI_OPTION_LOOP(command, argc, argv, options, false);
	bool go_on = cli_option_loop_run(&loop);
	*exit_code = loop.exit_code;
	return go_on;
}
