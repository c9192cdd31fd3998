// metrics.h — per-step reporting: one readable line on rank 0's stdout and one
// JSON object per line appended to <log_dir>/metrics.jsonl.
#ifndef DPO_METRICS_H
#define DPO_METRICS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "dpo/loss.h"

typedef struct {
    FILE *jsonl;   // rank 0 only; NULL elsewhere
    char path[1100];
} dpo_metrics_t;

// What one record carries besides the loss statistics.
typedef struct {
    int64_t step;
    int64_t total_steps;
    int64_t epoch;
    const char *split;     // "train" or "val:<name>"
    double grad_norm;      // train only (negative = absent)
    double lr;             // train only (negative = absent)
    double tokens_per_sec;
    double elapsed_sec;
    double step_sec;
    int skipped;           // train only: 1 when the step's update was skipped (non-finite)
} dpo_metrics_ctx_t;

// Rank 0 opens <log_dir>/metrics.jsonl (appending when resuming, else truncating).
int metrics_open(dpo_metrics_t *m, const char *log_dir, bool is_root, bool append, char *err,
                 size_t err_len);
// The same for <log_dir>/<name> (the evaluation mode writes eval.jsonl).
int metrics_open_named(dpo_metrics_t *m, const char *log_dir, const char *name, bool is_root,
                       bool append, char *err, size_t err_len);
// Appends one JSON record and prints one line (rank 0 only; no-op elsewhere).
void metrics_log(dpo_metrics_t *m, const dpo_metrics_ctx_t *ctx, const dpo_loss_stats_t *st);
void metrics_close(dpo_metrics_t *m);
// Looks up a field of a record by name ("loss", "accuracy", "margins", ...);
// returns false when the name is unknown.
bool metrics_field(const dpo_loss_stats_t *st, const char *field, double *value);

#endif
