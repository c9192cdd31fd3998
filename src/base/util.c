// util.c — mkdir -p, same-file checks of outputs against inputs, atomic output files
// (temp + fsync + rename), ISO timestamps.
#define _XOPEN_SOURCE 700  // realpath (XSI)
#include "dpo/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

// ---- atomic output files (util.h) ----

int util_tmp_name(const char *path, char *tmp, size_t tmp_len, char *err, size_t err_len) {
    if (snprintf(tmp, tmp_len, "%s.tmp", path) >= (int)tmp_len) {
        dpo_errf(err, err_len, "%s: path too long", path);
        return -1;
    }
    return 0;
}

// fsync of an open descriptor; EINVAL/EROFS mean the file system cannot sync
// (a pipe, /dev/null, some FUSE mounts), which is no write failure.
static int fsync_fd(int fd) { return fsync(fd) == 0 || errno == EINVAL || errno == EROFS ? 0 : -1; }

int util_fsync_file(const char *path, char *err, size_t err_len) {
    int fd = open(path, O_RDONLY);
    if (fd < 0 || fsync_fd(fd) != 0) {
        dpo_errf(err, err_len, "%s: cannot sync to disk: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

int util_fsync_parent(const char *path, char *err, size_t err_len) {
    char dir[4096];
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;
    if (n >= sizeof dir) n = sizeof dir - 1;
    if (slash && n == 0) n = 1;  // "/file": the root
    memcpy(dir, slash ? path : ".", slash ? n : 1);
    dir[slash ? n : 1] = '\0';
    return util_fsync_file(dir, err, err_len);
}

// rename of a synced tmp over path, then the folder's sync; tmp removed on failure.
static int rename_into_place(const char *tmp, const char *path, char *err, size_t err_len) {
    if (rename(tmp, path) != 0) {
        dpo_errf(err, err_len, "%s: cannot rename %s to it: %s", path, tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return util_fsync_parent(path, err, err_len);
}

int util_commit_tmp(const char *tmp, const char *path, char *err, size_t err_len) {
    if (util_fsync_file(tmp, err, err_len) != 0) {
        unlink(tmp);
        return -1;
    }
    return rename_into_place(tmp, path, err, err_len);
}

static void afile_free(util_afile_t *a) {
    free(a->path);
    free(a->tmp);
    memset(a, 0, sizeof *a);
}

int util_afile_open(util_afile_t *a, const char *path, char *err, size_t err_len) {
    memset(a, 0, sizeof *a);
    size_t n = strlen(path) + 8;
    a->path = xmalloc(n, "output path");
    a->tmp = xmalloc(n, "output path");
    snprintf(a->path, n, "%s", path);
    util_tmp_name(path, a->tmp, n, err, err_len);
    a->f = fopen(a->tmp, "wb");
    if (!a->f) {
        dpo_errf(err, err_len, "%s: cannot create %s: %s", path, a->tmp, strerror(errno));
        afile_free(a);
        return -1;
    }
    return 0;
}

bool util_afile_write(util_afile_t *a, const void *buf, size_t n) {
    if (a->err_no) return false;
    errno = 0;
    if (n > 0 && fwrite(buf, 1, n, a->f) != n) a->err_no = errno ? errno : EIO;
    return a->err_no == 0;
}

bool util_afile_printf(util_afile_t *a, const char *fmt, ...) {
    if (a->err_no) return false;
    va_list ap;
    va_start(ap, fmt);
    errno = 0;
    if (vfprintf(a->f, fmt, ap) < 0) a->err_no = errno ? errno : EIO;
    va_end(ap);
    return a->err_no == 0;
}

int util_afile_commit(util_afile_t *a, char *err, size_t err_len) {
    errno = 0;
    // Writers that print on a->f directly leave their failure in its error flag.
    if (!a->err_no && ferror(a->f)) a->err_no = errno ? errno : EIO;
    if (!a->err_no && fflush(a->f) != 0) a->err_no = errno ? errno : EIO;
    if (!a->err_no && fsync_fd(fileno(a->f)) != 0) a->err_no = errno;
    if (fclose(a->f) != 0 && !a->err_no) a->err_no = errno ? errno : EIO;
    a->f = NULL;
    int rc = 0;
    if (a->err_no) {
        dpo_errf(err, err_len, "%s: write failed: %s", a->path, strerror(a->err_no));
        unlink(a->tmp);
        rc = -1;
    } else {
        rc = rename_into_place(a->tmp, a->path, err, err_len);
    }
    afile_free(a);
    return rc;
}

void util_afile_abort(util_afile_t *a) {
    if (!a->tmp) return;
    if (a->f) fclose(a->f);
    unlink(a->tmp);
    afile_free(a);
}
