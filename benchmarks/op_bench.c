// op_bench.c — micro-benchmarks of the hot backend ops at the shapes of one model
// and sequence length, and an estimate of one training step's time per op class.
//
//   dpo_op_bench [--config FILE] [--hidden C] [--layers L] [--heads H] [--kv-heads K]
//                [--ffn F] [--vocab V] [--seq L] [--comp N] [--pairs P] [--accum A]
//                [--chunk N] [--threads N] [--reps R] [--backend cpu|cuda]
//
// --config reads a libconfig file (input/*.cfg) for the model, micro-batch, gradient
// accumulation (global / micro batch, one rank), log-prob chunk and threads; options
// after it override. A micro-batch is P pairs = 2P sequences of L tokens each, whose
// last N tokens are the completion (N scored rows per sequence). Every op is timed
// through backend_profile_wrap (synchronised per call). GFLOP/s is printed for the
// matmuls and for attention (causal FLOPs as in doc/performance.md). The step
// estimate assumes a live reference model (two forwards, one backward per
// micro-batch) and one rank.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/backend_cuda.h"
#include "dpo/backend_profile.h"
#include "dpo/config.h"
#include "dpo/program.h"

typedef struct {
    int C, L, H, Hkv, F, V, seq, comp, pairs, accum, chunk, threads, reps;
    const char *backend;
} opts_t;

static dpo_backend_t *be;   // the profiler around the backend under test
static int reps;

static void usage(void) {
    fprintf(stderr,
            "usage: dpo_op_bench [--config FILE] [--hidden C] [--layers L] [--heads H]\n"
            "       [--kv-heads K] [--ffn F] [--vocab V] [--seq L] [--comp N] [--pairs P]\n"
            "       [--accum A] [--chunk N] [--threads N] [--reps R] [--backend cpu|cuda]\n"
            "       dpo_op_bench --version\n");
    exit(2);
}

static float *dbuf(size_t n, float scale, unsigned seed) {
    float *h = malloc(n * sizeof(float));
    if (!h) { fprintf(stderr, "dpo_op_bench: out of memory\n"); exit(1); }
    srand(seed);
    for (size_t i = 0; i < n; i++) h[i] = scale * ((float)rand() / (float)RAND_MAX - 0.5f);
    float *d = dpo_alloc(be, n * sizeof(float));
    dpo_to_device(be, d, h, n * sizeof(float));
    free(h);
    return d;
}

static int32_t *ibuf(const int32_t *h, size_t n) {
    int32_t *d = dpo_alloc(be, n * sizeof(int32_t));
    dpo_to_device(be, d, h, n * sizeof(int32_t));
    return d;
}

// Runs `body` twice untimed, then reps times; sets `var` to the seconds per call of
// backend op `op` (as the profiling wrapper measured them).
#define TIME_OP(var, op, body)                                  \
    do {                                                        \
        for (int w_ = 0; w_ < 2; w_++) { body; }                \
        backend_profile_reset(be);                              \
        for (int r_ = 0; r_ < reps; r_++) { body; }             \
        long long c_;                                           \
        double s_ = backend_profile_seconds(be, op, &c_);       \
        var = c_ > 0 ? s_ / (double)c_ : 0.0;                   \
    } while (0)

typedef struct {
    const char *cls;   // op class of the step estimate
    char name[64];
    double sec;        // per call
    double calls;      // per micro-batch (per step for the optimizer)
    double flops;      // per call (matmul)
} row_t;

static row_t rows[64];
static int nrows;

static void add(const char *cls, const char *name, double sec, double calls, double flops) {
    row_t *r = &rows[nrows++];
    r->cls = cls;
    snprintf(r->name, sizeof r->name, "%s", name);
    r->sec = sec;
    r->calls = calls;
    r->flops = flops;
}

// One linear layer y (T,N) = x (T,K) W^T: forward (fwd_calls per micro-batch),
// dx = dy W and dW += dy^T x (bwd_calls each).
static void bench_linear(const char *cls, const char *what, int T, int N, int K, double fwd_calls,
                         double bwd_calls) {
    float *x = dbuf((size_t)T * K, 1.0f, 1), *w = dbuf((size_t)N * K, 0.1f, 2);
    float *y = dbuf((size_t)T * N, 1.0f, 3), *dw = dbuf((size_t)N * K, 0.0f, 4);
    double fl = 2.0 * T * N * K;
    char name[64];
    double s;
    TIME_OP(s, "matmul", dpo_matmul(be, false, true, T, N, K, 1.0f, x, DPO_F32, K, w, DPO_F32, K, 0.0f, y, DPO_F32, N));
    snprintf(name, sizeof name, "%s fwd %dx%dx%d", what, T, N, K);
    add(cls, name, s, fwd_calls, fl);
    TIME_OP(s, "matmul", dpo_matmul(be, false, false, T, K, N, 1.0f, y, DPO_F32, N, w, DPO_F32, K, 0.0f, x, DPO_F32, K));
    snprintf(name, sizeof name, "%s dx  %dx%dx%d", what, T, K, N);
    add(cls, name, s, bwd_calls, fl);
    TIME_OP(s, "matmul", dpo_matmul(be, true, false, N, K, T, 1.0f, y, DPO_F32, N, x, DPO_F32, K, 1.0f, dw, DPO_F32, K));
    snprintf(name, sizeof name, "%s dW  %dx%dx%d", what, N, K, T);
    add(cls, name, s, bwd_calls, fl);
    dpo_free(be, x); dpo_free(be, w); dpo_free(be, y); dpo_free(be, dw);
}

static int parse_int(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < 0 || v > 1 << 30) usage();
    return (int)v;
}

static void from_config(opts_t *o, const char *path) {
    dpo_config_t cfg;
    char err[1024];
    if (config_load(&cfg, path, 0, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "dpo_op_bench: %s\n", err);
        exit(1);
    }
    const dpo_model_config_t *m = &cfg.model;
    o->C = m->hidden_size; o->L = m->num_hidden_layers; o->H = m->num_attention_heads;
    o->Hkv = m->num_key_value_heads; o->F = m->intermediate_size; o->V = m->vocab_size;
    o->seq = cfg.max_total_sequence_length;
    o->pairs = cfg.train_micro_batch_size;
    o->accum = cfg.train_global_batch_size / cfg.train_micro_batch_size;
    o->chunk = cfg.logprob_chunk_size;
    o->threads = cfg.num_threads;
    o->backend = cfg.backend == DPO_BACKEND_CUDA ? "cuda" : "cpu";
    if (m->head_dim && m->head_dim * m->num_attention_heads != m->hidden_size)
        fprintf(stderr, "dpo_op_bench: note: head_dim %d != hidden/heads; benchmarking "
                        "hidden/heads\n",
                m->head_dim);
}

int main(int argc, char **argv) {
    // Defaults: model "small" of benchmarks/harness.cfg, 128-token sequences.
    opts_t o = {.C = 128, .L = 4, .H = 4, .Hkv = 2, .F = 384, .V = 258, .seq = 128, .comp = 0,
                .pairs = 8, .accum = 1, .chunk = 256, .threads = 0, .reps = 20, .backend = "cpu"};
    dpo_program_set("dpo_op_bench");
    if (argc > 1 && dpo_version_option(argv[1], true)) return 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--config")) from_config(&o, v);
        else if (!strcmp(a, "--hidden")) o.C = parse_int(v);
        else if (!strcmp(a, "--layers")) o.L = parse_int(v);
        else if (!strcmp(a, "--heads")) o.H = parse_int(v);
        else if (!strcmp(a, "--kv-heads")) o.Hkv = parse_int(v);
        else if (!strcmp(a, "--ffn")) o.F = parse_int(v);
        else if (!strcmp(a, "--vocab")) o.V = parse_int(v);
        else if (!strcmp(a, "--seq")) o.seq = parse_int(v);
        else if (!strcmp(a, "--comp")) o.comp = parse_int(v);
        else if (!strcmp(a, "--pairs")) o.pairs = parse_int(v);
        else if (!strcmp(a, "--accum")) o.accum = parse_int(v);
        else if (!strcmp(a, "--chunk")) o.chunk = parse_int(v);
        else if (!strcmp(a, "--threads")) o.threads = parse_int(v);
        else if (!strcmp(a, "--reps")) o.reps = parse_int(v);
        else if (!strcmp(a, "--backend")) o.backend = v;
        else usage();
    }
    if (o.comp == 0) o.comp = o.seq / 4 > 2 ? o.seq / 4 : 2;
    if (!o.H || !o.Hkv || o.C % o.H || o.H % o.Hkv || !o.pairs || !o.accum || !o.chunk ||
        !o.reps || o.comp >= o.seq || !o.L || !o.F || !o.V) {
        fprintf(stderr, "dpo_op_bench: inconsistent shape (heads must divide hidden, kv-heads "
                        "heads; comp < seq; all sizes > 0)\n");
        return 2;
    }
    reps = o.reps;

    const dpo_backend_t *inner = NULL;
    if (!strcmp(o.backend, "cpu")) {
        backend_cpu_set_threads(o.threads);
        inner = backend_cpu();
    } else if (!strcmp(o.backend, "cuda")) {
        char err[256] = "";
        inner = backend_cuda_open(0, DPO_MATMUL_BF16, err, sizeof err);
        if (!inner) {
            fprintf(stderr, "dpo_op_bench: cuda: %s\n", err);
            return 1;
        }
    } else {
        usage();
    }
    be = backend_profile_wrap(inner);

    const int C = o.C, H = o.H, Hkv = o.Hkv, D = C / H, F = o.F, V = o.V, Ls = o.L;
    const int nseq = 2 * o.pairs, T = nseq * o.seq, S = nseq * o.comp;
    const int n = S < o.chunk ? S : o.chunk;   // rows of one log-prob chunk
    const double chunks = (double)S / n;        // chunks per micro-batch (last one partial)
    printf("dpo_op_bench: backend %s, threads %d (0 = default); model hidden %d, layers %d, "
           "heads %d/%d (head_dim %d), ffn %d, vocab %d\n",
           inner->ops->name, o.threads, C, Ls, H, Hkv, D, F, V);
    printf("micro-batch: %d pairs x 2 x %d tokens = %d tokens, %d scored rows (%d per "
           "sequence), log-prob chunk %d; %d micro-batch(es) per step; %d reps per op\n\n",
           o.pairs, o.seq, T, S, o.comp, o.chunk, o.accum, o.reps);

    // ---- matmuls: the layer's projections, then the LM head per chunk ----
    // Per micro-batch: policy + reference forward, policy backward.
    bench_linear("matmul (layers)", "q_proj   ", T, H * D, C, 2.0 * Ls, Ls);
    bench_linear("matmul (layers)", "k/v_proj ", T, Hkv * D, C, 4.0 * Ls, 2.0 * Ls);
    bench_linear("matmul (layers)", "o_proj   ", T, C, H * D, 2.0 * Ls, Ls);
    bench_linear("matmul (layers)", "gate/up  ", T, F, C, 4.0 * Ls, 2.0 * Ls);
    bench_linear("matmul (layers)", "down_proj", T, C, F, 2.0 * Ls, Ls);
    // LM head: forward for policy and reference, recomputed once in the backward.
    bench_linear("matmul (lm_head)", "lm_head  ", n, V, C, 3.0 * chunks, chunks);

    // ---- attention ----
    int32_t *cu_h = malloc((size_t)(nseq + 1) * sizeof(int32_t));
    int32_t *pos_h = malloc((size_t)T * sizeof(int32_t));
    int32_t *tok_h = malloc((size_t)T * sizeof(int32_t));
    for (int s = 0; s <= nseq; s++) cu_h[s] = s * o.seq;
    for (int t = 0; t < T; t++) {
        pos_h[t] = t % o.seq;
        tok_h[t] = (int32_t)(((unsigned)t * 2654435761u) % (unsigned)V);
    }
    int32_t *cu = ibuf(cu_h, (size_t)nseq + 1), *pos = ibuf(pos_h, T), *tok = ibuf(tok_h, T);
    float *q = dbuf((size_t)T * H * D, 1.0f, 5), *k = dbuf((size_t)T * Hkv * D, 1.0f, 6);
    float *v = dbuf((size_t)T * Hkv * D, 1.0f, 7), *out = dbuf((size_t)T * H * D, 0.0f, 8);
    float *lse = dbuf((size_t)H * T, 0.0f, 9), *dout = dbuf((size_t)T * H * D, 1.0f, 10);
    float *dq = dbuf((size_t)T * H * D, 0.0f, 11), *dk = dbuf((size_t)T * Hkv * D, 0.0f, 12);
    float *dv = dbuf((size_t)T * Hkv * D, 0.0f, 13);
    double s;
    TIME_OP(s, "attention_fwd", dpo_attention_fwd(be, out, lse, q, k, v, cu, nseq, T, H, Hkv, D, DPO_F32));
    // Causal attention FLOPs as doc/performance.md counts them: forward 2·H·D·ΣL²
    // (QKᵀ and PV, halved by the mask), backward twice that.
    double att_fl = 2.0 * H * D * (double)nseq * o.seq * o.seq;
    add("attention", "attention_fwd", s, 2.0 * Ls, att_fl);
    TIME_OP(s, "attention_bwd",
              dpo_attention_bwd(be, dq, dk, dv, dout, out, lse, q, k, v, cu, nseq, T, H, Hkv, D, DPO_F32));
    add("attention", "attention_bwd", s, Ls, 2.0 * att_fl);
    TIME_OP(s, "rope_fwd", dpo_rope_fwd(be, q, pos, T, H, D, 10000.0f, DPO_F32));
    add("rope", "rope_fwd q", s, 2.0 * Ls, 0);
    TIME_OP(s, "rope_fwd", dpo_rope_fwd(be, k, pos, T, Hkv, D, 10000.0f, DPO_F32));
    add("rope", "rope_fwd k", s, 2.0 * Ls, 0);
    TIME_OP(s, "rope_bwd", dpo_rope_bwd(be, dq, pos, T, H, D, 10000.0f, DPO_F32));
    add("rope", "rope_bwd q", s, Ls, 0);
    TIME_OP(s, "rope_bwd", dpo_rope_bwd(be, dk, pos, T, Hkv, D, 10000.0f, DPO_F32));
    add("rope", "rope_bwd k", s, Ls, 0);

    // ---- norms, MLP activation, residual stream, embedding ----
    float *x = dbuf((size_t)T * C, 1.0f, 14), *y = dbuf((size_t)T * C, 0.0f, 15);
    float *w = dbuf((size_t)C, 1.0f, 16), *dw = dbuf((size_t)C, 0.0f, 17);
    float *rstd = dbuf((size_t)T, 0.0f, 18), *dx = dbuf((size_t)T * C, 0.0f, 19);
    TIME_OP(s, "rmsnorm_fwd", dpo_rmsnorm_fwd(be, y, rstd, x, w, T, C, 1e-5f, DPO_F32));
    add("rmsnorm", "rmsnorm_fwd", s, 2.0 * (2 * Ls + 1), 0);
    TIME_OP(s, "rmsnorm_bwd", dpo_rmsnorm_bwd(be, dx, dw, y, x, w, rstd, T, C, DPO_F32));
    add("rmsnorm", "rmsnorm_bwd", s, 2 * Ls + 1, 0);
    TIME_OP(s, "add_inplace", dpo_add_inplace(be, y, x, (size_t)T * C, DPO_F32));
    add("residual (add, copy)", "add_inplace", s, 6.0 * Ls, 0);
    TIME_OP(s, "copy", dpo_copy(be, y, x, (size_t)T * C * sizeof(float)));
    add("residual (add, copy)", "copy", s, 4.0 * Ls + 2, 0);
    float *table = dbuf((size_t)V * C, 0.1f, 20), *dtable = dbuf((size_t)V * C, 0.0f, 21);
    TIME_OP(s, "embedding_fwd", dpo_embedding_fwd(be, y, tok, table, T, C, 0, V, DPO_F32));
    add("embedding", "embedding_fwd", s, 2.0, 0);
    TIME_OP(s, "embedding_bwd", dpo_embedding_bwd(be, dtable, tok, y, T, C, 0, V, DPO_F32));
    add("embedding", "embedding_bwd", s, 1.0, 0);

    float *g = dbuf((size_t)T * F, 1.0f, 23), *u = dbuf((size_t)T * F, 1.0f, 24);
    float *h = dbuf((size_t)T * F, 0.0f, 25), *dg = dbuf((size_t)T * F, 0.0f, 26);
    float *du = dbuf((size_t)T * F, 0.0f, 27);
    TIME_OP(s, "swiglu_fwd", dpo_swiglu_fwd(be, h, g, u, (size_t)T * F, DPO_F32));
    add("swiglu", "swiglu_fwd", s, 2.0 * Ls, 0);
    TIME_OP(s, "swiglu_bwd", dpo_swiglu_bwd(be, dg, du, h, g, u, (size_t)T * F, DPO_F32));
    add("swiglu", "swiglu_bwd", s, Ls, 0);

    // ---- log-probs of one chunk ----
    float *logits = dbuf((size_t)n * V, 4.0f, 28), *st = dbuf(3 * (size_t)n, 0.0f, 29);
    float *lse_c = dbuf((size_t)n, 0.0f, 30), *dlp = dbuf((size_t)n, 1.0f, 31);
    float *st_h = malloc(3 * (size_t)n * sizeof(float));
    TIME_OP(s, "logprob_stats", dpo_logprob_stats(be, st, st + n, st + 2 * n, logits, tok, n, V, 0, V, DPO_F32));
    add("logprob", "logprob_stats", s, 2.0 * chunks, 0);
    dpo_to_host(be, st_h, st, 3 * (size_t)n * sizeof(float));
    for (int i = 0; i < n; i++) st_h[i] = st_h[i] + logf(st_h[n + i]);
    dpo_to_device(be, lse_c, st_h, (size_t)n * sizeof(float));
    TIME_OP(s, "logprob_bwd", dpo_logprob_bwd(be, logits, tok, lse_c, dlp, n, V, 0, V, DPO_F32));
    add("logprob", "logprob_bwd", s, chunks, 0);

    // ---- optimizer, once per step, over every parameter in one call ----
    size_t np = (size_t)V * C * 2 + (size_t)C +
                (size_t)Ls * (2 * (size_t)C + 2 * (size_t)C * C + 2 * (size_t)C * Hkv * D +
                              3 * (size_t)C * F);
    float *pp = dbuf(np, 0.1f, 32), *pg = dbuf(np, 0.01f, 33), *pm = dbuf(np, 0.0f, 34);
    float *pv = dbuf(np, 0.0f, 35);
    TIME_OP(s, "adamw",
            dpo_adamw(be, pp, pg, pm, pv, np, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.01f, 0.1f, 0.001f));
    add("optimizer", "adamw (all params)", s, 1.0 / o.accum, 0);
    volatile double sink = 0;
    TIME_OP(s, "sumsq", sink += dpo_sumsq(be, pg, np));
    add("optimizer", "sumsq (grad norm)", s, 1.0 / o.accum, 0);
    TIME_OP(s, "scale_inplace", dpo_scale_inplace(be, pg, 1.0f, np, DPO_F32));
    add("optimizer", "scale (clipping)", s, 1.0 / o.accum, 0);
    (void)sink;

    // ---- report ----
    printf("%-32s %12s %9s %10s %12s\n", "op (shape M x N x K)", "us/call", "GFLOP/s", "calls/step",
           "ms/step");
    double total = 0.0;
    for (int i = 0; i < nrows; i++) total += rows[i].sec * rows[i].calls * o.accum;
    for (int i = 0; i < nrows; i++) {
        const row_t *r = &rows[i];
        printf("%-32s %12.1f ", r->name, 1e6 * r->sec);
        if (r->flops > 0) printf("%9.2f ", r->flops / r->sec / 1e9);
        else printf("%9s ", "");
        printf("%10.1f %12.3f\n", r->calls * o.accum, 1e3 * r->sec * r->calls * o.accum);
    }
    printf("\nestimated step (%d tokens, live reference): %.1f ms = %.0f tokens/s\n", T * o.accum,
           1e3 * total, total > 0 ? T * o.accum / total : 0.0);
    printf("%-24s %10s %7s\n", "op class", "ms/step", "share");
    const char *seen[16];
    int nseen = 0;
    double mm = 0.0;
    for (int i = 0; i < nrows; i++) {
        int dup = 0;
        for (int j = 0; j < nseen; j++) dup |= !strcmp(seen[j], rows[i].cls);
        if (dup) continue;
        seen[nseen++] = rows[i].cls;
        double c = 0.0;
        for (int j = 0; j < nrows; j++)
            if (!strcmp(rows[j].cls, rows[i].cls)) c += rows[j].sec * rows[j].calls * o.accum;
        if (!strncmp(rows[i].cls, "matmul", 6)) mm += c;
        printf("%-24s %10.3f %6.1f%%\n", rows[i].cls, 1e3 * c, 100.0 * c / total);
    }
    printf("matmul share of the estimated step: %.1f%%\n", 100.0 * mm / total);
    return 0;
}
