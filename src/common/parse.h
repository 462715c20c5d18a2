/* SPDX-License-Identifier: Apache-2.0 */
/* Parsing of user-supplied numbers: owns the accepted forms of sizes and
 * percentages, shared by the library's environment and the CLI's flags. */
#ifndef GPUCAP_COMMON_PARSE_H
#define GPUCAP_COMMON_PARSE_H

#include <stdbool.h>
#include <stdint.h>

/* The accepted forms, for error messages. */
#define GPUCAP_SIZE_FORMS                                                                                    \
	"a byte count with an optional k, m, g or t suffix (powers of 1024), e.g. 8g or 512m"
#define GPUCAP_PERCENT_FORMS "a whole percentage from 0 to 100"

/* Parse "123", "64k", "512m", "8g", "1t" (suffix case-insensitive, an optional
 * "b", "ib" or "iB" after it). Leading/trailing blanks are allowed; anything
 * else (signs, fractions, overflow, empty) is rejected. */
bool gpucap_parse_size(const char *text, uint64_t *out);

/* Parse a whole number 0..100. */
bool gpucap_parse_percent(const char *text, uint32_t *out);

/* Format bytes for people: "8.00 GiB", "512 MiB", "12 B". */
const char *gpucap_format_size(uint64_t bytes, char *buf, unsigned buf_len);

#endif
