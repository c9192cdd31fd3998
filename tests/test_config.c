// test_config.c — the configuration: defaults, every key from a file, overrides,
// write/read round trip, each class of error (message names the key and line),
// doc/config.md covering every key, and (with --bcast / --bcast-fail, at 2 ranks)
// config_load_bcast.
//
#include <libconfig.h>

#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpo/config.h"
#include "testutil.h"

#ifndef DPO_SOURCE_DIR
#define DPO_SOURCE_DIR "."
#endif

// ---------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------

static char g_tmpdir[256];
static int g_nfiles = 0;

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", g_tmpdir, name);
}

// Writes `text` to a fresh file in the scratch directory; returns its path (static
// ring of buffers, enough for the few paths alive at once).
static const char *write_cfg(const char *text) {
    static char paths[8][512];
    char *p = paths[g_nfiles % 8];
    char name[64];
    snprintf(name, sizeof name, "t%03d.cfg", g_nfiles++);
    tmp_path(p, 512, name);
    FILE *f = fopen(p, "w");
    if (!f) {
        fprintf(stderr, "cannot write %s\n", p);
        exit(1);
    }
    fputs(text, f);
    fclose(f);
    return p;
}

static int load_text(dpo_config_t *cfg, const char *text, int n_ov, const char **ov, char *err,
                     size_t err_len) {
    const char *path = text ? write_cfg(text) : NULL;
    return config_load(cfg, path, n_ov, (char **)ov, err, err_len);
}

#define MINIMAL "data = { dataset_path = \"pairs.h5\"; };\n"

// Loading must fail and the message must contain every needle (NULL-terminated).
static void expect_error_at(const char *file, int line, const char *text, int n_ov,
                            const char **ov, ...) {
    dpo_config_t cfg;
    char err[1024];
    err[0] = '\0';
    int rc = load_text(&cfg, text, n_ov, ov, err, sizeof err);
    if (rc != -1) {
        test_fail(file, line, "expected an error, got rc %d", rc);
        return;
    }
    va_list ap;
    va_start(ap, ov);
    for (const char *needle; (needle = va_arg(ap, const char *)) != NULL;)
        if (!strstr(err, needle))
            test_fail(file, line, "error message \"%s\" lacks \"%s\"", err, needle);
    va_end(ap);
    if (getenv("TEST_CONFIG_VERBOSE")) printf("  error: %s\n", err);
}
#define EXPECT_ERROR(text, n_ov, ov, ...) \
    expect_error_at(__FILE__, __LINE__, text, n_ov, ov, __VA_ARGS__, (const char *)NULL)

// Leaf paths ("policy.model.hidden_size") of a libconfig document.
typedef struct {
    int n;
    char path[256][128];
} pathset_t;

static void collect(const config_setting_t *g, const char *prefix, pathset_t *ps) {
    for (int i = 0; i < config_setting_length(g); i++) {
        const config_setting_t *s = config_setting_get_elem(g, i);
        char p[128];
        snprintf(p, sizeof p, "%s%s%s", prefix, *prefix ? "." : "", config_setting_name(s));
        if (config_setting_is_group(s))
            collect(s, p, ps);
        else if (ps->n < 256)
            snprintf(ps->path[ps->n++], sizeof ps->path[0], "%s", p);
    }
}

static int paths_of_text(const char *text, pathset_t *ps) {
    config_t lc;
    config_init(&lc);
    ps->n = 0;
    if (!config_read_string(&lc, text)) {
        fprintf(stderr, "libconfig: line %d: %s\n", config_error_line(&lc), config_error_text(&lc));
        config_destroy(&lc);
        return -1;
    }
    collect(config_root_setting(&lc), "", ps);
    config_destroy(&lc);
    return 0;
}

static bool pathset_has(const pathset_t *ps, const char *p) {
    for (int i = 0; i < ps->n; i++)
        if (strcmp(ps->path[i], p) == 0) return true;
    return false;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) buf[n] = '\0';
    fclose(f);
    return buf;
}

// Every key of dpo_hpc, in a file that sets each to a non-default value.
static const char *ALL_KEYS =
    "# every key, none at its default\n"
    "policy = {\n"
    "  model_name = \"init.h5\";\n"
    "  model = {\n"
    "    vocab_size = 1000;\n"
    "    hidden_size = 96;\n"
    "    num_hidden_layers = 3;\n"
    "    num_attention_heads = 6;\n"
    "    num_key_value_heads = 3;\n"
    "    head_dim = 32;\n"
    "    intermediate_size = 256;\n"
    "    rope_theta = 500000;\n"  // an integer where a float is expected
    "    rms_norm_eps = 1e-6;\n"
    "    attention_bias = true;\n"
    "    qk_norm = true;\n"
    "    tie_word_embeddings = true;\n"
    "    initializer_range = 0.01;\n"
    "  };\n"
    "  generation = { max_new_tokens = 40; temperature = 0.7; top_p = 0.95; top_k = 20; };\n"
    "  train_global_batch_size = 64;\n"
    "  train_micro_batch_size = 8;\n"
    "  max_total_sequence_length = 1024;\n"
    "  logprob_chunk_size = 128;\n"
    "  max_grad_norm = 0.5;\n"
    "  tensor_parallel_size = 2;\n"
    "  zero_stage = 0;\n"
    "  activation_checkpointing = true;\n"
    "  optimizer = {\n"
    "    lr = 2e-5;\n"
    "    weight_decay = 0.01;\n"
    "    betas = [0.8, 0.95];\n"
    "    eps = 1e-6;\n"
    "  };\n"
    "  scheduler = { type = \"cosine\"; warmup_steps = 10; min_lr_ratio = 0.1; };\n"
    "};\n"
    "dpo = {\n"
    "  max_num_steps = 100;\n"
    "  max_num_epochs = 3;\n"
    "  val_period = 10;\n"
    "  val_at_start = false;\n"
    "  val_global_batch_size = 16;\n"
    "  val_micro_batch_size = 8;\n"
    "  val_max_pairs = 64;\n"
    "  reference_policy_kl_penalty = 0.05;\n"
    "  preference_loss_weight = 0.5;\n"
    "  sft_loss_weight = 0.2;\n"
    "  preference_average_log_probs = true;\n"
    "  sft_average_log_probs = true;\n"
    "  loss_type = (\"sigmoid\", \"ipo\", \"hinge\", \"robust\");\n"
    "  loss_weights = (1, 0.5, 0.25, 2.0);\n"
    "  label_smoothing = 0.1;\n"
    "  reference_free = false;\n"
    "  reference_model = \"ref.h5\";\n"
    "  precomputed_reference_logprobs = false;\n"
    "  seed = 1234567;\n"
    "  nonfinite_policy = \"skip\";\n"
    "  max_skipped_steps = 3;\n"
    "};\n"
    "data = { dataset_path = \"data/pairs.h5\"; shuffle = false; };\n"
    "checkpointing = {\n"
    "  enabled = true;\n"
    "  checkpoint_dir = \"ckpt\";\n"
    "  save_period = 5;\n"
    "  keep_top_k = 2;\n"
    "  metric_name = \"val:heldout/accuracy\";\n"
    "  higher_is_better = true;\n"
    "  resume = true;\n"
    "};\n"
    "logger = { log_dir = \"out/logs\"; };\n"
    "cluster = { backend = \"cpu\"; matmul_precision = \"tf32\"; num_threads = 4; };\n";

// ---------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------

static void test_defaults(void) {
    dpo_config_t d, c;
    char err[512];
    config_defaults(&d);
    CHECK(d.model.vocab_size == 258 && d.model.hidden_size == 64);
    CHECK(d.model.num_hidden_layers == 2 && d.model.num_attention_heads == 4);
    CHECK(d.model.num_key_value_heads == 2 && d.model.head_dim == 0);
    CHECK(d.model.intermediate_size == 176 && d.zero_stage == 1 && !d.activation_checkpointing);
    CHECK(d.train_global_batch_size == 32 && d.train_micro_batch_size == 4);
    CHECK(d.optim.lr == 5e-6f && d.optim.beta1 == 0.9f && d.optim.beta2 == 0.98f && d.optim.weight_decay == 0.1f);
    CHECK(d.loss.beta == 0.1f && d.loss.n_loss_types == 1 && d.loss.loss_type[0] == DPO_LOSS_SIGMOID);
    CHECK(d.loss.loss_weights[0] == 1.0f && d.seed == 42 && d.max_num_epochs == 1);
    CHECK(d.backend == DPO_BACKEND_CPU && strcmp(d.log_dir, "results") == 0);
    CHECK(d.matmul_precision == DPO_CFG_MATMUL_BF16);
    CHECK(strcmp(d.checkpoint_dir, "results/checkpoints") == 0 && d.save_period == 50);
    CHECK(d.shuffle && d.val_at_start && !d.ckpt_enabled);

    // the defaults lack only the dataset
    CHECK(config_validate(&d, err, sizeof err) == -1);
    CHECK(strstr(err, "data.dataset_path") != NULL);

    // a minimal file = defaults + the dataset + the derived head_dim
    CHECK(load_text(&c, MINIMAL, 0, NULL, err, sizeof err) == 0);
    strcpy(d.dataset_path, "pairs.h5");
    d.model.head_dim = 64 / 4;
    CHECK(memcmp(&c, &d, sizeof c) == 0);
    CHECK(config_validate(&c, err, sizeof err) == 0);

    // no file at all: defaults + overrides
    const char *ov[] = {"data.dataset_path=pairs.h5"};
    CHECK(config_load(&c, NULL, 1, (char **)ov, err, sizeof err) == 0);
    CHECK(memcmp(&c, &d, sizeof c) == 0);

    // an empty file is fine too (the dataset from an override)
    CHECK(load_text(&c, "# nothing\n", 1, ov, err, sizeof err) == 0);
    CHECK(memcmp(&c, &d, sizeof c) == 0);
}

static void check_all_keys(const dpo_config_t *c) {
    const dpo_model_config_t *m = &c->model;
    CHECK(strcmp(c->model_name, "init.h5") == 0);
    CHECK(m->vocab_size == 1000 && m->hidden_size == 96 && m->num_hidden_layers == 3);
    CHECK(m->num_attention_heads == 6 && m->num_key_value_heads == 3 && m->head_dim == 32);
    CHECK(m->intermediate_size == 256 && m->rope_theta == 500000.0f);
    CHECK(m->rms_norm_eps == 1e-6f && m->initializer_range == 0.01f);
    CHECK(m->attention_bias && m->qk_norm && m->tie_word_embeddings);
    CHECK(c->gen_max_new_tokens == 40 && c->gen_temperature == 0.7f && c->gen_top_p == 0.95f &&
          c->gen_top_k == 20);
    CHECK(c->train_global_batch_size == 64 && c->train_micro_batch_size == 8);
    CHECK(c->max_total_sequence_length == 1024 && c->logprob_chunk_size == 128);
    CHECK(c->optim.max_grad_norm == 0.5f && c->tensor_parallel_size == 2 && c->zero_stage == 0);
    CHECK(c->activation_checkpointing);
    CHECK(c->optim.lr == 2e-5f && c->optim.weight_decay == 0.01f && c->optim.adam_eps == 1e-6f);
    CHECK(c->optim.beta1 == 0.8f && c->optim.beta2 == 0.95f);
    CHECK(c->optim.sched_type == DPO_SCHED_COSINE && c->optim.warmup_steps == 10 && c->optim.min_lr_ratio == 0.1f);
    CHECK(c->max_num_steps == 100 && c->max_num_epochs == 3 && c->val_period == 10);
    CHECK(!c->val_at_start && c->val_global_batch_size == 16 && c->val_max_pairs == 64);
    CHECK(c->val_micro_batch_size == 8);
    CHECK(c->loss.beta == 0.05f && c->loss.preference_loss_weight == 0.5f && c->loss.sft_loss_weight == 0.2f);
    CHECK(c->loss.preference_average_log_probs && c->loss.sft_average_log_probs);
    CHECK(c->loss.n_loss_types == 4 && c->loss.loss_type[0] == DPO_LOSS_SIGMOID && c->loss.loss_type[1] == DPO_LOSS_IPO);
    CHECK(c->loss.loss_type[2] == DPO_LOSS_HINGE && c->loss.loss_type[3] == DPO_LOSS_ROBUST);
    CHECK(c->loss.loss_weights[0] == 1.0f && c->loss.loss_weights[1] == 0.5f);
    CHECK(c->loss.loss_weights[2] == 0.25f && c->loss.loss_weights[3] == 2.0f && c->loss.loss_weights[4] == 0.0f);
    CHECK(c->loss.label_smoothing == 0.1f && !c->loss.reference_free);
    CHECK(strcmp(c->reference_model, "ref.h5") == 0 && !c->precomputed_reference_logprobs);
    CHECK(c->seed == 1234567);
    CHECK(c->nonfinite_policy == DPO_NONFINITE_SKIP && c->max_skipped_steps == 3);
    CHECK(strcmp(c->dataset_path, "data/pairs.h5") == 0 && !c->shuffle);
    CHECK(c->ckpt_enabled && strcmp(c->checkpoint_dir, "ckpt") == 0 && c->save_period == 5);
    CHECK(c->keep_top_k == 2 && strcmp(c->metric_name, "val:heldout/accuracy") == 0);
    CHECK(c->higher_is_better && c->resume);
    CHECK(strcmp(c->log_dir, "out/logs") == 0);
    CHECK(c->backend == DPO_BACKEND_CPU && c->num_threads == 4);
    CHECK(c->matmul_precision == DPO_CFG_MATMUL_TF32);
}

static void test_every_key(void) {
    dpo_config_t c;
    char err[512];
    int rc = load_text(&c, ALL_KEYS, 0, NULL, err, sizeof err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    check_all_keys(&c);

    // the file above names every key that config_write_cfg writes, and nothing else
    dpo_config_t d;
    config_defaults(&d);
    char *s = config_to_string(&d);
    pathset_t *written = malloc(sizeof *written), *file = malloc(sizeof *file);
    CHECK(s && written && file);
    CHECK(paths_of_text(s, written) == 0);
    CHECK(paths_of_text(ALL_KEYS, file) == 0);
    CHECK(written->n == file->n);
    CHECK(written->n >= 55);
    for (int i = 0; i < written->n; i++)
        if (!pathset_has(file, written->path[i]))
            test_fail(__FILE__, __LINE__, "key %s is not in the all-keys file", written->path[i]);

    // keys the all-keys file cannot set to non-defaults together
    const char *ov1[] = {"dpo.reference_free=true"};
    CHECK(load_text(&c, MINIMAL, 1, ov1, err, sizeof err) == 0 && c.loss.reference_free);
    const char *ov2[] = {"dpo.precomputed_reference_logprobs=true"};
    CHECK(load_text(&c, MINIMAL, 1, ov2, err, sizeof err) == 0 && c.precomputed_reference_logprobs);
    const char *ov3[] = {"policy.scheduler.type=linear", "policy.model.head_dim=0"};
    CHECK(load_text(&c, MINIMAL, 2, ov3, err, sizeof err) == 0);
    CHECK(c.optim.sched_type == DPO_SCHED_LINEAR && c.model.head_dim == 16);
    free(s);
    free(written);
    free(file);
}

static void test_overrides(void) {
    dpo_config_t c;
    char err[512];
    int rc;
    // later wins; overrides beat the file; nested keys
    const char *ov[] = {
        "policy.optimizer.lr=1e-4",
        "policy.optimizer.lr = 2e-4",
        "policy.model.hidden_size=128",
        "policy.model.num_attention_heads=8",
        "dpo.val_at_start=False",
        "data.shuffle=TRUE",
        "dpo.sft_loss_weight=1",  // integer for a float
        "logger.log_dir=\"my dir/with \\\"quote\\\"\"",
        "checkpointing.checkpoint_dir='single quoted'",
        "data.dataset_path=override.h5",
        "dpo.loss_type=sigmoid,ipo",
        "dpo.loss_weights=[1.0, 0.5]",
        "policy.optimizer.betas=(0.85,0.9)",
        "dpo.seed=18446744073709551615",
        "policy.scheduler.type=\"cosine\"",
    };
    int n = (int)(sizeof ov / sizeof ov[0]);
    rc = load_text(&c, "policy = { optimizer = { lr = 1.0; }; model = { hidden_size = 32; }; };\n"
                       "data = { dataset_path = \"file.h5\"; shuffle = false; };\n",
                   n, ov, err, sizeof err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK(c.optim.lr == 2e-4f);
    CHECK(c.model.hidden_size == 128 && c.model.num_attention_heads == 8 && c.model.head_dim == 16);
    CHECK(!c.val_at_start && c.shuffle && c.loss.sft_loss_weight == 1.0f);
    CHECK(strcmp(c.log_dir, "my dir/with \"quote\"") == 0);
    CHECK(strcmp(c.checkpoint_dir, "single quoted") == 0);
    CHECK(strcmp(c.dataset_path, "override.h5") == 0);
    CHECK(c.loss.n_loss_types == 2 && c.loss.loss_type[0] == DPO_LOSS_SIGMOID && c.loss.loss_type[1] == DPO_LOSS_IPO);
    CHECK(c.loss.loss_weights[0] == 1.0f && c.loss.loss_weights[1] == 0.5f);
    CHECK(c.optim.beta1 == 0.85f && c.optim.beta2 == 0.9f);
    CHECK(c.seed == 18446744073709551615ULL);
    CHECK(c.optim.sched_type == DPO_SCHED_COSINE);

    // list forms of dpo.loss_type; weights default to 1 each
    const char *forms[] = {"dpo.loss_type=[\"hinge\",\"robust\"]", "dpo.loss_type=[hinge, robust]",
                           "dpo.loss_type=(\"hinge\", 'robust')", "dpo.loss_type= hinge , robust "};
    for (int i = 0; i < 4; i++) {
        CHECK(load_text(&c, MINIMAL, 1, &forms[i], err, sizeof err) == 0);
        CHECK(c.loss.n_loss_types == 2 && c.loss.loss_type[0] == DPO_LOSS_HINGE && c.loss.loss_type[1] == DPO_LOSS_ROBUST);
        CHECK(c.loss.loss_weights[0] == 1.0f && c.loss.loss_weights[1] == 1.0f && c.loss.loss_weights[2] == 0.0f);
    }
    const char *single[] = {"dpo.loss_type=ipo"};
    CHECK(load_text(&c, MINIMAL, 1, single, err, sizeof err) == 0);
    CHECK(c.loss.n_loss_types == 1 && c.loss.loss_type[0] == DPO_LOSS_IPO);
    // in the file: a plain string is a list of one
    CHECK(load_text(&c, MINIMAL "dpo = { loss_type = \"robust\"; };\n", 0, NULL, err, sizeof err) == 0);
    CHECK(c.loss.n_loss_types == 1 && c.loss.loss_type[0] == DPO_LOSS_ROBUST && c.loss.loss_weights[0] == 1.0f);
    // arrays in the file
    CHECK(load_text(&c, MINIMAL "dpo = { loss_type = [\"sigmoid\", \"hinge\"]; loss_weights = [0.5, 1.5]; };\n",
                    0, NULL, err, sizeof err) == 0);
    CHECK(c.loss.n_loss_types == 2 && c.loss.loss_weights[1] == 1.5f);

    // a seed past 32 bits from the file, with and without the L suffix
    CHECK(load_text(&c, MINIMAL "dpo = { seed = 5000000000; };\n", 0, NULL, err, sizeof err) == 0);
    CHECK(c.seed == 5000000000ULL);
    CHECK(load_text(&c, MINIMAL "dpo = { seed = 5000000000L; };\n", 0, NULL, err, sizeof err) == 0);
    CHECK(c.seed == 5000000000ULL);
    const char *ovs[] = {"dpo.seed=0x10"};
    CHECK(load_text(&c, MINIMAL, 1, ovs, err, sizeof err) == 0 && c.seed == 16);
}

static void roundtrip(const char *text, int n_ov, const char **ov) {
    dpo_config_t a, b;
    char err[512];
    int rc = load_text(&a, text, n_ov, ov, err, sizeof err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "  %s\n", err);
        return;
    }
    char *s = config_to_string(&a);
    CHECK(s != NULL);
    if (!s) return;
    rc = load_text(&b, s, 0, NULL, err, sizeof err);
    CHECK(rc == 0);
    if (rc) fprintf(stderr, "  %s\n--- written:\n%s", err, s);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    // and the text is a fixed point
    char *s2 = config_to_string(&b);
    CHECK(s2 && strcmp(s, s2) == 0);
    // config_write_cfg to a FILE gives the same text
    char path[512];
    tmp_path(path, sizeof path, "written.cfg");
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        config_write_cfg(&a, f);
        fclose(f);
        char *s3 = read_all(path);
        CHECK(s3 && strcmp(s, s3) == 0);
        free(s3);
        CHECK(config_load(&b, path, 0, NULL, err, sizeof err) == 0);
        CHECK(memcmp(&a, &b, sizeof a) == 0);
    }
    free(s);
    free(s2);
}

static void test_roundtrip(void) {
    roundtrip(MINIMAL, 0, NULL);
    roundtrip(ALL_KEYS, 0, NULL);
    const char *ov[] = {
        "data.dataset_path=we\"ird\\path\twith tab",
        "dpo.seed=18446744073709551615",
        "policy.optimizer.lr=3.4e38",
        "policy.optimizer.weight_decay=1e-45",
        "policy.model.rms_norm_eps=0.3333333333",
        "dpo.loss_type=robust,ipo,sigmoid",
        "dpo.loss_weights=0.1,0.2,0.3",
        "policy.scheduler.min_lr_ratio=1",
        "dpo.reference_free=true",
        "dpo.reference_model=",
    };
    roundtrip(ALL_KEYS, (int)(sizeof ov / sizeof ov[0]), ov);
    const char *ov2[] = {"dpo.seed=9223372036854775808", "checkpointing.metric_name=val:a b/c"};
    roundtrip(MINIMAL, 2, ov2);
}

static void test_errors(void) {
    // unknown keys and sections: full path, file:line, a suggestion
    EXPECT_ERROR(MINIMAL "policy = {\n  model = {\n    hidden_sise = 3;\n  };\n};\n", 0, NULL,
                 "policy.model.hidden_sise", ".cfg:4:", "did you mean 'policy.model.hidden_size'");
    EXPECT_ERROR("polcy = { lr = 1.0; };\n", 0, NULL, "unknown section 'polcy'", ".cfg:1:",
                 "did you mean 'policy'");
    EXPECT_ERROR("dpo = { beta = 0.2; };\n", 0, NULL, "dpo.beta", "dpo.reference_policy_kl_penalty");
    EXPECT_ERROR("policy = { optimizer = { kwargs = { lr = 1.0; }; }; };\n", 0, NULL,
                 "policy.optimizer.kwargs", "did you mean 'policy.optimizer'");
    EXPECT_ERROR("policy = 3;\n", 0, NULL, "policy", "expects a group", ".cfg:1:");
    const char *oz[] = {"policy.zero_stage=2"};
    EXPECT_ERROR(MINIMAL, 1, oz, "policy.zero_stage", "must be 0");
    const char *o1[] = {"policy.optimizer.lrr=1"};
    EXPECT_ERROR(MINIMAL, 1, o1, "override 'policy.optimizer.lrr=1'", "unknown key",
                 "policy.optimizer.lrr", "did you mean 'policy.optimizer.lr'");
    const char *o1b[] = {"policy.optimizer.kwargs.lr=1"};
    EXPECT_ERROR(MINIMAL, 1, o1b, "policy.optimizer.kwargs.lr", "policy.optimizer.lr");
    const char *o2[] = {"policy.model=3"};
    EXPECT_ERROR(MINIMAL, 1, o2, "policy.model", "section");
    const char *o3[] = {"policy.optimizer.lr"};
    EXPECT_ERROR(MINIMAL, 1, o3, "override 'policy.optimizer.lr'", "key=value");

    // wrong types
    EXPECT_ERROR(MINIMAL "policy = {\n  train_micro_batch_size = 2.5;\n};\n", 0, NULL,
                 "policy.train_micro_batch_size", "expected an integer", "got a float", ".cfg:3:");
    EXPECT_ERROR(MINIMAL "dpo = { val_at_start = 1; };\n", 0, NULL, "dpo.val_at_start",
                 "expected a boolean", ".cfg:2:");
    EXPECT_ERROR(MINIMAL "policy = { optimizer = { lr = \"1e-4\"; }; };\n", 0, NULL,
                 "policy.optimizer.lr", "expected a number", "got a string");
    EXPECT_ERROR(MINIMAL "policy = { model_name = 3; };\n", 0, NULL, "policy.model_name",
                 "expected a string");
    EXPECT_ERROR(MINIMAL "policy = { optimizer = { betas = [0.9]; }; };\n", 0, NULL,
                 "policy.optimizer.betas", "exactly 2");
    EXPECT_ERROR(MINIMAL "policy = { optimizer = { betas = 0.9; }; };\n", 0, NULL,
                 "policy.optimizer.betas", "list of 2 numbers");
    EXPECT_ERROR(MINIMAL "dpo = { loss_type = (\"sigmoid\", 3); };\n", 0, NULL, "dpo.loss_type[1]",
                 "expected a string");
    EXPECT_ERROR(MINIMAL "dpo = { loss_weights = (1.0, \"x\"); };\n", 0, NULL,
                 "dpo.loss_weights[1]", "expected a number");
    EXPECT_ERROR(MINIMAL "policy = { model = { hidden_size = 4294967296; }; };\n", 0, NULL,
                 "policy.model.hidden_size", "out of range", ".cfg:2:");
    EXPECT_ERROR(MINIMAL "dpo = { seed = -1; };\n", 0, NULL, "dpo.seed", ">= 0");
    EXPECT_ERROR(MINIMAL "policy = { optimizer = { lr = 1e39; }; };\n", 0, NULL,
                 "policy.optimizer.lr", "finite 32-bit float");
    EXPECT_ERROR(MINIMAL "policy = { scheduler = { type = \"step\"; }; };\n", 0, NULL,
                 "policy.scheduler.type", "step");
    const char *o4[] = {"policy.optimizer.lr=abc"};
    EXPECT_ERROR(MINIMAL, 1, o4, "override 'policy.optimizer.lr=abc'", "policy.optimizer.lr",
                 "expected a number");
    const char *o5[] = {"dpo.val_at_start=yes"};
    EXPECT_ERROR(MINIMAL, 1, o5, "dpo.val_at_start", "expected a boolean");
    const char *o6[] = {"policy.train_micro_batch_size=2.5"};
    EXPECT_ERROR(MINIMAL, 1, o6, "policy.train_micro_batch_size", "expected an integer");
    const char *o7[] = {"policy.model.hidden_size=3000000000"};
    EXPECT_ERROR(MINIMAL, 1, o7, "policy.model.hidden_size", "out of range");
    const char *o8[] = {"policy.optimizer.lr=1e-4;x=2"};
    EXPECT_ERROR(MINIMAL, 1, o8, "policy.optimizer.lr", "expected a number");
    const char *o9[] = {"policy.optimizer.lr=1..2"};
    EXPECT_ERROR(MINIMAL, 1, o9, "policy.optimizer.lr", "expected a number", "'1..2'");
    const char *o10[] = {"dpo.loss_weights=1,,2"};
    EXPECT_ERROR(MINIMAL, 1, o10, "dpo.loss_weights", "empty entry");

    // out of range (validation), with where the key was set
    EXPECT_ERROR(MINIMAL "dpo = {\n  label_smoothing = 0.5;\n};\n", 0, NULL, "dpo.label_smoothing",
                 ".cfg:3:", "[0, 0.5)");
    const char *o_nf[] = {"dpo.nonfinite_policy=ignore"};
    EXPECT_ERROR(MINIMAL, 1, o_nf, "dpo.nonfinite_policy", "\"abort\" or \"skip\"", "ignore");
    const char *o_ms[] = {"dpo.max_skipped_steps=0"};
    EXPECT_ERROR(MINIMAL, 1, o_ms, "dpo.max_skipped_steps", "must be > 0");
    const char *o11[] = {"dpo.reference_policy_kl_penalty=0"};
    EXPECT_ERROR(MINIMAL, 1, o11, "dpo.reference_policy_kl_penalty", "must be > 0",
                 "override 'dpo.reference_policy_kl_penalty=0'");
    EXPECT_ERROR(MINIMAL "policy = { optimizer = { betas = [0.9, 1.0]; }; };\n", 0, NULL,
                 "policy.optimizer.betas", "[0, 1)");
    EXPECT_ERROR(MINIMAL "policy = { model = { num_key_value_heads = 3; }; };\n", 0, NULL,
                 "policy.model.num_key_value_heads", "must divide");
    EXPECT_ERROR(MINIMAL "policy = { model = { hidden_size = 66; }; };\n", 0, NULL,
                 "policy.model.hidden_size", "divisible");
    EXPECT_ERROR(MINIMAL "policy = { model = { head_dim = 15; }; };\n", 0, NULL,
                 "policy.model.head_dim", "even");
    EXPECT_ERROR(MINIMAL "policy = { model = { vocab_size = 0; }; };\n", 0, NULL,
                 "policy.model.vocab_size", "> 0");
    EXPECT_ERROR(MINIMAL "policy = { scheduler = { warmup_steps = -1; }; };\n", 0, NULL,
                 "policy.scheduler.warmup_steps", ">= 0");

    // batch sizes
    EXPECT_ERROR(MINIMAL "policy = {\n  train_micro_batch_size = 5;\n};\n", 0, NULL,
                 "policy.train_micro_batch_size", "must divide policy.train_global_batch_size (32)",
                 "got 5", ".cfg:3:");

    // losses
    EXPECT_ERROR(MINIMAL "dpo = {\n loss_type = [\"sigmoid\", \"ipo\"];\n loss_weights = [1.0];\n};\n",
                 0, NULL, "dpo.loss_weights", "1 entry", "2 losses", ".cfg:4:");
    const char *o12[] = {"dpo.loss_type=sigmoid,ipo"};
    EXPECT_ERROR(MINIMAL "dpo = { loss_weights = [1.0]; };\n", 1, o12, "dpo.loss_weights");
    EXPECT_ERROR(MINIMAL "dpo = { loss_type = \"foo\"; };\n", 0, NULL, "dpo.loss_type", "'foo'");
    const char *o13[] = {"dpo.loss_type=[\"sigmoid\",\"sft\"]"};
    EXPECT_ERROR(MINIMAL, 1, o13, "dpo.loss_type", "'sft'", "dpo.sft_loss_weight");
    EXPECT_ERROR(MINIMAL "dpo = { loss_type = []; };\n", 0, NULL, "dpo.loss_type", "between 1 and");
    EXPECT_ERROR(MINIMAL "dpo = { preference_loss_weight = 0; };\n", 0, NULL,
                 "dpo.preference_loss_weight", "dpo.sft_loss_weight");
    EXPECT_ERROR(MINIMAL "dpo = { loss_weights = [-1.0]; };\n", 0, NULL, "dpo.loss_weights", ">= 0");
    EXPECT_ERROR(MINIMAL "dpo = { reference_free = true; reference_model = \"r.h5\"; };\n", 0, NULL,
                 "dpo.reference_model", "dpo.reference_free");

    // data, checkpointing, cluster
    EXPECT_ERROR("data = { shuffle = true; };\n", 0, NULL, "data.dataset_path", "required");
    EXPECT_ERROR(MINIMAL "checkpointing = { keep_top_k = 3; };\n", 0, NULL,
                 "checkpointing.metric_name", "keep_top_k");
    EXPECT_ERROR(MINIMAL "checkpointing = { metric_name = \"validation-default_loss\"; };\n", 0,
                 NULL, "checkpointing.metric_name", "val:<set>/<metric>");
    EXPECT_ERROR(MINIMAL "checkpointing = { enabled = true; save_period = 0; };\n", 0, NULL,
                 "checkpointing.save_period", "> 0");
    EXPECT_ERROR(MINIMAL "checkpointing = { keep_top_k = -1; };\n", 0, NULL,
                 "checkpointing.keep_top_k");
#ifdef DPO_HAVE_CUDA
    {  // a CUDA build accepts "cuda" (whether a device is visible is checked at start-up)
        dpo_config_t c;
        char err[512];
        int rc = load_text(&c, MINIMAL "cluster = { backend = \"cuda\"; matmul_precision = "
                                       "\"fp32\"; };\n", 0, NULL, err, sizeof err);
        CHECK(rc == 0);
        if (rc) fprintf(stderr, "  %s\n", err);
        CHECK(rc == 0 && c.backend == DPO_BACKEND_CUDA && c.matmul_precision == DPO_CFG_MATMUL_FP32);
    }
#else
    EXPECT_ERROR(MINIMAL "cluster = { backend = \"cuda\"; };\n", 0, NULL, "cluster.backend",
                 "no CUDA backend in this build");
#endif
    EXPECT_ERROR(MINIMAL "cluster = { matmul_precision = \"fp16\"; };\n", 0, NULL,
                 "cluster.matmul_precision", "fp16");
    EXPECT_ERROR(MINIMAL "cluster = { matmul_precision = \"BF16\"; };\n", 0, NULL,
                 "cluster.matmul_precision", "\"bf16\", \"tf32\" or \"fp32\"");
    EXPECT_ERROR(MINIMAL "cluster = { backend = \"tpu\"; };\n", 0, NULL, "cluster.backend", "tpu");
    char longstr[DPO_NAME_MAX + 256];
    snprintf(longstr, sizeof longstr, MINIMAL "cluster = { backend = \"%0*d\"; };\n", DPO_NAME_MAX, 0);
    EXPECT_ERROR(longstr, 0, NULL, "cluster.backend", "longer than 63");

    // files: missing, unreadable syntax, duplicate setting
    {
        dpo_config_t c;
        char err[512];
        char path[512];
        tmp_path(path, sizeof path, "no_such_dir/missing.cfg");
        CHECK(config_load(&c, path, 0, NULL, err, sizeof err) == -1);
        CHECK(strstr(err, path) != NULL);
        CHECK(strstr(err, "No such file or directory") != NULL);
    }
    EXPECT_ERROR(MINIMAL "policy = {\n  lr = 1.0\n  x = ;\n};\n", 0, NULL, ".cfg:4:",
                 "syntax error");
    EXPECT_ERROR(MINIMAL "data = { shuffle = true; };\n", 0, NULL, ".cfg:2:", "duplicate");

    // config_validate alone
    {
        dpo_config_t c;
        char err[512];
        CHECK(load_text(&c, MINIMAL, 0, NULL, err, sizeof err) == 0);
        c.train_micro_batch_size = 7;
        CHECK(config_validate(&c, err, sizeof err) == -1);
        CHECK(strstr(err, "policy.train_micro_batch_size: must divide") == err);
        CHECK(load_text(&c, MINIMAL, 0, NULL, err, sizeof err) == 0);
        c.loss.label_smoothing = NAN;
        CHECK(config_validate(&c, err, sizeof err) == -1);
        CHECK(strstr(err, "dpo.label_smoothing") != NULL);
        CHECK(load_text(&c, MINIMAL, 0, NULL, err, sizeof err) == 0);
        c.loss.n_loss_types = 0;
        CHECK(config_validate(&c, err, sizeof err) == -1 && strstr(err, "dpo.loss_type"));
        CHECK(load_text(&c, MINIMAL, 0, NULL, err, sizeof err) == 0);
        memset(c.log_dir, 'x', sizeof c.log_dir);
        CHECK(config_validate(&c, err, sizeof err) == -1 && strstr(err, "logger.log_dir"));
        CHECK(config_validate(&c, NULL, 0) == -1);  // no buffer: still just -1
    }
}

static void test_include(void) {
    char dir[512], inc[600], main_cfg[600];
    tmp_path(dir, sizeof dir, "sub");
    mkdir(dir, 0755);
    snprintf(inc, sizeof inc, "%s/common.cfg", dir);
    snprintf(main_cfg, sizeof main_cfg, "%s/main.cfg", dir);
    FILE *f = fopen(inc, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("data = { dataset_path = \"inc.h5\"; };\npolicy = { bogus = 1; };\n", f);
    fclose(f);
    f = fopen(main_cfg, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs("# includes are relative to this file\n@include \"common.cfg\"\n", f);
    fclose(f);
    dpo_config_t c;
    char err[512];
    // the unknown key is reported at its own file and line
    CHECK(config_load(&c, main_cfg, 0, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "common.cfg:2:") != NULL && strstr(err, "policy.bogus") != NULL);
    f = fopen(inc, "w");
    if (!f) return;
    fputs("data = { dataset_path = \"inc.h5\"; };\n", f);
    fclose(f);
    CHECK(config_load(&c, main_cfg, 0, NULL, err, sizeof err) == 0);
    CHECK(strcmp(c.dataset_path, "inc.h5") == 0);
    remove(inc);
    remove(main_cfg);
    rmdir(dir);
}

static void test_names(void) {
    CHECK(strcmp(loss_type_name(DPO_LOSS_SIGMOID), "sigmoid") == 0);
    CHECK(strcmp(loss_type_name(DPO_LOSS_IPO), "ipo") == 0);
    CHECK(strcmp(loss_type_name(DPO_LOSS_HINGE), "hinge") == 0);
    CHECK(strcmp(loss_type_name(DPO_LOSS_ROBUST), "robust") == 0);
    CHECK(strcmp(loss_type_name(DPO_LOSS_TYPE_COUNT), "unknown") == 0);
}

// doc/config.md documents every key, and every key its tables name exists.
static void test_doc(void) {
    char *doc = read_all(DPO_SOURCE_DIR "/doc/config.md");
    CHECK(doc != NULL);
    if (!doc) return;
    dpo_config_t d;
    config_defaults(&d);
    char *s = config_to_string(&d);
    pathset_t *keys = malloc(sizeof *keys);
    CHECK(s && keys && paths_of_text(s, keys) == 0);
    for (int i = 0; i < keys->n; i++) {
        char needle[160];
        snprintf(needle, sizeof needle, "| `%s`", keys->path[i]);
        if (!strstr(doc, needle))
            test_fail(__FILE__, __LINE__, "doc/config.md has no table row for %s", keys->path[i]);
    }
    for (char *line = doc; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (strncmp(line, "| `", 3) == 0) {
            char key[160];
            const char *end = strchr(line + 3, '`');
            size_t n = end ? (size_t)(end - (line + 3)) : 0;
            if (n && n < sizeof key) {
                memcpy(key, line + 3, n);
                key[n] = '\0';
                if (!pathset_has(keys, key))
                    test_fail(__FILE__, __LINE__, "doc/config.md documents unknown key %s", key);
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    // the key table itself: every row has a doc line and a row in doc/config.md, and
    // the listing names every key
    free(doc);  // (the loop above split it into lines)
    doc = read_all(DPO_SOURCE_DIR "/doc/config.md");
    CHECK(doc != NULL);
    if (!doc) return;
    CHECK(config_key_count() == keys->n);
    char *listing = NULL;
    size_t listing_len = 0;
    FILE *lf = open_memstream(&listing, &listing_len);
    CHECK(lf != NULL);
    if (lf) {
        config_write_keys(lf);
        fclose(lf);
    }
    for (int i = 0; i < config_key_count(); i++) {
        const char *name = config_key_name(i);
        char needle[160];
        snprintf(needle, sizeof needle, "| `%s`", name);
        if (!strstr(doc, needle))
            test_fail(__FILE__, __LINE__, "doc/config.md has no table row for %s", name);
        if (!config_key_doc(i) || !config_key_doc(i)[0])
            test_fail(__FILE__, __LINE__, "key %s has no doc line", name);
        if (!pathset_has(keys, name))
            test_fail(__FILE__, __LINE__, "key %s is not written by config_write_cfg", name);
        snprintf(needle, sizeof needle, "%s (", name);
        if (!listing || !strstr(listing, needle))
            test_fail(__FILE__, __LINE__, "config_write_keys does not list %s", name);
    }
    free(listing);
    free(keys);
    free(s);
    free(doc);
}

// ---------------------------------------------------------------------------------
// 2 ranks: config_load_bcast
// ---------------------------------------------------------------------------------

static int run_bcast(bool fail) {
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        fprintf(stderr, "test_config --bcast wants 2 or more ranks\n");
        return TEST_SKIP_CODE;
    }
    const char *path = NULL;
    if (rank == 0) {
        path = fail ? "no_such_dir/missing.cfg" : write_cfg(ALL_KEYS);
    } else {
        path = "rank_other_than_0_must_not_open_this.cfg";  // never opened
    }
    const char *ov0[] = {"policy.optimizer.lr=3e-4", "dpo.seed=99"};
    const char *ov1[] = {"garbage-that-rank-0-never-sees"};
    dpo_config_t c;
    memset(&c, 0xAB, sizeof c);
    if (rank == 0)
        config_load_bcast(&c, path, 2, (char **)ov0);
    else
        config_load_bcast(&c, path, 1, (char **)ov1);
    if (fail) {
        printf("UNREACHABLE: rank %d returned from a failed config_load_bcast\n", rank);
        return 1;
    }
    CHECK(c.optim.lr == 3e-4f && c.seed == 99);
    CHECK(c.model.hidden_size == 96 && c.loss.n_loss_types == 4);
    // a non-default value of every type arrived: every key of ALL_KEYS, enums included
    dpo_config_t as_file = c;  // the two keys the overrides changed, as in ALL_KEYS
    as_file.optim.lr = 2e-5f;
    as_file.seed = 1234567;
    check_all_keys(&as_file);
    // and rank 0's configuration text, written on each rank, is the same everywhere
    char *mine = config_to_string(&c);
    CHECK(mine != NULL);
    long long len = mine ? (long long)strlen(mine) + 1 : 0;
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    char *root_text = calloc((size_t)len + 1, 1);
    if (rank == 0 && mine) memcpy(root_text, mine, (size_t)len);
    MPI_Bcast(root_text, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
    CHECK(mine && strcmp(mine, root_text) == 0);
    free(root_text);
    free(mine);
    // every byte equals rank 0's
    dpo_config_t root = c;
    MPI_Bcast(&root, (int)sizeof root, MPI_BYTE, 0, MPI_COMM_WORLD);
    CHECK(memcmp(&root, &c, sizeof c) == 0);
    int bad = test_failures, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    return any ? 1 : 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    bool bcast = argc > 1 && strcmp(argv[1], "--bcast") == 0;
    bool bcast_fail = argc > 1 && strcmp(argv[1], "--bcast-fail") == 0;
    // scratch files (none in the failing run: config_load_bcast exits from inside)
    snprintf(g_tmpdir, sizeof g_tmpdir, "test_config.tmp.%d.%ld", rank, (long)getpid());
    if (!bcast_fail) mkdir(g_tmpdir, 0755);
    int rc;
    if (bcast || bcast_fail) {
        rc = run_bcast(bcast_fail);
        if (rc == 0 && rank == 0) printf("test_config_bcast: all checks passed\n");
    } else {
        test_defaults();
        test_every_key();
        test_overrides();
        test_roundtrip();
        test_errors();
        test_include();
        test_names();
        test_doc();
        rc = test_finish("test_config");
    }
    // scratch files
    for (int i = 0; i < g_nfiles; i++) {
        char name[64], p[512];
        snprintf(name, sizeof name, "t%03d.cfg", i);
        tmp_path(p, sizeof p, name);
        remove(p);
    }
    char p[512];
    tmp_path(p, sizeof p, "written.cfg");
    remove(p);
    rmdir(g_tmpdir);
    MPI_Finalize();
    return rc;
}
