// test_generate.c — KV-cached generation (src/model/generate.c, model_forward_cached):
//   1. the logits each incremental step picks from equal those of one forward over
//      the whole prompt + generated sequence (1e-5 relative), and the log-probs of
//      the generated tokens equal model_forward's (the training forward);
//   2. greedy continuations equal transformers' generate token for token
//      (tests/data/hf/<name>/generate.json, tests/fixtures/gen_generate_fixtures.py);
//   3. temperature / top-k / top-p sampling: reproducible from a seed, and only
//      tokens inside the nucleus are drawn.
// Runs at any TP size (ctest: 1 and 2 ranks); the prefill runs in pieces (a model
// sized for 3 tokens) to exercise the cache across calls.
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/backend.h"
#include "dpo/batch.h"
#include "dpo/comm.h"
#include "dpo/error.h"
#include "dpo/generate.h"
#include "dpo/hf_model.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "testutil.h"

static int g_rank;
static double g_max_rel_logit, g_max_rel_logp;

static json_t *get(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    if (!v) dpo_fatal("generate.json: missing %s", k);
    return v;
}

static int read_ids(json_t *a, int32_t *out, int cap) {
    size_t i;
    json_t *v;
    int n = 0;
    json_array_foreach(a, i, v) {
        if (n < cap) out[n++] = (int32_t)json_integer_value(v);
    }
    return n;
}

// Full-vocabulary logits of every position of seq, from one cached forward.
static void full_logits(dpo_model_t *m, const int32_t *seq, int n, float *out) {
    const dpo_layout_t *lay = &m->layout;
    int Vl = lay->vocab_local, Vp = lay->vocab_padded, V = lay->cfg.vocab_size;
    char err[256];
    dpo_kv_cache_t c;
    if (kv_cache_init(&c, m, n, err, sizeof err) != 0) dpo_fatal("%s", err);
    float *slab = xmalloc((size_t)n * Vl * sizeof(float), "slab");
    float *row = xmalloc((size_t)Vp * sizeof(float), "row");
    model_forward_cached(m, &c, seq, n, n, slab);
    for (int r = 0; r < n; r++) {
        comm_allgather_f32(m->mesh, DPO_GROUP_TP, slab + (size_t)r * Vl, row, (size_t)Vl);
        memcpy(out + (size_t)r * V, row, (size_t)V * sizeof(float));
    }
    free(slab);
    free(row);
    kv_cache_free(&c);
}

static void check_family(const char *root, const char *fam, const dpo_mesh_t *mesh) {
    char dir[1024], path[1200], err[512];
    snprintf(dir, sizeof dir, "%s/%s", root, fam);
    snprintf(path, sizeof path, "%s/generate.json", dir);
    json_error_t jerr;
    json_t *ref = json_load_file(path, 0, &jerr);
    if (!ref) dpo_fatal("%s:%d: %s", path, jerr.line, jerr.text);
    dpo_model_config_t mc;
    if (hf_read_config(dir, &mc, err, sizeof err) != 0) dpo_fatal("%s", err);
    dpo_model_t small, big;
    if (model_init(&small, backend_cpu(), mesh, &mc, false, 3, 5, err, sizeof err) != 0 ||
        model_init(&big, backend_cpu(), mesh, &mc, false, 64, 5, err, sizeof err) != 0 ||
        hf_load_model(dir, &small, err, sizeof err) != 0 ||
        hf_load_model(dir, &big, err, sizeof err) != 0)
        dpo_fatal("%s: %s", fam, err);
    int max_new = (int)json_integer_value(get(ref, "max_new_tokens"));
    int V = mc.vocab_size;
    dpo_generator_t g;
    if (generator_init(&g, &small, 32 + max_new, err, sizeof err) != 0) dpo_fatal("%s", err);
    dpo_gen_params_t greedy = {.max_new_tokens = max_new, .temperature = 0.0f, .top_p = 1.0f};
    float *steps = xmalloc((size_t)max_new * V * sizeof(float), "step logits");
    float *full = xmalloc((size_t)(32 + max_new) * V * sizeof(float), "full logits");
    dpo_batch_t b;
    batch_alloc(&b, 1, 128);
    size_t ci;
    json_t *cs;
    json_array_foreach(get(ref, "cases"), ci, cs) {
        int32_t prompt[32], want[64], seq[96], out[64];
        int np = read_ids(get(cs, "prompt_ids"), prompt, 32);
        int nw = read_ids(get(cs, "generated_ids"), want, 64);
        dpo_rng_t rng;
        rng_seed(&rng, 1, 0);
        bool eos;
        int k = generate_sequence(&g, prompt, np, &greedy, &rng, out, &eos, steps);
        // 2. transformers' greedy ids.
        CHECK(k == nw && !eos);
        int mismatch = -1;
        for (int i = 0; i < k && i < nw; i++)
            if (out[i] != want[i] && mismatch < 0) mismatch = i;
        if (mismatch >= 0)
            test_fail(__FILE__, __LINE__, "%s case %zu: token %d is %d, transformers gives %d", fam,
                      ci, mismatch, out[mismatch], want[mismatch]);
        // 1. incremental logits vs one forward over prompt + generated.
        memcpy(seq, prompt, (size_t)np * sizeof(int32_t));
        memcpy(seq + np, out, (size_t)k * sizeof(int32_t));
        int n = np + k - 1;   // the last token is never fed back
        full_logits(&big, seq, n, full);
        double lp_sum = 0.0;
        for (int s = 0; s < k; s++) {
            const float *a = steps + (size_t)s * V, *f = full + (size_t)(np - 1 + s) * V;
            double scale = 0.0, mx = -INFINITY, se = 0.0;
            for (int j = 0; j < V; j++) scale = fmax(scale, fabs(f[j]));
            for (int j = 0; j < V; j++) {
                double rel = fabs((double)a[j] - f[j]) / scale;
                if (rel > g_max_rel_logit) g_max_rel_logit = rel;
                if (rel > 1e-5)
                    test_fail(__FILE__, __LINE__, "%s case %zu step %d id %d: %.9g vs %.9g", fam,
                              ci, s, j, a[j], f[j]);
                mx = fmax(mx, a[j]);
            }
            for (int j = 0; j < V; j++) se += exp((double)a[j] - mx);
            lp_sum += (double)a[seq[np + s]] - mx - log(se);
        }
        // ... and the training forward's log-probs of the generated tokens.
        batch_clear(&b);
        batch_add_sequence(&b, seq, np + k, np);
        batch_add_sequence(&b, seq, np + k, np);
        batch_finalize(&b);
        double lps[2];
        model_forward(&big, &b, lps, false);
        for (int s = 0; s < 2; s++) {
            double rel = fabs(lps[s] - lp_sum) / fabs(lp_sum);
            if (rel > g_max_rel_logp) g_max_rel_logp = rel;
            CHECK_CLOSE(lps[s], lp_sum, 1e-5, 0.0);
        }
        // 3b. sampling through the model: the same seed gives the same tokens, on
        // every TP rank.
        dpo_gen_params_t sp = {.max_new_tokens = max_new, .temperature = 1.5f, .top_p = 0.9f,
                               .top_k = 50};
        int32_t s1[64], s2[64];
        dpo_rng_t r1, r2;
        rng_seed(&r1, 42, ci);
        rng_seed(&r2, 42, ci);
        int k1 = generate_sequence(&g, prompt, np, &sp, &r1, s1, &eos, NULL);
        int k2 = generate_sequence(&g, prompt, np, &sp, &r2, s2, &eos, NULL);
        CHECK(k1 == k2 && memcmp(s1, s2, (size_t)k1 * sizeof(int32_t)) == 0);
        double sum = 0.0;
        for (int i = 0; i < k1; i++) sum = sum * 31.0 + s1[i];
        double lo = sum, hi = sum;
        comm_allreduce_f64(mesh, DPO_GROUP_TP, &hi, 1, DPO_REDUCE_MAX);
        lo = -lo;
        comm_allreduce_f64(mesh, DPO_GROUP_TP, &lo, 1, DPO_REDUCE_MAX);
        CHECK(hi == sum && -lo == sum);
    }
    batch_free(&b);
    free(steps);
    free(full);
    generator_free(&g);
    model_free(&small);
    model_free(&big);
    json_decref(ref);
}

// 3. gen_pick_token on a known distribution.
static void check_sampling(void) {
    const double p[6] = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
    float logits[6];
    for (int i = 0; i < 6; i++) logits[i] = (float)log(p[i]) + 3.0f;
    dpo_gen_params_t gp = {.max_new_tokens = 1, .temperature = 0.0f, .top_p = 1.0f};
    dpo_rng_t r;
    rng_seed(&r, 7, 0);
    CHECK(gen_pick_token(logits, 6, &gp, &r) == 0);
    // Nucleus 0.75: 0.4 + 0.25 = 0.65 < 0.75, + 0.15 = 0.8 -> tokens {0, 1, 2}.
    gp.temperature = 1.0f;
    gp.top_p = 0.75f;
    int count[6] = {0}, n = 20000;
    int32_t first[100];
    for (int i = 0; i < n; i++) {
        int32_t t = gen_pick_token(logits, 6, &gp, &r);
        CHECK(t >= 0 && t < 6);
        if (t >= 0 && t < 6) count[t]++;
        if (i < 100) first[i] = t;
    }
    CHECK(count[3] == 0 && count[4] == 0 && count[5] == 0);
    // Renormalised within the nucleus: 0.5, 0.3125, 0.1875.
    CHECK_CLOSE(count[0] / (double)n, 0.4 / 0.8, 0, 0.02);
    CHECK_CLOSE(count[1] / (double)n, 0.25 / 0.8, 0, 0.02);
    CHECK_CLOSE(count[2] / (double)n, 0.15 / 0.8, 0, 0.02);
    // Same seed, same draws.
    rng_seed(&r, 7, 0);
    (void)gen_pick_token(logits, 6, &(dpo_gen_params_t){.temperature = 0.0f, .top_p = 1.0f}, &r);
    int same = 1;
    for (int i = 0; i < 100; i++) same &= gen_pick_token(logits, 6, &gp, &r) == first[i];
    CHECK(same);
    // top_k 2 (no nucleus): only {0, 1}; a tiny nucleus: only the argmax.
    gp.top_p = 1.0f;
    gp.top_k = 2;
    for (int i = 0; i < 2000; i++) CHECK(gen_pick_token(logits, 6, &gp, &r) < 2);
    gp.top_k = 0;
    gp.top_p = 0.01f;
    for (int i = 0; i < 200; i++) CHECK(gen_pick_token(logits, 6, &gp, &r) == 0);
    // Full distribution at temperature 1: every token appears, frequencies match.
    gp.top_p = 1.0f;
    int all[6] = {0};
    for (int i = 0; i < n; i++) all[gen_pick_token(logits, 6, &gp, &r)]++;
    for (int i = 0; i < 6; i++) CHECK_CLOSE(all[i] / (double)n, p[i], 0, 0.02);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    comm_errors_init();
    if (argc < 2) dpo_fatal("usage: test_generate DATA_DIR");
    dpo_mesh_t mesh;
    mesh_init(&mesh, world);
    const char *fams[] = {"llama_gqa", "qwen2_bias_tied", "qwen3_qknorm"};
    for (int i = 0; i < 3; i++) check_family(argv[1], fams[i], &mesh);
    check_sampling();
    if (g_rank == 0)
        printf("tp %d: max relative logit difference (cached vs full) %.3g, max relative "
               "log-prob difference (vs model_forward) %.3g\n",
               world, g_max_rel_logit, g_max_rel_logp);
    mesh_free(&mesh);
    int rc = test_finish("test_generate");
    MPI_Finalize();
    return rc;
}
