// tokenize_bench.c — single-threaded encode throughput of our tokenizer over a JSONL
// corpus ({"text": ...} per line), for benchmarks/tokenize_speed.sh.
//
//   dpo_tokenize_bench --tokenizer DIR --corpus FILE.jsonl [--repeat N]
//
// Every text is encoded once per repeat (the best repeat is reported); the output
// line ends with a SHA-256 of all ids (int32 little-endian, -1 after each text) that
// benchmarks/tokenize_ref.py computes the same way.
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dpo/jsonl.h"
#include "dpo/program.h"
#include "dpo/sha256.h"
#include "dpo/tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *corpus = NULL;
    int repeat = 2;
    dpo_program_set("dpo_tokenize_bench");
    if (argc > 1 && dpo_version_option(argv[1], true)) return 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tokenizer") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--corpus") == 0)
            corpus = argv[i + 1];
        else if (strcmp(argv[i], "--repeat") == 0)
            repeat = atoi(argv[i + 1]);
    }
    if (!dir || !corpus || repeat < 1) {
        fprintf(stderr, "usage: dpo_tokenize_bench --tokenizer DIR --corpus FILE.jsonl [--repeat N]\n"
                        "       dpo_tokenize_bench --version\n");
        return 2;
    }
    char err[1024];
    double t0 = now();
    dpo_tokenizer_t *tok = tokenizer_load(dir, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double load_s = now() - t0;

    jsonl_reader_t r;
    if (jsonl_open(&r, corpus, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    size_t n = 0, cap = 0, nbytes = 0;
    char **texts = NULL;
    size_t *lens = NULL;
    json_t *rec;
    int rc;
    while ((rc = jsonl_next(&r, &rec, err, sizeof err)) == 1) {
        json_t *t = json_object_get(rec, "text");
        if (json_is_string(t)) {
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                texts = realloc(texts, cap * sizeof *texts);
                lens = realloc(lens, cap * sizeof *lens);
                if (!texts || !lens) return 1;
            }
            lens[n] = json_string_length(t);
            texts[n] = malloc(lens[n] + 1);
            if (!texts[n]) return 1;
            memcpy(texts[n], json_string_value(t), lens[n] + 1);
            nbytes += lens[n];
            n++;
        }
        json_decref(rec);
    }
    jsonl_close(&r);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }

    tok_ids_t ids = {0};
    double best = 1e30;
    size_t ntok = 0;
    char hex[65] = "";
    for (int rep = 0; rep < repeat; rep++) {
        sha256_ctx_t h;
        sha256_init(&h);
        double busy = 0;
        ntok = 0;
        for (size_t i = 0; i < n; i++) {
            tok_ids_clear(&ids);
            double a = now();
            if (tokenizer_encode(tok, texts[i], lens[i], &ids, NULL, err, sizeof err) < 0) {
                fprintf(stderr, "text %zu: %s\n", i + 1, err);
                return 1;
            }
            busy += now() - a;
            ntok += ids.len;
            tok_ids_push(&ids, -1);
            sha256_update(&h, ids.ids, ids.len * sizeof *ids.ids);  // little-endian hosts
        }
        uint8_t d[32];
        sha256_final(&h, d);
        for (int k = 0; k < 32; k++) snprintf(hex + 2 * k, 3, "%02x", d[k]);
        if (busy < best) best = busy;
    }
    printf("dpo_hpc %s: %zu texts, %zu bytes, %zu tokens, %.3f s, %.2f MB/s, ids sha256 %s "
           "(load %.2f s)\n",
           dir, n, nbytes, ntok, best, (double)nbytes / best / 1e6, hex, load_s);
    for (size_t i = 0; i < n; i++) free(texts[i]);
    free(texts);
    free(lens);
    tok_ids_free(&ids);
    tokenizer_free(tok);
    return 0;
}
