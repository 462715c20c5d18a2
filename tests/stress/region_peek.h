/* SPDX-License-Identifier: Apache-2.0 */
/* Read-only white-box view of a region for tests: the device charge word and
 * limit, read straight from the file format so a check costs one load. */
#ifndef GPUCAP_TEST_REGION_PEEK_H
#define GPUCAP_TEST_REGION_PEEK_H

#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"

struct region_peek {
	const uint8_t *base;
	size_t size;
};

static inline int region_peek_open(struct region_peek *peek, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		close(fd);
		return -1;
	}
	void *base = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (base == MAP_FAILED)
		return -1;
	peek->base = base;
	peek->size = (size_t)st.st_size;
	return 0;
}

static inline const struct device_entry *region_peek_device(const struct region_peek *peek, int device)
{
	const struct region_header *h = (const struct region_header *)peek->base;
	return (const struct device_entry *)(peek->base + h->devices_offset) + device;
}

static inline uint64_t region_peek_charged(const struct region_peek *peek, int device)
{
	return charge_total(
	    atomic_load_explicit(&region_peek_device(peek, device)->charge, memory_order_acquire));
}

static inline uint64_t region_peek_limit(const struct region_peek *peek, int device)
{
	uint64_t stored =
	    atomic_load_explicit(&region_peek_device(peek, device)->limit, memory_order_acquire);
	return stored == 0 ? 0 : stored - 1;
}

#endif
