/* SPDX-License-Identifier: Apache-2.0 */
/* One-line diagnostics. Errors are read by people and by log collectors that
 * split on newlines, so every message is flattened to one line and written
 * with a single write(2). */
#define _POSIX_C_SOURCE 200809L

#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void emit_line(const char *command, const char *suffix, const char *fmt, va_list args)
{
	char line[2048];
	size_t len = 0;
	int n = snprintf(line, sizeof(line), command ? "gpucap %s: " : "gpucap: ", command);
	if (n > 0)
		len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
	n = vsnprintf(line + len, sizeof(line) - len, fmt, args);
	if (n > 0)
		len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
	if (suffix) {
		n = snprintf(line + len, sizeof(line) - len, "%s", suffix);
		if (n > 0)
			len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
	}
	for (size_t i = 0; i < len; i++) {
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	}
	if (len >= sizeof(line) - 1)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	ssize_t ignored = write(STDERR_FILENO, line, len);
	(void)ignored;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
	char suffix[128];
	if (command)
		snprintf(suffix, sizeof(suffix), " (see 'gpucap %s --help')", command);
	else
		snprintf(suffix, sizeof(suffix), " (see 'gpucap --help')");
	va_list args;
	va_start(args, fmt);
	emit_line(command, suffix, fmt, args);
	va_end(args);
	return CLI_EXIT_USAGE;
}

int cli_failure(const char *command, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	emit_line(command, NULL, fmt, args);
	va_end(args);
	return CLI_EXIT_FAILURE;
}

int cli_finish_output(const char *command)
{
	errno = 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		int saved = errno;
		return cli_failure(command,
		                   "cannot write to standard output: %s; check the pipe or disk it goes to",
		                   saved ? strerror(saved) : "write error");
	}
	return CLI_EXIT_OK;
}
