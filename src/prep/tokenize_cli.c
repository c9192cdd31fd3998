// tokenize_cli.c — `dpo_prep tokenize` (see tokenize_cli.h).
#include "dpo/tokenize_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/jsonl.h"
#include "dpo/tokenizer.h"

#define PROG "dpo_prep tokenize"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dpo_prep tokenize --tokenizer DIR < in.jsonl > out.jsonl\n"
            "  Reads one JSON object {\"text\": ...} per line and writes {\"ids\": [...]} per line:\n"
            "  the ids of DIR/tokenizer.json without special tokens added, as the Python\n"
            "  tokenizers package's encode(text, add_special_tokens=False) gives them.\n");
}

int tokenize_cli_main(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) {
            dir = argv[++i];
        } else if (strncmp(argv[i], "--tokenizer=", 12) == 0) {
            dir = argv[i] + 12;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, PROG ": unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, PROG ": --tokenizer DIR is required\n");
        usage(stderr);
        return 2;
    }
    char err[1024];
    dpo_tokenizer_t *tok = tokenizer_load(dir, err, sizeof err);
    if (!tok) {
        fprintf(stderr, PROG ": %s\n", err);
        return 1;
    }
    jsonl_reader_t r;
    if (jsonl_open(&r, "-", err, sizeof err) < 0) {
        fprintf(stderr, PROG ": %s\n", err);
        tokenizer_free(tok);
        return 1;
    }
    tok_ids_t ids = {0};
    char *line = NULL;
    size_t cap = 0;
    int status = 0;
    for (;;) {
        json_t *rec;
        int rc = jsonl_next(&r, &rec, err, sizeof err);
        if (rc == 0) break;
        if (rc < 0) {
            fprintf(stderr, PROG ": %s\n", err);
            status = 1;
            break;
        }
        json_t *text = json_is_object(rec) ? json_object_get(rec, "text") : NULL;
        if (!json_is_string(text)) {
            fprintf(stderr, PROG ": %s:%lld: %s\n", jsonl_name(&r), (long long)r.line,
                    !json_is_object(rec) ? "record is not a JSON object"
                    : text               ? "\"text\" is not a string"
                                         : "record has no \"text\"");
            json_decref(rec);
            status = 1;
            break;
        }
        tok_ids_clear(&ids);
        rc = tokenizer_encode(tok, json_string_value(text), json_string_length(text), &ids, NULL,
                              err, sizeof err);
        json_decref(rec);
        if (rc < 0) {
            fprintf(stderr, PROG ": %s:%lld: %s\n", jsonl_name(&r), (long long)r.line, err);
            status = 1;
            break;
        }
        // {"ids": [..]}: at most 11 characters per id plus the frame.
        size_t need = 16 + 12 * ids.len;
        if (need > cap) {
            cap = need * 2;
            line = realloc(line, cap);
            if (!line) {
                fprintf(stderr, PROG ": out of memory\n");
                status = 1;
                break;
            }
        }
        size_t n = 0;
        memcpy(line, "{\"ids\": [", 9);
        n = 9;
        for (size_t i = 0; i < ids.len; i++)
            n += (size_t)snprintf(line + n, cap - n, i ? ", %d" : "%d", (int)ids.ids[i]);
        memcpy(line + n, "]}\n", 3);
        n += 3;
        fwrite(line, 1, n, stdout);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": error writing the output\n");
        status = 1;
    }
    free(line);
    tok_ids_free(&ids);
    jsonl_close(&r);
    tokenizer_free(tok);
    return status;
}
