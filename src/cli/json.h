/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal streaming JSON writer for the CLI's --json output: it keeps track
 * of commas and nesting, and escapes strings so that any bytes (process
 * names, file paths) come out as valid JSON text in UTF-8. */
#ifndef GPUCAP_CLI_JSON_H
#define GPUCAP_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 32

struct json_writer {
	FILE *out;
	unsigned depth;
	bool has_members[JSON_MAX_DEPTH]; /* per level: a comma is due before the next value */
	bool after_key;
	bool misused; /* unbalanced or too deep: a bug in the caller */
};

void json_init(struct json_writer *writer, FILE *out);

void json_object_begin(struct json_writer *writer);
void json_object_end(struct json_writer *writer);
void json_array_begin(struct json_writer *writer);
void json_array_end(struct json_writer *writer);

/* The key of the next member of the current object. */
void json_key(struct json_writer *writer, const char *key);

void json_string(struct json_writer *writer, const char *text);
/* A string of at most max_len bytes, stopping at the first NUL: for fixed-size
 * fields that may fill their buffer. */
void json_string_bounded(struct json_writer *writer, const char *text, size_t max_len);
void json_uint(struct json_writer *writer, uint64_t value);
void json_int(struct json_writer *writer, int64_t value);
void json_bool(struct json_writer *writer, bool value);
void json_null(struct json_writer *writer);

/* Shorthands for "key": value members. */
void json_member_string(struct json_writer *writer, const char *key, const char *text);
void json_member_uint(struct json_writer *writer, const char *key, uint64_t value);
void json_member_int(struct json_writer *writer, const char *key, int64_t value);
void json_member_bool(struct json_writer *writer, const char *key, bool value);

/* Ends the document with a newline. False when nesting was unbalanced. */
bool json_finish(struct json_writer *writer);

#endif
