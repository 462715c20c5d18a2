/* SPDX-License-Identifier: Apache-2.0 */
/* Aligned text tables for the human output: columns are as wide as their
 * widest cell, numbers are right-aligned so that sizes line up. */
#ifndef GPUCAP_CLI_TABLE_H
#define GPUCAP_CLI_TABLE_H

#include <stdbool.h>
#include <stdio.h>

struct cli_table;

/* align: one character per column, 'l' or 'r'. Headers and align must
 * outlive the table. NULL when memory runs out. */
struct cli_table *cli_table_new(unsigned columns, const char *const *headers, const char *align);

/* Copies the cells (columns of them; NULL prints as empty). False when memory
 * runs out; the table stays usable. */
bool cli_table_add_row(struct cli_table *table, const char *const *cells);

/* Leave a column out of the printed table (to fit a narrow terminal). */
void cli_table_hide(struct cli_table *table, unsigned column);

/* The printed width of a row: shown columns and the two blanks between them. */
size_t cli_table_width(const struct cli_table *table);

void cli_table_print(const struct cli_table *table, FILE *out);
void cli_table_free(struct cli_table *table);

#endif
