/* SPDX-License-Identifier: Apache-2.0 */
#include "utf8.h"
#include "utf8_valid.h"

#include <stdbool.h>
#include <string.h>

size_t utf8_sequence_length(const unsigned char *s, size_t len)
{
	return gpucap_utf8_sequence_length(s, len);
}

void utf8_printable(const char *text, size_t max_len, char *out, size_t out_len)
{
	if (out_len == 0)
		return;
	const unsigned char *s = (const unsigned char *)text;
	size_t len = 0;
	while (len < max_len && s[len] != '\0')
		len++;
	size_t i = 0, o = 0;
	while (i < len) {
		size_t n = s[i] < 0x80 ? 1 : utf8_sequence_length(s + i, len - i);
		/* C1 controls are U+0080..U+009F, encoded as C2 80..C2 9F. */
		bool control =
		    n == 1 ? (s[i] < 0x20 || s[i] == 0x7F) : (n == 2 && s[i] == 0xC2 && s[i + 1] < 0xA0);
		if (n == 0 || control) {
			if (o + 1 >= out_len)
				break;
			out[o++] = '?';
			i += n ? n : 1;
			continue;
		}
		if (o + n >= out_len)
			break;
		memcpy(out + o, s + i, n);
		o += n;
		i += n;
	}
	out[o] = '\0';
}
