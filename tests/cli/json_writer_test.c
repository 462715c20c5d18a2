/* SPDX-License-Identifier: Apache-2.0 */
/* The JSON writer: commas and nesting, number ranges, and string escaping
 * (quotes, controls, valid and ill-formed UTF-8). */
#define _POSIX_C_SOURCE 200809L

#include "json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

static void expect(const char *name, const char *got, const char *want)
{
	if (strcmp(got, want) != 0) {
		fprintf(stderr, "FAIL %s\n  got:  %s\n  want: %s\n", name, got, want);
		failures++;
	}
}

/* Render a single string value and compare the document. */
static void expect_string(const char *name, const char *input, const char *want)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	struct json_writer w;
	json_init(&w, out);
	json_string(&w, input);
	if (!json_finish(&w)) {
		fprintf(stderr, "FAIL %s: writer reported misuse\n", name);
		failures++;
	}
	fclose(out);
	expect(name, buf, want);
	free(buf);
}

static void test_structure(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	struct json_writer w;
	json_init(&w, out);
	json_object_begin(&w);
	json_member_uint(&w, "max", UINT64_MAX);
	json_member_int(&w, "min", INT64_MIN);
	json_member_bool(&w, "yes", true);
	json_key(&w, "none");
	json_null(&w);
	json_key(&w, "list");
	json_array_begin(&w);
	json_object_begin(&w);
	json_object_end(&w);
	json_array_begin(&w);
	json_array_end(&w);
	json_uint(&w, 0);
	json_array_end(&w);
	json_member_string(&w, "k\"ey", "v");
	json_object_end(&w);
	bool ok = json_finish(&w);
	fclose(out);
	expect(
	    "structure", buf,
	    "{\"max\":18446744073709551615,\"min\":-9223372036854775808,\"yes\":true,\"none\":null,\"list\":[{},[],0],\"k\\\"ey\":\"v\"}\n");
	if (!ok) {
		fprintf(stderr, "FAIL structure: writer reported misuse\n");
		failures++;
	}
	free(buf);
}

static void test_misuse(void)
{
	FILE *out = fopen("/dev/null", "w");
	struct json_writer w;
	json_init(&w, out);
	json_object_begin(&w);
	if (json_finish(&w)) {
		fprintf(stderr, "FAIL misuse: an unclosed object was accepted\n");
		failures++;
	}
	json_init(&w, out);
	json_array_end(&w);
	if (json_finish(&w)) {
		fprintf(stderr, "FAIL misuse: an unopened array end was accepted\n");
		failures++;
	}
	fclose(out);
}

static void test_bounded(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	struct json_writer w;
	json_init(&w, out);
	const char field[4] = {'a', 'b', 'c', 'd'}; /* fills its buffer, no NUL */
	json_string_bounded(&w, field, sizeof(field));
	json_finish(&w);
	fclose(out);
	expect("bounded", buf, "\"abcd\"\n");
	free(buf);
}

int main(void)
{
	test_structure();
	test_misuse();
	test_bounded();
	expect_string("plain", "GPU-1234", "\"GPU-1234\"\n");
	expect_string("quote and backslash", "a\"b\\c", "\"a\\\"b\\\\c\"\n");
	expect_string("named controls", "\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\"\n");
	expect_string("other controls", "\x01\x1f", "\"\\u0001\\u001f\"\n");
	expect_string("slash and DEL pass", "/\x7f", "\"/\x7f\"\n");
	expect_string("two-byte", "caf\xc3\xa9", "\"caf\xc3\xa9\"\n");
	expect_string("four-byte", "\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"\n");
	expect_string("stray continuation", "a\x80z", "\"a\\ufffdz\"\n");
	expect_string("invalid lead", "\xff", "\"\\ufffd\"\n");
	expect_string("truncated", "\xe2\x82", "\"\\ufffd\\ufffd\"\n");
	expect_string("overlong", "\xc0\xaf", "\"\\ufffd\\ufffd\"\n");
	expect_string("overlong three", "\xe0\x80\xaf", "\"\\ufffd\\ufffd\\ufffd\"\n");
	expect_string("surrogate", "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"\n");
	expect_string("past U+10FFFF", "\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\"\n");
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("json writer: all checks passed\n");
	return 0;
}
