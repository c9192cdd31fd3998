// jsonl.c — JSON Lines reader (see jsonl.h).
#define _POSIX_C_SOURCE 200809L
#include "dpo/jsonl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "dpo/error.h"

int jsonl_open(jsonl_reader_t *r, const char *path, char *err, size_t err_len) {
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    r->size = -1;
    if (strcmp(path, "-") == 0) {
        r->f = stdin;
    } else {
        r->f = fopen(path, "rb");
        if (!r->f) {
            dpo_errf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
            return -1;
        }
    }
    struct stat st;
    if (fstat(fileno(r->f), &st) == 0 && S_ISREG(st.st_mode)) r->size = (int64_t)st.st_size;
    return 0;
}

void jsonl_close(jsonl_reader_t *r) {
    if (r->f && r->f != stdin) fclose(r->f);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

const char *jsonl_name(const jsonl_reader_t *r) {
    return strcmp(r->path, "-") == 0 ? "<stdin>" : r->path;
}

static int blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

int jsonl_next(jsonl_reader_t *r, json_t **out, char *err, size_t err_len) {
    *out = NULL;
    for (;;) {
        errno = 0;
        ssize_t n = getline(&r->buf, &r->cap, r->f);
        if (n < 0) {
            if (ferror(r->f)) {
                dpo_errf(err, err_len, "%s:%lld: read error: %s", jsonl_name(r),
                         (long long)r->line + 1, strerror(errno ? errno : EIO));
                return -2;
            }
            return 0;
        }
        r->line++;
        r->bytes += n;
        if (blank(r->buf, (size_t)n)) continue;
        json_error_t je;
        // Duplicate keys would make "which value counts" ambiguous: refuse them.
        json_t *v = json_loadb(r->buf, (size_t)n, JSON_REJECT_DUPLICATES, &je);
        if (!v) {
            dpo_errf(err, err_len, "%s:%lld: invalid JSON (column %d): %s", jsonl_name(r),
                     (long long)r->line, je.column, je.text);
            return -1;
        }
        *out = v;
        return 1;
    }
}
