// ops_cuda.cuh — the CUDA kernels of the ops table other than matmul, memory and
// attention (cuda/ops_cuda.cu). Shapes and semantics are exactly those of
// include/dpo/backend.h, on fp32 buffers (the `_f32` kernels; backend_cuda.cu's
// table entries check the dtype and call them). Every pointer is device memory
// and every call is queued on the instance's stream cx->stream without waiting
// for it (sumsq excepted: it returns a number to the host).
#ifndef DPO_OPS_CUDA_CUH
#define DPO_OPS_CUDA_CUH

#include <stddef.h>
#include <stdint.h>

#include "cuda_util.cuh"

// Creates / frees the ops' scratch (reduction partials, sort buffers, the pinned
// host word sumsq returns through) of an instance. Called by open / close.
void dpo_cuda_ops_init(dpo_cuda_ctx_t *cx);
void dpo_cuda_ops_fini(dpo_cuda_ctx_t *cx);

void dpo_cuda_add_inplace_f32(dpo_cuda_ctx_t *cx, float *y, const float *x, size_t n);
void dpo_cuda_scale_inplace_f32(dpo_cuda_ctx_t *cx, float *x, float s, size_t n);
double dpo_cuda_sumsq_f32(dpo_cuda_ctx_t *cx, const float *x, size_t n);
void dpo_cuda_bias_add_f32(dpo_cuda_ctx_t *cx, float *y, const float *b, int T, int N);
void dpo_cuda_bias_grad_f32(dpo_cuda_ctx_t *cx, float *db, const float *dy, int T, int N);
void dpo_cuda_embedding_fwd_f32(dpo_cuda_ctx_t *cx, float *out, const int32_t *tokens, const float *table, int T, int C,
                            int vstart, int V);
void dpo_cuda_embedding_bwd_f32(dpo_cuda_ctx_t *cx, float *dtable, const int32_t *tokens, const float *dout, int T, int C,
                            int vstart, int V);
void dpo_cuda_rmsnorm_fwd_f32(dpo_cuda_ctx_t *cx, float *out, float *rstd, const float *x, const float *w, int N, int C,
                          float eps);
void dpo_cuda_rmsnorm_bwd_f32(dpo_cuda_ctx_t *cx, float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C);
void dpo_cuda_rope_fwd_f32(dpo_cuda_ctx_t *cx, float *x, const int32_t *pos, int T, int H, int D, float theta);
void dpo_cuda_rope_bwd_f32(dpo_cuda_ctx_t *cx, float *dx, const int32_t *pos, int T, int H, int D, float theta);
void dpo_cuda_swiglu_fwd_f32(dpo_cuda_ctx_t *cx, float *out, const float *gate, const float *up, size_t n);
void dpo_cuda_swiglu_bwd_f32(dpo_cuda_ctx_t *cx, float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n);
void dpo_cuda_gather_rows_f32(dpo_cuda_ctx_t *cx, float *dst, const float *src, const int32_t *rows, int n, int C);
void dpo_cuda_scatter_add_rows_f32(dpo_cuda_ctx_t *cx, float *dst, const float *src, const int32_t *rows, int n, int C);
void dpo_cuda_logprob_stats_f32(dpo_cuda_ctx_t *cx, float *row_max, float *row_sumexp, float *target_logit,
                            const float *logits, const int32_t *targets, int n, int V, int vstart,
                            int vocab_valid);
void dpo_cuda_logprob_bwd_f32(dpo_cuda_ctx_t *cx, float *logits, const int32_t *targets, const float *lse,
                          const float *dlogp, int n, int V, int vstart, int vocab_valid);
void dpo_cuda_adamw_f32(dpo_cuda_ctx_t *cx, float *param, const float *grad, float *m, float *v, size_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2);

// C (rows, cols) with leading dimension ldc: C *= beta (C = 0 when beta == 0, so
// NaNs in C do not survive, as in BLAS). matmul's K == 0 case.
void dpo_cuda_scale_matrix_f32(dpo_cuda_ctx_t *cx, float *C, int rows, int cols, int ldc, float beta);

#endif
