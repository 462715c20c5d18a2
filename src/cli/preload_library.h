/* SPDX-License-Identifier: Apache-2.0 */
/* Finding libgpucap.so for "gpucap run" and putting it into LD_PRELOAD. */
#ifndef GPUCAP_CLI_PRELOAD_LIBRARY_H
#define GPUCAP_CLI_PRELOAD_LIBRARY_H

#include <stddef.h>

#define CLI_PRELOAD_NAME "libgpucap.so"

/*
 * The absolute path of the library to preload: $GPUCAP_LIBRARY if set, else
 * the first of <bindir>/libgpucap.so, <bindir>/../lib/libgpucap.so and
 * <bindir>/../<libdir>/libgpucap.so, where bindir holds the running gpucap
 * binary. Prints one line and returns CLI_EXIT_FAILURE when none is usable.
 */
int cli_find_preload_library(const char *command, char *path, size_t path_len);

/*
 * The new LD_PRELOAD value: library first, then the entries of current (may
 * be NULL) except any copy of library. Returns a malloc'ed string or NULL
 * when memory runs out.
 */
char *cli_preload_prepend(const char *library, const char *current);

#endif
