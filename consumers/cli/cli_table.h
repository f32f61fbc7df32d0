/*
 * cli_table.h — the tables the partner views and the finance commands
 * print for people: columns sized to their widest cell, numbers
 * right-aligned, two spaces between columns, no padding after the last
 * cell, the headings bold only on a terminal.
 */
#ifndef TLY_CLI_TABLE_H
#define TLY_CLI_TABLE_H

#include <stdbool.h>
#include <stdint.h>

/* Columns of the widest table (the finance report: period, status and ten
 * figures). */
#define CLI_TABLE_COLS_MAX 12u

typedef struct cli_table {
    uint32_t cols;
    const char *align; /* 'l' or 'r' per column */
    char **cells;      /* rows * cols strings, row 0 the headings */
    uint32_t rows;
    uint32_t cap;
} cli_table;

/* A table of strlen(align) columns (at most CLI_TABLE_COLS_MAX), each 'l'
 * or 'r'; align must outlive the table. */
void cli_table_init(cli_table *t, const char *align);

/* Adds a row of cells[0..t->cols), copied; NULL is an empty cell. Rows
 * are bounded by the reply they come from, which is bounded by the frame
 * size; out of memory aborts. */
void cli_table_add(cli_table *t, const char *const *cells);

/* cli_table_add of t->cols variadic strings (const char *). */
void cli_table_row(cli_table *t, ...);

/* Prints the table to stdout and frees it; the first row in bold on a
 * terminal when headings. */
void cli_table_print(cli_table *t, bool headings);

#endif
