/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "exp_log.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void exp_vlog(const char *fmt, va_list args)
{
	static const char prefix[] = "gpucap exporter: ";
	char line[2048];
	size_t len = sizeof(prefix) - 1;
	memcpy(line, prefix, len);
	int n = vsnprintf(line + len, sizeof(line) - len, fmt, args);
	if (n > 0)
		len += (size_t)n < sizeof(line) - len ? (size_t)n : sizeof(line) - len - 1;
	/* Drop trailing newlines (libmicrohttpd ends its messages with one),
	 * flatten the rest. */
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	for (size_t i = 0; i < len; i++) {
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	}
	if (len > sizeof(line) - 1)
		len = sizeof(line) - 1;
	line[len++] = '\n';
	ssize_t ignored = write(STDERR_FILENO, line, len);
	(void)ignored;
}

void exp_log(const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	exp_vlog(fmt, args);
	va_end(args);
}
