/* SPDX-License-Identifier: Apache-2.0 */
/*
 * dlsym(RTLD_NEXT, ...) must keep glibc's meaning with libgpucap preloaded:
 * the search starts after the object that called dlsym, not after
 * libgpucap. Load order: this program, libgpucap.so, libprobe_a.so
 * (preloaded), libprobe_next.so, libprobe_c.so (linked).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>

char gpucap_probe_next_from_library(void);
char gpucap_probe_marker(void);

int main(void)
{
	char (*from_main)(void);
	*(void **)&from_main = dlsym(RTLD_NEXT, "gpucap_probe");
	char a = from_main ? from_main() : '?';
	char c = gpucap_probe_next_from_library();
	printf("from the program: %c (want A), from a library: %c (want C)\n", a, c);
	(void)gpucap_probe_marker;
	return a == 'A' && c == 'C' ? 0 : 1;
}
