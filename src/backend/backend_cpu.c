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

static void *cpu_alloc(const dpo_backend_t *be, size_t bytes) {
    (void)be;
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

static void cpu_free(const dpo_backend_t *be, void *p) {
    (void)be;
    free(p);
}

static void cpu_memcpy(const dpo_backend_t *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_zero(const dpo_backend_t *be, void *p, size_t bytes) {
    (void)be;
    if (bytes) memset(p, 0, bytes);
}

static void cpu_synchronize(const dpo_backend_t *be) { (void)be; }

// ---------------------------------------------------------------- matmul ----

static void matmul_f32(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                       const float *A, int lda, const float *B, int ldb, float beta, float *C,
                       int ldc) {
    if (M <= 0 || N <= 0) return;
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
                ldc);
}

// ----------------------------------------------------------- element-wise ----

static void add_inplace_f32(float *y, const float *x, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN)
    for (ptrdiff_t i = 0; i < nn; i++) y[i] += x[i];
}

static void scale_inplace_f32(float *x, float s, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN)
    for (ptrdiff_t i = 0; i < nn; i++) x[i] *= s;
}

// Sum of squares in double. Fixed blocks -> per-block partials -> serial sum, so
// the rounding is the same for every thread count.
static double cpu_sumsq(const dpo_backend_t *be, const float *x, size_t n) {
    (void)be;
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

static void bias_add_f32(float *y, const float *b, int T, int N) {
#pragma omp parallel for schedule(static) if ((long)T * N >= PAR_MIN)
    for (int t = 0; t < T; t++) {
        float *row = y + (size_t)t * N;
        for (int j = 0; j < N; j++) row[j] += b[j];
    }
}

// db (N) += column sums of dy (T,N). Tasks own column blocks (no races, fixed
// summation order over t) and read one cache line per row.
static void bias_grad_f32(float *db, const float *dy, int T, int N) {
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

static void embedding_fwd_f32(float *out, const int32_t *tokens, const float *table, int T,
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
static void embedding_bwd_f32(float *dtable, const int32_t *tokens, const float *dout, int T,
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

static void rmsnorm_fwd_f32(float *out, float *rstd, const float *x, const float *w, int N,
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
static void rmsnorm_bwd_f32(float *dx, float *dw, const float *dout, const float *x,
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
    // dw: column blocks, rows in fixed order (no races, reproducible). NULL: a
    // frozen weight, no gradient.
    if (!dw) return;
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

static void rope_fwd_f32(float *x, const int32_t *pos, int T, int H, int D, float theta) {
    rope_apply(x, pos, T, H, D, theta, 1.0f);
}

static void rope_bwd_f32(float *dx, const int32_t *pos, int T, int H, int D, float theta) {
    rope_apply(dx, pos, T, H, D, theta, -1.0f);
}

// ------------------------------------------------------------- attention ----
//
// Blocked on sgemm. A query tile is m consecutive rows of one query head of one
// sequence, at positions r0..r0+m-1; causality means it sees keys 0..r0+m-1, so
// its scores S (m, r0+m) are one sgemm, the softmax runs row by row in fp32 (row
// max over the keys the row sees, a vectorised exp within 2 ulp of libm's, the sum
// in double as in the scalar reference, tests/attention_ref.c), and P V is one
// more sgemm. Keys past a
// row's position (the upper part of the diagonal block) get P = 0, which adds
// nothing to the products. The forward, the backward and the cached forward all
// run these tile routines, so a row's arithmetic is the same code in all three.

// Query rows per tile: enough for sgemm to run near peak, small enough that the
// score block of a tile stays in L2 for sequences up to a few thousand tokens.
#define ATT_BR 64
// Cap on one tile's score block (floats, 1 MiB): for sequences longer than
// ATT_S_FLOATS / ATT_BR keys the tile gets fewer rows, so scratch never grows
// with T x T.
#define ATT_S_FLOATS (1 << 18)

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

// Query rows per tile when the tile's rows may see up to `keys` keys.
static int att_tile_rows(int keys) {
    int br = keys > 0 ? ATT_S_FLOATS / keys : ATT_BR;
    return br > ATT_BR ? ATT_BR : br < 1 ? 1 : br;
}

// Scratch floats one tile of a sequence of len tokens needs for its score block.
static size_t att_scratch(int len) { return (size_t)att_tile_rows(len) * (len > 0 ? len : 1); }

// The sgemms run inside an OpenMP team, one task per thread, and must not spawn
// threads of their own. The OpenMP build of OpenBLAS (the one CMake prefers)
// runs single-threaded inside an active parallel region by itself; a pthreads
// build has to be told. Returns the thread count to restore.
// Other BLAS libraries (MKL, LibSci, the reference BLAS) have no such controls:
// they run serially inside a parallel region, or are serial anyway.
#ifdef DPO_HAVE_OPENBLAS_THREADS
static int blas_serial_begin(void) {
    if (openblas_get_parallel() == 2) return 0;   // 2 = OpenMP build
    int n = openblas_get_num_threads();
    if (n > 1) openblas_set_num_threads(1);
    return n;
}

static void blas_serial_end(int n) {
    if (n > 1) openblas_set_num_threads(n);
}
#else
static int blas_serial_begin(void) { return 0; }
static void blas_serial_end(int n) { (void)n; }
#endif

// p[j] = exp(p[j] - sub), j < n, in fp32 to within 2 ulp (1.7 measured), written
// so GCC vectorises it: libm's expf is a scalar call per score and was the largest
// cost left after the sgemms. exp(x) = 2^k e^r with k = round(x / ln 2) and
// r = x - k ln 2 in two parts (|r| <= ln2/2); e^r by its Taylor series to degree 7
// (truncation 1e-8 relative); 2^k assembled from k's bits. x is clamped to
// [-88, 88] first, in a pass of its own: a select stored to memory vectorises, one
// feeding more arithmetic does not (under -ftrapping-math). At k = -127
// (x < -87.7) 2^k comes out +0, so results that expf gives as subnormals, and
// exp(-inf), are 0. NaN stays NaN; no float-to-int conversion, so no UB on it.
static void att_exp_row(float *p, int n, float sub) {
    for (int j = 0; j < n; j++) {
        float x = p[j] - sub;
        x = x > 88.0f ? 88.0f : x;
        p[j] = x < -88.0f ? -88.0f : x;
    }
    for (int j = 0; j < n; j++) {
        float x = p[j];
        float t = x * 1.44269504f + 12582912.0f;   // 1.5 * 2^23 + k: k in the low bits
        float kf = t - 12582912.0f;
        float r = x - kf * 0.693145752f;   // ln 2 high part: kf * it is exact
        r = r - kf * 1.42860677e-06f;      // ln 2 low part
        float e = 1.0f / 5040.0f;
        e = e * r + 1.0f / 720.0f;
        e = e * r + 1.0f / 120.0f;
        e = e * r + 1.0f / 24.0f;
        e = e * r + 1.0f / 6.0f;
        e = e * r + 0.5f;
        e = e * r + 1.0f;
        e = e * r + 1.0f;
        uint32_t tb;
        memcpy(&tb, &t, sizeof tb);
        uint32_t bits = (tb - 0x4B400000u + 127u) << 23;   // biased exponent k + 127
        float two_k;
        memcpy(&two_k, &bits, sizeof two_k);
        p[j] = e * two_k;
    }
}

// Max of p[0..n-1] in 8 fixed lanes (vectorisable, same result for any order).
static float att_rowmax(const float *p, int n) {
    float m8[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        for (int l = 0; l < 8; l++) m8[l] = p[j + l] > m8[l] ? p[j + l] : m8[l];
    }
    float mx = -INFINITY;
    for (; j < n; j++) mx = p[j] > mx ? p[j] : mx;
    for (int l = 0; l < 8; l++) mx = m8[l] > mx ? m8[l] : mx;
    return mx;
}

// Sum of p[0..n-1] in double, in 4 lanes of fixed order (a serial double chain
// costs more than the vectorised exps).
static double att_rowsum(const float *p, int n) {
    double s4[4] = {0.0, 0.0, 0.0, 0.0};
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        for (int l = 0; l < 4; l++) s4[l] += p[j + l];
    }
    double sum = (s4[0] + s4[1]) + (s4[2] + s4[3]);
    for (; j < n; j++) sum += p[j];
    return sum;
}

static float dotf(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// Forward of one query tile: q/o rows r0..r0+m-1 (stride qs), k/v rows 0..r0+m-1
// of the sequence (stride kvs); s scratch (m, r0+m). Writes o (m, D) and, unless
// lse is NULL, lse (m).
static void attn_tile_fwd(float *o, float *lse, float *s, const float *q, const float *k,
                          const float *v, int r0, int m, size_t qs, size_t kvs, int D,
                          float scale) {
    int n = r0 + m;   // keys the tile sees
    // S (m, n) = scale * Q K^T
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, D, scale, q, (int)qs, k,
                (int)kvs, 0.0f, s, n);
    for (int i = 0; i < m; i++) {
        float *p = s + (size_t)i * n;
        int nv = 0;   // keys row i sees: the visible prefix of the n keys
        while (nv < n && dpo_attn_visible(r0 + i, nv)) nv++;
        float mx = att_rowmax(p, nv);
        att_exp_row(p, nv, mx);
        double sum = att_rowsum(p, nv);
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < nv; j++) p[j] *= inv;
        for (int j = nv; j < n; j++) p[j] = 0.0f;   // keys row i does not see
        if (lse) lse[i] = mx + (float)log(sum);
    }
    // O (m, D) = P V
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, n, 1.0f, s, n, v, (int)kvs,
                0.0f, o, (int)qs);
}

typedef struct {
    int s, r0, m;   // sequence, first row within it, rows
} att_tile_t;

// Query tiles of every sequence, the costliest (last) tiles of each sequence
// first so the dynamic schedule does not end on a long tile. Caller frees.
static att_tile_t *att_tiles(const int32_t *cu, int nseq, int *ntiles, size_t *scratch) {
    int nt = 0;
    *scratch = 1;
    for (int s = 0; s < nseq; s++) {
        int len = cu[s + 1] - cu[s], br = att_tile_rows(len);
        nt += (len + br - 1) / br;
        if (att_scratch(len) > *scratch) *scratch = att_scratch(len);
    }
    att_tile_t *t = malloc((size_t)(nt > 0 ? nt : 1) * sizeof *t);
    if (!t) dpo_fatal("backend cpu: out of memory in attention");
    int i = 0;
    for (int s = 0; s < nseq; s++) {
        int len = cu[s + 1] - cu[s], br = att_tile_rows(len);
        for (int r0 = (len - 1) / br * br; len > 0 && r0 >= 0; r0 -= br) {
            t[i++] = (att_tile_t){s, r0, len - r0 < br ? len - r0 : br};
        }
    }
    *ntiles = nt;
    return t;
}

// Tasks are (query tile, query head) pairs under a dynamic schedule (causal tiles
// cost very different amounts); each task writes only its own rows of out and
// lse, and its sums do not depend on which thread runs it, so results are bit
// reproducible for any thread count. Scratch: one score block per thread.
static void attention_fwd_f32(float *out, float *lse, const float *q, const float *k,
                              const float *v, const int32_t *cu_seqlens, int nseq, int T, int H,
                              int Hkv, int D) {
    check_gqa(H, Hkv);
    int G = H / Hkv, nt;   // G: query heads per kv head
    size_t sz;
    att_tile_t *tiles = att_tiles(cu_seqlens, nseq, &nt, &sz);
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;   // token strides
    int blas_threads = blas_serial_begin();
#pragma omp parallel if ((long)T * H * D >= PAR_MIN / 8)
    {
        float *sbuf = malloc(sz * sizeof(float));   // (m, r0+m) of the current tile
        if (!sbuf) dpo_fatal("backend cpu: out of memory in attention_fwd");
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int ti = 0; ti < nt; ti++) {
            for (int h = 0; h < H; h++) {
                const att_tile_t *tl = &tiles[ti];
                size_t t0 = (size_t)cu_seqlens[tl->s], t = t0 + tl->r0;
                size_t kvoff = t0 * kvs + (size_t)(h / G) * D;
                attn_tile_fwd(out + t * qs + (size_t)h * D, lse + (size_t)h * T + t, sbuf,
                              q + t * qs + (size_t)h * D, k + kvoff, v + kvoff, tl->r0, tl->m,
                              qs, kvs, D, scale);
            }
        }
        free(sbuf);
    }
    blas_serial_end(blas_threads);
    free(tiles);
}

// The n new rows are tiles of the same routine as the forward, over the same keys
// (0..row), with the same row arithmetic; only the sgemm shapes differ (fewer rows,
// and a tile of the full forward sees keys up to its own last row). See backend.h
// for what that means for equality with attention_fwd.
static void attention_cached_f32(float *out, const float *q, const float *k, const float *v,
                                 int n, int past, int H, int Hkv, int D) {
    check_gqa(H, Hkv);
    int G = H / Hkv, L = past + n, br = att_tile_rows(L), nt = (n + br - 1) / br;
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
    int blas_threads = blas_serial_begin();
#pragma omp parallel if ((long)L * H * D >= PAR_MIN / 8)
    {
        float *sbuf = malloc(att_scratch(L) * sizeof(float));   // (m, past+i0+m)
        if (!sbuf) dpo_fatal("backend cpu: out of memory in attention_cached");
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int ti = 0; ti < nt; ti++) {
            for (int h = 0; h < H; h++) {
                int i0 = (nt - 1 - ti) * br, m = n - i0 < br ? n - i0 : br;   // last tile first
                size_t row = (size_t)i0 * qs + (size_t)h * D;
                attn_tile_fwd(out + row, NULL, sbuf, q + row, k + (size_t)(h / G) * D,
                              v + (size_t)(h / G) * D, past + i0, m, qs, kvs, D, scale);
            }
        }
        free(sbuf);
    }
    blas_serial_end(blas_threads);
}

// Backward of one query tile of one query head (rows r0..r0+m-1, keys
// 0..r0+m-1), recomputing P from q, k and lse:
//   P = exp(S - lse), dP = dO V^T, dS = P * (dP - delta) * scale with
//   delta = rowsum(dO * O); dQ = dS K (overwritten), dK += dS^T Q, dV += P^T dO.
// p, dp scratch (m, r0+m) each.
static void attn_tile_bwd(float *dq, float *dk, float *dv, float *p, float *dp,
                          const float *dout, const float *out, const float *lse, const float *q,
                          const float *k, const float *v, int r0, int m, size_t qs, size_t kvs,
                          int D, float scale) {
    int n = r0 + m;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, D, scale, q, (int)qs, k,
                (int)kvs, 0.0f, p, n);   // S (m, n)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, D, 1.0f, dout, (int)qs, v,
                (int)kvs, 0.0f, dp, n);   // dP (m, n)
    for (int i = 0; i < m; i++) {
        float *pi = p + (size_t)i * n, *di = dp + (size_t)i * n;
        float delta = dotf(dout + (size_t)i * qs, out + (size_t)i * qs, D), l = lse[i];
        int nv = 0;   // keys row i sees (dpo_attn_visible), a prefix
        while (nv < n && dpo_attn_visible(r0 + i, nv)) nv++;
        att_exp_row(pi, nv, l);
        for (int j = 0; j < nv; j++) di[j] = pi[j] * (di[j] - delta) * scale;
        for (int j = nv; j < n; j++) pi[j] = di[j] = 0.0f;   // keys row i does not see
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, n, 1.0f, dp, n, k, (int)kvs,
                0.0f, dq, (int)qs);   // dQ (m, D)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, m, 1.0f, dp, n, q, (int)qs,
                1.0f, dk, (int)kvs);   // dK (n, D) +=
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, m, 1.0f, p, n, dout, (int)qs,
                1.0f, dv, (int)kvs);   // dV (n, D) +=
}

// Tasks are (sequence, kv head) pairs: a task owns dk/dv of its kv head within its
// sequence and dq of the G query heads that share it, so nothing races, and it
// adds the tiles' contributions to dk/dv in a fixed order (query head, then tile),
// so results do not depend on the thread count.
static void attention_bwd_f32(float *dq, float *dk, float *dv, const float *dout,
                              const float *out, const float *lse, const float *q,
                              const float *k, const float *v, const int32_t *cu_seqlens,
                              int nseq, int T, int H, int Hkv, int D) {
    check_gqa(H, Hkv);
    int G = H / Hkv;
    float scale = 1.0f / sqrtf((float)D);
    size_t qs = (size_t)H * D, kvs = (size_t)Hkv * D;
    size_t sz = att_scratch(max_seqlen(cu_seqlens, nseq));
    int blas_threads = blas_serial_begin();
#pragma omp parallel if ((long)T * H * D >= PAR_MIN / 8)
    {
        float *p = malloc(2 * sz * sizeof(float)), *dp = p + sz;   // (m, r0+m) each
        if (!p) dpo_fatal("backend cpu: out of memory in attention_bwd");
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int s = 0; s < nseq; s++) {
            for (int g = 0; g < Hkv; g++) {
                int t0 = cu_seqlens[s], len = cu_seqlens[s + 1] - t0, br = att_tile_rows(len);
                size_t kvoff = (size_t)t0 * kvs + (size_t)g * D;
                for (int j = 0; j < len; j++) {   // overwrite semantics: clear our rows
                    memset(dk + kvoff + (size_t)j * kvs, 0, (size_t)D * sizeof(float));
                    memset(dv + kvoff + (size_t)j * kvs, 0, (size_t)D * sizeof(float));
                }
                for (int h = g * G; h < (g + 1) * G; h++) {
                    for (int r0 = 0; r0 < len; r0 += br) {
                        size_t t = (size_t)t0 + r0, off = t * qs + (size_t)h * D;
                        attn_tile_bwd(dq + off, dk + kvoff, dv + kvoff, p, dp, dout + off,
                                      out + off, lse + (size_t)h * T + t, q + off, k + kvoff,
                                      v + kvoff, r0, len - r0 < br ? len - r0 : br, qs, kvs, D,
                                      scale);
                    }
                }
            }
        }
        free(p);
    }
    blas_serial_end(blas_threads);
}

// ---------------------------------------------------------------- SwiGLU ----

static void swiglu_fwd_f32(float *out, const float *gate, const float *up, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN / 4)
    for (ptrdiff_t i = 0; i < nn; i++) out[i] = dpo_swiglu(gate[i], up[i]);
}

static void swiglu_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate,
                           const float *up, size_t n) {
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN / 4)
    for (ptrdiff_t i = 0; i < nn; i++) {
        dpo_swiglu_grad(gate[i], up[i], dout[i], &dgate[i], &dup[i]);
    }
}

// -------------------------------------------------------- gather/scatter ----

static void gather_rows_f32(float *dst, const float *src, const int32_t *rows, int n, int C) {
#pragma omp parallel for schedule(static) if ((long)n * C >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        memcpy(dst + (size_t)i * C, src + (size_t)rows[i] * C, (size_t)C * sizeof(float));
    }
}

// rows are distinct, so parallel rows never collide.
static void scatter_add_rows_f32(float *dst, const float *src, const int32_t *rows, int n,
                                 int C) {
#pragma omp parallel for schedule(static) if ((long)n * C >= PAR_MIN)
    for (int i = 0; i < n; i++) {
        float *d = dst + (size_t)rows[i] * C;
        const float *s = src + (size_t)i * C;
        for (int c = 0; c < C; c++) d[c] += s[c];
    }
}

// ------------------------------------------------------------- log-probs ----

static void logprob_stats_f32(float *row_max, float *row_sumexp, float *target_logit,
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

static void logprob_bwd_f32(float *logits, const int32_t *targets, const float *lse,
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

static void cpu_adamw(const dpo_backend_t *be, float *param, const float *grad, float *m,
                      float *v, size_t n, float lr, float beta1, float beta2, float eps,
                      float weight_decay, float bc1, float bc2) {
    (void)be;
    ptrdiff_t nn = (ptrdiff_t)n;
#pragma omp parallel for schedule(static) if (nn >= PAR_MIN / 4)
    for (ptrdiff_t i = 0; i < nn; i++) {
        dpo_adamw_update(&param[i], grad[i], &m[i], &v[i], lr, beta1, beta2, eps, weight_decay,
                         bc1, bc2);
    }
}

// --------------------------------------------------- dtype dispatch (table) ----
//
// The table's entries: each checks the dtype of its buffers and calls the kernel
// for it. Only fp32 kernels exist so far; another dtype is a programmer error.
#define NEED_F32(op, dt) \
    if ((dt) != DPO_F32) backend_dtype_unsupported(be, #op, (dt))

static void cpu_matmul(const dpo_backend_t *be, bool trans_a, bool trans_b, int M, int N, int K,
                       float alpha, const void *A, dpo_dtype_t a_dtype, int lda, const void *B,
                       dpo_dtype_t b_dtype, int ldb, float beta, void *C, dpo_dtype_t c_dtype,
                       int ldc) {
    NEED_F32(matmul, a_dtype);
    NEED_F32(matmul, b_dtype);
    NEED_F32(matmul, c_dtype);
    matmul_f32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
static void cpu_add_inplace(const dpo_backend_t *be, void *y, const void *x, size_t n,
                            dpo_dtype_t dt) {
    NEED_F32(add_inplace, dt);
    add_inplace_f32(y, x, n);
}
static void cpu_scale_inplace(const dpo_backend_t *be, void *x, float s, size_t n,
                              dpo_dtype_t dt) {
    NEED_F32(scale_inplace, dt);
    scale_inplace_f32(x, s, n);
}
static void cpu_bias_add(const dpo_backend_t *be, void *y, const void *b, int T, int N,
                         dpo_dtype_t dt) {
    NEED_F32(bias_add, dt);
    bias_add_f32(y, b, T, N);
}
static void cpu_bias_grad(const dpo_backend_t *be, float *db, const void *dy, int T, int N,
                          dpo_dtype_t dt) {
    NEED_F32(bias_grad, dt);
    bias_grad_f32(db, dy, T, N);
}
static void cpu_embedding_fwd(const dpo_backend_t *be, void *out, const int32_t *tokens,
                              const void *table, int T, int C, int vstart, int V,
                              dpo_dtype_t dt) {
    NEED_F32(embedding_fwd, dt);
    embedding_fwd_f32(out, tokens, table, T, C, vstart, V);
}
static void cpu_embedding_bwd(const dpo_backend_t *be, float *dtable, const int32_t *tokens,
                              const void *dout, int T, int C, int vstart, int V,
                              dpo_dtype_t dt) {
    NEED_F32(embedding_bwd, dt);
    embedding_bwd_f32(dtable, tokens, dout, T, C, vstart, V);
}
static void cpu_rmsnorm_fwd(const dpo_backend_t *be, void *out, float *rstd, const void *x,
                            const void *w, int N, int C, float eps, dpo_dtype_t dt) {
    NEED_F32(rmsnorm_fwd, dt);
    rmsnorm_fwd_f32(out, rstd, x, w, N, C, eps);
}
static void cpu_rmsnorm_bwd(const dpo_backend_t *be, void *dx, float *dw, const void *dout,
                            const void *x, const void *w, const float *rstd, int N, int C,
                            dpo_dtype_t dt) {
    NEED_F32(rmsnorm_bwd, dt);
    rmsnorm_bwd_f32(dx, dw, dout, x, w, rstd, N, C);
}
static void cpu_rope_fwd(const dpo_backend_t *be, void *x, const int32_t *pos, int T, int H,
                         int D, float theta, dpo_dtype_t dt) {
    NEED_F32(rope_fwd, dt);
    rope_fwd_f32(x, pos, T, H, D, theta);
}
static void cpu_rope_bwd(const dpo_backend_t *be, void *dx, const int32_t *pos, int T, int H,
                         int D, float theta, dpo_dtype_t dt) {
    NEED_F32(rope_bwd, dt);
    rope_bwd_f32(dx, pos, T, H, D, theta);
}
static void cpu_attention_fwd(const dpo_backend_t *be, void *out, float *lse, const void *q,
                              const void *k, const void *v, const int32_t *cu_seqlens, int nseq,
                              int T, int H, int Hkv, int D, dpo_dtype_t dt) {
    NEED_F32(attention_fwd, dt);
    attention_fwd_f32(out, lse, q, k, v, cu_seqlens, nseq, T, H, Hkv, D);
}
static void cpu_attention_bwd(const dpo_backend_t *be, void *dq, void *dk, void *dv,
                              const void *dout, const void *out, const float *lse, const void *q,
                              const void *k, const void *v, const int32_t *cu_seqlens, int nseq,
                              int T, int H, int Hkv, int D, dpo_dtype_t dt) {
    NEED_F32(attention_bwd, dt);
    attention_bwd_f32(dq, dk, dv, dout, out, lse, q, k, v, cu_seqlens, nseq, T, H, Hkv, D);
}
static void cpu_attention_cached(const dpo_backend_t *be, void *out, const void *q,
                                 const void *k, const void *v, int n, int past, int H, int Hkv,
                                 int D, dpo_dtype_t dt) {
    NEED_F32(attention_cached, dt);
    attention_cached_f32(out, q, k, v, n, past, H, Hkv, D);
}
static void cpu_swiglu_fwd(const dpo_backend_t *be, void *out, const void *gate, const void *up,
                           size_t n, dpo_dtype_t dt) {
    NEED_F32(swiglu_fwd, dt);
    swiglu_fwd_f32(out, gate, up, n);
}
static void cpu_swiglu_bwd(const dpo_backend_t *be, void *dgate, void *dup, const void *dout,
                           const void *gate, const void *up, size_t n, dpo_dtype_t dt) {
    NEED_F32(swiglu_bwd, dt);
    swiglu_bwd_f32(dgate, dup, dout, gate, up, n);
}
static void cpu_gather_rows(const dpo_backend_t *be, void *dst, const void *src,
                            const int32_t *rows, int n, int C, dpo_dtype_t dt) {
    NEED_F32(gather_rows, dt);
    gather_rows_f32(dst, src, rows, n, C);
}
static void cpu_scatter_add_rows(const dpo_backend_t *be, void *dst, const void *src,
                                 const int32_t *rows, int n, int C, dpo_dtype_t dt) {
    NEED_F32(scatter_add_rows, dt);
    scatter_add_rows_f32(dst, src, rows, n, C);
}
static void cpu_logprob_stats(const dpo_backend_t *be, float *row_max, float *row_sumexp,
                              float *target_logit, const void *logits, const int32_t *targets,
                              int n, int V, int vstart, int vocab_valid, dpo_dtype_t dt) {
    NEED_F32(logprob_stats, dt);
    logprob_stats_f32(row_max, row_sumexp, target_logit, logits, targets, n, V, vstart,
                      vocab_valid);
}
static void cpu_logprob_bwd(const dpo_backend_t *be, void *logits, const int32_t *targets,
                            const float *lse, const float *dlogp, int n, int V, int vstart,
                            int vocab_valid, dpo_dtype_t dt) {
    NEED_F32(logprob_bwd, dt);
    logprob_bwd_f32(logits, targets, lse, dlogp, n, V, vstart, vocab_valid);
}

// ----------------------------------------------------------------- table ----

// The CPU backend has no per-instance state (OpenMP and OpenBLAS keep their own
// thread pools), so one instance serves every caller.
static const dpo_backend_ops_t g_cpu_ops = {
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

static const dpo_backend_t g_cpu = {.ops = &g_cpu_ops, .ctx = NULL};

const dpo_backend_t *backend_cpu(void) { return &g_cpu; }

// Sets both the OpenMP team size and OpenBLAS's own (pthread) pool, so a rank
// uses the same number of cores in sgemm and in the element-wise ops.
void backend_cpu_set_threads(int n) {
    if (n <= 0) return;
    omp_set_num_threads(n);
#ifdef DPO_HAVE_OPENBLAS_THREADS
    openblas_set_num_threads(n);
#endif
}
