/* cli_table.c — the command line's tables for people; see cli_table.h. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_table.h"
#include "tly_assert.h"

void cli_table_init(cli_table *t, const char *align)
{
    *t = (cli_table){.cols = (uint32_t)strlen(align), .align = align};
    TLY_ASSERT(t->cols <= CLI_TABLE_COLS_MAX);
}

void cli_table_add(cli_table *t, const char *const *cells)
{
    if (t->rows == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 16;
        char **c = realloc(t->cells, (size_t)cap * t->cols * sizeof *c);
        if (!c)
            abort();
        t->cells = c;
        t->cap = cap;
    }
    for (uint32_t c = 0; c < t->cols; c++) {
        char *s = strdup(cells[c] ? cells[c] : "");
        if (!s)
            abort();
        t->cells[(size_t)t->rows * t->cols + c] = s;
    }
    t->rows++;
}

void cli_table_row(cli_table *t, ...)
{
    const char *cells[CLI_TABLE_COLS_MAX];
    va_list ap;
    va_start(ap, t);
    for (uint32_t c = 0; c < t->cols; c++)
        cells[c] = va_arg(ap, const char *);
    va_end(ap);
    cli_table_add(t, cells);
}

void cli_table_print(cli_table *t, bool headings)
{
    size_t w[CLI_TABLE_COLS_MAX] = {0}, width = 1;
    for (uint32_t r = 0; r < t->rows; r++)
        for (uint32_t c = 0; c < t->cols; c++) {
            size_t l = strlen(t->cells[(size_t)r * t->cols + c]);
            w[c] = l > w[c] ? l : w[c];
        }
    for (uint32_t c = 0; c < t->cols; c++)
        width += w[c] + 2;
    char *line = malloc(width);
    if (!line)
        abort();
    bool tty = isatty(STDOUT_FILENO) == 1;
    for (uint32_t r = 0; r < t->rows; r++) {
        size_t o = 0;
        for (uint32_t c = 0; c < t->cols; c++) {
            const char *s = t->cells[(size_t)r * t->cols + c];
            size_t l = strlen(s), pad = w[c] - l;
            if (c > 0) {
                memcpy(line + o, "  ", 2);
                o += 2;
            }
            if (t->align[c] == 'r') {
                memset(line + o, ' ', pad);
                o += pad;
            }
            memcpy(line + o, s, l);
            o += l;
            if (t->align[c] != 'r') {
                memset(line + o, ' ', pad);
                o += pad;
            }
        }
        while (o > 0 && line[o - 1] == ' ') /* no padding after the last cell */
            o--;
        line[o] = '\0';
        bool bold = tty && headings && r == 0;
        printf("%s%s%s\n", bold ? "\033[1m" : "", line, bold ? "\033[0m" : "");
    }
    free(line);
    for (uint32_t i = 0; i < t->rows * t->cols; i++)
        free(t->cells[i]);
    free(t->cells);
    *t = (cli_table){0};
}
