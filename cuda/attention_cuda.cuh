// attention_cuda.cuh — the CUDA attention kernels (cuda/attention_cuda.cu) behind
// the ops table's attention_fwd / attention_bwd / attention_cached. Shapes and
// semantics are exactly those documented in include/dpo/backend.h; every pointer
// is device memory (fp32) and every call is queued on the instance's stream.
#ifndef DPO_ATTENTION_CUDA_CUH
#define DPO_ATTENTION_CUDA_CUH

#include <stdint.h>

#include "cuda_util.cuh"

void dpo_cuda_attention_fwd_f32(dpo_cuda_ctx_t *cx, float *out, float *lse, const float *q, const float *k,
                            const float *v, const int32_t *cu_seqlens, int nseq, int T, int H,
                            int Hkv, int D);
void dpo_cuda_attention_bwd_f32(dpo_cuda_ctx_t *cx, float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu_seqlens, int nseq, int T, int H, int Hkv, int D);
void dpo_cuda_attention_cached_f32(dpo_cuda_ctx_t *cx, float *out, const float *q, const float *k, const float *v, int n,
                               int past, int H, int Hkv, int D);

#endif
