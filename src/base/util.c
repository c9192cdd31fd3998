// util.c — mkdir -p, same-file checks of outputs against inputs, ISO timestamps.
#define _XOPEN_SOURCE 700  // realpath (XSI)
#include "dpo/util.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
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

static bool stat_path(const char *p, struct stat *st) {
    return p && p[0] && stat(p, st) == 0;
}

static bool same_stat(const struct stat *a, const struct stat *b) {
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino;
}

bool util_same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return stat_path(a, &sa) && stat_path(b, &sb) && same_stat(&sa, &sb);
}

// The directory part of path ("." when it has none) into buf.
static void dir_part(const char *path, char *buf, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, n, ".");
    else if (slash == path) snprintf(buf, n, "/");
    else snprintf(buf, n, "%.*s", (int)(slash - path), path);
}

// True when name's directory part is the directory sd and its last part begins with prefix.
static bool named_in(const struct stat *sd, const char *name, const char *prefix) {
    char parent[PATH_MAX + 1];
    struct stat sp;
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (prefix && strncmp(base, prefix, strlen(prefix)) != 0) return false;
    dir_part(name, parent, sizeof parent);
    return stat(parent, &sp) == 0 && same_stat(sd, &sp);
}

bool util_dir_holds(const char *dir, const char *path, const char *prefix) {
    struct stat sd;
    if (!stat_path(dir, &sd) || !S_ISDIR(sd.st_mode) || !path || !path[0]) return false;
    if (named_in(&sd, path, prefix)) return true;  // the name in dir
    char real[PATH_MAX];
    return realpath(path, real) && named_in(&sd, real, prefix);  // or its target
}

// The input (or, for an input folder, the file directly in it) that is the file o;
// its path into hit. False when none is.
static bool input_is(const struct stat *o, const char *in, char *hit, size_t hit_len) {
    struct stat si;
    if (!stat_path(in, &si)) return false;
    if (same_stat(o, &si)) {
        snprintf(hit, hit_len, "%s", in);
        return true;
    }
    if (!S_ISDIR(si.st_mode)) return false;
    DIR *d = opendir(in);
    if (!d) return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(hit, hit_len, "%s/%s", in, e->d_name);
        struct stat se;
        found = stat(hit, &se) == 0 && same_stat(o, &se);
    }
    closedir(d);
    return found;
}

int util_check_output(const char *what, const char *out, const util_input_t *in, int n_in,
                      char *err, size_t err_len) {
    struct stat so;
    if (!stat_path(out, &so)) return 0;  // not there yet: cannot be an input
    char hit[PATH_MAX + 256];
    for (int i = 0; i < n_in; i++)
        if (input_is(&so, in[i].path, hit, sizeof hit)) {
            dpo_errf(err, err_len, "%s %s is the same file as %s %s; refusing to overwrite an input",
                     what, out, in[i].what, hit);
            return -1;
        }
    return 0;
}

int util_check_output_dir(const char *what, const char *dir, const util_input_t *in, int n_in,
                          char *err, size_t err_len) {
    if (util_check_output(what, dir, in, n_in, err, err_len) != 0) return -1;
    for (int i = 0; i < n_in; i++)
        if (util_dir_holds(dir, in[i].path, NULL)) {
            dpo_errf(err, err_len, "%s %s holds %s %s; refusing to replace a folder with an input",
                     what, dir, in[i].what, in[i].path);
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
