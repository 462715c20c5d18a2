/* SPDX-License-Identifier: Apache-2.0 */
/* The one-line logger: owns the log level and the line format
 * ("gpucap[pid]: level: message"). Lines go to stderr with one write(2). */
#ifndef GPUCAP_COMMON_LOG_H
#define GPUCAP_COMMON_LOG_H

enum gpucap_log_level {
	GPUCAP_LOG_ERROR = 0,
	GPUCAP_LOG_WARN = 1,
	GPUCAP_LOG_INFO = 2,
	GPUCAP_LOG_DETAIL = 3,
	GPUCAP_LOG_DEBUG = 4,
};

/* Set once at start-up (from LIBCUDA_LOG_LEVEL / GPUCAP_LOG_LEVEL). Default:
 * warnings and errors. */
void gpucap_log_set_level(int level);
int gpucap_log_level(void);

__attribute__((format(printf, 2, 3))) void gpucap_log(enum gpucap_log_level level, const char *fmt, ...);

#define GPUCAP_LOG(level, ...)                                                                               \
	do {                                                                                                 \
		if ((int)(level) <= gpucap_log_level())                                                      \
			gpucap_log((level), __VA_ARGS__);                                                    \
	} while (0)

#endif
