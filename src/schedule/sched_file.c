/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The files of the node schedule (sched_file.h). Every path is opened
 * relative to the node directory's descriptor, without following a final
 * link, without blocking, and checked with fstat before a byte is read.
 * Nothing is ever mapped: a file that another party truncates or rewrites
 * can only make a read come back short or fail its checks.
 * Calls the kernel directly (stat by system call, see file_stat.h) so the
 * preload library keeps its glibc baseline.
 */
#define _GNU_SOURCE
#include "sched_file.h"
#include "file_stat.h"
#include "leased_file.h"
#include "platform.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef RENAME_NOREPLACE
#define RENAME_NOREPLACE (1 << 0)
#endif

#define OPEN_FLAGS (O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY)
/* A record stamped this far in the future is not believed (clock reads of
 * two processes race by far less). */
#define SCHED_FUTURE_SLACK_NS UINT64_C(10000000)
/* A file of this user's whose records were all idle this long, and that no
 * process holds open, is a dead tenant's: it is removed. */
#define SCHED_STALE_NS UINT64_C(60000000000)
/* A writer's pwrite stamps its file's mtime at every controller tick (250
 * ms) while its tenant is active: a file untouched this long (wall clock,
 * with room for a stalled writer and a stepped clock) has no active record
 * and is not opened. */
#define SCHED_IDLE_MTIME_NS UINT64_C(10000000000)
#define OWN_OPEN_TRIES      4
/* Dead files tried for removal per scan: an idle live tenant's costs an
 * open and a refused lock each time. */
#define SCHED_REMOVE_TRIES 4

void sched_say(char *why, size_t why_len, const char *fmt, ...)
{
	if (!why || why_len == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, why_len, fmt, ap);
	va_end(ap);
}

void sched_file_name(char *buf, size_t len, const char *gpu_uuid, uint64_t tenant)
{
	snprintf(buf, len, "%s%s.%016llx", GPUCAP_SCHED_FILE_PREFIX, gpu_uuid, (unsigned long long)tenant);
}

static int stat_at(int dirfd, const char *name, struct stat *st)
{
	return (int)syscall(SYS_newfstatat, dirfd, name, st, AT_SYMLINK_NOFOLLOW);
}

/* OFD byte locks; the kernel drops them with the open file description. */
static int lock_byte(int fd, short type, uint64_t offset)
{
	struct flock fl;
	memset(&fl, 0, sizeof(fl));
	fl.l_type = type;
	fl.l_whence = SEEK_SET;
	fl.l_start = (off_t)offset;
	fl.l_len = 1;
	int rc;
	do
		rc = fcntl(fd, F_OFD_SETLK, &fl);
	while (rc < 0 && errno == EINTR);
	if (rc == 0)
		return 0;
	return errno == EACCES ? -EAGAIN : -errno;
}

static bool same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

/* Remove name when it is still the file open as fd, which the caller holds
 * under the exclusive users lock: no process uses it. */
static void unlink_if_same(int dirfd, const char *name, int fd)
{
	struct stat mine, there;
	if (gpucap_fstat(fd, &mine) == 0 && stat_at(dirfd, name, &there) == 0 && same_file(&mine, &there))
		unlinkat(dirfd, name, 0);
}

static ssize_t write_all(int fd, const void *buf, size_t len, uint64_t offset)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

static gpucap_status own_error(int error, const char *dir, const char *name, char *why, size_t why_len)
{
	switch (error) {
	case ELOOP:
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: schedule file %s/%s is a symbolic link; gpucap does not follow links there (remove it; it is recreated)",
		    dir, name);
		/* clang-format on */
		return GPUCAP_ERR_PERMISSION;
	case EISDIR:
		sched_say(why, why_len,
		          "gpucap: schedule file %s/%s is not a regular file; remove it, it is recreated",
		          dir, name);
		return GPUCAP_ERR_PERMISSION;
	case EACCES:
	case EPERM:
	case EROFS:
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: cannot write schedule file %s/%s: %s; make GPUCAP_NODE_DIR writable by every container's user (mode 1777), or unset GPUCAP_NODE_DIR",
		    dir, name, strerror(error));
		/* clang-format on */
		return GPUCAP_ERR_PERMISSION;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: cannot create schedule file %s/%s: %s; free space in GPUCAP_NODE_DIR (nothing was left behind; retried later)",
		    dir, name, strerror(error));
		/* clang-format on */
		return GPUCAP_ERR_IO;
	default:
		sched_say(why, why_len, "gpucap: cannot open schedule file %s/%s: %s", dir, name,
		          strerror(error));
		return GPUCAP_ERR_IO;
	}
}

/* Create the file whole under a private name, then give it its name only
 * if nobody did first: no process ever sees it half made. A failure
 * (a full disk) removes what it wrote. 0, -EEXIST (another process of the
 * tenant won), or -errno. */
static int create_whole(int dirfd, const char *gpu_uuid, uint64_t tenant, const char *name)
{
	char tmp[SCHED_NAME_MAX + 24];
	snprintf(tmp, sizeof(tmp), ".%s%s.%016llx.%d", GPUCAP_SCHED_FILE_PREFIX, gpu_uuid,
	         (unsigned long long)tenant, (int)getpid());
	int fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | OPEN_FLAGS, 0644);
	if (fd < 0 && errno == EEXIST) {
		/* Left by a process of this pid that died mid-way. */
		unlinkat(dirfd, tmp, 0);
		fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_EXCL | OPEN_FLAGS, 0644);
	}
	if (fd < 0)
		return -errno;
	char *buf = calloc(1, SCHED_FILE_SIZE);
	int rc = buf ? 0 : -ENOMEM;
	if (rc == 0 && fchmod(fd, 0644) != 0)
		rc = -errno;
	if (rc == 0) {
		struct sched_file_header *h = (struct sched_file_header *)buf;
		h->magic = SCHED_MAGIC;
		h->format_version = GPUCAP_SCHED_FORMAT_VERSION;
		h->header_size = SCHED_HEADER_SIZE;
		h->record_size = SCHED_RECORD_SIZE;
		h->record_count = GPUCAP_SCHED_RECORDS;
		h->tenant = tenant;
		h->created_ns = gpucap_clock_monotonic_ns();
		sched_seal_header(h);
		ssize_t n = write_all(fd, buf, SCHED_FILE_SIZE, 0);
		if (n < 0)
			rc = (int)n;
	}
	free(buf);
	if (rc == 0) {
		if (syscall(SYS_renameat2, dirfd, tmp, dirfd, name, RENAME_NOREPLACE) != 0) {
			rc = -errno;
			if (rc == -EINVAL || rc == -ENOSYS) {
				/* A file system without RENAME_NOREPLACE: link
				 * refuses an existing name the same way. */
				rc = linkat(dirfd, tmp, dirfd, name, 0) == 0 ? 0 : -errno;
			}
		}
	}
	unlinkat(dirfd, tmp, 0);
	close(fd);
	return rc;
}

/* The checks an existing own file must pass before it is used. */
/* This tenant's own file passes the leased-file checks every shared file of
 * gpucap passes (src/platform/leased_file.h): a regular file, one name, this
 * user's. */
static gpucap_status check_own(int fd, const char *dir, const char *name, char *why, size_t why_len)
{
	struct gpucap_file_rules rules = {0};
	struct gpucap_file_info info;
	int error;
	switch (gpucap_file_check_fd(fd, &rules, &info, &error)) {
	case GPUCAP_FILE_OK:
		return GPUCAP_OK;
	case GPUCAP_FILE_OPEN_FAILED:
	case GPUCAP_FILE_SYMLINK:
		return own_error(error, dir, name, why, why_len);
	case GPUCAP_FILE_NOT_REGULAR:
		sched_say(why, why_len,
		          "gpucap: schedule file %s/%s is not a regular file; remove it, it is recreated",
		          dir, name);
		return GPUCAP_ERR_PERMISSION;
	case GPUCAP_FILE_LINKS:
		if (info.links == 0)
			return GPUCAP_OK; /* removed by its last user: seen below, under the lock */
		sched_say(why, why_len,
		          "gpucap: schedule file %s/%s has %u names (hard links); remove it, it is recreated",
		          dir, name, info.links);
		return GPUCAP_ERR_PERMISSION;
	case GPUCAP_FILE_OWNER:
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: schedule file %s/%s belongs to uid %u, not to this process's uid %u; another user made it: remove it (and make GPUCAP_NODE_DIR sticky, mode 1777)",
		    dir, name, info.uid, gpucap_platform_euid());
		/* clang-format on */
		return GPUCAP_ERR_PERMISSION;
	}
	return GPUCAP_ERR_IO;
}

static bool own_contents_ok(int fd, const struct stat *st, uint64_t tenant)
{
	struct sched_file_header h;
	return (uint64_t)st->st_size == SCHED_FILE_SIZE &&
	       gpucap_platform_pread(fd, &h, sizeof(h), 0) == (ssize_t)sizeof(h) &&
	       sched_header_ok(&h, tenant);
}

static int claim_record(int fd, uint64_t tenant)
{
	for (uint32_t i = 0; i < GPUCAP_SCHED_RECORDS; i++) {
		if (gpucap_lease_try(fd, SCHED_LEASE_RECORD(i)) != 0)
			continue;
		/* A dead process's words are simply overwritten. */
		struct sched_record r;
		memset(&r, 0, sizeof(r));
		r.tenant = tenant;
		r.pid = gpucap_platform_pid();
		sched_seal_record(&r);
		if (write_all(fd, &r, sizeof(r), SCHED_HEADER_SIZE + (uint64_t)i * SCHED_RECORD_SIZE) < 0) {
			gpucap_lease_drop(fd, SCHED_LEASE_RECORD(i));
			return -1;
		}
		return (int)i;
	}
	return -1;
}

/* One attempt; GPUCAP_ERR_BUSY with *again set asks the caller to retry at
 * once (the name changed under us). */
static gpucap_status own_open_once(int dirfd, const char *dir, const char *gpu_uuid, struct sched_own *own,
                                   bool *again, char *why, size_t why_len)
{
	*again = false;
	int fd = openat(dirfd, own->name, O_RDWR | OPEN_FLAGS);
	if (fd < 0 && errno == ENOENT) {
		int rc = create_whole(dirfd, gpu_uuid, own->tenant, own->name);
		if (rc == 0 || rc == -EEXIST) {
			*again = true;
			return GPUCAP_ERR_BUSY;
		}
		return own_error(-rc, dir, own->name, why, why_len);
	}
	if (fd < 0)
		return own_error(errno, dir, own->name, why, why_len);
	struct stat st;
	if (gpucap_fstat(fd, &st) != 0) {
		int error = errno;
		close(fd);
		return own_error(error, dir, own->name, why, why_len);
	}
	gpucap_status status = check_own(fd, dir, own->name, why, why_len);
	if (status != GPUCAP_OK) {
		close(fd);
		return status;
	}
	/* Partner: the exclusive lock of the last user removing the file. Held
	 * shared, the file cannot be removed under us; taken, a removal that
	 * won before shows as no name left. */
	int rc = lock_byte(fd, F_RDLCK, SCHED_LEASE_USERS);
	if (rc < 0 || gpucap_fstat(fd, &st) != 0 || st.st_nlink == 0) {
		close(fd);
		if (rc == 0)
			*again = true;
		sched_say(why, why_len, "gpucap: schedule file %s/%s is being removed by another process",
		          dir, own->name);
		return GPUCAP_ERR_BUSY;
	}
	if (!own_contents_ok(fd, &st, own->tenant)) {
		/* Half made by something else (a full disk under an older
		 * gpucap, a hand edit): this user's own file, so it is replaced
		 * when nobody uses it. */
		if (lock_byte(fd, F_WRLCK, SCHED_LEASE_USERS) == 0) {
			unlink_if_same(dirfd, own->name, fd);
			close(fd);
			*again = true;
			return GPUCAP_ERR_BUSY;
		}
		close(fd);
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: schedule file %s/%s is damaged (%lld bytes) and in use by another process of this container; it is replaced once they stop",
		    dir, own->name, (long long)st.st_size);
		/* clang-format on */
		return GPUCAP_ERR_CORRUPT;
	}
	if ((st.st_mode & 07777) != 0644)
		fchmod(fd, 0644);
	int record = claim_record(fd, own->tenant);
	if (record < 0) {
		close(fd);
		/* clang-format off */
		sched_say(why, why_len,
		    "gpucap: schedule file %s/%s has no free record (%u processes of this container use this GPU); this process keeps its cap without taking turns",
		    dir, own->name, GPUCAP_SCHED_RECORDS);
		/* clang-format on */
		return GPUCAP_ERR_FULL;
	}
	own->fd = fd;
	own->record = record;
	return GPUCAP_OK;
}

gpucap_status sched_own_open(int dirfd, const char *dir, const char *gpu_uuid, uint64_t tenant,
                             struct sched_own *own, char *why, size_t why_len)
{
	own->fd = -1;
	own->record = -1;
	own->tenant = tenant;
	sched_file_name(own->name, sizeof(own->name), gpu_uuid, tenant);
	gpucap_status status = GPUCAP_ERR_BUSY;
	bool again = true;
	for (int i = 0; i < OWN_OPEN_TRIES && again; i++)
		status = own_open_once(dirfd, dir, gpu_uuid, own, &again, why, why_len);
	if (status == GPUCAP_ERR_BUSY && again)
		sched_say(why, why_len, "gpucap: schedule file %s/%s keeps changing; retried later", dir,
		          own->name);
	return status;
}

int sched_own_write(const struct sched_own *own, struct sched_record *r)
{
	if (own->fd < 0 || own->record < 0)
		return -EBADF;
	sched_seal_record(r);
	ssize_t n =
	    write_all(own->fd, r, sizeof(*r), SCHED_HEADER_SIZE + (uint64_t)own->record * SCHED_RECORD_SIZE);
	return n < 0 ? (int)n : 0;
}

bool sched_own_lost(const struct sched_own *own)
{
	struct stat st;
	return own->fd < 0 || gpucap_fstat(own->fd, &st) != 0 || st.st_nlink == 0;
}

void sched_own_close(int dirfd, struct sched_own *own)
{
	if (own->fd < 0)
		return;
	if (own->record >= 0) {
		struct sched_record r;
		memset(&r, 0, sizeof(r));
		r.tenant = own->tenant;
		r.pid = gpucap_platform_pid();
		sched_own_write(own, &r);
		gpucap_lease_drop(own->fd, SCHED_LEASE_RECORD(own->record));
	}
	/* Partner: the shared lock every user takes before using the file.
	 * Granted only when no other description holds it: the last user
	 * removes the file. */
	if (lock_byte(own->fd, F_WRLCK, SCHED_LEASE_USERS) == 0)
		unlink_if_same(dirfd, own->name, own->fd);
	close(own->fd);
	own->fd = -1;
	own->record = -1;
}

void sched_own_forget(struct sched_own *own)
{
	if (own->fd >= 0)
		close(own->fd);
	own->fd = -1;
	own->record = -1;
}

/* ---- Reading the other tenants ------------------------------------------------------------------------ */

/* "gpucap-sched-<uuid>.<16 lowercase hex>": the tenant, or 0. */
static uint64_t tenant_of_name(const char *name, const char *gpu_uuid)
{
	size_t prefix = sizeof(GPUCAP_SCHED_FILE_PREFIX) - 1, uuid = strlen(gpu_uuid);
	if (strncmp(name, GPUCAP_SCHED_FILE_PREFIX, prefix) != 0 ||
	    strncmp(name + prefix, gpu_uuid, uuid) != 0)
		return 0;
	const char *p = name + prefix + uuid;
	if (*p++ != '.')
		return 0;
	uint64_t tenant = 0;
	int digits = 0;
	for (; *p; p++, digits++) {
		int v;
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else
			return 0;
		if (digits == 16)
			return 0;
		tenant = tenant << 4 | (uint64_t)v;
	}
	return digits == 16 ? tenant : 0;
}

struct peer_read {
	bool active;
	uint32_t duty_ppm, cap_ppm;
	uint64_t newest_ns; /* the latest activity of any valid record */
	bool torn;          /* a record neither valid nor blank */
};

static bool blank(const void *p, size_t len)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

static void read_records(const unsigned char *file, uint64_t tenant, uint64_t now_ns, struct peer_read *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t i = 0; i < GPUCAP_SCHED_RECORDS; i++) {
		struct sched_record r;
		memcpy(&r, file + SCHED_HEADER_SIZE + (size_t)i * SCHED_RECORD_SIZE, sizeof(r));
		if (!sched_record_ok(&r)) {
			out->torn |= !blank(&r, sizeof(r));
			continue;
		}
		/* One tenant per file: a record speaking for another is forged. */
		if (r.tenant != tenant || r.active_ns == 0 || r.active_ns > now_ns + SCHED_FUTURE_SLACK_NS)
			continue;
		if (r.active_ns > out->newest_ns)
			out->newest_ns = r.active_ns;
		if (now_ns > r.active_ns && now_ns - r.active_ns > GPUCAP_SCHED_ACTIVE_NS)
			continue;
		uint32_t duty = sched_clamp_ppm(r.duty_ppm),
		         cap = r.cap_ppm ? sched_clamp_ppm(r.cap_ppm) : duty;
		out->active = true;
		out->duty_ppm = duty > out->duty_ppm ? duty : out->duty_ppm;
		out->cap_ppm = cap > out->cap_ppm ? cap : out->cap_ppm;
	}
}

/* A dead tenant of this user's: removed when no process holds it open
 * (its users' shared locks died with them). */
static bool remove_stale(int dirfd, const char *name, const struct stat *seen)
{
	int fd = openat(dirfd, name, O_RDWR | OPEN_FLAGS);
	if (fd < 0)
		return false;
	struct stat st;
	bool removed = false;
	/* Partner: the shared users lock of sched_own_open. */
	if (gpucap_fstat(fd, &st) == 0 && same_file(&st, seen) && S_ISREG(st.st_mode) &&
	    lock_byte(fd, F_WRLCK, SCHED_LEASE_USERS) == 0) {
		unlink_if_same(dirfd, name, fd);
		removed = true;
	}
	close(fd);
	return removed;
}

/* This user's own files, and everyone's for root (the kernel lets root
 * remove them from a sticky directory too). */
static bool may_remove(uint32_t owner, uint32_t euid)
{
	return owner == euid || euid == 0;
}

struct scan_state {
	const char *dir_name;
	char *why;
	size_t why_len;
	uint64_t wall_ns;
	uint32_t remove_tries;
	struct sched_scan_result result;
};

static void refuse(struct scan_state *s, const char *name, const char *fmt_reason, long long detail)
{
	if (s->result.refused++ == 0 && s->why && s->why_len) {
		char reason[160];
		snprintf(reason, sizeof(reason), fmt_reason, detail);
		sched_say(
		    s->why, s->why_len,
		    "gpucap: schedule file %s/%s %s; it is ignored (its owner or root should remove it)",
		    s->dir_name, name, reason);
	}
}

/* Read one peer's file; true with *out filled when the tenant is active. */
static bool read_peer(struct scan_state *s, int dirfd, const char *name, unsigned char d_type,
                      uint64_t tenant, uint32_t euid, uint64_t now_ns, unsigned char *buf,
                      struct sched_entry *out)
{
	if (d_type == DT_LNK) {
		refuse(s, name, "is a symbolic link", 0);
		return false;
	}
	if (d_type != DT_REG && d_type != DT_UNKNOWN) {
		refuse(s, name, "is not a regular file", 0);
		return false;
	}
	/* Dead tenants' files, a directory's usual bulk, cost one stat each. */
	struct stat seen;
	if (stat_at(dirfd, name, &seen) == 0 && S_ISREG(seen.st_mode) && seen.st_mtim.tv_sec >= 0) {
		uint64_t mtime =
		    (uint64_t)seen.st_mtim.tv_sec * UINT64_C(1000000000) + (uint64_t)seen.st_mtim.tv_nsec;
		if (mtime + SCHED_IDLE_MTIME_NS < s->wall_ns) {
			if (mtime + SCHED_STALE_NS < s->wall_ns && may_remove((uint32_t)seen.st_uid, euid) &&
			    s->remove_tries++ < SCHED_REMOVE_TRIES && remove_stale(dirfd, name, &seen))
				s->result.removed++;
			return false;
		}
	}
	/* Non-blocking: a FIFO or device swapped in after the listing opens at
	 * once and is refused by fstat. */
	/* The leased-file open every shared file of gpucap gets: no symbolic
	 * link, never blocking (a FIFO swapped in after the listing opens at
	 * once), a regular file with one name; any owner, as peers are. */
	struct gpucap_file_rules rules = {.any_owner = true};
	struct gpucap_file_info info;
	int fd, error;
	gpucap_file_check check = gpucap_file_openat(dirfd, name, &rules, &fd, &info, &error);
	if (check == GPUCAP_FILE_SYMLINK) {
		refuse(s, name, "is a symbolic link", 0);
		return false;
	}
	if (check == GPUCAP_FILE_OPEN_FAILED) {
		if (error != ENOENT)
			refuse(s, name, "cannot be read (errno %lld)", error);
		return false;
	}
	if (check == GPUCAP_FILE_NOT_REGULAR) {
		refuse(s, name, "is not a regular file", 0);
		return false;
	}
	if (check != GPUCAP_FILE_OK) {
		refuse(s, name, "has %lld names (hard links)", (long long)info.links);
		return false;
	}
	struct stat st;
	bool ok = false;
	struct peer_read r;
	if (gpucap_fstat(fd, &st) != 0) {
		refuse(s, name, "cannot be read (errno %lld)", errno);
	} else if ((uint64_t)st.st_size != SCHED_FILE_SIZE) {
		refuse(s, name, "is %lld bytes, not a whole schedule file", (long long)st.st_size);
	} else {
		/* A record torn by its writer's concurrent pwrite fails its
		 * checksum: read again once, then take what is whole. */
		for (int attempt = 0; attempt < 2; attempt++) {
			ssize_t n = gpucap_platform_pread(fd, buf, SCHED_FILE_SIZE, 0);
			if (n != (ssize_t)SCHED_FILE_SIZE) {
				refuse(s, name, "is %lld bytes, not a whole schedule file",
				       (long long)(n < 0 ? 0 : n));
				break;
			}
			struct sched_file_header h;
			memcpy(&h, buf, sizeof(h));
			if (!sched_header_ok(&h, tenant)) {
				refuse(s, name, "has no valid header of format version %lld",
				       (long long)GPUCAP_SCHED_FORMAT_VERSION);
				break;
			}
			read_records(buf, tenant, now_ns, &r);
			ok = true;
			if (!r.torn)
				break;
		}
	}
	close(fd);
	if (!ok)
		return false;
	if (r.active) {
		*out = (struct sched_entry){tenant, (uint32_t)st.st_uid, r.duty_ppm, r.cap_ppm, 0};
		return true;
	}
	if (may_remove((uint32_t)st.st_uid, euid) && now_ns > SCHED_STALE_NS &&
	    r.newest_ns < now_ns - SCHED_STALE_NS && s->remove_tries++ < SCHED_REMOVE_TRIES &&
	    remove_stale(dirfd, name, &st))
		s->result.removed++;
	return false;
}

static uint32_t same_owner(const struct sched_entry *e, uint32_t n, uint32_t uid)
{
	uint32_t count = 0;
	for (uint32_t i = 0; i < n; i++)
		count += e[i].uid == uid;
	return count;
}

struct sched_scan_result sched_scan_peers(DIR *dir, int dirfd, const char *dir_name, const char *gpu_uuid,
                                          uint64_t own_tenant, uint32_t euid, uint64_t now_ns,
                                          struct sched_entry *out, uint32_t max, char *why, size_t why_len)
{
	struct scan_state s = {dir_name, why, why_len, gpucap_clock_realtime_ns(), 0, {0, 0, 0}};
	if (why && why_len)
		why[0] = '\0';
	unsigned char *buf = malloc(SCHED_FILE_SIZE);
	if (!buf)
		return s.result;
	rewinddir(dir);
	struct dirent *entry;
	for (uint32_t looked = 0;
	     looked < GPUCAP_SCHED_SCAN_MAX && s.result.peers < max && (entry = readdir(dir)) != NULL;
	     looked++) {
		uint64_t tenant = tenant_of_name(entry->d_name, gpu_uuid);
		if (tenant == 0 || tenant == own_tenant)
			continue;
		if (read_peer(&s, dirfd, entry->d_name, entry->d_type, tenant, euid, now_ns, buf,
		              &out[s.result.peers]) &&
		    same_owner(out, s.result.peers, out[s.result.peers].uid) < GPUCAP_SCHED_PEERS_PER_UID_MAX)
			s.result.peers++;
	}
	free(buf);
	return s.result;
}
