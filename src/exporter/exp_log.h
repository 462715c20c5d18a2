/* SPDX-License-Identifier: Apache-2.0 */
/* One-line diagnostics of the exporter on stderr ("gpucap exporter: ..."),
 * each written with a single write(2) so lines from the HTTP thread and the
 * main thread never interleave. Newlines in the message become blanks. */
#ifndef GPUCAP_EXPORTER_LOG_H
#define GPUCAP_EXPORTER_LOG_H

#include <stdarg.h>

__attribute__((format(printf, 1, 2))) void exp_log(const char *fmt, ...);
void exp_vlog(const char *fmt, va_list args);

#endif
