/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "audit.h"

#include "cli.h"
#include "format.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

bool cli_audit_open(const char *command, const char *region_path, struct cli_audit *audit)
{
	audit->fd = -1;
	audit->command = command;
	snprintf(audit->path, sizeof(audit->path), "%s.audit", region_path);
	struct stat region;
	mode_t mode = 0600;
	if (stat(region_path, &region) == 0 && (region.st_mode & 0040))
		mode = 0640;
	/* The region's directory may belong to a tenant: never open anything
	 * there but a regular file, and never block in the open (a FIFO). */
	struct stat seen;
	if (lstat(audit->path, &seen) == 0 && !S_ISREG(seen.st_mode)) {
		cli_failure(command,
		            "the audit log %s is not a regular file; no limit was changed (remove it)",
		            audit->path);
		return false;
	}
	int fd = open(audit->path,
	              O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, mode);
	if (fd < 0) {
		int error = errno;
		cli_failure(
		    command,
		    "cannot open the audit log %s: %s; no limit was changed (the log must be a regular file you can write, next to the region)",
		    audit->path, error == ELOOP ? "it is a symbolic link" : strerror(error));
		return false;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != geteuid() || st.st_nlink != 1) {
		close(fd);
		cli_failure(
		    command,
		    "the audit log %s is not a regular file of yours with one link; no limit was changed (remove it or fix its owner)",
		    audit->path);
		return false;
	}
	audit->fd = fd;
	return true;
}

static const char *value_text(uint64_t value, bool bytes, char *buf, size_t len)
{
	if (bytes && cli_limit_is_unlimited(value))
		return "unlimited";
	if (!bytes && cli_sm_limit_is_none((uint32_t)value))
		return "none";
	snprintf(buf, len, "%llu", (unsigned long long)value);
	return buf;
}

bool cli_audit_record(struct cli_audit *audit, const struct gpucap_device_view *device, const char *what,
                      uint64_t old_value, uint64_t new_value, bool bytes)
{
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	char when[64];
	cli_format_time((uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec, when, sizeof(when));

	uid_t uid = getuid();
	char user[256] = "unknown";
	struct passwd pw, *found = NULL;
	char buf[4096];
	if (getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found && found->pw_name)
		snprintf(user, sizeof(user), "%s", found->pw_name);
	/* Names with blanks would break the fields apart. */
	for (char *p = user; *p; p++) {
		if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			*p = '_';
	}

	char uuid[GPUCAP_UUID_MAX + 1];
	snprintf(uuid, sizeof(uuid), "%.*s", GPUCAP_UUID_MAX, device->uuid);
	for (char *p = uuid; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			*p = '?';
	}
	char old_buf[32], new_buf[32], line[1024];
	int n = snprintf(line, sizeof(line), "%s uid=%u user=%s pid=%d device=%d uuid=%s %s %s -> %s\n", when,
	                 (unsigned)uid, user, (int)getpid(), device->index, uuid, what,
	                 value_text(old_value, bytes, old_buf, sizeof(old_buf)),
	                 value_text(new_value, bytes, new_buf, sizeof(new_buf)));
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)strlen(line);
	ssize_t written = write(audit->fd, line, (size_t)n);
	if (written != n) {
		cli_failure(
		    audit->command,
		    "device %d: the %s change was made but could not be recorded in %s: %s; check the disk it is on",
		    device->index, what, audit->path, written < 0 ? strerror(errno) : "short write");
		return false;
	}
	return true;
}

void cli_audit_close(struct cli_audit *audit)
{
	if (audit->fd >= 0)
		close(audit->fd);
	audit->fd = -1;
}
