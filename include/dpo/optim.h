// optim.h — AdamW over the model's one parameter allocation, global-norm
// clipping, and the learning-rate schedule (warmup, then constant / linear /
// cosine decay).
#ifndef DPO_OPTIM_H
#define DPO_OPTIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpo/config.h"
#include "dpo/model.h"

// The moments cover the flat elements [off, off + n) of the parameter allocation:
// all of it (off 0, n = n_params) without sharding; with ZeRO-1 (policy.zero_stage
// = 1 and more than one data-parallel rank) this DP rank's shard, off = dp_rank *
// shard, n = shard = model->n_alloc / dp_size (the last shard ends in padding that
// belongs to no tensor).
typedef struct {
    float *m, *v;     // (n) device, first and second moments
    size_t off, n;
    int64_t t;        // optimizer steps taken (bias correction)
    bool sharded;     // ZeRO-1
    float *gshard;    // (n) device, sharded only: this shard's gradient summed over DP
} dpo_optim_t;

// Without sharding when zero_stage is 0 or the model's mesh has one DP rank.
void optim_init(dpo_optim_t *o, const dpo_model_t *model, int zero_stage);
void optim_free(dpo_optim_t *o, const dpo_model_t *model);

// Learning rate for optimizer step `step` (0-based) of `total_steps`.
float optim_lr(const dpo_optim_params_t *cfg, int64_t step, int64_t total_steps);

// Sums the micro-batch gradients over DP: all-reduced into model->grads, or with
// ZeRO-1 reduce-scattered into o->gshard (model->grads then holds this rank's
// unreduced contribution only).
void optim_reduce_grads(dpo_optim_t *o, dpo_model_t *model);

// Global L2 norm of the gradients over every tensor and every TP rank (replicated
// tensors counted once). Gradients must already be reduced over DP.
double optim_grad_norm(const dpo_model_t *model);
// The same after optim_reduce_grads, from the shards when sharded (sums of squares
// of the shards added over DP, then over TP by the same rule).
double optim_global_grad_norm(const dpo_optim_t *o, const dpo_model_t *model);

// Clips (when cfg->max_grad_norm > 0, by max/(norm+1e-6) as torch) and takes one
// AdamW step with learning rate lr; weight decay only on tensors with decay set.
// Sharded: updates this rank's shard from o->gshard, then all-gathers the
// parameters over DP.
void optim_step(dpo_optim_t *o, dpo_model_t *model, const dpo_optim_params_t *cfg, float lr,
                double grad_norm);

#endif
