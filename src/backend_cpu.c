// backend_cpu.c — the CPU backend: OpenBLAS sgemm for matmul, plain C + OpenMP
// for everything else. This is the tested reference the CUDA backend must match.
//
// Parallel loops carry `if(...)` clauses so small calls stay serial (thread start
// costs more than the work). Every reduction whose result leaves the op uses a
// fixed order independent of the thread count, so results are reproducible
// bit for bit whatever OMP_NUM_THREADS is.
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/error.h"
#include "dpo/math_shared.h"

// Work (elements or flops) below which a loop runs serially.
#define PAR_MIN 32768
// Columns one task owns in column-blocked reductions: 16 floats = one cache line.
#define COL_BLOCK 16
// Elements per fixed partial sum in sumsq (order independent of thread count).
#define SUMSQ_BLOCK 65536

// ---------------------------------------------------------------- memory ----

static void *cpu_alloc(size_t bytes) {
    // Round up to whole cache lines so vector loads at the tail stay in bounds.
    size_t sz = (bytes + 63) & ~(size_t)63;
    if (sz == 0) sz = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, sz) != 0 || !p) {
        dpo_fatal("backend cpu: out of memory allocating %zu bytes", bytes);
    }
    memset(p, 0, sz);
    return p;
}

static void cpu_free(void *p) { free(p); }

static void cpu_memcpy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}

static void cpu_synchronize(void) {}

// ---------------------------------------------------------------- matmul ----

static void cpu_matmul(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

// ----------------------------------------------------------- element-wise ----

static void cpu_add_inplace(float *y, const float *x, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN)
    for (ptrdiff_t i = 0; i < nn; i++) y[i] += x[i];
}

static void cpu_scale_inplace(float *x, float s, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN)
    for (ptrdiff_t i = 0; i < nn; i++) x[i] *= s;
}

// Sum of squares in double. Fixed blocks -> per-block partials -> serial sum, so
// the rounding is the same for every thread count.
static double cpu_sumsq(const float *x, size_t n) {
    ptrdiff_t nblk = (ptrdiff_t)((n + SUMSQ_BLOCK - 1) / SUMSQ_BLOCK);
    if (nblk == 0) return 0.0;
    double *part = malloc((size_t)nblk * sizeof(double));   // (nblk)
    if (!part) dpo_fatal("backend cpu: out of memory in sumsq");
#pragma omp parallel for schedule(static) if (nblk > 1)
    for (ptrdiff_t b = 0; b < nblk; b++) {
        size_t lo = (size_t)b * SUMSQ_BLOCK;
        size_t hi = lo + SUMSQ_BLOCK < n ? lo + SUMSQ_BLOCK : n;
        double s = 0.0;
        for (size_t i = lo; i < hi; i++) s += (double)x[i] * (double)x[i];
        part[b] = s;
    }
    double total = 0.0;
    for (ptrdiff_t b = 0; b < nblk; b++) total += part[b];
    free(part);
    return total;
}

static void cpu_bias_add(float *y, const float *b, int T, int N) {
#pragma omp parallel for schedule(static) if ((long)T * N >= PAR_MIN)
    for (int t = 0; t < T; t++) {
        float *row = y + (size_t)t * N;
        for (int j = 0; j < N; j++) row[j] += b[j];
    }
}

// db (N) += column sums of dy (T,N). Tasks own column blocks (no races, fixed
// summation order over t) and read one cache line per row.
static void cpu_bias_grad(float *db, const float *dy, int T, int N) {
    int nblk = (N + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((long)T * N >= PAR_MIN)
    for (int cb = 0; cb < nblk; cb++) {
        int c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < N ? c0 + COL_BLOCK : N;
        double acc[COL_BLOCK] = {0};
        for (int t = 0; t < T; t++) {
            const float *row = dy + (size_t)t * N;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) db[c] += (float)acc[c - c0];
    }
}

// ------------------------------------------------------------- embedding ----

static void cpu_embedding_fwd(float *out, const int32_t *tokens, const float *table, int T,
                              int C, int vstart, int V) {
#pragma omp parallel for schedule(static) if ((long)T * C >= PAR_MIN)
    for (int t = 0; t < T; t++) {
        int r = tokens[t] - vstart;   // row in this shard, or out of range
        float *dst = out + (size_t)t * C;
        if (r >= 0 && r < V) {
            memcpy(dst, table + (size_t)r * C, (size_t)C * sizeof(float));
        } else {
            memset(dst, 0, (size_t)C * sizeof(float));
        }
    }
}

// A token may repeat, so tasks split the columns (not the tokens) to avoid races;
// each row of dtable then sums its tokens in token order.
static void cpu_embedding_bwd(float *dtable, const int32_t *tokens, const float *dout, int T,
                              int C, int vstart, int V) {
    int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((long)T * C >= PAR_MIN)
    for (int cb = 0; cb < nblk; cb++) {
        int c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        for (int t = 0; t < T; t++) {
            int r = tokens[t] - vstart;
            if (r < 0 || r >= V) continue;   // token of another shard
            float *dst = dtable + (size_t)r * C;
            const float *src = dout + (size_t)t * C;
            for (int c = c0; c < c1; c++) dst[c] += src[c];
        }
    }
}

// --------------------------------------------------------------- RMSNorm ----

static void cpu_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int N,
                            int C, float eps) {
#pragma omp parallel for schedule(static) if ((long)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = out + (size_t)n * C;
        double ss = 0.0;   // mean of squares in double: C can be thousands
        for (int c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = dpo_rmsnorm_rstd(ss, C, eps);
        rstd[n] = r;
        for (int c = 0; c < C; c++) yr[c] = xr[c] * r * w[c];
    }
}

// y = x * r * w with r = (mean(x^2) + eps)^(-1/2):
//   dx = r * (w*dy) - x * r^3 / C * sum_c(w*dy*x),   dw += sum_n dy * x * r.
static void cpu_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x,
                            const float *w, const float *rstd, int N, int C) {
#pragma omp parallel for schedule(static) if ((long)N * C >= PAR_MIN)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C, *gr = dout + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        double dot = 0.0;
        for (int c = 0; c < C; c++) dot += (double)gr[c] * w[c] * xr[c];
        float r = rstd[n];
        float k = dpo_rmsnorm_bwd_k(dot, r, C);
        for (int c = 0; c < C; c++) dxr[c] = dpo_rmsnorm_dx(r, w[c], gr[c], xr[c], k);
    }
    // dw: column blocks, rows in fixed order (no races, reproducible).
    int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for schedule(static) if ((long)N * C >= PAR_MIN)
    for (int cb = 0; cb < nblk; cb++) {
        int c0 = cb * COL_BLOCK, c1 = c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C;
        double acc[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C, *gr = dout + (size_t)n * C;
            float r = rstd[n];
            for (int c = c0; c < c1; c++) acc[c - c0] += (double)gr[c] * xr[c] * r;
        }
        for (int c = c0; c < c1; c++) dw[c] += (float)acc[c - c0];
    }
}

// ------------------------------------------------------------------ RoPE ----

// Rotates every head of every token: pair (x[i], x[i + D/2]) by pos * inv_freq(i)
// times `sign` (+1 forward, -1 backward: the adjoint of a rotation is its inverse).
static void rope_apply(float *x, const int32_t *pos, int T, int H, int D, float theta,
                       float sign) {
    if (D % 2) dpo_fatal("backend cpu: rope needs an even head dim (got %d)", D);
    int half = D / 2;
    float *inv = malloc((size_t)(half > 0 ? half : 1) * sizeof(float));   // (D/2)
    if (!inv) dpo_fatal("backend cpu: out of memory in rope");
    for (int i = 0; i < half; i++) inv[i] = dpo_rope_inv_freq(i, D, theta);
#pragma omp parallel for schedule(static) if ((long)T * H * D >= PAR_MIN)
    for (int t = 0; t < T; t++) {
        for (int i = 0; i < half; i++) {
            float ang = (float)pos[t] * inv[i];
            float c = cosf(ang), s = sign * sinf(ang);
            for (int h = 0; h < H; h++) {
                float *xh = x + ((size_t)t * H + h) * D;
                dpo_rope_rotate(&xh[i], &xh[i + half], c, s);
            }
        }
    }
    free(inv);
}

static void cpu_rope_fwd(float *x, const int32_t *pos, int T, int H, int D, float theta) {
    rope_apply(x, pos, T, H, D, theta, 1.0f);
}

static void cpu_rope_bwd(float *dx, const int32_t *pos, int T, int H, int D, float theta) {
    rope_apply(dx, pos, T, H, D, theta, -1.0f);
}

// ------------------------------------------------------------- attention ----

static int max_seqlen(const int32_t *cu, int nseq) {
    int m = 0;
    for (int s = 0; s < nseq; s++) {
        int len = cu[s + 1] - cu[s];
        if (len > m) m = len;
    }
    return m;
}

// GQA maps query head h to kv head h / (H / Hkv): needs Hkv to divide H.
static void check_gqa(int H, int Hkv) {
    if (Hkv <= 0 || H % Hkv != 0) {
        dpo_fatal("backend cpu: attention needs Hkv to divide H (H=%d, Hkv=%d)", H, Hkv);
    }
}

static float dotf(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// One query row: p (i+1) scratch. Writes out row (D) and returns the lse.
// q (D); k, v rows j = 0..i of this sequence at stride kvs floats.
static float attn_row_fwd(float *o, float *p, const float *q, const float *k, const float *v,
                          int i, size_t kvs, int D, float scale) {
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

// Tasks are (sequence, query head) pairs; each thread keeps a scratch row of the
// longest sequence's length (never T x T). The schedule is dynamic because causal
// sequences of different lengths cost very different amounts; results stay bit
// reproducible since every task computes and writes its own rows alone.
static void cpu_attention_fwd(float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *cu_seqlens, int nseq, int T, int H,
                              int Hkv, int D) {
    check_gqa(H, Hkv);
    int G = H / Hkv;   // query heads per kv head
    int L = max_seqlen(cu_seqlens, nseq);
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;   // token strides
#pragma omp parallel if ((long)T * H * D >= PAR_MIN / 8)
    {
        float *p = malloc((size_t)(L > 0 ? L : 1) * sizeof(float));   // (L)
        if (!p) dpo_fatal("backend cpu: out of memory in attention_fwd");
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int s = 0; s < nseq; s++) {
            for (int h = 0; h < H; h++) {
                int t0 = cu_seqlens[s], len = cu_seqlens[s + 1] - t0;
                const float *kb = k + (size_t)t0 * kvs + (size_t)(h / G) * D;
                const float *vb = v + (size_t)t0 * kvs + (size_t)(h / G) * D;
                for (int i = 0; i < len; i++) {
                    size_t t = (size_t)t0 + i;
                    lse[(size_t)h * T + t] = attn_row_fwd(out + t * qs + (size_t)h * D, p,
                                                          q + t * qs + (size_t)h * D, kb, vb, i,
                                                          kvs, D, scale);
                }
            }
        }
        free(p);
    }
}

// Tasks are (query row, head) pairs, each with its own scratch row; every row runs
// attn_row_fwd as the full forward does, so cached and full results agree bit for bit.
static void cpu_attention_cached(float *out, const float *q, const float *k, const float *v,
                                 int n, int past, int H, int Hkv, int D) {
    check_gqa(H, Hkv);
    int G = H / Hkv, L = past + n;
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
#pragma omp parallel if ((long)L * H * D >= PAR_MIN / 8)
    {
        float *p = malloc((size_t)(L > 0 ? L : 1) * sizeof(float));
        if (!p) dpo_fatal("backend cpu: out of memory in attention_cached");
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int i = 0; i < n; i++) {
            for (int h = 0; h < H; h++) {
                size_t t = (size_t)i;
                (void)attn_row_fwd(out + t * qs + (size_t)h * D, p, q + t * qs + (size_t)h * D,
                                   k + (size_t)(h / G) * D, v + (size_t)(h / G) * D, past + i,
                                   kvs, D, scale);
            }
        }
        free(p);
    }
}

// Backward of one query row against keys 0..i, flash-attention style:
// P = exp(S - lse), dP = dout . v, dS = P * (dP - delta) with delta = dout . out;
// dq = scale * dS @ K, dk += scale * dS^T q, dv += P^T dout.
static void attn_row_bwd(float *dq, float *dkb, float *dvb, const float *go, float delta,
                         float lse, const float *q, const float *kb, const float *vb, int i,
                         size_t kvs, int D, float scale) {
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

// Tasks are (sequence, kv head) pairs: a task owns dk/dv of its kv head within
// its sequence and dq of the G query heads that share it, so nothing races.
static void cpu_attention_bwd(float *dq, float *dk, float *dv, const float *dout,
                              const float *out, const float *lse, const float *q,
                              const float *k, const float *v, const int32_t *cu_seqlens,
                              int nseq, int T, int H, int Hkv, int D) {
    check_gqa(H, Hkv);
    int G = H / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
#pragma omp parallel for collapse(2) schedule(dynamic, 1) if ((long)T * H * D >= PAR_MIN / 8)
    for (int s = 0; s < nseq; s++) {
        for (int g = 0; g < Hkv; g++) {
            int t0 = cu_seqlens[s], len = cu_seqlens[s + 1] - t0;
            size_t kvoff = (size_t)t0 * kvs + (size_t)g * D;
            for (int j = 0; j < len; j++) {   // overwrite semantics: clear our rows
                memset(dk + kvoff + (size_t)j * kvs, 0, (size_t)D * sizeof(float));
                memset(dv + kvoff + (size_t)j * kvs, 0, (size_t)D * sizeof(float));
            }
            for (int h = g * G; h < (g + 1) * G; h++) {
                for (int i = 0; i < len; i++) {
                    size_t off = ((size_t)t0 + i) * qs + (size_t)h * D;
                    float delta = dotf(dout + off, out + off, D);
                    attn_row_bwd(dq + off, dk + kvoff, dv + kvoff, dout + off, delta,
                                 lse[(size_t)h * T + t0 + i], q + off, k + kvoff, v + kvoff, i,
                                 kvs, D, scale);
                }
            }
        }
    }
}

// ---------------------------------------------------------------- SwiGLU ----

static void cpu_swiglu_fwd(float *out, const float *gate, const float *up, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN / 4)
    for (ptrdiff_t i = 0; i < nn; i++) out[i] = dpo_swiglu(gate[i], up[i]);
}

static void cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN / 4)
    for (ptrdiff_t i = 0; i < nn; i++) {
        dpo_swiglu_grad(gate[i], up[i], dout[i], &dgate[i], &dup[i]);
    }
}

// -------------------------------------------------------- gather/scatter ----

static void cpu_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int C) {
#pragma omp parallel for schedule(static) if ((long)n * C >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        memcpy(dst + (size_t)i * C, src + (size_t)rows[i] * C, (size_t)C * sizeof(float));
    }
}

// rows are distinct, so parallel rows never collide.
static void cpu_scatter_add_rows(float *dst, const float *src, const int32_t *rows, int n,
                                 int C) {
#pragma omp parallel for schedule(static) if ((long)n * C >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *d = dst + (size_t)rows[i] * C;
        const float *s = src + (size_t)i * C;
        for (int c = 0; c < C; c++) d[c] += s[c];
    }
}

// ------------------------------------------------------------- log-probs ----

static void cpu_logprob_stats(float *row_max, float *row_sumexp, float *target_logit,
                              const float *logits, const int32_t *targets, int n, int V,
                              int vstart, int vocab_valid) {
    int nv = dpo_vocab_valid_cols(V, vstart, vocab_valid);
#pragma omp parallel for schedule(static) if ((long)n * V >= PAR_MIN)
    for (int r = 0; r < n; r++) {
        const float *lr = logits + (size_t)r * V;
        float mx = -INFINITY;
        for (int j = 0; j < nv; j++) mx = lr[j] > mx ? lr[j] : mx;
        double se = 0.0;   // stays 0 for a shard holding only padding
        for (int j = 0; j < nv; j++) se += exp((double)lr[j] - mx);
        row_max[r] = mx;
        row_sumexp[r] = (float)se;
        int tj = targets[r] - vstart;   // target column, if this shard holds it
        target_logit[r] = (tj >= 0 && tj < nv) ? lr[tj] : -INFINITY;
    }
}

static void cpu_logprob_bwd(float *logits, const int32_t *targets, const float *lse,
                            const float *dlogp, int n, int V, int vstart, int vocab_valid) {
    int nv = dpo_vocab_valid_cols(V, vstart, vocab_valid);
#pragma omp parallel for schedule(static) if ((long)n * V >= PAR_MIN)
    for (int r = 0; r < n; r++) {
        float *lr = logits + (size_t)r * V;
        float g = dlogp[r], l = lse[r];
        int tj = targets[r] - vstart;
        for (int j = 0; j < nv; j++) lr[j] = dpo_logprob_dlogit(g, lr[j], l, j == tj);
        for (int j = nv; j < V; j++) lr[j] = 0.0f;   // padding columns
    }
}

// ---------------------------------------------------------------- AdamW ----

static void cpu_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                      float beta1, float beta2, float eps, float weight_decay, float bc1,
                      float bc2) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN / 4)
    for (ptrdiff_t i = 0; i < nn; i++) {
        dpo_adamw_update(&param[i], grad[i], &m[i], &v[i], lr, beta1, beta2, eps, weight_decay,
                         bc1, bc2);
    }
}

// ----------------------------------------------------------------- table ----

static const dpo_backend_t g_cpu = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_memcpy,
    .to_host = cpu_memcpy,
    .copy = cpu_memcpy,
    .zero = cpu_zero,
    .synchronize = cpu_synchronize,
    .matmul = cpu_matmul,
    .add_inplace = cpu_add_inplace,
    .scale_inplace = cpu_scale_inplace,
    .sumsq = cpu_sumsq,
    .bias_add = cpu_bias_add,
    .bias_grad = cpu_bias_grad,
    .embedding_fwd = cpu_embedding_fwd,
    .embedding_bwd = cpu_embedding_bwd,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .attention_cached = cpu_attention_cached,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .gather_rows = cpu_gather_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .logprob_stats = cpu_logprob_stats,
    .logprob_bwd = cpu_logprob_bwd,
    .adamw = cpu_adamw,
};

const dpo_backend_t *backend_cpu(void) { return &g_cpu; }

// Sets both the OpenMP team size and OpenBLAS's own (pthread) pool, so a rank
// uses the same number of cores in sgemm and in the element-wise ops.
void backend_cpu_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
}
