/* SPDX-License-Identifier: Apache-2.0 */
/* The harnesses that read a file: one private scratch file per process,
 * rewritten with each input. */
#ifndef GPUCAP_FUZZ_FILE_H
#define GPUCAP_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

/* The directory holding the scratch file (created on first use). */
const char *fuzz_dir(void);

/* Replace the file name (inside fuzz_dir) with data; returns its path. */
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);

#endif
