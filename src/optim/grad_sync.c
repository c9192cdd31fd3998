// grad_sync.c — bucketed data-parallel gradient reduction (include/dpo/grad_sync.h).
#include "dpo/grad_sync.h"

#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/dcomm.h"
#include "dpo/mesh.h"
#include "dpo/error.h"

// End of the range the reduction covers: the trainable elements without ZeRO,
// the whole (DP-padded) vector that the shards split with it.
static size_t reduced_end(const dpo_grad_sync_t *g) {
    return g->opt->sharded ? g->model->n_alloc : g->model->layout.n_trainable;
}

void grad_sync_init(dpo_grad_sync_t *g, dpo_model_t *model, dpo_optim_t *opt,
                    size_t bucket_bytes) {
    memset(g, 0, sizeof *g);
    g->model = model;
    g->opt = opt;
    const dpo_layout_t *lay = &model->layout;
    size_t cap = bucket_bytes / sizeof(float);
    if (cap == 0) cap = 1;
    g->bucket_of = xmalloc((size_t)(lay->n_tensors > 0 ? lay->n_tensors : 1) * sizeof(int),
                           "gradient buckets");
    g->buckets = xcalloc((size_t)(lay->n_tensors > 0 ? lay->n_tensors : 1),
                         sizeof(dpo_grad_bucket_t), "gradient buckets");
    // Walk the trainable tensors from the highest offset down (the backward's
    // order), closing a bucket once it holds cap elements. Trainable tensors are
    // laid out in table order from 0, so each bucket is a contiguous range and
    // the buckets partition [0, reduced_end).
    size_t hi = reduced_end(g);
    dpo_grad_bucket_t *cur = NULL;
    for (int i = lay->n_tensors - 1; i >= 0; i--) {
        const dpo_tensor_t *t = &lay->tensors[i];
        g->bucket_of[i] = -1;
        if (t->frozen) continue;
        if (!cur) {
            cur = &g->buckets[g->n_buckets++];
            cur->hi = hi;
        }
        cur->lo = t->offset;
        cur->n_tensors++;
        g->bucket_of[i] = (int)(cur - g->buckets);
        if (cur->hi - cur->lo >= cap) {
            hi = cur->lo;
            cur = NULL;
        }
    }
    if (g->n_buckets > 0) g->buckets[g->n_buckets - 1].lo = 0;
}

void grad_sync_free(dpo_grad_sync_t *g) {
    if (g->model && g->model->grad_hook_ctx == g) model_set_grad_hook(g->model, NULL, NULL);
    free(g->bucket_of);
    free(g->buckets);
    memset(g, 0, sizeof *g);
}

// The ZeRO shard of DP rank d is [d*S, (d+1)*S); a bucket goes to the shards it
// overlaps, each rank receiving its part at the matching place of gshard.
static void reduce_bucket_to_shards(dpo_grad_sync_t *g, dpo_grad_bucket_t *b) {
    dpo_model_t *m = g->model;
    dpo_optim_t *o = g->opt;
    int P = m->mesh->dp_size;
    size_t *counts = xmalloc((size_t)P * sizeof(size_t), "bucket counts");
    for (int d = 0; d < P; d++) {
        size_t s0 = (size_t)d * o->n, s1 = s0 + o->n;
        size_t lo = b->lo > s0 ? b->lo : s0, hi = b->hi < s1 ? b->hi : s1;
        counts[d] = hi > lo ? hi - lo : 0;
    }
    size_t mine = b->lo > o->off ? b->lo - o->off : 0;
    dcomm_reduce_scatterv_f32(m->mesh->dcomm, DPO_GROUP_DP, m->grads + b->lo, o->gshard + mine,
                              counts);
    free(counts);
}

// One bucket's DP reduction: all-reduced in place, or reduce-scattered to the shards.
static void reduce_bucket(dpo_grad_sync_t *g, dpo_grad_bucket_t *b) {
    dpo_model_t *m = g->model;
    dpo_optim_t *o = g->opt;
    b->issued = true;
    g->n_issued++;
    if (!m->mesh) return;
    dpo_dcomm_t *dc = m->mesh->dcomm;
    // Deferred: the rest of the backward goes on while the bucket is reduced (on
    // NCCL; MPI returns when done); grad_sync_finish joins.
    dcomm_defer_begin(dc);
    if (!o->sharded) {
        dcomm_allreduce_f32(dc, DPO_GROUP_DP, m->grads + b->lo, b->hi - b->lo, DPO_REDUCE_SUM);
    } else if (g->n_buckets == 1) {   // the whole vector: the unbucketed call
        dcomm_reduce_scatter_f32(dc, DPO_GROUP_DP, m->grads, o->gshard, o->n);
    } else {
        reduce_bucket_to_shards(g, b);
    }
    dcomm_defer_end(dc);
}

static void on_grad_done(void *ctx, int tensor) {
    dpo_grad_sync_t *g = ctx;
    int k = g->bucket_of[tensor];
    if (!g->armed || k < 0) return;
    dpo_grad_bucket_t *b = &g->buckets[k];
    if (b->pending <= 0)
        dpo_fatal("grad_sync: tensor %s reported twice in one backward",
                  g->model->layout.tensors[tensor].name);
    if (--b->pending == 0) {
        g->n_issued_in_backward++;
        reduce_bucket(g, b);
    }
}

void grad_sync_arm(dpo_grad_sync_t *g) {
    for (int k = 0; k < g->n_buckets; k++) {
        g->buckets[k].pending = g->buckets[k].n_tensors;
        g->buckets[k].issued = false;
    }
    g->n_issued = 0;
    g->n_issued_in_backward = 0;
    g->armed = true;
    model_set_grad_hook(g->model, on_grad_done, g);
}

void grad_sync_finish(dpo_grad_sync_t *g) {
    // Buckets still pending (never armed, or a tensor the backward did not report)
    // are reduced now, in issue order.
    for (int k = 0; k < g->n_buckets; k++)
        if (!g->armed || !g->buckets[k].issued) {
            g->buckets[k].issued = false;
            reduce_bucket(g, &g->buckets[k]);
        }
    g->armed = false;
    model_set_grad_hook(g->model, NULL, NULL);
    // The optimizer reads the reduced gradients next: wait for every bucket.
    if (g->model->mesh) dcomm_join(g->model->mesh->dcomm);
}
