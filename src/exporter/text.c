/* SPDX-License-Identifier: Apache-2.0 */
#include "text.h"
#include "utf8_valid.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void exp_text_init(struct exp_text *text)
{
	memset(text, 0, sizeof(*text));
}

void exp_text_free(struct exp_text *text)
{
	free(text->data);
	exp_text_init(text);
}

static bool reserve(struct exp_text *text, size_t extra)
{
	if (text->failed)
		return false;
	if (extra > SIZE_MAX / 2 - text->len - 1) {
		text->failed = true;
		return false;
	}
	size_t need = text->len + extra + 1;
	if (need <= text->cap)
		return true;
	size_t cap = text->cap ? text->cap : 4096;
	while (cap < need)
		cap *= 2;
	char *data = realloc(text->data, cap);
	if (!data) {
		text->failed = true;
		return false;
	}
	text->data = data;
	text->cap = cap;
	return true;
}

void exp_text_append(struct exp_text *text, const char *bytes, size_t len)
{
	if (!reserve(text, len))
		return;
	memcpy(text->data + text->len, bytes, len);
	text->len += len;
	text->data[text->len] = '\0';
}

void exp_text_puts(struct exp_text *text, const char *str)
{
	exp_text_append(text, str, strlen(str));
}

void exp_text_printf(struct exp_text *text, const char *fmt, ...)
{
	char small[256];
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, args);
	va_end(args);
	if (n < 0) {
		text->failed = true;
		return;
	}
	if ((size_t)n < sizeof(small)) {
		exp_text_append(text, small, (size_t)n);
		return;
	}
	if (!reserve(text, (size_t)n))
		return;
	va_start(args, fmt);
	vsnprintf(text->data + text->len, (size_t)n + 1, fmt, args);
	va_end(args);
	text->len += (size_t)n;
}

void exp_text_label_value(struct exp_text *text, const char *value, size_t max_len)
{
	const unsigned char *s = (const unsigned char *)value;
	size_t len = 0;
	while (len < max_len && s[len])
		len++;
	size_t start = 0; /* first byte not yet copied */
	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		const char *replacement = NULL;
		size_t advance = 1;
		if (c == '\\')
			replacement = "\\\\";
		else if (c == '"')
			replacement = "\\\"";
		else if (c == '\n')
			replacement = "\\n";
		else if (c >= 0x80) {
			advance = gpucap_utf8_sequence_length(s + i, len - i);
			if (advance == 0) {
				replacement = "\xEF\xBF\xBD"; /* U+FFFD */
				advance = 1;
			}
		}
		if (replacement) {
			exp_text_append(text, value + start, i - start);
			exp_text_puts(text, replacement);
			start = i + advance;
		}
		i += advance;
	}
	exp_text_append(text, value + start, len - start);
}

char *exp_text_take(struct exp_text *text, size_t *len)
{
	if (text->failed) {
		exp_text_free(text);
		return NULL;
	}
	if (!text->data && !reserve(text, 0))
		return NULL;
	if (!text->len)
		text->data[0] = '\0';
	char *data = text->data;
	if (len)
		*len = text->len;
	exp_text_init(text);
	return data;
}
