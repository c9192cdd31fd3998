// optim.c — AdamW over the model's one parameter allocation, global-norm clipping,
// and the learning-rate schedule. doc/losses.md ("Optimizer") has the formulas.
#include "dpo/optim.h"

#include <math.h>
#include <string.h>

#include "dpo/comm.h"

#define OPTIM_PI 3.14159265358979323846

void optim_init(dpo_optim_t *o, const dpo_model_t *model) {
    memset(o, 0, sizeof *o);
    o->n = model->layout.n_params;
    o->m = (float *)model->be->alloc(o->n * sizeof(float));  // zero-filled
    o->v = (float *)model->be->alloc(o->n * sizeof(float));
    o->t = 0;
}

void optim_free(dpo_optim_t *o, const dpo_model_t *model) {
    if (o->m) model->be->free(o->m);
    if (o->v) model->be->free(o->v);
    o->m = o->v = NULL;
    o->n = 0;
    o->t = 0;
}

// Warmup: step < W (W = warmup_steps):  lr · (step + 1) / W
// then, with p = clamp((step - W) / (total_steps - W), 0, 1) and r = min_lr_ratio:
//   constant: lr
//   linear:   lr · (1 - (1 - r) · p)
//   cosine:   lr · (r + (1 - r) · 0.5 · (1 + cos(π p)))
// p reaches 1 (lr · r) at step == total_steps, one past the last step taken;
// total_steps <= W gives p = 1 after the warmup.
float optim_lr(const dpo_config_t *cfg, int64_t step, int64_t total_steps) {
    const double lr = (double)cfg->lr;
    const int64_t w = cfg->warmup_steps > 0 ? cfg->warmup_steps : 0;
    if (step < 0) step = 0;
    if (step < w) return (float)(lr * (double)(step + 1) / (double)w);
    if (cfg->sched_type == SCHED_CONSTANT) return (float)lr;

    const double r = (double)cfg->min_lr_ratio;
    const int64_t decay = total_steps - w;
    double p = decay > 0 ? (double)(step - w) / (double)decay : 1.0;
    if (p < 0.0) p = 0.0;
    if (p > 1.0) p = 1.0;
    double f;
    if (cfg->sched_type == SCHED_LINEAR) {
        f = 1.0 - (1.0 - r) * p;
    } else {  // SCHED_COSINE
        f = r + (1.0 - r) * 0.5 * (1.0 + cos(OPTIM_PI * p));
    }
    return (float)(lr * f);
}

double optim_grad_norm(const dpo_model_t *model) {
    const dpo_layout_t *lay = &model->layout;
    const dpo_backend_t *be = model->be;
    // Sharded tensors: each TP rank holds a different slab, so their sums of squares
    // add up over TP. Replicated tensors (SHARD_NONE) hold the same gradient on every
    // TP rank: counted once, outside the TP sum. A KV slab replicated over R of the TP
    // ranks (n_kv_heads < tp_size) enters the TP sum with weight 1/R: once in all.
    double sharded = 0.0, replicated = 0.0;
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        if (t->numel == 0) continue;
        double s = be->sumsq(model->grads + t->offset, t->numel);
        if (t->shard == SHARD_NONE)
            replicated += s;
        else
            sharded += t->tp_replicas > 1 ? s / t->tp_replicas : s;
    }
    if (model->mesh) comm_allreduce_f64(model->mesh, GROUP_TP, &sharded, 1, REDUCE_SUM);
    return sqrt(sharded + replicated);
}

void optim_step(dpo_optim_t *o, dpo_model_t *model, const dpo_config_t *cfg, float lr,
                double grad_norm) {
    const dpo_layout_t *lay = &model->layout;
    const dpo_backend_t *be = model->be;

    // Global-norm clipping, as torch.nn.utils.clip_grad_norm_: scale by
    // max / (norm + 1e-6) when the norm exceeds max.
    if (cfg->max_grad_norm > 0.0f && grad_norm > (double)cfg->max_grad_norm) {
        double coef = (double)cfg->max_grad_norm / (grad_norm + 1e-6);
        be->scale_inplace(model->grads, (float)coef, lay->n_params);
    }

    o->t += 1;
    const double bc1 = 1.0 - pow((double)cfg->beta1, (double)o->t);
    const double bc2 = 1.0 - pow((double)cfg->beta2, (double)o->t);
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        if (t->numel == 0) continue;
        float wd = t->decay ? cfg->weight_decay : 0.0f;
        be->adamw(model->params + t->offset, model->grads + t->offset, o->m + t->offset,
                  o->v + t->offset, t->numel, lr, cfg->beta1, cfg->beta2, cfg->adam_eps, wd,
                  (float)bc1, (float)bc2);
    }
}
