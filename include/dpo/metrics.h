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
    int write_errno;  // first failed write of the current record (0: none)
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

// Rank 0 opens <log_dir>/metrics.jsonl, truncating it (a fresh run).
int metrics_open(dpo_metrics_t *m, const char *log_dir, bool is_root, char *err, size_t err_len);
// A run resumed from the checkpoint of step `step`: rank 0 keeps the complete records
// of metrics.jsonl up to that step (later ones, logged after the checkpoint by the
// run that stopped, come again; a partial last line is dropped) by writing them to
// metrics.jsonl.tmp, fsync and rename, then appends. Returns 0, or -1 with a message.
int metrics_open_resumed(dpo_metrics_t *m, const char *log_dir, bool is_root, int64_t step,
                         char *err, size_t err_len);
// The same as metrics_open for <log_dir>/<name> (the evaluation mode writes eval.jsonl).
int metrics_open_named(dpo_metrics_t *m, const char *log_dir, const char *name, bool is_root,
                       char *err, size_t err_len);
// Appends one JSON record (flushed) and prints one line (rank 0 only; no-op
// elsewhere). A failed write ends the job naming the file and the errno text.
void metrics_log(dpo_metrics_t *m, const dpo_metrics_ctx_t *ctx, const dpo_loss_stats_t *st);
// Flushes, syncs and closes; a failure ends the job naming the file.
void metrics_close(dpo_metrics_t *m);
// Looks up a field of a record by name ("loss", "accuracy", "margins", ...);
// returns false when the name is unknown.
bool metrics_field(const dpo_loss_stats_t *st, const char *field, double *value);

#endif
