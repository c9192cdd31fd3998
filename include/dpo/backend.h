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

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dpo_backend {
    const char *name;

    // ---- memory ----
    void *(*alloc)(size_t bytes);                 // zero-filled; dies on failure
    void (*free)(void *p);
    void (*to_device)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);
    void (*copy)(void *dst, const void *src, size_t bytes);   // device to device
    void (*zero)(void *p, size_t bytes);
    void (*synchronize)(void);

    // ---- dense linear algebra ----
    // C (M,N) = alpha * op(A) (M,K) @ op(B) (K,N) + beta * C, row-major, with
    // leading dimensions lda/ldb/ldc of the stored (untransposed) matrices.
    void (*matmul)(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                   const float *A, int lda, const float *B, int ldb, float beta,
                   float *C, int ldc);

    // ---- element-wise / small ops ----
    void (*add_inplace)(float *y, const float *x, size_t n);          // y += x
    void (*scale_inplace)(float *x, float s, size_t n);                // x *= s
    // Sum of squares, accumulated in double (for global-norm clipping).
    double (*sumsq)(const float *x, size_t n);
    void (*bias_add)(float *y, const float *b, int T, int N);          // y (T,N) += b (N)
    void (*bias_grad)(float *db, const float *dy, int T, int N);       // db (N) += sum_t dy

    // ---- embedding (vocabulary-parallel: this rank holds rows [vstart, vstart+V)) ----
    // out (T,C) = table[tok - vstart] for tokens in this shard, 0 otherwise.
    void (*embedding_fwd)(float *out, const int32_t *tokens, const float *table, int T, int C,
                          int vstart, int V);
    // dtable (V,C) += dout rows of the tokens in this shard.
    void (*embedding_bwd)(float *dtable, const int32_t *tokens, const float *dout, int T, int C,
                          int vstart, int V);

    // ---- RMSNorm over the last dim: out (N,C) = x / rms(x) * w; rstd (N) saved ----
    void (*rmsnorm_fwd)(float *out, float *rstd, const float *x, const float *w, int N, int C,
                        float eps);
    // dx (N,C) overwritten, dw (C) accumulated.
    void (*rmsnorm_bwd)(float *dx, float *dw, const float *dout, const float *x, const float *w,
                        const float *rstd, int N, int C);

    // ---- RoPE, in place on x (T, H, D); pos (T) is the position within its sequence ----
    void (*rope_fwd)(float *x, const int32_t *pos, int T, int H, int D, float theta);
    void (*rope_bwd)(float *dx, const int32_t *pos, int T, int H, int D, float theta);

    // ---- causal attention over packed sequences, GQA ----
    // q (T,H,D), k/v (T,Hkv,D), cu_seqlens (nseq+1) token offsets of each sequence;
    // a token attends to the tokens of its own sequence at or before it.
    // out (T,H,D); lse (H,T) log-sum-exp of the scaled scores, saved for backward.
    void (*attention_fwd)(float *out, float *lse, const float *q, const float *k, const float *v,
                          const int32_t *cu_seqlens, int nseq, int T, int H, int Hkv, int D);
    // dq (T,H,D), dk/dv (T,Hkv,D) overwritten.
    void (*attention_bwd)(float *dq, float *dk, float *dv, const float *dout, const float *out,
                          const float *lse, const float *q, const float *k, const float *v,
                          const int32_t *cu_seqlens, int nseq, int T, int H, int Hkv, int D);

    // Incremental (KV-cached) causal attention for one sequence: q (n,H,D) holds the
    // queries of positions past..past+n-1, k/v (past+n,Hkv,D) the keys and values of
    // positions 0..past+n-1; query i attends to keys 0..past+i. out (n,H,D). Each row
    // follows the same arithmetic as attention_fwd's row at the same position. The
    // CUDA backend's rows are bit-identical to its forward's; the CPU backend runs
    // both through one tile routine on sgemm, whose summation order may depend on
    // the matrix shapes (how many rows the call has), so its rows agree with the
    // forward's to fp32 rounding (~1e-7 relative; tests/test_ops.c checks 1e-5) and
    // are bit-identical only where the shapes match (e.g. past = 0).
    void (*attention_cached)(float *out, const float *q, const float *k, const float *v,
                             int n, int past, int H, int Hkv, int D);

    // ---- SwiGLU MLP activation: out (n) = silu(gate) * up ----
    void (*swiglu_fwd)(float *out, const float *gate, const float *up, size_t n);
    void (*swiglu_bwd)(float *dgate, float *dup, const float *dout, const float *gate,
                       const float *up, size_t n);

    // ---- row gather / scatter (select the positions whose next token is scored) ----
    void (*gather_rows)(float *dst, const float *src, const int32_t *rows, int n, int C);
    // dst[rows[i]] += src[i]; rows are distinct.
    void (*scatter_add_rows)(float *dst, const float *src, const int32_t *rows, int n, int C);

    // ---- vocabulary-parallel log-probability, one chunk of n rows of logits (n, V) ----
    // Per row: local max over the valid columns (global column vstart + j < vocab_valid),
    // local sum of exp(logit - local max), and the target's logit when the target
    // falls in this shard (else -INFINITY). Padding columns never count.
    void (*logprob_stats)(float *row_max, float *row_sumexp, float *target_logit,
                          const float *logits, const int32_t *targets, int n, int V, int vstart,
                          int vocab_valid);
    // In place: logits (n,V) become dlogits = dlogp[r] * (onehot(target) - softmax),
    // given the global lse (n) of each row; padding columns get 0.
    void (*logprob_bwd)(float *logits, const int32_t *targets, const float *lse,
                        const float *dlogp, int n, int V, int vstart, int vocab_valid);

    // ---- optimizer ----
    // One AdamW step on n elements (see dpo_adamw_update in math_shared.h).
    void (*adamw)(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                  float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2);
} dpo_backend_t;

// The CPU backend (always available).
const dpo_backend_t *backend_cpu(void);

// Precision of the CUDA backend's matmuls. Storage stays fp32 in every case; the
// tensor cores read the operands rounded to bf16 (or tf32) and accumulate in fp32.
typedef enum {
    DPO_MATMUL_FP32 = 0,   // exact fp32 (CUDA cores), for checks
    DPO_MATMUL_TF32 = 1,   // tf32 tensor cores (10-bit mantissa)
    DPO_MATMUL_BF16 = 2    // bf16 tensor cores (7-bit mantissa), the default
} dpo_matmul_precision_t;

// Binds this process to CUDA device `ordinal` and creates the CUDA backend's
// stream, cuBLASLt handle and workspace. Returns the CUDA ops table, or NULL (with
// the reason in err) when the build has no CUDA or the device cannot be used.
const dpo_backend_t *backend_cuda_open(int ordinal, dpo_matmul_precision_t precision, char *err,
                                       size_t err_len);
// Frees what backend_cuda_open created (no-op when it was never opened).
void backend_cuda_close(void);
// Returns the backend registered under `name` ("cpu", "cuda"), or NULL when this
// build or this machine does not provide it.
const dpo_backend_t *backend_by_name(const char *name);
// Number of CUDA devices visible to this process (0 in builds without CUDA).
int backend_cuda_device_count(void);

// Sets the number of OpenMP threads the CPU backend uses (0 = leave the default).
void backend_cpu_set_threads(int n);

#ifdef __cplusplus
}
#endif

#endif
