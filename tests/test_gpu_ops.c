// test_gpu_ops.c — every op of the CUDA ops table (attention excepted: see
// test_gpu_attention.c) against the CPU backend, the tested reference, on the
// same random inputs; prints the largest difference per op. Skips (77) in builds
// without CUDA and on machines where no GPU is visible.
//
// Tolerances, and why (u = 2^-24, the fp32 unit roundoff):
// - exact (0): ops that only move data or do one IEEE add/multiply per element
//   (memory ops, add, scale, bias_add, embedding, gather/scatter) and the ops whose
//   GPU summation order equals the CPU's (embedding_bwd) or whose result is
//   order-free (row max, target logit).
// - 1e-6 relative: sums accumulated in double and rounded once to fp32 (bias_grad,
//   rmsnorm rstd/out and dw, logprob sumexp): only the final rounding can differ.
// - 1e-5 relative + small absolute: formulas with expf/sqrtf (swiglu, logprob_bwd,
//   adamw, rmsnorm dx): CUDA's expf is within 2 ulp of glibc's, and nvcc contracts
//   a*b+c into fma, which rounds once where the CPU rounds twice.
// - rope 2e-4 absolute: CUDA's powf/sinf/cosf may differ from glibc by 1-2 ulp; an
//   inverse frequency 2 ulp off moves the angle pos * inv_freq by up to
//   512 * 2 * 6e-8 = 6e-5 rad at the positions tested (< 512), i.e. x by <= 1e-4.
// - matmul: |gpu - cpu| / (|alpha| sum_k |a_ik b_kj| + |beta c_ij|) (the classic
//   dot-product error bound, independent of K). fp32: both sides accumulate in fp32
//   (worst case K u, typically sqrt(K) u ~ 1.4e-6 at K = 515): 1e-5. tf32 rounds
//   each operand to 10 mantissa bits (<= 2^-10 relative each even if truncated), so a
//   product is off by <= 2e-3: 4e-3. bf16 keeps 7 mantissa bits (<= 2^-7 each), a
//   product is off by <= 1.6e-2: 2e-2.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "testutil.h"

#ifdef DPO_HAVE_CUDA

static const dpo_backend_t *CPU, *GPU;

// ------------------------------------------------------------- helpers ----

static float *hrand(size_t n, unsigned seed, float lo, float hi) {
    float *x = malloc((n ? n : 1) * sizeof(float));
    if (!x) {
        fprintf(stderr, "out of host memory (%zu floats)\n", n);
        exit(1);
    }
    test_fill_uniform(x, n, seed, lo, hi);
    return x;
}

static float *hcopy(const float *x, size_t n) {
    float *y = malloc((n ? n : 1) * sizeof(float));
    if (!y) exit(1);
    memcpy(y, x, n * sizeof(float));
    return y;
}

// Integers in [lo, hi) from a fixed seed (xorshift).
static int32_t *irand(size_t n, unsigned seed, int lo, int hi) {
    int32_t *x = malloc((n ? n : 1) * sizeof(int32_t));
    if (!x) exit(1);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        x[i] = lo + (int32_t)(s % (uint32_t)(hi - lo));
    }
    return x;
}

static void *up(const void *h, size_t bytes) {   // new device buffer holding h
    void *d = GPU->alloc(bytes);
    GPU->to_device(d, h, bytes);
    return d;
}

static float *down(const float *d, size_t n) {   // new host copy of a device buffer
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h) exit(1);
    GPU->to_host(h, d, n * sizeof(float));
    return h;
}

// Compares gpu against cpu element-wise: |g - c| <= atol + rtol |c| (equal values,
// infinities included, always pass). Prints the largest differences and returns
// the largest absolute one.
static double compare(const char *op, const char *what, const float *g, const float *c, size_t n,
                      double rtol, double atol) {
    double maxabs = 0.0, maxrel = 0.0;
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (g[i] == c[i]) continue;
        double d = fabs((double)g[i] - c[i]);
        double r = d / fmax(fabs((double)c[i]), 1e-30);
        if (!(d <= maxabs)) maxabs = d;
        if (!(r <= maxrel)) maxrel = r;
        if (!test_close(g[i], c[i], rtol, atol)) {
            if (bad++ < 5) {
                test_fail(__FILE__, __LINE__, "%s %s[%zu]: gpu %.9g vs cpu %.9g (rtol %g, atol %g)",
                          op, what, i, (double)g[i], (double)c[i], rtol, atol);
            }
        }
    }
    printf("  %-16s %-10s n=%-10zu max |gpu-cpu| %.3g  max rel %.3g%s\n", op, what, n, maxabs,
           maxrel, bad ? "  FAILED" : "");
    return maxabs;
}

// ---------------------------------------------------------- memory ops ----

static void test_memory(void) {
    size_t n = 100003;
    float *d = GPU->alloc(n * sizeof(float));
    float *h = down(d, n);
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += h[i] != 0.0f;
    CHECK(nonzero == 0);   // alloc is zero-filled
    free(h);

    float *x = hrand(n, 1, -1.0f, 1.0f);
    GPU->to_device(d, x, n * sizeof(float));
    float *d2 = GPU->alloc(n * sizeof(float));
    GPU->copy(d2, d, n * sizeof(float));
    GPU->zero(d2 + 10, 1000 * sizeof(float));   // a range in the middle
    float *back = down(d2, n);
    float *want = hcopy(x, n);
    memset(want + 10, 0, 1000 * sizeof(float));
    compare("memory", "roundtrip", back, want, n, 0, 0);
    GPU->synchronize();

    void *z = GPU->alloc(0);   // a zero-size tensor still gets a pointer
    CHECK(z != NULL);
    GPU->free(z);
    GPU->free(d2);
    GPU->free(d);
    free(x), free(back), free(want);
}

// --------------------------------------------------------------- matmul ----

// One matmul on both backends; stored shapes follow backend.h (row-major, leading
// dims lda/ldb/ldc >= the stored row lengths). `off` floats are skipped at the start
// of each device buffer so the pointers are only 4-byte aligned (exercises the
// alignment-aware cuBLASLt plans). Returns the largest normalized error.
static double matmul_case(bool ta, bool tb, int M, int N, int K, int pad, int off, float alpha,
                          float beta, double tol, unsigned seed) {
    int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
    int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
    size_t na = (size_t)ar * lda, nb = (size_t)br * ldb, nc = (size_t)M * ldc;
    float *A = hrand(na, seed, -1.0f, 1.0f), *B = hrand(nb, seed + 1, -1.0f, 1.0f);
    float *C0 = hrand(nc, seed + 2, -1.0f, 1.0f);
    float *Cc = hcopy(C0, nc);
    CPU->matmul(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, Cc, ldc);

    float *dA = GPU->alloc((na + off) * sizeof(float));
    float *dB = GPU->alloc((nb + off) * sizeof(float));
    float *dC = GPU->alloc((nc + off) * sizeof(float));
    GPU->to_device(dA + off, A, na * sizeof(float));
    GPU->to_device(dB + off, B, nb * sizeof(float));
    GPU->to_device(dC + off, C0, nc * sizeof(float));
    GPU->matmul(ta, tb, M, N, K, alpha, dA + off, lda, dB + off, ldb, beta, dC + off, ldc);
    float *Cg = malloc(nc * sizeof(float));
    GPU->to_host(Cg, dC + off, nc * sizeof(float));

    double worst = 0.0;
    int bad = 0;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < ldc; j++) {
            size_t ci = (size_t)i * ldc + j;
            if (j >= N) {   // padding columns of C must be untouched
                if (Cg[ci] != C0[ci] && bad++ < 3)
                    test_fail(__FILE__, __LINE__, "matmul wrote C padding (%d,%d)", i, j);
                continue;
            }
            double scale = fabs((double)beta * C0[ci]);
            for (int k = 0; k < K; k++) {
                double a = ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                double b = tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                scale += fabs((double)alpha * a * b);
            }
            double e = fabs((double)Cg[ci] - Cc[ci]) / fmax(scale, 1e-30);
            if (!(e <= worst)) worst = e;
            if (!(e <= tol) && bad++ < 3) {
                test_fail(__FILE__, __LINE__,
                          "matmul ta=%d tb=%d M=%d N=%d K=%d C(%d,%d): gpu %.9g cpu %.9g "
                          "(normalized error %.3g > %.3g)",
                          ta, tb, M, N, K, i, j, (double)Cg[ci], (double)Cc[ci], e, tol);
            }
        }
    }
    GPU->free(dA), GPU->free(dB), GPU->free(dC);
    free(A), free(B), free(C0), free(Cc), free(Cg);
    return worst;
}

static void test_matmul(const char *prec, double tol) {
    static const int shapes[][3] = {{1, 1, 1},   {37, 53, 29},  {64, 128, 96},
                                    {257, 130, 515}, {5, 3, 1000}, {130, 7, 33}};
    int nshapes = (int)(sizeof shapes / sizeof shapes[0]);
    double worst = 0.0;
    int idx = 0;
    for (int s = 0; s < nshapes; s++) {
        for (int t = 0; t < 4; t++) {
            for (int b = 0; b < 2; b++, idx++) {
                int pad = (idx % 2) * 3, off = (idx / 2) % 2;
                float alpha = (idx % 3 == 0) ? 0.75f : 1.0f;
                double e = matmul_case(t & 1, (t >> 1) & 1, shapes[s][0], shapes[s][1],
                                       shapes[s][2], pad, off, alpha, b ? 1.0f : 0.0f, tol,
                                       1000u + (unsigned)idx * 7u);
                if (e > worst) worst = e;
            }
        }
    }
    // The same shape again: served from the plan cache.
    double e = matmul_case(false, true, 257, 130, 515, 3, 1, 1.0f, 1.0f, tol, 77);
    if (e > worst) worst = e;
    printf("  %-16s %-10s %d cases, max normalized |gpu-cpu| %.3g (tolerance %g)\n", "matmul",
           prec, idx + 1, worst, tol);
}

// K = 0 and alpha = 0 leave only C = beta C (BLAS semantics; no product is read).
static void test_matmul_degenerate(void) {
    int M = 9, N = 11, ldc = 13;
    size_t nc = (size_t)M * ldc;
    float *C0 = hrand(nc, 5, -1.0f, 1.0f), *want = hcopy(C0, nc);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) want[(size_t)i * ldc + j] *= 0.5f;
    float *dA = GPU->alloc(64 * sizeof(float)), *dB = GPU->alloc(64 * sizeof(float));
    float *dC = up(C0, nc * sizeof(float));
    GPU->matmul(false, false, M, N, 0, 1.0f, dA, 1, dB, N, 0.5f, dC, ldc);
    float *g = down(dC, nc);
    compare("matmul", "K=0", g, want, nc, 0, 0);
    free(g);
    GPU->to_device(dC, C0, nc * sizeof(float));
    GPU->matmul(false, false, M, N, 4, 0.0f, dA, 4, dB, N, 0.5f, dC, ldc);
    g = down(dC, nc);
    compare("matmul", "alpha=0", g, want, nc, 0, 0);
    free(g), free(C0), free(want);
    GPU->free(dA), GPU->free(dB), GPU->free(dC);
}

// ---------------------------------------------------------- element-wise ----

static void test_add_scale(size_t n) {
    float *y = hrand(n, 11, -1.0f, 1.0f), *x = hrand(n, 12, -1.0f, 1.0f);
    float *dy = up(y, n * 4), *dx = up(x, n * 4);
    CPU->add_inplace(y, x, n);
    GPU->add_inplace(dy, dx, n);
    float *g = down(dy, n);
    compare("add_inplace", "y", g, y, n, 0, 0);
    free(g);
    CPU->scale_inplace(y, -0.37f, n);
    GPU->scale_inplace(dy, -0.37f, n);
    g = down(dy, n);
    compare("scale_inplace", "x", g, y, n, 0, 0);
    free(g), free(y), free(x);
    GPU->free(dy), GPU->free(dx);
}

static void test_sumsq(size_t n) {
    float *x = hrand(n, 13, -2.0f, 2.0f);
    float *dx = up(x, n * 4);
    double c = CPU->sumsq(x, n), g = GPU->sumsq(dx, n);
    // Both sum positive terms in double; only the order differs. Typical relative
    // error ~sqrt(n) 1.1e-16 ~ 2e-13 at n = 3e6; 1e-10 leaves ample margin.
    CHECK_CLOSE(g, c, 1e-10, 0.0);
    printf("  %-16s %-10s n=%-10zu gpu %.17g cpu %.17g\n", "sumsq", "", n, g, c);
    free(x);
    GPU->free(dx);
}

static void test_bias(int T, int N) {
    size_t n = (size_t)T * N;
    float *y = hrand(n, 14, -1.0f, 1.0f), *b = hrand((size_t)N, 15, -1.0f, 1.0f);
    float *db = hrand((size_t)N, 16, -1.0f, 1.0f);   // accumulated into
    float *dyy = up(y, n * 4), *dbias = up(b, (size_t)N * 4), *ddb = up(db, (size_t)N * 4);
    CPU->bias_add(y, b, T, N);
    GPU->bias_add(dyy, dbias, T, N);
    float *g = down(dyy, n);
    compare("bias_add", "y", g, y, n, 0, 0);
    free(g);
    CPU->bias_grad(db, y, T, N);   // dy = the new y
    GPU->bias_grad(ddb, dyy, T, N);
    g = down(ddb, (size_t)N);
    compare("bias_grad", "db", g, db, (size_t)N, 1e-6, 1e-6);
    free(g), free(y), free(b), free(db);
    GPU->free(dyy), GPU->free(dbias), GPU->free(ddb);
}

// ------------------------------------------------------------- embedding ----

static void test_embedding(int T, int C, int vstart, int V) {
    // Tokens over 0..2*(vstart+V): many outside this shard, many repeats.
    int32_t *tok = irand((size_t)T, 17, 0, 2 * (vstart + V));
    for (int t = 0; t < T / 4; t++) tok[t] = vstart + 3;   // one row hit many times
    size_t nt = (size_t)V * C, no = (size_t)T * C;
    float *table = hrand(nt, 18, -1.0f, 1.0f), *out = hrand(no, 19, -1.0f, 1.0f);
    int32_t *dtok = up(tok, (size_t)T * 4);
    float *dtable = up(table, nt * 4), *dout = up(out, no * 4);
    CPU->embedding_fwd(out, tok, table, T, C, vstart, V);
    GPU->embedding_fwd(dout, dtok, dtable, T, C, vstart, V);
    float *g = down(dout, no);
    compare("embedding_fwd", "out", g, out, no, 0, 0);
    free(g);
    float *grad = hrand(no, 20, -1.0f, 1.0f);
    float *dgrad = up(grad, no * 4);
    CPU->embedding_bwd(table, tok, grad, T, C, vstart, V);   // table plays dtable
    GPU->embedding_bwd(dtable, dtok, dgrad, T, C, vstart, V);
    g = down(dtable, nt);
    // Same summation order as the CPU (tokens in order per row): expected exact.
    compare("embedding_bwd", "dtable", g, table, nt, 1e-6, 0);
    free(g), free(tok), free(table), free(out), free(grad);
    GPU->free(dtok), GPU->free(dtable), GPU->free(dout), GPU->free(dgrad);
}

// --------------------------------------------------------------- RMSNorm ----

static void test_rmsnorm(int N, int C) {
    size_t n = (size_t)N * C;
    float *x = hrand(n, 21, -1.0f, 1.0f), *w = hrand((size_t)C, 22, 0.5f, 1.5f);
    float *out = malloc(n * 4), *rstd = malloc((size_t)N * 4);
    float *dx_ = up(x, n * 4), *dw_ = up(w, (size_t)C * 4);
    float *dout_ = GPU->alloc(n * 4), *drstd = GPU->alloc((size_t)N * 4);
    CPU->rmsnorm_fwd(out, rstd, x, w, N, C, 1e-5f);
    GPU->rmsnorm_fwd(dout_, drstd, dx_, dw_, N, C, 1e-5f);
    float *g = down(dout_, n), *gr = down(drstd, (size_t)N);
    compare("rmsnorm_fwd", "out", g, out, n, 1e-6, 1e-6);
    compare("rmsnorm_fwd", "rstd", gr, rstd, (size_t)N, 1e-6, 0);
    free(g), free(gr);

    float *dy = hrand(n, 23, -1.0f, 1.0f), *dwacc = hrand((size_t)C, 24, -1.0f, 1.0f);
    float *dxc = malloc(n * 4);
    float *ddy = up(dy, n * 4), *ddw = up(dwacc, (size_t)C * 4), *ddx = GPU->alloc(n * 4);
    CPU->rmsnorm_bwd(dxc, dwacc, dy, x, w, rstd, N, C);
    GPU->rmsnorm_bwd(ddx, ddw, ddy, dx_, dw_, drstd, N, C);
    g = down(ddx, n);
    float *gw = down(ddw, (size_t)C);
    compare("rmsnorm_bwd", "dx", g, dxc, n, 1e-5, 1e-5);
    compare("rmsnorm_bwd", "dw", gw, dwacc, (size_t)C, 1e-5, 1e-5);
    free(g), free(gw), free(x), free(w), free(out), free(rstd), free(dy), free(dwacc), free(dxc);
    GPU->free(dx_), GPU->free(dw_), GPU->free(dout_), GPU->free(drstd), GPU->free(ddy),
        GPU->free(ddw), GPU->free(ddx);
}

// ------------------------------------------------------------------ RoPE ----

static void test_rope(int T, int H, int D) {
    size_t n = (size_t)T * H * D;
    float *x = hrand(n, 25, -1.0f, 1.0f), *x0 = hcopy(x, n);
    int32_t *pos = irand((size_t)T, 26, 0, 512);
    float *dx = up(x, n * 4);
    int32_t *dpos = up(pos, (size_t)T * 4);
    CPU->rope_fwd(x, pos, T, H, D, 10000.0f);
    GPU->rope_fwd(dx, dpos, T, H, D, 10000.0f);
    float *g = down(dx, n);
    compare("rope_fwd", "x", g, x, n, 0, 2e-4);
    free(g);
    CPU->rope_bwd(x, pos, T, H, D, 10000.0f);
    GPU->rope_bwd(dx, dpos, T, H, D, 10000.0f);
    g = down(dx, n);
    compare("rope_bwd", "dx", g, x, n, 0, 2e-4);
    compare("rope_bwd(fwd)", "identity", g, x0, n, 0, 1e-5);   // rotations are orthogonal
    free(g), free(x), free(x0), free(pos);
    GPU->free(dx), GPU->free(dpos);
}

// ---------------------------------------------------------------- SwiGLU ----

static void test_swiglu(size_t n) {
    float *gate = hrand(n, 27, -8.0f, 8.0f), *u = hrand(n, 28, -2.0f, 2.0f);
    float *dy = hrand(n, 29, -1.0f, 1.0f);
    float *out = malloc(n * 4), *dg = malloc(n * 4), *du = malloc(n * 4);
    float *dgate = up(gate, n * 4), *dup_ = up(u, n * 4), *ddy = up(dy, n * 4);
    float *dout = GPU->alloc(n * 4), *ddg = GPU->alloc(n * 4), *ddu = GPU->alloc(n * 4);
    CPU->swiglu_fwd(out, gate, u, n);
    GPU->swiglu_fwd(dout, dgate, dup_, n);
    CPU->swiglu_bwd(dg, du, dy, gate, u, n);
    GPU->swiglu_bwd(ddg, ddu, ddy, dgate, dup_, n);
    float *g = down(dout, n), *gg = down(ddg, n), *gu = down(ddu, n);
    compare("swiglu_fwd", "out", g, out, n, 1e-5, 1e-6);
    compare("swiglu_bwd", "dgate", gg, dg, n, 1e-5, 1e-6);
    compare("swiglu_bwd", "dup", gu, du, n, 1e-5, 1e-6);
    free(g), free(gg), free(gu), free(gate), free(u), free(dy), free(out), free(dg), free(du);
    GPU->free(dgate), GPU->free(dup_), GPU->free(ddy), GPU->free(dout), GPU->free(ddg),
        GPU->free(ddu);
}

// -------------------------------------------------------- gather/scatter ----

static void test_gather_scatter(int T, int n, int C) {
    // Distinct rows: the first n of a shuffled 0..T-1.
    int32_t *rows = malloc((size_t)T * 4);
    int32_t *r = irand((size_t)T, 30, 0, 1 << 30);
    for (int i = 0; i < T; i++) rows[i] = i;
    for (int i = T - 1; i > 0; i--) {
        int j = r[i] % (i + 1), tmp = rows[i];
        rows[i] = rows[j], rows[j] = tmp;
    }
    size_t ns = (size_t)T * C, nd = (size_t)n * C;
    float *src = hrand(ns, 31, -1.0f, 1.0f), *dst = malloc(nd * 4);
    float *dsrc = up(src, ns * 4), *ddst = GPU->alloc(nd * 4);
    int32_t *drows = up(rows, (size_t)n * 4);
    CPU->gather_rows(dst, src, rows, n, C);
    GPU->gather_rows(ddst, dsrc, drows, n, C);
    float *g = down(ddst, nd);
    compare("gather_rows", "dst", g, dst, nd, 0, 0);
    free(g);
    CPU->scatter_add_rows(src, dst, rows, n, C);   // src (T,C) += dst rows
    GPU->scatter_add_rows(dsrc, ddst, drows, n, C);
    g = down(dsrc, ns);
    compare("scatter_add_rows", "dst", g, src, ns, 0, 0);
    free(g), free(rows), free(r), free(src), free(dst);
    GPU->free(dsrc), GPU->free(ddst), GPU->free(drows);
}

// ------------------------------------------------------------- log-probs ----

static void test_logprob(int n, int V, int vstart, int vocab_valid, const char *label) {
    size_t nl = (size_t)n * V;
    float *logits = hrand(nl, 32, -10.0f, 10.0f);
    int32_t *tg = irand((size_t)n, 33, 0, vstart + V + 500);
    tg[0] = vstart;   // first column of the shard
    if (n > 1) tg[1] = vocab_valid - 1;   // last valid column (if in this shard)
    float *mx = malloc((size_t)n * 4), *se = malloc((size_t)n * 4), *tl = malloc((size_t)n * 4);
    float *dl = up(logits, nl * 4);
    int32_t *dtg = up(tg, (size_t)n * 4);
    float *dmx = GPU->alloc((size_t)n * 4), *dse = GPU->alloc((size_t)n * 4);
    float *dtl = GPU->alloc((size_t)n * 4);
    CPU->logprob_stats(mx, se, tl, logits, tg, n, V, vstart, vocab_valid);
    GPU->logprob_stats(dmx, dse, dtl, dl, dtg, n, V, vstart, vocab_valid);
    float *g1 = down(dmx, (size_t)n), *g2 = down(dse, (size_t)n), *g3 = down(dtl, (size_t)n);
    printf("  logprob %s (V=%d vstart=%d vocab_valid=%d)\n", label, V, vstart, vocab_valid);
    compare("logprob_stats", "row_max", g1, mx, (size_t)n, 0, 0);
    compare("logprob_stats", "sumexp", g2, se, (size_t)n, 1e-6, 0);
    compare("logprob_stats", "target", g3, tl, (size_t)n, 0, 0);

    // A plausible global lse per row (the exact value does not matter to the check).
    float *lse = malloc((size_t)n * 4), *dlogp = hrand((size_t)n, 34, -1.0f, 1.0f);
    for (int i = 0; i < n; i++) lse[i] = se[i] > 0.0f ? mx[i] + logf(se[i]) + 0.5f : 3.0f;
    float *dlse = up(lse, (size_t)n * 4), *ddlogp = up(dlogp, (size_t)n * 4);
    CPU->logprob_bwd(logits, tg, lse, dlogp, n, V, vstart, vocab_valid);
    GPU->logprob_bwd(dl, dtg, dlse, ddlogp, n, V, vstart, vocab_valid);
    float *g = down(dl, nl);
    compare("logprob_bwd", "dlogits", g, logits, nl, 1e-5, 1e-6);
    free(g), free(g1), free(g2), free(g3), free(logits), free(tg), free(mx), free(se), free(tl),
        free(lse), free(dlogp);
    GPU->free(dl), GPU->free(dtg), GPU->free(dmx), GPU->free(dse), GPU->free(dtl), GPU->free(dlse),
        GPU->free(ddlogp);
}

// ---------------------------------------------------------------- AdamW ----

static void test_adamw(size_t n, int steps, float wd) {
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    float *p = hrand(n, 35, -1.0f, 1.0f), *m = calloc(n, 4), *v = calloc(n, 4);
    float *dp = up(p, n * 4), *dm = GPU->alloc(n * 4), *dv = GPU->alloc(n * 4);
    float *gr = malloc(n * 4), *dgr = GPU->alloc(n * 4);
    for (int step = 1; step <= steps; step++) {
        test_fill_uniform(gr, n, 100 + (unsigned)step, -2.0f, 2.0f);
        GPU->to_device(dgr, gr, n * 4);
        float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
        CPU->adamw(p, gr, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
        GPU->adamw(dp, dgr, dm, dv, n, lr, b1, b2, eps, wd, bc1, bc2);
    }
    float *gp = down(dp, n), *gm = down(dm, n), *gv = down(dv, n);
    compare("adamw", "param", gp, p, n, 1e-6, 1e-7);
    compare("adamw", "m", gm, m, n, 1e-5, 1e-6);
    compare("adamw", "v", gv, v, n, 1e-5, 1e-6);
    free(gp), free(gm), free(gv), free(p), free(m), free(v), free(gr);
    GPU->free(dp), GPU->free(dm), GPU->free(dv), GPU->free(dgr);
}

static int run_all(void) {
    char err[256] = "";
    CHECK(backend_by_name("cuda") == NULL);   // not before open
    int count = backend_cuda_device_count();
    CHECK(backend_cuda_open(count, DPO_MATMUL_FP32, err, sizeof err) == NULL);
    CHECK(err[0] != '\0');
    printf("open(%d) refused as expected: %s\n", count, err);

    CPU = backend_cpu();
    GPU = backend_cuda_open(0, DPO_MATMUL_FP32, err, sizeof err);
    if (!GPU) {
        test_fail(__FILE__, __LINE__, "backend_cuda_open(0): %s", err);
        return test_finish("test_gpu_ops");
    }
    CHECK(backend_by_name("cuda") == GPU);
    CHECK(strcmp(GPU->name, "cuda") == 0);

    printf("fp32 matmul precision:\n");
    test_memory();
    test_add_scale(1000003);
    test_add_scale(1);
    // More elements than one pass of the capped grid (65535*8 blocks x 256 threads).
    test_add_scale((size_t)65535 * 8 * 256 + 1001);
    test_sumsq(1);
    test_sumsq(3000017);
    CHECK(GPU->sumsq(NULL, 0) == 0.0);
    test_bias(1, 1);
    test_bias(77, 300);
    test_bias(5000, 64);   // many row chunks
    test_embedding(500, 96, 200, 300);
    test_embedding(1, 5, 0, 3);
    test_rmsnorm(200, 1000);
    test_rmsnorm(3, 7);
    test_rmsnorm(3000, 64);
    test_rope(100, 6, 64);
    test_rope(3, 1, 2);
    test_swiglu(100003);
    test_gather_scatter(300, 100, 70);
    test_gather_scatter(5, 5, 1);
    test_logprob(50, 1000, 0, 5000, "all valid");
    test_logprob(50, 1000, 2000, 2500, "half padding");
    test_logprob(7, 1000, 3000, 2500, "padding only");
    test_logprob(3, 70001, 70001, 140002, "wide");
    test_adamw(1, 1, 0.1f);
    test_adamw(1000003, 3, 0.1f);
    test_adamw(20000, 2, 0.0f);
    test_matmul_degenerate();
    test_matmul("fp32", 1e-5);

    backend_cuda_close();
    CHECK(backend_by_name("cuda") == NULL);   // not after close

    GPU = backend_cuda_open(0, DPO_MATMUL_TF32, err, sizeof err);
    CHECK(GPU != NULL);
    if (GPU) {
        printf("tf32 matmul precision:\n");
        test_matmul("tf32", 4e-3);
        // Reopening the open device switches precision (and drops cached plans).
        GPU = backend_cuda_open(0, DPO_MATMUL_BF16, err, sizeof err);
        CHECK(GPU != NULL);
    }
    if (GPU) {
        printf("bf16 matmul precision:\n");
        test_matmul("bf16", 2e-2);
        backend_cuda_close();
    }
    return test_finish("test_gpu_ops");
}
#endif

int main(void) {
    if (backend_cuda_device_count() == 0) {
        // Without a device, the CUDA backend must refuse cleanly with a reason.
        char err[256] = "";
        CHECK(backend_cuda_open(0, DPO_MATMUL_BF16, err, sizeof err) == NULL);
        CHECK(err[0] != '\0');
        CHECK(backend_by_name("cuda") == NULL);
        printf("no GPU visible (%s): skipped\n", err);
        if (test_failures) return test_finish("test_gpu_ops");
        return TEST_SKIP_CODE;
    }
#ifdef DPO_HAVE_CUDA
    return run_all();
#else
    return test_finish("test_gpu_ops");
#endif
}
