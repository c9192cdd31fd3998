// prep.h — dpo_prep's pipeline: JSONL records -> chat-rendered text -> token ids ->
// one split of the HDF5 preference dataset, with over-long and invalid records
// counted by reason (doc/data-prep.md).
#ifndef DPO_PREP_H
#define DPO_PREP_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dpo/chat_template.h"
#include "dpo/dataset.h"
#include "dpo/prep_record.h"
#include "dpo/tokenizer.h"

typedef enum { OVERLONG_DROP = 0, OVERLONG_TRUNCATE } prep_overlong_t;

typedef struct {
    dpo_tokenizer_t *tok;
    const chat_template_t *tmpl;
    prep_format_t format;   // FMT_AUTO: detected per file from its first record
    prep_keys_t keys;       // binary format key names
    int max_length;         // tokens per sequence (prompt + completion)
    prep_overlong_t overlong;
    bool skip_invalid;      // count and skip bad records instead of stopping
    int report_invalid;     // how many skipped records to describe
    double progress_every;  // seconds between progress lines on stderr (0: never)
} prep_opts_t;

typedef struct {
    int64_t records;                  // records read (valid or not)
    int64_t written;                  // pairs written
    int64_t invalid;                  // skipped with --skip-invalid
    int64_t dropped_too_long;         // --overlong drop
    int64_t dropped_prompt_too_long;  // --overlong truncate: no room left for a completion
    int64_t truncated;                // --overlong truncate: completions cut
    int64_t retokenized;              // completion tokenised apart (prompt boundary merged)
    int64_t prompt_tokens, chosen_tokens, rejected_tokens;  // written, completion parts
    int max_prompt, max_seq;
    double seconds;
} prep_stats_t;

// Reads `files` (in order) into the split `name` of `w`. Returns 0, or -1 with a
// message naming file:line (a bad record without skip_invalid, an I/O error).
int prep_split(const prep_opts_t *o, dataset_writer_t *w, const char *name, char **files,
               int n_files, prep_stats_t *st, char *err, size_t err_len);

// The split's counts as HDF5 attributes and as a summary on `f`.
int prep_stats_store(dataset_writer_t *w, const prep_stats_t *st);
void prep_stats_print(FILE *f, const char *name, const prep_stats_t *st);

#endif
