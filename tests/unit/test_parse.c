/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the size and percentage parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "parse.h"

static void sizes(void **state)
{
	(void)state;
	struct {
		const char *text;
		uint64_t value;
	} good[] = {{"0", 0},
	            {"123", 123},
	            {"64k", 64 << 10},
	            {"64K", 64 << 10},
	            {"512m", UINT64_C(512) << 20},
	            {"8g", UINT64_C(8) << 30},
	            {"8G", UINT64_C(8) << 30},
	            {"8GiB", UINT64_C(8) << 30},
	            {"8gb", UINT64_C(8) << 30},
	            {"1t", UINT64_C(1) << 40},
	            {" 2g ", UINT64_C(2) << 30},
	            {"100b", 100}};
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		uint64_t value = 1;
		assert_true(gpucap_parse_size(good[i].text, &value));
		assert_int_equal(value, good[i].value);
	}
	const char *bad[] = {"",
	                     " ",
	                     "-1",
	                     "+5",
	                     "1.5g",
	                     "g",
	                     "12x",
	                     "8 g b",
	                     "99999999999999999999",
	                     "20000000000000000g",
	                     "0x10",
	                     NULL};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint64_t value = 7;
		assert_false(gpucap_parse_size(bad[i], &value));
		assert_int_equal(value, 7);
	}
}

static void percents(void **state)
{
	(void)state;
	uint32_t value = 0;
	assert_true(gpucap_parse_percent("0", &value));
	assert_int_equal(value, 0);
	assert_true(gpucap_parse_percent("30", &value));
	assert_int_equal(value, 30);
	assert_true(gpucap_parse_percent("100%", &value));
	assert_int_equal(value, 100);
	assert_false(gpucap_parse_percent("101", &value));
	assert_false(gpucap_parse_percent("-1", &value));
	assert_false(gpucap_parse_percent("50.5", &value));
	assert_false(gpucap_parse_percent("", &value));
}

static void formatting(void **state)
{
	(void)state;
	char buf[32];
	assert_string_equal(gpucap_format_size(12, buf, sizeof(buf)), "12 B");
	assert_string_equal(gpucap_format_size(512u << 20, buf, sizeof(buf)), "512 MiB");
	assert_string_equal(gpucap_format_size(UINT64_C(3) << 29, buf, sizeof(buf)), "1.50 GiB");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(sizes),
	    cmocka_unit_test(percents),
	    cmocka_unit_test(formatting),
	};
	return cmocka_run_group_tests_name("parse", tests, NULL, NULL);
}
