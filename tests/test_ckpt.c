// test_ckpt.c — checkpoints: save and load bit for bit (parameters, AdamW moments,
// training state, model config), layout independence (with 2+ ranks: written at
// TP 2 and read at TP 1, and the reverse), tied embeddings, architecture
// mismatches, find_latest and prune.
//
// Runs at any number of ranks; at one rank the cross-layout part is skipped.
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpo/comm.h"
#include "dpo/backend.h"
#include "dpo/ckpt.h"
#include "dpo/config.h"
#include "dpo/error.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "dpo/optim.h"
#include "testutil.h"

static int g_rank, g_size;
static char g_prefix[64];
static dpo_config_t g_cfg;

static dpo_model_config_t arch(bool tied, int ffn) {
    // vocab 13: not a multiple of 2, so TP 2 pads the vocabulary shards
    dpo_model_config_t c = {
        .vocab_size = 13, .hidden_size = 16, .num_hidden_layers = 2, .num_attention_heads = 4,
        .num_key_value_heads = 2, .head_dim = 4, .intermediate_size = ffn, .rope_theta = 500.0f,
        .rms_norm_eps = 1e-5f, .attention_bias = true, .qk_norm = true,
        .tie_word_embeddings = tied, .initializer_range = 0.3f};
    return c;
}

static uint64_t mix(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}
// A value that depends only on (seed, tensor name, element of the full tensor), so
// every layout (TP and DP) describes the same logical tensors. Arbitrary bit
// patterns in the mantissa catch any conversion or rounding.
static float gval(uint64_t seed, const char *name, int64_t r, int64_t c, bool positive) {
    uint64_t h = mix(seed ^ name_hash(name) ^ mix((uint64_t)r * 1000003ull + (uint64_t)c));
    float x = (float)((double)(h >> 11) * 0x1.0p-53) * 2.0f - 1.0f;
    x *= 1.0f + (float)((h & 0x7ff) * 1e-4);
    return positive ? fabsf(x) + 1e-7f : x;
}

static void fill(const dpo_model_t *m, float *buf, uint64_t seed, bool positive) {
    for (int i = 0; i < m->layout.n_tensors; i++) {
        const dpo_tensor_t *t = &m->layout.tensors[i];
        for (int64_t r = 0; r < t->local_shape[0]; r++)
            for (int64_t c = 0; c < t->local_shape[1]; c++)
                buf[t->offset + (size_t)(r * t->local_shape[1] + c)] =
                    gval(seed, t->name, t->local_start[0] + r, t->local_start[1] + c, positive);
    }
}

// Bitwise comparison of every local element with fill(seed); returns mismatches.
static int64_t compare(const dpo_model_t *m, const float *buf, uint64_t seed, bool positive,
                       const char *what) {
    int64_t bad = 0;
    for (int i = 0; i < m->layout.n_tensors; i++) {
        const dpo_tensor_t *t = &m->layout.tensors[i];
        for (int64_t r = 0; r < t->local_shape[0]; r++)
            for (int64_t c = 0; c < t->local_shape[1]; c++) {
                float want = gval(seed, t->name, t->local_start[0] + r, t->local_start[1] + c, positive);
                float got = buf[t->offset + (size_t)(r * t->local_shape[1] + c)];
                if (memcmp(&want, &got, sizeof want) != 0 && bad++ < 3)
                    test_fail(__FILE__, __LINE__, "[rank %d] %s %s[%lld,%lld]: %.9g != %.9g",
                              g_rank, what, t->name, (long long)(t->local_start[0] + r),
                              (long long)(t->local_start[1] + c), got, want);
            }
    }
    return bad;
}

static void make_model(dpo_model_t *m, const dpo_mesh_t *mesh, dpo_model_config_t mc) {
    char err[512];
    if (model_init(m, backend_cpu(), mesh, &mc, true, 32, 8, err, sizeof err) != 0)
        dpo_fatal("model_init: %s", err);
}

static void dir_of(char *buf, size_t n, const char *name) {
    snprintf(buf, n, "%s.%s", g_prefix, name);
}

static void clean_dir(const char *dir) {
    if (g_rank == 0) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0) test_fail(__FILE__, __LINE__, "cannot clean %s", dir);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static dpo_train_state_t state_for(int64_t step, bool has_metric, double metric) {
    dpo_train_state_t st = {.step = step, .epoch = 3, .epoch_pos = 1234567,
                            .seed = 0xF00DCAFEDEADBEEFull, .metric = metric,
                            .has_metric = has_metric, .elapsed_sec = 98.765432101};
    return st;
}

// ---- save / load at one layout, bit for bit ----

static void test_roundtrip(int tp) {
    char dir[128], name[32], err[1024] = "";
    snprintf(name, sizeof name, "rt_tp%d", tp);
    dir_of(dir, sizeof dir, name);
    clean_dir(dir);
    dpo_mesh_t mesh;
    mesh_init(&mesh, tp);
    dpo_model_config_t mc = arch(false, 12);
    dpo_model_t a, b;
    make_model(&a, &mesh, mc);
    fill(&a, a.params, 1, false);
    dpo_optim_t oa, ob;
    optim_init(&oa, &a, 0);
    fill(&a, oa.m, 2, false);
    fill(&a, oa.v, 3, true);
    oa.t = 4242;
    dpo_train_state_t st = state_for(17, true, -0.123456789012345);
    int rc = ckpt_save(dir, &mesh, &a, &oa, &st, &g_cfg, err, sizeof err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "ckpt_save: %s\n", err);

    char path[256];
    snprintf(path, sizeof path, "%s/step_00000017.h5", dir);
    CHECK(file_exists(path));
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    CHECK(!file_exists(tmp));

    make_model(&b, &mesh, mc);
    optim_init(&ob, &b, 0);
    CHECK(ckpt_load_model(path, &b, err, sizeof err) == 0);
    CHECK(ckpt_load_optim(path, &b, &ob, err, sizeof err) == 0);
    CHECK(compare(&b, b.params, 1, false, "params") == 0);
    CHECK(compare(&b, ob.m, 2, false, "exp_avg") == 0);
    CHECK(compare(&b, ob.v, 3, true, "exp_avg_sq") == 0);
    CHECK(ob.t == 4242);

    dpo_train_state_t s2;
    CHECK(ckpt_load_state(path, &s2, err, sizeof err) == 0);
    CHECK(s2.step == st.step && s2.epoch == st.epoch && s2.epoch_pos == st.epoch_pos);
    CHECK(s2.seed == st.seed);
    CHECK(s2.has_metric && s2.metric == st.metric);
    CHECK(s2.elapsed_sec == st.elapsed_sec);

    dpo_model_config_t rc_mc;
    CHECK(ckpt_read_model_config(path, &rc_mc, err, sizeof err) == 0);
    CHECK(memcmp(&rc_mc, &mc, sizeof mc) == 0);

    // the run configuration travels as text
    if (g_rank == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        CHECK(f >= 0 && H5Aexists(f, "config") > 0);
        CHECK(H5Lexists(f, "/model/lm_head.weight", H5P_DEFAULT) > 0);
        H5Fclose(f);
    }

    // weights only: no optimizer group, and loading moments says so
    st.step = 18;
    CHECK(ckpt_save(dir, &mesh, &a, NULL, &st, NULL, err, sizeof err) == 0);
    snprintf(path, sizeof path, "%s/step_00000018.h5", dir);
    CHECK(ckpt_load_optim(path, &b, &ob, err, sizeof err) == -1);
    CHECK(strstr(err, "/optimizer") != NULL && strstr(err, "weights-only") != NULL);

    optim_free(&oa, &a);
    optim_free(&ob, &b);
    model_free(&a);
    model_free(&b);
    mesh_free(&mesh);
}

// ---- written at one TP size, read at another ----

static void test_cross_layout(int tp_save, int tp_load) {
    char dir[128], name[32], err[1024] = "";
    snprintf(name, sizeof name, "x_%d_%d", tp_save, tp_load);
    dir_of(dir, sizeof dir, name);
    clean_dir(dir);
    dpo_mesh_t ms, ml;
    mesh_init(&ms, tp_save);
    mesh_init(&ml, tp_load);
    for (int tied = 0; tied <= 1; tied++) {
        dpo_model_config_t mc = arch(tied, 12);
        dpo_model_t a, b;
        make_model(&a, &ms, mc);
        fill(&a, a.params, 10 + tied, false);
        dpo_optim_t oa, ob;
        optim_init(&oa, &a, 0);
        fill(&a, oa.m, 20, false);
        fill(&a, oa.v, 30, true);
        oa.t = 7;
        dpo_train_state_t st = state_for(100 + tied, false, 0);
        CHECK(ckpt_save(dir, &ms, &a, &oa, &st, &g_cfg, err, sizeof err) == 0);
        char path[256];
        snprintf(path, sizeof path, "%s/step_%08d.h5", dir, 100 + tied);
        make_model(&b, &ml, mc);
        optim_init(&ob, &b, 0);
        int r1 = ckpt_load_model(path, &b, err, sizeof err);
        CHECK(r1 == 0);
        if (r1) fprintf(stderr, "load: %s\n", err);
        CHECK(ckpt_load_optim(path, &b, &ob, err, sizeof err) == 0);
        CHECK(compare(&b, b.params, 10 + tied, false, "params") == 0);
        CHECK(compare(&b, ob.m, 20, false, "exp_avg") == 0);
        CHECK(compare(&b, ob.v, 30, true, "exp_avg_sq") == 0);
        CHECK(ob.t == 7);
        optim_free(&oa, &a);
        optim_free(&ob, &b);
        model_free(&a);
        model_free(&b);
    }
    mesh_free(&ms);
    mesh_free(&ml);
}

// ---- tied embeddings and architecture mismatches ----

static void expect_load_fails(const char *path, dpo_model_t *m, const char *want1,
                              const char *want2) {
    char err[1024] = "";
    int rc = ckpt_load_model(path, m, err, sizeof err);
    CHECK(rc == -1);
    bool ok = strstr(err, path) && strstr(err, want1) && (!want2 || strstr(err, want2));
    if (!ok)
        test_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\" / \"%s\"", err, want1,
                  want2 ? want2 : "");
    else if (g_rank == 0)
        printf("  refused as expected: %s\n", err);
}

static void test_mismatch(void) {
    char dir[128], err[1024] = "";
    dir_of(dir, sizeof dir, "mismatch");
    clean_dir(dir);
    dpo_mesh_t mesh;
    mesh_init(&mesh, 1);
    dpo_model_t tied, untied, narrow;
    make_model(&tied, &mesh, arch(true, 12));
    make_model(&untied, &mesh, arch(false, 12));
    make_model(&narrow, &mesh, arch(false, 8));
    fill(&tied, tied.params, 5, false);
    fill(&untied, untied.params, 6, false);
    dpo_train_state_t st = state_for(1, false, 0);
    CHECK(ckpt_save(dir, &mesh, &tied, NULL, &st, &g_cfg, err, sizeof err) == 0);
    st.step = 2;
    CHECK(ckpt_save(dir, &mesh, &untied, NULL, &st, &g_cfg, err, sizeof err) == 0);
    char p_tied[256], p_untied[256];
    snprintf(p_tied, sizeof p_tied, "%s/step_00000001.h5", dir);
    snprintf(p_untied, sizeof p_untied, "%s/step_00000002.h5", dir);
    if (g_rank == 0) {  // a tied model stores the embedding once
        hid_t f = H5Fopen(p_tied, H5F_ACC_RDONLY, H5P_DEFAULT);
        CHECK(H5Lexists(f, "/model/model.embed_tokens.weight", H5P_DEFAULT) > 0);
        CHECK(H5Lexists(f, "/model/lm_head.weight", H5P_DEFAULT) == 0);
        H5Fclose(f);
    }
    expect_load_fails(p_tied, &untied, "/model/lm_head.weight", "missing");
    expect_load_fails(p_untied, &tied, "/model/lm_head.weight", "does not have");
    expect_load_fails(p_untied, &narrow, "/model/model.layers.0.mlp.gate_proj.weight",
                      "stored shape (12, 16) but this model expects (8, 16)");
    // a file that is no checkpoint
    char junk[128];
    snprintf(junk, sizeof junk, "%s.not_a_checkpoint.h5", g_prefix);
    if (g_rank == 0) {
        FILE *f = fopen(junk, "w");
        fputs("nope\n", f);
        fclose(f);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    expect_load_fails(junk, &untied, "not an HDF5 file", NULL);
    dpo_model_config_t mc;
    CHECK(ckpt_read_model_config("test_ckpt.no_such_file.h5", &mc, err, sizeof err) == -1);
    CHECK(strstr(err, "No such file") != NULL);

    // a directory that cannot be created: every rank fails with the same message
    dpo_train_state_t s3 = state_for(3, false, 0);
    CHECK(ckpt_save("/proc/no/such/dir", &mesh, &untied, NULL, &s3, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "/proc/no") != NULL);

    model_free(&tied);
    model_free(&untied);
    model_free(&narrow);
    mesh_free(&mesh);
}

// ---- alignment: tensors of 1 MiB or more start on a 1 MiB boundary ----

static void test_alignment(void) {
    char dir[128], err[1024] = "";
    dir_of(dir, sizeof dir, "align");
    clean_dir(dir);
    dpo_mesh_t mesh;
    mesh_init(&mesh, g_size % 2 == 0 ? 2 : 1);
    dpo_model_config_t mc = arch(false, 12);
    mc.vocab_size = 16384;  // embedding and LM head: 16384 x 16 x 4 B = 1 MiB each
    dpo_model_t m;
    make_model(&m, &mesh, mc);
    fill(&m, m.params, 9, false);
    dpo_train_state_t st = state_for(1, false, 0);
    CHECK(ckpt_save(dir, &mesh, &m, NULL, &st, NULL, err, sizeof err) == 0);
    char path[256];
    snprintf(path, sizeof path, "%s/step_00000001.h5", dir);
    if (g_rank == 0) {
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        const char *big[2] = {"/model/model.embed_tokens.weight", "/model/lm_head.weight"};
        for (int i = 0; i < 2; i++) {
            hid_t d = H5Dopen2(f, big[i], H5P_DEFAULT);
            haddr_t off = H5Dget_offset(d);
            if (off == HADDR_UNDEF || off % (1u << 20) != 0)
                test_fail(__FILE__, __LINE__, "%s at offset %llu, not 1 MiB aligned", big[i],
                          (unsigned long long)off);
            H5Dclose(d);
        }
        H5Fclose(f);
        struct stat sb;
        stat(path, &sb);
        CHECK(sb.st_size <= 4 * (1 << 20) + 65536);  // 2 MiB of data, < 1 MiB padding each
    }
    dpo_model_t b;
    make_model(&b, &mesh, mc);
    CHECK(ckpt_load_model(path, &b, err, sizeof err) == 0);
    CHECK(compare(&b, b.params, 9, false, "params") == 0);
    model_free(&m);
    model_free(&b);
    mesh_free(&mesh);
}

// ---- find_latest and prune ----

static void save_steps(const char *dir, const dpo_mesh_t *mesh, dpo_model_t *m, const int *steps,
                       const double *metrics, const bool *has, int n) {
    char err[1024];
    for (int i = 0; i < n; i++) {
        dpo_train_state_t st = state_for(steps[i], has[i], metrics[i]);
        CHECK(ckpt_save(dir, mesh, m, NULL, &st, NULL, err, sizeof err) == 0);
    }
}

static void expect_steps(const char *dir, const int *want, int n_want) {
    for (int s = 0; s < 20; s++) {
        char p[256];
        snprintf(p, sizeof p, "%s/step_%08d.h5", dir, s);
        bool expected = false;
        for (int i = 0; i < n_want; i++) expected |= want[i] == s;
        if (file_exists(p) != expected)
            test_fail(__FILE__, __LINE__, "%s: step %d %s", dir, s,
                      expected ? "was deleted" : "was kept");
    }
}

static void test_latest_prune(void) {
    char dir[128];
    dpo_mesh_t mesh;
    mesh_init(&mesh, 1);
    dpo_model_t m;
    make_model(&m, &mesh, arch(true, 12));

    dir_of(dir, sizeof dir, "empty");
    clean_dir(dir);
    CHECK(ckpt_find_latest(dir) == NULL);  // missing directory

    // higher is better; the latest (12) is the worst but stays
    dir_of(dir, sizeof dir, "prune_hi");
    clean_dir(dir);
    int steps[5] = {1, 2, 3, 4, 12};
    double metric[5] = {0.5, 0.1, 0.9, 0.3, 0.05};
    bool has[5] = {true, true, true, false, true};
    save_steps(dir, &mesh, &m, steps, metric, has, 5);
    if (g_rank == 0) {
        char p[256];  // ignored: temporaries and other names
        snprintf(p, sizeof p, "%s/step_00000099.h5.tmp", dir);
        fclose(fopen(p, "w"));
        snprintf(p, sizeof p, "%s/step_x.h5", dir);
        fclose(fopen(p, "w"));
        char *latest = ckpt_find_latest(dir);
        snprintf(p, sizeof p, "%s/step_00000012.h5", dir);
        CHECK(latest && strcmp(latest, p) == 0);
        free(latest);
        ckpt_prune(dir, 2, true);
        int want[3] = {1, 3, 12};
        expect_steps(dir, want, 3);
        ckpt_prune(dir, 2, true);  // idempotent
        expect_steps(dir, want, 3);
    }
    MPI_Barrier(MPI_COMM_WORLD);

    // lower is better; the checkpoint without a metric counts as worst
    dir_of(dir, sizeof dir, "prune_lo");
    clean_dir(dir);
    save_steps(dir, &mesh, &m, steps, metric, has, 5);
    if (g_rank == 0) {
        ckpt_prune(dir, 1, false);
        int want[1] = {12};  // 12 is both the best (0.05) and the latest
        expect_steps(dir, want, 1);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    dir_of(dir, sizeof dir, "prune_lo2");
    clean_dir(dir);
    save_steps(dir, &mesh, &m, steps, metric, has, 4);  // steps 1..4, latest 4 has no metric
    if (g_rank == 0) {
        ckpt_prune(dir, 2, false);
        int want2[3] = {1, 2, 4};  // best two: 2 (0.1), 1 (0.5); 4 is the latest
        expect_steps(dir, want2, 3);
        ckpt_prune(dir, 0, false);  // 0 = keep all
        expect_steps(dir, want2, 3);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    model_free(&m);
    mesh_free(&mesh);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    comm_errors_init();
    snprintf(g_prefix, sizeof g_prefix, "test_ckpt.np%d", g_size);
    config_defaults(&g_cfg);

    test_roundtrip(1);
    if (g_size % 2 == 0) {
        test_roundtrip(2);
        test_cross_layout(2, 1);
        test_cross_layout(1, 2);
    }
    test_mismatch();
    test_alignment();
    test_latest_prune();

    int rc = test_finish("test_ckpt");
    MPI_Finalize();
    return rc;
}
