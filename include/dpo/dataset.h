// dataset.h — the HDF5 preference dataset (format in doc/data-format.md): reader
// for training and validation, and the writer that dpo_prep and the demo
// generator share.
//
// Layout: one group per split ("/train", "/val/<name>"), each with flat int32
// token arrays and int64 offsets for chosen and rejected sequences, the index of
// each sequence's first completion token, and optional reference log-probs.
#ifndef DPO_DATASET_H
#define DPO_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>
#include <mpi.h>

#include "dpo/batch.h"

#define DATASET_FORMAT_NAME "dpo_hpc.preference_dataset"
#define DATASET_FORMAT_VERSION 1
#define DATASET_NAME_MAX 64

typedef struct {
    char name[DATASET_NAME_MAX];   // "train" or the validation set's name
    char group_path[DATASET_NAME_MAX + 16];  // "/train" or "/val/<name>"
    int64_t n_pairs;
    int64_t *chosen_offsets, *rejected_offsets;  // (n_pairs + 1), kept in memory
    int32_t *chosen_comp_start, *rejected_comp_start;  // (n_pairs)
    bool has_ref;
    float *ref_chosen, *ref_rejected;  // (n_pairs) when has_ref
    hid_t chosen_tokens, rejected_tokens;  // open HDF5 datasets
} dpo_split_t;

typedef struct {
    char path[1024];
    hid_t file;
    int vocab_size;
    char tokenizer[256];           // tokenizer identity attribute
    char reference_model[1024];    // identity of the stored reference log-probs ("" if none)
    dpo_split_t train;
    int n_val;
    dpo_split_t *val;              // (n_val), sorted by name
} dpo_dataset_t;

// Opens for reading with the MPI-IO driver on `comm`. Checks format, version and
// every array's length and bounds (offsets monotone, completion starts inside
// their sequence, tokens < vocab_size). Returns -1 with a message naming the file
// and the dataset on any problem.
int dataset_open(dpo_dataset_t *ds, const char *path, MPI_Comm comm, char *err, size_t err_len);
void dataset_close(dpo_dataset_t *ds);

// Longest sequence (prompt + completion) of a split, in tokens.
int dataset_max_seq_len(const dpo_split_t *s);
// Token count of pair i (chosen + rejected).
int64_t dataset_pair_tokens(const dpo_split_t *s, int64_t i);

// Reads the pairs idx[0..n) into a packed batch (chosen then rejected of each pair)
// and finalizes it. Returns -1 with a message when the batch capacity is too small
// or a read fails.
int dataset_read_batch(dpo_dataset_t *ds, const dpo_split_t *s, const int64_t *idx, int n,
                       dpo_batch_t *b, char *err, size_t err_len);

// ---- writing (single process) ----
typedef struct dataset_writer dataset_writer_t;

typedef struct {
    int vocab_size;
    const char *tokenizer;   // identity string (e.g. "byte-level-demo-v1" or a hash)
    const char *provenance;  // free text: generator, sources, counts dropped
} dataset_meta_t;

// Creates `path`.tmp; dataset_writer_commit renames it to `path` once complete and
// dataset_writer_abort deletes it (no half-written file is ever left under `path`).
dataset_writer_t *dataset_writer_create(const char *path, const dataset_meta_t *meta, char *err,
                                        size_t err_len);
// Starts a split: "train" or the name of a validation set.
int dataset_writer_begin_split(dataset_writer_t *w, const char *name);
int dataset_writer_add_pair(dataset_writer_t *w, const int32_t *chosen, int chosen_len,
                            int chosen_comp_start, const int32_t *rejected, int rejected_len,
                            int rejected_comp_start);
// Attaches an integer attribute to the current split (e.g. counts of dropped records).
int dataset_writer_split_attr(dataset_writer_t *w, const char *key, int64_t value);
// The message of the last refused call (add_pair is not sticky: the writer goes on).
const char *dataset_writer_error(const dataset_writer_t *w);
int dataset_writer_commit(dataset_writer_t *w, char *err, size_t err_len);
void dataset_writer_abort(dataset_writer_t *w);

// Writes reference log-prob sums (n_pairs each) for a split of an existing dataset,
// atomically (a copy of the file is updated and renamed over the original), tagging
// them with the reference model's identity.
int dataset_store_reference(const char *path, const char *split_group, const float *ref_chosen,
                            const float *ref_rejected, int64_t n_pairs, const char *reference_id,
                            char *err, size_t err_len);

// The values of one split for dataset_store_references.
typedef struct {
    const char *split;                 // "train", a validation set's name, or "/val/<name>"
    const float *chosen, *rejected;    // (n_pairs) each
    int64_t n_pairs;
} dataset_ref_split_t;

// dataset_store_reference for several splits at once: one copy of the file takes
// every split's values and is renamed over the original only when all are in.
// Also stamps the root with reference_producer (dpo/program.h).
int dataset_store_references(const char *path, const dataset_ref_split_t *splits, int n_splits,
                             const char *reference_id, char *err, size_t err_len);

#endif
