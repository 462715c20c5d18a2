/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 well-formedness, shared by the JSON writer (which must emit valid
 * UTF-8) and the text output (which must not pass terminal control bytes
 * from process names through). */
#ifndef GPUCAP_CLI_UTF8_H
#define GPUCAP_CLI_UTF8_H

#include <stddef.h>

/* Length (2..4) of the well-formed multi-byte sequence at s, looking at no
 * more than len bytes, or 0. Overlong forms, surrogates and code points past
 * U+10FFFF are ill-formed. ASCII bytes also give 0. */
size_t utf8_sequence_length(const unsigned char *s, size_t len);

/* Copy at most max_len bytes of text (stopping at NUL) into out, replacing
 * control characters (C0, DEL, C1) and ill-formed bytes with '?'. Always
 * NUL-terminates; truncates at a character boundary. */
void utf8_printable(const char *text, size_t max_len, char *out, size_t out_len);

#endif
