// test_ops.c — every op of the CPU backend against a plain double-precision
// reference (forward) and against central finite differences of the scalar loss
// L = sum(dout * forward(x)) (backward). Also: accumulate-vs-overwrite semantics of
// the gradients, packed-vs-alone attention, the blocked attention against the scalar
// one of attention_ref.c (and cached against full), a simulated vocabulary split (TP shards
// with padding columns), and bit-identical results for 1 and several threads.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention_ref.h"
#include "dpo/backend.h"
#include "dpo/backend_cuda.h"
#include "dpo/backend_profile.h"
#include "testutil.h"


static const dpo_backend_t *B;

// ---------------------------------------------------------------- helpers ----

// Backend buffer of n floats filled uniform in [lo, hi).
static float *rnd(size_t n, unsigned seed, float lo, float hi) {
    float *x = dpo_alloc(B, n * sizeof(float));
    test_fill_uniform(x, n, seed, lo, hi);
    return x;
}

static float *filled(size_t n, float value) {
    float *x = dpo_alloc(B, n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = value;
    return x;
}

static float *clone(const float *x, size_t n) {
    float *y = dpo_alloc(B, n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

static double dotd(const float *a, const float *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

// Checks a[i] against the double reference ref[i] for all i.
static void check_vec(const char *what, const float *a, const double *ref, size_t n,
                      double rtol, double atol) {
    int bad = 0;
    double maxerr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - ref[i]);
        if (!(e <= maxerr)) maxerr = e;   // also catches NaN
        if (!test_close(a[i], ref[i], rtol, atol) && bad++ < 5) {
            test_fail(__FILE__, __LINE__, "%s[%zu] = %.9g vs reference %.9g", what, i,
                      (double)a[i], ref[i]);
        }
    }
    printf("  %-34s max |err| = %.3g\n", what, maxerr);
}

// Scalar loss of the current inputs, evaluated through the backend's forward.
typedef double (*loss_fn)(void *ctx);

// Central differences of f wrt every x[i], compared with the analytic gradient
// g[i]: |fd - g| <= atol + rtol*|g|. The step actually taken ((x+eps) - (x-eps) in
// float) is used as the divisor, so rounding of the perturbation does not bias fd.
static void check_fd(const char *what, float *x, const float *g, size_t n, loss_fn f,
                     void *ctx, float eps, double rtol, double atol) {
    int bad = 0;
    double maxerr = 0.0, gmax = 0.0;
    for (size_t i = 0; i < n; i++) {
        float x0 = x[i];
        x[i] = x0 + eps;
        double xp = x[i], lp = f(ctx);
        x[i] = x0 - eps;
        double xm = x[i], lm = f(ctx);
        x[i] = x0;
        double fd = (lp - lm) / (xp - xm);
        double e = fabs(fd - g[i]);
        if (!(e <= maxerr)) maxerr = e;
        if (fabs(g[i]) > gmax) gmax = fabs(g[i]);
        if (!test_close(g[i], fd, rtol, atol) && bad++ < 5) {
            test_fail(__FILE__, __LINE__, "%s: grad[%zu] = %.7g vs finite difference %.7g",
                      what, i, (double)g[i], fd);
        }
    }
    // A gradient that is zero everywhere would make the check vacuous.
    if (!(gmax > 1e-3)) test_fail(__FILE__, __LINE__, "%s: gradient is (near) zero", what);
    printf("  %-34s max |fd - grad| = %.3g (max |grad| %.3g)\n", what, maxerr, gmax);
}

// g = after - before (the part a backward op accumulated), as a fresh buffer.
static float *diff(const float *after, const float *before, size_t n) {
    float *g = dpo_alloc(B, n * sizeof(float));
    for (size_t i = 0; i < n; i++) g[i] = after[i] - before[i];
    return g;
}

static bool all_finite(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return false;
    }
    return true;
}

// ----------------------------------------------------------------- memory ----

static void test_memory(void) {
    printf("memory\n");
    size_t n = 1001;
    float *a = dpo_alloc(B, n * sizeof(float));
    CHECK(((uintptr_t)a & 63) == 0);
    bool zero = true;
    for (size_t i = 0; i < n; i++) zero = zero && a[i] == 0.0f;
    CHECK(zero);
    float host[5] = {1, 2, 3, 4, 5}, back[5] = {0};
    dpo_to_device(B, a, host, sizeof host);
    float *b = dpo_alloc(B, n * sizeof(float));
    dpo_copy(B, b, a, sizeof host);
    dpo_to_host(B, back, b, sizeof back);
    CHECK(memcmp(host, back, sizeof host) == 0);
    dpo_zero(B, b, 2 * sizeof(float));
    CHECK(b[0] == 0.0f && b[1] == 0.0f && b[2] == 3.0f);
    dpo_synchronize(B);
    float *z = dpo_alloc(B, 0);   // a valid, freeable pointer
    CHECK(z != NULL);
    dpo_free(B, z);
    dpo_free(B, a);
    dpo_free(B, b);
}

// ----------------------------------------------------------------- matmul ----

// All four transpose combinations with leading dims wider than the matrices; the
// padding columns of C must be left alone.
static void test_matmul(void) {
    printf("matmul\n");
    const int M = 5, N = 7, K = 6;
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            int ar = ta ? K : M, ac = ta ? M : K, lda = ac + 3;   // stored A (ar, lda)
            int br = tb ? N : K, bc = tb ? K : N, ldb = bc + 2;   // stored B (br, ldb)
            int ldc = N + 4;
            float *A = rnd((size_t)ar * lda, 11 + ta, -1, 1);
            float *Bm = rnd((size_t)br * ldb, 13 + tb, -1, 1);
            float *C = rnd((size_t)M * ldc, 17, -1, 1);
            float *C0 = clone(C, (size_t)M * ldc);
            float alpha = 0.7f, beta = 0.3f;
            dpo_matmul(B, ta, tb, M, N, K, alpha, A, DPO_F32, lda, Bm, DPO_F32, ldb, beta, C, DPO_F32, ldc);
            double ref[5 * 7];
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) {
                    double s = 0.0;
                    for (int k = 0; k < K; k++) {
                        double a = ta ? A[k * lda + i] : A[i * lda + k];
                        double b = tb ? Bm[j * ldb + k] : Bm[k * ldb + j];
                        s += a * b;
                    }
                    ref[i * N + j] = alpha * s + beta * (double)C0[i * ldc + j];
                }
            }
            float got[5 * 7];
            bool pad_ok = true;
            for (int i = 0; i < M; i++) {
                for (int j = 0; j < N; j++) got[i * N + j] = C[i * ldc + j];
                for (int j = N; j < ldc; j++) pad_ok = pad_ok && C[i * ldc + j] == C0[i * ldc + j];
            }
            char what[64];
            snprintf(what, sizeof what, "matmul ta=%d tb=%d", ta, tb);
            check_vec(what, got, ref, (size_t)M * N, 1e-5, 1e-6);
            CHECK(pad_ok);
            dpo_free(B, A);
            dpo_free(B, Bm);
            dpo_free(B, C);
            dpo_free(B, C0);
        }
    }
}

// ------------------------------------------------------------ element-wise ----

typedef struct {
    float *y0, *b, *dout, *y;
    int T, N;
} bias_ctx;

static double bias_loss(void *p) {
    bias_ctx *c = p;
    size_t n = (size_t)c->T * c->N;
    memcpy(c->y, c->y0, n * sizeof(float));
    dpo_bias_add(B, c->y, c->b, c->T, c->N, DPO_F32);
    return dotd(c->dout, c->y, n);
}

static void test_elementwise(void) {
    printf("add / scale / sumsq / bias\n");
    size_t n = 37;
    float *x = rnd(n, 1, -1, 1), *y = rnd(n, 2, -1, 1), *y0 = clone(y, n);
    dpo_add_inplace(B, y, x, n, DPO_F32);
    bool ok = true;
    for (size_t i = 0; i < n; i++) ok = ok && y[i] == y0[i] + x[i];
    CHECK(ok);
    dpo_scale_inplace(B, y, -2.5f, n, DPO_F32);
    ok = true;
    for (size_t i = 0; i < n; i++) ok = ok && y[i] == (y0[i] + x[i]) * -2.5f;
    CHECK(ok);

    // sumsq over several fixed blocks; float squares are exact in double.
    size_t big = 3 * 65536 + 17;
    float *s = rnd(big, 3, -1, 1);
    double ref = 0.0;
    for (size_t i = 0; i < big; i++) ref += (double)s[i] * s[i];
    CHECK_CLOSE(dpo_sumsq(B, s, big), ref, 1e-12, 0.0);
    CHECK(dpo_sumsq(B, s, 0) == 0.0);

    // bias_add / bias_grad (T=6, N=21: more than one 16-column block).
    int T = 6, N = 21;
    size_t tn = (size_t)T * N;
    bias_ctx c = {rnd(tn, 4, -1, 1), rnd(N, 5, -1, 1), rnd(tn, 6, -1, 1), dpo_alloc(B, tn * 4), T, N};
    double yref[6 * 21];
    for (int t = 0; t < T; t++) {
        for (int j = 0; j < N; j++) yref[t * N + j] = (double)c.y0[t * N + j] + c.b[j];
    }
    bias_loss(&c);
    check_vec("bias_add", c.y, yref, tn, 1e-6, 1e-7);
    float *db0 = rnd(N, 7, -1, 1), *db = clone(db0, N);
    dpo_bias_grad(B, db, c.dout, T, N, DPO_F32);   // accumulates into db
    float *g = diff(db, db0, N);
    check_fd("bias_grad (accumulated part)", c.b, g, N, bias_loss, &c, 1e-2f, 1e-3, 1e-4);
    float *m[] = {x, y, y0, s, c.y0, c.b, c.dout, c.y, db0, db, g};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

// -------------------------------------------------------------- embedding ----

typedef struct {
    const int32_t *tok;
    float *table, *dout, *out;
    int T, C, vstart, V;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    dpo_embedding_fwd(B, c->out, c->tok, c->table, c->T, c->C, c->vstart, c->V, DPO_F32);
    return dotd(c->dout, c->out, (size_t)c->T * c->C);
}

// A shard holding rows [3, 8) of the vocabulary; tokens inside and outside it.
static void test_embedding(void) {
    printf("embedding\n");
    enum { T = 9, C = 6, V = 5, VSTART = 3 };
    static const int32_t tok[T] = {3, 0, 7, 5, 8, 3, 2, 10, 7};
    emb_ctx c = {tok, rnd(V * C, 21, -1, 1), rnd(T * C, 22, -1, 1), filled(T * C, NAN),
                 T, C, VSTART, V};
    emb_loss(&c);
    double ref[T * C];
    for (int t = 0; t < T; t++) {
        int r = tok[t] - VSTART;
        for (int j = 0; j < C; j++) ref[t * C + j] = (r >= 0 && r < V) ? c.table[r * C + j] : 0.0;
    }
    check_vec("embedding_fwd", c.out, ref, T * C, 0.0, 0.0);
    // dtable sits between 3 guard rows on each side: tokens outside the shard must
    // not land there.
    float *d0b = rnd((V + 6) * C, 23, -1, 1), *dtb = clone(d0b, (V + 6) * C);
    float *d0 = d0b + 3 * C, *dt = dtb + 3 * C;   // (V, C) views
    dpo_embedding_bwd(B, dt, tok, c.dout, T, C, VSTART, V, DPO_F32);
    CHECK(memcmp(dtb, d0b, 3 * C * sizeof(float)) == 0);
    CHECK(memcmp(dt + V * C, d0 + V * C, 3 * C * sizeof(float)) == 0);
    float *g = diff(dt, d0, V * C);
    check_fd("embedding_bwd (accumulated part)", c.table, g, V * C, emb_loss, &c, 1e-2f, 1e-4,
             1e-5);
    float *m[] = {c.table, c.dout, c.out, d0b, dtb, g};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

// ---------------------------------------------------------------- RMSNorm ----

typedef struct {
    float *x, *w, *dout, *out, *rstd;
    int N, C;
    float eps;
} rms_ctx;

static double rms_loss(void *p) {
    rms_ctx *c = p;
    dpo_rmsnorm_fwd(B, c->out, c->rstd, c->x, c->w, c->N, c->C, c->eps, DPO_F32);
    return dotd(c->dout, c->out, (size_t)c->N * c->C);
}

static void test_rmsnorm(void) {
    printf("rmsnorm\n");
    enum { N = 6, C = 21 };
    rms_ctx c = {rnd(N * C, 31, -2, 2), rnd(C, 32, 0.5f, 1.5f), rnd(N * C, 33, -1, 1),
                 dpo_alloc(B, N * C * 4), dpo_alloc(B, N * 4), N, C, 1e-5f};
    for (int j = 0; j < C; j++) c.x[2 * C + j] *= 1e-3f;   // a row where eps matters
    rms_loss(&c);
    double ref[N * C], rref[N];
    for (int n = 0; n < N; n++) {
        double ss = 0.0;
        for (int j = 0; j < C; j++) ss += (double)c.x[n * C + j] * c.x[n * C + j];
        rref[n] = 1.0 / sqrt(ss / C + (double)c.eps);
        for (int j = 0; j < C; j++) ref[n * C + j] = c.x[n * C + j] * rref[n] * c.w[j];
    }
    check_vec("rmsnorm_fwd out", c.out, ref, N * C, 1e-5, 1e-6);
    check_vec("rmsnorm_fwd rstd", c.rstd, rref, N, 1e-6, 0.0);

    // Finite differences need steps well below the row's rms: lift the tiny row.
    for (int j = 0; j < C; j++) c.x[2 * C + j] *= 50.0f;
    rms_loss(&c);
    float *dx = filled(N * C, NAN);   // must be overwritten
    float *dw0 = rnd(C, 34, -1, 1), *dw = clone(dw0, C);
    dpo_rmsnorm_bwd(B, dx, dw, c.dout, c.x, c.w, c.rstd, N, C, DPO_F32);
    float *gw = diff(dw, dw0, C);
    // A second call adds the same gradient again (accumulate semantics).
    dpo_rmsnorm_bwd(B, dx, dw, c.dout, c.x, c.w, c.rstd, N, C, DPO_F32);
    bool twice = true;
    for (int j = 0; j < C; j++) {
        twice = twice && test_close(dw[j], dw0[j] + 2.0 * gw[j], 1e-5, 1e-6);
    }
    CHECK(twice);
    check_fd("rmsnorm_bwd dx", c.x, dx, N * C, rms_loss, &c, 1e-3f, 2e-3, 2e-3);
    check_fd("rmsnorm_bwd dw (accumulated part)", c.w, gw, C, rms_loss, &c, 1e-3f, 2e-3, 2e-3);
    float *m[] = {c.x, c.w, c.dout, c.out, c.rstd, dx, dw0, dw, gw};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

// ------------------------------------------------------------------- RoPE ----

typedef struct {
    float *x0, *x, *dout;
    const int32_t *pos;
    int T, H, D;
    float theta;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    size_t n = (size_t)c->T * c->H * c->D;
    memcpy(c->x, c->x0, n * sizeof(float));
    dpo_rope_fwd(B, c->x, c->pos, c->T, c->H, c->D, c->theta, DPO_F32);
    return dotd(c->dout, c->x, n);
}

// Double reference: pairs (i, i + D/2) rotated by pos * theta^(-2i/D).
static void rope_ref(double *y, const float *x, const int32_t *pos, int T, int H, int D,
                     double theta) {
    int half = D / 2;
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < H; h++) {
            const float *xh = x + ((size_t)t * H + h) * D;
            double *yh = y + ((size_t)t * H + h) * D;
            for (int i = 0; i < half; i++) {
                double a = pos[t] * pow(theta, -2.0 * i / D), c = cos(a), s = sin(a);
                yh[i] = xh[i] * c - xh[i + half] * s;
                yh[i + half] = xh[i] * s + xh[i + half] * c;
            }
        }
    }
}

static void test_rope(void) {
    printf("rope\n");
    enum { T = 12, H = 3, D = 8, NX = T * H * D };
    // Three packed sequences (5, 3, 4 tokens): positions restart at 0 in each.
    static const int32_t pos[T] = {0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3};
    static const int32_t far[T] = {4090, 4091, 4092, 4093, 4094, 4095,
                                   0,    1,    2,    3,    2000, 2001};
    rope_ctx c = {rnd(NX, 41, -1, 1), dpo_alloc(B, NX * 4), rnd(NX, 42, -1, 1), pos, T, H, D,
                  10000.0f};
    double ref[NX];
    rope_loss(&c);
    rope_ref(ref, c.x0, pos, T, H, D, c.theta);
    check_vec("rope_fwd (restarted positions)", c.x, ref, NX, 1e-5, 1e-6);
    // Long positions: the float angle has ~pos * 2^-24 absolute error.
    c.pos = far;
    rope_loss(&c);
    rope_ref(ref, c.x0, far, T, H, D, c.theta);
    check_vec("rope_fwd (positions up to 4095)", c.x, ref, NX, 0.0, 2e-3);
    c.pos = pos;

    // Backward = adjoint: <rope(x), y> == <x, rope_bwd(y)>, and rope_bwd(rope(x)) == x.
    float *g = clone(c.dout, NX);
    dpo_rope_bwd(B, g, pos, T, H, D, c.theta, DPO_F32);
    rope_loss(&c);
    CHECK_CLOSE(dotd(c.x, c.dout, NX), dotd(c.x0, g, NX), 1e-6, 1e-6);
    float *rt = clone(c.x, NX);
    dpo_rope_bwd(B, rt, pos, T, H, D, c.theta, DPO_F32);
    double x0d[NX];
    for (int i = 0; i < NX; i++) x0d[i] = c.x0[i];
    check_vec("rope_bwd(rope_fwd(x)) == x", rt, x0d, NX, 0.0, 1e-6);
    check_fd("rope_bwd", c.x0, g, NX, rope_loss, &c, 1e-2f, 1e-3, 1e-4);
    float *m[] = {c.x0, c.x, c.dout, g, rt};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

// -------------------------------------------------------------- attention ----

typedef struct {
    float *q, *k, *v, *dout, *out, *lse;
    const int32_t *cu;
    int nseq, T, H, Hkv, D;
    double *oref, *lref;   // (T,H,D), (H,T): the double reference's outputs
} attn_ctx;

static double attn_loss(void *p) {
    attn_ctx *c = p;
    dpo_attention_fwd(B, c->out, c->lse, c->q, c->k, c->v, c->cu, c->nseq, c->T, c->H, c->Hkv, c->D, DPO_F32);
    return dotd(c->dout, c->out, (size_t)c->T * c->H * c->D);
}

// Double reference: causal softmax(q k^T / sqrt(D)) v within each sequence.
static void attn_ref(double *out, double *lse, const attn_ctx *c) {
    int H = c->H, D = c->D, G = c->H / c->Hkv;
    size_t qs = (size_t)H * D, ks = (size_t)c->Hkv * D;
    double *sc = malloc((size_t)c->T * sizeof(double));
    for (int s = 0; s < c->nseq; s++) {
        for (int h = 0; h < H; h++) {
            for (int t = c->cu[s]; t < c->cu[s + 1]; t++) {
                const float *qt = c->q + t * qs + (size_t)h * D;
                double mx = -INFINITY, sum = 0.0;
                for (int j = c->cu[s]; j <= t; j++) {
                    const float *kj = c->k + j * ks + (size_t)(h / G) * D;
                    double d = 0.0;
                    for (int e = 0; e < D; e++) d += (double)qt[e] * kj[e];
                    sc[j] = d / sqrt((double)D);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = c->cu[s]; j <= t; j++) sum += exp(sc[j] - mx);
                lse[(size_t)h * c->T + t] = mx + log(sum);
                for (int e = 0; e < D; e++) {
                    double o = 0.0;
                    for (int j = c->cu[s]; j <= t; j++) {
                        o += exp(sc[j] - mx) / sum * c->v[j * ks + (size_t)(h / G) * D + e];
                    }
                    out[t * qs + (size_t)h * D + e] = o;
                }
            }
        }
    }
    free(sc);
}

// The same loss through the double reference (checked against the backend's
// forward above): free of fp32 rounding, so the FD check can be tight.
static double attn_loss_ref(void *p) {
    attn_ctx *c = p;
    attn_ref(c->oref, c->lref, c);
    double L = 0.0;
    for (size_t i = 0; i < (size_t)c->T * c->H * c->D; i++) L += c->dout[i] * c->oref[i];
    return L;
}

// Each sequence computed alone gives bit-identical rows to the packed batch.
static void attn_check_alone(const attn_ctx *c) {
    int H = c->H, Hkv = c->Hkv, D = c->D;
    bool same = true;
    for (int s = 0; s < c->nseq; s++) {
        int t0 = c->cu[s], len = c->cu[s + 1] - t0;
        if (len == 0) continue;
        int32_t cu1[2] = {0, len};
        float *o = dpo_alloc(B, (size_t)len * H * D * 4), *l = dpo_alloc(B, (size_t)H * len * 4);
        dpo_attention_fwd(B, o, l, c->q + (size_t)t0 * H * D, c->k + (size_t)t0 * Hkv * D,
                         c->v + (size_t)t0 * Hkv * D, cu1, 1, len, H, Hkv, D, DPO_F32);
        same = same && memcmp(o, c->out + (size_t)t0 * H * D, (size_t)len * H * D * 4) == 0;
        for (int h = 0; h < H; h++) {
            same = same && memcmp(l + (size_t)h * len, c->lse + (size_t)h * c->T + t0,
                                  (size_t)len * 4) == 0;
        }
        dpo_free(B, o);
        dpo_free(B, l);
    }
    CHECK(same);
}

// Packed sequences of 5, 1, 0 and 7 tokens (an empty one included), H = 4.
static void test_attention_cfg(int Hkv) {
    enum { T = 13, H = 4, D = 8, NQ = T * H * D };
    static const int32_t cu[] = {0, 5, 6, 6, 13};
    int nkv = T * Hkv * D;
    printf("attention H=%d Hkv=%d D=%d, sequences 5,1,0,7\n", H, Hkv, D);
    attn_ctx c = {rnd(NQ, 51, -2, 2), rnd(nkv, 52, -2, 2), rnd(nkv, 53, -1, 1),
                  rnd(NQ, 54, -1, 1), dpo_alloc(B, NQ * 4), dpo_alloc(B, H * T * 4),
                  cu, 4, T, H, Hkv, D, NULL, NULL};
    double oref[NQ], lref[H * T];
    c.oref = oref, c.lref = lref;
    attn_loss(&c);
    attn_ref(oref, lref, &c);
    check_vec("attention_fwd out", c.out, oref, NQ, 1e-5, 2e-6);
    check_vec("attention_fwd lse", c.lse, lref, H * T, 1e-5, 1e-6);
    attn_check_alone(&c);

    // Backward from the saved out/lse; NaN prefill proves the overwrite.
    float *dq = filled(NQ, NAN), *dk = filled(nkv, NAN), *dv = filled(nkv, NAN);
    dpo_attention_bwd(B, dq, dk, dv, c.dout, c.out, c.lse, c.q, c.k, c.v, cu, 4, T, H, Hkv, D, DPO_F32);
    // FD of the fp32 forward (coarse: fp32 rounding / step) and of the double
    // reference (tight: catches even a 0.1% error in one term).
    check_fd("attention_bwd dq (fp32 fwd)", c.q, dq, NQ, attn_loss, &c, 1e-2f, 1e-3, 2e-4);
    check_fd("attention_bwd dk (fp32 fwd)", c.k, dk, nkv, attn_loss, &c, 1e-2f, 1e-3, 2e-4);
    check_fd("attention_bwd dv (fp32 fwd)", c.v, dv, nkv, attn_loss, &c, 1e-2f, 1e-3, 2e-4);
    check_fd("attention_bwd dq (double fwd)", c.q, dq, NQ, attn_loss_ref, &c, 1e-3f, 1e-4, 1e-5);
    check_fd("attention_bwd dk (double fwd)", c.k, dk, nkv, attn_loss_ref, &c, 1e-3f, 1e-4, 1e-5);
    check_fd("attention_bwd dv (double fwd)", c.v, dv, nkv, attn_loss_ref, &c, 1e-3f, 1e-4, 1e-5);
    float *m[] = {c.q, c.k, c.v, c.dout, c.out, c.lse, dq, dk, dv};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

// The blocked kernels against the scalar reference of tests/attention_ref.c (the
// backend's previous implementation, itself checked against the double reference
// above through the same tests) on packed sequences of uneven lengths. Both sides
// are fp32 and differ only in summation order (sgemm vs a serial loop) and in the
// exp (backend: a polynomial within 2 ulp; reference: libm), so they agree to
// rounding: each term of the sums has relative error ~1e-7, and a sum over n
// terms of either sign drifts by ~sqrt(n) * 1e-7 relative to its largest terms,
// a few 1e-6 at the 700 keys (and, for dk/dv, 4 heads x 700 queries) here.
// Bounds, as max |err| / max |ref| per tensor: 1e-5 for out and lse, 5e-5 for the
// gradients (their terms cancel more). The same bounds as the GPU test.
//
// attention_cached is then checked against the forward rows of the last sequence
// at several cache splits: the same row arithmetic, but sgemms of other shapes,
// which may sum a dot product in another order (backend.h), so 1e-5 as well;
// how many rows came out bit-identical is printed.
static void attn_vs_ref(const int *lens, int nseq, int H, int Hkv, int D) {
    int32_t cu[16];
    cu[0] = 0;
    printf("attention vs scalar reference: H=%d Hkv=%d D=%d, sequences", H, Hkv, D);
    for (int s = 0; s < nseq; s++) cu[s + 1] = cu[s] + lens[s], printf(" %d", lens[s]);
    printf("\n");
    int T = cu[nseq];
    size_t nq = (size_t)T * H * D, nkv = (size_t)T * Hkv * D, nl = (size_t)H * T;
    float *q = rnd(nq, 61, -2, 2), *k = rnd(nkv, 62, -2, 2), *v = rnd(nkv, 63, -1, 1);
    float *dout = rnd(nq, 64, -1, 1);
    float *out = filled(nq, NAN), *lse = filled(nl, NAN), *oref = dpo_alloc(B, nq * 4);
    float *lref = dpo_alloc(B, nl * 4);
    dpo_attention_fwd(B, out, lse, q, k, v, cu, nseq, T, H, Hkv, D, DPO_F32);
    attention_ref_fwd(oref, lref, q, k, v, cu, nseq, T, H, Hkv, D);
    double e_out = test_rel_err(out, oref, nq), e_lse = test_rel_err(lse, lref, nl);
    // Backward of both from the same saved out/lse, so only the backward differs.
    float *dq = filled(nq, NAN), *dk = filled(nkv, NAN), *dv = filled(nkv, NAN);
    float *dqr = dpo_alloc(B, nq * 4), *dkr = dpo_alloc(B, nkv * 4), *dvr = dpo_alloc(B, nkv * 4);
    dpo_attention_bwd(B, dq, dk, dv, dout, out, lse, q, k, v, cu, nseq, T, H, Hkv, D, DPO_F32);
    attention_ref_bwd(dqr, dkr, dvr, dout, out, lse, q, k, v, cu, nseq, T, H, Hkv, D);
    double e_dq = test_rel_err(dq, dqr, nq), e_dk = test_rel_err(dk, dkr, nkv), e_dv = test_rel_err(dv, dvr, nkv);
    printf("  out %.2e lse %.2e dq %.2e dk %.2e dv %.2e (max |err| / max |ref|)\n", e_out, e_lse,
           e_dq, e_dk, e_dv);
    CHECK(e_out <= 1e-5 && e_lse <= 1e-5);
    CHECK(e_dq <= 5e-5 && e_dk <= 5e-5 && e_dv <= 5e-5);

    int t0 = cu[nseq - 1], len = lens[nseq - 1];
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
    int splits[][2] = {{0, len}, {len - 1, 1}, {len / 3, len - len / 3}, {len / 2, 3}};
    float *co = dpo_alloc(B, (size_t)len * qs * 4), *cr = dpo_alloc(B, (size_t)len * qs * 4);
    for (size_t c = 0; c < sizeof splits / sizeof *splits; c++) {
        int past = splits[c][0], n = splits[c][1];
        if (n <= 0 || past + n > len) continue;
        const float *qc = q + ((size_t)t0 + past) * qs;
        dpo_attention_cached(B, co, qc, k + (size_t)t0 * kvs, v + (size_t)t0 * kvs, n, past, H, Hkv,
                            D, DPO_F32);
        attention_ref_cached(cr, qc, k + (size_t)t0 * kvs, v + (size_t)t0 * kvs, n, past, H, Hkv,
                             D);
        const float *fr = out + ((size_t)t0 + past) * qs;   // the forward's rows
        int same = 0;
        for (int i = 0; i < n; i++) same += memcmp(co + i * qs, fr + i * qs, qs * 4) == 0;
        double e_fwd = test_rel_err(co, fr, (size_t)n * qs), e_ref = test_rel_err(co, cr, (size_t)n * qs);
        printf("  cached past=%d n=%d: vs forward rows %.2e (%d of %d rows bit-identical), "
               "vs reference %.2e\n",
               past, n, e_fwd, same, n, e_ref);
        CHECK(e_fwd <= 1e-5 && e_ref <= 1e-5);
    }
    float *m[] = {q, k, v, dout, out, lse, oref, lref, dq, dk, dv, dqr, dkr, dvr, co, cr};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

static void test_attention(void) {
    test_attention_cfg(2);   // GQA
    test_attention_cfg(4);   // plain multi-head
    test_attention_cfg(1);   // multi-query
    // Lengths 1, around and not multiples of the 64-row tile, several tiles;
    // GQA 4:1 and multi-head; D = 8, 64, 128.
    static const int a[] = {1, 37, 64, 65, 0, 130, 300}, b[] = {300, 1, 700},
                     c[] = {129, 5, 700}, d[] = {3, 5000};
    attn_vs_ref(a, 7, 8, 2, 8);
    attn_vs_ref(b, 3, 4, 1, 64);
    attn_vs_ref(c, 3, 8, 2, 128);
    attn_vs_ref(c, 3, 2, 2, 64);
    // Long enough that a tile gets fewer than 64 rows (score block capped).
    attn_vs_ref(d, 2, 2, 1, 8);
}

// ----------------------------------------------------------------- SwiGLU ----

typedef struct {
    float *gate, *up, *dout, *out;
    size_t n;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    dpo_swiglu_fwd(B, c->out, c->gate, c->up, c->n, DPO_F32);
    return dotd(c->dout, c->out, c->n);
}

static void test_swiglu(void) {
    printf("swiglu\n");
    enum { N = 64 };
    swiglu_ctx c = {rnd(N, 61, -5, 5), rnd(N, 62, -2, 2), rnd(N, 63, -1, 1), dpo_alloc(B, N * 4), N};
    double ref[N];
    swiglu_loss(&c);
    for (int i = 0; i < N; i++) ref[i] = c.gate[i] / (1.0 + exp(-(double)c.gate[i])) * c.up[i];
    check_vec("swiglu_fwd", c.out, ref, N, 1e-5, 1e-7);
    float *dg = filled(N, NAN), *du = filled(N, NAN);
    dpo_swiglu_bwd(B, dg, du, c.dout, c.gate, c.up, N, DPO_F32);
    check_fd("swiglu_bwd dgate", c.gate, dg, N, swiglu_loss, &c, 1e-2f, 1e-3, 1e-4);
    check_fd("swiglu_bwd dup", c.up, du, N, swiglu_loss, &c, 1e-2f, 1e-3, 1e-4);
    float *m[] = {c.gate, c.up, c.dout, c.out, dg, du};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

// --------------------------------------------------------- gather/scatter ----

typedef struct {
    float *src, *dout, *dst;
    const int32_t *rows;
    int n, C;
} gather_ctx;

static double gather_loss(void *p) {
    gather_ctx *c = p;
    dpo_gather_rows(B, c->dst, c->src, c->rows, c->n, c->C, DPO_F32);
    return dotd(c->dout, c->dst, (size_t)c->n * c->C);
}

static void test_gather_scatter(void) {
    printf("gather / scatter_add\n");
    enum { R = 9, C = 5, N = 4 };
    static const int32_t rows[N] = {7, 2, 0, 5};
    gather_ctx c = {rnd(R * C, 71, -1, 1), rnd(N * C, 72, -1, 1), filled(N * C, NAN), rows, N, C};
    gather_loss(&c);
    double ref[N * C];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < C; j++) ref[i * C + j] = c.src[rows[i] * C + j];
    }
    check_vec("gather_rows", c.dst, ref, N * C, 0.0, 0.0);
    // scatter_add_rows is gather's adjoint: it accumulates into the chosen rows only.
    float *d0 = rnd(R * C, 73, -1, 1), *d = clone(d0, R * C);
    dpo_scatter_add_rows(B, d, c.dout, rows, N, C, DPO_F32);
    double sref[R * C];
    for (int i = 0; i < R * C; i++) sref[i] = d0[i];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < C; j++) sref[rows[i] * C + j] += c.dout[i * C + j];
    }
    check_vec("scatter_add_rows", d, sref, R * C, 1e-7, 0.0);
    float *g = diff(d, d0, R * C);
    check_fd("scatter_add_rows = d gather", c.src, g, R * C, gather_loss, &c, 1e-2f, 1e-4, 1e-5);
    float *m[] = {c.src, c.dout, c.dst, d0, d, g};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
}

// -------------------------------------------------------------- log-probs ----

// Vocabulary of 11 real tokens split over `tp` shards of Vloc columns each; the
// columns past 11 are padding.
enum { LP_N = 6, LP_VOCAB = 11, LP_MAXCOLS = 16 };

typedef struct {
    float *logits;   // (LP_N, LP_MAXCOLS) full padded rows; padding = huge values
    const int32_t *tgt;
    const float *dlogp;
    int tp, Vloc;
    double logp[LP_N], lse[LP_N];
} lp_ctx;

// Runs logprob_stats on each shard and combines like an all-reduce would:
// M = max_s m_s, S = sum_s S_s exp(m_s - M), lse = M + log S, target from its shard.
static void lp_shards(lp_ctx *c) {
    float mx[LP_N], se[LP_N], tl[LP_N], *sh = dpo_alloc(B, (size_t)LP_N * c->Vloc * 4);
    double M[LP_N], S[LP_N], tg[LP_N];
    for (int r = 0; r < LP_N; r++) M[r] = -INFINITY, S[r] = 0.0, tg[r] = -INFINITY;
    for (int s = 0; s < c->tp; s++) {
        for (int r = 0; r < LP_N; r++) {
            memcpy(sh + r * c->Vloc, c->logits + r * LP_MAXCOLS + s * c->Vloc, c->Vloc * 4);
        }
        dpo_logprob_stats(B, mx, se, tl, sh, c->tgt, LP_N, c->Vloc, s * c->Vloc, LP_VOCAB, DPO_F32);
        for (int r = 0; r < LP_N; r++) {
            double Mn = fmax(M[r], mx[r]);
            if (Mn == -INFINITY) continue;   // nothing valid seen yet
            S[r] = S[r] * exp(M[r] - Mn) + se[r] * exp(mx[r] - Mn);
            M[r] = Mn;
            if (tl[r] != -INFINITY) tg[r] = tl[r];
        }
    }
    for (int r = 0; r < LP_N; r++) {
        c->lse[r] = M[r] + log(S[r]);
        c->logp[r] = tg[r] - c->lse[r];
    }
    dpo_free(B, sh);
}

static double lp_loss(void *p) {
    lp_ctx *c = p;
    lp_shards(c);
    double L = 0.0;
    for (int r = 0; r < LP_N; r++) L += c->dlogp[r] * c->logp[r];
    return L;
}

// logprob_bwd on every shard with the global lse; returns dlogits (LP_N, LP_VOCAB)
// gathered from the shards, and checks the padding columns came out 0.
static void lp_backward(lp_ctx *c, float *g) {
    float lse[LP_N], *sh = dpo_alloc(B, (size_t)LP_N * c->Vloc * 4);
    bool pad_zero = true;
    for (int r = 0; r < LP_N; r++) lse[r] = (float)c->lse[r];
    for (int s = 0; s < c->tp; s++) {
        for (int r = 0; r < LP_N; r++) {
            memcpy(sh + r * c->Vloc, c->logits + r * LP_MAXCOLS + s * c->Vloc, c->Vloc * 4);
        }
        dpo_logprob_bwd(B, sh, c->tgt, lse, c->dlogp, LP_N, c->Vloc, s * c->Vloc, LP_VOCAB, DPO_F32);
        for (int r = 0; r < LP_N; r++) {
            for (int j = 0; j < c->Vloc; j++) {
                int col = s * c->Vloc + j;
                if (col < LP_VOCAB) g[r * LP_VOCAB + col] = sh[r * c->Vloc + j];
                else pad_zero = pad_zero && sh[r * c->Vloc + j] == 0.0f;
            }
        }
    }
    CHECK(pad_zero);
    dpo_free(B, sh);
}

static void test_logprob(void) {
    printf("logprob_stats / logprob_bwd (vocab 11, TP shards with padding)\n");
    static const int32_t tgt[LP_N] = {0, 5, 6, 10, 3, 8};
    float *logits = rnd(LP_N * LP_MAXCOLS, 81, -3, 3), *dlogp = rnd(LP_N, 82, -1, 1);
    for (int r = 0; r < LP_N; r++) {   // padding must never count
        for (int j = LP_VOCAB; j < LP_MAXCOLS; j++) logits[r * LP_MAXCOLS + j] = 80.0f;
    }
    double ref[LP_N];
    for (int r = 0; r < LP_N; r++) {
        const float *l = logits + r * LP_MAXCOLS;
        double s = 0.0;
        for (int j = 0; j < LP_VOCAB; j++) s += exp((double)l[j]);
        ref[r] = l[tgt[r]] - log(s);
    }
    // tp=1 (one shard, 12 columns), 2x6, 3x5 and 4x4 (the last shard is all padding).
    static const int tps[4][2] = {{1, 12}, {2, 6}, {3, 5}, {4, 4}};
    float g[LP_N * LP_VOCAB], g1[LP_N * LP_VOCAB];
    for (int k = 0; k < 4; k++) {
        lp_ctx c = {logits, tgt, dlogp, tps[k][0], tps[k][1], {0}, {0}};
        lp_shards(&c);
        float lp[LP_N];
        for (int r = 0; r < LP_N; r++) lp[r] = (float)c.logp[r];
        char what[64];
        snprintf(what, sizeof what, "log-prob, %d shard(s) of %d", c.tp, c.Vloc);
        check_vec(what, lp, ref, LP_N, 1e-6, 1e-6);
        lp_backward(&c, k == 0 ? g1 : g);
        if (k > 0) {
            double g1d[LP_N * LP_VOCAB];
            for (int i = 0; i < LP_N * LP_VOCAB; i++) g1d[i] = g1[i];
            snprintf(what, sizeof what, "dlogits, %d shards == 1 shard", c.tp);
            check_vec(what, g, g1d, LP_N * LP_VOCAB, 1e-6, 1e-7);
        }
    }
    // The target's logit is -inf in shards that do not hold it.
    float mx[LP_N], se[LP_N], tl[LP_N];
    float *sh = dpo_alloc(B, LP_N * 6 * 4);
    for (int r = 0; r < LP_N; r++) memcpy(sh + r * 6, logits + r * LP_MAXCOLS + 6, 6 * 4);
    dpo_logprob_stats(B, mx, se, tl, sh, tgt, LP_N, 6, 6, LP_VOCAB, DPO_F32);
    CHECK(tl[0] == -INFINITY && tl[1] == -INFINITY && tl[2] == sh[2 * 6 + 0]);
    CHECK(tl[3] == sh[3 * 6 + 4]);
    dpo_free(B, sh);

    // FD of the log-probs (through the 2-shard path) wrt each valid logit.
    lp_ctx c = {logits, tgt, dlogp, 2, 6, {0}, {0}};
    // Row by row: the valid columns of a row are contiguous in `logits`.
    for (int r = 0; r < LP_N; r++) {
        char what[64];
        snprintf(what, sizeof what, "logprob_bwd row %d", r);
        check_fd(what, logits + r * LP_MAXCOLS, g1 + r * LP_VOCAB, LP_VOCAB, lp_loss, &c, 1e-2f,
                 2e-3, 1e-4);
    }
    dpo_free(B, logits);
    dpo_free(B, dlogp);
}

// ------------------------------------------------------------------ AdamW ----

// torch.optim.AdamW, two steps, in double.
static void adamw_ref(double *p, double *m, double *v, const float *g, int n, int step, double lr,
                      double b1, double b2, double eps, double wd) {
    for (int i = 0; i < n; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * (double)g[i] * g[i];
        double mh = m[i] / (1 - pow(b1, step)), vh = v[i] / (1 - pow(b2, step));
        p[i] -= lr * (wd * p[i] + mh / (sqrt(vh) + eps));
    }
}

static void test_adamw(void) {
    printf("adamw\n");
    enum { N = 33 };
    const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.1f;
    float *p = rnd(N, 91, -1, 1), *m = dpo_alloc(B, N * 4), *v = dpo_alloc(B, N * 4);
    double pr[N], mr[N] = {0}, vr[N] = {0};
    for (int i = 0; i < N; i++) pr[i] = p[i];
    for (int step = 1; step <= 2; step++) {
        float *g = rnd(N, 91 + step, -1, 1);
        dpo_adamw(B, p, g, m, v, N, lr, b1, b2, eps, wd, 1.0f - powf(b1, (float)step),
                 1.0f - powf(b2, (float)step));
        adamw_ref(pr, mr, vr, g, N, step, lr, b1, b2, eps, wd);
        dpo_free(B, g);
    }
    check_vec("adamw param after 2 steps", p, pr, N, 1e-6, 1e-7);
    check_vec("adamw m after 2 steps", m, mr, N, 1e-6, 1e-8);
    check_vec("adamw v after 2 steps", v, vr, N, 1e-5, 1e-10);

    // By hand: p=1, lr=0.1, wd=0.01; g=0.5 then g=-0.25.
    // Step 1: m=0.05, v=0.00025, mhat/sqrt(vhat) = 1 -> p = 1 - 0.1*(0.01 + 1) = 0.899.
    // Step 2: m=0.02, v=0.00031225, mhat=0.02/0.19, vhat=0.00031225/0.001999
    //         -> p = 0.899 - 0.1*(0.00899 + 0.266337...) = 0.8714673.
    float hp = 1.0f, hm = 0.0f, hv = 0.0f, g1 = 0.5f, g2 = -0.25f;
    dpo_adamw(B, &hp, &g1, &hm, &hv, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.1f, 1.0f - 0.999f);
    CHECK_CLOSE(hp, 0.899, 1e-6, 0.0);
    dpo_adamw(B, &hp, &g2, &hm, &hv, 1, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.19f,
             1.0f - 0.999f * 0.999f);
    CHECK_CLOSE(hm, 0.02, 1e-6, 0.0);
    CHECK_CLOSE(hv, 0.00031225, 1e-4, 0.0);   // 1 - 0.999f is 1.3e-5 off in float
    CHECK_CLOSE(hp, 0.8714673, 1e-6, 0.0);
    dpo_free(B, p);
    dpo_free(B, m);
    dpo_free(B, v);
}

// ----------------------------------------------------- thread independence ----

// Big enough that every op takes its parallel path. Runs all ops and returns a
// checksum-free snapshot: the concatenated outputs (caller compares bitwise).
typedef struct {
    float *buf;
    size_t n, cap;
} snap_t;

static void snap(snap_t *s, const float *x, size_t n) {
    if (s->n + n > s->cap) {
        s->cap = 2 * (s->n + n);
        s->buf = realloc(s->buf, s->cap * sizeof(float));
    }
    memcpy(s->buf + s->n, x, n * sizeof(float));
    s->n += n;
}

static void run_big(snap_t *s) {
    // attention: sequences 100, 1, 37, 60 -> T = 198, H=4, Hkv=2, D=32
    static const int32_t cu[] = {0, 100, 101, 138, 198};
    enum { T = 198, H = 4, HKV = 2, D = 32, NQ = T * H * D, NKV = T * HKV * D };
    float *q = rnd(NQ, 101, -2, 2), *k = rnd(NKV, 102, -2, 2), *v = rnd(NKV, 103, -1, 1);
    float *dout = rnd(NQ, 104, -1, 1), *out = dpo_alloc(B, NQ * 4), *lse = dpo_alloc(B, H * T * 4);
    float *dq = dpo_alloc(B, NQ * 4), *dk = dpo_alloc(B, NKV * 4), *dv = dpo_alloc(B, NKV * 4);
    dpo_attention_fwd(B, out, lse, q, k, v, cu, 4, T, H, HKV, D, DPO_F32);
    dpo_attention_bwd(B, dq, dk, dv, dout, out, lse, q, k, v, cu, 4, T, H, HKV, D, DPO_F32);
    snap(s, out, NQ), snap(s, lse, H * T), snap(s, dq, NQ), snap(s, dk, NKV), snap(s, dv, NKV);
    dpo_attention_cached(B, dq, q + 40 * H * D, k, v, 60, 40, H, HKV, D, DPO_F32);   // sequence 0, 40 cached
    snap(s, dq, 60 * H * D);
    // rope, forward then backward, on (256, 8, 64)
    enum { RT = 256, RH = 8, RD = 64, RN = RT * RH * RD };
    float *rx = rnd(RN, 105, -1, 1);
    int32_t *pos = malloc(RT * sizeof(int32_t));
    for (int t = 0; t < RT; t++) pos[t] = t % 97;
    dpo_rope_fwd(B, rx, pos, RT, RH, RD, 10000.0f, DPO_F32);
    snap(s, rx, RN);
    dpo_rope_bwd(B, rx, pos, RT, RH, RD, 10000.0f, DPO_F32);
    snap(s, rx, RN);
    // rmsnorm, bias_grad, embedding_bwd, logprob, swiglu, gather/scatter, adamw, sumsq
    enum { N = 64, C = 1030 };
    float *x = rnd(N * C, 106, -2, 2), *w = rnd(C, 107, 0.5f, 1.5f), *g = rnd(N * C, 108, -1, 1);
    float *y = dpo_alloc(B, N * C * 4), *r = dpo_alloc(B, N * 4), *dx = dpo_alloc(B, N * C * 4);
    float *dw = dpo_alloc(B, C * 4);
    dpo_rmsnorm_fwd(B, y, r, x, w, N, C, 1e-5f, DPO_F32);
    dpo_rmsnorm_bwd(B, dx, dw, g, x, w, r, N, C, DPO_F32);
    dpo_bias_grad(B, dw, g, N, C, DPO_F32);
    snap(s, y, N * C), snap(s, r, N), snap(s, dx, N * C), snap(s, dw, C);
    int32_t tok[N];
    for (int t = 0; t < N; t++) tok[t] = (t * 7) % 23;   // repeats, some out of shard
    float *dt = dpo_alloc(B, 20 * C * 4);
    dpo_embedding_bwd(B, dt, tok, g, N, C, 2, 20, DPO_F32);
    dpo_embedding_fwd(B, y, tok, dt, N, C, 2, 20, DPO_F32);
    snap(s, dt, 20 * C), snap(s, y, N * C);
    float mx[N], se[N], tl[N], lsev[N], dl[N];
    dpo_logprob_stats(B, mx, se, tl, x, tok, N, C, 5, 1000, DPO_F32);
    for (int t = 0; t < N; t++) lsev[t] = mx[t] + logf(se[t]), dl[t] = 0.5f;
    for (int t = 0; t < N; t++) tl[t] = tl[t] == -INFINITY ? -1e30f : tl[t];   // not in shard
    snap(s, mx, N), snap(s, se, N), snap(s, tl, N);
    memcpy(y, x, N * C * 4);
    dpo_logprob_bwd(B, y, tok, lsev, dl, N, C, 5, 1000, DPO_F32);
    snap(s, y, N * C);
    dpo_swiglu_fwd(B, y, x, g, N * C, DPO_F32);
    dpo_swiglu_bwd(B, dx, dt, g, x, w, C, DPO_F32);
    snap(s, y, N * C), snap(s, dx, C), snap(s, dt, C);
    int32_t rows[N];
    for (int i = 0; i < N; i++) rows[i] = N - 1 - i;
    dpo_gather_rows(B, y, x, rows, N, C, DPO_F32);
    dpo_scatter_add_rows(B, y, g, rows, N, C, DPO_F32);
    float *mm = dpo_alloc(B, N * C * 4), *vv = dpo_alloc(B, N * C * 4);
    dpo_adamw(B, y, g, mm, vv, N * C, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.1f, 0.1f, 0.001f);
    double ss = dpo_sumsq(B, y, N * C);
    float ssf[2];
    memcpy(ssf, &ss, sizeof ss);
    snap(s, y, N * C), snap(s, ssf, 2);
    float *m[] = {q, k, v, dout, out, lse, dq, dk, dv, rx, x, w, g, y, r, dx, dw, dt, mm, vv};
    for (size_t i = 0; i < sizeof m / sizeof *m; i++) dpo_free(B, m[i]);
    free(pos);
}

static void test_threads(void) {
    printf("1 thread vs 3 threads: bit-identical\n");
    snap_t a = {0}, b = {0};
    backend_cpu_set_threads(1);
    run_big(&a);
    backend_cpu_set_threads(3);
    run_big(&b);
    backend_cpu_set_threads(1);
    CHECK(a.n == b.n && memcmp(a.buf, b.buf, a.n * sizeof(float)) == 0);
    CHECK(all_finite(a.buf, a.n));
    free(a.buf);
    free(b.buf);
}

// -------------------------------------------------------------- lookup ----

static void test_lookup(void) {
    // The CPU backend is one process-wide instance.
    CHECK(backend_cpu() == backend_cpu());
    backend_check(backend_cpu());
    // The device count is 0 wherever the backend cannot run (no CUDA in the build,
    // library not loadable, no driver, no device, CUDA_VISIBLE_DEVICES empty), and
    // then backend_cuda_available or backend_cuda_open says why.
    char why[256] = "";
    int got = backend_cuda_device_count();
    bool avail = backend_cuda_available(why, sizeof why);
    if (!avail) {
        CHECK(got == 0);
        CHECK(why[0] != '\0');
    }
#ifndef DPO_HAVE_CUDA
    CHECK(!avail);
#endif
    // An ordinal past the last device never opens, and the reason names it.
    why[0] = '\0';
    dpo_backend_t *none = backend_cuda_open(got, DPO_MATMUL_FP32, why, sizeof why);
    CHECK(none == NULL);
    CHECK(why[0] != '\0');
    backend_cuda_close(none);
    // An explicit count to compare with, e.g. from nvidia-smi: DPO_TEST_EXPECT_DEVICES=N.
    const char *expect = getenv("DPO_TEST_EXPECT_DEVICES");
    if (expect && *expect) {
        CHECK(got == atoi(expect));
        if (got != atoi(expect)) fprintf(stderr, "backend_cuda_device_count() = %d, expected %s\n", got, expect);
    }
}

// ---------------------------------------------------- the table, profiler ----

static void test_table(void) {
    // Every op of the list is in the CPU table, under a distinct name.
    CHECK(backend_ops_missing(backend_cpu()->ops) == NULL);
    for (int i = 0; i < DPO_BACKEND_N_OPS; i++)
        for (int j = i + 1; j < DPO_BACKEND_N_OPS; j++)
            CHECK(strcmp(dpo_backend_op_names[i], dpo_backend_op_names[j]) != 0);
    CHECK(strcmp(dpo_backend_op_names[0], "alloc") == 0);
    CHECK(strcmp(dpo_backend_op_names[DPO_BACKEND_N_OPS - 1], "adamw") == 0);
    // A table with a forgotten op is refused by that op's name.
    dpo_backend_ops_t ops = *backend_cpu()->ops;
    ops.attention_cached = NULL;
    const char *miss = backend_ops_missing(&ops);
    CHECK(miss && strcmp(miss, "attention_cached") == 0);
    ops = *backend_cpu()->ops;
    ops.adamw = NULL;
    miss = backend_ops_missing(&ops);
    CHECK(miss && strcmp(miss, "adamw") == 0);
    CHECK(dpo_dtype_size(DPO_F32) == 4 && strcmp(dpo_dtype_name(DPO_F32), "f32") == 0);
}

// Two profilers around the same backend are independent instances; each counts
// its own calls and FLOPs, and the wrapped ops compute what the inner ones do.
static void test_profile(void) {
    dpo_backend_t *p1 = backend_profile_wrap(B), *p2 = backend_profile_wrap(B);
    CHECK(backend_is_profile(p1) && !backend_is_profile(B) && backend_profile_inner(p1) == B);
    enum { M = 3, N = 4, K = 5 };
    float a[M * K], b[K * N], c1[M * N], c2[M * N];
    for (int i = 0; i < M * K; i++) a[i] = 0.25f * (float)(i % 7) - 0.5f;
    for (int i = 0; i < K * N; i++) b[i] = 0.125f * (float)(i % 5) + 0.1f;
    dpo_matmul(B, false, false, M, N, K, 1.0f, a, DPO_F32, K, b, DPO_F32, N, 0.0f, c1, DPO_F32, N);
    dpo_matmul(p1, false, false, M, N, K, 1.0f, a, DPO_F32, K, b, DPO_F32, N, 0.0f, c2, DPO_F32, N);
    CHECK(memcmp(c1, c2, sizeof c1) == 0);
    dpo_matmul(p1, false, false, M, N, K, 1.0f, a, DPO_F32, K, b, DPO_F32, N, 0.0f, c2, DPO_F32, N);
    CHECK(dpo_sumsq(p2, a, M * K) == dpo_sumsq(B, a, M * K));
    long long calls = -1;
    backend_profile_seconds(p1, "matmul", &calls);
    CHECK(calls == 2);
    backend_profile_seconds(p2, "matmul", &calls);
    CHECK(calls == 0);
    backend_profile_seconds(p2, "sumsq", &calls);
    CHECK(calls == 1);
    backend_profile_seconds(p1, "no_such_op", &calls);
    CHECK(calls == 0);
    // The report lists the ops called, with matmul's GFLOP/s column.
    char buf[4096] = "";
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    CHECK(f != NULL);
    if (f) {
        backend_profile_report(p1, f);
        fclose(f);
    }
    CHECK(strstr(buf, "matmul") != NULL && strstr(buf, "sumsq") == NULL);
    backend_profile_reset(p1);
    backend_profile_seconds(p1, "matmul", &calls);
    CHECK(calls == 0);
    backend_profile_free(p1);
    backend_profile_free(p2);
}

int main(int argc, char **argv) {
    B = backend_cpu();
    test_table();
    test_profile();
    test_lookup();
    if (argc > 1 && strcmp(argv[1], "--lookup") == 0) return test_finish("test_ops --lookup");
    test_memory();
    test_matmul();
    test_elementwise();
    test_embedding();
    test_rmsnorm();
    test_rope();
    test_attention();
    test_swiglu();
    test_gather_scatter();
    test_logprob();
    test_adamw();
    test_threads();
    return test_finish("test_ops");
}
