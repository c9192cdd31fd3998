// util.h — small file-system and time helpers shared by the I/O modules and the
// trainer.
#ifndef DPO_UTIL_H
#define DPO_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

// mkdir -p: creates dir and its parents. Returns 0, or -1 with a message in err.
int util_mkdir_p(const char *dir, char *err, size_t err_len);
// True when a and b both exist and are one file (same device and inode): another
// spelling of the path, a hard link or a symlink. False when either does not exist.
bool util_same_file(const char *a, const char *b);
// True when the existing directory dir holds path directly (path's directory, as
// spelled or after resolving symlinks, is dir) under a name that begins with prefix
// (NULL: any name).
bool util_dir_holds(const char *dir, const char *path, const char *prefix);

// A file a tool reads, named as the user gave it: what = "--train",
// "data.dataset_path", ...; an input that is a directory (a model or tokenizer
// folder) stands for every file directly in it. NULL or "" paths are skipped.
typedef struct {
    const char *what, *path;
} util_input_t;

// Refuses an output that is any of the inputs (util_same_file, also against the files
// of an input folder) before anything is read or written: returns 0, or -1 with
// "<what> <out> is the same file as <input's what> <input>; refusing to overwrite an
// input" in err. An output that does not exist yet is fine.
int util_check_output(const char *what, const char *out, const util_input_t *in, int n_in,
                      char *err, size_t err_len);
// For a folder the tool replaces or empties (a temporary folder): refuses one that is
// an input folder or holds an input file directly, with "<what> <dir> is/holds ...".
int util_check_output_dir(const char *what, const char *dir, const util_input_t *in, int n_in,
                          char *err, size_t err_len);

// Current UTC time as "YYYY-MM-DDTHH:MM:SSZ".
void util_iso_time(char *buf, size_t n);

// One "--key VALUE" or "--key=VALUE" option at argv[*i]: copies "--key" into key
// and points *val at the value (advancing *i past a separate value). Returns 0,
// -1 when the key does not fit (an unknown option), -2 when the value is missing.
int util_option(int argc, char **argv, int *i, char *key, size_t key_len, char **val);

// A growable NUL-terminated byte string.
typedef struct {
    char *s;
    size_t len, cap;
} dstr_t;

void dstr_clear(dstr_t *b);
void dstr_append(dstr_t *b, const char *s, size_t n);
void dstr_puts(dstr_t *b, const char *s);
void dstr_free(dstr_t *b);

// ---- atomic output files ----
// An output is written to "<path>.tmp" in the same folder and renamed over path
// only once every byte is written, flushed and synced, so a failure (a full disk)
// never leaves a partial file and never touches a previous file at path. Every
// error names the file and the errno text ("No space left on device").

// "<path>.tmp" into tmp. Returns 0, or -1 with a message when it does not fit.
int util_tmp_name(const char *path, char *tmp, size_t tmp_len, char *err, size_t err_len);
// fsync of a file, and of the folder that holds it (so a rename is durable).
int util_fsync_file(const char *path, char *err, size_t err_len);
int util_fsync_parent(const char *path, char *err, size_t err_len);
// Makes a complete tmp the file at path: fsync, rename, fsync of the folder.
// On failure tmp is removed. Returns 0 or -1 with a message.
int util_commit_tmp(const char *tmp, const char *path, char *err, size_t err_len);

// A stdio output written atomically. Writes after the first failure do nothing;
// util_afile_commit reports that failure (the first errno) and removes the temp.
// Code that prints on f directly is covered too: commit checks f's error flag.
typedef struct {
    FILE *f;
    char *path, *tmp;
    int err_no;  // first failure's errno, 0 while fine
} util_afile_t;

int util_afile_open(util_afile_t *a, const char *path, char *err, size_t err_len);
bool util_afile_write(util_afile_t *a, const void *buf, size_t n);
bool util_afile_printf(util_afile_t *a, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
// Flush, fsync, close and rename; on any failure (now or in an earlier write) the
// temp is removed and err names path and the errno text. Frees a in every case.
int util_afile_commit(util_afile_t *a, char *err, size_t err_len);
// Closes and removes the temp (an error elsewhere); path is left as it was.
void util_afile_abort(util_afile_t *a);

#endif
