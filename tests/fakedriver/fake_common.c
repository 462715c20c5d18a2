/* SPDX-License-Identifier: Apache-2.0 */
#define _GNU_SOURCE
#include "fake_common.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static int count;
static char uuids[FAKE_MAX_DEVICES][96];
static unsigned char bytes[FAKE_MAX_DEVICES][16];

static const char *const default_devices =
    "GPU-00000000-0000-0000-0000-0000000000a0,GPU-00000000-0000-0000-0000-0000000000b1";

static bool parse_uuid(const char *text, unsigned char *out)
{
	if (strlen(text) < 4)
		return false;
	const char *p = text + 4;
	int n = 0;
	while (*p && n < 16) {
		if (*p == '-') {
			p++;
			continue;
		}
		if (!isxdigit((unsigned char)p[0]) || !isxdigit((unsigned char)p[1]))
			return false;
		char hex[3] = {p[0], p[1], 0};
		out[n++] = (unsigned char)strtoul(hex, NULL, 16);
		p += 2;
	}
	return n == 16 && *p == '\0';
}

void fake_devices_load(void)
{
	const char *list = getenv("FAKECUDA_DEVICES");
	if (!list || !*list)
		list = default_devices;
	char copy[4096];
	snprintf(copy, sizeof(copy), "%s", list);
	count = 0;
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item && count < FAKE_MAX_DEVICES;
	     item = strtok_r(NULL, ",", &save)) {
		if (!parse_uuid(item, bytes[count])) {
			fprintf(stderr, "fakecuda: bad UUID in FAKECUDA_DEVICES: %s\n", item);
			continue;
		}
		snprintf(uuids[count], sizeof(uuids[count]), "%s", item);
		count++;
	}
}

int fake_device_count(void)
{
	return count;
}

const char *fake_device_uuid(int physical)
{
	return uuids[physical];
}

const unsigned char *fake_device_uuid_bytes(int physical)
{
	return bytes[physical];
}

/* Like the driver: entries are indices or UUID prefixes; the list stops at
 * the first entry that names no device. */
int fake_visible_order(int *order, int max)
{
	const char *visible = getenv("CUDA_VISIBLE_DEVICES");
	if (!visible) {
		int n = count < max ? count : max;
		for (int i = 0; i < n; i++)
			order[i] = i;
		return n;
	}
	char copy[4096];
	snprintf(copy, sizeof(copy), "%s", visible);
	int n = 0;
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item && n < max; item = strtok_r(NULL, ",", &save)) {
		while (*item == ' ')
			item++;
		int found = -1;
		if (isdigit((unsigned char)item[0])) {
			char *end;
			long index = strtol(item, &end, 10);
			if (*end == '\0' && index >= 0 && index < count)
				found = (int)index;
		} else {
			size_t len = strlen(item);
			for (int i = 0; i < count && len >= 5; i++)
				if (strncasecmp(uuids[i], item, len) == 0)
					found = i;
		}
		if (found < 0)
			break;
		order[n++] = found;
	}
	return n;
}
