/* SPDX-License-Identifier: Apache-2.0 */
/* UTF-8 validation: owns the rule for what counts as a well-formed sequence. */
#ifndef GPUCAP_COMMON_UTF8_VALID_H
#define GPUCAP_COMMON_UTF8_VALID_H

#include <stddef.h>

/* Length (2..4) of the well-formed multi-byte UTF-8 sequence at s within len
 * bytes, or 0. Overlong forms, surrogates and code points past U+10FFFF are
 * ill-formed. */
size_t gpucap_utf8_sequence_length(const unsigned char *s, size_t len);

#endif
