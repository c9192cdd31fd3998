// model.h — the Llama-family decoder: parameter layout (ready for tensor-parallel
// shards), one allocation for parameters and one for gradients, and the forward /
// hand-written backward over a packed micro-batch.
//
// Every tensor is described at its full logical shape (Hugging Face names and
// (out, in) orientation) plus the slab this tensor-parallel rank holds, so that
// checkpoints store full shapes and any layout can load them.
#ifndef DPO_MODEL_H
#define DPO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dpo/backend.h"
#include "dpo/batch.h"
#include "dpo/config.h"
#include "dpo/mesh.h"

struct dpo_dcomm;  // dcomm.h

#define DPO_TENSOR_NAME_MAX 96

typedef enum {
    DPO_SHARD_NONE = 0,  // replicated on every TP rank (norm weights)
    DPO_SHARD_ROWS,      // dim 0 split: column-parallel (q/k/v/gate/up), vocabulary rows;
                         // k/v replicated per KV head when tp_size > n_kv_heads (tp_replicas)
    DPO_SHARD_COLS       // dim 1 split: row-parallel (o_proj, down_proj)
} dpo_shard_t;

typedef struct {
    char name[DPO_TENSOR_NAME_MAX];  // e.g. "model.layers.0.self_attn.q_proj.weight"
    int ndim;                        // 1 or 2
    int64_t shape[2];                // full logical shape (ndim 1: shape[1] = 1)
    int64_t local_shape[2];          // this rank's slab
    int64_t local_start[2];          // where the slab starts in the full tensor
    size_t offset;                   // element offset in the one allocation
    size_t numel;                    // local element count
    dpo_shard_t shard;
    dpo_dtype_t dtype;               // storage of the working copy in params
    // Frozen: no gradient, no optimizer state (model_freeze). Trainable tensors come
    // first in the one allocation, so gradients and moments cover a prefix of it.
    bool frozen;
    bool decay;                      // AdamW weight decay applies (matrices only)
    // TP ranks holding this very slab: 1 for a split tensor, tp_size for DPO_SHARD_NONE,
    // tp_size / n_kv_heads for a replicated KV slab (n_kv_heads < tp_size). Global
    // norms count each slab once; checkpoints write it from one of them (tp_writer).
    int tp_replicas;
    bool tp_writer;
} dpo_tensor_t;

// Indices into layout.tensors for one decoder layer (-1 when absent).
typedef struct {
    int attn_norm, q, k, v, o, q_bias, k_bias, v_bias, q_norm, k_norm;
    int mlp_norm, gate, up, down;
} dpo_layer_tensors_t;

typedef struct {
    dpo_model_config_t cfg;
    int tp_rank, tp_size;
    int head_dim;
    int vocab_padded;              // vocab_size rounded up to a multiple of tp_size
    int vocab_local, vocab_start;  // this rank's rows of the embedding / LM head
    int n_heads_local, n_kv_heads_local, ffn_local;
    // n_kv_heads < tp_size: each rank holds the one KV head its query heads use, a
    // replicated slab shared by kv_replicas = tp_size / n_kv_heads ranks; else 1.
    int kv_replicas;
    int kv_head_start;             // first KV head this rank holds
    int n_tensors;
    dpo_tensor_t *tensors;         // (n_tensors)
    dpo_layer_tensors_t *layers;   // (num_hidden_layers)
    int embed, final_norm, lm_head;  // lm_head == embed when tied
    size_t n_params;               // local element count of the one allocation
    // Elements of the trainable prefix [0, n_trainable) of the allocation (every
    // trainable tensor lies there; frozen tensors follow, from frozen_start).
    size_t n_trainable;
    size_t frozen_start;
} dpo_layout_t;

// Places the tensors in the one allocation: the trainable ones first (in table
// order), then, from the first multiple of `align` at or past their end, the
// frozen ones. With no tensor frozen the offsets are those of table order.
void layout_assign_offsets(dpo_layout_t *lay, size_t align);

// Builds the layout; returns -1 with a message in err when the architecture cannot be
// split tp_size ways. tp_size must divide num_attention_heads and intermediate_size,
// and divide num_key_value_heads or be a multiple of it (KV heads replicated).
int layout_init(dpo_layout_t *lay, const dpo_model_config_t *cfg, int tp_rank, int tp_size,
                char *err, size_t err_len);
void layout_free(dpo_layout_t *lay);
int layout_find(const dpo_layout_t *lay, const char *name);  // -1 when absent
// Parameters counted at full logical size (for FLOP estimates).
int64_t layout_total_params(const dpo_layout_t *lay);

// Per-layer activations saved by the forward for the backward; sized for max_tokens.
typedef struct dpo_model_acts dpo_model_acts_t;

typedef struct {
    const dpo_backend_t *be;
    const dpo_mesh_t *mesh;
    dpo_layout_t layout;
    // Storage of the weights and of the activations every op reads and writes
    // (DPO_F32 is the only one so far); gradients and statistics are fp32.
    dpo_dtype_t dtype;
    float *params;       // (max(n_alloc, layout.n_params)) device
    float *grads;        // (n_alloc) device, trainable tensors only; NULL for a frozen model
    // layout.n_trainable rounded up to a multiple of the data-parallel size, so that
    // the flat vector of trainable elements splits into equal ZeRO shards; the
    // padding stays zero. Frozen tensors start at or after it.
    size_t n_alloc;
    int max_tokens;      // packed tokens per micro-batch this model was sized for
    int chunk;           // rows of logits per log-prob chunk
    // Activation recomputation: the forward keeps only each layer's input and the
    // backward re-runs the layer's forward before its backward (one shared set of
    // layer activations instead of one per layer).
    bool recompute;
    dpo_model_acts_t *acts;
    // Trainable with kv_replicas > 1: the TP ranks holding the same KV head (their
    // K/V gradients are summed over it); NULL otherwise.
    struct dpo_dcomm *kv_comm;
    // Called by the backward when a tensor's gradient of the micro-batch is complete
    // (model_set_grad_hook): the data-parallel reduction starts from it.
    void (*grad_hook)(void *ctx, int tensor);
    void *grad_hook_ctx;
} dpo_model_t;

// Allocates parameters (zero), gradients when trainable, and activations.
int model_init(dpo_model_t *m, const dpo_backend_t *be, const dpo_mesh_t *mesh,
               const dpo_model_config_t *cfg, bool trainable, int max_tokens, int chunk,
               char *err, size_t err_len);
void model_free(dpo_model_t *m);
// Freezes every tensor for which frozen(tensor, ctx) is true: no gradient, no
// optimizer state, and the backward computes no weight gradient for it. Call
// right after model_init, before loading weights (the allocations are redone).
void model_freeze(dpo_model_t *m, bool (*frozen)(const dpo_tensor_t *t, void *ctx), void *ctx);
// Switches activation recomputation on or off for a trainable model (reallocates
// the activations; call between steps). Gradients are bit-identical either way.
void model_set_recompute(dpo_model_t *m, bool on);
// Normal(0, initializer_range) matrices, ones for norm weights, zero biases. The
// values depend only on (seed, tensor name, element index in the full tensor), so
// every TP layout initialises the same logical model.
void model_init_random(dpo_model_t *m, uint64_t seed);
// Copies parameters from another model of the same layout.
void model_copy_params(dpo_model_t *dst, const dpo_model_t *src);
void model_zero_grads(dpo_model_t *m);

// Forward over a packed batch. seq_logps (n_seq, host) receives, per sequence, the
// sum of log-probs of its completion tokens. With save_for_backward the activations
// stay for model_backward (the model must be trainable).
void model_forward(dpo_model_t *m, const dpo_batch_t *b, double *seq_logps,
                   bool save_for_backward);
// Backward of sum_s dseq[s] * seq_logps[s]; accumulates into m->grads.
void model_backward(dpo_model_t *m, const dpo_batch_t *b, const double *dseq);

// The same passes in pieces, for schedules (src/optim/schedule.c) and pipeline
// stages: model_forward = embed_fwd, layers_fwd [0, L), head_fwd; model_backward =
// head_bwd, layers_bwd [0, L), embed_bwd. Each works on an activation handle: the
// model's own (the one model_forward uses) or one of model_acts_new, so several
// micro-batches can be in flight. A handle holds one micro-batch's activations
// from its forward to its backward.
dpo_model_acts_t *model_acts_new(const dpo_model_t *m);
void model_acts_free(const dpo_model_t *m, dpo_model_acts_t *a);
dpo_model_acts_t *model_default_acts(dpo_model_t *m);
void model_embed_fwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b);
void model_layers_fwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, int l0, int l1,
                      bool save_for_backward);
void model_head_fwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, double *seq_logps);
void model_head_bwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, const double *dseq);
void model_layers_bwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b, int l0, int l1);
void model_embed_bwd(dpo_model_t *m, dpo_model_acts_t *a, const dpo_batch_t *b);
// Installs the gradient-complete hook (NULL: none).
void model_set_grad_hook(dpo_model_t *m, void (*hook)(void *ctx, int tensor), void *ctx);

// ---- generation: KV cache and incremental forward ----

// Per layer, this rank's keys and values (after bias, QK-norm and RoPE) of the
// positions seen so far: (capacity, n_kv_heads_local * head_dim) each, device memory.
typedef struct {
    const dpo_backend_t *be;
    int n_layers, capacity, kv_dim;
    int len;          // positions filled; the next token goes to position len
    float **k, **v;   // (n_layers)
} dpo_kv_cache_t;

// Sizes a cache for `capacity` positions (prompt + new tokens) of model m's layout.
int kv_cache_init(dpo_kv_cache_t *c, const dpo_model_t *m, int capacity, char *err,
                  size_t err_len);
void kv_cache_free(dpo_kv_cache_t *c);
// Empties the cache (the buffers stay) for a new sequence.
static inline void kv_cache_reset(dpo_kv_cache_t *c) { c->len = 0; }

// Runs the n tokens (host ids; 1 <= n <= max_tokens) of one sequence at positions
// c->len .. c->len+n-1 through the model with the same ops as model_forward,
// attending to the cached positions, and appends their K/V to the cache.
// Collective over the TP group. When n_logits > 0, logits (host, n_logits x
// vocab_local) receives this rank's vocabulary slab (columns vocab_start ..; columns
// at or past vocab_size are padding) of the logits of the last n_logits positions.
void model_forward_cached(dpo_model_t *m, dpo_kv_cache_t *c, const int32_t *tokens, int n,
                          int n_logits, float *logits);

#endif
