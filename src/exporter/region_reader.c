/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "region_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- paths -------------------------------------------------------------- */

static const char *kind_of(mode_t mode)
{
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISLNK(mode))
		return "a symbolic link";
	if (S_ISFIFO(mode))
		return "a FIFO";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "a device node";
	return "not a regular file";
}

static enum reader_path refuse_kind(const char *path, mode_t mode, char *err, size_t err_len)
{
	snprintf(err, err_len,
	         "region %s is %s, not a regular file; refusing to open it: remove it or name the right file",
	         path, kind_of(mode));
	return READER_PATH_REFUSED;
}

enum reader_path reader_check_path(const char *path, char *err, size_t err_len)
{
	struct stat seen;
	if (lstat(path, &seen) != 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return READER_PATH_GONE;
		snprintf(err, err_len, "cannot look at region %s: %s", path, strerror(errno));
		return READER_PATH_REFUSED;
	}
	/* Never open what is not a regular file: a FIFO would block, a device
	 * node's open has effects of its own. */
	if (!S_ISREG(seen.st_mode))
		return refuse_kind(path, seen.st_mode, err, err_len);
	/* The path may have been swapped since: open it so that nothing can
	 * block or follow a link, then judge the descriptor. */
	int fd;
	do
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return READER_PATH_GONE;
		if (errno == ELOOP)
			return refuse_kind(path, S_IFLNK, err, err_len);
		snprintf(err, err_len, "cannot open region %s: %s", path, strerror(errno));
		return READER_PATH_REFUSED;
	}
	struct stat opened;
	int rc = fstat(fd, &opened);
	int saved = errno;
	/* The first bytes, for a header nobody has written yet. */
	unsigned char head[64];
	ssize_t head_len = rc == 0 && S_ISREG(opened.st_mode) ? pread(fd, head, sizeof(head), 0) : 0;
	close(fd);
	if (rc != 0) {
		snprintf(err, err_len, "cannot look at region %s: %s", path, strerror(saved));
		return READER_PATH_REFUSED;
	}
	if (!S_ISREG(opened.st_mode))
		return refuse_kind(path, opened.st_mode, err, err_len);
	if (opened.st_nlink != 1) {
		snprintf(
		    err, err_len,
		    "region %s has %lu hard links; a region file has exactly one: remove the other names or the file",
		    path, (unsigned long)opened.st_nlink);
		return READER_PATH_REFUSED;
	}
	if (opened.st_dev != seen.st_dev || opened.st_ino != seen.st_ino) {
		snprintf(err, err_len, "region %s was replaced while it was being opened; try again", path);
		return READER_PATH_REFUSED;
	}
	if (opened.st_size == 0) {
		snprintf(
		    err, err_len,
		    "region %s is empty (0 bytes): a process may be creating it right now; try again, or remove the file if it stays empty",
		    path);
		return READER_PATH_EMPTY;
	}
	bool blank = head_len > 0;
	for (ssize_t i = 0; blank && i < head_len; i++)
		blank = head[i] == 0;
	if (blank) {
		/* What a creator that died before writing leaves behind; the tools
		 * never initialise a region they did not create. */
		snprintf(
		    err, err_len,
		    "region %s has a blank header: a process may be creating it right now; try again, or remove the file if it stays that way",
		    path);
		return READER_PATH_EMPTY;
	}
	return READER_PATH_OK;
}

/* ---- SIGBUS guard -------------------------------------------------------
 * Regions are memory-mapped. If a file is truncated while it is mapped,
 * reading past the new end raises SIGBUS. The region files live in
 * directories the containers can write, so a tenant must not be able to kill
 * the node's tools that way: reads are bracketed by sigsetjmp and the
 * handler jumps back when the fault happens inside a guarded call on the
 * same thread. Any other SIGBUS goes to the handler that was installed
 * before ours (the region code may guard its own mappings), or gets the
 * default action. A handler that chains back to ours would make a cycle: a
 * per-thread depth count cuts it, giving the fault the default action. */

static _Thread_local sigjmp_buf *volatile fault_jump;
static _Thread_local int passing_on;
static struct sigaction previous_action; /* written before ours is installed */

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
	sigjmp_buf *jump = fault_jump;
	if (jump) {
		fault_jump = NULL;
		siglongjmp(*jump, 1);
	}
	const struct sigaction *prev = &previous_action;
	bool chained = passing_on == 0 && ((prev->sa_flags & SA_SIGINFO)
	                                       ? prev->sa_sigaction != NULL && prev->sa_sigaction != on_sigbus
	                                       : prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN);
	if (chained) {
		passing_on++;
		if (prev->sa_flags & SA_SIGINFO)
			prev->sa_sigaction(sig, info, context);
		else
			prev->sa_handler(sig);
		passing_on--;
		return;
	}
	/* Nobody's: restore the default action; returning re-runs the faulting
	 * access, which then terminates the process as usual. */
	signal(sig, SIG_DFL);
}

void reader_install_fault_guard(void)
{
	/* Look rather than remember: someone else (a test framework, the
	 * region code) may have replaced the handler since; it is then the one
	 * chained to. The tools install it from one thread, before any other. */
	struct sigaction current;
	if (sigaction(SIGBUS, NULL, &current) != 0)
		return;
	if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigbus)
		return;
	previous_action = current;
	struct sigaction action;
	memset(&action, 0, sizeof(action));
	action.sa_sigaction = on_sigbus;
	sigemptyset(&action.sa_mask);
	action.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGBUS, &action, NULL);
}

bool reader_run_guarded(void (*fn)(void *), void *arg)
{
	reader_install_fault_guard();
	sigjmp_buf jump;
	if (sigsetjmp(jump, 1) != 0)
		return false; /* fault_jump was cleared by the handler */
	fault_jump = &jump;
	fn(arg);
	fault_jump = NULL;
	return true;
}

/* ---- attaching and copying ---------------------------------------------- */

static void tidy_message(char *text)
{
	static const char prefix[] = "gpucap: ";
	if (strncmp(text, prefix, sizeof(prefix) - 1) == 0)
		memmove(text, text + sizeof(prefix) - 1, strlen(text) - (sizeof(prefix) - 1) + 1);
	for (char *p = text; *p; p++) {
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	}
}

/* Everything the fault path needs is in memory reached through the job,
 * never in locals that a longjmp would clobber. */
struct attach_job {
	struct gpucap_region_options options;
	char *err;
	size_t err_len;
	gpucap_status status;
	gpucap_region *volatile region;
};

static void attach_guarded(void *arg)
{
	struct attach_job *job = arg;
	gpucap_region *attached = NULL;
	job->status = gpucap_region_attach(&job->options, &attached, job->err, job->err_len);
	job->region = attached;
}

enum reader_result reader_attach(const char *path, const struct reader_attach *how, gpucap_region **out,
                                 gpucap_status *status, char *err, size_t err_len)
{
	gpucap_status ignored;
	if (!status)
		status = &ignored;
	*status = GPUCAP_ERR_IO;
	*out = NULL;
	err[0] = '\0';
	switch (reader_check_path(path, err, err_len)) {
	case READER_PATH_OK:
		break;
	case READER_PATH_GONE:
		snprintf(err, err_len, "no region file at %s", path);
		return READER_GONE;
	case READER_PATH_REFUSED:
		*status = GPUCAP_ERR_PERMISSION;
		return READER_FAILED;
	case READER_PATH_EMPTY:
		*status = GPUCAP_ERR_BUSY;
		return READER_FAILED;
	}
	struct attach_job job;
	memset(&job, 0, sizeof(job));
	job.options.path = path;
	job.options.observer = how->observer;
	job.options.existing_only = true; /* the tools never create a region */
	job.options.init_timeout_ms = how->init_timeout_ms;
	job.err = err;
	job.err_len = err_len;
	if (!reader_run_guarded(attach_guarded, &job)) {
		if (job.region)
			gpucap_region_abandon(job.region);
		snprintf(err, err_len, "region %s shrank while it was being read (SIGBUS): it was truncated",
		         path);
		return READER_FAILED;
	}
	*status = job.status;
	if (job.status != GPUCAP_OK) {
		/* It vanished between the check and the open: gone, not broken. */
		struct stat st;
		if (job.status == GPUCAP_ERR_IO && lstat(path, &st) != 0 && errno == ENOENT) {
			snprintf(err, err_len, "no region file at %s", path);
			return READER_GONE;
		}
		if (!err[0])
			snprintf(err, err_len, "cannot read region %s: %s", path,
			         gpucap_status_text(job.status));
		tidy_message(err);
		return READER_FAILED;
	}
	*out = job.region;
	return READER_OK;
}

struct copy_job {
	gpucap_region *region;
	struct gpucap_snapshot *volatile snapshot;
};

static void copy_guarded(void *arg)
{
	struct copy_job *job = arg;
	job->snapshot = gpucap_region_snapshot(job->region);
}

struct gpucap_snapshot *reader_snapshot(gpucap_region *region, char *err, size_t err_len)
{
	struct copy_job job = {.region = region, .snapshot = NULL};
	if (!reader_run_guarded(copy_guarded, &job)) {
		/* A snapshot half copied when the fault hit is not freed: it is
		 * unreachable from here. This only happens when a file is
		 * truncated while it is being read. */
		snprintf(err, err_len, "region %s shrank while it was being read (SIGBUS): it was truncated",
		         gpucap_region_path(region));
		return NULL;
	}
	if (!job.snapshot)
		snprintf(err, err_len, "cannot copy region %s: out of memory", gpucap_region_path(region));
	return job.snapshot;
}

enum reader_result reader_read(const char *path, unsigned init_timeout_ms, struct gpucap_snapshot **out,
                               char *err, size_t err_len)
{
	*out = NULL;
	struct reader_attach how = {.observer = true, .init_timeout_ms = init_timeout_ms};
	gpucap_region *region = NULL;
	enum reader_result result = reader_attach(path, &how, &region, NULL, err, err_len);
	if (result != READER_OK)
		return result;
	*out = reader_snapshot(region, err, err_len);
	/* Unmapping cannot fault: detach needs no guard for an observer. */
	gpucap_region_detach(region);
	return *out ? READER_OK : READER_FAILED;
}
