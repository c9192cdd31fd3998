// optim.h — AdamW over the model's one parameter allocation, global-norm
// clipping, and the learning-rate schedule (warmup, then constant / linear /
// cosine decay).
#ifndef DPO_OPTIM_H
#define DPO_OPTIM_H

#include <stdint.h>

#include "dpo/config.h"
#include "dpo/model.h"

typedef struct {
    float *m, *v;     // (n_params) device, first and second moments
    size_t n;
    int64_t t;        // optimizer steps taken (bias correction)
} dpo_optim_t;

void optim_init(dpo_optim_t *o, const dpo_model_t *model);
void optim_free(dpo_optim_t *o, const dpo_model_t *model);

// Learning rate for optimizer step `step` (0-based) of `total_steps`.
float optim_lr(const dpo_config_t *cfg, int64_t step, int64_t total_steps);

// Global L2 norm of the gradients over every tensor and every TP rank (replicated
// tensors counted once). Gradients must already be reduced over DP.
double optim_grad_norm(const dpo_model_t *model);

// Clips (when cfg->max_grad_norm > 0, by max/(norm+1e-6) as torch) and takes one
// AdamW step with learning rate lr; weight decay only on tensors with decay set.
void optim_step(dpo_optim_t *o, dpo_model_t *model, const dpo_config_t *cfg, float lr,
                double grad_norm);

#endif
