// model.c — Llama-family decoder: layout, init, forward and hand-written backward.
//
// Tensor parallelism follows Megatron: q/k/v and gate/up are column-parallel
// (rows of the (out, in) weight split), o_proj and down_proj row-parallel, the
// embedding and LM head vocabulary-parallel. The "f" operator (identity forward,
// all-reduce backward) sits before each column-parallel block and the "g"
// operator (all-reduce forward) after each row-parallel one. With tp_size 1 every
// collective is a no-op. When tp_size exceeds num_key_value_heads, each rank holds
// the one KV head its query heads use (a slab replicated on tp/n_kv ranks) and the
// K/V gradients are summed over the ranks sharing it.
#include "dpo/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/comm.h"
#include "dpo/dcomm.h"
#include "dpo/error.h"
#include "dpo/rng.h"

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

static int layout_add(dpo_layout_t *lay, int cap, const char *name, int ndim, int64_t rows,
                      int64_t cols, dpo_shard_t shard, int64_t alloc_rows) {
    if (lay->n_tensors >= cap) dpo_fatal("layout: tensor table overflow at %s", name);
    dpo_tensor_t *t = &lay->tensors[lay->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->shape[0] = rows;
    t->shape[1] = ndim == 2 ? cols : 1;
    t->shard = shard;
    t->decay = ndim == 2;
    t->dtype = DPO_F32;
    int tp = lay->tp_size, r = lay->tp_rank;
    t->local_shape[0] = t->shape[0];
    t->local_shape[1] = t->shape[1];
    int64_t alloc = t->shape[0] * t->shape[1];
    if (shard == DPO_SHARD_ROWS) {
        // alloc_rows is the padded per-rank row count (vocabulary tensors) or rows/tp.
        int64_t start = alloc_rows * r;
        int64_t have = t->shape[0] - start;
        if (have > alloc_rows) have = alloc_rows;
        if (have < 0) have = 0;
        t->local_start[0] = start;
        t->local_shape[0] = have;
        alloc = alloc_rows * t->shape[1];
    } else if (shard == DPO_SHARD_COLS) {
        int64_t c = t->shape[1] / tp;
        t->local_start[1] = c * r;
        t->local_shape[1] = c;
        alloc = t->shape[0] * c;
    }
    t->tp_replicas = shard == DPO_SHARD_NONE ? tp : 1;
    t->tp_writer = shard != DPO_SHARD_NONE || r == 0;
    t->numel = (size_t)alloc;
    return lay->n_tensors++;
}

// Every tensor starts 16-float aligned (64 bytes) for vector loads.
static size_t aligned16(size_t n) { return (n + 15) & ~(size_t)15; }

void layout_assign_offsets(dpo_layout_t *lay, size_t align) {
    size_t at = 0;
    for (int i = 0; i < lay->n_tensors; i++) {
        dpo_tensor_t *t = &lay->tensors[i];
        if (t->frozen) continue;
        t->offset = at;
        at += aligned16(t->numel);
    }
    lay->n_trainable = at;
    if (align == 0) align = 1;
    size_t fz = (at + align - 1) / align * align;
    lay->frozen_start = fz;
    bool any_frozen = false;
    for (int i = 0; i < lay->n_tensors; i++) {
        dpo_tensor_t *t = &lay->tensors[i];
        if (!t->frozen) continue;
        any_frozen = true;
        t->offset = fz;
        fz += aligned16(t->numel);
    }
    lay->n_params = any_frozen ? fz : at;
}

int layout_init(dpo_layout_t *lay, const dpo_model_config_t *cfg, int tp_rank, int tp_size,
                char *err, size_t err_len) {
    memset(lay, 0, sizeof *lay);
    lay->cfg = *cfg;
    lay->tp_rank = tp_rank;
    lay->tp_size = tp_size;
    int H = cfg->num_attention_heads, Hkv = cfg->num_key_value_heads, C = cfg->hidden_size;
    int D = cfg->head_dim > 0 ? cfg->head_dim : (H > 0 ? C / H : 0);
    if (H <= 0 || Hkv <= 0 || D <= 0 || C <= 0 || cfg->vocab_size <= 0 ||
        cfg->num_hidden_layers <= 0 || cfg->intermediate_size <= 0 || H % Hkv != 0) {
        snprintf(err, err_len, "model architecture is invalid (hidden %d, heads %d/%d, head_dim %d)",
                 C, H, Hkv, D);
        return -1;
    }
    // KV heads split (Hkv % tp == 0) or, Megatron-style, replicated: with tp a multiple
    // of Hkv every rank holds the one KV head its H/tp query heads use.
    bool kv_split = Hkv % tp_size == 0, kv_repl = !kv_split && tp_size % Hkv == 0;
    if (H % tp_size || (!kv_split && !kv_repl) || cfg->intermediate_size % tp_size) {
        snprintf(err, err_len,
                 "policy.tensor_parallel_size = %d must divide policy.model.num_attention_heads "
                 "(%d) and policy.model.intermediate_size (%d), and divide or be a multiple of "
                 "policy.model.num_key_value_heads (%d)",
                 tp_size, H, cfg->intermediate_size, Hkv);
        return -1;
    }
    lay->head_dim = D;
    lay->vocab_padded = (cfg->vocab_size + tp_size - 1) / tp_size * tp_size;
    lay->vocab_local = lay->vocab_padded / tp_size;
    lay->vocab_start = lay->vocab_local * tp_rank;
    lay->n_heads_local = H / tp_size;
    lay->n_kv_heads_local = kv_split ? Hkv / tp_size : 1;
    lay->kv_replicas = kv_split ? 1 : tp_size / Hkv;
    // Rank r's query heads [r*Hl, (r+1)*Hl) all fall in group (r*Hl)/(H/Hkv).
    lay->kv_head_start = kv_split ? tp_rank * lay->n_kv_heads_local
                                  : tp_rank * lay->n_heads_local / (H / Hkv);
    lay->ffn_local = cfg->intermediate_size / tp_size;

    int L = cfg->num_hidden_layers, F = cfg->intermediate_size;
    int cap = 3 + 14 * L;
    lay->tensors = xcalloc((size_t)cap, sizeof(dpo_tensor_t), "tensor table");
    lay->layers = xcalloc((size_t)L, sizeof(dpo_layer_tensors_t), "layer table");
    int64_t hl = H / tp_size * D, kvl = (int64_t)lay->n_kv_heads_local * D, fl = F / tp_size;
    char nm[DPO_TENSOR_NAME_MAX];
    lay->embed = layout_add(lay, cap, "model.embed_tokens.weight", 2, cfg->vocab_size, C,
                            DPO_SHARD_ROWS, lay->vocab_local);
    for (int l = 0; l < L; l++) {
        dpo_layer_tensors_t *lt = &lay->layers[l];
#define ADD(field, suffix, nd, rows, cols, shard, arows)                                  \
    do {                                                                                  \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                         \
        lt->field = layout_add(lay, cap, nm, nd, rows, cols, shard, arows);               \
    } while (0)
        ADD(attn_norm, "input_layernorm.weight", 1, C, 1, DPO_SHARD_NONE, 0);
        ADD(q, "self_attn.q_proj.weight", 2, (int64_t)H * D, C, DPO_SHARD_ROWS, hl);
        ADD(k, "self_attn.k_proj.weight", 2, (int64_t)Hkv * D, C, DPO_SHARD_ROWS, kvl);
        ADD(v, "self_attn.v_proj.weight", 2, (int64_t)Hkv * D, C, DPO_SHARD_ROWS, kvl);
        lt->q_bias = lt->k_bias = lt->v_bias = lt->q_norm = lt->k_norm = -1;
        if (cfg->attention_bias) {
            ADD(q_bias, "self_attn.q_proj.bias", 1, (int64_t)H * D, 1, DPO_SHARD_ROWS, hl);
            ADD(k_bias, "self_attn.k_proj.bias", 1, (int64_t)Hkv * D, 1, DPO_SHARD_ROWS, kvl);
            ADD(v_bias, "self_attn.v_proj.bias", 1, (int64_t)Hkv * D, 1, DPO_SHARD_ROWS, kvl);
        }
        if (cfg->qk_norm) {
            ADD(q_norm, "self_attn.q_norm.weight", 1, D, 1, DPO_SHARD_NONE, 0);
            ADD(k_norm, "self_attn.k_norm.weight", 1, D, 1, DPO_SHARD_NONE, 0);
        }
        ADD(o, "self_attn.o_proj.weight", 2, C, (int64_t)H * D, DPO_SHARD_COLS, 0);
        ADD(mlp_norm, "post_attention_layernorm.weight", 1, C, 1, DPO_SHARD_NONE, 0);
        ADD(gate, "mlp.gate_proj.weight", 2, F, C, DPO_SHARD_ROWS, fl);
        ADD(up, "mlp.up_proj.weight", 2, F, C, DPO_SHARD_ROWS, fl);
        ADD(down, "mlp.down_proj.weight", 2, C, F, DPO_SHARD_COLS, 0);
#undef ADD
        if (lay->kv_replicas > 1) {
            // Replicated KV slab: rows of KV head kv_head_start, shared by kv_replicas
            // ranks; the first of them writes it to checkpoints.
            int kv_t[4] = {lt->k, lt->v, lt->k_bias, lt->v_bias};
            for (int j = 0; j < 4; j++) {
                if (kv_t[j] < 0) continue;
                dpo_tensor_t *t = &lay->tensors[kv_t[j]];
                t->local_start[0] = (int64_t)lay->kv_head_start * D;
                t->local_shape[0] = D;
                t->tp_replicas = lay->kv_replicas;
                t->tp_writer = tp_rank % lay->kv_replicas == 0;
            }
        }
    }
    lay->final_norm = layout_add(lay, cap, "model.norm.weight", 1, C, 1, DPO_SHARD_NONE, 0);
    if (cfg->tie_word_embeddings)
        lay->lm_head = lay->embed;
    else
        lay->lm_head = layout_add(lay, cap, "lm_head.weight", 2, cfg->vocab_size, C, DPO_SHARD_ROWS,
                                  lay->vocab_local);
    layout_assign_offsets(lay, 1);
    return 0;
}

void layout_free(dpo_layout_t *lay) {
    free(lay->tensors);
    free(lay->layers);
    lay->tensors = NULL;
    lay->layers = NULL;
}

int layout_find(const dpo_layout_t *lay, const char *name) {
    for (int i = 0; i < lay->n_tensors; i++)
        if (strcmp(lay->tensors[i].name, name) == 0) return i;
    return -1;
}

int64_t layout_total_params(const dpo_layout_t *lay) {
    int64_t n = 0;
    for (int i = 0; i < lay->n_tensors; i++) n += lay->tensors[i].shape[0] * lay->tensors[i].shape[1];
    return n;
}

// ---------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------

// What one layer's forward keeps for its backward. Shapes for T tokens.
typedef struct {
    float *x_in;    // (T,C) residual stream entering the layer
    float *xn;      // (T,C) after input_layernorm
    float *rstd1;   // (T)
    float *q_pre;   // (T,Hl*D) before QK-norm (qk_norm only)
    float *k_pre;   // (T,Hkvl*D)
    float *rstd_q;  // (T*Hl)
    float *rstd_k;  // (T*Hkvl)
    float *q;       // (T,Hl*D) after QK-norm and RoPE
    float *k;       // (T,Hkvl*D)
    float *v;       // (T,Hkvl*D)
    float *att;     // (T,Hl*D) attention output
    float *lse;     // (Hl,T)
    float *x_mid;   // (T,C) residual stream after attention
    float *xn2;     // (T,C) after post_attention_layernorm
    float *rstd2;   // (T)
    float *gate;    // (T,Fl)
    float *up;      // (T,Fl)
    float *h;       // (T,Fl) SwiGLU output
} layer_acts_t;

struct dpo_model_acts {
    int n_sets;            // per layer when trainable, one shared set otherwise (or
                           // when recomputing)
    layer_acts_t *layer;   // (n_sets)
    float *layer_in;       // (L,T,C) recompute only: the residual stream entering each layer
    float *x;              // (T,C) residual stream
    float *xf;             // (T,C) after the final norm
    float *rstd_f;         // (T)
    float *x_final_in;     // (T,C) residual stream entering the final norm
    float *hs;             // (T,C) gathered rows of xf that are scored
    float *logits;         // (chunk, Vl)
    float *stats;          // (3, chunk) max, sumexp, target logit
    float *lse;            // (T) per scored row, global log-sum-exp
    float *dlp;            // (T) per scored row, d loss / d log-prob
    float *tmp;            // (T,C) scratch for the g all-reduce
    // backward scratch
    float *dx, *dtmp, *dxn, *datt, *dq, *dk, *dv, *dgate, *dup, *dh, *dhs;
    float *dq_pre, *dk_pre;  // (T,Hl*D), (T,Hkvl*D) gradients before QK-norm (qk_norm only)
    // This micro-batch's partial gradients of tensors that several TP ranks hold, kept
    // apart so that only they are summed (the accumulated gradient already is):
    float *dkv;    // replicated KV slab, one layer: k (D,C), v (D,C), k bias (D), v bias (D)
    size_t dkv_n;
    float *dqkn;   // QK-norm weights, every layer: q_norm (D), k_norm (D) (tp_size > 1)
    // device copies of the batch's index arrays
    int32_t *tokens, *pos, *cu_seqlens, *rows, *targets;
    // host mirrors for the per-chunk statistics
    float *h_stats;        // (3, chunk)
    float *h_lp;           // (T)
};

static float *dalloc(const dpo_backend_t *be, size_t n) {
    return n ? dpo_alloc(be, n * sizeof(float)) : NULL;
}

static dpo_model_acts_t *acts_alloc(const dpo_model_t *m, bool trainable) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    dpo_model_acts_t *a = xcalloc(1, sizeof *a, "activations");
    size_t T = (size_t)m->max_tokens, C = (size_t)lay->cfg.hidden_size;
    size_t HD = (size_t)lay->n_heads_local * lay->head_dim;
    size_t KVD = (size_t)lay->n_kv_heads_local * lay->head_dim;
    size_t Fl = (size_t)lay->ffn_local, Vl = (size_t)lay->vocab_local, ch = (size_t)m->chunk;
    bool qkn = lay->cfg.qk_norm;
    a->n_sets = trainable && !m->recompute ? lay->cfg.num_hidden_layers : 1;
    if (trainable && m->recompute) a->layer_in = dalloc(be, (size_t)lay->cfg.num_hidden_layers * T * C);
    a->layer = xcalloc((size_t)a->n_sets, sizeof(layer_acts_t), "layer activations");
    for (int l = 0; l < a->n_sets; l++) {
        layer_acts_t *s = &a->layer[l];
        s->x_in = dalloc(be, T * C);
        s->xn = dalloc(be, T * C);
        s->rstd1 = dalloc(be, T);
        if (qkn) {
            s->q_pre = dalloc(be, T * HD);
            s->k_pre = dalloc(be, T * KVD);
            s->rstd_q = dalloc(be, T * (size_t)lay->n_heads_local);
            s->rstd_k = dalloc(be, T * (size_t)lay->n_kv_heads_local);
        }
        s->q = dalloc(be, T * HD);
        s->k = dalloc(be, T * KVD);
        s->v = dalloc(be, T * KVD);
        s->att = dalloc(be, T * HD);
        s->lse = dalloc(be, T * (size_t)lay->n_heads_local);
        s->x_mid = dalloc(be, T * C);
        s->xn2 = dalloc(be, T * C);
        s->rstd2 = dalloc(be, T);
        s->gate = dalloc(be, T * Fl);
        s->up = dalloc(be, T * Fl);
        s->h = dalloc(be, T * Fl);
    }
    a->x = dalloc(be, T * C);
    a->xf = dalloc(be, T * C);
    a->rstd_f = dalloc(be, T);
    a->x_final_in = dalloc(be, T * C);
    a->hs = dalloc(be, T * C);
    a->logits = dalloc(be, ch * Vl);
    a->stats = dalloc(be, 3 * ch);
    a->lse = dalloc(be, T);
    a->dlp = dalloc(be, T);
    a->tmp = dalloc(be, T * C);
    if (trainable) {
        a->dx = dalloc(be, T * C);
        a->dtmp = dalloc(be, T * C);
        a->dxn = dalloc(be, T * C);
        a->datt = dalloc(be, T * HD);
        a->dq = dalloc(be, T * HD);
        a->dk = dalloc(be, T * KVD);
        a->dv = dalloc(be, T * KVD);
        a->dgate = dalloc(be, T * Fl);
        a->dup = dalloc(be, T * Fl);
        a->dh = dalloc(be, T * Fl);
        a->dhs = dalloc(be, T * C);
        if (qkn) {
            a->dq_pre = dalloc(be, T * HD);
            a->dk_pre = dalloc(be, T * KVD);
        }
        size_t D = (size_t)lay->head_dim;
        if (lay->kv_replicas > 1) {
            a->dkv_n = 2 * D * C + (lay->cfg.attention_bias ? 2 * D : 0);
            a->dkv = dalloc(be, a->dkv_n);
        }
        if (qkn && lay->tp_size > 1) a->dqkn = dalloc(be, 2 * D * (size_t)lay->cfg.num_hidden_layers);
    }
    a->tokens = dpo_alloc(be, T * sizeof(int32_t));
    a->pos = dpo_alloc(be, T * sizeof(int32_t));
    a->cu_seqlens = dpo_alloc(be, (T + 1) * sizeof(int32_t));
    a->rows = dpo_alloc(be, T * sizeof(int32_t));
    a->targets = dpo_alloc(be, T * sizeof(int32_t));
    a->h_stats = xcalloc(3 * ch, sizeof(float), "log-prob statistics");
    a->h_lp = xcalloc(T, sizeof(float), "log-probs");
    return a;
}

static void acts_free(const dpo_model_t *m, dpo_model_acts_t *a) {
    if (!a) return;
    const dpo_backend_t *be = m->be;
    for (int l = 0; l < a->n_sets; l++) {
        layer_acts_t *s = &a->layer[l];
        float *bufs[] = {s->x_in, s->xn,  s->rstd1, s->q_pre, s->k_pre, s->rstd_q,
                         s->rstd_k, s->q, s->k,     s->v,     s->att,   s->lse,
                         s->x_mid, s->xn2, s->rstd2, s->gate, s->up,    s->h};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            if (bufs[i]) dpo_free(be, bufs[i]);
    }
    free(a->layer);
    if (a->layer_in) dpo_free(be, a->layer_in);
    float *bufs[] = {a->x,   a->xf,   a->rstd_f, a->x_final_in, a->hs,   a->logits, a->stats,
                     a->lse, a->dlp,  a->tmp,    a->dx,         a->dtmp, a->dxn,    a->datt,
                     a->dq,  a->dk,   a->dv,     a->dgate,      a->dup,  a->dh,     a->dhs,
                     a->dq_pre, a->dk_pre, a->dkv,  a->dqkn};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) dpo_free(be, bufs[i]);
    dpo_free(be, a->tokens);
    dpo_free(be, a->pos);
    dpo_free(be, a->cu_seqlens);
    dpo_free(be, a->rows);
    dpo_free(be, a->targets);
    free(a->h_stats);
    free(a->h_lp);
    free(a);
}

// ---------------------------------------------------------------------------
// Model lifetime
// ---------------------------------------------------------------------------

int model_init(dpo_model_t *m, const dpo_backend_t *be, const dpo_mesh_t *mesh,
               const dpo_model_config_t *cfg, bool trainable, int max_tokens, int chunk,
               char *err, size_t err_len) {
    memset(m, 0, sizeof *m);
    if (layout_init(&m->layout, cfg, mesh->tp_rank, mesh->tp_size, err, err_len) != 0) return -1;
    m->be = be;
    m->dtype = DPO_F32;
    m->mesh = mesh;
    m->max_tokens = max_tokens > 0 ? max_tokens : 1;
    m->chunk = chunk > 0 ? chunk : 256;
    size_t dp = mesh->dp_size > 0 ? (size_t)mesh->dp_size : 1;
    m->n_alloc = (m->layout.n_trainable + dp - 1) / dp * dp;
    m->params = dpo_alloc(be, m->n_alloc * sizeof(float));
    if (trainable) m->grads = dpo_alloc(be, m->n_alloc * sizeof(float));
    m->acts = acts_alloc(m, trainable);
    m->kv_comm = NULL;
    if (trainable && m->layout.kv_replicas > 1)  // collective over the TP group
        m->kv_comm = dcomm_split(mesh->dcomm, DPO_GROUP_TP, m->layout.kv_head_start);
    return 0;
}

void model_freeze(dpo_model_t *m, bool (*frozen)(const dpo_tensor_t *t, void *ctx), void *ctx) {
    dpo_layout_t *lay = &m->layout;
    for (int i = 0; i < lay->n_tensors; i++)
        if (frozen(&lay->tensors[i], ctx)) lay->tensors[i].frozen = true;
    size_t dp = m->mesh->dp_size > 0 ? (size_t)m->mesh->dp_size : 1;
    layout_assign_offsets(lay, dp);
    m->n_alloc = (lay->n_trainable + dp - 1) / dp * dp;
    size_t np = m->n_alloc > lay->n_params ? m->n_alloc : lay->n_params;
    dpo_free(m->be, m->params);
    m->params = dpo_alloc(m->be, np * sizeof(float));
    if (m->grads) {
        dpo_free(m->be, m->grads);
        m->grads = dpo_alloc(m->be, m->n_alloc * sizeof(float));
    }
}

dpo_model_acts_t *model_default_acts(dpo_model_t *m) { return m->acts; }

void model_set_recompute(dpo_model_t *m, bool on) {
    if (m->recompute == on) return;
    acts_free(m, m->acts);
    m->recompute = on;
    m->acts = acts_alloc(m, m->grads != NULL);
}

void model_free(dpo_model_t *m) {
    if (!m->be) return;
    acts_free(m, m->acts);
    dcomm_free(m->kv_comm);
    dpo_free(m->be, m->params);
    if (m->grads) dpo_free(m->be, m->grads);
    layout_free(&m->layout);
    memset(m, 0, sizeof *m);
}

// FNV-1a: a stable stream id per tensor name.
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

void model_init_random(dpo_model_t *m, uint64_t seed) {
    const dpo_layout_t *lay = &m->layout;
    float std = lay->cfg.initializer_range;
    size_t maxn = 0;
    for (int i = 0; i < lay->n_tensors; i++)
        if (lay->tensors[i].numel > maxn) maxn = lay->tensors[i].numel;
    float *host = xmalloc(maxn * sizeof(float), "init staging");
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        memset(host, 0, t->numel * sizeof(float));
        bool is_norm = t->ndim == 1 && strstr(t->name, "norm") != NULL;
        bool is_bias = t->ndim == 1 && !is_norm;
        if (is_norm) {
            for (size_t j = 0; j < t->numel; j++) host[j] = 1.0f;
        } else if (!is_bias) {
            // Walk the full logical tensor so every layout draws the same numbers.
            dpo_rng_t r;
            rng_seed(&r, seed, name_hash(t->name));
            int64_t lc = t->local_shape[1];
            for (int64_t row = 0; row < t->shape[0]; row++) {
                for (int64_t col = 0; col < t->shape[1]; col++) {
                    float val = (float)(rng_normal(&r) * std);
                    int64_t lr = row - t->local_start[0], lcol = col - t->local_start[1];
                    if (lr >= 0 && lr < t->local_shape[0] && lcol >= 0 && lcol < lc)
                        host[lr * lc + lcol] = val;
                }
            }
        }
        dpo_to_device(m->be, m->params + t->offset, host, t->numel * sizeof(float));
    }
    free(host);
}

void model_copy_params(dpo_model_t *dst, const dpo_model_t *src) {
    const dpo_layout_t *dl = &dst->layout, *sl = &src->layout;
    if (dl->n_tensors != sl->n_tensors)
        dpo_fatal("model_copy_params: layouts differ (%d vs %d tensors)", dl->n_tensors,
                  sl->n_tensors);
    bool same = dl->n_params == sl->n_params;
    for (int i = 0; i < dl->n_tensors; i++) {
        if (dl->tensors[i].numel != sl->tensors[i].numel)
            dpo_fatal("model_copy_params: layouts differ at %s", dl->tensors[i].name);
        same = same && dl->tensors[i].offset == sl->tensors[i].offset;
    }
    if (same) {
        dpo_copy(dst->be, dst->params, src->params, sl->n_params * sizeof(float));
        return;
    }
    // Frozen in one model and not the other: the tensors sit at other offsets.
    for (int i = 0; i < dl->n_tensors; i++)
        dpo_copy(dst->be, dst->params + dl->tensors[i].offset, src->params + sl->tensors[i].offset,
                 sl->tensors[i].numel * sizeof(float));
}

void model_zero_grads(dpo_model_t *m) {
    if (m->grads) dpo_zero(m->be, m->grads, m->layout.n_trainable * sizeof(float));
}

// ---------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------

static float *P(const dpo_model_t *m, int tensor) {
    return tensor < 0 ? NULL : m->params + m->layout.tensors[tensor].offset;
}

// NULL for a frozen tensor: the backward skips its gradient.
static float *G(const dpo_model_t *m, int tensor) {
    if (tensor < 0 || m->layout.tensors[tensor].frozen) return NULL;
    return m->grads + m->layout.tensors[tensor].offset;
}

// y (T,N) = x (T,K) @ W^T, W stored (N,K) as Hugging Face (out, in).
// x, W and y are stored as `dt`.
static void linear_fwd(const dpo_backend_t *be, dpo_dtype_t dt, float *y, const float *x,
                       const float *W, int T, int N, int K) {
    dpo_matmul(be, false, true, T, N, K, 1.0f, x, dt, K, W, dt, K, 0.0f, y, dt, N);
}

// dx (T,K) (+)= dy (T,N) @ W (N,K); dW (N,K) += dy^T @ x.
// dy, x, W and dx are stored as `dt`; the weight gradient dW is fp32. dW == NULL
// (a frozen weight) skips the weight gradient.
static void linear_bwd(const dpo_backend_t *be, dpo_dtype_t dt, float *dx, float *dW,
                       const float *dy, const float *x, const float *W, int T, int N, int K,
                       float beta_dx) {
    if (dx) dpo_matmul(be, false, false, T, K, N, 1.0f, dy, dt, N, W, dt, K, beta_dx, dx, dt, K);
    if (dW) dpo_matmul(be, true, false, N, K, T, 1.0f, dy, dt, N, x, dt, K, 1.0f, dW, DPO_F32, K);
}

static void upload_batch(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b) {
    if (b->n_tokens > m->max_tokens)
        dpo_fatal("micro-batch of %d tokens exceeds the %d the model was sized for", b->n_tokens,
                  m->max_tokens);
    const dpo_backend_t *be = m->be;
    dpo_to_device(be, a->tokens, b->tokens, (size_t)b->n_tokens * sizeof(int32_t));
    dpo_to_device(be, a->pos, b->pos, (size_t)b->n_tokens * sizeof(int32_t));
    dpo_to_device(be, a->cu_seqlens, b->cu_seqlens, ((size_t)b->n_seq + 1) * sizeof(int32_t));
    dpo_to_device(be, a->rows, b->scored_rows, (size_t)b->n_scored * sizeof(int32_t));
    dpo_to_device(be, a->targets, b->scored_targets, (size_t)b->n_scored * sizeof(int32_t));
}

// The first half of a layer for T tokens at positions pos (device): input norm,
// q/k/v projections (+bias, +QK-norm) and RoPE. q lands in s->q, k and v in kout /
// vout (s->k / s->v for the full forward, rows of a KV cache for generation).
static void layer_qkv(dpo_model_t *m, dpo_model_acts_t *a, int l, int T, const int32_t *pos,
                      layer_acts_t *s, float *kout, float *vout) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    const dpo_layer_tensors_t *lt = &lay->layers[l];
    int C = lay->cfg.hidden_size, D = lay->head_dim;
    int Hl = lay->n_heads_local, Kl = lay->n_kv_heads_local;
    float eps = lay->cfg.rms_norm_eps;

    dpo_copy(be, s->x_in, a->x, (size_t)T * C * sizeof(float));
    dpo_rmsnorm_fwd(be, s->xn, s->rstd1, a->x, P(m, lt->attn_norm), T, C, eps, m->dtype);
    // Column-parallel q/k/v (f operator: identity in the forward).
    float *qd = lay->cfg.qk_norm ? s->q_pre : s->q;
    float *kd = lay->cfg.qk_norm ? s->k_pre : kout;
    linear_fwd(be, m->dtype, qd, s->xn, P(m, lt->q), T, Hl * D, C);
    linear_fwd(be, m->dtype, kd, s->xn, P(m, lt->k), T, Kl * D, C);
    linear_fwd(be, m->dtype, vout, s->xn, P(m, lt->v), T, Kl * D, C);
    if (lt->q_bias >= 0) {
        dpo_bias_add(be, qd, P(m, lt->q_bias), T, Hl * D, m->dtype);
        dpo_bias_add(be, kd, P(m, lt->k_bias), T, Kl * D, m->dtype);
        dpo_bias_add(be, vout, P(m, lt->v_bias), T, Kl * D, m->dtype);
    }
    if (lay->cfg.qk_norm) {
        // Qwen3: RMSNorm over each head's D values, before RoPE.
        dpo_rmsnorm_fwd(be, s->q, s->rstd_q, s->q_pre, P(m, lt->q_norm), T * Hl, D, eps, m->dtype);
        dpo_rmsnorm_fwd(be, kout, s->rstd_k, s->k_pre, P(m, lt->k_norm), T * Kl, D, eps, m->dtype);
    }
    dpo_rope_fwd(be, s->q, pos, T, Hl, D, lay->cfg.rope_theta, m->dtype);
    dpo_rope_fwd(be, kout, pos, T, Kl, D, lay->cfg.rope_theta, m->dtype);
}

// The second half of a layer, from the attention output s->att: o_proj + residual,
// then the SwiGLU MLP + residual, on a->x.
static void layer_out(dpo_model_t *m, dpo_model_acts_t *a, int l, int T, layer_acts_t *s) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    const dpo_layer_tensors_t *lt = &lay->layers[l];
    int C = lay->cfg.hidden_size, D = lay->head_dim;
    int Hl = lay->n_heads_local, Fl = lay->ffn_local;
    float eps = lay->cfg.rms_norm_eps;

    // Row-parallel o_proj, then the g operator (all-reduce of partial sums).
    linear_fwd(be, m->dtype, a->tmp, s->att, P(m, lt->o), T, C, Hl * D);
    dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, a->tmp, (size_t)T * C, DPO_REDUCE_SUM);
    dpo_add_inplace(be, a->x, a->tmp, (size_t)T * C, m->dtype);
    dpo_copy(be, s->x_mid, a->x, (size_t)T * C * sizeof(float));

    dpo_rmsnorm_fwd(be, s->xn2, s->rstd2, a->x, P(m, lt->mlp_norm), T, C, eps, m->dtype);
    linear_fwd(be, m->dtype, s->gate, s->xn2, P(m, lt->gate), T, Fl, C);
    linear_fwd(be, m->dtype, s->up, s->xn2, P(m, lt->up), T, Fl, C);
    dpo_swiglu_fwd(be, s->h, s->gate, s->up, (size_t)T * Fl, m->dtype);
    linear_fwd(be, m->dtype, a->tmp, s->h, P(m, lt->down), T, C, Fl);
    dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, a->tmp, (size_t)T * C, DPO_REDUCE_SUM);
    dpo_add_inplace(be, a->x, a->tmp, (size_t)T * C, m->dtype);
}

static void layer_forward(dpo_model_t *m, dpo_model_acts_t *a, int l, const dpo_batch_t *b,
                          layer_acts_t *s) {
    const dpo_layout_t *lay = &m->layout;
    int T = b->n_tokens;
    layer_qkv(m, a, l, T, a->pos, s, s->k, s->v);
    dpo_attention_fwd(m->be, s->att, s->lse, s->q, s->k, s->v, a->cu_seqlens, b->n_seq, T,
                      lay->n_heads_local, lay->n_kv_heads_local, lay->head_dim, m->dtype);
    layer_out(m, a, l, T, s);
}

// Vocabulary-parallel log-probs of the scored rows, chunk by chunk: per chunk the
// logits (n, Vl) exist only on this rank's shard, and three numbers per row cross
// the TP group. Leaves the global lse of each row in a->lse, log-probs in a->h_lp.
static void logprob_forward(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    int C = lay->cfg.hidden_size, Vl = lay->vocab_local, S = b->n_scored;
    const float *W = P(m, lay->lm_head);
    for (int r0 = 0; r0 < S; r0 += m->chunk) {
        int n = S - r0 < m->chunk ? S - r0 : m->chunk;
        linear_fwd(be, m->dtype, a->logits, a->hs + (size_t)r0 * C, W, n, Vl, C);
        float *st = a->stats;  // (3, chunk): max, sumexp, target logit
        dpo_logprob_stats(be, st, st + m->chunk, st + 2 * m->chunk, a->logits, a->targets + r0, n,
                          Vl, lay->vocab_start, lay->cfg.vocab_size, m->dtype);
        float *hs = a->h_stats;
        dpo_to_host(be, hs, st, 3 * (size_t)m->chunk * sizeof(float));
        float *mx = hs, *se = hs + m->chunk, *tg = hs + 2 * m->chunk;
        if (m->mesh->tp_size > 1) {
            // Rescale each shard's sum-exp to the global max, then one sum carries both
            // the sum-exp and the target logit (held by exactly one shard).
            float *gmax = xmalloc((size_t)n * sizeof(float), "global max");
            memcpy(gmax, mx, (size_t)n * sizeof(float));
            comm_allreduce_f32(m->mesh, DPO_GROUP_TP, gmax, (size_t)n, DPO_REDUCE_MAX);
            for (int i = 0; i < n; i++) {
                se[i] = se[i] * expf(mx[i] - gmax[i]);
                tg[i] = isinf(tg[i]) ? 0.0f : tg[i];
                mx[i] = gmax[i];
            }
            comm_allreduce_f32(m->mesh, DPO_GROUP_TP, se, 2 * (size_t)m->chunk, DPO_REDUCE_SUM);
            free(gmax);
        }
        for (int i = 0; i < n; i++) {
            float lse = mx[i] + logf(se[i]);
            se[i] = lse;
            a->h_lp[r0 + i] = tg[i] - lse;
        }
        dpo_to_device(be, a->lse + r0, se, (size_t)n * sizeof(float));
    }
}

dpo_model_acts_t *model_acts_new(const dpo_model_t *m) { return acts_alloc(m, m->grads != NULL); }

void model_acts_free(const dpo_model_t *m, dpo_model_acts_t *a) { acts_free(m, a); }

void model_embed_fwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b) {
    const dpo_layout_t *lay = &m->layout;
    int T = b->n_tokens, C = lay->cfg.hidden_size;
    upload_batch(m, a, b);
    // Vocabulary-parallel embedding: each shard fills its own tokens' rows.
    dpo_embedding_fwd(m->be, a->x, a->tokens, P(m, lay->embed), T, C, lay->vocab_start,
                      lay->vocab_local, m->dtype);
    dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, a->x, (size_t)T * C, DPO_REDUCE_SUM);
}

void model_layers_fwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, int l0, int l1,
                      bool save_for_backward) {
    if (save_for_backward && !m->grads) dpo_fatal("model_forward: backward on a frozen model");
    size_t TC = (size_t)b->n_tokens * m->layout.cfg.hidden_size;
    for (int l = l0; l < l1; l++) {
        bool keep_all = save_for_backward && !m->recompute;
        if (save_for_backward && m->recompute)   // only the layer's input survives
            dpo_copy(m->be, a->layer_in + (size_t)l * TC, a->x, TC * sizeof(float));
        layer_forward(m, a, l, b, &a->layer[keep_all ? l : 0]);
    }
}

void model_head_fwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, double *seq_logps) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    int T = b->n_tokens, C = lay->cfg.hidden_size;
    dpo_copy(be, a->x_final_in, a->x, (size_t)T * C * sizeof(float));
    dpo_rmsnorm_fwd(be, a->xf, a->rstd_f, a->x, P(m, lay->final_norm), T, C,
                    lay->cfg.rms_norm_eps, m->dtype);
    dpo_gather_rows(be, a->hs, a->xf, a->rows, b->n_scored, C, m->dtype);
    logprob_forward(m, a, b);
    for (int s = 0; s < b->n_seq; s++) seq_logps[s] = 0.0;
    for (int i = 0; i < b->n_scored; i++) seq_logps[b->scored_seq[i]] += (double)a->h_lp[i];
}

void model_forward(dpo_model_t *m, const dpo_batch_t *b, double *seq_logps,
                   bool save_for_backward) {
    if (save_for_backward && !m->grads) dpo_fatal("model_forward: backward on a frozen model");
    model_embed_fwd(m, m->acts, b);
    model_layers_fwd(m, m->acts, b, 0, m->layout.cfg.num_hidden_layers, save_for_backward);
    model_head_fwd(m, m->acts, b, seq_logps);
}

// ---------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------

static void logprob_backward(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b,
                             const double *dseq) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    int C = lay->cfg.hidden_size, Vl = lay->vocab_local, S = b->n_scored;
    for (int i = 0; i < S; i++) a->h_lp[i] = (float)dseq[b->scored_seq[i]];
    dpo_to_device(be, a->dlp, a->h_lp, (size_t)S * sizeof(float));
    const float *W = P(m, lay->lm_head);
    float *dW = G(m, lay->lm_head);
    for (int r0 = 0; r0 < S; r0 += m->chunk) {
        int n = S - r0 < m->chunk ? S - r0 : m->chunk;
        const float *h = a->hs + (size_t)r0 * C;
        // Recompute this chunk's logits rather than keeping (S, V) of them.
        linear_fwd(be, m->dtype, a->logits, h, W, n, Vl, C);
        dpo_logprob_bwd(be, a->logits, a->targets + r0, a->lse + r0, a->dlp + r0, n, Vl,
                        lay->vocab_start, lay->cfg.vocab_size, m->dtype);
        linear_bwd(be, m->dtype, a->dhs + (size_t)r0 * C, dW, a->logits, h, W, n, Vl, C, 0.0f);
    }
    // Each vocabulary shard holds a partial d hidden.
    dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, a->dhs, (size_t)S * C, DPO_REDUCE_SUM);
}

// In-place sum over the TP ranks that hold the same KV head (m->kv_comm), through
// comm.c like every other collective (MPI on the CPU backend, NCCL on the CUDA one).
static void kv_allreduce(const dpo_model_t *m, float *buf, size_t n) {
    dcomm_allreduce_f32(m->kv_comm, DPO_GROUP_WORLD, buf, n, DPO_REDUCE_SUM);
}

static void layer_backward(dpo_model_t *m, dpo_model_acts_t *a, int l, const dpo_batch_t *b) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    const dpo_layer_tensors_t *lt = &lay->layers[l];
    layer_acts_t *s = &a->layer[m->recompute ? 0 : l];
    int T = b->n_tokens, C = lay->cfg.hidden_size, D = lay->head_dim;
    int Hl = lay->n_heads_local, Kl = lay->n_kv_heads_local, Fl = lay->ffn_local;
    size_t TC = (size_t)T * C;

    // MLP: x_out = x_mid + down(swiglu(gate(xn2), up(xn2))), a->dx = d x_out.
    linear_bwd(be, m->dtype, a->dh, G(m, lt->down), a->dx, s->h, P(m, lt->down), T, C, Fl, 0.0f);
    dpo_swiglu_bwd(be, a->dgate, a->dup, a->dh, s->gate, s->up, (size_t)T * Fl, m->dtype);
    linear_bwd(be, m->dtype, a->dxn, G(m, lt->gate), a->dgate, s->xn2, P(m, lt->gate), T, Fl, C, 0.0f);
    linear_bwd(be, m->dtype, a->dxn, G(m, lt->up), a->dup, s->xn2, P(m, lt->up), T, Fl, C, 1.0f);
    dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, a->dxn, TC, DPO_REDUCE_SUM);  // f operator backward
    dpo_rmsnorm_bwd(be, a->dtmp, G(m, lt->mlp_norm), a->dxn, s->x_mid, P(m, lt->mlp_norm), s->rstd2,
                    T, C, m->dtype);
    dpo_add_inplace(be, a->dx, a->dtmp, TC, m->dtype);

    // Attention: x_mid = x_in + o(attn(rope(q), rope(k), v)).
    linear_bwd(be, m->dtype, a->datt, G(m, lt->o), a->dx, s->att, P(m, lt->o), T, C, Hl * D, 0.0f);
    dpo_attention_bwd(be, a->dq, a->dk, a->dv, a->datt, s->att, s->lse, s->q, s->k, s->v,
                      a->cu_seqlens, b->n_seq, T, Hl, Kl, D, m->dtype);
    dpo_rope_bwd(be, a->dq, a->pos, T, Hl, D, lay->cfg.rope_theta, m->dtype);
    dpo_rope_bwd(be, a->dk, a->pos, T, Kl, D, lay->cfg.rope_theta, m->dtype);
    float *dq = a->dq, *dk = a->dk;
    if (lay->cfg.qk_norm) {
        // Through the per-head RMSNorm back to the projections' outputs. With TP the
        // norm-weight gradients are partial (this rank's heads only): they go to
        // a->dqkn, summed over TP once the backward is done.
        float *gqn = G(m, lt->q_norm), *gkn = G(m, lt->k_norm);
        if (a->dqkn) {
            gqn = a->dqkn + (size_t)l * 2 * D;
            gkn = gqn + D;
        }
        dpo_rmsnorm_bwd(be, a->dq_pre, gqn, a->dq, s->q_pre, P(m, lt->q_norm), s->rstd_q, T * Hl, D, m->dtype);
        dpo_rmsnorm_bwd(be, a->dk_pre, gkn, a->dk, s->k_pre, P(m, lt->k_norm), s->rstd_k, T * Kl, D, m->dtype);
        dq = a->dq_pre;
        dk = a->dk_pre;
    }
    // A replicated KV slab gets only this rank's query heads' share of its gradient:
    // compute it apart, sum it over the ranks holding the same KV head, then add.
    float *gk = G(m, lt->k), *gv = G(m, lt->v), *gkb = G(m, lt->k_bias), *gvb = G(m, lt->v_bias);
    if (a->dkv) {
        dpo_zero(be, a->dkv, a->dkv_n * sizeof(float));
        gk = a->dkv;
        gv = gk + (size_t)Kl * D * C;
        gkb = lt->k_bias >= 0 ? gv + (size_t)Kl * D * C : NULL;
        gvb = lt->k_bias >= 0 ? gkb + (size_t)Kl * D : NULL;
    }
    if (lt->q_bias >= 0) {
        if (G(m, lt->q_bias)) dpo_bias_grad(be, G(m, lt->q_bias), dq, T, Hl * D, m->dtype);
        if (gkb) dpo_bias_grad(be, gkb, dk, T, Kl * D, m->dtype);
        if (gvb) dpo_bias_grad(be, gvb, a->dv, T, Kl * D, m->dtype);
    }
    linear_bwd(be, m->dtype, a->dxn, G(m, lt->q), dq, s->xn, P(m, lt->q), T, Hl * D, C, 0.0f);
    linear_bwd(be, m->dtype, a->dxn, gk, dk, s->xn, P(m, lt->k), T, Kl * D, C, 1.0f);
    linear_bwd(be, m->dtype, a->dxn, gv, a->dv, s->xn, P(m, lt->v), T, Kl * D, C, 1.0f);
    if (a->dkv) {
        kv_allreduce(m, a->dkv, a->dkv_n);
        // Gradients are fp32 whatever the model's dtype; a frozen k/v takes none.
        if (G(m, lt->k)) dpo_add_inplace(be, G(m, lt->k), gk, (size_t)Kl * D * C, DPO_F32);
        if (G(m, lt->v)) dpo_add_inplace(be, G(m, lt->v), gv, (size_t)Kl * D * C, DPO_F32);
        if (lt->k_bias >= 0) {
            if (G(m, lt->k_bias)) dpo_add_inplace(be, G(m, lt->k_bias), gkb, (size_t)Kl * D, DPO_F32);
            if (G(m, lt->v_bias)) dpo_add_inplace(be, G(m, lt->v_bias), gvb, (size_t)Kl * D, DPO_F32);
        }
    }
    dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, a->dxn, TC, DPO_REDUCE_SUM);  // f operator backward
    dpo_rmsnorm_bwd(be, a->dtmp, G(m, lt->attn_norm), a->dxn, s->x_in, P(m, lt->attn_norm), s->rstd1,
                    T, C, m->dtype);
    dpo_add_inplace(be, a->dx, a->dtmp, TC, m->dtype);
}

// Tells the gradient hook (model_set_grad_hook) that tensor i's gradient of this
// micro-batch is complete. Frozen tensors have no gradient and are never reported.
static void grad_done(const dpo_model_t *m, int i) {
    if (i < 0 || !m->grad_hook || m->layout.tensors[i].frozen) return;
    m->grad_hook(m->grad_hook_ctx, i);
}

void model_head_bwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, const double *dseq) {
    if (!m->grads) dpo_fatal("model_backward: the model is frozen");
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    int T = b->n_tokens, C = lay->cfg.hidden_size;
    logprob_backward(m, a, b, dseq);
    // A tied LM head is the embedding: complete only after model_embed_bwd.
    if (lay->lm_head != lay->embed) grad_done(m, lay->lm_head);
    // d xf: zero except at the scored rows.
    dpo_zero(be, a->dtmp, (size_t)T * C * sizeof(float));
    dpo_scatter_add_rows(be, a->dtmp, a->dhs, a->rows, b->n_scored, C, m->dtype);
    dpo_rmsnorm_bwd(be, a->dx, G(m, lay->final_norm), a->dtmp, a->x_final_in, P(m, lay->final_norm),
                    a->rstd_f, T, C, m->dtype);
    grad_done(m, lay->final_norm);
}

// The tensors of layer l, in layout order (they are contiguous in the tensor table).
static void layer_tensor_range(const dpo_layout_t *lay, int l, int *first, int *end) {
    *first = lay->layers[l].attn_norm;
    *end = lay->layers[l].down + 1;
}

void model_layers_bwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, int l0, int l1) {
    if (!m->grads) dpo_fatal("model_backward: the model is frozen");
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    int T = b->n_tokens, C = lay->cfg.hidden_size;
    size_t D = (size_t)lay->head_dim;
    if (a->dqkn) dpo_zero(be, a->dqkn + (size_t)l0 * 2 * D, 2 * D * (size_t)(l1 - l0) * sizeof(float));
    for (int l = l1 - 1; l >= l0; l--) {
        if (m->recompute) {
            // The same ops on the same input: the recomputed activations are the
            // forward's bit for bit (a->x is free here: the backward never reads it).
            dpo_copy(be, a->x, a->layer_in + (size_t)l * T * C, (size_t)T * C * sizeof(float));
            layer_forward(m, a, l, b, &a->layer[0]);
        }
        layer_backward(m, a, l, b);
        int first, end;
        layer_tensor_range(lay, l, &first, &end);
        for (int i = first; i < end; i++) {
            bool qkn = i == lay->layers[l].q_norm || i == lay->layers[l].k_norm;
            if (!(qkn && a->dqkn)) grad_done(m, i);   // QK-norm with TP: below
        }
    }
    // QK-norm weights are replicated but each TP rank applies them to its own heads
    // only: this micro-batch's gradients are partial sums, added up over TP and then
    // to the (already complete) accumulated gradient.
    if (a->dqkn) {
        float *part = a->dqkn + (size_t)l0 * 2 * D;
        dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, part, 2 * D * (size_t)(l1 - l0), DPO_REDUCE_SUM);
        for (int l = l0; l < l1; l++) {
            const dpo_layer_tensors_t *lt = &lay->layers[l];
            float *gq = G(m, lt->q_norm), *gk = G(m, lt->k_norm);
            if (gq) dpo_add_inplace(be, gq, a->dqkn + (size_t)l * 2 * D, D, DPO_F32);
            if (gk) dpo_add_inplace(be, gk, a->dqkn + (size_t)l * 2 * D + D, D, DPO_F32);
            grad_done(m, lt->q_norm);
            grad_done(m, lt->k_norm);
        }
    }
}

void model_embed_bwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b) {
    const dpo_layout_t *lay = &m->layout;
    float *g = G(m, lay->embed);
    if (g)
        dpo_embedding_bwd(m->be, g, a->tokens, a->dx, b->n_tokens, lay->cfg.hidden_size,
                          lay->vocab_start, lay->vocab_local, m->dtype);
    grad_done(m, lay->embed);
}

void model_backward(dpo_model_t *m, const dpo_batch_t *b, const double *dseq) {
    model_head_bwd(m, m->acts, b, dseq);
    model_layers_bwd(m, m->acts, b, 0, m->layout.cfg.num_hidden_layers);
    model_embed_bwd(m, m->acts, b);
}

void model_set_grad_hook(dpo_model_t *m, void (*hook)(void *ctx, int tensor), void *ctx) {
    m->grad_hook = hook;
    m->grad_hook_ctx = ctx;
}

// ---------------------------------------------------------------------------
// KV cache and incremental forward (generation)
// ---------------------------------------------------------------------------

int kv_cache_init(dpo_kv_cache_t *c, const dpo_model_t *m, int capacity, char *err,
                  size_t err_len) {
    memset(c, 0, sizeof *c);
    if (capacity <= 0) {
        snprintf(err, err_len, "KV cache capacity must be positive, got %d", capacity);
        return -1;
    }
    const dpo_layout_t *lay = &m->layout;
    c->n_layers = lay->cfg.num_hidden_layers;
    c->capacity = capacity;
    c->kv_dim = lay->n_kv_heads_local * lay->head_dim;
    c->k = xcalloc((size_t)c->n_layers, sizeof(float *), "KV cache");
    c->v = xcalloc((size_t)c->n_layers, sizeof(float *), "KV cache");
    for (int l = 0; l < c->n_layers; l++) {
        c->k[l] = dalloc(m->be, (size_t)capacity * c->kv_dim);
        c->v[l] = dalloc(m->be, (size_t)capacity * c->kv_dim);
    }
    c->be = m->be;
    return 0;
}

void kv_cache_free(dpo_kv_cache_t *c) {
    if (!c->be) return;
    for (int l = 0; l < c->n_layers; l++) {
        dpo_free(c->be, c->k[l]);
        dpo_free(c->be, c->v[l]);
    }
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

void model_forward_cached(dpo_model_t *m, dpo_kv_cache_t *c, const int32_t *tokens, int n,
                          int n_logits, float *logits) {
    const dpo_backend_t *be = m->be;
    const dpo_layout_t *lay = &m->layout;
    dpo_model_acts_t *a = m->acts;
    int C = lay->cfg.hidden_size, Vl = lay->vocab_local, past = c->len;
    if (n <= 0 || n > m->max_tokens)
        dpo_fatal("model_forward_cached: %d tokens, the model was sized for 1..%d", n,
                  m->max_tokens);
    if (past + n > c->capacity)
        dpo_fatal("model_forward_cached: %d cached + %d new positions exceed the cache's %d",
                  past, n, c->capacity);
    if (n_logits < 0 || n_logits > n)
        dpo_fatal("model_forward_cached: n_logits %d outside 0..%d", n_logits, n);
    int32_t *pos = xmalloc((size_t)n * sizeof(int32_t), "positions");
    for (int i = 0; i < n; i++) pos[i] = past + i;
    dpo_to_device(be, a->tokens, tokens, (size_t)n * sizeof(int32_t));
    dpo_to_device(be, a->pos, pos, (size_t)n * sizeof(int32_t));
    free(pos);
    dpo_embedding_fwd(be, a->x, a->tokens, P(m, lay->embed), n, C, lay->vocab_start, lay->vocab_local, m->dtype);
    dcomm_allreduce_f32(m->mesh->dcomm, DPO_GROUP_TP, a->x, (size_t)n * C, DPO_REDUCE_SUM);
    size_t kvd = (size_t)c->kv_dim;
    for (int l = 0; l < lay->cfg.num_hidden_layers; l++) {
        layer_acts_t *s = &a->layer[0];
        layer_qkv(m, a, l, n, a->pos, s, c->k[l] + (size_t)past * kvd, c->v[l] + (size_t)past * kvd);
        dpo_attention_cached(be, s->att, s->q, c->k[l], c->v[l], n, past, lay->n_heads_local,
                             lay->n_kv_heads_local, lay->head_dim, m->dtype);
        layer_out(m, a, l, n, s);
    }
    c->len = past + n;
    if (n_logits == 0) return;
    // Final norm of the last n_logits rows only, then this rank's vocabulary slab of
    // their logits, chunk by chunk through a->logits.
    const float *xl = a->x + (size_t)(n - n_logits) * C;
    dpo_rmsnorm_fwd(be, a->xf, a->rstd_f, xl, P(m, lay->final_norm), n_logits, C,
                    lay->cfg.rms_norm_eps, m->dtype);
    const float *W = P(m, lay->lm_head);
    for (int r0 = 0; r0 < n_logits; r0 += m->chunk) {
        int k = n_logits - r0 < m->chunk ? n_logits - r0 : m->chunk;
        linear_fwd(be, m->dtype, a->logits, a->xf + (size_t)r0 * C, W, k, Vl, C);
        dpo_to_host(be, logits + (size_t)r0 * Vl, a->logits, (size_t)k * Vl * sizeof(float));
    }
}
