// jsonl.h — streaming reader for JSON Lines files (dpo_prep, dpo_pairs). One record
// per line, parsed with jansson (which also rejects invalid UTF-8); errors name
// file:line. Memory stays at one line however large the file is.
#ifndef DPO_JSONL_H
#define DPO_JSONL_H

#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

typedef struct {
    char path[1024];   // as given; "-" reads stdin (shown as "<stdin>")
    FILE *f;
    int64_t line;      // 1-based number of the line last returned
    int64_t bytes;     // bytes consumed so far (for progress)
    int64_t size;      // file size in bytes, or -1 when unknown (pipes)
    char *buf;         // current line (getline buffer)
    size_t cap;
} jsonl_reader_t;

// Opens `path` ("-" for stdin). Returns 0, or -1 with a message.
int jsonl_open(jsonl_reader_t *r, const char *path, char *err, size_t err_len);
void jsonl_close(jsonl_reader_t *r);

// Reads the next non-blank line. Returns 1 with *out set (caller json_decref's it),
// 0 at end of file, -1 when the line is not valid JSON (message "file:line: ...";
// the reader stays usable, so callers may skip the record and go on), -2 on an I/O
// error (stop).
int jsonl_next(jsonl_reader_t *r, json_t **out, char *err, size_t err_len);

// Display name: the path, or "<stdin>".
const char *jsonl_name(const jsonl_reader_t *r);

#endif
