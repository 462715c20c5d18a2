/* SPDX-License-Identifier: Apache-2.0 */
/* The assertions of gpucap's plain C test programs (those that run with
 * libgpucap.so preloaded, where cmocka's own allocator checks would be in
 * the way): a failed check names the file, the line and the expression, and
 * ends the program with status 1. */
#ifndef GPUCAP_TEST_CHECK_H
#define GPUCAP_TEST_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                          \
	do {                                                                                                 \
		if (!(cond)) {                                                                               \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);             \
			exit(1);                                                                             \
		}                                                                                            \
	} while (0)

#define CHECK_EQ(expected, actual)                                                                           \
	do {                                                                                                 \
		unsigned long long e_ = (unsigned long long)(expected), a_ = (unsigned long long)(actual);   \
		if (e_ != a_) {                                                                              \
			fprintf(stderr, "%s:%d: %s: expected %llu, got %llu\n", __FILE__, __LINE__, #actual, \
			        e_, a_);                                                                     \
			exit(1);                                                                             \
		}                                                                                            \
	} while (0)

/* A driver call that must succeed. */
#define CU(call) CHECK_EQ(CUDA_SUCCESS, (call))

/* "--threads N --rounds M" from argv[first] on; false on anything else. */
static inline bool check_thread_options(int argc, char **argv, int first, int *threads, int *rounds)
{
	for (int i = first; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--threads") == 0)
			*threads = atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--rounds") == 0)
			*rounds = atoi(argv[i + 1]);
		else
			return false;
	}
	return true;
}

#endif
