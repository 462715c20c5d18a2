/* SPDX-License-Identifier: Apache-2.0 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

static atomic_int current_level = GPUCAP_LOG_WARN;

void gpucap_log_set_level(int level)
{
	if (level < GPUCAP_LOG_ERROR)
		level = GPUCAP_LOG_ERROR;
	if (level > GPUCAP_LOG_DEBUG)
		level = GPUCAP_LOG_DEBUG;
	atomic_store_explicit(&current_level, level, memory_order_relaxed);
}

int gpucap_log_level(void)
{
	return atomic_load_explicit(&current_level, memory_order_relaxed);
}

void gpucap_log(enum gpucap_log_level level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warning", "info", "detail", "debug"};
	char line[1024];
	int prefix = snprintf(line, sizeof(line), "gpucap[%d]: %s: ", (int)getpid(), names[level]);
	if (prefix < 0)
		return;
	va_list args;
	va_start(args, fmt);
	int body = vsnprintf(line + prefix, sizeof(line) - (size_t)prefix - 1, fmt, args);
	va_end(args);
	if (body < 0)
		return;
	size_t len = (size_t)prefix + (size_t)body;
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	line[len++] = '\n';
	/* One write so concurrent lines from many threads never interleave. */
	ssize_t ignored = write(STDERR_FILENO, line, len);
	(void)ignored;
}
