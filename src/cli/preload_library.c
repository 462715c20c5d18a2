/* SPDX-License-Identifier: Apache-2.0 */
#define _XOPEN_SOURCE 700 /* realpath */

#include "preload_library.h"

#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef GPUCAP_INSTALL_LIBDIR
#define GPUCAP_INSTALL_LIBDIR "lib"
#endif
/* Where packages put the library: a private directory, since it is loaded by
 * path and never linked against. */
#ifndef GPUCAP_INSTALL_PLUGINDIR
#define GPUCAP_INSTALL_PLUGINDIR GPUCAP_INSTALL_LIBDIR "/gpucap"
#endif

/* The dynamic loader splits LD_PRELOAD on colons and blanks, so a path with
 * either would silently preload the wrong thing. */
static bool preloadable(const char *path)
{
	return strpbrk(path, ": \t") == NULL;
}

/* Resolve candidate into path if it names a readable regular file. */
static bool usable(const char *candidate, char *path, size_t path_len)
{
	char resolved[PATH_MAX];
	struct stat st;
	if (!realpath(candidate, resolved) || stat(resolved, &st) != 0 || !S_ISREG(st.st_mode) ||
	    access(resolved, R_OK) != 0)
		return false;
	if ((size_t)snprintf(path, path_len, "%s", resolved) >= path_len)
		return false;
	return true;
}

static int from_override(const char *command, const char *value, char *path, size_t path_len)
{
	if (!usable(value, path, path_len))
		return cli_failure(
		    command, "GPUCAP_LIBRARY=%s is not a readable file; point it at libgpucap.so or unset it",
		    value);
	if (!preloadable(path))
		return cli_failure(
		    command,
		    "GPUCAP_LIBRARY path %s contains a colon or blank, which LD_PRELOAD cannot carry; move the library to a plain path",
		    path);
	return CLI_EXIT_OK;
}

int cli_find_preload_library(const char *command, char *path, size_t path_len)
{
	const char *override = getenv("GPUCAP_LIBRARY");
	if (override && override[0])
		return from_override(command, override, path, path_len);

	char bindir[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", bindir, sizeof(bindir) - 1);
	if (n <= 0)
		return cli_failure(
		    command,
		    "cannot find the gpucap binary's directory (/proc/self/exe: %s); set GPUCAP_LIBRARY to the path of libgpucap.so",
		    strerror(errno));
	bindir[n] = '\0';
	char *slash = strrchr(bindir, '/');
	if (slash)
		*slash = '\0';
	char prefix[PATH_MAX];
	snprintf(prefix, sizeof(prefix), "%s", bindir);
	slash = strrchr(prefix, '/');
	if (slash)
		*slash = '\0';

	/* The build tree mirrors the installed layout, so one search covers
	 * both; lib/ comes before the configured libdir for bundles unpacked
	 * elsewhere. */
	char dirs[4][PATH_MAX + 32];
	size_t count = 0;
	snprintf(dirs[count++], sizeof(dirs[0]), "%s", bindir);
	snprintf(dirs[count++], sizeof(dirs[0]), "%s/lib", prefix);
	if (strcmp(GPUCAP_INSTALL_LIBDIR, "lib") != 0)
		snprintf(dirs[count++], sizeof(dirs[0]), "%s/%s", prefix, GPUCAP_INSTALL_LIBDIR);
	snprintf(dirs[count++], sizeof(dirs[0]), "%s/%s", prefix, GPUCAP_INSTALL_PLUGINDIR);
	for (size_t i = 0; i < count; i++) {
		char candidate[sizeof(dirs[0]) + sizeof(CLI_PRELOAD_NAME) + 1];
		if ((size_t)snprintf(candidate, sizeof(candidate), "%s/%s", dirs[i], CLI_PRELOAD_NAME) >=
		        sizeof(candidate) ||
		    !usable(candidate, path, path_len))
			continue;
		if (!preloadable(path))
			return cli_failure(
			    command,
			    "%s contains a colon or blank, which LD_PRELOAD cannot carry; install gpucap under a plain path or set GPUCAP_LIBRARY",
			    path);
		return CLI_EXIT_OK;
	}
	char searched[sizeof(dirs)] = "";
	size_t used = 0;
	for (size_t i = 0; i < count && used < sizeof(searched); i++)
		used += (size_t)snprintf(searched + used, sizeof(searched) - used, "%s%s",
		                         i == 0 ? "" : (i + 1 == count ? " or " : ", "), dirs[i]);
	return cli_failure(command,
	                   "cannot find " CLI_PRELOAD_NAME
	                   " in %s; install it next to gpucap or set GPUCAP_LIBRARY to its path",
	                   searched);
}

char *cli_preload_prepend(const char *library, const char *current)
{
	size_t library_len = strlen(library);
	size_t current_len = current ? strlen(current) : 0;
	char *value = malloc(library_len + 1 + current_len + 1);
	if (!value)
		return NULL;
	memcpy(value, library, library_len + 1);
	size_t len = library_len;
	const char *p = current;
	while (p && *p) {
		size_t skip = strspn(p, ": \t");
		p += skip;
		size_t entry = strcspn(p, ": \t");
		if (entry == 0)
			break;
		/* A second copy would be loaded once anyway; dropping it keeps the
		 * variable readable when gpucap run is nested. */
		if (!(entry == library_len && strncmp(p, library, entry) == 0)) {
			value[len++] = ':';
			memcpy(value + len, p, entry);
			len += entry;
			value[len] = '\0';
		}
		p += entry;
	}
	return value;
}
