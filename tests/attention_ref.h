// attention_ref.h — scalar fp32 reference attention for the tests (attention_ref.c);
// the contracts of attention_fwd / attention_bwd / attention_cached in dpo/backend.h.
#ifndef DPO_TESTS_ATTENTION_REF_H
#define DPO_TESTS_ATTENTION_REF_H
#include <stdint.h>

void attention_ref_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *cu, int nseq, int T, int H, int Hkv, int D);
void attention_ref_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                       const float *lse, const float *q, const float *k, const float *v,
                       const int32_t *cu, int nseq, int T, int H, int Hkv, int D);
void attention_ref_cached(float *out, const float *q, const float *k, const float *v, int n,
                          int past, int H, int Hkv, int D);
#endif
