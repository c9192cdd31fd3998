// prep_check.c — compares a dataset written by dpo_prep with reference ids made by
// Hugging Face tokenizers + Jinja chat templates (tests/fixtures/gen_prep_expected.py).
//
//   prep_check DATASET.h5 SPLIT EXPECTED.jsonl TOKENIZER_DIR INPUT [INPUT...]
// The split's pairs must equal, in order, the expected records whose "input" is one
// of INPUT: token ids, completion starts; decode(ids) must equal HF's decode and,
// where HF's decode gives back the rendered chat text, that text (round trip).
// Also checks that the prompt ids are the same in the chosen and rejected sequence
// when both have the same prompt messages.
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/dataset.h"
#include "dpo/jsonl.h"
#include "dpo/tokenizer.h"
#include "testutil.h"

static int32_t *read_seq(hid_t dset, int64_t off, int64_t n) {
    int32_t *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof *buf);
    hid_t fs = H5Dget_space(dset);
    hsize_t start = (hsize_t)off, count = (hsize_t)n;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    hid_t ms = H5Screate_simple(1, &count, NULL);
    if (H5Dread(dset, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, buf) < 0) {
        test_fail(__FILE__, __LINE__, "reading %lld tokens at %lld failed", (long long)n, (long long)off);
    }
    H5Sclose(ms);
    H5Sclose(fs);
    return buf;
}

static bool wanted(const char *input, char **inputs, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(input, inputs[i]) == 0) return true;
    return false;
}

static void check_side(dpo_tokenizer_t *tok, const char *where, const char *side, json_t *exp,
                       const int32_t *ids, int64_t n, int start) {
    char key[64];
    snprintf(key, sizeof key, "%s_start", side);
    json_t *ev = json_object_get(exp, side);
    int64_t en = (int64_t)json_array_size(ev);
    if (n != en) {
        test_fail(__FILE__, __LINE__, "%s %s: %lld tokens, expected %lld", where, side, (long long)n,
                  (long long)en);
        return;
    }
    for (int64_t i = 0; i < n; i++) {
        int32_t e = (int32_t)json_integer_value(json_array_get(ev, (size_t)i));
        if (ids[i] != e) {
            test_fail(__FILE__, __LINE__, "%s %s: token %lld is %d, expected %d", where, side,
                      (long long)i, ids[i], e);
            return;
        }
    }
    int es = (int)json_integer_value(json_object_get(exp, key));
    if (start != es)
        test_fail(__FILE__, __LINE__, "%s %s: completion starts at %d, expected %d", where, side,
                  start, es);
    char err[512];
    size_t dl = 0;
    char *dec = tokenizer_decode(tok, ids, (size_t)n, &dl, err, sizeof err);
    if (!dec) {
        test_fail(__FILE__, __LINE__, "%s %s: decode failed: %s", where, side, err);
        return;
    }
    snprintf(key, sizeof key, "%s_decoded", side);
    const char *hf = json_string_value(json_object_get(exp, key));
    snprintf(key, sizeof key, "%s_text", side);
    const char *text = json_string_value(json_object_get(exp, key));
    if (strcmp(dec, hf) != 0)
        test_fail(__FILE__, __LINE__, "%s %s: decode differs from HF's:\n ours %s\n hf   %s", where,
                  side, dec, hf);
    if (strcmp(hf, text) == 0 && strcmp(dec, text) != 0)
        test_fail(__FILE__, __LINE__, "%s %s: round trip: decode is not the rendered text", where, side);
    free(dec);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    if (argc < 6) {
        fprintf(stderr, "usage: prep_check DATASET SPLIT EXPECTED TOKENIZER INPUT...\n");
        return 2;
    }
    char err[1024];
    dpo_tokenizer_t *tok = tokenizer_load(argv[4], err, sizeof err);
    if (!tok) {
        fprintf(stderr, "prep_check: %s\n", err);
        return 1;
    }
    dpo_dataset_t ds;
    if (dataset_open(&ds, argv[1], MPI_COMM_SELF, err, sizeof err) < 0) {
        fprintf(stderr, "prep_check: %s\n", err);
        return 1;
    }
    dpo_split_t *s = &ds.train;
    if (strcmp(argv[2], "train") != 0) {
        s = NULL;
        for (int i = 0; i < ds.n_val; i++)
            if (strcmp(ds.val[i].name, argv[2]) == 0) s = &ds.val[i];
    }
    if (!s) {
        fprintf(stderr, "prep_check: no split %s\n", argv[2]);
        return 1;
    }
    jsonl_reader_t r;
    if (jsonl_open(&r, argv[3], err, sizeof err) < 0) {
        fprintf(stderr, "prep_check: %s\n", err);
        return 1;
    }
    int64_t pair = 0;
    json_t *exp;
    while (jsonl_next(&r, &exp, err, sizeof err) == 1) {
        const char *input = json_string_value(json_object_get(exp, "input"));
        if (!wanted(input, argv + 5, argc - 5)) {
            json_decref(exp);
            continue;
        }
        char where[256];
        snprintf(where, sizeof where, "%s:%lld (pair %lld)", input,
                 (long long)json_integer_value(json_object_get(exp, "line")), (long long)pair);
        if (pair >= s->n_pairs) {
            test_fail(__FILE__, __LINE__, "%s: the dataset has only %lld pairs", where, (long long)s->n_pairs);
            json_decref(exp);
            break;
        }
        int64_t co = s->chosen_offsets[pair], cn = s->chosen_offsets[pair + 1] - co;
        int64_t ro = s->rejected_offsets[pair], rn = s->rejected_offsets[pair + 1] - ro;
        int32_t *c = read_seq(s->chosen_tokens, co, cn), *rj = read_seq(s->rejected_tokens, ro, rn);
        check_side(tok, where, "chosen", exp, c, cn, s->chosen_comp_start[pair]);
        check_side(tok, where, "rejected", exp, rj, rn, s->rejected_comp_start[pair]);
        // The shared prompt is tokenised once: identical ids on both sides.
        int pc = s->chosen_comp_start[pair], pr = s->rejected_comp_start[pair];
        if (pc == pr && memcmp(c, rj, (size_t)pc * sizeof *c) != 0)
            test_fail(__FILE__, __LINE__, "%s: prompt ids differ between chosen and rejected", where);
        free(c);
        free(rj);
        json_decref(exp);
        pair++;
    }
    if (pair != s->n_pairs)
        test_fail(__FILE__, __LINE__, "split %s has %lld pairs, expected %lld", argv[2],
                  (long long)s->n_pairs, (long long)pair);
    jsonl_close(&r);
    dataset_close(&ds);
    tokenizer_free(tok);
    int rc = test_finish("prep_check");
    MPI_Finalize();
    return rc;
}
