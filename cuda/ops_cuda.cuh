// ops_cuda.cuh — the CUDA kernels of the ops table other than matmul, memory and
// attention (cuda/ops_cuda.cu). Shapes and semantics are exactly those of
// include/dpo/backend.h; every pointer is device memory and every call is queued
// on dpo_cuda_compute_stream() without waiting for it (sumsq excepted: it
// returns a number to the host).
#ifndef DPO_OPS_CUDA_CUH
#define DPO_OPS_CUDA_CUH

#include <stddef.h>
#include <stdint.h>

// Creates / frees the ops' scratch (reduction partials, sort buffers, the pinned
// host word sumsq returns through). Called by backend open / close.
void dpo_cuda_ops_init(void);
void dpo_cuda_ops_fini(void);

void dpo_cuda_add_inplace(float *y, const float *x, size_t n);
void dpo_cuda_scale_inplace(float *x, float s, size_t n);
double dpo_cuda_sumsq(const float *x, size_t n);
void dpo_cuda_bias_add(float *y, const float *b, int T, int N);
void dpo_cuda_bias_grad(float *db, const float *dy, int T, int N);
void dpo_cuda_embedding_fwd(float *out, const int32_t *tokens, const float *table, int T, int C,
                            int vstart, int V);
void dpo_cuda_embedding_bwd(float *dtable, const int32_t *tokens, const float *dout, int T, int C,
                            int vstart, int V);
void dpo_cuda_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int N, int C,
                          float eps);
void dpo_cuda_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C);
void dpo_cuda_rope_fwd(float *x, const int32_t *pos, int T, int H, int D, float theta);
void dpo_cuda_rope_bwd(float *dx, const int32_t *pos, int T, int H, int D, float theta);
void dpo_cuda_swiglu_fwd(float *out, const float *gate, const float *up, size_t n);
void dpo_cuda_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n);
void dpo_cuda_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int C);
void dpo_cuda_scatter_add_rows(float *dst, const float *src, const int32_t *rows, int n, int C);
void dpo_cuda_logprob_stats(float *row_max, float *row_sumexp, float *target_logit,
                            const float *logits, const int32_t *targets, int n, int V, int vstart,
                            int vocab_valid);
void dpo_cuda_logprob_bwd(float *logits, const int32_t *targets, const float *lse,
                          const float *dlogp, int n, int V, int vstart, int vocab_valid);
void dpo_cuda_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                    float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2);

// C (rows, cols) with leading dimension ldc: C *= beta (C = 0 when beta == 0, so
// NaNs in C do not survive, as in BLAS). matmul's K == 0 case.
void dpo_cuda_scale_matrix(float *C, int rows, int cols, int ldc, float beta);

#endif
