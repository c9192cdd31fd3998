// test_model.c — the whole decoder against finite differences, plus the
// invariances packing and chunking must keep.
//
//   test_model        : every tensor's gradient vs central differences (several
//                       architectures), packed == alone, chunked == unchunked
//   test_model --tp   : (2 ranks) the TP=2 model gives the TP=1 log-probs and the
//                       same gradients per tensor
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/batch.h"
#include "dpo/error.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
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

// TP=2 on 2 ranks vs TP=1 on each rank: same log-probs, and every rank's gradient
// slab equals the matching slab of the full gradient.
static void check_tensor_parallel(void) {
    char err[256];
    dpo_mesh_t tp, self;
    mesh_init(&tp, 2);
    mesh_init_self(&self);
    dpo_model_config_t cfg = tiny_config(true, true, false);
    dpo_model_t full, part;
    if (model_init(&full, backend_cpu(), &self, &cfg, true, 64, 4, err, sizeof err) ||
        model_init(&part, backend_cpu(), &tp, &cfg, true, 64, 4, err, sizeof err))
        dpo_fatal("%s", err);
    model_init_random(&full, 21);
    model_init_random(&part, 21);
    dpo_batch_t b;
    make_batch(&b, cfg.vocab_size, 4);
    double w[6] = {0.3, -0.2, 1.0, -1.0, 0.5, 0.25}, lpf[6], lpp[6];
    model_zero_grads(&full);
    model_zero_grads(&part);
    model_forward(&full, &b, lpf, true);
    model_backward(&full, &b, w);
    model_forward(&part, &b, lpp, true);
    model_backward(&part, &b, w);
    for (int s = 0; s < 6; s++) CHECK_CLOSE(lpp[s], lpf[s], 1e-5, 1e-5);
    for (int i = 0; i < part.layout.n_tensors; i++) {
        const dpo_tensor_t *tp_t = &part.layout.tensors[i], *f = &full.layout.tensors[i];
        for (int64_t r = 0; r < tp_t->local_shape[0]; r++)
            for (int64_t c = 0; c < tp_t->local_shape[1]; c++) {
                float gp = part.grads[tp_t->offset + r * tp_t->local_shape[1] + c];
                float gf = full.grads[f->offset + (r + tp_t->local_start[0]) * f->shape[1] +
                                      c + tp_t->local_start[1]];
                if (!test_close(gp, gf, 1e-4, 1e-5)) {
                    test_fail(__FILE__, __LINE__, "TP=2 gradient of %s (%lld,%lld): %g vs TP=1 %g",
                              tp_t->name, (long long)r, (long long)c, gp, gf);
                    r = tp_t->local_shape[0];
                    break;
                }
            }
    }
    batch_free(&b);
    model_free(&full);
    model_free(&part);
    mesh_free(&tp);
    mesh_free(&self);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, world;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    log_set_rank(rank, world);
    if (argc > 1 && strcmp(argv[1], "--tp") == 0) {
        check_tensor_parallel();
    } else {
        dpo_mesh_t self;
        mesh_init_self(&self);
        for (int v = 0; v < 8; v++) check_gradients(&self, v & 1, v & 2, v & 4);
        check_packing_and_chunks(&self);
        mesh_free(&self);
    }
    int rc = test_finish(argc > 1 ? "test_model --tp" : "test_model");
    MPI_Finalize();
    return rc;
}
