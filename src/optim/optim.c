// optim.c — AdamW over the model's one parameter allocation, global-norm clipping,
// and the learning-rate schedule. doc/losses.md ("Optimizer") has the formulas.
#include "dpo/optim.h"

#include <math.h>
#include <string.h>

#include "dpo/comm.h"
#include "dpo/dcomm.h"

#define OPTIM_PI 3.14159265358979323846

void optim_init(dpo_optim_t *o, const dpo_model_t *model, int zero_stage) {
    memset(o, 0, sizeof *o);
    const dpo_mesh_t *mesh = model->mesh;
    o->sharded = zero_stage >= 1 && mesh && mesh->dp_size > 1;
    if (o->sharded) {
        // model->n_alloc is a multiple of dp_size: equal shards, padding at the end.
        o->n = model->n_alloc / (size_t)mesh->dp_size;
        o->off = (size_t)mesh->dp_rank * o->n;
        o->gshard = (float *)dpo_alloc(model->be, o->n * sizeof(float));
    } else {
        o->n = model->layout.n_trainable;  // frozen tensors have no moments
        o->off = 0;
    }
    o->m = (float *)dpo_alloc(model->be, o->n * sizeof(float));  // zero-filled
    o->v = (float *)dpo_alloc(model->be, o->n * sizeof(float));
    o->t = 0;
}

void optim_free(dpo_optim_t *o, const dpo_model_t *model) {
    if (o->m) dpo_free(model->be, o->m);
    if (o->v) dpo_free(model->be, o->v);
    if (o->gshard) dpo_free(model->be, o->gshard);
    memset(o, 0, sizeof *o);
}

void optim_reduce_grads(dpo_optim_t *o, dpo_model_t *model) {
    if (o->sharded)
        dcomm_reduce_scatter_f32(model->mesh->dcomm, DPO_GROUP_DP, model->grads, o->gshard, o->n);
    else if (model->mesh)
        dcomm_allreduce_f32(model->mesh->dcomm, DPO_GROUP_DP, model->grads, model->layout.n_trainable,
                           DPO_REDUCE_SUM);
}

// The part [*lo, *hi) of tensor t's flat range that lies in the shard; false when empty.
static bool shard_part(const dpo_optim_t *o, const dpo_tensor_t *t, size_t *lo, size_t *hi) {
    size_t a = t->offset, b = t->offset + t->numel;
    size_t c = o->off, d = o->off + o->n;
    *lo = a > c ? a : c;
    *hi = b < d ? b : d;
    return *lo < *hi;
}

// Warmup: step < W (W = warmup_steps):  lr · (step + 1) / W
// then, with p = clamp((step - W) / (total_steps - W), 0, 1) and r = min_lr_ratio:
//   constant: lr
//   linear:   lr · (1 - (1 - r) · p)
//   cosine:   lr · (r + (1 - r) · 0.5 · (1 + cos(π p)))
// p reaches 1 (lr · r) at step == total_steps, one past the last step taken;
// total_steps <= W gives p = 1 after the warmup.
float optim_lr(const dpo_optim_params_t *cfg, int64_t step, int64_t total_steps) {
    const double lr = (double)cfg->lr;
    const int64_t w = cfg->warmup_steps > 0 ? cfg->warmup_steps : 0;
    if (step < 0) step = 0;
    if (step < w) return (float)(lr * (double)(step + 1) / (double)w);
    if (cfg->sched_type == DPO_SCHED_CONSTANT) return (float)lr;

    const double r = (double)cfg->min_lr_ratio;
    const int64_t decay = total_steps - w;
    double p = decay > 0 ? (double)(step - w) / (double)decay : 1.0;
    if (p < 0.0) p = 0.0;
    if (p > 1.0) p = 1.0;
    double f;
    if (cfg->sched_type == DPO_SCHED_LINEAR) {
        f = 1.0 - (1.0 - r) * p;
    } else {  // DPO_SCHED_COSINE
        f = r + (1.0 - r) * 0.5 * (1.0 + cos(OPTIM_PI * p));
    }
    return (float)(lr * f);
}

double optim_grad_norm(const dpo_model_t *model) {
    const dpo_layout_t *lay = &model->layout;
    const dpo_backend_t *be = model->be;
    // Sharded tensors: each TP rank holds a different slab, so their sums of squares
    // add up over TP. Replicated tensors (DPO_SHARD_NONE) hold the same gradient on every
    // TP rank: counted once, outside the TP sum. A KV slab replicated over R of the TP
    // ranks (n_kv_heads < tp_size) enters the TP sum with weight 1/R: once in all.
    double sharded = 0.0, replicated = 0.0;
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        if (t->numel == 0 || t->frozen) continue;
        double s = dpo_sumsq(be, model->grads + t->offset, t->numel);
        if (t->shard == DPO_SHARD_NONE)
            replicated += s;
        else
            sharded += t->tp_replicas > 1 ? s / t->tp_replicas : s;
    }
    if (model->mesh) comm_allreduce_f64(model->mesh, DPO_GROUP_TP, &sharded, 1, DPO_REDUCE_SUM);
    return sqrt(sharded + replicated);
}

double optim_global_grad_norm(const dpo_optim_t *o, const dpo_model_t *model) {
    if (!o->sharded) return optim_grad_norm(model);
    const dpo_layout_t *lay = &model->layout;
    const dpo_backend_t *be = model->be;
    // As optim_grad_norm, over this rank's shard only; the DP shards are disjoint and
    // together cover every element once, so summing them over DP gives the same
    // sums (up to the order of double additions), then the TP rule applies.
    double sums[2] = {0.0, 0.0};  // sharded, replicated
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        size_t lo, hi;
        if (t->numel == 0 || t->frozen || !shard_part(o, t, &lo, &hi)) continue;
        double s = dpo_sumsq(be, o->gshard + (lo - o->off), hi - lo);
        if (t->shard == DPO_SHARD_NONE)
            sums[1] += s;
        else
            sums[0] += t->tp_replicas > 1 ? s / t->tp_replicas : s;
    }
    comm_allreduce_f64(model->mesh, DPO_GROUP_DP, sums, 2, DPO_REDUCE_SUM);
    comm_allreduce_f64(model->mesh, DPO_GROUP_TP, &sums[0], 1, DPO_REDUCE_SUM);
    return sqrt(sums[0] + sums[1]);
}

void optim_step(dpo_optim_t *o, dpo_model_t *model, const dpo_optim_params_t *cfg, float lr,
                double grad_norm) {
    const dpo_layout_t *lay = &model->layout;
    const dpo_backend_t *be = model->be;
    float *grads = o->sharded ? o->gshard : model->grads;  // indexed from o->off
    size_t n_grads = o->sharded ? o->n : lay->n_trainable;

    // Global-norm clipping, as torch.nn.utils.clip_grad_norm_: scale by
    // max / (norm + 1e-6) when the norm exceeds max.
    if (cfg->max_grad_norm > 0.0f && grad_norm > (double)cfg->max_grad_norm) {
        double coef = (double)cfg->max_grad_norm / (grad_norm + 1e-6);
        dpo_scale_inplace(be, grads, (float)coef, n_grads, DPO_F32);
    }

    o->t += 1;
    const double bc1 = 1.0 - pow((double)cfg->beta1, (double)o->t);
    const double bc2 = 1.0 - pow((double)cfg->beta2, (double)o->t);
    // Per tensor (weight decay is a property of the tensor), over the part of it that
    // the moments cover: all of it, or its intersection with this rank's shard.
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        size_t lo, hi;
        if (t->numel == 0 || t->frozen || !shard_part(o, t, &lo, &hi)) continue;
        float wd = t->decay ? cfg->weight_decay : 0.0f;
        size_t k = lo - o->off;
        dpo_adamw(be, model->params + lo, grads + k, o->m + k, o->v + k, hi - lo, lr, cfg->beta1,
                  cfg->beta2, cfg->adam_eps, wd, (float)bc1, (float)bc2);
    }
    // Every DP rank updated its own shard: gather the full parameters everywhere.
    if (o->sharded)
        dcomm_allgather_f32(model->mesh->dcomm, DPO_GROUP_DP, model->params + o->off, model->params,
                            o->n);
}
