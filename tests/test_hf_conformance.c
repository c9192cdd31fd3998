// test_hf_conformance.c — our model and loss family against Hugging Face transformers.
//
//   test_hf_conformance DATA_DIR   (on N ranks: tensor_parallel_size N)
//
// DATA_DIR (tests/data/hf) holds one folder per model family, written by
// tests/fixtures/gen_hf_fixtures.py: the policy (config.json + model.safetensors), the
// reference in reference/, and expected.json with transformers' float64 values for a
// fixed batch of preference pairs. For each family the models are built from
// hf_read_config + hf_load_model and compared on:
//
//   per-token log-probs of every completion token, policy and reference (each token
//     scored as the last completion token of its own prefix sequence, so the packed
//     forward gives it alone):   |ours - hf| <= 1e-4 |hf| + 1e-6
//   log-prob sums of the packed batch:                          1e-4 relative
//   every loss case (sigmoid, cDPO, IPO, hinge, robust): per-pair loss, mean loss and
//     every metric of dpo_loss_stats_t (accuracy exactly):      1e-4 relative + 1e-5
//     (the absolute part covers the fp32 rounding of sums of ~50, ~1e-5, times dL/dsum)
//   gradients of the mean sigmoid loss w.r.t. the listed tensors (this rank's slab):
//     each element within GRAD_RTOL of max(|g|, GRAD_FLOOR * max|g| of the tensor)
//
// Measured worst relative differences (TP 1, 2 and 4; Llama GQA, Qwen2 bias + tied,
// Qwen3 QK-norm): token log-probs 1.0e-6, sums 2.2e-7, losses 4.6e-5 (a pair loss of
// 0.04), metrics 1.5e-5, gradients 9.0e-5.
// Changing rope_theta in a config.json alone fails 127 checks.
//
// Our model runs in fp32, the reference in float64 (but for transformers' RoPE tables,
// fp32 in any dtype: ~1e-7), so the differences are our
// rounding. Rank 0 prints the worst relative difference per quantity and family.
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/comm.h"
#include "dpo/backend.h"
#include "dpo/batch.h"
#include "dpo/config.h"
#include "dpo/error.h"
#include "dpo/hf_model.h"
#include "dpo/loss.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "testutil.h"

#define LP_RTOL 1e-4
#define LP_ATOL 1e-6
#define LOSS_RTOL 1e-4
#define LOSS_ATOL 1e-5
// Gradient elements: relative to the larger of |g| and GRAD_FLOOR * max|g| of the
// tensor (elements near zero carry the tensor's absolute rounding noise).
#define GRAD_RTOL 1e-3
#define GRAD_FLOOR 1e-2
#define MAX_SEQ 16
#define MAX_LEN 64

typedef struct {
    int n_seq;
    int len[MAX_SEQ], start[MAX_SEQ];
    int32_t ids[MAX_SEQ][MAX_LEN];
} seqs_t;

static int g_rank;

static json_t *get(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    if (!v) dpo_fatal("expected.json: missing key \"%s\"", key);
    return v;
}

static double rel(double a, double b, double floor) {
    double d = fabs(b) > floor ? fabs(b) : floor;
    return d > 0 ? fabs(a - b) / d : fabs(a - b);
}

static void worst(double *w, double v) {
    if (v > *w) *w = v;
}

static void read_seqs(json_t *exp, seqs_t *s) {
    json_t *pairs = get(exp, "pairs");
    s->n_seq = 0;
    for (size_t i = 0; i < json_array_size(pairs); i++) {
        json_t *p = json_array_get(pairs, i);
        const char *keys[2] = {"chosen", "rejected"};
        for (int k = 0; k < 2; k++) {
            json_t *ids = get(p, keys[k]);
            int n = s->n_seq++;
            if (n >= MAX_SEQ || json_array_size(ids) > MAX_LEN) dpo_fatal("fixture batch too big");
            s->len[n] = (int)json_array_size(ids);
            s->start[n] = (int)json_integer_value(get(p, "prompt_len"));
            for (int t = 0; t < s->len[n]; t++)
                s->ids[n][t] = (int32_t)json_integer_value(json_array_get(ids, (size_t)t));
        }
    }
}

// The batch of the pairs themselves.
static void pair_batch(const seqs_t *s, dpo_batch_t *b) {
    int tokens = 0;
    for (int i = 0; i < s->n_seq; i++) tokens += s->len[i];
    batch_alloc(b, s->n_seq / 2, tokens);
    batch_clear(b);
    for (int i = 0; i < s->n_seq; i++)
        if (batch_add_sequence(b, s->ids[i], s->len[i], s->start[i]) != 0) dpo_fatal("batch full");
    batch_finalize(b);
}

// One sequence per completion token: its prefix, with that token alone as completion.
// Sequence k of the batch scores completion token k of the flattened list (an odd
// count gets a copy of the last one as padding).
static int prefix_batch(const seqs_t *s, dpo_batch_t *b) {
    int n = 0, tokens = 0;
    for (int i = 0; i < s->n_seq; i++)
        for (int t = s->start[i]; t < s->len[i]; t++) {
            n++;
            tokens += t + 1;
        }
    int last_len = s->len[s->n_seq - 1];
    batch_alloc(b, (n + 1) / 2, tokens + last_len);
    batch_clear(b);
    for (int i = 0; i < s->n_seq; i++)
        for (int t = s->start[i]; t < s->len[i]; t++)
            if (batch_add_sequence(b, s->ids[i], t + 1, t) != 0) dpo_fatal("prefix batch full");
    if (n % 2) batch_add_sequence(b, s->ids[s->n_seq - 1], last_len, last_len - 1);
    batch_finalize(b);
    return n;
}

static dpo_loss_type_t loss_type_of(const char *name) {
    for (int t = 0; t < DPO_LOSS_TYPE_COUNT; t++)
        if (strcmp(loss_type_name((dpo_loss_type_t)t), name) == 0) return (dpo_loss_type_t)t;
    dpo_fatal("expected.json: unknown loss type %s", name);
}

static dpo_loss_params_t loss_cfg(json_t *c) {
    dpo_loss_params_t cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.beta = (float)json_number_value(get(c, "beta"));
    cfg.label_smoothing = (float)json_number_value(get(c, "label_smoothing"));
    cfg.preference_loss_weight = 1.0f;
    cfg.n_loss_types = 1;
    cfg.loss_type[0] = loss_type_of(json_string_value(get(c, "type")));
    cfg.loss_weights[0] = 1.0f;
    return cfg;
}

// Worst differences of one family on this rank.
typedef struct {
    double tok, sums, loss, metrics, grad;
} diffs_t;

static void check_token_logps(dpo_model_t *m, const seqs_t *s, json_t *expected,
                              const char *what, double *w) {
    dpo_batch_t b;
    int n = prefix_batch(s, &b);
    double *lp = xmalloc((size_t)b.n_seq * sizeof(double), "token log-probs");
    model_forward(m, &b, lp, false);
    json_t *tl = get(expected, "token_logps");
    int k = 0;
    for (int i = 0; i < s->n_seq; i++) {
        json_t *row = json_array_get(tl, (size_t)i);
        CHECK((int)json_array_size(row) == s->len[i] - s->start[i]);
        for (int t = 0; t < s->len[i] - s->start[i]; t++, k++) {
            double hf = json_number_value(json_array_get(row, (size_t)t));
            worst(w, rel(lp[k], hf, 0));
            if (!test_close(lp[k], hf, LP_RTOL, LP_ATOL))
                test_fail(__FILE__, __LINE__, "%s: log-prob of completion token %d of sequence %d: "
                          "%.9g vs transformers %.9g", what, t, i, lp[k], hf);
        }
    }
    CHECK(k == n);
    free(lp);
    batch_free(&b);
}

static void check_sums(const double *ours, json_t *expected, int n_seq, const char *what,
                       double *w) {
    json_t *sums = get(expected, "sums");
    for (int i = 0; i < n_seq; i++) {
        double hf = json_number_value(json_array_get(sums, (size_t)i));
        worst(w, rel(ours[i], hf, 0));
        if (!test_close(ours[i], hf, LP_RTOL, LP_ATOL))
            test_fail(__FILE__, __LINE__, "%s: log-prob sum of sequence %d: %.9g vs transformers "
                      "%.9g", what, i, ours[i], hf);
    }
}

// Loss values and metrics of one case; fills dseq with d(mean loss)/d(sum) per
// sequence.
static void check_loss_case(json_t *c, const dpo_batch_t *b, const double *pol,
                            const double *ref, double *dseq, const char *fam, diffs_t *d) {
    dpo_loss_params_t cfg = loss_cfg(c);
    const char *name = json_string_value(get(c, "name"));
    dpo_loss_stats_t st;
    loss_stats_zero(&st);
    json_t *pl = get(c, "pair_losses");
    int np = b->n_pairs;
    for (int i = 0; i < np; i++) {
        dpo_pair_logps_t p = {.policy_chosen = pol[2 * i], .policy_rejected = pol[2 * i + 1],
                              .ref_chosen = ref[2 * i], .ref_rejected = ref[2 * i + 1],
                              .n_chosen = b->n_completion[2 * i],
                              .n_rejected = b->n_completion[2 * i + 1]};
        double dc, dr;
        double L = loss_pair(&cfg, &p, &dc, &dr, &st);
        dseq[2 * i] = dc / np;
        dseq[2 * i + 1] = dr / np;
        double hf = json_number_value(json_array_get(pl, (size_t)i));
        worst(&d->loss, rel(L, hf, 0));
        if (!test_close(L, hf, LOSS_RTOL, LOSS_ATOL))
            test_fail(__FILE__, __LINE__, "%s %s: loss of pair %d: %.9g vs transformers %.9g", fam,
                      name, i, L, hf);
    }
    CHECK(st.pairs == np);
    double mean = st.loss / st.pairs, hf = json_number_value(get(c, "loss"));
    worst(&d->loss, rel(mean, hf, 0));
    if (!test_close(mean, hf, LOSS_RTOL, LOSS_ATOL))
        test_fail(__FILE__, __LINE__, "%s %s: mean loss %.9g vs transformers %.9g", fam, name, mean,
                  hf);
    CHECK_CLOSE(st.preference_loss, st.loss, 1e-12, 1e-12);
    json_t *m = get(c, "metrics");
    const struct {
        const char *key;
        double value;
    } mt[] = {{"rewards_chosen", st.rewards_chosen}, {"rewards_rejected", st.rewards_rejected},
              {"margins", st.margins},               {"accuracy", st.accuracy},
              {"logps_chosen", st.logps_chosen},     {"logps_rejected", st.logps_rejected}};
    for (size_t k = 0; k < sizeof mt / sizeof mt[0]; k++) {
        double ours = mt[k].value / st.pairs, ref_v = json_number_value(get(m, mt[k].key));
        if (strcmp(mt[k].key, "accuracy") == 0) {
            if (ours != ref_v)
                test_fail(__FILE__, __LINE__, "%s %s: accuracy %g vs transformers %g", fam, name,
                          ours, ref_v);
            continue;
        }
        worst(&d->metrics, rel(ours, ref_v, 0));
        if (!test_close(ours, ref_v, LOSS_RTOL, LOSS_ATOL))
            test_fail(__FILE__, __LINE__, "%s %s: metric %s %.9g vs transformers %.9g", fam, name,
                      mt[k].key, ours, ref_v);
    }
}

// This rank's slab of each listed tensor against the full-shape expected gradient.
static void check_grads(const dpo_model_t *m, json_t *grads, const char *fam, double *w) {
    json_t *tensors = get(grads, "tensors");
    const char *tname;
    json_t *g;
    json_object_foreach(tensors, tname, g) {
        int ti = layout_find(&m->layout, tname);
        if (ti < 0) {
            test_fail(__FILE__, __LINE__, "%s: no tensor %s in our layout", fam, tname);
            continue;
        }
        const dpo_tensor_t *t = &m->layout.tensors[ti];
        json_t *vals = get(g, "values"), *rows = json_object_get(g, "rows");
        int64_t n_rows = (int64_t)json_array_size(vals);
        int64_t cols = t->ndim == 1 ? 1 : t->shape[1];
        if (!rows) CHECK(n_rows == t->shape[0]);
        // Expected values at full shape (rows listed, or all), as a dense lookup.
        double gmax = 0;
        for (int64_t r = 0; r < n_rows; r++) {
            json_t *row = json_array_get(vals, (size_t)r);
            for (int64_t c = 0; c < cols; c++) {
                double v = t->ndim == 1 ? json_number_value(row)
                                        : json_number_value(json_array_get(row, (size_t)c));
                if (fabs(v) > gmax) gmax = fabs(v);
            }
        }
        int bad = 0;
        for (int64_t r = 0; r < n_rows && !bad; r++) {
            int64_t gr = rows ? (int64_t)json_integer_value(json_array_get(rows, (size_t)r)) : r;
            int64_t lr = gr - t->local_start[0];
            if (lr < 0 || lr >= t->local_shape[0]) continue;  // another rank's rows
            json_t *row = json_array_get(vals, (size_t)r);
            for (int64_t lc = 0; lc < t->local_shape[1]; lc++) {
                int64_t gc = lc + t->local_start[1];
                double hf = t->ndim == 1 ? json_number_value(row)
                                         : json_number_value(json_array_get(row, (size_t)gc));
                double ours = m->grads[t->offset + (size_t)(lr * t->local_shape[1] + lc)];
                double dv = rel(ours, hf, GRAD_FLOOR * gmax);
                worst(w, dv);
                if (dv > GRAD_RTOL) {
                    test_fail(__FILE__, __LINE__, "%s: gradient of %s (%lld,%lld): %.9g vs "
                              "transformers %.9g", fam, tname, (long long)gr, (long long)gc, ours, hf);
                    bad = 1;
                    break;
                }
            }
        }
    }
}

static void check_family(const char *root, const char *fam, const dpo_mesh_t *mesh) {
    char dir[1024], ref_dir[1100], path[1200], err[512];
    snprintf(dir, sizeof dir, "%s/%s", root, fam);
    snprintf(ref_dir, sizeof ref_dir, "%s/reference", dir);
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_error_t jerr;
    json_t *exp = json_load_file(path, 0, &jerr);
    if (!exp) dpo_fatal("%s:%d: %s", path, jerr.line, jerr.text);

    seqs_t s;
    read_seqs(exp, &s);
    dpo_model_config_t mc, mc_ref;
    if (hf_read_config(dir, &mc, err, sizeof err) != 0 ||
        hf_read_config(ref_dir, &mc_ref, err, sizeof err) != 0)
        dpo_fatal("%s", err);
    CHECK(memcmp(&mc, &mc_ref, sizeof mc) == 0);
    int max_tokens = 0;
    for (int i = 0; i < s.n_seq; i++)
        for (int t = s.start[i]; t <= s.len[i]; t++) max_tokens += t;  // >= prefix batch
    dpo_model_t pol, ref;
    // Chunk of 7 rows: the log-prob chunking is exercised too.
    if (model_init(&pol, backend_cpu(), mesh, &mc, true, max_tokens, 7, err, sizeof err) != 0 ||
        model_init(&ref, backend_cpu(), mesh, &mc, false, max_tokens, 7, err, sizeof err) != 0)
        dpo_fatal("%s: %s", fam, err);
    if (hf_load_model(dir, &pol, err, sizeof err) != 0 ||
        hf_load_model(ref_dir, &ref, err, sizeof err) != 0)
        dpo_fatal("%s: %s", fam, err);

    diffs_t d = {0};
    json_t *e_pol = get(exp, "policy"), *e_ref = get(exp, "reference");
    char what[160];
    snprintf(what, sizeof what, "%s policy", fam);
    check_token_logps(&pol, &s, e_pol, what, &d.tok);
    snprintf(what, sizeof what, "%s reference", fam);
    check_token_logps(&ref, &s, e_ref, what, &d.tok);

    dpo_batch_t b;
    pair_batch(&s, &b);
    double lp_pol[MAX_SEQ], lp_ref[MAX_SEQ], dseq[MAX_SEQ], dseq_grad[MAX_SEQ];
    model_forward(&ref, &b, lp_ref, false);
    model_forward(&pol, &b, lp_pol, true);
    check_sums(lp_pol, e_pol, s.n_seq, fam, &d.sums);
    check_sums(lp_ref, e_ref, s.n_seq, fam, &d.sums);

    json_t *grads = get(exp, "grads");
    const char *grad_case = json_string_value(get(grads, "case"));
    json_t *losses = get(exp, "losses");
    for (size_t k = 0; k < json_array_size(losses); k++) {
        json_t *c = json_array_get(losses, k);
        check_loss_case(c, &b, lp_pol, lp_ref, dseq, fam, &d);
        if (strcmp(json_string_value(get(c, "name")), grad_case) == 0)
            memcpy(dseq_grad, dseq, sizeof dseq);
    }
    model_zero_grads(&pol);
    model_backward(&pol, &b, dseq_grad);
    check_grads(&pol, grads, fam, &d.grad);

    double all[5] = {d.tok, d.sums, d.loss, d.metrics, d.grad};
    MPI_Allreduce(MPI_IN_PLACE, all, 5, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (g_rank == 0)
        printf("  %-18s TP=%d worst relative difference: token log-probs %.2e, sums %.2e, "
               "losses %.2e, metrics %.2e, gradients %.2e\n",
               fam, mesh->tp_size, all[0], all[1], all[2], all[3], all[4]);
    batch_free(&b);
    model_free(&pol);
    model_free(&ref);
    json_decref(exp);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int world;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    comm_errors_init();
    if (argc < 2) dpo_fatal("usage: test_hf_conformance DATA_DIR");
    const char *root = argv[1];
    dpo_mesh_t mesh;
    mesh_init(&mesh, world);

    DIR *dp = opendir(root);
    if (!dp) dpo_fatal("cannot open %s", root);
    char *names[64];
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) && n < 64) {
        if (de->d_name[0] == '.') continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s/expected.json", root, de->d_name);
        FILE *f = fopen(p, "r");
        if (!f) continue;
        fclose(f);
        names[n] = xmalloc(strlen(de->d_name) + 1, "family name");
        strcpy(names[n++], de->d_name);
    }
    closedir(dp);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    CHECK(n >= 3);  // llama_gqa, qwen2_bias_tied, qwen3_qknorm
    for (int i = 0; i < n; i++) {
        check_family(root, names[i], &mesh);
        free(names[i]);
    }
    mesh_free(&mesh);
    char name[48];
    snprintf(name, sizeof name, "test_hf_conformance (TP=%d)", world);
    int rc = test_finish(name);
    MPI_Finalize();
    return rc;
}
