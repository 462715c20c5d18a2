/* SPDX-License-Identifier: Apache-2.0 */
#define _XOPEN_SOURCE 700

#include "fuzz_file.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static char dir[64];
static char path[128];

static int remove_entry(const char *name, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	remove(name);
	return 0;
}

/* At a normal exit (libFuzzer's, after its runs) the scratch directory
 * goes; after a crash it stays, with the input that caused it. */
static void remove_dir(void)
{
	nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_dir(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/gpucap-fuzz-XXXXXX");
		if (!mkdtemp(dir))
			abort(); /* the harness cannot run at all */
		atexit(remove_dir);
	}
	return dir;
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
	snprintf(path, sizeof(path), "%s/%s", fuzz_dir(), name);
	/* A new file each time: nothing maps the old one any more, and a
	 * region attach may have left its mode changed. */
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		abort();
	size_t done = 0;
	while (done < size) {
		ssize_t n = write(fd, data + done, size - done);
		if (n <= 0)
			abort();
		done += (size_t)n;
	}
	close(fd);
	return path;
}
