// trainer.h — the DPO training loop and the reference-log-prob precompute mode.
#ifndef DPO_TRAINER_H
#define DPO_TRAINER_H

#include "dpo/config.h"
#include "dpo/mesh.h"

// Trains as configured: validation every val_period steps, checkpoints every
// save_period steps, metrics to <log_dir>. Returns 0; fatal errors end the job.
int trainer_train(const dpo_config_t *cfg, const dpo_mesh_t *mesh);

// Computes the reference model's completion log-probs for every split of the
// dataset once and stores them in the dataset file (atomically), so that runs
// with dpo.precomputed_reference_logprobs = true load no reference model.
int trainer_precompute_reference(const dpo_config_t *cfg, const dpo_mesh_t *mesh);

#endif
