// ckpt.h — checkpoints in HDF5 (format in doc/checkpoint-format.md): one dataset
// per tensor at its full logical shape (each TP rank writes its slab), optimizer
// moments, the training position and the run configuration. Written to a
// temporary name and renamed, so a crash never leaves a half-written checkpoint.
#ifndef DPO_CKPT_H
#define DPO_CKPT_H

#include <stdbool.h>
#include <stdint.h>

#include "dpo/config.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "dpo/optim.h"

#define CKPT_FORMAT_NAME "dpo_hpc.checkpoint"
#define CKPT_FORMAT_VERSION 1

// Where training stands; enough to continue bit for bit.
typedef struct {
    int64_t step;         // optimizer steps completed
    int64_t epoch;        // current epoch (0-based)
    int64_t epoch_pos;    // pairs of this epoch already consumed
    uint64_t seed;        // shuffles are a pure function of (seed, epoch)
    double metric;        // value of checkpointing.metric_name at save time
    bool has_metric;
    double elapsed_sec;   // training time before this checkpoint
} dpo_train_state_t;

// Writes <dir>/step_<step>.h5 (collective over the mesh). opt may be NULL (weights
// only). Returns 0, or -1 on every rank with the same message (naming the file and
// the errno text, e.g. a full disk), the temporary file removed and every earlier
// checkpoint untouched.
int ckpt_save(const char *dir, const dpo_mesh_t *mesh, const dpo_model_t *model,
              const dpo_optim_t *opt, const dpo_train_state_t *st, const dpo_config_t *cfg,
              char *err, size_t err_len);

// Reads the architecture stored in a checkpoint.
int ckpt_read_model_config(const char *path, dpo_model_config_t *mc, char *err, size_t err_len);
// Loads the slabs of every tensor the model's layout needs (shapes checked).
int ckpt_load_model(const char *path, dpo_model_t *model, char *err, size_t err_len);
// Loads optimizer moments and step count (same slabs as the parameters).
int ckpt_load_optim(const char *path, const dpo_model_t *model, dpo_optim_t *opt, char *err,
                    size_t err_len);
int ckpt_load_state(const char *path, dpo_train_state_t *st, char *err, size_t err_len);

// Path of the checkpoint with the highest step in dir (malloc'ed), or NULL.
char *ckpt_find_latest(const char *dir);
// Deletes all but the keep_top_k best checkpoints by their stored metric (the
// latest is always kept; checkpoints without a metric count as worst).
void ckpt_prune(const char *dir, int keep_top_k, bool higher_is_better);

#endif
