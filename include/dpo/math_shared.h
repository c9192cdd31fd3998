// math_shared.h — the element-wise formulas both backends use, written once.
//
// Every function here is `static inline` and marked DPO_HD, which expands to
// `__host__ __device__` under nvcc, so the CUDA kernels and the CPU backend call
// the very same code. The CPU backend is the tested reference.
#ifndef DPO_MATH_SHARED_H
#define DPO_MATH_SHARED_H

#include <math.h>
#include <stdbool.h>

#ifdef __CUDACC__
#define DPO_HD __host__ __device__
#else
#define DPO_HD
#endif

// Attention visibility, the one rule every attention kernel (CPU tiles, CUDA
// forward / backward / cached) applies: whether the query at position q_pos of a
// sequence sees the key at position k_pos of the same sequence (positions count
// from the sequence start). Causal today: a query sees itself and every key before
// it. The kernels assume the keys a query sees are a prefix 0..n-1 of its sequence
// (they skip whole key tiles past the diagonal); a sliding window changes this
// rule here and those skips with it.
DPO_HD static inline bool dpo_attn_visible(int q_pos, int k_pos) { return k_pos <= q_pos; }

// Numerically stable log(sigmoid(x)).
DPO_HD static inline double dpo_log_sigmoid(double x) {
    return x >= 0.0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}

DPO_HD static inline double dpo_sigmoid(double x) {
    return x >= 0.0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

// SiLU(g) = g * sigmoid(g); SwiGLU(g, u) = SiLU(g) * u.
DPO_HD static inline float dpo_silu(float g) { return g / (1.0f + expf(-g)); }

DPO_HD static inline float dpo_swiglu(float g, float u) { return dpo_silu(g) * u; }

// d SwiGLU / d g and d SwiGLU / d u, given the upstream gradient dy.
DPO_HD static inline void dpo_swiglu_grad(float g, float u, float dy, float *dg, float *du) {
    float s = 1.0f / (1.0f + expf(-g));
    *du = dy * g * s;
    *dg = dy * u * s * (1.0f + g * (1.0f - s));
}

// RoPE inverse frequency for pair index i of a head of dimension d (Llama
// convention: pairs are (x[i], x[i + d/2])).
DPO_HD static inline float dpo_rope_inv_freq(int i, int d, float theta) {
    return powf(theta, -2.0f * (float)i / (float)d);
}

// One rotation of a RoPE pair by angle a (forward); the backward rotates by -a.
DPO_HD static inline void dpo_rope_rotate(float *x0, float *x1, float c, float s) {
    float a = *x0, b = *x1;
    *x0 = a * c - b * s;
    *x1 = a * s + b * c;
}

// AdamW (decoupled weight decay, as torch.optim.AdamW) on one element.
// bc1 = 1 - beta1^t and bc2 = 1 - beta2^t are the bias corrections of step t.
DPO_HD static inline void dpo_adamw_update(float *p, float g, float *m, float *v, float lr,
                                           float beta1, float beta2, float eps, float wd,
                                           float bc1, float bc2) {
    *m = beta1 * *m + (1.0f - beta1) * g;
    *v = beta2 * *v + (1.0f - beta2) * g * g;
    float mhat = *m / bc1;
    float vhat = *v / bc2;
    *p -= lr * (wd * *p + mhat / (sqrtf(vhat) + eps));
}

// RMSNorm of one row: rstd = (mean(x^2) + eps)^(-1/2) from the row's sum of
// squares ss accumulated in double (C can be thousands).
DPO_HD static inline float dpo_rmsnorm_rstd(double ss, int C, float eps) {
    return (float)(1.0 / sqrt(ss / C + (double)eps));
}

// RMSNorm backward of one row, y = x * r * w: with dot = sum_c(dy * w * x) in
// double, k = dot * r^3 / C and dx = r * w * dy - x * k.
DPO_HD static inline float dpo_rmsnorm_bwd_k(double dot, float r, int C) {
    return (float)(dot * r * r * r / C);
}

DPO_HD static inline float dpo_rmsnorm_dx(float r, float w, float dy, float x, float k) {
    return r * w * dy - x * k;
}

// Vocabulary-parallel log-probs: number of columns of a shard of V columns
// starting at global column vstart that are real vocabulary (< vocab_valid).
DPO_HD static inline int dpo_vocab_valid_cols(int V, int vstart, int vocab_valid) {
    int nv = vocab_valid - vstart;
    return nv < 0 ? 0 : (nv > V ? V : nv);
}

// d logp / d logit of one valid column: g * (onehot - softmax), with the row's
// global log-sum-exp lse and upstream gradient g.
DPO_HD static inline float dpo_logprob_dlogit(float g, float logit, float lse, int is_target) {
    return g * ((is_target ? 1.0f : 0.0f) - expf(logit - lse));
}

#endif
