// test_dataset.c — the HDF5 preference dataset: writer, validating parallel reader,
// reference log-prob storage, and (with --demo PROGRAM) the demo data generator.
//
// Any number of ranks: rank 0 writes every file, then all ranks open and read
// (the reader is collective over MPI_COMM_WORLD).
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dpo/comm.h"
#include "dpo/batch.h"
#include "dpo/dataset.h"
#include "dpo/error.h"
#include "testutil.h"

#define VOCAB 300
static int g_rank, g_size;
static char g_prefix[64];

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void path_of(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s.%s.h5", g_prefix, name);
}

// ---- deterministic synthetic pairs ----

typedef struct {
    const char *name;
    int n_pairs;
    int salt;
} split_spec_t;

// Written in this order; the reader must list validation sets sorted by name.
static const split_spec_t g_splits[] = {{"train", 57, 1}, {"beta", 3, 2}, {"alpha", 40, 3}};
#define N_SPLITS 3

static int seq_len(int salt, int64_t i, int side) { return 2 + (int)((i * 7 + salt * 3 + side * 5) % 13); }
static int seq_cs(int salt, int64_t i, int side) {
    int len = seq_len(salt, i, side);
    return 1 + (int)((i + salt + side) % (len - 1));
}
static int32_t seq_tok(int salt, int64_t i, int side, int j) {
    return (int32_t)((i * 31 + j * 17 + salt * 101 + side * 7) % VOCAB);
}
static void make_seq(int salt, int64_t i, int side, int32_t *t, int *len, int *cs) {
    *len = seq_len(salt, i, side);
    *cs = seq_cs(salt, i, side);
    for (int j = 0; j < *len; j++) t[j] = seq_tok(salt, i, side, j);
}

static const split_spec_t *spec_of(const char *name) {
    for (int k = 0; k < N_SPLITS; k++)
        if (strcmp(g_splits[k].name, name) == 0) return &g_splits[k];
    return NULL;
}

static int write_small(const char *path, char *err, size_t err_len) {
    dataset_meta_t meta = {.vocab_size = VOCAB, .tokenizer = "test-tokenizer-v1",
                           .provenance = "test_dataset synthetic pairs"};
    dataset_writer_t *w = dataset_writer_create(path, &meta, err, err_len);
    if (!w) return -1;
    int32_t c[32], r[32];
    for (int k = 0; k < N_SPLITS; k++) {
        const split_spec_t *s = &g_splits[k];
        CHECK(dataset_writer_begin_split(w, s->name) == 0);
        for (int64_t i = 0; i < s->n_pairs; i++) {
            int lc, cc, lr, cr;
            make_seq(s->salt, i, 0, c, &lc, &cc);
            make_seq(s->salt, i, 1, r, &lr, &cr);
            CHECK(dataset_writer_add_pair(w, c, lc, cc, r, lr, cr) == 0);
        }
        CHECK(dataset_writer_split_attr(w, "dropped_too_long", 10 + k) == 0);
    }
    return dataset_writer_commit(w, err, err_len);
}

// ---- checks of an open dataset ----

static void check_split_contents(dpo_dataset_t *ds, const dpo_split_t *s) {
    const split_spec_t *spec = spec_of(s->name);
    CHECK(spec != NULL);
    if (!spec) return;
    CHECK(s->n_pairs == spec->n_pairs);
    int longest = 0;
    for (int64_t i = 0; i < s->n_pairs; i++) {
        CHECK(s->chosen_offsets[i + 1] - s->chosen_offsets[i] == seq_len(spec->salt, i, 0));
        CHECK(s->rejected_offsets[i + 1] - s->rejected_offsets[i] == seq_len(spec->salt, i, 1));
        CHECK(s->chosen_comp_start[i] == seq_cs(spec->salt, i, 0));
        CHECK(s->rejected_comp_start[i] == seq_cs(spec->salt, i, 1));
        CHECK(dataset_pair_tokens(s, i) == seq_len(spec->salt, i, 0) + seq_len(spec->salt, i, 1));
        for (int side = 0; side < 2; side++)
            if (seq_len(spec->salt, i, side) > longest) longest = seq_len(spec->salt, i, side);
    }
    CHECK(dataset_max_seq_len(s) == longest);

    // every pair, in a scrambled order, through batches of up to 5 pairs
    dpo_batch_t b;
    batch_alloc(&b, 5, 5 * 2 * 16);
    int64_t P = s->n_pairs;
    for (int64_t start = 0; start < P; start += 5) {
        int n = (int)(P - start < 5 ? P - start : 5);
        int64_t idx[5];
        for (int k = 0; k < n; k++) idx[k] = ((start + k) * 13 + 5) % P;
        char err[1024];
        int rc = dataset_read_batch(ds, s, idx, n, &b, err, sizeof err);
        CHECK(rc == 0);
        if (rc != 0) {
            fprintf(stderr, "%s\n", err);
            break;
        }
        CHECK(b.n_pairs == n);
        CHECK(b.n_seq == 2 * n);
        CHECK(b.has_ref == s->has_ref);
        int pos = 0;
        for (int k = 0; k < n; k++) {
            CHECK(b.pair_index[k] == idx[k]);
            for (int side = 0; side < 2; side++) {
                int sq = 2 * k + side;
                int len = seq_len(spec->salt, idx[k], side);
                CHECK(b.cu_seqlens[sq] == pos);
                CHECK(b.cu_seqlens[sq + 1] == pos + len);
                CHECK(b.comp_start[sq] == seq_cs(spec->salt, idx[k], side));
                for (int j = 0; j < len; j++) {
                    if (b.tokens[pos + j] != seq_tok(spec->salt, idx[k], side, j)) {
                        test_fail(__FILE__, __LINE__, "%s pair %lld side %d token %d: %d != %d",
                                  s->group_path, (long long)idx[k], side, j, b.tokens[pos + j],
                                  seq_tok(spec->salt, idx[k], side, j));
                    }
                }
                if (s->has_ref) {
                    float want = side == 0 ? s->ref_chosen[idx[k]] : s->ref_rejected[idx[k]];
                    CHECK(b.ref_logps[sq] == want);
                }
                pos += len;
            }
        }
        CHECK(b.n_tokens == pos);
    }
    // capacity errors
    {
        char err[1024] = "";
        int64_t idx[2] = {0, 1};
        dpo_batch_t small;
        batch_alloc(&small, 1, 1000);
        CHECK(dataset_read_batch(ds, s, idx, 2, &small, err, sizeof err) == -1);
        CHECK(strstr(err, "capacity") != NULL);
        batch_free(&small);
        batch_alloc(&small, 2, 3);
        CHECK(dataset_read_batch(ds, s, idx, 2, &small, err, sizeof err) == -1);
        CHECK(strstr(err, "tokens") != NULL);
        batch_free(&small);
        int64_t bad = s->n_pairs;
        CHECK(dataset_read_batch(ds, s, &bad, 1, &b, err, sizeof err) == -1);
        CHECK(strstr(err, "out of range") != NULL);
    }
    batch_free(&b);
}

static void test_roundtrip(const char *path) {
    dpo_dataset_t ds;
    char err[1024];
    int rc = dataset_open(&ds, path, MPI_COMM_WORLD, err, sizeof err);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", err);
        return;
    }
    CHECK(ds.vocab_size == VOCAB);
    CHECK(strcmp(ds.tokenizer, "test-tokenizer-v1") == 0);
    CHECK(ds.reference_model[0] == 0);
    CHECK(strcmp(ds.train.name, "train") == 0);
    CHECK(strcmp(ds.train.group_path, "/train") == 0);
    CHECK(ds.n_val == 2);
    if (ds.n_val == 2) {
        CHECK(strcmp(ds.val[0].name, "alpha") == 0);
        CHECK(strcmp(ds.val[0].group_path, "/val/alpha") == 0);
        CHECK(strcmp(ds.val[1].name, "beta") == 0);
    }
    check_split_contents(&ds, &ds.train);
    for (int i = 0; i < ds.n_val; i++) check_split_contents(&ds, &ds.val[i]);
    CHECK(!ds.train.has_ref);
    dataset_close(&ds);
}

// ---- corrupted files ----

typedef void (*corrupt_fn)(hid_t f);

static void write_i64_at(hid_t f, const char *dpath, hsize_t at, int64_t v) {
    hid_t d = H5Dopen2(f, dpath, H5P_DEFAULT);
    hid_t fsp = H5Dget_space(d);
    hsize_t one = 1;
    hid_t msp = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &at, NULL, &one, NULL);
    CHECK(H5Dwrite(d, H5T_NATIVE_INT64, msp, fsp, H5P_DEFAULT, &v) >= 0);
    H5Sclose(msp);
    H5Sclose(fsp);
    H5Dclose(d);
}
static int64_t read_i64_at(hid_t f, const char *dpath, hsize_t at) {
    int64_t v = 0;
    hid_t d = H5Dopen2(f, dpath, H5P_DEFAULT);
    hid_t fsp = H5Dget_space(d);
    hsize_t one = 1;
    hid_t msp = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &at, NULL, &one, NULL);
    H5Dread(d, H5T_NATIVE_INT64, msp, fsp, H5P_DEFAULT, &v);
    H5Sclose(msp);
    H5Sclose(fsp);
    H5Dclose(d);
    return v;
}

static void set_str_attr(hid_t obj, const char *name, const char *val) {
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(val) + 1);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, val);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

static void c_format(hid_t f) { set_str_attr(f, "format", "someone.elses_format"); }
static void c_version(hid_t f) {
    int v = 2;
    hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT, &v);
    H5Aclose(a);
}
static void c_monotone(hid_t f) {
    write_i64_at(f, "/train/chosen_offsets", 3, read_i64_at(f, "/train/chosen_offsets", 4) + 1);
}
static void c_last_offset(hid_t f) {
    write_i64_at(f, "/val/beta/rejected_offsets", 3,
                 read_i64_at(f, "/val/beta/rejected_offsets", 3) + 1);
}
static void c_vocab(hid_t f) { write_i64_at(f, "/val/alpha/rejected_tokens", 5, VOCAB + 3); }
static void c_negative_token(hid_t f) { write_i64_at(f, "/train/chosen_tokens", 113, -1); }
// two problems in blocks that different ranks scan: the earliest one is reported
static void c_two_bad(hid_t f) {
    write_i64_at(f, "/train/rejected_tokens", 40, VOCAB);
    write_i64_at(f, "/train/rejected_tokens", 20, VOCAB + 1);
}
static void c_comp_zero(hid_t f) { write_i64_at(f, "/train/chosen_completion_start", 1, 0); }
static void c_comp_end(hid_t f) {
    int64_t len = read_i64_at(f, "/train/rejected_offsets", 8) - read_i64_at(f, "/train/rejected_offsets", 7);
    write_i64_at(f, "/train/rejected_completion_start", 7, len);
}
static void c_no_train(hid_t f) { H5Ldelete(f, "train", H5P_DEFAULT); }
static void c_missing_array(hid_t f) { H5Ldelete(f, "/val/alpha/chosen_offsets", H5P_DEFAULT); }
static void c_one_ref(hid_t f) {
    hsize_t n = 57;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "/train/reference_logps_chosen", H5T_IEEE_F32LE, sp, H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
}
static void c_n_pairs_attr(hid_t f) {
    hid_t g = H5Gopen2(f, "/val/alpha", H5P_DEFAULT);
    hid_t a = H5Aopen(g, "n_pairs", H5P_DEFAULT);
    int64_t v = 41;
    H5Awrite(a, H5T_NATIVE_INT64, &v);
    H5Aclose(a);
    H5Gclose(g);
}

typedef struct {
    const char *name;
    corrupt_fn fn;
    const char *want1, *want2;  // substrings the message must contain
} corruption_t;

static const corruption_t g_corruptions[] = {
    {"format", c_format, "attribute format", "someone.elses_format"},
    {"version", c_version, "format_version 2", "newer"},
    {"monotone", c_monotone, "/train/chosen_offsets", "not monotone at pair 3"},
    {"last_offset", c_last_offset, "/val/beta/rejected_offsets", "last offset"},
    {"vocab", c_vocab, "/val/alpha/rejected_tokens", "token 303 at position 5"},
    {"negative", c_negative_token, "/train/chosen_tokens", "token -1 at position 113"},
    {"two_bad", c_two_bad, "/train/rejected_tokens", "token 301 at position 20"},
    {"comp_zero", c_comp_zero, "/train/chosen_completion_start", "pair 1 has no prompt token"},
    {"comp_end", c_comp_end, "/train/rejected_completion_start", "pair 7 has no completion token"},
    {"no_train", c_no_train, "/train", "missing"},
    {"missing_array", c_missing_array, "/val/alpha/chosen_offsets", "missing"},
    {"one_ref", c_one_ref, "/train/reference_logps_rejected", "both sides"},
    {"n_pairs_attr", c_n_pairs_attr, "/val/alpha", "n_pairs = 41"},
};
#define N_CORRUPT (int)(sizeof g_corruptions / sizeof g_corruptions[0])

static void make_corrupted(void) {
    char err[1024];
    for (int i = 0; i < N_CORRUPT; i++) {
        char p[256], name[64];
        snprintf(name, sizeof name, "bad_%s", g_corruptions[i].name);
        path_of(p, sizeof p, name);
        if (write_small(p, err, sizeof err) != 0) {
            test_fail(__FILE__, __LINE__, "write %s: %s", p, err);
            continue;
        }
        hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
        CHECK(f >= 0);
        g_corruptions[i].fn(f);
        H5Fclose(f);
    }
    char p[256];
    path_of(p, sizeof p, "bad_not_hdf5");
    FILE *fp = fopen(p, "w");
    fprintf(fp, "chosen,rejected\nhello,world\n");
    fclose(fp);
}

static void expect_open_fails(const char *path, const char *want1, const char *want2) {
    dpo_dataset_t ds;
    char err[1024] = "";
    int rc = dataset_open(&ds, path, MPI_COMM_WORLD, err, sizeof err);
    CHECK(rc == -1);
    if (rc == 0) {
        dataset_close(&ds);
        test_fail(__FILE__, __LINE__, "%s opened although corrupted", path);
        return;
    }
    bool ok = strstr(err, path) && strstr(err, want1) && (!want2 || strstr(err, want2));
    if (!ok)
        test_fail(__FILE__, __LINE__, "%s: message \"%s\" lacks \"%s\" / \"%s\"", path, err, want1,
                  want2 ? want2 : "");
    else if (g_rank == 0)
        printf("  rejected as expected: %s\n", err);
    CHECK(ds.file < 0 && ds.val == NULL && ds.train.chosen_offsets == NULL);
}

static void test_corrupted(void) {
    for (int i = 0; i < N_CORRUPT; i++) {
        char p[256], name[64];
        snprintf(name, sizeof name, "bad_%s", g_corruptions[i].name);
        path_of(p, sizeof p, name);
        expect_open_fails(p, g_corruptions[i].want1, g_corruptions[i].want2);
    }
    char p[256];
    path_of(p, sizeof p, "bad_not_hdf5");
    expect_open_fails(p, "not an HDF5 file", NULL);
    path_of(p, sizeof p, "does_not_exist");
    expect_open_fails(p, "No such file", NULL);
}

// ---- writer failure modes (rank 0 only) ----

static void test_writer_failures(void) {
    char p[256], tmp[300], err[1024];
    dataset_meta_t meta = {.vocab_size = VOCAB, .tokenizer = "t", .provenance = "p"};
    int32_t c[4] = {1, 2, 3, 4}, r[4] = {1, 2, 5, 6};

    // abort leaves nothing behind
    path_of(p, sizeof p, "aborted");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    dataset_writer_t *w = dataset_writer_create(p, &meta, err, sizeof err);
    CHECK(w != NULL);
    CHECK(file_exists(tmp));
    CHECK(dataset_writer_begin_split(w, "train") == 0);
    for (int i = 0; i < 100; i++) CHECK(dataset_writer_add_pair(w, c, 4, 2, r, 4, 2) == 0);
    dataset_writer_abort(w);
    CHECK(!file_exists(p));
    CHECK(!file_exists(tmp));

    // invalid pairs are refused without spoiling the file
    path_of(p, sizeof p, "refused_pairs");
    w = dataset_writer_create(p, &meta, err, sizeof err);
    CHECK(dataset_writer_begin_split(w, "train") == 0);
    int32_t bad[4] = {1, 2, VOCAB, 4};
    CHECK(dataset_writer_add_pair(w, bad, 4, 2, r, 4, 2) == -1);
    CHECK(dataset_writer_add_pair(w, c, 4, 0, r, 4, 2) == -1);  // no prompt
    CHECK(dataset_writer_add_pair(w, c, 4, 2, r, 4, 4) == -1);  // no completion
    CHECK(dataset_writer_add_pair(w, c, 4, 2, r, 4, 3) == 0);
    CHECK(dataset_writer_split_attr(w, "n_pairs", 5) == -1);  // reserved: now failed
    CHECK(dataset_writer_commit(w, err, sizeof err) == -1);
    CHECK(strstr(err, "reserved") != NULL);
    CHECK(!file_exists(p));

    // a commit without a train split fails and removes the temporary file
    path_of(p, sizeof p, "no_train");
    snprintf(tmp, sizeof tmp, "%s.tmp", p);
    w = dataset_writer_create(p, &meta, err, sizeof err);
    CHECK(dataset_writer_begin_split(w, "heldout") == 0);
    CHECK(dataset_writer_add_pair(w, c, 4, 2, r, 4, 2) == 0);
    CHECK(dataset_writer_commit(w, err, sizeof err) == -1);
    CHECK(strstr(err, "train") != NULL);
    CHECK(!file_exists(p) && !file_exists(tmp));

    // bad split names, twice the same split
    path_of(p, sizeof p, "bad_names");
    w = dataset_writer_create(p, &meta, err, sizeof err);
    CHECK(dataset_writer_begin_split(w, "a/b") == -1);
    CHECK(dataset_writer_commit(w, err, sizeof err) == -1);
    CHECK(strstr(err, "a/b") != NULL);
    w = dataset_writer_create(p, &meta, err, sizeof err);
    CHECK(dataset_writer_begin_split(w, "train") == 0);
    CHECK(dataset_writer_add_pair(w, c, 4, 2, r, 4, 2) == 0);
    CHECK(dataset_writer_begin_split(w, "train") == -1);
    CHECK(dataset_writer_commit(w, err, sizeof err) == -1);
    CHECK(strstr(err, "twice") != NULL);
    CHECK(!file_exists(p));

    // an empty validation set is legal (contiguous arrays of length 0)
    path_of(p, sizeof p, "empty_val");
    w = dataset_writer_create(p, &meta, err, sizeof err);
    CHECK(dataset_writer_begin_split(w, "train") == 0);
    CHECK(dataset_writer_add_pair(w, c, 4, 2, r, 4, 2) == 0);
    CHECK(dataset_writer_begin_split(w, "none") == 0);
    CHECK(dataset_writer_commit(w, err, sizeof err) == 0);
    {
        dpo_dataset_t ds;
        int rc = dataset_open(&ds, p, MPI_COMM_SELF, err, sizeof err);
        CHECK(rc == 0);
        if (rc == 0) {
            CHECK(ds.n_val == 1 && ds.val[0].n_pairs == 0 && ds.train.n_pairs == 1);
            CHECK(dataset_max_seq_len(&ds.val[0]) == 0);
            dataset_close(&ds);
        } else {
            fprintf(stderr, "%s\n", err);
        }
    }

    // an unwritable location
    CHECK(dataset_writer_create("/nonexistent-dir/x.h5", &meta, err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent-dir/x.h5.tmp") != NULL);
}

// ---- reference log-probs ----

static float ref_val(int salt, int64_t i, int side) { return -0.25f * (float)(i + 1) - (float)salt - 0.5f * (float)side; }

static void store_refs(const char *path, const char *split, int salt, int64_t n, const char *id,
                       int expect_rc, const char *want) {
    float *c = malloc((size_t)(n + 1) * sizeof *c), *r = malloc((size_t)(n + 1) * sizeof *r);
    for (int64_t i = 0; i < n; i++) {
        c[i] = ref_val(salt, i, 0);
        r[i] = ref_val(salt, i, 1);
    }
    char err[1024] = "";
    int rc = dataset_store_reference(path, split, c, r, n, id, err, sizeof err);
    CHECK(rc == expect_rc);
    if (rc != expect_rc) fprintf(stderr, "store_reference %s: rc %d: %s\n", split, rc, err);
    if (want) CHECK(strstr(err, want) != NULL);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp));
    free(c);
    free(r);
}

static void check_refs(const char *path, const char *want_model, bool train_ref, bool alpha_ref) {
    dpo_dataset_t ds;
    char err[1024];
    int rc = dataset_open(&ds, path, MPI_COMM_WORLD, err, sizeof err);
    CHECK(rc == 0);
    if (rc != 0) {
        fprintf(stderr, "open: %s\n", err);
        return;
    }
    CHECK(strcmp(ds.reference_model, want_model) == 0);
    CHECK(ds.train.has_ref == train_ref);
    CHECK(ds.n_val == 2);
    if (ds.n_val == 2) {
        CHECK(ds.val[0].has_ref == alpha_ref);
        CHECK(!ds.val[1].has_ref);
    }
    for (int k = -1; k < ds.n_val; k++) {
        dpo_split_t *s = k < 0 ? &ds.train : &ds.val[k];
        const split_spec_t *spec = spec_of(s->name);
        if (!s->has_ref || !spec) continue;
        for (int64_t i = 0; i < s->n_pairs; i++) {
            CHECK(s->ref_chosen[i] == ref_val(spec->salt, i, 0));
            CHECK(s->ref_rejected[i] == ref_val(spec->salt, i, 1));
        }
        check_split_contents(&ds, s);  // batches carry the stored values
    }
    dataset_close(&ds);
}

// ---- the demo generator (--demo PROGRAM) ----

static int run(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Parses "<digits>" tokens at t[*p..] while they are ASCII digits.
static long long parse_num(const int32_t *t, int len, int *p, int *ndig) {
    long long v = 0;
    *ndig = 0;
    while (*p < len && t[*p] >= '0' && t[*p] <= '9') {
        v = v * 10 + (t[*p] - '0');
        (*p)++;
        (*ndig)++;
    }
    return v;
}

typedef struct {
    uint64_t *keys;
    size_t cap;
} set_t;
static void set_add(set_t *s, uint64_t k) {
    size_t h = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (s->cap - 1);
    while (s->keys[h] && s->keys[h] != k + 1) h = (h + 1) & (s->cap - 1);
    s->keys[h] = k + 1;
}
static bool set_has(const set_t *s, uint64_t k) {
    size_t h = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & (s->cap - 1);
    while (s->keys[h]) {
        if (s->keys[h] == k + 1) return true;
        h = (h + 1) & (s->cap - 1);
    }
    return false;
}

static bool carries(long long a, long long b) {
    for (; a > 0 || b > 0; a /= 10, b /= 10)
        if (a % 10 + b % 10 >= 10) return true;
    return false;
}

// Checks every pair of a demo file: arithmetic, near misses, held-out disjointness.
// width: operand digits with --digits fixed (sums have one more), 0 for natural.
static void check_demo_file(const char *path, long long max_operand, bool last_only, int width,
                            int64_t train_pairs, int64_t val_pairs) {
    dpo_dataset_t ds;
    char err[1024];
    int rc = dataset_open(&ds, path, MPI_COMM_WORLD, err, sizeof err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK(ds.vocab_size == 258);
    CHECK(strcmp(ds.tokenizer, "bytes+bos+eos-v1") == 0);
    CHECK(ds.train.n_pairs == train_pairs);
    CHECK(ds.n_val == 2);
    if (ds.n_val == 2) {
        CHECK(strcmp(ds.val[0].name, "heldout") == 0 && ds.val[0].n_pairs == val_pairs);
        CHECK(strcmp(ds.val[1].name, "heldout_carry") == 0 && ds.val[1].n_pairs == val_pairs);
    }
    set_t train = {.cap = 1 << 22};
    train.keys = calloc(train.cap, sizeof *train.keys);
    dpo_batch_t b;
    batch_alloc(&b, 64, 64 * 80);
    int64_t idx[64];
    int64_t bad = 0, shared = 0, changed_not_last = 0;
    for (int k = -1; k < ds.n_val; k++) {
        const dpo_split_t *s = k < 0 ? &ds.train : &ds.val[k];
        for (int64_t start = 0; start < s->n_pairs; start += 64) {
            int n = (int)(s->n_pairs - start < 64 ? s->n_pairs - start : 64);
            for (int i = 0; i < n; i++) idx[i] = start + i;
            if (dataset_read_batch(&ds, s, idx, n, &b, err, sizeof err) != 0) {
                test_fail(__FILE__, __LINE__, "%s", err);
                break;
            }
            for (int i = 0; i < n; i++) {
                const int32_t *ct = b.tokens + b.cu_seqlens[2 * i];
                const int32_t *rt = b.tokens + b.cu_seqlens[2 * i + 1];
                int cl = b.cu_seqlens[2 * i + 1] - b.cu_seqlens[2 * i];
                int rl = b.cu_seqlens[2 * i + 2] - b.cu_seqlens[2 * i + 1];
                int cs = b.comp_start[2 * i];
                int p = 1, nd_a, nd_b, nd_s, nd_r;
                bool ok = ct[0] == 256 && cs == b.comp_start[2 * i + 1];
                long long a = parse_num(ct, cl, &p, &nd_a);
                ok = ok && nd_a > 0 && p < cl && ct[p++] == '+';
                long long bb = parse_num(ct, cl, &p, &nd_b);
                ok = ok && nd_b > 0 && p < cl && ct[p++] == '=' && p == cs;
                ok = ok && a <= max_operand && bb <= max_operand;
                long long sum = parse_num(ct, cl, &p, &nd_s);
                ok = ok && sum == a + bb && p == cl - 1 && ct[cl - 1] == 257;
                if (width)
                    ok = ok && nd_a == width && nd_b == width && nd_s == width + 1;
                // rejected: same prompt, one digit off by one, same length (and no leading
                // zero at natural width)
                ok = ok && memcmp(ct, rt, (size_t)cs * sizeof *ct) == 0;
                int q = cs;
                long long wrong = parse_num(rt, rl, &q, &nd_r);
                ok = ok && q == rl - 1 && rt[rl - 1] == 257 && nd_r == nd_s && wrong != sum;
                ok = ok && (width || nd_r == 1 || rt[cs] != '0');
                int diffs = 0, where = -1;
                for (int j = 0; j < nd_s && ok; j++) {
                    int d = rt[cs + j] - ct[cs + j];
                    if (d != 0) {
                        diffs++;
                        where = j;
                        ok = ok && (d == 1 || d == -1);
                    }
                }
                ok = ok && diffs == 1;
                if (where != nd_s - 1) changed_not_last++;
                if (!ok) {
                    if (bad++ < 5)
                        test_fail(__FILE__, __LINE__, "%s pair %lld is not a valid demo pair",
                                  s->group_path, (long long)idx[i]);
                    continue;
                }
                uint64_t key = (uint64_t)a * 2000003ull + (uint64_t)bb;
                if (k < 0)
                    set_add(&train, key);
                else {
                    if (set_has(&train, key)) shared++;
                    if (k == 1 && !carries(a, bb)) bad++;
                }
            }
        }
    }
    CHECK(bad == 0);
    CHECK(shared == 0);  // no validation problem appears in training
    if (last_only)
        CHECK(changed_not_last == 0);
    else
        CHECK(changed_not_last > 0);
    batch_free(&b);
    free(train.keys);
    dataset_close(&ds);
}

static void test_demo(const char *prog) {
    char cmd[2048], p[256];
    path_of(p, sizeof p, "demo");
    int rc = 0;
    if (g_rank == 0) {
        snprintf(cmd, sizeof cmd, "%s --out %s --train-pairs 3000 --val-pairs 300 --seed 7 >/dev/null", prog, p);
        rc = run(cmd);
        CHECK(rc == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    check_demo_file(p, 99, false, 2, 3000, 300);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
        snprintf(cmd, sizeof cmd,
                 "%s --out=%s --train-pairs 2000 --val-pairs 100 --max-operand 999 --near-miss last "
                 "--digits natural >/dev/null",
                 prog, p);
        CHECK(run(cmd) == 0);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    check_demo_file(p, 999, true, 0, 2000, 100);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
        // bad arguments: usage, exit status 2, no file
        const char *bad[] = {"", "--out", "--out x.h5 --train-pairs -3", "--out x.h5 --near-miss first", "--out x.h5 --digits odd",
                             "--out x.h5 --max-operand 1e3", "--out x.h5 --bogus 1", "--out x.h5 extra"};
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            snprintf(cmd, sizeof cmd, "%s %s 2>/dev/null", prog, bad[i]);
            int st = run(cmd);
            if (st != 2) test_fail(__FILE__, __LINE__, "\"%s\" exited %d, expected 2", bad[i], st);
        }
        CHECK(!file_exists("x.h5"));
        // same seed, same bytes in every dataset
        char p2[256];
        path_of(p2, sizeof p2, "demo2");
        snprintf(cmd, sizeof cmd, "%s --out %s --train-pairs 500 --val-pairs 50 >/dev/null && %s --out %s.b --train-pairs 500 --val-pairs 50 >/dev/null && h5diff %s %s.b /train /train && h5diff %s %s.b /val /val", prog, p2, prog, p2, p2, p2, p2, p2);
        CHECK(run(cmd) == 0);
    }
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    comm_errors_init();
    snprintf(g_prefix, sizeof g_prefix, "test_dataset.np%d", g_size);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);

    if (argc >= 3 && strcmp(argv[1], "--demo") == 0) {
        snprintf(g_prefix, sizeof g_prefix, "test_demo_data.np%d", g_size);
        test_demo(argv[2]);
        int rc = test_finish("test_dataset --demo");
        MPI_Finalize();
        return rc;
    }

    // Small blocks, so the writer's chunked/extendible path runs (train and alpha
    // outgrow one block, beta stays contiguous).
    setenv("DPO_DATASET_WRITER_BLOCK", "16", 1);
    // Token validation in blocks of 16, shared round-robin over the ranks.
    setenv("DPO_DATASET_SCAN_BLOCK", "16", 1);
    char p[256], err[1024];
    path_of(p, sizeof p, "ok");
    if (g_rank == 0) {
        if (write_small(p, err, sizeof err) != 0) test_fail(__FILE__, __LINE__, "write: %s", err);
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s.tmp", p);
        CHECK(file_exists(p) && !file_exists(tmp));
        make_corrupted();
        test_writer_failures();
    }
    MPI_Barrier(MPI_COMM_WORLD);
    test_roundtrip(p);
    test_corrupted();
    MPI_Barrier(MPI_COMM_WORLD);

    // reference log-probs: store, reopen, replace with another model's
    if (g_rank == 0) {
        store_refs(p, "train", 1, 57, "refA", 0, NULL);
        store_refs(p, "/val/alpha", 3, 40, "refA", 0, NULL);
        store_refs(p, "alpha", 3, 39, "refA", -1, "40 pairs");  // wrong count: untouched
        store_refs(p, "gamma", 3, 4, "refA", -1, "no such split");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    check_refs(p, "refA", true, true);
    MPI_Barrier(MPI_COMM_WORLD);
    if (g_rank == 0) {
        store_refs(p, "train", 1, 57, "refA", 0, NULL);  // same model again: in place
        store_refs(p, "train", 1, 57, "refB", 0, NULL);  // new model: alpha's are stale
    }
    MPI_Barrier(MPI_COMM_WORLD);
    check_refs(p, "refB", true, false);
    MPI_Barrier(MPI_COMM_WORLD);
    // every split in one update (--precompute-reference); a bad split anywhere
    // leaves the file as it was
    if (g_rank == 0) {
        float *v[4];
        const int64_t n[2] = {57, 40};
        const int salt[2] = {1, 3};
        for (int k = 0; k < 2; k++) {
            v[2 * k] = malloc((size_t)n[k] * sizeof(float));
            v[2 * k + 1] = malloc((size_t)n[k] * sizeof(float));
            for (int64_t i = 0; i < n[k]; i++) {
                v[2 * k][i] = ref_val(salt[k], i, 0);
                v[2 * k + 1][i] = ref_val(salt[k], i, 1);
            }
        }
        dataset_ref_split_t refs[2] = {{"train", v[0], v[1], 57}, {"alpha", v[2], v[3], 40}};
        CHECK(dataset_store_references(p, refs, 2, "refC", err, sizeof err) == 0);
        refs[1].n_pairs = 39;
        CHECK(dataset_store_references(p, refs, 2, "refD", err, sizeof err) == -1);
        CHECK(strstr(err, "40 pairs") != NULL);
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s.tmp", p);
        CHECK(!file_exists(tmp));
        for (int k = 0; k < 4; k++) free(v[k]);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    check_refs(p, "refC", true, true);
    MPI_Barrier(MPI_COMM_WORLD);

    int rc = test_finish("test_dataset");
    MPI_Finalize();
    return rc;
}
