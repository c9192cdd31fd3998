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
#include "dpo/backend_cuda.h"
#include "testutil.h"

#ifdef DPO_HAVE_CUDA

static const dpo_backend_t *CPU;
static dpo_backend_t *GPU;

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
    void *d = dpo_alloc(GPU, bytes);
    dpo_to_device(GPU, d, h, bytes);
    return d;
}

static float *down(const float *d, size_t n) {   // new host copy of a device buffer
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (!h) exit(1);
    dpo_to_host(GPU, h, d, n * sizeof(float));
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
    float *d = dpo_alloc(GPU, n * sizeof(float));
    float *h = down(d, n);
    int nonzero = 0;
    for (size_t i = 0; i < n; i++) nonzero += h[i] != 0.0f;
    CHECK(nonzero == 0);   // alloc is zero-filled
    free(h);

    float *x = hrand(n, 1, -1.0f, 1.0f);
    dpo_to_device(GPU, d, x, n * sizeof(float));
    float *d2 = dpo_alloc(GPU, n * sizeof(float));
    dpo_copy(GPU, d2, d, n * sizeof(float));
    dpo_zero(GPU, d2 + 10, 1000 * sizeof(float));   // a range in the middle
    float *back = down(d2, n);
    float *want = hcopy(x, n);
    memset(want + 10, 0, 1000 * sizeof(float));
    compare("memory", "roundtrip", back, want, n, 0, 0);
    dpo_synchronize(GPU);

    void *z = dpo_alloc(GPU, 0);   // a zero-size tensor still gets a pointer
    CHECK(z != NULL);
    dpo_free(GPU, z);
    dpo_free(GPU, d2);
    dpo_free(GPU, d);
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
    dpo_matmul(CPU, ta, tb, M, N, K, alpha, A, DPO_F32, lda, B, DPO_F32, ldb, beta, Cc, DPO_F32, ldc);

    float *dA = dpo_alloc(GPU, (na + off) * sizeof(float));
    float *dB = dpo_alloc(GPU, (nb + off) * sizeof(float));
    float *dC = dpo_alloc(GPU, (nc + off) * sizeof(float));
    dpo_to_device(GPU, dA + off, A, na * sizeof(float));
    dpo_to_device(GPU, dB + off, B, nb * sizeof(float));
    dpo_to_device(GPU, dC + off, C0, nc * sizeof(float));
    dpo_matmul(GPU, ta, tb, M, N, K, alpha, dA + off, DPO_F32, lda, dB + off, DPO_F32, ldb, beta, dC + off, DPO_F32, ldc);
    float *Cg = malloc(nc * sizeof(float));
    dpo_to_host(GPU, Cg, dC + off, nc * sizeof(float));

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
    dpo_free(GPU, dA), dpo_free(GPU, dB), dpo_free(GPU, dC);
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
    float *dA = dpo_alloc(GPU, 64 * sizeof(float)), *dB = dpo_alloc(GPU, 64 * sizeof(float));
    float *dC = up(C0, nc * sizeof(float));
    dpo_matmul(GPU, false, false, M, N, 0, 1.0f, dA, DPO_F32, 1, dB, DPO_F32, N, 0.5f, dC, DPO_F32, ldc);
    float *g = down(dC, nc);
    compare("matmul", "K=0", g, want, nc, 0, 0);
    free(g);
    dpo_to_device(GPU, dC, C0, nc * sizeof(float));
    dpo_matmul(GPU, false, false, M, N, 4, 0.0f, dA, DPO_F32, 4, dB, DPO_F32, N, 0.5f, dC, DPO_F32, ldc);
    g = down(dC, nc);
    compare("matmul", "alpha=0", g, want, nc, 0, 0);
    free(g), free(C0), free(want);
    dpo_free(GPU, dA), dpo_free(GPU, dB), dpo_free(GPU, dC);
}

// ---------------------------------------------------------- element-wise ----

static void test_add_scale(size_t n) {
    float *y = hrand(n, 11, -1.0f, 1.0f), *x = hrand(n, 12, -1.0f, 1.0f);
    float *dy = up(y, n * 4), *dx = up(x, n * 4);
    dpo_add_inplace(CPU, y, x, n, DPO_F32);
    dpo_add_inplace(GPU, dy, dx, n, DPO_F32);
    float *g = down(dy, n);
    compare("add_inplace", "y", g, y, n, 0, 0);
    free(g);
    dpo_scale_inplace(CPU, y, -0.37f, n, DPO_F32);
    dpo_scale_inplace(GPU, dy, -0.37f, n, DPO_F32);
    g = down(dy, n);
    compare("scale_inplace", "x", g, y, n, 0, 0);
    free(g), free(y), free(x);
    dpo_free(GPU, dy), dpo_free(GPU, dx);
}

static void test_sumsq(size_t n) {
    float *x = hrand(n, 13, -2.0f, 2.0f);
    float *dx = up(x, n * 4);
    double c = dpo_sumsq(CPU, x, n), g = dpo_sumsq(GPU, dx, n);
    // Both sum positive terms in double; only the order differs. Typical relative
    // error ~sqrt(n) 1.1e-16 ~ 2e-13 at n = 3e6; 1e-10 leaves ample margin.
    CHECK_CLOSE(g, c, 1e-10, 0.0);
    printf("  %-16s %-10s n=%-10zu gpu %.17g cpu %.17g\n", "sumsq", "", n, g, c);
    free(x);
    dpo_free(GPU, dx);
}

static void test_bias(int T, int N) {
    size_t n = (size_t)T * N;
    float *y = hrand(n, 14, -1.0f, 1.0f), *b = hrand((size_t)N, 15, -1.0f, 1.0f);
    float *db = hrand((size_t)N, 16, -1.0f, 1.0f);   // accumulated into
    float *dyy = up(y, n * 4), *dbias = up(b, (size_t)N * 4), *ddb = up(db, (size_t)N * 4);
    dpo_bias_add(CPU, y, b, T, N, DPO_F32);
    dpo_bias_add(GPU, dyy, dbias, T, N, DPO_F32);
    float *g = down(dyy, n);
    compare("bias_add", "y", g, y, n, 0, 0);
    free(g);
    dpo_bias_grad(CPU, db, y, T, N, DPO_F32);   // dy = the new y
    dpo_bias_grad(GPU, ddb, dyy, T, N, DPO_F32);
    g = down(ddb, (size_t)N);
    compare("bias_grad", "db", g, db, (size_t)N, 1e-6, 1e-6);
    free(g), free(y), free(b), free(db);
    dpo_free(GPU, dyy), dpo_free(GPU, dbias), dpo_free(GPU, ddb);
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
    dpo_embedding_fwd(CPU, out, tok, table, T, C, vstart, V, DPO_F32);
    dpo_embedding_fwd(GPU, dout, dtok, dtable, T, C, vstart, V, DPO_F32);
    float *g = down(dout, no);
    compare("embedding_fwd", "out", g, out, no, 0, 0);
    free(g);
    float *grad = hrand(no, 20, -1.0f, 1.0f);
    float *dgrad = up(grad, no * 4);
    dpo_embedding_bwd(CPU, table, tok, grad, T, C, vstart, V, DPO_F32);   // table plays dtable
    dpo_embedding_bwd(GPU, dtable, dtok, dgrad, T, C, vstart, V, DPO_F32);
    g = down(dtable, nt);
    // Same summation order as the CPU (tokens in order per row): expected exact.
    compare("embedding_bwd", "dtable", g, table, nt, 1e-6, 0);
    free(g), free(tok), free(table), free(out), free(grad);
    dpo_free(GPU, dtok), dpo_free(GPU, dtable), dpo_free(GPU, dout), dpo_free(GPU, dgrad);
}

// --------------------------------------------------------------- RMSNorm ----

static void test_rmsnorm(int N, int C) {
    size_t n = (size_t)N * C;
    float *x = hrand(n, 21, -1.0f, 1.0f), *w = hrand((size_t)C, 22, 0.5f, 1.5f);
    float *out = malloc(n * 4), *rstd = malloc((size_t)N * 4);
    float *dx_ = up(x, n * 4), *dw_ = up(w, (size_t)C * 4);
    float *dout_ = dpo_alloc(GPU, n * 4), *drstd = dpo_alloc(GPU, (size_t)N * 4);
    dpo_rmsnorm_fwd(CPU, out, rstd, x, w, N, C, 1e-5f, DPO_F32);
    dpo_rmsnorm_fwd(GPU, dout_, drstd, dx_, dw_, N, C, 1e-5f, DPO_F32);
    float *g = down(dout_, n), *gr = down(drstd, (size_t)N);
    compare("rmsnorm_fwd", "out", g, out, n, 1e-6, 1e-6);
    compare("rmsnorm_fwd", "rstd", gr, rstd, (size_t)N, 1e-6, 0);
    free(g), free(gr);

    float *dy = hrand(n, 23, -1.0f, 1.0f), *dwacc = hrand((size_t)C, 24, -1.0f, 1.0f);
    float *dxc = malloc(n * 4);
    float *ddy = up(dy, n * 4), *ddw = up(dwacc, (size_t)C * 4), *ddx = dpo_alloc(GPU, n * 4);
    dpo_rmsnorm_bwd(CPU, dxc, dwacc, dy, x, w, rstd, N, C, DPO_F32);
    dpo_rmsnorm_bwd(GPU, ddx, ddw, ddy, dx_, dw_, drstd, N, C, DPO_F32);
    g = down(ddx, n);
    float *gw = down(ddw, (size_t)C);
    compare("rmsnorm_bwd", "dx", g, dxc, n, 1e-5, 1e-5);
    compare("rmsnorm_bwd", "dw", gw, dwacc, (size_t)C, 1e-5, 1e-5);
    free(g);
    // A frozen weight (dw NULL): the same dx, no weight gradient touched.
    dpo_zero(GPU, ddx, n * 4);
    dpo_rmsnorm_bwd(GPU, ddx, NULL, ddy, dx_, dw_, drstd, N, C, DPO_F32);
    g = down(ddx, n);
    compare("rmsnorm_bwd (frozen w)", "dx", g, dxc, n, 1e-5, 1e-5);
    free(g), free(gw), free(x), free(w), free(out), free(rstd), free(dy), free(dwacc), free(dxc);
    dpo_free(GPU, dx_), dpo_free(GPU, dw_), dpo_free(GPU, dout_), dpo_free(GPU, drstd), dpo_free(GPU, ddy),
        dpo_free(GPU, ddw), dpo_free(GPU, ddx);
}

// ------------------------------------------------------------------ RoPE ----

static void test_rope(int T, int H, int D) {
    size_t n = (size_t)T * H * D;
    float *x = hrand(n, 25, -1.0f, 1.0f), *x0 = hcopy(x, n);
    int32_t *pos = irand((size_t)T, 26, 0, 512);
    float *dx = up(x, n * 4);
    int32_t *dpos = up(pos, (size_t)T * 4);
    dpo_rope_fwd(CPU, x, pos, T, H, D, 10000.0f, DPO_F32);
    dpo_rope_fwd(GPU, dx, dpos, T, H, D, 10000.0f, DPO_F32);
    float *g = down(dx, n);
    compare("rope_fwd", "x", g, x, n, 0, 2e-4);
    free(g);
    dpo_rope_bwd(CPU, x, pos, T, H, D, 10000.0f, DPO_F32);
    dpo_rope_bwd(GPU, dx, dpos, T, H, D, 10000.0f, DPO_F32);
    g = down(dx, n);
    compare("rope_bwd", "dx", g, x, n, 0, 2e-4);
    compare("rope_bwd(fwd)", "identity", g, x0, n, 0, 1e-5);   // rotations are orthogonal
    free(g), free(x), free(x0), free(pos);
    dpo_free(GPU, dx), dpo_free(GPU, dpos);
}

// ---------------------------------------------------------------- SwiGLU ----

static void test_swiglu(size_t n) {
    float *gate = hrand(n, 27, -8.0f, 8.0f), *u = hrand(n, 28, -2.0f, 2.0f);
    float *dy = hrand(n, 29, -1.0f, 1.0f);
    float *out = malloc(n * 4), *dg = malloc(n * 4), *du = malloc(n * 4);
    float *dgate = up(gate, n * 4), *dup_ = up(u, n * 4), *ddy = up(dy, n * 4);
    float *dout = dpo_alloc(GPU, n * 4), *ddg = dpo_alloc(GPU, n * 4), *ddu = dpo_alloc(GPU, n * 4);
    dpo_swiglu_fwd(CPU, out, gate, u, n, DPO_F32);
    dpo_swiglu_fwd(GPU, dout, dgate, dup_, n, DPO_F32);
    dpo_swiglu_bwd(CPU, dg, du, dy, gate, u, n, DPO_F32);
    dpo_swiglu_bwd(GPU, ddg, ddu, ddy, dgate, dup_, n, DPO_F32);
    float *g = down(dout, n), *gg = down(ddg, n), *gu = down(ddu, n);
    compare("swiglu_fwd", "out", g, out, n, 1e-5, 1e-6);
    compare("swiglu_bwd", "dgate", gg, dg, n, 1e-5, 1e-6);
    compare("swiglu_bwd", "dup", gu, du, n, 1e-5, 1e-6);
    free(g), free(gg), free(gu), free(gate), free(u), free(dy), free(out), free(dg), free(du);
    dpo_free(GPU, dgate), dpo_free(GPU, dup_), dpo_free(GPU, ddy), dpo_free(GPU, dout), dpo_free(GPU, ddg),
        dpo_free(GPU, ddu);
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
    float *dsrc = up(src, ns * 4), *ddst = dpo_alloc(GPU, nd * 4);
    int32_t *drows = up(rows, (size_t)n * 4);
    dpo_gather_rows(CPU, dst, src, rows, n, C, DPO_F32);
    dpo_gather_rows(GPU, ddst, dsrc, drows, n, C, DPO_F32);
    float *g = down(ddst, nd);
    compare("gather_rows", "dst", g, dst, nd, 0, 0);
    free(g);
    dpo_scatter_add_rows(CPU, src, dst, rows, n, C, DPO_F32);   // src (T,C) += dst rows
    dpo_scatter_add_rows(GPU, dsrc, ddst, drows, n, C, DPO_F32);
    g = down(dsrc, ns);
    compare("scatter_add_rows", "dst", g, src, ns, 0, 0);
    free(g), free(rows), free(r), free(src), free(dst);
    dpo_free(GPU, dsrc), dpo_free(GPU, ddst), dpo_free(GPU, drows);
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
    float *dmx = dpo_alloc(GPU, (size_t)n * 4), *dse = dpo_alloc(GPU, (size_t)n * 4);
    float *dtl = dpo_alloc(GPU, (size_t)n * 4);
    dpo_logprob_stats(CPU, mx, se, tl, logits, tg, n, V, vstart, vocab_valid, DPO_F32);
    dpo_logprob_stats(GPU, dmx, dse, dtl, dl, dtg, n, V, vstart, vocab_valid, DPO_F32);
    float *g1 = down(dmx, (size_t)n), *g2 = down(dse, (size_t)n), *g3 = down(dtl, (size_t)n);
    printf("  logprob %s (V=%d vstart=%d vocab_valid=%d)\n", label, V, vstart, vocab_valid);
    compare("logprob_stats", "row_max", g1, mx, (size_t)n, 0, 0);
    compare("logprob_stats", "sumexp", g2, se, (size_t)n, 1e-6, 0);
    compare("logprob_stats", "target", g3, tl, (size_t)n, 0, 0);

    // A plausible global lse per row (the exact value does not matter to the check).
    float *lse = malloc((size_t)n * 4), *dlogp = hrand((size_t)n, 34, -1.0f, 1.0f);
    for (int i = 0; i < n; i++) lse[i] = se[i] > 0.0f ? mx[i] + logf(se[i]) + 0.5f : 3.0f;
    float *dlse = up(lse, (size_t)n * 4), *ddlogp = up(dlogp, (size_t)n * 4);
    dpo_logprob_bwd(CPU, logits, tg, lse, dlogp, n, V, vstart, vocab_valid, DPO_F32);
    dpo_logprob_bwd(GPU, dl, dtg, dlse, ddlogp, n, V, vstart, vocab_valid, DPO_F32);
    float *g = down(dl, nl);
    compare("logprob_bwd", "dlogits", g, logits, nl, 1e-5, 1e-6);
    free(g), free(g1), free(g2), free(g3), free(logits), free(tg), free(mx), free(se), free(tl),
        free(lse), free(dlogp);
    dpo_free(GPU, dl), dpo_free(GPU, dtg), dpo_free(GPU, dmx), dpo_free(GPU, dse), dpo_free(GPU, dtl), dpo_free(GPU, dlse),
        dpo_free(GPU, ddlogp);
}

// ---------------------------------------------------------------- AdamW ----

static void test_adamw(size_t n, int steps, float wd) {
    const float lr = 3e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f;
    float *p = hrand(n, 35, -1.0f, 1.0f), *m = calloc(n, 4), *v = calloc(n, 4);
    float *dp = up(p, n * 4), *dm = dpo_alloc(GPU, n * 4), *dv = dpo_alloc(GPU, n * 4);
    float *gr = malloc(n * 4), *dgr = dpo_alloc(GPU, n * 4);
    for (int step = 1; step <= steps; step++) {
        test_fill_uniform(gr, n, 100 + (unsigned)step, -2.0f, 2.0f);
        dpo_to_device(GPU, dgr, gr, n * 4);
        float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
        dpo_adamw(CPU, p, gr, m, v, n, lr, b1, b2, eps, wd, bc1, bc2);
        dpo_adamw(GPU, dp, dgr, dm, dv, n, lr, b1, b2, eps, wd, bc1, bc2);
    }
    float *gp = down(dp, n), *gm = down(dm, n), *gv = down(dv, n);
    compare("adamw", "param", gp, p, n, 1e-6, 1e-7);
    compare("adamw", "m", gm, m, n, 1e-5, 1e-6);
    compare("adamw", "v", gv, v, n, 1e-5, 1e-6);
    free(gp), free(gm), free(gv), free(p), free(m), free(v), free(gr);
    dpo_free(GPU, dp), dpo_free(GPU, dm), dpo_free(GPU, dv), dpo_free(GPU, dgr);
}

// Instances are independent: a second one on the same device has its own stream
// and works while the first is open; closing it leaves the first untouched.
static void test_second_instance(void) {
    char err[2048] = "";
    dpo_backend_t *g2 = backend_cuda_open(0, DPO_MATMUL_BF16, err, sizeof err);
    if (!g2) {
        test_fail(__FILE__, __LINE__, "second backend_cuda_open(0): %s", err);
        return;
    }
    CHECK(g2 != GPU);
    CHECK(g2->ctx != GPU->ctx);
    CHECK(backend_cuda_stream(g2) != backend_cuda_stream(GPU));
    CHECK(backend_cuda_device(g2) == 0);
    const size_t n = 1000;
    float *h = hrand(n, 99, -1.0f, 1.0f), *back = malloc(n * 4);
    float *d1 = dpo_alloc(GPU, n * 4), *d2 = dpo_alloc(g2, n * 4);
    dpo_to_device(g2, d2, h, n * 4);
    dpo_scale_inplace(g2, d2, 2.0f, n, DPO_F32);
    dpo_to_device(GPU, d1, h, n * 4);
    dpo_add_inplace(GPU, d1, d1, n, DPO_F32);   // 2h on the first instance
    dpo_to_host(g2, back, d2, n * 4);
    int same2 = 1;
    for (size_t i = 0; i < n; i++) same2 &= back[i] == 2.0f * h[i];
    CHECK(same2);
    dpo_free(g2, d2);
    backend_cuda_close(g2);
    dpo_to_host(GPU, back, d1, n * 4);   // the first instance still works
    int same1 = 1;
    for (size_t i = 0; i < n; i++) same1 &= back[i] == h[i] + h[i];
    CHECK(same1);
    dpo_free(GPU, d1);
    free(h), free(back);
    printf("second instance on device 0: own stream, independent: %s\n",
           same1 && same2 ? "ok" : "FAILED");
}

static int run_all(void) {
    char err[2048] = "";
    int count = backend_cuda_device_count();
    CHECK(backend_cuda_open(count, DPO_MATMUL_FP32, err, sizeof err) == NULL);
    CHECK(err[0] != '\0');
    printf("open(%d) refused as expected: %s\n", count, err);
    dpo_cuda_device_info_t info;
    CHECK(backend_cuda_device_info(0, &info, err, sizeof err) == 0);
    CHECK(info.name[0] != '\0' && info.total_mem > 0);
    printf("device 0: %s (PCI %04x:%02x:%02x)\n", info.name, info.pci_domain, info.pci_bus,
           info.pci_device);
    CHECK(backend_cuda_device_info(count, &info, err, sizeof err) != 0);

    CPU = backend_cpu();
    GPU = backend_cuda_open(0, DPO_MATMUL_FP32, err, sizeof err);
    if (!GPU) {
        test_fail(__FILE__, __LINE__, "backend_cuda_open(0): %s", err);
        return test_finish("test_gpu_ops");
    }
    CHECK(strcmp(GPU->ops->name, "cuda") == 0);
    CHECK(backend_ops_missing(GPU->ops) == NULL);
    CHECK(backend_cuda_device(GPU) == 0);
    CHECK(backend_cuda_stream(GPU) != NULL);
    test_second_instance();

    printf("fp32 matmul precision:\n");
    test_memory();
    test_add_scale(1000003);
    test_add_scale(1);
    // More elements than one pass of the capped grid (65535*8 blocks x 256 threads).
    test_add_scale((size_t)65535 * 8 * 256 + 1001);
    test_sumsq(1);
    test_sumsq(3000017);
    CHECK(dpo_sumsq(GPU, NULL, 0) == 0.0);
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

    backend_cuda_close(GPU);

    GPU = backend_cuda_open(0, DPO_MATMUL_TF32, err, sizeof err);
    CHECK(GPU != NULL);
    if (GPU) {
        printf("tf32 matmul precision:\n");
        test_matmul("tf32", 4e-3);
        backend_cuda_close(GPU);
        GPU = backend_cuda_open(0, DPO_MATMUL_BF16, err, sizeof err);
        CHECK(GPU != NULL);
    }
    if (GPU) {
        printf("bf16 matmul precision:\n");
        test_matmul("bf16", 2e-2);
        backend_cuda_close(GPU);
    }
    return test_finish("test_gpu_ops");
}
#endif

int main(void) {
    if (backend_cuda_device_count() == 0) {
        // Without a device, the CUDA backend must refuse cleanly with a reason.
        char err[2048] = "";
        CHECK(backend_cuda_open(0, DPO_MATMUL_BF16, err, sizeof err) == NULL);
        CHECK(err[0] != '\0');
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
