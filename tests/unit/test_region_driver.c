/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The region's support for charging what the driver holds: the fourth kind
 * (GPUCAP_KIND_DRIVER) in a process's own per-kind figures, and the measured
 * context size kept per device, validated when read from the file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "layout.h"
#include "test_support.h"

#define GPU0 "GPU-00000000-1111-2222-3333-444444444444"
#define MiB  (UINT64_C(1) << 20)

static void own_kind_bytes_count_every_kind(void **state)
{
	(void)state;
	gpucap_region *r = test_attach_claim(scratch_path("kinds"));
	int d = gpucap_region_device_register(r, GPU0, 1024 * MiB, 0);
	assert_true(d >= 0);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_CONTEXT, 100 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 30 * MiB), GPUCAP_OK);
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DRIVER, 7 * MiB), GPUCAP_OK);
	int64_t kinds[GPUCAP_KIND_COUNT];
	assert_true(gpucap_region_own_kind_bytes(r, d, kinds));
	assert_int_equal(kinds[GPUCAP_KIND_CONTEXT], 100 * MiB);
	assert_int_equal(kinds[GPUCAP_KIND_MODULE], 0);
	assert_int_equal(kinds[GPUCAP_KIND_DATA], 30 * MiB);
	assert_int_equal(kinds[GPUCAP_KIND_DRIVER], 7 * MiB);
	/* The driver's kind counts against the limit like any other. */
	assert_int_equal(gpucap_reserve(r, d, GPUCAP_KIND_DATA, 1024 * MiB - 137 * MiB + 1),
	                 GPUCAP_ERR_OVER_LIMIT);
	gpucap_release(r, d, GPUCAP_KIND_DRIVER, 7 * MiB);
	assert_true(gpucap_region_own_kind_bytes(r, d, kinds));
	assert_int_equal(kinds[GPUCAP_KIND_DRIVER], 0);
	assert_false(gpucap_region_own_kind_bytes(r, 63, kinds));
	gpucap_region_detach(r);
}

static void measured_context_size_is_validated(void **state)
{
	(void)state;
	const char *path = scratch_path("context");
	gpucap_region *r = test_attach_claim(path);
	int d = gpucap_region_device_register(r, GPU0, GPUCAP_UNLIMITED, 0);
	assert_int_equal(gpucap_region_context_bytes(r, d), 0);
	gpucap_region_note_context_bytes(r, d, 518 * MiB);
	assert_int_equal(gpucap_region_context_bytes(r, d), 518 * MiB);
	/* Rounded up to KiB; nonsense is not recorded. */
	gpucap_region_note_context_bytes(r, d, 518 * MiB + 1);
	assert_int_equal(gpucap_region_context_bytes(r, d), 518 * MiB + 1024);
	gpucap_region_note_context_bytes(r, d, 0);
	gpucap_region_note_context_bytes(r, d, GPUCAP_CONTEXT_BYTES_MIN - 1);
	gpucap_region_note_context_bytes(r, d, GPUCAP_CONTEXT_BYTES_MAX + 1);
	assert_int_equal(gpucap_region_context_bytes(r, d), 518 * MiB + 1024);
	assert_int_equal(gpucap_region_context_bytes(r, 63), 0);
	/* A damaged word in the file reads as unknown. */
	int fd = open(path, O_RDWR);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint8_t *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(base != MAP_FAILED);
	struct region_header *h = (struct region_header *)base;
	struct device_entry *entry = (struct device_entry *)(base + h->devices_offset) + d;
	atomic_store(&entry->context_kib, UINT32_MAX);
	assert_int_equal(gpucap_region_context_bytes(r, d), 0);
	/* So does one too small to be a context, which would shrink the
	 * charge of every context after it. */
	atomic_store(&entry->context_kib, 1);
	assert_int_equal(gpucap_region_context_bytes(r, d), 0);
	atomic_store(&entry->context_kib, (uint32_t)(GPUCAP_CONTEXT_BYTES_MIN >> 10));
	assert_int_equal(gpucap_region_context_bytes(r, d), GPUCAP_CONTEXT_BYTES_MIN);
	munmap(base, (size_t)st.st_size);
	close(fd);
	gpucap_region_detach(r);
}

static int teardown(void **state)
{
	(void)state;
	scratch_remove();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(own_kind_bytes_count_every_kind),
	    cmocka_unit_test(measured_context_size_is_validated),
	};
	return cmocka_run_group_tests_name("region: the driver's charge", tests, NULL, teardown);
}
