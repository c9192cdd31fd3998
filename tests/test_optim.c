// test_optim.c — src/optim/optim.c: the learning-rate schedule against hand-computed
// values, two AdamW steps on a tiny model against an independent double-precision
// implementation, the global gradient norm, and clipping.
//
// Run on one rank: everything at tensor_parallel_size 1. Run on two ranks: the
// gradient norm again at tensor_parallel_size 2, where replicated tensors must be
// counted once and sharded ones summed over the TP group (the test fills every
// tensor from its full logical coordinates, so the expected norm is layout-free).
// ZeRO-1 (sharded moments) against the replicated optimizer at DP = ranks, and at
// TP 2 x DP 2 on four ranks.
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "dpo/optim.h"
#include "testutil.h"

// ---- learning-rate schedule ----
static void test_schedule(void) {
    dpo_optim_params_t c;
    memset(&c, 0, sizeof c);
    const double lr = 1e-3;
    c.lr = (float)lr;
    c.min_lr_ratio = 0.1f;
    c.warmup_steps = 4;
    const int64_t total = 14;  // decay over steps 4..14: p = (step - 4) / 10
    const double r = (double)c.min_lr_ratio;
    const double tol = 2e-7;   // the schedule returns a float

    // warmup, the same for every type: lr·(step+1)/4 = 0.25, 0.5, 0.75, 1.0 × lr
    for (int type = DPO_SCHED_CONSTANT; type <= DPO_SCHED_COSINE; type++) {
        c.sched_type = (dpo_sched_type_t)type;
        CHECK_CLOSE(optim_lr(&c, 0, total), 0.25e-3, tol, 0);
        CHECK_CLOSE(optim_lr(&c, 1, total), 0.50e-3, tol, 0);
        CHECK_CLOSE(optim_lr(&c, 2, total), 0.75e-3, tol, 0);
        CHECK_CLOSE(optim_lr(&c, 3, total), 1.00e-3, tol, 0);
        CHECK_CLOSE(optim_lr(&c, 4, total), 1.00e-3, tol, 0);  // p = 0: the peak
    }

    // constant after the warmup
    c.sched_type = DPO_SCHED_CONSTANT;
    CHECK_CLOSE(optim_lr(&c, 9, total), 1e-3, tol, 0);
    CHECK_CLOSE(optim_lr(&c, 13, total), 1e-3, tol, 0);
    CHECK_CLOSE(optim_lr(&c, 1000, total), 1e-3, tol, 0);

    // linear: lr·(1 - (1 - r)·p), r = 0.1 (as a float: 0.100000001490116...)
    //   step 9:  p = 0.5 → 1 - 0.9·0.5 = 0.55
    //   step 13: p = 0.9 → 1 - 0.9·0.9 = 0.19
    //   step 14 and beyond: p = 1 → 0.1
    c.sched_type = DPO_SCHED_LINEAR;
    CHECK_CLOSE(optim_lr(&c, 9, total), lr * 0.55, tol, 0);
    CHECK_CLOSE(optim_lr(&c, 13, total), lr * 0.19, 1e-6, 0);
    CHECK_CLOSE(optim_lr(&c, 14, total), lr * 0.1, 1e-6, 0);
    CHECK_CLOSE(optim_lr(&c, 500, total), lr * 0.1, 1e-6, 0);
    CHECK_CLOSE(optim_lr(&c, 6, total), lr * (1 - (1 - r) * 0.2), tol, 0);  // 0.82

    // cosine: lr·(r + (1 - r)·(1 + cos(π p))/2)
    //   step 9:  p = 0.5, cos = 0 → 0.1 + 0.45 = 0.55
    //   step 6:  p = 0.2, cos(0.2π) = 0.80901699437494742 → 0.1 + 0.45·1.80901699437 = 0.91405764746872634
    //   step 12: p = 0.8, cos(0.8π) = -0.80901699437494742 → 0.1 + 0.45·0.19098300563 = 0.18594235253127366
    //   step 14: p = 1 → 0.1
    c.sched_type = DPO_SCHED_COSINE;
    CHECK_CLOSE(optim_lr(&c, 9, total), lr * 0.55, 1e-6, 0);
    CHECK_CLOSE(optim_lr(&c, 6, total), lr * 0.91405764746872634, 1e-6, 0);
    CHECK_CLOSE(optim_lr(&c, 12, total), lr * 0.18594235253127366, 1e-6, 0);
    CHECK_CLOSE(optim_lr(&c, 14, total), lr * 0.1, 1e-6, 0);
    CHECK_CLOSE(optim_lr(&c, 99, total), lr * 0.1, 1e-6, 0);

    // no warmup: step 0 is the peak; linear over 10 steps, step 5 → 0.55
    c.warmup_steps = 0;
    c.sched_type = DPO_SCHED_LINEAR;
    CHECK_CLOSE(optim_lr(&c, 0, 10), lr, tol, 0);
    CHECK_CLOSE(optim_lr(&c, 5, 10), lr * 0.55, 1e-6, 0);
    // min_lr_ratio 0: linear ends at 0, cosine at step 5 of 10 is exactly lr/2
    c.min_lr_ratio = 0.0f;
    CHECK_CLOSE(optim_lr(&c, 9, 10), lr * 0.1, 1e-6, 0);
    CHECK(optim_lr(&c, 10, 10) == 0.0f);
    c.sched_type = DPO_SCHED_COSINE;
    CHECK_CLOSE(optim_lr(&c, 5, 10), lr * 0.5, 1e-6, 0);

    // the LR never exceeds the peak and never falls below the floor
    c.min_lr_ratio = 0.1f;
    c.warmup_steps = 3;
    for (int type = DPO_SCHED_CONSTANT; type <= DPO_SCHED_COSINE; type++) {
        c.sched_type = (dpo_sched_type_t)type;
        for (int64_t s = 0; s < 40; s++) {
            float v = optim_lr(&c, s, 30);
            CHECK(v > 0.0f && v <= c.lr);
            if (s >= 3) CHECK(v >= c.lr * c.min_lr_ratio * (1.0f - 1e-6f));
        }
    }
}

// ---- tiny model ----
static dpo_model_config_t tiny_config(void) {
    dpo_model_config_t mc;
    memset(&mc, 0, sizeof mc);
    mc.vocab_size = 29;  // odd: the vocabulary is padded at tensor_parallel_size 2
    mc.hidden_size = 16;
    mc.num_hidden_layers = 2;
    mc.num_attention_heads = 4;
    mc.num_key_value_heads = 2;
    mc.head_dim = 4;
    mc.intermediate_size = 24;
    mc.rope_theta = 10000.0f;
    mc.rms_norm_eps = 1e-5f;
    mc.tie_word_embeddings = false;
    mc.initializer_range = 0.02f;
    return mc;
}

static void fill_host(float *h, size_t n, unsigned seed, float lo, float hi) {
    test_fill_uniform(h, n, seed, lo, hi);
}

// Independent double-precision AdamW (torch.optim.AdamW semantics).
typedef struct {
    double *p, *m, *v;
} ref_state_t;

static void ref_adamw_step(ref_state_t *s, const dpo_layout_t *lay, const float *grads, int t,
                           double lr, double b1, double b2, double eps, double wd) {
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *ten = &lay->tensors[i];
        double w = ten->decay ? wd : 0.0;
        for (size_t j = ten->offset; j < ten->offset + ten->numel; j++) {
            double g = (double)grads[j];
            s->m[j] = b1 * s->m[j] + (1.0 - b1) * g;
            s->v[j] = b2 * s->v[j] + (1.0 - b2) * g * g;
            double mhat = s->m[j] / bc1, vhat = s->v[j] / bc2;
            s->p[j] -= lr * (w * s->p[j] + mhat / (sqrt(vhat) + eps));
        }
    }
}

static double direct_norm(const dpo_layout_t *lay, const float *g) {
    double s = 0.0;
    for (int i = 0; i < lay->n_tensors; i++)
        for (size_t j = lay->tensors[i].offset; j < lay->tensors[i].offset + lay->tensors[i].numel;
             j++)
            s += (double)g[j] * (double)g[j];
    return sqrt(s);
}

static void test_adamw_and_clipping(const dpo_mesh_t *mesh) {
    const dpo_backend_t *be = backend_cpu();
    dpo_model_config_t mc = tiny_config();
    dpo_model_t model;
    char err[256] = "";
    if (model_init(&model, be, mesh, &mc, true, 32, 16, err, sizeof err) != 0) {
        test_fail(__FILE__, __LINE__, "model_init: %s", err);
        return;
    }
    const dpo_layout_t *lay = &model.layout;
    const size_t n = lay->n_params;
    CHECK(n > 0);

    // the layout has both kinds of tensors (matrices decay, norm weights do not)
    int n_decay = 0, n_nodecay = 0;
    for (int i = 0; i < lay->n_tensors; i++) {
        if (lay->tensors[i].decay)
            n_decay++;
        else
            n_nodecay++;
    }
    CHECK(n_decay > 0 && n_nodecay > 0);

    float *hp = malloc(n * sizeof(float)), *hg = malloc(n * sizeof(float));
    float *hg2 = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
    ref_state_t ref = {calloc(n, sizeof(double)), calloc(n, sizeof(double)),
                       calloc(n, sizeof(double))};
    fill_host(hp, n, 11, -1.0f, 1.0f);
    fill_host(hg, n, 12, -0.5f, 0.5f);
    fill_host(hg2, n, 13, -2.0f, 2.0f);
    for (size_t j = 0; j < n; j++) ref.p[j] = (double)hp[j];
    dpo_to_device(be, model.params, hp, n * sizeof(float));

    dpo_optim_params_t c;
    memset(&c, 0, sizeof c);
    c.beta1 = 0.9f;
    c.beta2 = 0.95f;
    c.adam_eps = 1e-8f;
    c.weight_decay = 0.25f;
    c.max_grad_norm = 0.0f;  // no clipping for the AdamW comparison
    const float lr1 = 1e-2f, lr2 = 5e-3f;

    dpo_optim_t opt;
    optim_init(&opt, &model, 0);
    CHECK(opt.n == n && opt.t == 0);
    {
        // moments start at zero
        dpo_to_host(be, out, opt.m, n * sizeof(float));
        int nz = 0;
        for (size_t j = 0; j < n; j++) nz += out[j] != 0.0f;
        CHECK(nz == 0);
    }

    // grad norm: sqrt of the sum of squares, directly
    dpo_to_device(be, model.grads, hg, n * sizeof(float));
    double norm = optim_grad_norm(&model);
    CHECK_CLOSE(norm, direct_norm(lay, hg), 1e-10, 0);

    // step 1
    optim_step(&opt, &model, &c, lr1, norm);
    CHECK(opt.t == 1);
    ref_adamw_step(&ref, lay, hg, 1, (double)lr1, (double)c.beta1, (double)c.beta2,
                   (double)c.adam_eps, (double)c.weight_decay);
    dpo_to_host(be, out, model.params, n * sizeof(float));
    double maxerr = 0.0;
    for (size_t j = 0; j < n; j++) {
        CHECK_CLOSE(out[j], ref.p[j], 1e-5, 1e-6);
        maxerr = fmax(maxerr, fabs(out[j] - ref.p[j]));
    }
    // no clipping: the gradients are untouched
    dpo_to_host(be, out, model.grads, n * sizeof(float));
    CHECK(memcmp(out, hg, n * sizeof(float)) == 0);

    // step 2 with other gradients
    dpo_to_device(be, model.grads, hg2, n * sizeof(float));
    optim_step(&opt, &model, &c, lr2, optim_grad_norm(&model));
    CHECK(opt.t == 2);
    ref_adamw_step(&ref, lay, hg2, 2, (double)lr2, (double)c.beta1, (double)c.beta2,
                   (double)c.adam_eps, (double)c.weight_decay);
    dpo_to_host(be, out, model.params, n * sizeof(float));
    for (size_t j = 0; j < n; j++) {
        CHECK_CLOSE(out[j], ref.p[j], 1e-5, 1e-6);
        maxerr = fmax(maxerr, fabs(out[j] - ref.p[j]));
    }
    dpo_to_host(be, out, opt.m, n * sizeof(float));
    for (size_t j = 0; j < n; j++) CHECK_CLOSE(out[j], ref.m[j], 1e-5, 1e-7);
    dpo_to_host(be, out, opt.v, n * sizeof(float));
    for (size_t j = 0; j < n; j++) CHECK_CLOSE(out[j], ref.v[j], 1e-5, 1e-9);
    printf("test_optim: AdamW 2 steps on %zu params, max |param - double ref| = %.3g\n", n,
           maxerr);

    // weight decay reaches only the decay tensors: one more step with zero gradients
    // moves a no-decay tensor only by its (decaying) momentum, a decay tensor also by
    // lr·wd·p — check against the reference again, then that the difference is there.
    memset(hg, 0, n * sizeof(float));
    dpo_to_device(be, model.grads, hg, n * sizeof(float));
    optim_step(&opt, &model, &c, lr2, 0.0);
    ref_adamw_step(&ref, lay, hg, 3, (double)lr2, (double)c.beta1, (double)c.beta2,
                   (double)c.adam_eps, (double)c.weight_decay);
    dpo_to_host(be, out, model.params, n * sizeof(float));
    for (size_t j = 0; j < n; j++) CHECK_CLOSE(out[j], ref.p[j], 1e-5, 1e-6);
    {
        // the same step without any weight decay differs exactly on decay tensors
        ref_state_t r2 = {malloc(n * sizeof(double)), malloc(n * sizeof(double)),
                          malloc(n * sizeof(double))};
        // rebuild the state before step 3 by replaying steps 1-2 with the same grads
        for (size_t j = 0; j < n; j++) {
            r2.p[j] = (double)hp[j];
            r2.m[j] = r2.v[j] = 0.0;
        }
        float *g1 = malloc(n * sizeof(float));
        fill_host(g1, n, 12, -0.5f, 0.5f);
        ref_adamw_step(&r2, lay, g1, 1, (double)lr1, (double)c.beta1, (double)c.beta2,
                       (double)c.adam_eps, (double)c.weight_decay);
        ref_adamw_step(&r2, lay, hg2, 2, (double)lr2, (double)c.beta1, (double)c.beta2,
                       (double)c.adam_eps, (double)c.weight_decay);
        ref_adamw_step(&r2, lay, hg, 3, (double)lr2, (double)c.beta1, (double)c.beta2,
                       (double)c.adam_eps, 0.0);
        for (int i = 0; i < lay->n_tensors; i++) {
            const dpo_tensor_t *t = &lay->tensors[i];
            double dmax = 0.0;
            for (size_t j = t->offset; j < t->offset + t->numel; j++)
                dmax = fmax(dmax, fabs(r2.p[j] - ref.p[j]));
            if (t->decay)
                CHECK(dmax > 1e-6);  // wd·lr·|p| ~ 0.25·5e-3·0.5
            else
                CHECK(dmax == 0.0);
        }
        free(g1);
        free(r2.p);
        free(r2.m);
        free(r2.v);
    }

    // clipping: max_grad_norm below the norm scales the gradients to max_grad_norm
    dpo_to_device(be, model.grads, hg2, n * sizeof(float));
    norm = optim_grad_norm(&model);
    CHECK_CLOSE(norm, direct_norm(lay, hg2), 1e-10, 0);
    c.max_grad_norm = (float)(norm / 4.0);
    optim_step(&opt, &model, &c, lr2, norm);
    double after = optim_grad_norm(&model);
    CHECK_CLOSE(after, (double)c.max_grad_norm, 1e-5, 0);
    // every element scaled by the same coefficient max/(norm + 1e-6)
    dpo_to_host(be, out, model.grads, n * sizeof(float));
    double coef = (double)c.max_grad_norm / (norm + 1e-6);
    for (size_t j = 0; j < n; j += 7) CHECK_CLOSE(out[j], hg2[j] * coef, 1e-6, 1e-12);
    // a max_grad_norm above the norm leaves the gradients alone
    dpo_to_device(be, model.grads, hg2, n * sizeof(float));
    c.max_grad_norm = (float)(norm * 2.0);
    optim_step(&opt, &model, &c, lr2, norm);
    dpo_to_host(be, out, model.grads, n * sizeof(float));
    CHECK(memcmp(out, hg2, n * sizeof(float)) == 0);
    CHECK(opt.t == 5);

    optim_free(&opt, &model);
    CHECK(opt.m == NULL && opt.v == NULL);
    free(hp);
    free(hg);
    free(hg2);
    free(out);
    free(ref.p);
    free(ref.m);
    free(ref.v);
    model_free(&model);
}

// ---- gradient norm under tensor parallelism ----
// A value for each element of the FULL logical tensor, from (tensor name, row, col).
static float full_value(const char *name, int64_t r, int64_t col) {
    uint64_t h = 1469598103934665603ull;
    for (const char *p = name; *p; p++) h = (h ^ (uint64_t)(unsigned char)*p) * 1099511628211ull;
    h ^= (uint64_t)r * 0x9E3779B97F4A7C15ull;
    h = (h ^ (h >> 31)) * 0xBF58476D1CE4E5B9ull;
    h ^= (uint64_t)col * 0x94D049BB133111EBull;
    h = (h ^ (h >> 29)) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 32;
    return (float)((double)(h & 0xFFFFFF) / (double)0x1000000 * 2.0 - 1.0);
}

static void test_grad_norm_tp(const dpo_mesh_t *mesh) {
    const dpo_backend_t *be = backend_cpu();
    dpo_model_config_t mc = tiny_config();
    dpo_model_t model;
    char err[256] = "";
    if (model_init(&model, be, mesh, &mc, true, 32, 16, err, sizeof err) != 0) {
        test_fail(__FILE__, __LINE__, "model_init (tp %d): %s", mesh->tp_size, err);
        return;
    }
    const dpo_layout_t *lay = &model.layout;
    float *g = calloc(lay->n_params, sizeof(float));
    double expect = 0.0;  // over the full logical tensors
    int n_repl = 0, n_shard = 0;
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        if (t->shard == DPO_SHARD_NONE)
            n_repl++;
        else
            n_shard++;
        int64_t rows = t->shape[0], cols = t->ndim == 2 ? t->shape[1] : 1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t col = 0; col < cols; col++) {
                double v = full_value(t->name, r, col);
                expect += v * v;
            }
        int64_t lrows = t->local_shape[0], lcols = t->ndim == 2 ? t->local_shape[1] : 1;
        for (int64_t r = 0; r < lrows; r++)
            for (int64_t col = 0; col < lcols; col++) {
                int64_t fr = t->local_start[0] + r;
                int64_t fc = (t->ndim == 2 ? t->local_start[1] : 0) + col;
                // rows beyond the logical shape are vocabulary padding: zero gradient
                float v = (fr < rows && fc < cols) ? full_value(t->name, fr, fc) : 0.0f;
                g[t->offset + (size_t)(r * lcols + col)] = v;
            }
    }
    CHECK(mesh->tp_size == 1 || (n_repl > 0 && n_shard > 0));
    dpo_to_device(be, model.grads, g, lay->n_params * sizeof(float));
    double norm = optim_grad_norm(&model);
    CHECK_CLOSE(norm, sqrt(expect), 1e-6, 0);
    if (mesh->world_rank == 0)
        printf("test_optim: grad norm at tp %d = %.9g (full tensors: %.9g)\n", mesh->tp_size,
               norm, sqrt(expect));
    free(g);
    model_free(&model);
}

// ---- ZeRO-1 against the replicated optimizer ----

// Two steps (with clipping) on the same per-rank gradients: reduce-scatter + shard
// norm + shard AdamW + all-gather gives the parameters of all-reduce + full AdamW to
// the bit, the same global norm (up to the order of double additions), and each
// shard's moments equal the matching slice of the full moments. The mesh is
// TP = tp x DP = world / tp, so that the shard norm's TP rule is exercised too.
static void test_zero1(const dpo_mesh_t *mesh) {
    const dpo_backend_t *be = backend_cpu();
    dpo_model_config_t mc = tiny_config();
    dpo_model_t full, part;
    char err[256] = "";
    if (model_init(&full, be, mesh, &mc, true, 32, 16, err, sizeof err) != 0 ||
        model_init(&part, be, mesh, &mc, true, 32, 16, err, sizeof err) != 0) {
        test_fail(__FILE__, __LINE__, "model_init: %s", err);
        return;
    }
    const size_t n = full.layout.n_params;
    CHECK(full.n_alloc % (size_t)mesh->dp_size == 0 && full.n_alloc >= n);
    float *hp = calloc(full.n_alloc, sizeof(float)), *hg = calloc(full.n_alloc, sizeof(float));
    float *a = calloc(full.n_alloc, sizeof(float)), *b = calloc(full.n_alloc, sizeof(float));
    fill_host(hp, n, 21 + (unsigned)mesh->tp_rank, -1.0f, 1.0f);
    dpo_to_device(be, full.params, hp, n * sizeof(float));
    dpo_to_device(be, part.params, hp, n * sizeof(float));

    dpo_optim_params_t c;
    memset(&c, 0, sizeof c);
    c.beta1 = 0.9f;
    c.beta2 = 0.95f;
    c.adam_eps = 1e-8f;
    c.weight_decay = 0.25f;
    c.max_grad_norm = 0.5f;  // below the norm: clipping applies
    dpo_optim_t of, op;
    optim_init(&of, &full, 1);  // replicated: zero_stage 1 but asked for 0 below
    optim_free(&of, &full);
    optim_init(&of, &full, 0);
    optim_init(&op, &part, 1);
    CHECK(!of.sharded && op.sharded == (mesh->dp_size > 1));
    if (op.sharded) {
        CHECK(op.n * (size_t)mesh->dp_size == part.n_alloc);
        CHECK(op.off == (size_t)mesh->dp_rank * op.n);
    }
    for (int step = 0; step < 2; step++) {
        // every DP rank its own gradients; the same on the TP ranks of replicated tensors.
        // Multiples of 1/64: the sums over DP are exact in any order, so the two paths
        // (all-reduce, reduce-scatter) see the same summed gradients at any DP size.
        fill_host(hg, n, 100 + 7 * (unsigned)step + 31 * (unsigned)mesh->dp_rank, -1.0f, 1.0f);
        for (size_t j = 0; j < n; j++) hg[j] = roundf(hg[j] * 64.0f) / 64.0f;
        for (int i = 0; i < full.layout.n_tensors; i++) {
            const dpo_tensor_t *t = &full.layout.tensors[i];
            if (t->shard != DPO_SHARD_NONE)
                for (size_t j = 0; j < t->numel; j++) hg[t->offset + j] *= (float)(1 + mesh->tp_rank);
        }
        dpo_to_device(be, full.grads, hg, n * sizeof(float));
        dpo_to_device(be, part.grads, hg, n * sizeof(float));
        optim_reduce_grads(&of, &full);
        optim_reduce_grads(&op, &part);
        double nf = optim_global_grad_norm(&of, &full), np = optim_global_grad_norm(&op, &part);
        CHECK_CLOSE(np, nf, 1e-12, 0.0);
        CHECK(nf > 0.5);
        optim_step(&of, &full, &c, 1e-2f, nf);
        optim_step(&op, &part, &c, 1e-2f, np);
        dpo_to_host(be, a, full.params, n * sizeof(float));
        dpo_to_host(be, b, part.params, n * sizeof(float));
        CHECK(memcmp(a, b, n * sizeof(float)) == 0);
        // the shard's moments are the slice [off, off + n) of the full ones
        for (int k = 0; k < 2; k++) {
            dpo_to_host(be, a, k ? of.v : of.m, n * sizeof(float));
            dpo_to_host(be, b, k ? op.v : op.m, op.n * sizeof(float));
            size_t cnt = op.off < n ? (op.off + op.n < n ? op.n : n - op.off) : 0;
            CHECK(cnt == 0 || memcmp(a + op.off, b, cnt * sizeof(float)) == 0);
        }
    }
    optim_free(&of, &full);
    optim_free(&op, &part);
    model_free(&full);
    model_free(&part);
    free(hp);
    free(hg);
    free(a);
    free(b);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);

    if (world == 1) {
        test_schedule();
        dpo_mesh_t mesh;
        mesh_init_self(&mesh);
        test_adamw_and_clipping(&mesh);
        test_grad_norm_tp(&mesh);
        test_zero1(&mesh);  // one DP rank: nothing sharded, same results
        mesh_free(&mesh);
    } else {
        dpo_mesh_t mesh;
        mesh_init(&mesh, world);  // all ranks in one TP group
        test_grad_norm_tp(&mesh);
        mesh_free(&mesh);
        // ZeRO-1 at DP = world (TP 1) and, with 4 ranks, at TP 2 x DP 2
        mesh_init(&mesh, 1);
        test_zero1(&mesh);
        mesh_free(&mesh);
        if (world % 2 == 0 && world > 2) {
            mesh_init(&mesh, 2);
            test_zero1(&mesh);
            mesh_free(&mesh);
        }
    }

    int rc = test_finish("test_optim");
    int any = rc;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
