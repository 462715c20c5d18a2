/* SPDX-License-Identifier: Apache-2.0 */
/* A growable text buffer for the exposition, and Prometheus label-value
 * escaping. Allocation failure is sticky: once an append fails the buffer is
 * marked failed and later appends do nothing, so callers check once. */
#ifndef GPUCAP_EXPORTER_TEXT_H
#define GPUCAP_EXPORTER_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct exp_text {
	char *data; /* NUL-terminated while not failed */
	size_t len;
	size_t cap;
	bool failed;
};

void exp_text_init(struct exp_text *text);
void exp_text_free(struct exp_text *text);
void exp_text_append(struct exp_text *text, const char *bytes, size_t len);
void exp_text_puts(struct exp_text *text, const char *str);
__attribute__((format(printf, 2, 3))) void exp_text_printf(struct exp_text *text, const char *fmt, ...);

/*
 * Append a label value as it goes between the quotes: backslash, double
 * quote and newline are escaped (\\, \", \n), as the text format requires.
 * Prometheus rejects a whole scrape whose label values are not valid UTF-8,
 * so ill-formed bytes become U+FFFD. Reads at most max_len bytes of value,
 * stopping at the first NUL (fixed-size fields may fill their buffer).
 */
void exp_text_label_value(struct exp_text *text, const char *value, size_t max_len);

/* Hand the buffer over (caller frees with free()); NULL if it failed. The
 * text is left empty. */
char *exp_text_take(struct exp_text *text, size_t *len);

#endif
