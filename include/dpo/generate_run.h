// generate_run.h — the `dpo_hpc --generate` program mode (src/tools/generate_run.c):
// JSONL prompts in, continuations out. Program layer: the generation algorithm
// itself is generate.h.
#ifndef DPO_GENERATE_RUN_H
#define DPO_GENERATE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "dpo/backend.h"
#include "dpo/config.h"
#include "dpo/mesh.h"

// The dpo_hpc --generate mode: prompts from in_path (JSONL, rank 0 reads) continued
// by policy.model_name with the policy.generation keys, results to out_path (rank 0
// writes, atomically). tokenizer_dir may be NULL (then the model's folder is tried);
// eos_ids adds stop ids to the tokenizer's EOS. Each prompt is continued `samples`
// times (sample s of prompt i draws from RNG stream (s << 32) | i, so sample 0 is
// the single-sample result). `rollouts` writes NeMo Gym rollout records
// (responses_create_params.input / output message, without a reward: a verifier
// adds it before dpo_pairs) instead of id records. Returns the exit status.
typedef struct {
    const char *in_path, *out_path, *tokenizer_dir;
    const int32_t *eos_ids;
    int n_eos;
    int samples;
    bool rollouts;
} gen_run_opts_t;

int generate_main(const dpo_config_t *cfg, const dpo_mesh_t *mesh, const dpo_backend_t *be,
                  const gen_run_opts_t *o);

#endif
