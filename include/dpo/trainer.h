// trainer.h — the DPO training loop and the reference-log-prob precompute mode.
#ifndef DPO_TRAINER_H
#define DPO_TRAINER_H

#include "dpo/backend.h"
#include "dpo/config.h"
#include "dpo/mesh.h"

// Exit status of a run stopped early by SIGUSR1/SIGTERM (after its checkpoint):
// distinct from success, so `afterok` job chains do not treat it as finished, and
// from 1 (errors) and 2 (usage).
#define TRAINER_STOPPED_BY_SIGNAL 3

// Trains as configured: validation every val_period steps, checkpoints every
// save_period steps, metrics to <log_dir>. SIGUSR1 or SIGTERM on any rank makes
// every rank finish the step, save a checkpoint (when checkpointing is enabled)
// and return TRAINER_STOPPED_BY_SIGNAL. Returns 0 when the run is complete; fatal
// errors end the job.
int trainer_train(const dpo_config_t *cfg, const dpo_mesh_t *mesh, const dpo_backend_t *be);

// Evaluation only: the policy's weights from `weights` (a checkpoint or Hugging Face
// folder), the reference exactly as training with this configuration has it (the
// initial policy.model_name, or dpo.reference_model, or precomputed log-probs);
// runs every validation split (dpo.val_max_pairs applies) and writes the records to
// <log_dir>/eval.jsonl. Returns 0.
int trainer_evaluate(const dpo_config_t *cfg, const dpo_mesh_t *mesh, const dpo_backend_t *be,
                     const char *weights);

// Computes the reference model's completion log-probs for every split of the
// dataset once and stores them in the dataset file (atomically), so that runs
// with dpo.precomputed_reference_logprobs = true load no reference model.
int trainer_precompute_reference(const dpo_config_t *cfg, const dpo_mesh_t *mesh,
                                 const dpo_backend_t *be);

#endif
