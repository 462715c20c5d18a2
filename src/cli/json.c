/* SPDX-License-Identifier: Apache-2.0 */
#include "json.h"

#include "utf8.h"

#include <inttypes.h>
#include <string.h>

void json_init(struct json_writer *writer, FILE *out)
{
	memset(writer, 0, sizeof(*writer));
	writer->out = out;
}

/* Called before every value: a comma between siblings, none after a key. */
static void before_value(struct json_writer *writer)
{
	if (writer->after_key) {
		writer->after_key = false;
		return;
	}
	if (writer->depth > 0 && writer->has_members[writer->depth - 1])
		fputc(',', writer->out);
	if (writer->depth > 0)
		writer->has_members[writer->depth - 1] = true;
}

static void open_container(struct json_writer *writer, char bracket)
{
	before_value(writer);
	if (writer->depth >= JSON_MAX_DEPTH) {
		writer->misused = true;
		return;
	}
	fputc(bracket, writer->out);
	writer->has_members[writer->depth++] = false;
}

static void close_container(struct json_writer *writer, char bracket)
{
	if (writer->depth == 0 || writer->after_key) {
		writer->misused = true;
		return;
	}
	writer->depth--;
	fputc(bracket, writer->out);
}

void json_object_begin(struct json_writer *writer)
{
	open_container(writer, '{');
}

void json_object_end(struct json_writer *writer)
{
	close_container(writer, '}');
}

void json_array_begin(struct json_writer *writer)
{
	open_container(writer, '[');
}

void json_array_end(struct json_writer *writer)
{
	close_container(writer, ']');
}

static void write_escaped(FILE *out, const unsigned char *s, size_t len)
{
	fputc('"', out);
	size_t i = 0;
	while (i < len) {
		unsigned char c = s[i];
		if (c == '"' || c == '\\') {
			fputc('\\', out);
			fputc(c, out);
			i++;
		} else if (c < 0x20) {
			switch (c) {
			case '\n':
				fputs("\\n", out);
				break;
			case '\r':
				fputs("\\r", out);
				break;
			case '\t':
				fputs("\\t", out);
				break;
			case '\b':
				fputs("\\b", out);
				break;
			case '\f':
				fputs("\\f", out);
				break;
			default:
				fprintf(out, "\\u%04x", (unsigned)c);
				break;
			}
			i++;
		} else if (c < 0x80) {
			fputc(c, out);
			i++;
		} else {
			size_t n = utf8_sequence_length(s + i, len - i);
			if (n == 0) {
				/* JSON text must be UTF-8: a stray byte becomes U+FFFD
				 * rather than making the whole document unreadable. */
				fputs("\\ufffd", out);
				i++;
			} else {
				fwrite(s + i, 1, n, out);
				i += n;
			}
		}
	}
	fputc('"', out);
}

void json_key(struct json_writer *writer, const char *key)
{
	if (writer->depth == 0 || writer->after_key) {
		writer->misused = true;
		return;
	}
	before_value(writer);
	write_escaped(writer->out, (const unsigned char *)key, strlen(key));
	fputc(':', writer->out);
	writer->after_key = true;
}

void json_string(struct json_writer *writer, const char *text)
{
	before_value(writer);
	write_escaped(writer->out, (const unsigned char *)text, strlen(text));
}

void json_string_bounded(struct json_writer *writer, const char *text, size_t max_len)
{
	size_t len = 0;
	while (len < max_len && text[len] != '\0')
		len++;
	before_value(writer);
	write_escaped(writer->out, (const unsigned char *)text, len);
}

void json_uint(struct json_writer *writer, uint64_t value)
{
	before_value(writer);
	fprintf(writer->out, "%" PRIu64, value);
}

void json_int(struct json_writer *writer, int64_t value)
{
	before_value(writer);
	fprintf(writer->out, "%" PRId64, value);
}

void json_bool(struct json_writer *writer, bool value)
{
	before_value(writer);
	fputs(value ? "true" : "false", writer->out);
}

void json_null(struct json_writer *writer)
{
	before_value(writer);
	fputs("null", writer->out);
}

void json_member_string(struct json_writer *writer, const char *key, const char *text)
{
	json_key(writer, key);
	json_string(writer, text);
}

void json_member_uint(struct json_writer *writer, const char *key, uint64_t value)
{
	json_key(writer, key);
	json_uint(writer, value);
}

void json_member_int(struct json_writer *writer, const char *key, int64_t value)
{
	json_key(writer, key);
	json_int(writer, value);
}

void json_member_bool(struct json_writer *writer, const char *key, bool value)
{
	json_key(writer, key);
	json_bool(writer, value);
}

bool json_finish(struct json_writer *writer)
{
	fputc('\n', writer->out);
	return !writer->misused && writer->depth == 0 && !writer->after_key;
}
