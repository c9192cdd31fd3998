// dataset.c — the HDF5 preference dataset (doc/data-format.md): a validating
// parallel reader, the streaming single-process writer, and the atomic update
// that stores reference log-probs.
//
// Reader: every rank opens the file with the MPI-IO driver, keeps the per-pair
// arrays (offsets, completion starts, reference log-probs) in memory and reads
// token ranges with hyperslab selections. Token ids are checked once at open, in
// blocks spread over the ranks, so a bad file fails early and clearly.
//
// Writer: one process, default (sec2) driver, path + ".tmp" renamed on commit.
// Arrays are appended through fixed-size in-memory blocks; a split whose array
// outgrows one block becomes an extendible chunked dataset (chunk = one block),
// so a million pairs never need all tokens in memory. Arrays that fit in one
// block are written contiguous at their exact size.
#include "dpo/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dpo/error.h"
#include "dpo/h5util.h"
#include "dpo/program.h"
#include "dpo/util.h"

// Elements per append block (and per chunk of an extendible dataset). 1 Mi int32
// tokens = a 4 MiB chunk: larger than the default 1 MiB chunk cache, so random
// reads of a few hundred tokens go straight to the selected bytes. Tests shrink
// it with the environment variable DPO_DATASET_WRITER_BLOCK to exercise chunking.
#define WRITER_BLOCK_DEFAULT (1 << 20)
// Tokens per block when validating token ids at open (blocks go round-robin to the
// ranks). DPO_DATASET_SCAN_BLOCK shrinks it in tests.
static int64_t scan_block(void) {
    const char *env = getenv("DPO_DATASET_SCAN_BLOCK");
    if (env && atoll(env) > 0) return atoll(env);
    return (int64_t)1 << 20;
}

// ---------------------------------------------------------------------------
// small helpers

static void h5_close_id(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0) fn(*id);
    *id = H5I_INVALID_HID;
}

// ---------------------------------------------------------------------------
// reader

static void split_free(dpo_split_t *s) {
    free(s->chosen_offsets);
    free(s->rejected_offsets);
    free(s->chosen_comp_start);
    free(s->rejected_comp_start);
    free(s->ref_chosen);
    free(s->ref_rejected);
    h5_close_id(&s->chosen_tokens, H5Dclose);
    h5_close_id(&s->rejected_tokens, H5Dclose);
    memset(s, 0, sizeof *s);
    s->chosen_tokens = s->rejected_tokens = H5I_INVALID_HID;
}

static void split_init(dpo_split_t *s) {
    memset(s, 0, sizeof *s);
    s->chosen_tokens = s->rejected_tokens = H5I_INVALID_HID;
}

// Checks a 1-D dataset's rank, type class and (when want >= 0) length; returns its
// length or -1 with a message.
static int64_t check_1d(hid_t d, const char *file, const char *dpath, H5T_class_t cls,
                        int64_t want, const char *want_what, char *err, size_t err_len) {
    hid_t sp = H5Dget_space(d);
    hid_t t = H5Dget_type(d);
    int64_t len = -1;
    if (sp < 0 || t < 0) {
        dpo_errf(err, err_len, "%s: %s: cannot read its shape or type (%s)", file, dpath, h5util_reason());
    } else if (H5Sget_simple_extent_ndims(sp) != 1) {
        dpo_errf(err, err_len, "%s: %s: expected a 1-D array, found %d dimensions", file, dpath,
             H5Sget_simple_extent_ndims(sp));
    } else if (H5Tget_class(t) != cls) {
        dpo_errf(err, err_len, "%s: %s: expected %s values", file, dpath,
             cls == H5T_INTEGER ? "integer" : "floating-point");
    } else {
        hsize_t dim;
        H5Sget_simple_extent_dims(sp, &dim, NULL);
        if (want >= 0 && (int64_t)dim != want)
            dpo_errf(err, err_len, "%s: %s: holds %lld values but %s needs %lld", file, dpath,
                 (long long)dim, want_what, (long long)want);
        else
            len = (int64_t)dim;
    }
    if (t >= 0) H5Tclose(t);
    if (sp >= 0) H5Sclose(sp);
    return len;
}

// Reads a whole 1-D dataset `name` of group g into a new array of memtype.
static void *read_array(hid_t g, const char *file, const char *gpath, const char *name,
                        H5T_class_t cls, hid_t memtype, size_t esize, int64_t want,
                        const char *want_what, int64_t *len_out, char *err, size_t err_len) {
    char dpath[256];
    snprintf(dpath, sizeof dpath, "%s/%s", gpath, name);
    if (H5Lexists(g, name, H5P_DEFAULT) <= 0) {
        dpo_errf(err, err_len, "%s: %s: missing", file, dpath);
        return NULL;
    }
    hid_t d = H5Dopen2(g, name, H5P_DEFAULT);
    if (d < 0) {
        dpo_errf(err, err_len, "%s: %s: not a dataset (%s)", file, dpath, h5util_reason());
        return NULL;
    }
    void *buf = NULL;
    int64_t len = check_1d(d, file, dpath, cls, want, want_what, err, err_len);
    if (len >= 0) {
        buf = xmalloc((size_t)(len > 0 ? len : 1) * esize, dpath);
        if (len > 0 && H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
            dpo_errf(err, err_len, "%s: %s: read failed (%s)", file, dpath, h5util_reason());
            free(buf);
            buf = NULL;
        }
    }
    H5Dclose(d);
    if (buf && len_out) *len_out = len;
    return buf;
}

static int check_offsets(const char *file, const char *gpath, const char *side,
                         const int64_t *off, const int32_t *cs, int64_t P, int64_t n_tokens,
                         char *err, size_t err_len) {
    if (off[0] != 0) {
        dpo_errf(err, err_len, "%s: %s/%s_offsets: first offset is %lld, must be 0", file, gpath, side,
             (long long)off[0]);
        return -1;
    }
    for (int64_t i = 0; i < P; i++) {
        int64_t len = off[i + 1] - off[i];
        if (len < 0) {
            dpo_errf(err, err_len, "%s: %s/%s_offsets: not monotone at pair %lld (%lld then %lld)",
                 file, gpath, side, (long long)i, (long long)off[i], (long long)off[i + 1]);
            return -1;
        }
        if (len > INT32_MAX) {
            dpo_errf(err, err_len, "%s: %s/%s_offsets: sequence of pair %lld has %lld tokens (limit %d)",
                 file, gpath, side, (long long)i, (long long)len, INT32_MAX);
            return -1;
        }
        if (cs[i] < 1) {
            dpo_errf(err, err_len,
                 "%s: %s/%s_completion_start: pair %lld has no prompt token (completion start %d, "
                 "must be >= 1)",
                 file, gpath, side, (long long)i, cs[i]);
            return -1;
        }
        if ((int64_t)cs[i] >= len) {
            dpo_errf(err, err_len,
                 "%s: %s/%s_completion_start: pair %lld has no completion token (completion start "
                 "%d, sequence length %lld)",
                 file, gpath, side, (long long)i, cs[i], (long long)len);
            return -1;
        }
    }
    if (off[P] != n_tokens) {
        dpo_errf(err, err_len, "%s: %s/%s_offsets: last offset is %lld but %s/%s_tokens holds %lld tokens",
             file, gpath, side, (long long)off[P], gpath, side, (long long)n_tokens);
        return -1;
    }
    return 0;
}

// Pair whose sequence holds token position pos (off monotone, off[0] = 0).
static int64_t pair_of_position(const int64_t *off, int64_t P, int64_t pos) {
    int64_t lo = 0, hi = P;  // off[lo] <= pos < off[hi]
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (off[mid] <= pos)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

typedef struct {
    int64_t key;  // global position of the first problem (INT64_MAX = none)
    char msg[512];
} scan_err_t;

// Checks that every token of `d` (n tokens) lies in [0, vocab); the blocks are
// shared round-robin over the ranks of comm. Records the earliest problem seen by
// this rank in *e (key = base + position).
static void scan_tokens(hid_t d, int64_t n, int vocab, const int64_t *off, int64_t P,
                        const char *file, const char *dpath, int64_t base, int rank, int size,
                        int32_t *buf, scan_err_t *e) {
    const int64_t blk = scan_block();
    hid_t fsp = H5Dget_space(d);
    for (int64_t start = (int64_t)rank * blk; start < n; start += (int64_t)size * blk) {
        if (base + start >= e->key) break;
        hsize_t st = (hsize_t)start;
        hsize_t cnt = (hsize_t)(n - start < blk ? n - start : blk);
        hid_t msp = H5Screate_simple(1, &cnt, NULL);
        H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &st, NULL, &cnt, NULL);
        herr_t rc = H5Dread(d, H5T_NATIVE_INT32, msp, fsp, H5P_DEFAULT, buf);
        H5Sclose(msp);
        if (rc < 0) {
            e->key = base + start;
            snprintf(e->msg, sizeof e->msg, "%s: %s: read of tokens [%lld, %lld) failed (%s)", file,
                     dpath, (long long)start, (long long)(start + (int64_t)cnt), h5util_reason());
            break;
        }
        for (hsize_t j = 0; j < cnt; j++) {
            if (buf[j] < 0 || buf[j] >= vocab) {
                int64_t pos = start + (int64_t)j;
                e->key = base + pos;
                snprintf(e->msg, sizeof e->msg,
                         "%s: %s: token %d at position %lld (pair %lld) is outside the vocabulary "
                         "[0, %d)",
                         file, dpath, buf[j], (long long)pos,
                         (long long)pair_of_position(off, P, pos), vocab);
                break;
            }
        }
        if (e->key != INT64_MAX) break;
    }
    H5Sclose(fsp);
}

static int load_split(dpo_dataset_t *ds, dpo_split_t *s, const char *name, const char *gpath,
                      char *err, size_t err_len) {
    const char *file = ds->path;
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->group_path, sizeof s->group_path, "%s", gpath);
    hid_t g = H5Gopen2(ds->file, gpath, H5P_DEFAULT);
    if (g < 0) {
        dpo_errf(err, err_len, "%s: %s: cannot open group (%s)", file, gpath, h5util_reason());
        return -1;
    }
    int rc = -1;
    int64_t P = -1, n_c = -1, n_r = -1, len;
    s->chosen_comp_start = read_array(g, file, gpath, "chosen_completion_start", H5T_INTEGER,
                                      H5T_NATIVE_INT32, 4, -1, NULL, &P, err, err_len);
    if (!s->chosen_comp_start) goto done;
    s->n_pairs = P;
    int64_t attr_p;
    int ar = h5util_attr_read_int(g, "n_pairs", &attr_p);
    if (ar < 0) {
        dpo_errf(err, err_len, "%s: %s: attribute n_pairs is not an integer", file, gpath);
        goto done;
    }
    if (ar == 0 && attr_p != P) {
        dpo_errf(err, err_len,
             "%s: %s: attribute n_pairs = %lld but %s/chosen_completion_start holds %lld values",
             file, gpath, (long long)attr_p, gpath, (long long)P);
        goto done;
    }
    const char *pairs_what = "n_pairs";
    s->rejected_comp_start = read_array(g, file, gpath, "rejected_completion_start", H5T_INTEGER,
                                        H5T_NATIVE_INT32, 4, P, pairs_what, &len, err, err_len);
    if (!s->rejected_comp_start) goto done;
    s->chosen_offsets = read_array(g, file, gpath, "chosen_offsets", H5T_INTEGER,
                                   H5T_NATIVE_INT64, 8, P + 1, "n_pairs + 1", &len, err, err_len);
    if (!s->chosen_offsets) goto done;
    s->rejected_offsets = read_array(g, file, gpath, "rejected_offsets", H5T_INTEGER,
                                     H5T_NATIVE_INT64, 8, P + 1, "n_pairs + 1", &len, err, err_len);
    if (!s->rejected_offsets) goto done;

    // token arrays stay open for hyperslab reads; no chunk cache (reads are scattered)
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 0, 0, 1.0);
    const char *tok_names[2] = {"chosen_tokens", "rejected_tokens"};
    hid_t *tok_ids[2] = {&s->chosen_tokens, &s->rejected_tokens};
    int64_t *tok_len[2] = {&n_c, &n_r};
    for (int k = 0; k < 2; k++) {
        char dpath[256];
        snprintf(dpath, sizeof dpath, "%s/%s", gpath, tok_names[k]);
        if (H5Lexists(g, tok_names[k], H5P_DEFAULT) <= 0) {
            dpo_errf(err, err_len, "%s: %s: missing", file, dpath);
            H5Pclose(dapl);
            goto done;
        }
        *tok_ids[k] = H5Dopen2(g, tok_names[k], dapl);
        if (*tok_ids[k] < 0) {
            dpo_errf(err, err_len, "%s: %s: not a dataset (%s)", file, dpath, h5util_reason());
            H5Pclose(dapl);
            goto done;
        }
        *tok_len[k] = check_1d(*tok_ids[k], file, dpath, H5T_INTEGER, -1, NULL, err, err_len);
        if (*tok_len[k] < 0) {
            H5Pclose(dapl);
            goto done;
        }
    }
    H5Pclose(dapl);
    if (check_offsets(file, gpath, "chosen", s->chosen_offsets, s->chosen_comp_start, P, n_c, err,
                      err_len) < 0 ||
        check_offsets(file, gpath, "rejected", s->rejected_offsets, s->rejected_comp_start, P, n_r,
                      err, err_len) < 0)
        goto done;

    // optional reference log-probs: both or neither
    htri_t hc = H5Lexists(g, "reference_logps_chosen", H5P_DEFAULT);
    htri_t hr = H5Lexists(g, "reference_logps_rejected", H5P_DEFAULT);
    if ((hc > 0) != (hr > 0)) {
        dpo_errf(err, err_len, "%s: %s/%s: missing (reference log-probs must be stored for both sides)",
             file, gpath, hc > 0 ? "reference_logps_rejected" : "reference_logps_chosen");
        goto done;
    }
    if (hc > 0) {
        s->ref_chosen = read_array(g, file, gpath, "reference_logps_chosen", H5T_FLOAT,
                                   H5T_NATIVE_FLOAT, 4, P, pairs_what, &len, err, err_len);
        if (!s->ref_chosen) goto done;
        s->ref_rejected = read_array(g, file, gpath, "reference_logps_rejected", H5T_FLOAT,
                                     H5T_NATIVE_FLOAT, 4, P, pairs_what, &len, err, err_len);
        if (!s->ref_rejected) goto done;
        for (int64_t i = 0; i < P; i++) {
            if (!isfinite(s->ref_chosen[i]) || !isfinite(s->ref_rejected[i])) {
                dpo_errf(err, err_len, "%s: %s/reference_logps_%s: value of pair %lld is not finite",
                     file, gpath, isfinite(s->ref_chosen[i]) ? "rejected" : "chosen",
                     (long long)i);
                goto done;
            }
        }
        char split_ref[sizeof ds->reference_model];
        if (h5util_attr_read_str(g, "reference_model", split_ref, sizeof split_ref) == 0 &&
            ds->reference_model[0] && strcmp(split_ref, ds->reference_model) != 0) {
            dpo_errf(err, err_len,
                 "%s: %s: reference log-probs come from '%s' but the file's reference_model is "
                 "'%s'; recompute them with one reference model",
                 file, gpath, split_ref, ds->reference_model);
            goto done;
        }
        s->has_ref = true;
    }
    rc = 0;
done:
    H5Gclose(g);
    return rc;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

typedef struct {
    char **names;
    int n, cap;
} name_list_t;

static herr_t collect_names(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    name_list_t *l = data;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->names = realloc(l->names, (size_t)l->cap * sizeof *l->names);
        if (!l->names) dpo_fatal("out of memory listing validation sets");
    }
    l->names[l->n] = malloc(strlen(name) + 1);
    if (!l->names[l->n]) dpo_fatal("out of memory listing validation sets");
    strcpy(l->names[l->n++], name);
    return 0;
}

static void free_names(name_list_t *l) {
    for (int i = 0; i < l->n; i++) free(l->names[i]);
    free(l->names);
    l->names = NULL;
    l->n = l->cap = 0;
}

static int open_checks(dpo_dataset_t *ds, char *err, size_t err_len) {
    const char *file = ds->path;
    char fmt[128];
    int r = h5util_attr_read_str(ds->file, "format", fmt, sizeof fmt);
    if (r != 0) {
        dpo_errf(err, err_len, "%s: /: %s attribute 'format' (expected \"%s\"): not a dpo_hpc dataset",
             file, r > 0 ? "no" : "unreadable", DATASET_FORMAT_NAME);
        return -1;
    }
    if (strcmp(fmt, DATASET_FORMAT_NAME) != 0) {
        dpo_errf(err, err_len, "%s: /: attribute format is \"%s\", expected \"%s\"", file, fmt,
             DATASET_FORMAT_NAME);
        return -1;
    }
    int64_t v;
    if (h5util_attr_read_int(ds->file, "format_version", &v) != 0) {
        dpo_errf(err, err_len, "%s: /: missing or non-integer attribute format_version", file);
        return -1;
    }
    if (v != DATASET_FORMAT_VERSION) {
        dpo_errf(err, err_len,
             "%s: /: format_version %lld is not supported (this build reads version %d)%s", file,
             (long long)v, DATASET_FORMAT_VERSION,
             v > DATASET_FORMAT_VERSION ? "; it was written by a newer dpo_hpc" : "");
        return -1;
    }
    if (h5util_attr_read_int(ds->file, "vocab_size", &v) != 0 || v <= 0 || v > INT32_MAX) {
        dpo_errf(err, err_len, "%s: /: attribute vocab_size is missing or not a positive int32", file);
        return -1;
    }
    ds->vocab_size = (int)v;
    if (h5util_attr_read_str(ds->file, "tokenizer", ds->tokenizer, sizeof ds->tokenizer) < 0) {
        dpo_errf(err, err_len, "%s: /: attribute tokenizer is not a string of at most %zu bytes", file,
             sizeof ds->tokenizer - 1);
        return -1;
    }
    if (h5util_attr_read_str(ds->file, "reference_model", ds->reference_model,
                      sizeof ds->reference_model) < 0) {
        dpo_errf(err, err_len, "%s: /: attribute reference_model is not a string of at most %zu bytes",
             file, sizeof ds->reference_model - 1);
        return -1;
    }
    return 0;
}

int dataset_open(dpo_dataset_t *ds, const char *path, MPI_Comm comm, char *err, size_t err_len) {
    h5util_quiet();
    memset(ds, 0, sizeof *ds);
    ds->file = H5I_INVALID_HID;
    split_init(&ds->train);
    if (strlen(path) >= sizeof ds->path) {
        dpo_errf(err, err_len, "%s: path too long", path);
        return -1;
    }
    strcpy(ds->path, path);
    const char *file = ds->path;

    // Every rank sees the same file, so these checks agree without communication.
    struct stat stb;
    if (stat(path, &stb) != 0) {
        dpo_errf(err, err_len, "%s: cannot open dataset: %s", file, strerror(errno));
        return -1;
    }
    if (!S_ISREG(stb.st_mode)) {
        dpo_errf(err, err_len, "%s: not a regular file", file);
        return -1;
    }
    htri_t is_h5 = H5Fis_hdf5(path);
    if (is_h5 <= 0) {
        dpo_errf(err, err_len,
             "%s: not an HDF5 file (a dpo_hpc dataset is written by dpo_prep or dpo_demo_data; "
             "see doc/data-format.md)",
             file);
        return -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    ds->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (ds->file < 0) {
        dpo_errf(err, err_len, "%s: cannot open HDF5 file (%s)", file, h5util_reason());
        return -1;
    }
    if (open_checks(ds, err, err_len) < 0) goto fail;

    if (H5Lexists(ds->file, "train", H5P_DEFAULT) <= 0) {
        dpo_errf(err, err_len, "%s: /train: missing (every dataset needs a training split)", file);
        goto fail;
    }
    if (load_split(ds, &ds->train, "train", "/train", err, err_len) < 0) goto fail;

    if (H5Lexists(ds->file, "val", H5P_DEFAULT) > 0) {
        hid_t vg = H5Gopen2(ds->file, "val", H5P_DEFAULT);
        if (vg < 0) {
            dpo_errf(err, err_len, "%s: /val: not a group", file);
            goto fail;
        }
        name_list_t names = {0};
        H5Literate(vg, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_names, &names);
        H5Gclose(vg);
        if (names.n > 0) qsort(names.names, (size_t)names.n, sizeof *names.names, cmp_str);
        ds->val = xcalloc((size_t)(names.n ? names.n : 1), sizeof *ds->val, "validation splits");
        for (int i = 0; i < names.n; i++) split_init(&ds->val[i]);
        int bad = 0;
        for (int i = 0; i < names.n && !bad; i++) {
            char gpath[DATASET_NAME_MAX + 16];
            if (strlen(names.names[i]) >= DATASET_NAME_MAX) {
                dpo_errf(err, err_len, "%s: /val/%s: validation set name longer than %d bytes", file,
                     names.names[i], DATASET_NAME_MAX - 1);
                bad = 1;
                break;
            }
            snprintf(gpath, sizeof gpath, "/val/%s", names.names[i]);
            ds->n_val = i + 1;
            if (load_split(ds, &ds->val[i], names.names[i], gpath, err, err_len) < 0) bad = 1;
        }
        free_names(&names);
        if (bad) goto fail;
    }

    // token ids, in blocks shared over the ranks; the earliest problem wins
    {
        int rank = 0, size = 1;
        MPI_Comm_rank(comm, &rank);
        MPI_Comm_size(comm, &size);
        scan_err_t e = {.key = INT64_MAX};
        int32_t *buf = xmalloc((size_t)scan_block() * sizeof *buf, "token validation buffer");
        int64_t base = 0;
        for (int k = -1; k < ds->n_val; k++) {
            dpo_split_t *s = k < 0 ? &ds->train : &ds->val[k];
            char dpath[256];
            snprintf(dpath, sizeof dpath, "%s/chosen_tokens", s->group_path);
            scan_tokens(s->chosen_tokens, s->chosen_offsets[s->n_pairs], ds->vocab_size,
                        s->chosen_offsets, s->n_pairs, file, dpath, base, rank, size, buf, &e);
            base += s->chosen_offsets[s->n_pairs];
            snprintf(dpath, sizeof dpath, "%s/rejected_tokens", s->group_path);
            scan_tokens(s->rejected_tokens, s->rejected_offsets[s->n_pairs], ds->vocab_size,
                        s->rejected_offsets, s->n_pairs, file, dpath, base, rank, size, buf, &e);
            base += s->rejected_offsets[s->n_pairs];
        }
        free(buf);
        int64_t first = e.key;
        MPI_Allreduce(MPI_IN_PLACE, &first, 1, MPI_INT64_T, MPI_MIN, comm);
        if (first != INT64_MAX) {
            int owner = e.key == first ? rank : size;
            MPI_Allreduce(MPI_IN_PLACE, &owner, 1, MPI_INT, MPI_MIN, comm);
            MPI_Bcast(e.msg, (int)sizeof e.msg, MPI_CHAR, owner, comm);
            dpo_errf(err, err_len, "%s", e.msg);
            goto fail;
        }
    }
    return 0;

fail:
    dataset_close(ds);
    return -1;
}

void dataset_close(dpo_dataset_t *ds) {
    split_free(&ds->train);
    if (ds->val) {
        for (int i = 0; i < ds->n_val; i++) split_free(&ds->val[i]);
        free(ds->val);
    }
    ds->val = NULL;
    ds->n_val = 0;
    if (ds->file > 0) H5Fclose(ds->file);
    ds->file = H5I_INVALID_HID;
}

int dataset_max_seq_len(const dpo_split_t *s) {
    int64_t m = 0;
    for (int64_t i = 0; i < s->n_pairs; i++) {
        int64_t c = s->chosen_offsets[i + 1] - s->chosen_offsets[i];
        int64_t r = s->rejected_offsets[i + 1] - s->rejected_offsets[i];
        if (c > m) m = c;
        if (r > m) m = r;
    }
    return (int)m;
}

int64_t dataset_pair_tokens(const dpo_split_t *s, int64_t i) {
    return (s->chosen_offsets[i + 1] - s->chosen_offsets[i]) +
           (s->rejected_offsets[i + 1] - s->rejected_offsets[i]);
}

// Reads tokens [start, start+len) of d into buf (independent I/O: every DP rank
// reads different pairs at its own pace). A collective read would pay off when all
// ranks fetch their micro-batches in lockstep on a parallel file system: one
// H5S_SELECT_OR selection per dataset per batch and H5FD_MPIO_COLLECTIVE, letting
// MPI-IO aggregate the scattered ranges.
static herr_t read_range(hid_t d, hid_t fsp, int64_t start, int64_t len, int32_t *buf) {
    hsize_t st = (hsize_t)start, cnt = (hsize_t)len;
    hid_t msp = H5Screate_simple(1, &cnt, NULL);
    herr_t rc = H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &st, NULL, &cnt, NULL);
    if (rc >= 0) rc = H5Dread(d, H5T_NATIVE_INT32, msp, fsp, H5P_DEFAULT, buf);
    H5Sclose(msp);
    return rc;
}

int dataset_read_batch(dpo_dataset_t *ds, const dpo_split_t *s, const int64_t *idx, int n,
                       dpo_batch_t *b, char *err, size_t err_len) {
    batch_clear(b);
    if (n > b->cap_pairs) {
        dpo_errf(err, err_len, "%s: %s: batch of %d pairs exceeds the batch capacity of %d pairs",
             ds->path, s->group_path, n, b->cap_pairs);
        return -1;
    }
    int64_t total = 0, longest = 0;
    for (int k = 0; k < n; k++) {
        int64_t i = idx[k];
        if (i < 0 || i >= s->n_pairs) {
            dpo_errf(err, err_len, "%s: %s: pair index %lld out of range [0, %lld)", ds->path,
                 s->group_path, (long long)i, (long long)s->n_pairs);
            return -1;
        }
        int64_t c = s->chosen_offsets[i + 1] - s->chosen_offsets[i];
        int64_t r = s->rejected_offsets[i + 1] - s->rejected_offsets[i];
        total += c + r;
        if (c > longest) longest = c;
        if (r > longest) longest = r;
    }
    if (total > b->cap_tokens) {
        dpo_errf(err, err_len,
             "%s: %s: batch of %d pairs holds %lld tokens, more than the batch capacity of %d "
             "tokens (raise the token budget or lower the micro-batch size)",
             ds->path, s->group_path, n, (long long)total, b->cap_tokens);
        return -1;
    }
    int32_t *buf = xmalloc((size_t)(longest > 0 ? longest : 1) * sizeof *buf, "batch read buffer");
    hid_t fsp_c = H5Dget_space(s->chosen_tokens);
    hid_t fsp_r = H5Dget_space(s->rejected_tokens);
    int rc = 0;
    for (int k = 0; k < n && rc == 0; k++) {
        int64_t i = idx[k];
        for (int side = 0; side < 2; side++) {
            const int64_t *off = side == 0 ? s->chosen_offsets : s->rejected_offsets;
            const int32_t *cs = side == 0 ? s->chosen_comp_start : s->rejected_comp_start;
            hid_t d = side == 0 ? s->chosen_tokens : s->rejected_tokens;
            int64_t len = off[i + 1] - off[i];
            if (read_range(d, side == 0 ? fsp_c : fsp_r, off[i], len, buf) < 0) {
                dpo_errf(err, err_len, "%s: %s/%s_tokens: read of pair %lld failed (%s)", ds->path,
                     s->group_path, side == 0 ? "chosen" : "rejected", (long long)i, h5util_reason());
                rc = -1;
                break;
            }
            if (batch_add_sequence(b, buf, (int)len, cs[i]) < 0) {
                dpo_errf(err, err_len, "%s: %s: pair %lld does not fit the batch (%d pairs, %d tokens)",
                     ds->path, s->group_path, (long long)i, b->cap_pairs, b->cap_tokens);
                rc = -1;
                break;
            }
        }
        if (rc == 0) {
            b->pair_index[k] = i;
            if (s->has_ref) {
                b->ref_logps[2 * k] = s->ref_chosen[i];
                b->ref_logps[2 * k + 1] = s->ref_rejected[i];
            }
        }
    }
    H5Sclose(fsp_c);
    H5Sclose(fsp_r);
    free(buf);
    if (rc < 0) {
        batch_clear(b);
        return -1;
    }
    b->has_ref = s->has_ref;
    batch_finalize(b);
    return 0;
}

// ---------------------------------------------------------------------------
// writer

enum { A_CTOK, A_RTOK, A_COFF, A_ROFF, A_CCS, A_RCS, N_ARR };
static const char *const arr_names[N_ARR] = {
    "chosen_tokens",  "rejected_tokens",         "chosen_offsets",
    "rejected_offsets", "chosen_completion_start", "rejected_completion_start"};

typedef struct {
    hid_t memtype, filetype;
    size_t esize;
    char *buf;       // (block * esize) pending elements
    int64_t nbuf;    // pending elements
    int64_t total;   // elements already in the file
    hid_t dset;      // created once the first block is full (chunked), else at the end
} wr_array_t;

struct dataset_writer {
    char path[1024], tmp[1040];
    hid_t file;
    int vocab_size;
    int64_t block;
    wr_array_t arr[N_ARR];
    bool in_split;
    hid_t group;
    char split_name[DATASET_NAME_MAX];
    char split_path[DATASET_NAME_MAX + 16];
    int64_t n_pairs, n_chosen, n_rejected;
    bool has_train;
    name_list_t done;  // splits written so far
    bool failed;
    char err[2048];
};

DPO_PRINTF(2, 3) static int wfail(dataset_writer_t *w, const char *fmt, ...) {
    if (!w->failed) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->err, sizeof w->err, fmt, ap);
        va_end(ap);
        w->failed = true;
    }
    return -1;
}

static int arr_write(dataset_writer_t *w, int k, bool final) {
    wr_array_t *a = &w->arr[k];
    if (a->dset < 0) {
        hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
        hid_t sp;
        if (final) {  // everything fits one block: contiguous at its exact size
            hsize_t dim = (hsize_t)a->nbuf;
            sp = H5Screate_simple(1, &dim, NULL);
            H5Pset_layout(dcpl, H5D_CONTIGUOUS);
        } else {
            hsize_t dim = 0, maxdim = H5S_UNLIMITED, chunk = (hsize_t)w->block;
            sp = H5Screate_simple(1, &dim, &maxdim);
            H5Pset_chunk(dcpl, 1, &chunk);
        }
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
        a->dset = H5Dcreate2(w->group, arr_names[k], a->filetype, sp, H5P_DEFAULT, dcpl,
                             H5P_DEFAULT);
        H5Sclose(sp);
        H5Pclose(dcpl);
        if (a->dset < 0)
            return wfail(w, "%s: %s/%s: cannot create dataset (%s)", w->tmp, w->split_path,
                         arr_names[k], h5util_reason());
        if (final) {
            errno = 0;
            if (a->nbuf > 0 &&
                H5Dwrite(a->dset, a->memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->buf) < 0)
                return wfail(w, "%s: %s/%s: write failed: %s", w->tmp, w->split_path,
                             arr_names[k], h5util_write_reason(errno, w->tmp));
            a->total = a->nbuf;
            a->nbuf = 0;
            return 0;
        }
    }
    if (a->nbuf == 0) return 0;
    hsize_t newdim = (hsize_t)(a->total + a->nbuf);
    if (H5Dset_extent(a->dset, &newdim) < 0)
        return wfail(w, "%s: %s/%s: cannot extend dataset (%s)", w->tmp, w->split_path,
                     arr_names[k], h5util_reason());
    hid_t fsp = H5Dget_space(a->dset);
    hsize_t st = (hsize_t)a->total, cnt = (hsize_t)a->nbuf;
    hid_t msp = H5Screate_simple(1, &cnt, NULL);
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, &st, NULL, &cnt, NULL);
    errno = 0;
    herr_t rc = H5Dwrite(a->dset, a->memtype, msp, fsp, H5P_DEFAULT, a->buf);
    H5Sclose(msp);
    H5Sclose(fsp);
    if (rc < 0)
        return wfail(w, "%s: %s/%s: write failed: %s", w->tmp, w->split_path, arr_names[k],
                     h5util_write_reason(errno, w->tmp));
    a->total += a->nbuf;
    a->nbuf = 0;
    return 0;
}

static int arr_append(dataset_writer_t *w, int k, const void *data, int64_t count) {
    wr_array_t *a = &w->arr[k];
    const char *src = data;
    while (count > 0) {
        int64_t take = w->block - a->nbuf;
        if (take > count) take = count;
        memcpy(a->buf + (size_t)a->nbuf * a->esize, src, (size_t)take * a->esize);
        a->nbuf += take;
        src += (size_t)take * a->esize;
        count -= take;
        if (a->nbuf == w->block && arr_write(w, k, false) < 0) return -1;
    }
    return 0;
}

static int end_split(dataset_writer_t *w) {
    if (!w->in_split) return 0;
    w->in_split = false;
    int rc = 0;
    for (int k = 0; k < N_ARR; k++) {
        if (rc == 0 && !w->failed && arr_write(w, k, true) < 0) rc = -1;
        // the close writes the chunks still cached: its failure is a lost write
        errno = 0;
        if (w->arr[k].dset >= 0 && H5Dclose(w->arr[k].dset) < 0 && rc == 0)
            rc = wfail(w, "%s: %s/%s: write failed: %s", w->tmp, w->split_path, arr_names[k],
                       h5util_write_reason(errno, w->tmp));
        w->arr[k].dset = H5I_INVALID_HID;
        w->arr[k].nbuf = w->arr[k].total = 0;
    }
    if (rc == 0 && !w->failed) {
        if (h5util_attr_write_int(w->group, "n_pairs", H5T_STD_I64LE, w->n_pairs) < 0 ||
            h5util_attr_write_int(w->group, "n_chosen_tokens", H5T_STD_I64LE, w->n_chosen) < 0 ||
            h5util_attr_write_int(w->group, "n_rejected_tokens", H5T_STD_I64LE, w->n_rejected) < 0)
            rc = wfail(w, "%s: %s: cannot write attributes (%s)", w->tmp, w->split_path,
                       h5util_reason());
    }
    h5_close_id(&w->group, H5Gclose);
    return w->failed ? -1 : rc;
}

static void writer_free(dataset_writer_t *w) {
    for (int k = 0; k < N_ARR; k++) {
        h5_close_id(&w->arr[k].dset, H5Dclose);
        free(w->arr[k].buf);
    }
    h5_close_id(&w->group, H5Gclose);
    if (w->file >= 0) h5util_discard_file(&w->file, w->tmp);
    free_names(&w->done);
    free(w);
}

dataset_writer_t *dataset_writer_create(const char *path, const dataset_meta_t *meta, char *err,
                                        size_t err_len) {
    h5util_quiet();
    if (strlen(path) >= 1024) {
        dpo_errf(err, err_len, "%s: path too long", path);
        return NULL;
    }
    if (!meta || meta->vocab_size <= 0) {
        dpo_errf(err, err_len, "%s: dataset writer needs a positive vocab_size", path);
        return NULL;
    }
    dataset_writer_t *w = xcalloc(1, sizeof *w, "dataset writer");
    strcpy(w->path, path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp", path);
    w->file = w->group = H5I_INVALID_HID;
    w->vocab_size = meta->vocab_size;
    w->block = WRITER_BLOCK_DEFAULT;
    const char *env = getenv("DPO_DATASET_WRITER_BLOCK");
    if (env && atoll(env) > 0) w->block = atoll(env);
    const hid_t mem[N_ARR] = {H5T_NATIVE_INT32, H5T_NATIVE_INT32, H5T_NATIVE_INT64,
                              H5T_NATIVE_INT64, H5T_NATIVE_INT32, H5T_NATIVE_INT32};
    const hid_t fil[N_ARR] = {H5T_STD_I32LE, H5T_STD_I32LE, H5T_STD_I64LE,
                              H5T_STD_I64LE, H5T_STD_I32LE, H5T_STD_I32LE};
    for (int k = 0; k < N_ARR; k++) {
        w->arr[k].memtype = mem[k];
        w->arr[k].filetype = fil[k];
        w->arr[k].esize = H5Tget_size(mem[k]);
        w->arr[k].dset = H5I_INVALID_HID;
        w->arr[k].buf = xmalloc((size_t)w->block * w->arr[k].esize, "dataset writer block");
    }
    if (h5util_headroom_reserve(w->tmp, H5UTIL_HEADROOM_DEFAULT, err, err_len) != 0) {
        writer_free(w);
        return NULL;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    errno = 0;
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (w->file < 0) {
        dpo_errf(err, err_len, "%s: cannot create file: %s", w->tmp, h5util_write_reason(errno, w->tmp));
        h5util_headroom_release(w->tmp);
        writer_free(w);
        return NULL;
    }
    char created[64];
    util_iso_time(created, sizeof created);
    if (h5util_attr_write_str(w->file, "format", DATASET_FORMAT_NAME) < 0 ||
        h5util_attr_write_int(w->file, "format_version", H5T_STD_I32LE, DATASET_FORMAT_VERSION) < 0 ||
        h5util_attr_write_int(w->file, "vocab_size", H5T_STD_I32LE, meta->vocab_size) < 0 ||
        h5util_attr_write_str(w->file, "tokenizer", meta->tokenizer) < 0 ||
        h5util_attr_write_str(w->file, "provenance", meta->provenance) < 0 ||
        h5util_attr_write_str(w->file, "created", created) < 0 ||
        h5util_attr_write_str(w->file, "producer", dpo_producer()) < 0) {
        dpo_errf(err, err_len, "%s: cannot write root attributes (%s)", w->tmp, h5util_reason());
        dataset_writer_abort(w);
        return NULL;
    }
    return w;
}

static bool valid_split_name(const char *s) {
    if (!s[0] || strlen(s) >= DATASET_NAME_MAX || s[0] == '.') return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int dataset_writer_begin_split(dataset_writer_t *w, const char *name) {
    if (!w || w->failed) return -1;
    if (end_split(w) < 0) return -1;
    if (!name || !valid_split_name(name))
        return wfail(w, "%s: split name \"%s\" is not valid (1-%d characters of A-Z a-z 0-9 _ - .)",
                     w->tmp, name ? name : "(null)", DATASET_NAME_MAX - 1);
    for (int i = 0; i < w->done.n; i++)
        if (strcmp(w->done.names[i], name) == 0)
            return wfail(w, "%s: split \"%s\" written twice", w->tmp, name);
    collect_names(0, name, NULL, &w->done);
    bool train = strcmp(name, "train") == 0;
    snprintf(w->split_name, sizeof w->split_name, "%s", name);
    snprintf(w->split_path, sizeof w->split_path, train ? "/%s" : "/val/%s", name);
    if (!train && H5Lexists(w->file, "val", H5P_DEFAULT) <= 0) {
        hid_t vg = H5Gcreate2(w->file, "val", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (vg < 0) return wfail(w, "%s: /val: cannot create group (%s)", w->tmp, h5util_reason());
        H5Gclose(vg);
    }
    w->group = H5Gcreate2(w->file, w->split_path, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (w->group < 0)
        return wfail(w, "%s: %s: cannot create group (%s)", w->tmp, w->split_path, h5util_reason());
    if (train) w->has_train = true;
    w->in_split = true;
    w->n_pairs = w->n_chosen = w->n_rejected = 0;
    int64_t zero = 0;
    if (arr_append(w, A_COFF, &zero, 1) < 0 || arr_append(w, A_ROFF, &zero, 1) < 0) return -1;
    return 0;
}

// Not sticky: an invalid pair is refused and the writer goes on.
static int check_seq(dataset_writer_t *w, const char *side, const int32_t *t, int len, int cs) {
    if (len < 2 || cs < 1 || cs >= len) {
        snprintf(w->err, sizeof w->err,
                 "%s: %s: pair %lld: %s sequence of %d tokens with completion start %d (needs >= 1 "
                 "prompt and >= 1 completion token)",
                 w->tmp, w->split_path, (long long)w->n_pairs, side, len, cs);
        return -1;
    }
    for (int i = 0; i < len; i++) {
        if (t[i] < 0 || t[i] >= w->vocab_size) {
            snprintf(w->err, sizeof w->err,
                     "%s: %s: pair %lld: %s token %d at position %d is outside the vocabulary "
                     "[0, %d)",
                     w->tmp, w->split_path, (long long)w->n_pairs, side, t[i], i, w->vocab_size);
            return -1;
        }
    }
    return 0;
}

int dataset_writer_add_pair(dataset_writer_t *w, const int32_t *chosen, int chosen_len,
                            int chosen_comp_start, const int32_t *rejected, int rejected_len,
                            int rejected_comp_start) {
    if (!w || w->failed) return -1;
    if (!w->in_split) return wfail(w, "%s: add_pair before begin_split", w->tmp);
    if (check_seq(w, "chosen", chosen, chosen_len, chosen_comp_start) < 0 ||
        check_seq(w, "rejected", rejected, rejected_len, rejected_comp_start) < 0)
        return -1;
    int64_t co = w->n_chosen + chosen_len, ro = w->n_rejected + rejected_len;
    int32_t ccs = chosen_comp_start, rcs = rejected_comp_start;
    if (arr_append(w, A_CTOK, chosen, chosen_len) < 0 ||
        arr_append(w, A_RTOK, rejected, rejected_len) < 0 || arr_append(w, A_COFF, &co, 1) < 0 ||
        arr_append(w, A_ROFF, &ro, 1) < 0 || arr_append(w, A_CCS, &ccs, 1) < 0 ||
        arr_append(w, A_RCS, &rcs, 1) < 0)
        return -1;
    w->n_chosen = co;
    w->n_rejected = ro;
    w->n_pairs++;
    return 0;
}

int dataset_writer_split_attr(dataset_writer_t *w, const char *key, int64_t value) {
    if (!w || w->failed) return -1;
    if (!w->in_split) return wfail(w, "%s: split_attr before begin_split", w->tmp);
    if (!key || !key[0] || strcmp(key, "n_pairs") == 0 || strcmp(key, "n_chosen_tokens") == 0 ||
        strcmp(key, "n_rejected_tokens") == 0 || strcmp(key, "reference_model") == 0)
        return wfail(w, "%s: %s: attribute name \"%s\" is reserved or empty", w->tmp,
                     w->split_path, key ? key : "(null)");
    if (h5util_attr_write_int(w->group, key, H5T_STD_I64LE, value) < 0)
        return wfail(w, "%s: %s: cannot write attribute %s (%s)", w->tmp, w->split_path, key,
                     h5util_reason());
    return 0;
}

const char *dataset_writer_error(const dataset_writer_t *w) { return w ? w->err : "no writer"; }

int dataset_writer_commit(dataset_writer_t *w, char *err, size_t err_len) {
    if (!w) {
        dpo_errf(err, err_len, "dataset writer: commit without a writer");
        return -1;
    }
    if (!w->failed) end_split(w);
    if (!w->failed && !w->has_train) wfail(w, "%s: no \"train\" split was written", w->tmp);
    if (!w->failed) {
        // the group and datasets are closed (end_split): the close writes the rest
        char e[sizeof w->err];
        if (h5util_finish_file(&w->file, w->tmp, e, sizeof e) != 0 ||
            util_commit_tmp(w->tmp, w->path, e, sizeof e) != 0)
            wfail(w, "%s", e);
    }
    if (w->failed) {
        dpo_errf(err, err_len, "%s", w->err);
        dataset_writer_abort(w);
        return -1;
    }
    writer_free(w);
    return 0;
}

void dataset_writer_abort(dataset_writer_t *w) {
    if (!w) return;
    char tmp[sizeof w->tmp];
    strcpy(tmp, w->tmp);
    writer_free(w);  // discards an open file
    unlink(tmp);
}

// ---------------------------------------------------------------------------
// reference log-probs

static int copy_file(const char *src, const char *dst, char *err, size_t err_len) {
    int in = open(src, O_RDONLY);
    if (in < 0) {
        dpo_errf(err, err_len, "%s: cannot open: %s", src, strerror(errno));
        return -1;
    }
    struct stat st;
    fstat(in, &st);
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, st.st_mode & 0777);
    if (out < 0) {
        dpo_errf(err, err_len, "%s: cannot create: %s", dst, strerror(errno));
        close(in);
        return -1;
    }
    size_t cap = 1 << 20;
    char *buf = xmalloc(cap, "file copy buffer");
    int rc = 0;
    for (;;) {
        ssize_t n = read(in, buf, cap);
        if (n < 0) {
            if (errno == EINTR) continue;
            dpo_errf(err, err_len, "%s: read failed: %s", src, strerror(errno));
            rc = -1;
            break;
        }
        if (n == 0) break;
        for (ssize_t o = 0; o < n;) {
            ssize_t m = write(out, buf + o, (size_t)(n - o));
            if (m < 0) {
                if (errno == EINTR) continue;
                dpo_errf(err, err_len, "%s: write failed: %s", dst, strerror(errno));
                rc = -1;
                break;
            }
            o += m;
        }
        if (rc) break;
    }
    free(buf);
    close(in);
    if (close(out) != 0 && rc == 0) {
        dpo_errf(err, err_len, "%s: close failed: %s", dst, strerror(errno));
        rc = -1;
    }
    if (rc) unlink(dst);
    return rc;
}

// Writes (or overwrites in place, when the shape already matches) a float32 array.
static int write_ref(hid_t g, const char *name, const float *x, int64_t n) {
    hid_t d = H5I_INVALID_HID;
    if (H5Lexists(g, name, H5P_DEFAULT) > 0) {
        d = H5Dopen2(g, name, H5P_DEFAULT);
        hid_t sp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
        hid_t t = d >= 0 ? H5Dget_type(d) : H5I_INVALID_HID;
        hsize_t dim = 0;
        bool same = sp >= 0 && t >= 0 && H5Sget_simple_extent_ndims(sp) == 1 &&
                    H5Sget_simple_extent_dims(sp, &dim, NULL) == 1 && (int64_t)dim == n &&
                    H5Tequal(t, H5T_IEEE_F32LE) > 0;
        if (t >= 0) H5Tclose(t);
        if (sp >= 0) H5Sclose(sp);
        if (!same) {
            if (d >= 0) H5Dclose(d);
            d = H5I_INVALID_HID;
            if (H5Ldelete(g, name, H5P_DEFAULT) < 0) return -1;
        }
    }
    if (d < 0) {
        hsize_t dim = (hsize_t)n;
        hid_t sp = H5Screate_simple(1, &dim, NULL);
        d = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Sclose(sp);
        if (d < 0) return -1;
    }
    herr_t rc = n > 0 ? H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) : 0;
    H5Dclose(d);
    return rc < 0 ? -1 : 0;
}

static int drop_refs(hid_t file, const char *gpath) {
    hid_t g = H5Gopen2(file, gpath, H5P_DEFAULT);
    if (g < 0) return -1;
    int rc = 0;
    const char *names[3] = {"reference_logps_chosen", "reference_logps_rejected", NULL};
    for (int i = 0; names[i]; i++)
        if (H5Lexists(g, names[i], H5P_DEFAULT) > 0 && H5Ldelete(g, names[i], H5P_DEFAULT) < 0)
            rc = -1;
    if (H5Aexists(g, "reference_model") > 0) H5Adelete(g, "reference_model");
    H5Gclose(g);
    return rc;
}

// "train", a validation set's name or a group path -> the split's group path.
static int ref_group_path(const char *path, const char *split_group, char *gpath, size_t n,
                          char *err, size_t err_len) {
    if (!split_group || !split_group[0] || strlen(split_group) >= DATASET_NAME_MAX) {
        dpo_errf(err, err_len, "%s: bad split name \"%s\"", path, split_group ? split_group : "");
        return -1;
    }
    if (split_group[0] == '/')
        snprintf(gpath, n, "%s", split_group);
    else if (strcmp(split_group, "train") == 0)
        snprintf(gpath, n, "/train");
    else
        snprintf(gpath, n, "/val/%s", split_group);
    return 0;
}

// Writes one split's values into the open copy f.
static int store_split_ref(hid_t f, const char *path, const char *gpath, const dataset_ref_split_t *r,
                           const char *reference_id, char *err, size_t err_len) {
    hid_t g;
    if (H5Lexists(f, gpath + 1, H5P_DEFAULT) <= 0 || (g = H5Gopen2(f, gpath, H5P_DEFAULT)) < 0) {
        dpo_errf(err, err_len, "%s: %s: no such split", path, gpath);
        return -1;
    }
    int rc = -1;
    hid_t d = H5Dopen2(g, "chosen_completion_start", H5P_DEFAULT);
    hid_t sp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    hsize_t dim = 0;
    if (sp >= 0) H5Sget_simple_extent_dims(sp, &dim, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (d < 0 || (int64_t)dim != r->n_pairs) {
        dpo_errf(err, err_len, "%s: %s: holds %lld pairs but %lld reference values were given",
                 path, gpath, (long long)dim, (long long)r->n_pairs);
    } else if ((errno = 0) != 0 || write_ref(g, "reference_logps_chosen", r->chosen, r->n_pairs) < 0 ||
               write_ref(g, "reference_logps_rejected", r->rejected, r->n_pairs) < 0 ||
               h5util_attr_write_str(g, "reference_model", reference_id) < 0) {
        dpo_errf(err, err_len, "%s: %s: cannot write reference log-probs: %s", path, gpath,
                 h5util_write_reason(errno, path));
    } else {
        rc = 0;
    }
    H5Gclose(g);
    return rc;
}

int dataset_store_reference(const char *path, const char *split_group, const float *ref_chosen,
                            const float *ref_rejected, int64_t n_pairs, const char *reference_id,
                            char *err, size_t err_len) {
    const dataset_ref_split_t one = {split_group, ref_chosen, ref_rejected, n_pairs};
    return dataset_store_references(path, &one, 1, reference_id, err, err_len);
}

int dataset_store_references(const char *path, const dataset_ref_split_t *splits, int n_splits,
                             const char *reference_id, char *err, size_t err_len) {
    h5util_quiet();
    if (n_splits < 1) {
        dpo_errf(err, err_len, "%s: no split to store reference log-probs for", path);
        return -1;
    }
    char (*gpath)[DATASET_NAME_MAX + 16] = xcalloc((size_t)n_splits, sizeof *gpath, "split groups");
    if (!reference_id) reference_id = "";
    for (int k = 0; k < n_splits; k++) {
        const dataset_ref_split_t *r = &splits[k];
        if (ref_group_path(path, r->split, gpath[k], sizeof gpath[k], err, err_len) < 0) {
            free(gpath);
            return -1;
        }
        for (int64_t i = 0; i < r->n_pairs; i++) {
            if (!isfinite(r->chosen[i]) || !isfinite(r->rejected[i])) {
                dpo_errf(err, err_len, "%s: %s: reference log-prob of pair %lld is not finite", path,
                         gpath[k], (long long)i);
                free(gpath);
                return -1;
            }
        }
    }
    if (H5Fis_hdf5(path) <= 0) {
        dpo_errf(err, err_len, "%s: not an HDF5 file (or missing)", path);
        free(gpath);
        return -1;
    }
    // One copy for all the splits, renamed over the original once every split is in.
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (h5util_headroom_reserve(tmp, H5UTIL_HEADROOM_DEFAULT, err, err_len) != 0 ||
        copy_file(path, tmp, err, err_len) < 0) {
        h5util_headroom_release(tmp);
        free(gpath);
        return -1;
    }

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        dpo_errf(err, err_len, "%s: cannot open the copy %s (%s)", path, tmp, h5util_reason());
        h5util_headroom_release(tmp);
        unlink(tmp);
        free(gpath);
        return -1;
    }
    int rc = -1;
    char fmt[128];
    if (h5util_attr_read_str(f, "format", fmt, sizeof fmt) != 0 || strcmp(fmt, DATASET_FORMAT_NAME)) {
        dpo_errf(err, err_len, "%s: not a dpo_hpc preference dataset (attribute format)", path);
        goto done;
    }
    for (int k = 0; k < n_splits; k++) {
        if (H5Lexists(f, gpath[k] + 1, H5P_DEFAULT) <= 0) {
            dpo_errf(err, err_len, "%s: %s: no such split", path, gpath[k]);
            goto done;
        }
    }
    // One file, one reference model: values from a different model are stale.
    char old_ref[1024];
    if (h5util_attr_read_str(f, "reference_model", old_ref, sizeof old_ref) == 0 &&
        strcmp(old_ref, reference_id) != 0) {
        name_list_t names = {0};
        if (H5Lexists(f, "val", H5P_DEFAULT) > 0) {
            hid_t vg = H5Gopen2(f, "val", H5P_DEFAULT);
            if (vg >= 0) {
                H5Literate(vg, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_names, &names);
                H5Gclose(vg);
            }
        }
        int bad = 0;
        for (int i = -1; i < names.n; i++) {
            char other[DATASET_NAME_MAX + 16];
            if (i < 0)
                snprintf(other, sizeof other, "/train");
            else
                snprintf(other, sizeof other, "/val/%s", names.names[i]);
            bool stored = false;
            for (int k = 0; k < n_splits; k++) stored = stored || strcmp(other, gpath[k]) == 0;
            if (!stored && drop_refs(f, other) < 0) bad = 1;
        }
        free_names(&names);
        if (bad) {
            dpo_errf(err, err_len, "%s: cannot drop the stale reference log-probs of '%s' (%s)", path,
                 old_ref, h5util_reason());
            goto done;
        }
    }
    for (int k = 0; k < n_splits; k++)
        if (store_split_ref(f, path, gpath[k], &splits[k], reference_id, err, err_len) < 0) goto done;
    if (h5util_attr_write_str(f, "reference_model", reference_id) < 0 ||
        h5util_attr_write_str(f, "reference_producer", dpo_producer()) < 0) {
        dpo_errf(err, err_len, "%s: cannot write the reference attributes (%s)", path, h5util_reason());
        goto done;
    }
    rc = 0;
done:
    free(gpath);
    if (rc != 0) {
        h5util_discard_file(&f, tmp);
        return -1;
    }
    if (h5util_finish_file(&f, tmp, err, err_len) != 0) return -1;
    return util_commit_tmp(tmp, path, err, err_len);
}
