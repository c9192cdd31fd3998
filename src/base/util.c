// util.c — mkdir -p and ISO timestamps.
#include "dpo/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "dpo/error.h"

int util_mkdir_p(const char *dir, char *err, size_t err_len) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        dpo_errf(err, err_len, "%s: directory path too long", dir);
        return -1;
    }
    size_t n = strlen(buf);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) {
            dpo_errf(err, err_len, "%s: cannot create directory: %s", buf, strerror(errno));
            return -1;
        }
        buf[i] = c;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        dpo_errf(err, err_len, "%s: not a directory", dir);
        return -1;
    }
    return 0;
}

void util_iso_time(char *buf, size_t n) {
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

void dstr_clear(dstr_t *b) {
    b->len = 0;
    if (b->s) b->s[0] = '\0';
}

void dstr_append(dstr_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        b->s = xrealloc(b->s, cap, "string buffer");
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void dstr_puts(dstr_t *b, const char *s) { dstr_append(b, s, strlen(s)); }

void dstr_free(dstr_t *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

int util_option(int argc, char **argv, int *i, char *key, size_t key_len, char **val) {
    char *a = argv[*i], *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    if (n >= key_len) return -1;
    memcpy(key, a, n);
    key[n] = '\0';
    if (eq) {
        *val = eq + 1;
        return 0;
    }
    if (*i + 1 >= argc) return -2;
    *val = argv[++*i];
    return 0;
}
