// backend.h — the ops table. The model reaches compute only through it, so the
// CPU backend (OpenBLAS + OpenMP, the tested reference) and the CUDA backend are
// interchangeable. All tensors are row-major fp32 "device" buffers owned by the
// backend (host memory on the CPU backend).
//
// Conventions: T = packed tokens of a micro-batch, C = hidden size, H/Hkv = query /
// key-value heads (local to this tensor-parallel rank), D = head dim, F = local
// MLP width, V = local vocabulary rows. Backward ops ACCUMULATE into parameter
// gradients (dw, db, dtable) and OVERWRITE activation gradients (dx, dq, ...),
// unless the comment says otherwise.
#ifndef DPO_BACKEND_H
#define DPO_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define DPO_BACKEND_NORETURN __attribute__((noreturn))
#else
#define DPO_BACKEND_NORETURN
#endif

#ifdef __cplusplus
extern "C" {
#endif

// ---- element types ----
// Storage type of a weight or activation buffer. Only fp32 exists so far; ops that
// touch weights or activations take the dtype of their buffers, so a new type is
// new kernels, not new signatures. Parameter gradients, optimizer moments and
// per-row statistics are always fp32 (float *).
typedef enum {
    DPO_F32 = 0,
    DPO_DTYPE_COUNT
} dpo_dtype_t;

size_t dpo_dtype_size(dpo_dtype_t t);       // bytes per element
const char *dpo_dtype_name(dpo_dtype_t t);  // "f32"

typedef struct dpo_backend dpo_backend_t;

// The op list, written once. Each entry is
//   V(name, (, params...), (, args...), flops)   for an op returning nothing, or
//   R(type, name, (, params...), (, args...), flops)   for one returning `type`;
// every op also takes the backend itself as its first argument (hence the leading
// commas). The list generates the ops table below, the dpo_<name>() call
// wrappers, the profiler's timing wrappers and the op names; `flops` is the
// op's floating-point work in terms of its arguments, for the profiler (0 where
// it does not count).
#define DPO_BACKEND_OPS(V, R)                                                                   \
    /* ---- memory ---- */                                                                     \
    R(void *, alloc, (, size_t bytes), (, bytes), 0)  /* zero-filled; dies on failure */       \
    V(free, (, void *p), (, p), 0)                                                             \
    V(to_device, (, void *dst, const void *host_src, size_t bytes), (, dst, host_src, bytes), 0) \
    V(to_host, (, void *host_dst, const void *src, size_t bytes), (, host_dst, src, bytes), 0)  \
    V(copy, (, void *dst, const void *src, size_t bytes), (, dst, src, bytes), 0) /* d2d */   \
    V(zero, (, void *p, size_t bytes), (, p, bytes), 0)                                        \
    V(synchronize, (), (), 0)                                                                  \
    /* ---- dense linear algebra ----                                                          \
       C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C, row-major, leading dimensions   \
       of the stored (untransposed) matrices; each operand has its own dtype. */               \
    V(matmul,                                                                                  \
      (, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const void *A,          \
       dpo_dtype_t a_dtype, int lda, const void *B, dpo_dtype_t b_dtype, int ldb, float beta,  \
       void *C, dpo_dtype_t c_dtype, int ldc),                                                 \
      (, trans_a, trans_b, M, N, K, alpha, A, a_dtype, lda, B, b_dtype, ldb, beta, C, c_dtype, \
       ldc),                                                                                   \
      2.0 * M * N * K)                                                                         \
    /* ---- element-wise / small ops ---- */                                                   \
    V(add_inplace, (, void *y, const void *x, size_t n, dpo_dtype_t dt), (, y, x, n, dt), 0)   \
    V(scale_inplace, (, void *x, float s, size_t n, dpo_dtype_t dt), (, x, s, n, dt), 0)       \
    /* sum of squares of fp32 gradients, accumulated in double (global-norm clipping) */       \
    R(double, sumsq, (, const float *x, size_t n), (, x, n), 0)                                \
    /* y (T,N) += b (N) */                                                                     \
    V(bias_add, (, void *y, const void *b, int T, int N, dpo_dtype_t dt), (, y, b, T, N, dt), 0) \
    /* db (N) += sum_t dy */                                                                   \
    V(bias_grad, (, float *db, const void *dy, int T, int N, dpo_dtype_t dt),                  \
      (, db, dy, T, N, dt), 0)                                                                 \
    /* ---- embedding (vocabulary-parallel: rows [vstart, vstart+V) here) ----                 \
       out (T,C) = table[tok - vstart] for tokens in this shard, 0 otherwise;                  \
       dtable (V,C) += dout rows of the tokens in this shard. */                               \
    V(embedding_fwd,                                                                           \
      (, void *out, const int32_t *tokens, const void *table, int T, int C, int vstart, int V, \
       dpo_dtype_t dt),                                                                        \
      (, out, tokens, table, T, C, vstart, V, dt), 0)                                          \
    V(embedding_bwd,                                                                           \
      (, float *dtable, const int32_t *tokens, const void *dout, int T, int C, int vstart,     \
       int V, dpo_dtype_t dt),                                                                 \
      (, dtable, tokens, dout, T, C, vstart, V, dt), 0)                                        \
    /* ---- RMSNorm over the last dim: out (N,C) = x / rms(x) * w; rstd (N) saved;             \
       backward: dx (N,C) overwritten, dw (C) accumulated (NULL: frozen w, skipped) ---- */                              \
    V(rmsnorm_fwd,                                                                             \
      (, void *out, float *rstd, const void *x, const void *w, int N, int C, float eps,        \
       dpo_dtype_t dt),                                                                        \
      (, out, rstd, x, w, N, C, eps, dt), 0)                                                   \
    V(rmsnorm_bwd,                                                                             \
      (, void *dx, float *dw, const void *dout, const void *x, const void *w, const float *rstd, \
       int N, int C, dpo_dtype_t dt),                                                          \
      (, dx, dw, dout, x, w, rstd, N, C, dt), 0)                                               \
    /* ---- RoPE, in place on x (T, H, D); pos (T) = position within its sequence ---- */      \
    V(rope_fwd, (, void *x, const int32_t *pos, int T, int H, int D, float theta, dpo_dtype_t dt), \
      (, x, pos, T, H, D, theta, dt), 0)                                                       \
    V(rope_bwd,                                                                                \
      (, void *dx, const int32_t *pos, int T, int H, int D, float theta, dpo_dtype_t dt),      \
      (, dx, pos, T, H, D, theta, dt), 0)                                                      \
    /* ---- causal attention over packed sequences, GQA (see below) ---- */                    \
    V(attention_fwd,                                                                           \
      (, void *out, float *lse, const void *q, const void *k, const void *v,                   \
       const int32_t *cu_seqlens, int nseq, int T, int H, int Hkv, int D, dpo_dtype_t dt),     \
      (, out, lse, q, k, v, cu_seqlens, nseq, T, H, Hkv, D, dt), 0)                            \
    V(attention_bwd,                                                                           \
      (, void *dq, void *dk, void *dv, const void *dout, const void *out, const float *lse,    \
       const void *q, const void *k, const void *v, const int32_t *cu_seqlens, int nseq,       \
       int T, int H, int Hkv, int D, dpo_dtype_t dt),                                          \
      (, dq, dk, dv, dout, out, lse, q, k, v, cu_seqlens, nseq, T, H, Hkv, D, dt), 0)          \
    V(attention_cached,                                                                        \
      (, void *out, const void *q, const void *k, const void *v, int n, int past, int H,       \
       int Hkv, int D, dpo_dtype_t dt),                                                        \
      (, out, q, k, v, n, past, H, Hkv, D, dt), 0)                                             \
    /* ---- SwiGLU MLP activation: out (n) = silu(gate) * up ---- */                           \
    V(swiglu_fwd, (, void *out, const void *gate, const void *up, size_t n, dpo_dtype_t dt),   \
      (, out, gate, up, n, dt), 0)                                                             \
    V(swiglu_bwd,                                                                              \
      (, void *dgate, void *dup, const void *dout, const void *gate, const void *up, size_t n, \
       dpo_dtype_t dt),                                                                        \
      (, dgate, dup, dout, gate, up, n, dt), 0)                                                \
    /* ---- row gather / scatter (dst[rows[i]] += src[i]; rows distinct) ---- */               \
    V(gather_rows, (, void *dst, const void *src, const int32_t *rows, int n, int C, dpo_dtype_t dt), \
      (, dst, src, rows, n, C, dt), 0)                                                         \
    V(scatter_add_rows,                                                                        \
      (, void *dst, const void *src, const int32_t *rows, int n, int C, dpo_dtype_t dt),       \
      (, dst, src, rows, n, C, dt), 0)                                                         \
    /* ---- vocabulary-parallel log-probability on one chunk of logits (n, V) (below) ---- */  \
    V(logprob_stats,                                                                           \
      (, float *row_max, float *row_sumexp, float *target_logit, const void *logits,           \
       const int32_t *targets, int n, int V, int vstart, int vocab_valid, dpo_dtype_t dt),     \
      (, row_max, row_sumexp, target_logit, logits, targets, n, V, vstart, vocab_valid, dt), 0) \
    V(logprob_bwd,                                                                             \
      (, void *logits, const int32_t *targets, const float *lse, const float *dlogp, int n,    \
       int V, int vstart, int vocab_valid, dpo_dtype_t dt),                                    \
      (, logits, targets, lse, dlogp, n, V, vstart, vocab_valid, dt), 0)                       \
    /* ---- optimizer: one AdamW step on n fp32 elements (dpo_adamw_update) ---- */            \
    V(adamw,                                                                                   \
      (, float *param, const float *grad, float *m, float *v, size_t n, float lr, float beta1, \
       float beta2, float eps, float weight_decay, float bc1, float bc2),                      \
      (, param, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, bc1, bc2), 0)

// Op semantics beyond the one-line comments above:
// - attention_fwd: q (T,H,D), k/v (T,Hkv,D), cu_seqlens (nseq+1) token offsets of
//   each sequence; a token attends to the tokens of its own sequence at or before it
//   (dpo_attn_visible in math_shared.h). out (T,H,D); lse (H,T) log-sum-exp of the
//   scaled scores, saved for the backward. attention_bwd: dq (T,H,D), dk/dv
//   (T,Hkv,D) overwritten.
// - attention_cached: incremental (KV-cached) attention for one sequence: q (n,H,D)
//   holds the queries of positions past..past+n-1, k/v (past+n,Hkv,D) the keys and
//   values of positions 0..past+n-1; query i attends to keys 0..past+i. out (n,H,D).
//   Each row follows the same arithmetic as attention_fwd's row at the same
//   position. The CUDA backend's rows are bit-identical to its forward's; the CPU
//   backend runs both through one tile routine on sgemm, whose summation order may
//   depend on the matrix shapes (how many rows the call has), so its rows agree
//   with the forward's to fp32 rounding (~1e-7 relative; tests/test_ops.c checks
//   1e-5) and are bit-identical only where the shapes match (e.g. past = 0).
// - logprob_stats: per row, the local max over the valid columns (global column
//   vstart + j < vocab_valid), the local sum of exp(logit - local max), and the
//   target's logit when the target falls in this shard (else -INFINITY). Padding
//   columns never count. logprob_bwd: in place, logits (n,V) become dlogits =
//   dlogp[r] * (onehot(target) - softmax) given the global lse (n) of each row;
//   padding columns get 0.

#define DPO_OP_FIELD_V(name, params, args, flops) void (*name)(const dpo_backend_t *be DPO_UNPAREN params);
#define DPO_OP_FIELD_R(type, name, params, args, flops) type (*name)(const dpo_backend_t *be DPO_UNPAREN params);
#define DPO_UNPAREN(...) __VA_ARGS__

// The method table: one function pointer per op, each taking the backend first.
typedef struct dpo_backend_ops {
    const char *name;  // "cpu", "cuda", "profile"
    DPO_BACKEND_OPS(DPO_OP_FIELD_V, DPO_OP_FIELD_R)
} dpo_backend_ops_t;

// A backend instance: its method table and its own state (stream, handles,
// workspace, counters...), so that two streams, two devices or a profiler wrapped
// around another backend are two instances. Ops take the instance as `be`.
struct dpo_backend {
    const dpo_backend_ops_t *ops;
    void *ctx;
};

// dpo_<op>(be, ...) calls be->ops-><op>(be, ...).
#define DPO_OP_CALL_V(name, params, args, flops)                                   \
    static inline void dpo_##name(const dpo_backend_t *be DPO_UNPAREN params) { \
        be->ops->name(be DPO_UNPAREN args);                                      \
    }
#define DPO_OP_CALL_R(type, name, params, args, flops)                          \
    static inline type dpo_##name(const dpo_backend_t *be DPO_UNPAREN params) { \
        return be->ops->name(be DPO_UNPAREN args);                               \
    }
DPO_BACKEND_OPS(DPO_OP_CALL_V, DPO_OP_CALL_R)
#undef DPO_OP_CALL_V
#undef DPO_OP_CALL_R

// Number of ops in the table, and their names in table order (profiler, errors).
#define DPO_OP_COUNT_V(name, params, args, flops) +1
#define DPO_OP_COUNT_R(type, name, params, args, flops) +1
enum { DPO_BACKEND_N_OPS = 0 DPO_BACKEND_OPS(DPO_OP_COUNT_V, DPO_OP_COUNT_R) };
extern const char *const dpo_backend_op_names[DPO_BACKEND_N_OPS];

// Checks that a table provides every op; returns the name of the first missing op,
// or NULL when complete. backend_check dies (naming the backend and the op) on an
// incomplete table; every backend constructor calls it, so a forgotten op is an
// error when the backend is opened, never a NULL call in the middle of a step.
const char *backend_ops_missing(const dpo_backend_ops_t *ops);
void backend_check(const dpo_backend_t *be);

// Dies naming the backend, the op and the dtype: for an op called on a dtype this
// backend has no kernel for (a programmer error).
void backend_dtype_unsupported(const dpo_backend_t *be, const char *op, dpo_dtype_t dt)
    DPO_BACKEND_NORETURN;

// The CPU backend (always available).
const dpo_backend_t *backend_cpu(void);

// The CUDA backend (include/dpo/backend_cuda.h) is opened per device as an
// instance (backend_cuda_open); there is no registry by name: the program opens
// the backend it runs on and passes it down.

// Sets the number of OpenMP threads the CPU backend uses (0 = leave the default).
void backend_cpu_set_threads(int n);

#ifdef __cplusplus
}
#endif

#endif
