// backend_profile.c — a backend whose every op times the inner backend's op
// (include/dpo/backend_profile.h).
#include "dpo/backend_profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    OP_ALLOC, OP_FREE, OP_TO_DEVICE, OP_TO_HOST, OP_COPY, OP_ZERO, OP_SYNCHRONIZE, OP_MATMUL,
    OP_ADD_INPLACE, OP_SCALE_INPLACE, OP_SUMSQ, OP_BIAS_ADD, OP_BIAS_GRAD, OP_EMBEDDING_FWD,
    OP_EMBEDDING_BWD, OP_RMSNORM_FWD, OP_RMSNORM_BWD, OP_ROPE_FWD, OP_ROPE_BWD, OP_ATTENTION_FWD,
    OP_ATTENTION_BWD, OP_ATTENTION_CACHED, OP_SWIGLU_FWD, OP_SWIGLU_BWD, OP_GATHER_ROWS,
    OP_SCATTER_ADD_ROWS, OP_LOGPROB_STATS, OP_LOGPROB_BWD, OP_ADAMW, OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "alloc", "free", "to_device", "to_host", "copy", "zero", "synchronize", "matmul",
    "add_inplace", "scale_inplace", "sumsq", "bias_add", "bias_grad", "embedding_fwd",
    "embedding_bwd", "rmsnorm_fwd", "rmsnorm_bwd", "rope_fwd", "rope_bwd", "attention_fwd",
    "attention_bwd", "attention_cached", "swiglu_fwd", "swiglu_bwd", "gather_rows",
    "scatter_add_rows", "logprob_stats", "logprob_bwd", "adamw"};

typedef struct {
    long long calls;
    double sec;
    double flops;
} op_stat_t;

static const dpo_backend_t *g_inner;
static dpo_backend_t g_prof;
static op_stat_t g_stat[OP_COUNT];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double begin(void) {
    g_inner->synchronize();
    return now();
}

static void end(int op, double t0) {
    g_inner->synchronize();
    g_stat[op].sec += now() - t0;
    g_stat[op].calls++;
}

// Wrappers: time the inner op. T(op, call) for void ops.
#define T(op, call)          \
    do {                     \
        double t0_ = begin(); \
        call;                \
        end(op, t0_);        \
    } while (0)

static void *p_alloc(size_t bytes) {
    double t0 = begin();
    void *p = g_inner->alloc(bytes);
    end(OP_ALLOC, t0);
    return p;
}
static void p_free(void *p) { T(OP_FREE, g_inner->free(p)); }
static void p_to_device(void *d, const void *s, size_t n) {
    T(OP_TO_DEVICE, g_inner->to_device(d, s, n));
}
static void p_to_host(void *d, const void *s, size_t n) {
    T(OP_TO_HOST, g_inner->to_host(d, s, n));
}
static void p_copy(void *d, const void *s, size_t n) { T(OP_COPY, g_inner->copy(d, s, n)); }
static void p_zero(void *p, size_t n) { T(OP_ZERO, g_inner->zero(p, n)); }
static void p_synchronize(void) {
    double t0 = now();
    g_inner->synchronize();
    g_stat[OP_SYNCHRONIZE].sec += now() - t0;
    g_stat[OP_SYNCHRONIZE].calls++;
}

static void p_matmul(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    T(OP_MATMUL, g_inner->matmul(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc));
    g_stat[OP_MATMUL].flops += 2.0 * M * N * K;
}

static void p_add_inplace(float *y, const float *x, size_t n) {
    T(OP_ADD_INPLACE, g_inner->add_inplace(y, x, n));
}
static void p_scale_inplace(float *x, float s, size_t n) {
    T(OP_SCALE_INPLACE, g_inner->scale_inplace(x, s, n));
}
static double p_sumsq(const float *x, size_t n) {
    double t0 = begin();
    double r = g_inner->sumsq(x, n);
    end(OP_SUMSQ, t0);
    return r;
}
static void p_bias_add(float *y, const float *b, int T_, int N) {
    T(OP_BIAS_ADD, g_inner->bias_add(y, b, T_, N));
}
static void p_bias_grad(float *db, const float *dy, int T_, int N) {
    T(OP_BIAS_GRAD, g_inner->bias_grad(db, dy, T_, N));
}

static void p_embedding_fwd(float *out, const int32_t *tok, const float *table, int T_, int C,
                            int vstart, int V) {
    T(OP_EMBEDDING_FWD, g_inner->embedding_fwd(out, tok, table, T_, C, vstart, V));
}
static void p_embedding_bwd(float *dtable, const int32_t *tok, const float *dout, int T_, int C,
                            int vstart, int V) {
    T(OP_EMBEDDING_BWD, g_inner->embedding_bwd(dtable, tok, dout, T_, C, vstart, V));
}

static void p_rmsnorm_fwd(float *out, float *rstd, const float *x, const float *w, int N, int C,
                          float eps) {
    T(OP_RMSNORM_FWD, g_inner->rmsnorm_fwd(out, rstd, x, w, N, C, eps));
}
static void p_rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          const float *rstd, int N, int C) {
    T(OP_RMSNORM_BWD, g_inner->rmsnorm_bwd(dx, dw, dout, x, w, rstd, N, C));
}

static void p_rope_fwd(float *x, const int32_t *pos, int T_, int H, int D, float theta) {
    T(OP_ROPE_FWD, g_inner->rope_fwd(x, pos, T_, H, D, theta));
}
static void p_rope_bwd(float *dx, const int32_t *pos, int T_, int H, int D, float theta) {
    T(OP_ROPE_BWD, g_inner->rope_bwd(dx, pos, T_, H, D, theta));
}

static void p_attention_fwd(float *out, float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu, int nseq, int T_, int H, int Hkv, int D) {
    T(OP_ATTENTION_FWD, g_inner->attention_fwd(out, lse, q, k, v, cu, nseq, T_, H, Hkv, D));
}
static void p_attention_bwd(float *dq, float *dk, float *dv, const float *dout, const float *out,
                            const float *lse, const float *q, const float *k, const float *v,
                            const int32_t *cu, int nseq, int T_, int H, int Hkv, int D) {
    T(OP_ATTENTION_BWD,
      g_inner->attention_bwd(dq, dk, dv, dout, out, lse, q, k, v, cu, nseq, T_, H, Hkv, D));
}
static void p_attention_cached(float *out, const float *q, const float *k, const float *v, int n,
                               int past, int H, int Hkv, int D) {
    T(OP_ATTENTION_CACHED, g_inner->attention_cached(out, q, k, v, n, past, H, Hkv, D));
}

static void p_swiglu_fwd(float *out, const float *gate, const float *up, size_t n) {
    T(OP_SWIGLU_FWD, g_inner->swiglu_fwd(out, gate, up, n));
}
static void p_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate,
                         const float *up, size_t n) {
    T(OP_SWIGLU_BWD, g_inner->swiglu_bwd(dgate, dup, dout, gate, up, n));
}

static void p_gather_rows(float *dst, const float *src, const int32_t *rows, int n, int C) {
    T(OP_GATHER_ROWS, g_inner->gather_rows(dst, src, rows, n, C));
}
static void p_scatter_add_rows(float *dst, const float *src, const int32_t *rows, int n, int C) {
    T(OP_SCATTER_ADD_ROWS, g_inner->scatter_add_rows(dst, src, rows, n, C));
}

static void p_logprob_stats(float *mx, float *se, float *tl, const float *logits,
                            const int32_t *targets, int n, int V, int vstart, int vocab_valid) {
    T(OP_LOGPROB_STATS,
      g_inner->logprob_stats(mx, se, tl, logits, targets, n, V, vstart, vocab_valid));
}
static void p_logprob_bwd(float *logits, const int32_t *targets, const float *lse,
                          const float *dlogp, int n, int V, int vstart, int vocab_valid) {
    T(OP_LOGPROB_BWD, g_inner->logprob_bwd(logits, targets, lse, dlogp, n, V, vstart, vocab_valid));
}

static void p_adamw(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                    float beta1, float beta2, float eps, float wd, float bc1, float bc2) {
    T(OP_ADAMW, g_inner->adamw(param, grad, m, v, n, lr, beta1, beta2, eps, wd, bc1, bc2));
}

const dpo_backend_t *backend_profile_wrap(const dpo_backend_t *inner) {
    if (!inner || inner == &g_prof) return inner;
    g_inner = inner;
    // Start from the inner table, so that an op this file does not know yet still
    // works (untimed); ops the inner backend lacks stay NULL.
    g_prof = *inner;
#define W(field) if (inner->field) g_prof.field = p_##field
    W(alloc); W(free); W(to_device); W(to_host); W(copy); W(zero); W(synchronize); W(matmul);
    W(add_inplace); W(scale_inplace); W(sumsq); W(bias_add); W(bias_grad); W(embedding_fwd);
    W(embedding_bwd); W(rmsnorm_fwd); W(rmsnorm_bwd); W(rope_fwd); W(rope_bwd);
    W(attention_fwd); W(attention_bwd); W(attention_cached); W(swiglu_fwd); W(swiglu_bwd);
    W(gather_rows); W(scatter_add_rows); W(logprob_stats); W(logprob_bwd); W(adamw);
#undef W
    backend_profile_reset();
    return &g_prof;
}

bool backend_profile_enabled(void) {
    const char *e = getenv("DPO_PROFILE_OPS");
    return e && e[0] && strcmp(e, "0") != 0;
}

void backend_profile_reset(void) { memset(g_stat, 0, sizeof g_stat); }

double backend_profile_seconds(const char *op, long long *calls) {
    for (int i = 0; i < OP_COUNT; i++)
        if (strcmp(op, op_names[i]) == 0) {
            if (calls) *calls = g_stat[i].calls;
            return g_stat[i].sec;
        }
    if (calls) *calls = 0;
    return 0.0;
}

double backend_profile_total(void) {
    double s = 0.0;
    for (int i = 0; i < OP_COUNT; i++) s += g_stat[i].sec;
    return s;
}

static int by_time_desc(const void *a, const void *b) {
    double ta = g_stat[*(const int *)a].sec, tb = g_stat[*(const int *)b].sec;
    return (ta < tb) - (ta > tb);
}

void backend_profile_report(FILE *f) {
    int order[OP_COUNT];
    for (int i = 0; i < OP_COUNT; i++) order[i] = i;
    qsort(order, OP_COUNT, sizeof order[0], by_time_desc);
    double total = backend_profile_total();
    fprintf(f, "op profile (%s backend; every op synchronised):\n",
            g_inner ? g_inner->name : "no");
    fprintf(f, "  %-18s %10s %11s %7s %12s %9s\n", "op", "calls", "seconds", "share", "us/call",
            "GFLOP/s");
    for (int k = 0; k < OP_COUNT; k++) {
        const op_stat_t *s = &g_stat[order[k]];
        if (s->calls == 0) continue;
        fprintf(f, "  %-18s %10lld %11.4f %6.1f%% %12.1f", op_names[order[k]], s->calls, s->sec,
                total > 0 ? 100.0 * s->sec / total : 0.0, 1e6 * s->sec / (double)s->calls);
        if (order[k] == OP_MATMUL && s->sec > 0)
            fprintf(f, " %9.2f", s->flops / s->sec / 1e9);
        fputc('\n', f);
    }
    fprintf(f, "  %-18s %10s %11.4f %6.1f%%\n", "total", "", total, 100.0);
}
