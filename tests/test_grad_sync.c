// test_grad_sync.c — frozen tensors (src/model/model.c: model_freeze) and the
// bucketed data-parallel gradient reduction issued from the backward
// (src/optim/grad_sync.c), through the micro-batch schedule (src/optim/schedule.c).
//
// Frozen: a model with some tensors frozen computes, for every trainable tensor,
// the same gradient bit for bit as the all-trainable model (the frozen weights
// only lose their own gradients), keeps no gradient or moments for the frozen
// ones, and an optimizer step leaves them untouched.
// Buckets: with buckets of a few KiB (many buckets, reduced while the backward
// runs) the gradients after the schedule equal, bit for bit, those of the same
// micro-batches followed by one unbucketed reduction (optim_reduce_grads) — with
// and without ZeRO-1, at every rank count the test is run with (1, 2, 4).
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/batch.h"
#include "dpo/grad_sync.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "dpo/optim.h"
#include "dpo/rng.h"
#include "dpo/schedule.h"
#include "testutil.h"

static dpo_model_config_t tiny_config(void) {
    dpo_model_config_t mc;
    memset(&mc, 0, sizeof mc);
    mc.vocab_size = 29;
    mc.hidden_size = 16;
    mc.num_hidden_layers = 3;
    mc.num_attention_heads = 4;
    mc.num_key_value_heads = 2;
    mc.head_dim = 4;
    mc.intermediate_size = 24;
    mc.rope_theta = 10000.0f;
    mc.rms_norm_eps = 1e-5f;
    mc.attention_bias = true;
    mc.qk_norm = true;
    mc.initializer_range = 0.02f;
    return mc;
}

// Three pairs; `seed` makes each micro-batch (and each DP rank's) different.
static void make_batch(dpo_batch_t *b, int vocab, unsigned seed) {
    static const int lens[6] = {7, 5, 4, 6, 9, 3}, comp[6] = {3, 2, 1, 3, 2, 1};
    dpo_rng_t r;
    rng_seed(&r, seed, 11);
    batch_clear(b);
    for (int s = 0; s < 6; s++) {
        int32_t tok[16];
        for (int i = 0; i < lens[s]; i++) tok[i] = (int32_t)(rng_next(&r) % (uint64_t)vocab);
        batch_add_sequence(b, tok, lens[s], comp[s]);
    }
    batch_finalize(b);
}

static float *host_copy(const dpo_model_t *m, const float *dev, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    dpo_to_host(m->be, h, dev, n * sizeof(float));
    return h;
}

static bool freeze_norms_and_embed(const dpo_tensor_t *t, void *ctx) {
    (void)ctx;
    return strstr(t->name, "norm") != NULL || strstr(t->name, "embed_tokens") != NULL;
}

// ---- frozen tensors ----
static void test_frozen(const dpo_mesh_t *mesh) {
    const dpo_backend_t *be = backend_cpu();
    dpo_model_config_t mc = tiny_config();
    char err[256];
    dpo_model_t full, part;
    CHECK(model_init(&full, be, mesh, &mc, true, 64, 8, err, sizeof err) == 0);
    CHECK(model_init(&part, be, mesh, &mc, true, 64, 8, err, sizeof err) == 0);
    model_freeze(&part, freeze_norms_and_embed, NULL);
    model_init_random(&full, 5);
    model_init_random(&part, 5);
    const dpo_layout_t *lf = &full.layout, *lp = &part.layout;
    int n_frozen = 0;
    for (int i = 0; i < lp->n_tensors; i++) n_frozen += lp->tensors[i].frozen;
    CHECK(n_frozen == 1 + 3 * 4 + 1);  // embed; per layer 2 norms + q/k norm; final norm
    CHECK(lp->n_trainable < lf->n_trainable && lp->n_params >= lf->n_params);
    CHECK(part.n_alloc < full.n_alloc);
    // The trainable tensors come first, the frozen ones after frozen_start.
    for (int i = 0; i < lp->n_tensors; i++) {
        const dpo_tensor_t *t = &lp->tensors[i];
        if (t->frozen)
            CHECK(t->offset >= lp->frozen_start && t->offset + t->numel <= lp->n_params);
        else
            CHECK(t->offset + t->numel <= lp->n_trainable);
    }

    dpo_batch_t b;
    batch_alloc(&b, 3, 64);
    make_batch(&b, mc.vocab_size, 3);
    double lp_full[6], lp_part[6], w[6] = {0.3, -0.2, 0.5, -0.4, 0.25, -0.35};
    model_zero_grads(&full);
    model_zero_grads(&part);
    model_forward(&full, &b, lp_full, true);
    model_forward(&part, &b, lp_part, true);
    CHECK(memcmp(lp_full, lp_part, sizeof lp_full) == 0);
    model_backward(&full, &b, w);
    model_backward(&part, &b, w);
    float *gf = host_copy(&full, full.grads, full.n_alloc);
    float *gp = host_copy(&part, part.grads, part.n_alloc);
    for (int i = 0; i < lf->n_tensors; i++) {
        const dpo_tensor_t *tf = &lf->tensors[i], *tp = &lp->tensors[i];
        if (tp->frozen) continue;
        bool same = memcmp(gf + tf->offset, gp + tp->offset, tf->numel * sizeof(float)) == 0;
        if (!same) fprintf(stderr, "gradient of %s differs when others are frozen\n", tf->name);
        CHECK(same);
    }
    // The optimizer has moments for the trainable elements only, and its step
    // leaves the frozen weights as they were.
    dpo_optim_t o;
    optim_init(&o, &part, 0);
    CHECK(o.n == lp->n_trainable);
    float *before = host_copy(&part, part.params, lp->n_params);
    dpo_optim_params_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.beta1 = 0.9f;
    cfg.beta2 = 0.999f;
    cfg.adam_eps = 1e-8f;
    cfg.weight_decay = 0.1f;
    optim_reduce_grads(&o, &part);
    optim_step(&o, &part, &cfg, 1e-2f, optim_global_grad_norm(&o, &part));
    float *after = host_copy(&part, part.params, lp->n_params);
    for (int i = 0; i < lp->n_tensors; i++) {
        const dpo_tensor_t *t = &lp->tensors[i];
        bool same = memcmp(before + t->offset, after + t->offset, t->numel * sizeof(float)) == 0;
        CHECK(t->frozen ? same : !same);
    }
    // The reference keeps every tensor: copying from the partly frozen model moves
    // each tensor to its own offset.
    model_copy_params(&full, &part);
    float *copied = host_copy(&full, full.params, lf->n_params);
    for (int i = 0; i < lf->n_tensors; i++)
        CHECK(memcmp(copied + lf->tensors[i].offset, after + lp->tensors[i].offset,
                     lf->tensors[i].numel * sizeof(float)) == 0);
    free(copied);
    free(before);
    free(after);
    free(gf);
    free(gp);
    optim_free(&o, &part);
    batch_free(&b);
    model_free(&full);
    model_free(&part);
}

// ---- bucketed reduction through the schedule ----
typedef struct {
    dpo_batch_t *b;
    int vocab;
    unsigned rank_seed;
} sched_ctx_t;

static const dpo_batch_t *load(void *ctx, int micro) {
    sched_ctx_t *c = ctx;
    make_batch(c->b, c->vocab, c->rank_seed * 100u + (unsigned)micro);
    return c->b;
}

static void loss(void *ctx, int micro, const dpo_batch_t *b, const double *seq_logps,
                 double *dseq) {
    (void)ctx;
    for (int s = 0; s < b->n_seq; s++) dseq[s] = 0.01 * (s + 1 + micro);
    (void)seq_logps;
}

// The reduced gradient a rank holds: all of it, or its ZeRO shard.
static float *reduced(const dpo_model_t *m, const dpo_optim_t *o) {
    return o->sharded ? host_copy(m, o->gshard, o->n) : host_copy(m, m->grads, m->layout.n_trainable);
}

static void test_buckets(const dpo_mesh_t *mesh, int zero_stage, size_t bucket_bytes,
                         bool frozen) {
    const dpo_backend_t *be = backend_cpu();
    dpo_model_config_t mc = tiny_config();
    char err[256];
    dpo_model_t m;
    CHECK(model_init(&m, be, mesh, &mc, true, 64, 8, err, sizeof err) == 0);
    if (frozen) model_freeze(&m, freeze_norms_and_embed, NULL);
    model_init_random(&m, 9);
    dpo_optim_t o;
    optim_init(&o, &m, zero_stage);
    dpo_grad_sync_t gs;
    grad_sync_init(&gs, &m, &o, bucket_bytes);
    CHECK(gs.n_buckets >= 1);
    if (bucket_bytes < 4096) CHECK(gs.n_buckets > 4);
    // The buckets partition the reduced range, highest offsets first.
    size_t end = o.sharded ? m.n_alloc : m.layout.n_trainable;
    CHECK(gs.buckets[0].hi == end && gs.buckets[gs.n_buckets - 1].lo == 0);
    for (int k = 1; k < gs.n_buckets; k++) CHECK(gs.buckets[k].hi == gs.buckets[k - 1].lo);

    dpo_batch_t b;
    batch_alloc(&b, 3, 64);
    sched_ctx_t c = {.b = &b, .vocab = mc.vocab_size, .rank_seed = (unsigned)mesh->dp_rank + 1};
    double seq[6], dseq[6];
    dpo_step_fns_t fns = {.load = load, .loss = loss, .seq_logps = seq, .dseq = dseq};
    const int n_micro = 3;

    // Bucketed, from the backward.
    model_zero_grads(&m);
    schedule_forward_backward_no_pipelining(&m, &gs, n_micro, &fns, &c);
    CHECK(gs.n_issued == gs.n_buckets);
    // Every bucket, the embedding's included, was reduced from inside the backward.
    CHECK(gs.n_issued_in_backward == gs.n_buckets);
    float *bucketed = reduced(&m, &o);

    // The same micro-batches, then one reduction of everything.
    model_zero_grads(&m);
    if (o.gshard) dpo_zero(be, o.gshard, o.n * sizeof(float));
    for (int j = 0; j < n_micro; j++) {
        const dpo_batch_t *bj = load(&c, j);
        model_forward(&m, bj, seq, true);
        loss(&c, j, bj, seq, dseq);
        model_backward(&m, bj, dseq);
    }
    optim_reduce_grads(&o, &m);
    float *whole = reduced(&m, &o);
    size_t n = o.sharded ? o.n : m.layout.n_trainable;
    CHECK(memcmp(bucketed, whole, n * sizeof(float)) == 0);
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)whole[i] * whole[i];
    CHECK(s > 0.0);   // there is a gradient to compare
    free(bucketed);
    free(whole);
    batch_free(&b);
    grad_sync_free(&gs);
    optim_free(&o, &m);
    model_free(&m);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    dpo_mesh_t mesh;
    if (world == 1) {
        mesh_init_self(&mesh);
        test_frozen(&mesh);
        mesh_free(&mesh);
    }
    // Every rank data-parallel, then (even rank counts above 2) TP 2 x DP.
    for (int tp = 1; tp <= 2; tp++) {
        if (world % tp != 0 || (tp == 2 && world < 4)) continue;
        mesh_init(&mesh, tp);
        if (tp == 2) test_frozen(&mesh);
        for (int zero = 0; zero <= 1; zero++) {
            test_buckets(&mesh, zero, 1024, false);            // many buckets
            test_buckets(&mesh, zero, 1024, true);             // many, some tensors frozen
            test_buckets(&mesh, zero, DPO_GRAD_BUCKET_BYTES, false);  // one bucket
        }
        mesh_free(&mesh);
    }
    int rc = test_finish("test_grad_sync");
    int any = rc;
    MPI_Allreduce(&rc, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return any;
}
