/* SPDX-License-Identifier: Apache-2.0 */
/* A library that, like any interposer, looks up "the next" gpucap_probe. */
#define _GNU_SOURCE
#include <dlfcn.h>

char gpucap_probe_next_from_library(void);

char gpucap_probe_next_from_library(void)
{
	char (*next)(void);
	*(void **)&next = dlsym(RTLD_NEXT, "gpucap_probe");
	return next ? next() : '?';
}
