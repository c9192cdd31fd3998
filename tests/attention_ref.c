// attention_ref.c — the scalar attention the CPU backend used before its
// sgemm-blocked kernels, kept in the tests as an independent fp32 reference for
// them (test_ops.c): one query row at a time, a plain dot product per key, libm
// expf, the softmax sum in double. Same contracts as attention_fwd /
// attention_bwd / attention_cached in include/dpo/backend.h; serial.
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attention_ref.h"

static float dotf(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// One query row against keys 0..i: p (i+1) scratch. Writes o (D), returns the lse.
// q (D); k, v rows j = 0..i of this sequence at stride kvs floats.
static float row_fwd(float *o, float *p, const float *q, const float *k, const float *v, int i,
                     size_t kvs, int D, float scale) {
    float mx = -INFINITY;
    for (int j = 0; j <= i; j++) {
        p[j] = dotf(q, k + (size_t)j * kvs, D) * scale;
        if (p[j] > mx) mx = p[j];
    }
    double sum = 0.0;
    for (int j = 0; j <= i; j++) {
        p[j] = expf(p[j] - mx);
        sum += p[j];
    }
    float inv = (float)(1.0 / sum);
    for (int d = 0; d < D; d++) o[d] = 0.0f;
    for (int j = 0; j <= i; j++) {
        const float *vj = v + (size_t)j * kvs;
        float pj = p[j] * inv;
        for (int d = 0; d < D; d++) o[d] += pj * vj[d];
    }
    return mx + (float)log(sum);
}

void attention_ref_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                       const int32_t *cu, int nseq, int T, int H, int Hkv, int D) {
    int G = H / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
    float *p = malloc((size_t)(T > 0 ? T : 1) * sizeof(float));   // (len) of a sequence
    for (int s = 0; s < nseq; s++) {
        int t0 = cu[s], len = cu[s + 1] - t0;
        for (int h = 0; h < H; h++) {
            const float *kb = k + (size_t)t0 * kvs + (size_t)(h / G) * D;
            const float *vb = v + (size_t)t0 * kvs + (size_t)(h / G) * D;
            for (int i = 0; i < len; i++) {
                size_t t = (size_t)t0 + i;
                lse[(size_t)h * T + t] = row_fwd(out + t * qs + (size_t)h * D, p,
                                                 q + t * qs + (size_t)h * D, kb, vb, i, kvs, D,
                                                 scale);
            }
        }
    }
    free(p);
}

void attention_ref_cached(float *out, const float *q, const float *k, const float *v, int n,
                          int past, int H, int Hkv, int D) {
    int G = H / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
    float *p = malloc((size_t)(past + n > 0 ? past + n : 1) * sizeof(float));
    for (int i = 0; i < n; i++) {
        for (int h = 0; h < H; h++) {
            size_t row = (size_t)i * qs + (size_t)h * D;
            (void)row_fwd(out + row, p, q + row, k + (size_t)(h / G) * D,
                          v + (size_t)(h / G) * D, past + i, kvs, D, scale);
        }
    }
    free(p);
}

// Backward of one query row against keys 0..i: P = exp(S - lse), dP = dout . v,
// dS = P * (dP - delta) with delta = dout . out; dq = scale * dS K,
// dk += scale * dS^T q, dv += P^T dout.
static void row_bwd(float *dq, float *dkb, float *dvb, const float *go, float delta, float lse,
                    const float *q, const float *kb, const float *vb, int i, size_t kvs, int D,
                    float scale) {
    for (int d = 0; d < D; d++) dq[d] = 0.0f;
    for (int j = 0; j <= i; j++) {
        const float *kj = kb + (size_t)j * kvs, *vj = vb + (size_t)j * kvs;
        float pj = expf(dotf(q, kj, D) * scale - lse);
        float ds = pj * (dotf(go, vj, D) - delta) * scale;
        float *dkj = dkb + (size_t)j * kvs, *dvj = dvb + (size_t)j * kvs;
        for (int d = 0; d < D; d++) {
            dq[d] += ds * kj[d];
            dkj[d] += ds * q[d];
            dvj[d] += pj * go[d];
        }
    }
}

void attention_ref_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                       const float *lse, const float *q, const float *k, const float *v,
                       const int32_t *cu, int nseq, int T, int H, int Hkv, int D) {
    int G = H / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
    for (int s = 0; s < nseq; s++) {
        for (int g = 0; g < Hkv; g++) {
            int t0 = cu[s], len = cu[s + 1] - t0;
            size_t kvoff = (size_t)t0 * kvs + (size_t)g * D;
            for (int j = 0; j < len; j++) {   // overwrite semantics
                memset(dk + kvoff + (size_t)j * kvs, 0, (size_t)D * sizeof(float));
                memset(dv + kvoff + (size_t)j * kvs, 0, (size_t)D * sizeof(float));
            }
            for (int h = g * G; h < (g + 1) * G; h++) {
                for (int i = 0; i < len; i++) {
                    size_t off = ((size_t)t0 + i) * qs + (size_t)h * D;
                    float delta = dotf(dout + off, out + off, D);
                    row_bwd(dq + off, dk + kvoff, dv + kvoff, dout + off, delta,
                            lse[(size_t)h * T + t0 + i], q + off, k + kvoff, v + kvoff, i, kvs, D,
                            scale);
                }
            }
        }
    }
}
