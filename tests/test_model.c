// test_model.c — the whole decoder against finite differences, plus the
// invariances packing and chunking must keep.
//
//   test_model        : every tensor's gradient vs central differences (several
//                       architectures), packed == alone, chunked == unchunked
//   test_model --tp   : (on N ranks) the TP=N model gives the TP=1 log-probs and the
//                       same gradients per tensor, also with KV heads replicated
//                       (N > n_kv_heads) and a vocabulary N does not divide
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/comm.h"
#include "dpo/backend.h"
#include "dpo/batch.h"
#include "dpo/error.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "dpo/optim.h"
#include "dpo/rng.h"
#include "testutil.h"

static dpo_model_config_t tiny_config(bool bias, bool qk_norm, bool tied) {
    dpo_model_config_t c = {
        .vocab_size = 13, .hidden_size = 16, .num_hidden_layers = 2, .num_attention_heads = 4,
        .num_key_value_heads = 2, .head_dim = 4, .intermediate_size = 12, .rope_theta = 100.0f,
        .rms_norm_eps = 1e-5f, .attention_bias = bias, .qk_norm = qk_norm,
        .tie_word_embeddings = tied, .initializer_range = 0.4f};
    return c;
}

// Three pairs of different lengths, prompts of 1..3 tokens.
static void make_batch(dpo_batch_t *b, int vocab, unsigned seed) {
    static const int lens[6] = {7, 5, 4, 6, 9, 3}, comp[6] = {3, 2, 1, 3, 2, 1};
    dpo_rng_t r;
    rng_seed(&r, seed, 7);
    batch_alloc(b, 3, 64);
    batch_clear(b);
    for (int s = 0; s < 6; s++) {
        int32_t tok[16];
        for (int i = 0; i < lens[s]; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)vocab);
        batch_add_sequence(b, tok, lens[s], comp[s]);
    }
    batch_finalize(b);
}

// Scalar objective: sum_s w_s * logp_s, accumulated in double.
static double objective(dpo_model_t *m, const dpo_batch_t *b, const double *w) {
    double lp[8];
    model_forward(m, b, lp, false);
    double L = 0;
    for (int s = 0; s < b->n_seq; s++) L += w[s] * lp[s];
    return L;
}

static void check_gradients(const dpo_mesh_t *mesh, bool bias, bool qk_norm, bool tied) {
    char err[256];
    dpo_model_config_t cfg = tiny_config(bias, qk_norm, tied);
    dpo_model_t m;
    if (model_init(&m, backend_cpu(), mesh, &cfg, true, 64, 5, err, sizeof err) != 0)
        dpo_fatal("%s", err);
    model_init_random(&m, 11);
    // Norm weights and biases away from their init so their gradients mean something.
    for (int i = 0; i < m.layout.n_tensors; i++) {
        const dpo_tensor_t *t = &m.layout.tensors[i];
        if (t->ndim == 1) test_fill_uniform(m.params + t->offset, t->numel, 100 + i, 0.5f, 1.5f);
    }
    dpo_batch_t b;
    make_batch(&b, cfg.vocab_size, 3);
    double w[6] = {0.7, -1.1, 0.4, 0.9, -0.6, 1.3}, lp[6];
    model_zero_grads(&m);
    model_forward(&m, &b, lp, true);
    model_backward(&m, &b, w);

    for (int i = 0; i < m.layout.n_tensors; i++) {
        const dpo_tensor_t *t = &m.layout.tensors[i];
        int64_t used = t->local_shape[0] * t->local_shape[1];
        // A handful of elements per tensor, spread over it.
        for (int k = 0; k < 6; k++) {
            size_t j = (size_t)((k * 7919 + 13) % used);
            float *p = m.params + t->offset + j;
            // Richardson extrapolation of two central differences: O(h^4) error, so
            // curvature does not masquerade as a gradient bug.
            float save = *p, h = 1e-2f;
            double d[2];
            for (int q = 0; q < 2; q++) {
                float hq = q ? h / 2 : h;
                *p = save + hq;
                double lp_plus = objective(&m, &b, w);
                *p = save - hq;
                double lp_minus = objective(&m, &b, w);
                *p = save;
                d[q] = (lp_plus - lp_minus) / (2.0 * (double)hq);
            }
            double fd = (4.0 * d[1] - d[0]) / 3.0;
            double an = m.grads[t->offset + j];
            if (!test_close(an, fd, 3e-2, 3e-3))
                test_fail(__FILE__, __LINE__, "%s[%zu] (bias %d qk_norm %d tied %d): analytic %.6g, "
                          "finite difference %.6g", t->name, j, bias, qk_norm, tied, an, fd);
        }
    }
    batch_free(&b);
    model_free(&m);
}

// The log-probs of a sequence do not depend on what else is packed with it, and
// the chunk size changes nothing.
static void check_packing_and_chunks(const dpo_mesh_t *mesh) {
    char err[256];
    dpo_model_config_t cfg = tiny_config(true, true, false);
    dpo_model_t a, c;
    if (model_init(&a, backend_cpu(), mesh, &cfg, true, 64, 256, err, sizeof err) ||
        model_init(&c, backend_cpu(), mesh, &cfg, true, 64, 2, err, sizeof err))
        dpo_fatal("%s", err);
    model_init_random(&a, 5);
    model_copy_params(&c, &a);
    dpo_batch_t b, one;
    make_batch(&b, cfg.vocab_size, 9);
    double lp[6], lp_chunked[6], lp_one[2];
    model_forward(&a, &b, lp, false);
    model_forward(&c, &b, lp_chunked, false);
    for (int s = 0; s < 6; s++) CHECK_CLOSE(lp_chunked[s], lp[s], 1e-6, 1e-6);
    // Pair 1 alone.
    batch_alloc(&one, 1, 64);
    batch_clear(&one);
    for (int s = 2; s < 4; s++)
        batch_add_sequence(&one, b.tokens + b.cu_seqlens[s], b.cu_seqlens[s + 1] - b.cu_seqlens[s],
                           b.comp_start[s]);
    batch_finalize(&one);
    model_forward(&a, &one, lp_one, false);
    CHECK_CLOSE(lp_one[0], lp[2], 1e-5, 1e-5);
    CHECK_CLOSE(lp_one[1], lp[3], 1e-5, 1e-5);
    // Chunked backward gives the same gradients.
    double w[6] = {1, -1, 0.5, -0.5, 2, -2};
    model_zero_grads(&a);
    model_zero_grads(&c);
    model_forward(&a, &b, lp, true);
    model_backward(&a, &b, w);
    model_forward(&c, &b, lp, true);
    model_backward(&c, &b, w);
    for (size_t i = 0; i < a.layout.n_params; i++)
        if (!test_close(c.grads[i], a.grads[i], 1e-4, 1e-6)) {
            test_fail(__FILE__, __LINE__, "chunked gradient %zu: %g vs %g", i, c.grads[i], a.grads[i]);
            break;
        }
    batch_free(&b);
    batch_free(&one);
    model_free(&a);
    model_free(&c);
}

// Largest |a-b| / max(|b|, floor) over this check, for the report line.
static double g_worst_lp, g_worst_grad;
// Gradient tolerance: relative to max(|g|, GRAD_FLOOR * max|g| of the tensor).
// Measured worst (fp32 reassociation of the TP sums, init range 0.4 so the tiny
// model is far from linear): 1.6e-4 at TP=2, 2.3e-4 at TP=4; a missing or doubled
// contribution (the bugs this guards against) is O(1).
#define GRAD_RTOL 1e-3
#define GRAD_FLOOR 1e-2

static double rel_diff(double a, double b, double floor) {
    double d = fabs(b) > floor ? fabs(b) : floor;
    return fabs(a - b) / d;
}

// TP=tp_size on all ranks of the job vs TP=1 on each rank: same log-probs, every
// rank's gradient slab equals the matching slab of the full gradient (so gathered
// to full shape the gradients agree), replicated KV slabs hold identical gradients
// on every replica, the global gradient norm counts each tensor once, and one AdamW
// step keeps the replicas identical.
//
// Tolerance (fp32 reassociation of the TP sums): log-probs 1e-5 relative (measured
// worst 3e-7); each gradient element GRAD_RTOL relative to the larger of |g| and
// GRAD_FLOOR * max|g| of its tensor (elements near zero carry absolute rounding
// noise of the tensor's scale); parameters after one AdamW step 1e-5 relative.
static void check_tensor_parallel(int tp_size, dpo_model_config_t cfg, const char *what) {
    char err[256];
    dpo_mesh_t tp, self;
    mesh_init(&tp, tp_size);
    mesh_init_self(&self);
    dpo_model_t full, part;
    if (model_init(&full, backend_cpu(), &self, &cfg, true, 64, 4, err, sizeof err) ||
        model_init(&part, backend_cpu(), &tp, &cfg, true, 64, 4, err, sizeof err))
        dpo_fatal("%s", err);
    model_init_random(&full, 21);
    model_init_random(&part, 21);
    dpo_batch_t b;
    make_batch(&b, cfg.vocab_size, 4);
    double w[6] = {0.3, -0.2, 1.0, -1.0, 0.5, 0.25}, lpf[6], lpp[6];
    double cfg_worst_lp = 0, cfg_worst_grad = 0;
    model_zero_grads(&full);
    model_zero_grads(&part);
    // Two accumulated micro-batches (the second with other weights): partial sums of
    // shared tensors must be reduced once per micro-batch, not re-reduced.
    double w2[6] = {-0.4, 0.8, 0.1, 0.6, -0.9, 0.35};
    for (int rep = 0; rep < 2; rep++) {
        model_forward(&full, &b, lpf, true);
        model_backward(&full, &b, rep ? w2 : w);
        model_forward(&part, &b, lpp, true);
        model_backward(&part, &b, rep ? w2 : w);
    }
    for (int s = 0; s < 6; s++) {
        CHECK_CLOSE(lpp[s], lpf[s], 1e-5, 0);
        double d = rel_diff(lpp[s], lpf[s], 0);
        if (d > cfg_worst_lp) cfg_worst_lp = d;
    }
    const double rtol = GRAD_RTOL;
    for (int i = 0; i < part.layout.n_tensors; i++) {
        const dpo_tensor_t *tp_t = &part.layout.tensors[i], *f = &full.layout.tensors[i];
        CHECK(strcmp(tp_t->name, f->name) == 0);
        double gmax = 0;
        for (size_t j = 0; j < f->numel; j++)
            if (fabs(full.grads[f->offset + j]) > gmax) gmax = fabs(full.grads[f->offset + j]);
        for (int64_t r = 0; r < tp_t->local_shape[0]; r++)
            for (int64_t c = 0; c < tp_t->local_shape[1]; c++) {
                float gp = part.grads[tp_t->offset + r * tp_t->local_shape[1] + c];
                float gf = full.grads[f->offset + (r + tp_t->local_start[0]) * f->shape[1] +
                                      c + tp_t->local_start[1]];
                double d = rel_diff(gp, gf, GRAD_FLOOR * gmax);
                if (d > cfg_worst_grad) cfg_worst_grad = d;
                if (d > rtol) {
                    test_fail(__FILE__, __LINE__, "%s: TP=%d gradient of %s (%lld,%lld): %g vs TP=1 "
                              "%g", what, tp_size, tp_t->name, (long long)r, (long long)c, gp, gf);
                    r = tp_t->local_shape[0];
                    break;
                }
            }
    }
    // Replicated KV slabs: every rank holding the same KV head has the same gradient,
    // bit for bit (they were summed over the same group).
    int R = part.layout.kv_replicas;
    CHECK(R == (cfg.num_key_value_heads >= tp_size ? 1 : tp_size / cfg.num_key_value_heads));
    for (int i = 0; i < part.layout.n_tensors && R > 1; i++) {
        const dpo_tensor_t *t = &part.layout.tensors[i];
        if (t->shard != DPO_SHARD_ROWS || t->tp_replicas == 1) continue;
        float *all = xmalloc(t->numel * (size_t)tp_size * sizeof(float), "replica gradients");
        MPI_Allgather(part.grads + t->offset, (int)t->numel, MPI_FLOAT, all, (int)t->numel,
                      MPI_FLOAT, tp.tp);
        int64_t *starts = xmalloc((size_t)tp_size * sizeof(int64_t), "replica starts");
        MPI_Allgather(&t->local_start[0], 1, MPI_INT64_T, starts, 1, MPI_INT64_T, tp.tp);
        int same = 0;
        for (int q = 0; q < tp_size; q++) {
            if (starts[q] != t->local_start[0]) continue;
            same++;
            if (memcmp(all + (size_t)q * t->numel, part.grads + t->offset,
                       t->numel * sizeof(float)) != 0)
                test_fail(__FILE__, __LINE__, "%s: replica on TP rank %d of %s holds another "
                          "gradient than TP rank %d", what, q, t->name, tp.tp_rank);
        }
        CHECK(same == R);
        CHECK(t->tp_replicas == R);
        free(all);
        free(starts);
    }
    // The global gradient norm counts every tensor once, however it is replicated.
    double nf = optim_grad_norm(&full), np = optim_grad_norm(&part);
    CHECK_CLOSE(np, nf, 1e-5, 0);
    // One clipped AdamW step: replicas stay identical, and the TP parameters equal the
    // TP=1 ones.
    dpo_optim_params_t oc;
    memset(&oc, 0, sizeof oc);
    oc.beta1 = 0.9f;
    oc.beta2 = 0.95f;
    oc.adam_eps = 1e-8f;
    oc.weight_decay = 0.1f;
    oc.max_grad_norm = (float)(nf * 0.5);
    dpo_optim_t of, op;
    optim_init(&of, &full, 0);
    optim_init(&op, &part, 0);
    optim_step(&of, &full, &oc, 1e-2f, nf);
    optim_step(&op, &part, &oc, 1e-2f, np);
    for (int i = 0; i < part.layout.n_tensors; i++) {
        const dpo_tensor_t *tp_t = &part.layout.tensors[i], *f = &full.layout.tensors[i];
        for (int64_t r = 0; r < tp_t->local_shape[0]; r++)
            for (int64_t c = 0; c < tp_t->local_shape[1]; c++) {
                float pp = part.params[tp_t->offset + r * tp_t->local_shape[1] + c];
                float pf = full.params[f->offset + (r + tp_t->local_start[0]) * f->shape[1] +
                                       c + tp_t->local_start[1]];
                if (!test_close(pp, pf, 1e-5, 1e-6)) {
                    test_fail(__FILE__, __LINE__, "%s: TP=%d parameter %s (%lld,%lld) after a step: "
                              "%g vs TP=1 %g", what, tp_size, tp_t->name, (long long)r,
                              (long long)c, pp, pf);
                    r = tp_t->local_shape[0];
                    break;
                }
            }
    }
    optim_free(&of, &full);
    optim_free(&op, &part);
    batch_free(&b);
    model_free(&full);
    model_free(&part);
    if (cfg_worst_lp > g_worst_lp) g_worst_lp = cfg_worst_lp;
    if (cfg_worst_grad > g_worst_grad) g_worst_grad = cfg_worst_grad;
    if (tp.world_rank == 0)
        printf("  %s: TP=%d vs TP=1 worst relative difference: log-probs %.2e, gradients %.2e\n",
               what, tp_size, cfg_worst_lp, cfg_worst_grad);
    mesh_free(&tp);
    mesh_free(&self);
}

// Architectures the TP checks run on: every one has a vocabulary that TP 2 / 4 do
// not divide (padding rows must never win).
static void check_tensor_parallel_all(int tp_size) {
    dpo_model_config_t c = tiny_config(true, true, false);  // 4 heads / 2 KV, vocab 13
    check_tensor_parallel(tp_size, c, "4/2 heads, bias, qk-norm");
    c = tiny_config(false, false, true);
    c.vocab_size = 258;
    check_tensor_parallel(tp_size, c, "4/2 heads, tied, vocab 258");
    c = tiny_config(true, true, false);
    c.num_attention_heads = 8;
    c.head_dim = 2;
    c.vocab_size = 258;
    check_tensor_parallel(tp_size, c, "8/2 heads, bias, qk-norm, vocab 258");
    if (tp_size >= 4) {
        c = tiny_config(true, true, false);
        c.num_attention_heads = 8;
        c.num_key_value_heads = 1;  // MQA: one KV head replicated on every TP rank
        c.head_dim = 2;
        c.vocab_size = 258;
        check_tensor_parallel(tp_size, c, "8/1 heads, bias, qk-norm, vocab 258");
    }
}

// Layouts that cannot be split: the error names the keys.
static void check_layout_errors(void) {
    char err[256];
    dpo_layout_t lay;
    dpo_model_config_t c = tiny_config(false, false, false);  // 4 heads / 2 KV, ffn 12
    c.num_attention_heads = 6;
    c.num_key_value_heads = 3;
    c.head_dim = 4;
    // TP 2: divides heads but neither divides nor is a multiple of 3 KV heads.
    CHECK(layout_init(&lay, &c, 0, 2, err, sizeof err) == -1);
    CHECK(strstr(err, "policy.tensor_parallel_size = 2") && strstr(err, "num_key_value_heads (3)"));
    // TP 4 is a multiple of 2 KV heads but does not divide... 4 heads? It does; 6 heads do not.
    c = tiny_config(false, false, false);
    c.num_attention_heads = 6;
    c.num_key_value_heads = 2;
    c.intermediate_size = 24;
    CHECK(layout_init(&lay, &c, 0, 4, err, sizeof err) == -1);
    CHECK(strstr(err, "policy.model.num_attention_heads (6)") != NULL);
    // TP 8 over 4 heads: more ranks than query heads.
    c = tiny_config(false, false, false);
    c.intermediate_size = 16;
    CHECK(layout_init(&lay, &c, 0, 8, err, sizeof err) == -1);
    // TP 4 over 4 heads / 2 KV heads: replicated KV, rank 3 holds KV head 1, rows 4..8.
    CHECK(layout_init(&lay, &c, 3, 4, err, sizeof err) == 0);
    CHECK(lay.kv_replicas == 2 && lay.kv_head_start == 1 && lay.n_kv_heads_local == 1);
    const dpo_tensor_t *k = &lay.tensors[lay.layers[0].k];
    CHECK(k->shape[0] == 8 && k->local_start[0] == 4 && k->local_shape[0] == 4);
    CHECK(k->tp_replicas == 2 && !k->tp_writer);
    layout_free(&lay);
    CHECK(layout_init(&lay, &c, 2, 4, err, sizeof err) == 0);
    CHECK(lay.tensors[lay.layers[1].v].tp_writer && lay.tensors[lay.layers[1].v].local_start[0] == 4);
    CHECK(lay.tensors[lay.layers[1].q].tp_replicas == 1);
    layout_free(&lay);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    comm_errors_init();
    if (argc > 1 && strcmp(argv[1], "--tp") == 0) {
        check_tensor_parallel_all(world);
        if (rank == 0)
            printf("TP=%d vs TP=1: worst relative difference: log-probs %.2e, gradients %.2e\n",
                   world, g_worst_lp, g_worst_grad);
    } else {
        check_layout_errors();
        dpo_mesh_t self;
        mesh_init_self(&self);
        for (int v = 0; v < 8; v++) check_gradients(&self, v & 1, v & 2, v & 4);
        check_packing_and_chunks(&self);
        mesh_free(&self);
    }
    char name[32];
    snprintf(name, sizeof name, argc > 1 ? "test_model --tp (%d)" : "test_model", world);
    int rc = test_finish(name);
    MPI_Finalize();
    return rc;
}
