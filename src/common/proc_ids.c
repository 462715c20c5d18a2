/* SPDX-License-Identifier: Apache-2.0 */
/* See proc_ids.h. */
#define _GNU_SOURCE /* readlink */
#include "proc_ids.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t gpucap_pid_namespace_inode(const char *link_path)
{
	char link[64];
	ssize_t n = readlink(link_path, link, sizeof(link) - 1);
	if (n <= 5)
		return 0;
	link[n] = '\0';
	unsigned long long inode = 0;
	return sscanf(link, "pid:[%llu]", &inode) == 1 ? (uint64_t)inode : 0;
}

int gpucap_nspid(const char *status_path, long *outermost, long *innermost)
{
	FILE *status = fopen(status_path, "re");
	if (!status)
		return 0;
	char line[512];
	int count = 0;
	while (fgets(line, sizeof(line), status)) {
		if (strncmp(line, "NSpid:", 6) != 0)
			continue;
		char *cursor = line + 6;
		for (;;) {
			char *end;
			long value = strtol(cursor, &end, 10);
			if (end == cursor)
				break;
			if (count++ == 0)
				*outermost = value;
			*innermost = value;
			cursor = end;
		}
		break;
	}
	fclose(status);
	return count;
}
