/* SPDX-License-Identifier: Apache-2.0 */
/* The audit log of "gpucap set": <region path>.audit, one line per change. */
#ifndef GPUCAP_CLI_AUDIT_H
#define GPUCAP_CLI_AUDIT_H

#include <gpucap/region.h>

#include <stdbool.h>
#include <stdint.h>

struct cli_audit {
	int fd;
	char path[4200];
	const char *command;
};

/*
 * Open (create) the audit log next to region_path for appending. Created
 * with the region's group access (0640 when the region is shared with its
 * group, else 0600); an existing log must be a regular file (no symbolic
 * link) owned by the caller. Prints one line and returns false on failure.
 */
bool cli_audit_open(const char *command, const char *region_path, struct cli_audit *audit);

/*
 * Append "TIME uid=U user=NAME pid=P device=I uuid=UUID WHAT OLD -> NEW" with
 * one write(2). bytes: OLD/NEW are byte limits ("unlimited" for none), else
 * SM percentages ("none" for 0). Prints one line and returns false on
 * failure.
 */
bool cli_audit_record(struct cli_audit *audit, const struct gpucap_device_view *device, const char *what,
                      uint64_t old_value, uint64_t new_value, bool bytes);

void cli_audit_close(struct cli_audit *audit);

#endif
