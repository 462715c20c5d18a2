/* SPDX-License-Identifier: Apache-2.0 */
#define _POSIX_C_SOURCE 200809L

#include "table.h"

#include <stdlib.h>
#include <string.h>

struct cli_table {
	unsigned columns;
	const char *const *headers;
	const char *align;
	size_t *widths;
	bool *hidden;
	char **cells; /* rows * columns, row-major */
	size_t rows;
	size_t capacity;
};

/* Display width: count UTF-8 lead bytes so that a non-ASCII process name
 * does not push the following columns out of line. */
static size_t display_width(const char *text)
{
	size_t width = 0;
	for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
		if ((*p & 0xC0) != 0x80)
			width++;
	}
	return width;
}

struct cli_table *cli_table_new(unsigned columns, const char *const *headers, const char *align)
{
	struct cli_table *table = calloc(1, sizeof(*table));
	if (!table)
		return NULL;
	table->widths = calloc(columns, sizeof(*table->widths));
	table->hidden = calloc(columns, sizeof(*table->hidden));
	if (!table->widths || !table->hidden) {
		free(table->widths);
		free(table->hidden);
		free(table);
		return NULL;
	}
	table->columns = columns;
	table->headers = headers;
	table->align = align;
	for (unsigned c = 0; c < columns; c++)
		table->widths[c] = display_width(headers[c]);
	return table;
}

bool cli_table_add_row(struct cli_table *table, const char *const *cells)
{
	if (table->rows == table->capacity) {
		size_t capacity = table->capacity ? table->capacity * 2 : 8;
		char **grown = realloc(table->cells, capacity * table->columns * sizeof(*grown));
		if (!grown)
			return false;
		table->cells = grown;
		table->capacity = capacity;
	}
	char **row = table->cells + table->rows * table->columns;
	for (unsigned c = 0; c < table->columns; c++) {
		row[c] = strdup(cells[c] ? cells[c] : "");
		if (!row[c]) {
			while (c-- > 0)
				free(row[c]);
			return false;
		}
	}
	for (unsigned c = 0; c < table->columns; c++) {
		size_t width = display_width(row[c]);
		if (width > table->widths[c])
			table->widths[c] = width;
	}
	table->rows++;
	return true;
}

void cli_table_hide(struct cli_table *table, unsigned column)
{
	if (column < table->columns)
		table->hidden[column] = true;
}

size_t cli_table_width(const struct cli_table *table)
{
	size_t width = 0;
	for (unsigned c = 0; c < table->columns; c++) {
		if (!table->hidden[c])
			width += (width ? 2 : 0) + table->widths[c];
	}
	return width;
}

static void print_row(const struct cli_table *table, const char *const *cells, FILE *out)
{
	unsigned last_shown = 0;
	for (unsigned c = 0; c < table->columns; c++) {
		if (!table->hidden[c])
			last_shown = c;
	}
	for (unsigned c = 0; c < table->columns; c++) {
		if (table->hidden[c])
			continue;
		size_t pad = table->widths[c] - display_width(cells[c]);
		bool last = c == last_shown;
		if (table->align[c] == 'r') {
			fprintf(out, "%*s%s", (int)pad, "", cells[c]);
		} else {
			fputs(cells[c], out);
			/* No trailing blanks after the last column. */
			if (!last)
				fprintf(out, "%*s", (int)pad, "");
		}
		fputs(last ? "\n" : "  ", out);
	}
}

void cli_table_print(const struct cli_table *table, FILE *out)
{
	print_row(table, table->headers, out);
	for (size_t r = 0; r < table->rows; r++)
		print_row(table, (const char *const *)(table->cells + r * table->columns), out);
}

void cli_table_free(struct cli_table *table)
{
	if (!table)
		return;
	for (size_t i = 0; i < table->rows * table->columns; i++)
		free(table->cells[i]);
	free(table->cells);
	free(table->widths);
	free(table->hidden);
	free(table);
}
