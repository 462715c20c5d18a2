/* SPDX-License-Identifier: Apache-2.0 */
#include "parse.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

static bool parse_digits(const char **cursor, uint64_t *out)
{
	const char *p = *cursor;
	uint64_t value = 0;
	if (!isdigit((unsigned char)*p))
		return false;
	while (isdigit((unsigned char)*p)) {
		uint64_t digit = (uint64_t)(*p - '0');
		if (value > (UINT64_MAX - digit) / 10)
			return false;
		value = value * 10 + digit;
		p++;
	}
	*cursor = p;
	*out = value;
	return true;
}

bool gpucap_parse_size(const char *text, uint64_t *out)
{
	if (!text)
		return false;
	const char *p = skip_blanks(text);
	uint64_t value;
	if (!parse_digits(&p, &value))
		return false;
	unsigned shift = 0;
	switch (tolower((unsigned char)*p)) {
	case 'k':
		shift = 10;
		break;
	case 'm':
		shift = 20;
		break;
	case 'g':
		shift = 30;
		break;
	case 't':
		shift = 40;
		break;
	default:
		break;
	}
	if (shift) {
		p++;
		if (*p == 'i' || *p == 'I')
			p++;
		if (*p == 'b' || *p == 'B')
			p++;
	} else if (*p == 'b' || *p == 'B') {
		p++;
	}
	p = skip_blanks(p);
	if (*p != '\0')
		return false;
	if (shift && value > (UINT64_MAX >> shift))
		return false;
	*out = value << shift;
	return true;
}

bool gpucap_parse_percent(const char *text, uint32_t *out)
{
	if (!text)
		return false;
	const char *p = skip_blanks(text);
	uint64_t value;
	if (!parse_digits(&p, &value))
		return false;
	if (*p == '%')
		p++;
	p = skip_blanks(p);
	if (*p != '\0' || value > 100)
		return false;
	*out = (uint32_t)value;
	return true;
}

const char *gpucap_format_size(uint64_t bytes, char *buf, unsigned buf_len)
{
	static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	unsigned unit = 0;
	double value = (double)bytes;
	while (value >= 1024.0 && unit + 1 < sizeof(units) / sizeof(units[0])) {
		value /= 1024.0;
		unit++;
	}
	if (unit == 0)
		snprintf(buf, buf_len, "%llu B", (unsigned long long)bytes);
	else if (value == (double)(uint64_t)value)
		snprintf(buf, buf_len, "%llu %s", (unsigned long long)value, units[unit]);
	else
		snprintf(buf, buf_len, "%.2f %s", value, units[unit]);
	return buf;
}
