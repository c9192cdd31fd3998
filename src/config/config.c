// config.c — the run configuration: libconfig file, `section.key=value` overrides,
// validation, writing back, and the rank-0-loads-then-broadcasts entry point.
//
// One table (KEYS below) drives everything: reading the file, applying overrides,
// writing the effective configuration, and the unknown-key check. A key's value from
// the file and from an override go through the same setter (set_key), so typing
// and range rules cannot drift apart between the two. Overrides are turned into a
// one-line libconfig document ("v = <value>;") and parsed by libconfig itself.
//
// Our writer is config_write_cfg: libconfig already owns the symbol config_write.
#include <libconfig.h>

#include "dpo/config.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <mpi.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------
// The key table
// ---------------------------------------------------------------------------------

typedef enum {
    K_INT,      // int
    K_U64,      // uint64_t (dpo.seed)
    K_FLOAT,    // float; integers accepted
    K_BOOL,     // bool; true/false only
    K_STR,      // char[size]
    K_ENUM,     // an enum stored as int, by name from the row's choices
    K_LOSSES,   // dpo.loss_type: string or list of strings
    K_WEIGHTS,  // dpo.loss_weights: list of numbers
    K_BETAS     // policy.optimizer.betas: list of exactly 2 numbers
} kind_t;

// The names of an enum's values, in the enum's order.
typedef struct {
    const char *const *names;
    int count;
    bool one_of;  // message style: 'one of "a", "b", "c"' instead of '"a", "b" or "c"'
} choices_t;

// Range flags of a row (checked by config_validate; NaN never passes).
enum { R_MIN = 1, R_MAX = 2, R_MIN_EXCL = 4, R_MAX_EXCL = 8 };

typedef struct {
    const char *path;       // full dotted path: "policy.model.hidden_size"
    kind_t kind;
    size_t off;             // offset into dpo_config_t
    size_t size;            // K_STR: capacity of the char array; K_ENUM: longest name
                            // accepted + 1 (0 = any)
    long long def_i;        // default of K_INT, K_U64, K_BOOL, K_ENUM, K_LOSSES (a type)
    float def_f, def_f2;    // default of K_FLOAT, K_WEIGHTS (each), K_BETAS (both)
    const char *def_s;      // default of K_STR (NULL = "")
    unsigned range;         // R_* flags
    double min, max;
    const char *range_msg;  // replaces the generated "be >= min" in range messages
    const choices_t *choices;  // K_ENUM
    const char *doc;
} cfg_key_t;

static const char *const LOSS_NAMES[] = {"sigmoid", "ipo", "hinge", "robust"};
_Static_assert(sizeof LOSS_NAMES / sizeof LOSS_NAMES[0] == DPO_LOSS_TYPE_COUNT,
               "one name per dpo_loss_type_t");
static const char *const SCHED_NAMES[] = {"constant", "linear", "cosine"};
_Static_assert(sizeof SCHED_NAMES / sizeof SCHED_NAMES[0] == DPO_SCHED_TYPE_COUNT,
               "one name per dpo_sched_type_t");
static const char *const NONFINITE_NAMES[] = {"abort", "skip"};
_Static_assert(sizeof NONFINITE_NAMES / sizeof NONFINITE_NAMES[0] == DPO_NONFINITE_COUNT,
               "one name per dpo_nonfinite_policy_t");
static const char *const BACKEND_NAMES[] = {"cpu", "cuda"};
_Static_assert(sizeof BACKEND_NAMES / sizeof BACKEND_NAMES[0] == DPO_BACKEND_KIND_COUNT,
               "one name per dpo_backend_kind_t");
static const char *const MATMUL_NAMES[] = {"bf16", "tf32", "fp32"};
_Static_assert(sizeof MATMUL_NAMES / sizeof MATMUL_NAMES[0] == DPO_CFG_MATMUL_COUNT,
               "one name per dpo_cfg_matmul_t");

// K_ENUM fields are accessed as int.
_Static_assert(sizeof(dpo_sched_type_t) == sizeof(int) &&
                   sizeof(dpo_nonfinite_policy_t) == sizeof(int) &&
                   sizeof(dpo_backend_kind_t) == sizeof(int) &&
                   sizeof(dpo_cfg_matmul_t) == sizeof(int),
               "enums stored as int");

#define NNAMES(a) ((int)(sizeof(a) / sizeof(a[0])))
static const choices_t CH_SCHED = {SCHED_NAMES, NNAMES(SCHED_NAMES), true};
static const choices_t CH_NONFINITE = {NONFINITE_NAMES, NNAMES(NONFINITE_NAMES), false};
static const choices_t CH_BACKEND = {BACKEND_NAMES, NNAMES(BACKEND_NAMES), false};
static const choices_t CH_MATMUL = {MATMUL_NAMES, NNAMES(MATMUL_NAMES), false};

static const char *name_of(const char *const *names, int count, int v) {
    return v >= 0 && v < count ? names[v] : "unknown";
}
const char *loss_type_name(dpo_loss_type_t t) { return name_of(LOSS_NAMES, NNAMES(LOSS_NAMES), (int)t); }
const char *sched_type_name(dpo_sched_type_t t) {
    return name_of(SCHED_NAMES, NNAMES(SCHED_NAMES), (int)t);
}
const char *nonfinite_policy_name(dpo_nonfinite_policy_t p) {
    return name_of(NONFINITE_NAMES, NNAMES(NONFINITE_NAMES), (int)p);
}
const char *backend_kind_name(dpo_backend_kind_t b) {
    return name_of(BACKEND_NAMES, NNAMES(BACKEND_NAMES), (int)b);
}
const char *cfg_matmul_name(dpo_cfg_matmul_t m) {
    return name_of(MATMUL_NAMES, NNAMES(MATMUL_NAMES), (int)m);
}

// Ranges (the last argument of the row macros).
#define NORANGE .range = 0
#define POS .range = R_MIN | R_MIN_EXCL, .min = 0
#define NONNEG .range = R_MIN, .min = 0
#define ATLEAST(a, msg) .range = R_MIN, .min = (a), .range_msg = (msg)
#define IN(a, b, fl) .range = R_MIN | R_MAX | (fl), .min = (a), .max = (b)
#define IN_MSG(a, b, fl, msg) IN(a, b, fl), .range_msg = (msg)

#define OFF(f) .off = offsetof(dpo_config_t, f)
#define FSIZE(f) sizeof(((dpo_config_t *)0)->f)
#define KI(p, f, d, rng, doc_) {.path = p, .kind = K_INT, OFF(f), .def_i = (d), rng, .doc = doc_}
#define KU(p, f, d, doc_) {.path = p, .kind = K_U64, OFF(f), .def_i = (d), .doc = doc_}
#define KF(p, f, d, rng, doc_) {.path = p, .kind = K_FLOAT, OFF(f), .def_f = (d), rng, .doc = doc_}
#define KB(p, f, d, doc_) {.path = p, .kind = K_BOOL, OFF(f), .def_i = (d), .doc = doc_}
#define KS(p, f, d, doc_) {.path = p, .kind = K_STR, OFF(f), .size = FSIZE(f), .def_s = (d), .doc = doc_}
#define KE(p, f, ch, d, len, doc_) \
    {.path = p, .kind = K_ENUM, OFF(f), .size = (len), .def_i = (d), .choices = &(ch), .doc = doc_}

// Order matters: config_write_cfg emits keys in this order, and keys of one group must
// be contiguous (a group is opened once). doc/config.md describes each key in full.
static const cfg_key_t KEYS[] = {
    KS("policy.model_name", model_name, "", "checkpoint (.h5) to start from; \"\" = random init"),
    KI("policy.model.vocab_size", model.vocab_size, 258, POS, "vocabulary size"),
    KI("policy.model.hidden_size", model.hidden_size, 64, POS, "width of the residual stream"),
    KI("policy.model.num_hidden_layers", model.num_hidden_layers, 2, POS, "decoder layers"),
    KI("policy.model.num_attention_heads", model.num_attention_heads, 4, POS, "query heads"),
    KI("policy.model.num_key_value_heads", model.num_key_value_heads, 2, POS,
       "key/value heads (GQA); divides the query heads"),
    KI("policy.model.head_dim", model.head_dim, 0, NONNEG,
       "per-head width; 0 = hidden_size / num_attention_heads"),
    KI("policy.model.intermediate_size", model.intermediate_size, 176, POS, "MLP width"),
    KF("policy.model.rope_theta", model.rope_theta, 10000.0f, POS, "RoPE base"),
    KF("policy.model.rms_norm_eps", model.rms_norm_eps, 1e-5f, POS, "RMSNorm epsilon"),
    KB("policy.model.attention_bias", model.attention_bias, false,
       "bias on the q, k, v projections (Qwen2)"),
    KB("policy.model.qk_norm", model.qk_norm, false, "per-head RMSNorm on q and k (Qwen3)"),
    KB("policy.model.tie_word_embeddings", model.tie_word_embeddings, false,
       "output head shares the embedding matrix"),
    KF("policy.model.initializer_range", model.initializer_range, 0.02f, NONNEG,
       "std of the normal init of matrices"),
    KI("policy.generation.max_new_tokens", gen_max_new_tokens, 16, POS,
       "tokens generated per prompt at most (--generate)"),
    KF("policy.generation.temperature", gen_temperature, 0.0f, NONNEG, "sampling temperature; 0 = greedy"),
    KF("policy.generation.top_p", gen_top_p, 1.0f, IN(0, 1, R_MIN_EXCL), "nucleus mass"),
    KI("policy.generation.top_k", gen_top_k, 0, ATLEAST(0, "be >= 0 (0 = off)"),
       "sample among the k likeliest tokens; 0 = off"),
    KI("policy.train_global_batch_size", train_global_batch_size, 32, POS,
       "pairs per optimizer step, over all DP ranks"),
    KI("policy.train_micro_batch_size", train_micro_batch_size, 4, POS,
       "pairs per forward/backward on one rank"),
    KI("policy.max_total_sequence_length", max_total_sequence_length, 512,
       ATLEAST(2, "be >= 2 (a prompt token and a completion token)"),
       "longest prompt+completion sequence accepted"),
    KI("policy.logprob_chunk_size", logprob_chunk_size, 256, POS,
       "tokens per chunk of logits (bounds memory)"),
    KF("policy.max_grad_norm", optim.max_grad_norm, 1.0f, NONNEG,
       "global gradient-norm clip; 0 = no clipping"),
    KI("policy.tensor_parallel_size", tensor_parallel_size, 1, POS, "tensor-parallel ranks"),
    KI("policy.zero_stage", zero_stage, 1,
       IN_MSG(0, 1, 0, "be 0 (no sharding) or 1 (optimizer state sharded over data parallelism)"),
       "0: replicated optimizer; 1: moments sharded over DP"),
    KB("policy.activation_checkpointing", activation_checkpointing, false,
       "recompute each layer's forward in the backward"),
    KF("policy.optimizer.lr", optim.lr, 5e-6f, NONNEG, "AdamW peak learning rate"),
    KF("policy.optimizer.weight_decay", optim.weight_decay, 0.1f, NONNEG,
       "AdamW decoupled weight decay (matrices only)"),
    {.path = "policy.optimizer.betas", .kind = K_BETAS, OFF(optim.beta1), .def_f = 0.9f,
     .def_f2 = 0.98f, .range = R_MIN | R_MAX | R_MAX_EXCL, .min = 0, .max = 1,
     .doc = "AdamW [beta1, beta2], each in [0, 1)"},
    KF("policy.optimizer.eps", optim.adam_eps, 1e-8f, POS, "AdamW epsilon"),
    KE("policy.scheduler.type", optim.sched_type, CH_SCHED, DPO_SCHED_CONSTANT, 0,
       "decay after warmup"),
    KI("policy.scheduler.warmup_steps", optim.warmup_steps, 0, NONNEG, "linear warmup steps"),
    KF("policy.scheduler.min_lr_ratio", optim.min_lr_ratio, 0.0f, IN(0, 1, 0),
       "floor of the decay, as a fraction of lr"),

    KI("dpo.max_num_steps", max_num_steps, 0, NONNEG, "optimizer steps; 0 = no limit"),
    KI("dpo.max_num_epochs", max_num_epochs, 1, POS, "passes over the training set at most"),
    KI("dpo.val_period", val_period, 0, NONNEG, "validate every this many steps; 0 = never"),
    KB("dpo.val_at_start", val_at_start, true, "validate before the first step"),
    KI("dpo.val_global_batch_size", val_global_batch_size, 32, POS, "pairs per validation batch"),
    KI("dpo.val_micro_batch_size", val_micro_batch_size, 0, NONNEG,
       "pairs per validation forward per rank; 0 = train micro"),
    KI("dpo.val_max_pairs", val_max_pairs, 0, NONNEG, "validation pairs per set; 0 = all"),
    KF("dpo.reference_policy_kl_penalty", loss.beta, 0.1f, POS, "DPO beta"),
    KF("dpo.preference_loss_weight", loss.preference_loss_weight, 1.0f, NONNEG,
       "weight of the preference loss"),
    KF("dpo.sft_loss_weight", loss.sft_loss_weight, 0.0f, NONNEG,
       "weight of the SFT (chosen NLL) term"),
    KB("dpo.preference_average_log_probs", loss.preference_average_log_probs, false,
       "preference loss on per-token mean log-probs"),
    KB("dpo.sft_average_log_probs", loss.sft_average_log_probs, false,
       "SFT term on the per-token mean"),
    {.path = "dpo.loss_type", .kind = K_LOSSES, OFF(loss.loss_type), .def_i = DPO_LOSS_SIGMOID,
     .doc = "loss name or list of them: sigmoid, ipo, hinge, robust"},
    {.path = "dpo.loss_weights", .kind = K_WEIGHTS, OFF(loss.loss_weights), .def_f = 1.0f,
     .range = R_MIN, .min = 0, .doc = "one weight per loss type; default all 1"},
    KF("dpo.label_smoothing", loss.label_smoothing, 0.0f, IN(0, 0.5, R_MAX_EXCL),
       "cDPO / robust label noise"),
    KB("dpo.reference_free", loss.reference_free, false, "no reference model (its log-probs = 0)"),
    KS("dpo.reference_model", reference_model, "",
       "reference checkpoint; \"\" = frozen copy of the initial policy"),
    KB("dpo.precomputed_reference_logprobs", precomputed_reference_logprobs, false,
       "use the dataset's stored reference log-probs"),
    KU("dpo.seed", seed, 42, "seed of init, shuffling and sampling"),
    KE("dpo.nonfinite_policy", nonfinite_policy, CH_NONFINITE, DPO_NONFINITE_ABORT, 16,
       "what a non-finite loss or gradient does"),
    KI("dpo.max_skipped_steps", max_skipped_steps, 10, POS,
       "\"skip\": consecutive skipped steps tolerated"),

    KS("data.dataset_path", dataset_path, "", "HDF5 dataset file (required)"),
    KB("data.shuffle", shuffle, true, "shuffle the training pairs each epoch"),

    KB("checkpointing.enabled", ckpt_enabled, false, "write checkpoints"),
    KS("checkpointing.checkpoint_dir", checkpoint_dir, "results/checkpoints",
       "directory of the checkpoints"),
    KI("checkpointing.save_period", save_period, 50, NORANGE,  // range: validate_impl
       "checkpoint every this many steps (> 0 when enabled)"),
    KI("checkpointing.keep_top_k", keep_top_k, 0, NONNEG, "checkpoints kept; 0 = all"),
    KS("checkpointing.metric_name", metric_name, "", "\"val:<set>/<metric>\" to rank checkpoints by"),
    KB("checkpointing.higher_is_better", higher_is_better, false, "direction of metric_name"),
    KB("checkpointing.resume", resume, false, "resume from the latest checkpoint"),

    KS("logger.log_dir", log_dir, "results", "output directory: metrics.jsonl, config.cfg"),

    KE("cluster.backend", backend, CH_BACKEND, DPO_BACKEND_CPU, DPO_NAME_MAX, "compute backend"),
    KE("cluster.matmul_precision", matmul_precision, CH_MATMUL, DPO_CFG_MATMUL_BF16, DPO_NAME_MAX,
       "CUDA matmul precision"),
    KI("cluster.num_threads", num_threads, 0, NONNEG, "OpenMP threads per rank; 0 = cores / local ranks"),
};
#define NKEYS ((int)(sizeof(KEYS) / sizeof(KEYS[0])))
#define PATH_DEPTH_MAX 8

int config_key_count(void) { return NKEYS; }
const char *config_key_name(int i) { return i >= 0 && i < NKEYS ? KEYS[i].path : NULL; }
const char *config_key_doc(int i) { return i >= 0 && i < NKEYS ? KEYS[i].doc : NULL; }

static const cfg_key_t *find_key(const char *path) {
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].path, path) == 0) return &KEYS[i];
    return NULL;
}

// True when `path` names a group (some key lies below it).
static bool is_group_path(const char *path) {
    size_t n = strlen(path);
    if (n == 0) return true;  // the root
    for (int i = 0; i < NKEYS; i++)
        if (strncmp(KEYS[i].path, path, n) == 0 && KEYS[i].path[n] == '.') return true;
    return false;
}

static void *field(dpo_config_t *cfg, const cfg_key_t *k) { return (char *)cfg + k->off; }
static const void *cfield(const dpo_config_t *cfg, const cfg_key_t *k) {
    return (const char *)cfg + k->off;
}

// ---------------------------------------------------------------------------------
// Defaults
// ---------------------------------------------------------------------------------

static void set_str(char *dst, size_t cap, const char *src) {
    memset(dst, 0, cap);  // whole buffer zeroed: structs compare bytewise
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
}

void config_defaults(dpo_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < NKEYS; i++) {
        const cfg_key_t *k = &KEYS[i];
        void *p = field(cfg, k);
        switch (k->kind) {
        case K_INT:
        case K_ENUM: *(int *)p = (int)k->def_i; break;
        case K_U64: *(uint64_t *)p = (uint64_t)k->def_i; break;
        case K_FLOAT: *(float *)p = k->def_f; break;
        case K_BOOL: *(bool *)p = k->def_i != 0; break;
        case K_STR: set_str((char *)p, k->size, k->def_s ? k->def_s : ""); break;
        case K_LOSSES:
            cfg->loss.n_loss_types = 1;
            cfg->loss.loss_type[0] = (dpo_loss_type_t)k->def_i;
            break;
        case K_WEIGHTS: cfg->loss.loss_weights[0] = k->def_f; break;  // one per loss type
        case K_BETAS:
            cfg->optim.beta1 = k->def_f;
            cfg->optim.beta2 = k->def_f2;
            break;
        }
    }
}

// ---------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------

#if defined(__GNUC__)
#define DPO_CFG_PRINTF_ATTR(a, b) __attribute__((format(printf, a, b)))
#else
#define DPO_CFG_PRINTF_ATTR(a, b)
#endif

static void errf(char *err, size_t err_len, const char *fmt, ...) DPO_CFG_PRINTF_ATTR(3, 4);

static void errf(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static const char *type_name(int t) {
    switch (t) {
    case CONFIG_TYPE_GROUP: return "a group";
    case CONFIG_TYPE_INT: return "an integer";
    case CONFIG_TYPE_INT64: return "a 64-bit integer";
    case CONFIG_TYPE_FLOAT: return "a float";
    case CONFIG_TYPE_STRING: return "a string";
    case CONFIG_TYPE_BOOL: return "a boolean";
    case CONFIG_TYPE_ARRAY: return "an array";
    case CONFIG_TYPE_LIST: return "a list";
    default: return "nothing";
    }
}

static bool is_number_type(int t) {
    return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT;
}

static bool is_name_char(int c) { return isalnum(c) || c == '_' || c == '-' || c == '*'; }

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

static bool ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return false;
    return *a == *b;
}

// Writes `s` as a libconfig string literal into dst; -1 when it does not fit.
static int quote_into(char *dst, size_t cap, const char *s) {
    size_t o = 0;
    if (cap < 3) return -1;
    dst[o++] = '"';
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char tmp[8];
        if (*p == '"' || *p == '\\') {
            tmp[0] = '\\';
            tmp[1] = (char)*p;
            tmp[2] = '\0';
        } else if (*p < 0x20 || *p == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02X", *p);
        } else {
            tmp[0] = (char)*p;
            tmp[1] = '\0';
        }
        size_t n = strlen(tmp);
        if (o + n + 2 > cap) return -1;
        memcpy(dst + o, tmp, n);
        o += n;
    }
    dst[o++] = '"';
    dst[o] = '\0';
    return 0;
}

// Shortest decimal form that reads back (through double, as libconfig does) to x,
// always with a '.' or an exponent so that libconfig types it as a float.
static void fmt_float(char *buf, size_t cap, float x) {
    if (x > -1e15f && x < 1e15f && x == (float)(long long)x) {  // 10000.0, not 1e+04
        snprintf(buf, cap, "%.1f", (double)x);
        return;
    }
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, cap, "%.*g", p, (double)x);
        if ((float)strtod(buf, NULL) == x) break;
    }
    if (!strpbrk(buf, ".eEnN")) {
        size_t n = strlen(buf);
        if (n + 3 <= cap) memcpy(buf + n, ".0", 3);
    }
}

// A strict integer token as libconfig writes them: [+-] (decimal | 0x hex) [L|LL].
// Gives the sign and magnitude; *overflow when the magnitude exceeds 64 bits.
static bool parse_int_token(const char *tok, bool *neg, unsigned long long *mag,
                            bool *overflow) {
    const char *p = tok;
    *neg = false;
    if (*p == '+' || *p == '-') *neg = (*p++ == '-');
    int base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    if (!(base == 16 ? isxdigit((unsigned char)*p) : isdigit((unsigned char)*p))) return false;
    errno = 0;
    char *end;
    *mag = strtoull(p, &end, base);
    *overflow = (errno == ERANGE);
    if (strcmp(end, "L") != 0 && strcmp(end, "LL") != 0 && *end != '\0') return false;
    return true;
}

// The text of the value of setting `name` on line `line` of `file` (for integers:
// libconfig 1.5 silently wraps integers beyond 32 bits, so the source text is
// re-read). Returns false when the token cannot be found unambiguously.
// `text`, when not NULL, is the source itself (config_load_string) and `file` only
// its name.
static bool raw_token_from_file(const char *file, const char *text, int line, const char *name,
                                char *tok, size_t cap) {
    if ((!file && !text) || line <= 0 || !name) return false;
    FILE *f = text ? fmemopen((void *)text, strlen(text), "r") : fopen(file, "r");
    if (!f) return false;
    char buf[4096];
    bool found = false;
    for (int l = 1; fgets(buf, sizeof buf, f); l++) {
        if (l < line) {
            // a line longer than the buffer spans several reads
            while (!strchr(buf, '\n') && fgets(buf, sizeof buf, f)) {
            }
            continue;
        }
        size_t nl = strlen(name);
        for (char *p = buf; (p = strstr(p, name)) != NULL; p += nl) {
            if (p > buf && is_name_char((unsigned char)p[-1])) continue;
            char *q = p + nl;
            if (is_name_char((unsigned char)*q)) continue;
            while (*q == ' ' || *q == '\t') q++;
            if (*q != '=' && *q != ':') continue;
            q++;
            while (*q == ' ' || *q == '\t') q++;
            size_t n = 0;
            while (isalnum((unsigned char)q[n]) || q[n] == '+' || q[n] == '-') n++;
            if (n == 0 || n >= cap) break;
            memcpy(tok, q, n);
            tok[n] = '\0';
            found = true;
            break;
        }
        break;
    }
    fclose(f);
    return found;
}

// ---------------------------------------------------------------------------------
// Suggestions for unknown names
// ---------------------------------------------------------------------------------

static int edit_distance(const char *a, const char *b) {
    enum { M = 128 };
    size_t na = strlen(a), nb = strlen(b);
    if (na >= M || nb >= M) return M;
    int prev[M + 1], cur[M + 1];
    for (size_t j = 0; j <= nb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (nb + 1));
    }
    return prev[nb];
}

static const char *leaf_of(const char *path) {
    const char *d = strrchr(path, '.');
    return d ? d + 1 : path;
}

// NeMo RL / TRL names that differ from ours.
static const struct {
    const char *from, *to;
} HINTS[] = {
    {"dpo.beta", "dpo.reference_policy_kl_penalty"},
    {"data.train_data_path", "data.dataset_path"},
    {"data.val_data_paths", "data.dataset_path"},
    {"policy.model.name", "policy.model_name"},
    {"policy.optimizer.name", "policy.optimizer.lr"},
    {"policy.scheduler.name", "policy.scheduler.type"},
    {"policy.optimizer.kwargs", "policy.optimizer"},
};

// The names of all groups ("policy", "policy.model", ...) into out; returns the count.
static int group_paths(char out[][64], int max) {
    int n = 0;
    for (int i = 0; i < NKEYS; i++) {
        const char *p = KEYS[i].path;
        for (const char *d = strchr(p, '.'); d; d = strchr(d + 1, '.')) {
            size_t len = (size_t)(d - p);
            if (len >= 64) continue;
            bool seen = false;
            for (int j = 0; j < n && !seen; j++)
                seen = strncmp(out[j], p, len) == 0 && out[j][len] == '\0';
            if (!seen && n < max) {
                memcpy(out[n], p, len);
                out[n][len] = '\0';
                n++;
            }
        }
    }
    return n;
}

// A " (did you mean 'x'?)" suffix, or "". Sections are matched against sections.
static void suggest(const char *path, bool section, char *out, size_t cap) {
    out[0] = '\0';
    const char *best = NULL;
    for (size_t i = 0; i < sizeof HINTS / sizeof HINTS[0]; i++)
        if (strcmp(HINTS[i].from, path) == 0) best = HINTS[i].to;
    if (section) {
        char groups[32][64];
        int ng = group_paths(groups, 32), bd = INT_MAX, bi = -1;
        for (int i = 0; i < ng && !best; i++) {
            int d = edit_distance(path, groups[i]);
            if (d < bd) {
                bd = d;
                bi = i;
            }
        }
        if (!best && bi >= 0 && bd <= 2) best = groups[bi];
        if (best) snprintf(out, cap, " (did you mean '%s'?)", best);
        return;
    }
    if (!best) {  // same leaf name in another group (e.g. NeMo's optimizer.kwargs.lr)
        const char *leaf = leaf_of(path);
        for (int i = 0; i < NKEYS && !best; i++)
            if (strcmp(leaf_of(KEYS[i].path), leaf) == 0) best = KEYS[i].path;
    }
    if (!best) {
        int bd = INT_MAX;
        for (int i = 0; i < NKEYS; i++) {
            int d = edit_distance(path, KEYS[i].path);
            if (d < bd) {
                bd = d;
                best = KEYS[i].path;
            }
        }
        int lim = (int)strlen(path) / 4;
        if (lim < 2) lim = 2;
        if (bd > lim) best = NULL;
    }
    if (best) snprintf(out, cap, " (did you mean '%s'?)", best);
}

// ---------------------------------------------------------------------------------
// Loading: one setter for file values and overrides
// ---------------------------------------------------------------------------------

typedef struct {
    const char *file;  // owned by the libconfig document (valid during config_load)
    int line;
    int override_idx;  // 1-based; 0 = not from an override
} origin_t;

typedef struct {
    dpo_config_t *cfg;
    char *err;
    size_t err_len;
    bool weights_set;
    int n_weights;
    origin_t origin[NKEYS];
    char **overrides;
    const char *text;  // config_load_string: the source text (else NULL)
} load_t;

// Reads a number (int or float setting) as double; false when not a number.
static bool get_number(const config_setting_t *s, double *d) {
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: *d = (double)config_setting_get_int64(s); return true;
    case CONFIG_TYPE_FLOAT: *d = config_setting_get_float(s); return true;
    default: return false;
    }
}

static bool float_ok(double d) { return d == d && d <= FLT_MAX && d >= -FLT_MAX; }

// Integer value of an int setting. libconfig 1.5 wraps integers beyond 32 bits (and
// saturates beyond 64), so the source token `raw` is parsed as well and used when it
// agrees with libconfig's value (low 32 bits equal, or libconfig's value is one of
// its overflow artifacts). Returns 0, or -1 when the value does not fit 64 bits.
static int int_value(const config_setting_t *s, const char *raw, bool *neg,
                     unsigned long long *mag) {
    long long v = config_setting_get_int64(s);
    *neg = v < 0;
    *mag = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    bool rneg, rover;
    unsigned long long rmag;
    if (!raw || !parse_int_token(raw, &rneg, &rmag, &rover)) return 0;
    unsigned long long rv = rneg ? 0ULL - rmag : rmag;
    bool agrees = (uint32_t)rv == (uint32_t)(unsigned long long)v || v == -1 || v == 0 ||
                  v == LLONG_MAX || v == LLONG_MIN;
    if (!agrees) return 0;  // not this setting's token: trust libconfig
    *neg = rneg && rmag != 0;
    *mag = rmag;
    return rover ? -1 : 0;
}

static int set_losses(load_t *L, const cfg_key_t *k, const config_setting_t *s,
                      const char *where) {
    dpo_config_t *c = L->cfg;
    int t = config_setting_type(s);
    int n;
    if (t == CONFIG_TYPE_STRING)
        n = 1;
    else if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST)
        n = config_setting_length(s);
    else {
        errf(L->err, L->err_len, "%s: %s: expected a loss name or a list of them, got %s",
             where, k->path, type_name(t));
        return -1;
    }
    if (n < 1 || n > DPO_MAX_LOSS_TYPES) {
        errf(L->err, L->err_len, "%s: %s: must name between 1 and %d losses, got %d", where,
             k->path, DPO_MAX_LOSS_TYPES, n);
        return -1;
    }
    dpo_loss_type_t types[DPO_MAX_LOSS_TYPES] = {0};
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = t == CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, i);
        if (config_setting_type(e) != CONFIG_TYPE_STRING) {
            errf(L->err, L->err_len, "%s: %s[%d]: expected a string, got %s", where, k->path, i,
                 type_name(config_setting_type(e)));
            return -1;
        }
        const char *name = config_setting_get_string(e);
        int found = -1;
        for (int j = 0; j < DPO_LOSS_TYPE_COUNT; j++)
            if (strcmp(name, LOSS_NAMES[j]) == 0) found = j;
        if (found < 0) {
            char names[128] = "";
            for (int j = 0; j < DPO_LOSS_TYPE_COUNT; j++) {
                if (j) strncat(names, ", ", sizeof names - strlen(names) - 1);
                strncat(names, LOSS_NAMES[j], sizeof names - strlen(names) - 1);
            }
            errf(L->err, L->err_len, "%s: %s: unknown loss '%s' (expected one of %s%s)", where,
                 k->path, name, names,
                 strcmp(name, "sft") == 0 ? "; for an SFT term set dpo.sft_loss_weight" : "");
            return -1;
        }
        types[i] = (dpo_loss_type_t)found;
    }
    memcpy(c->loss.loss_type, types, sizeof types);
    c->loss.n_loss_types = n;
    return 0;
}

static int set_float_list(load_t *L, const cfg_key_t *k, const config_setting_t *s,
                          const char *where, float *out, int min_n, int max_n, int *n_out) {
    int t = config_setting_type(s);
    int n = 1;
    if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST)
        n = config_setting_length(s);
    else if (!is_number_type(t) || min_n > 1) {
        if (min_n == max_n)
            errf(L->err, L->err_len, "%s: %s: expected a list of %d numbers, got %s", where,
                 k->path, min_n, type_name(t));
        else
            errf(L->err, L->err_len, "%s: %s: expected a list of numbers, got %s", where,
                 k->path, type_name(t));
        return -1;
    }
    if (n < min_n || n > max_n) {
        if (min_n == max_n)
            errf(L->err, L->err_len, "%s: %s: expected exactly %d numbers, got %d", where,
                 k->path, min_n, n);
        else
            errf(L->err, L->err_len, "%s: %s: expected between %d and %d numbers, got %d",
                 where, k->path, min_n, max_n, n);
        return -1;
    }
    float vals[DPO_MAX_LOSS_TYPES] = {0};
    for (int i = 0; i < n; i++) {
        const config_setting_t *e = (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST)
                                        ? config_setting_get_elem(s, i)
                                        : s;
        double d;
        if (!get_number(e, &d)) {
            errf(L->err, L->err_len, "%s: %s[%d]: expected a number, got %s", where, k->path, i,
                 type_name(config_setting_type(e)));
            return -1;
        }
        if (!float_ok(d)) {
            errf(L->err, L->err_len, "%s: %s[%d]: %g is not a finite 32-bit float", where,
                 k->path, i, d);
            return -1;
        }
        vals[i] = (float)d;
    }
    memcpy(out, vals, sizeof(float) * (size_t)max_n);
    *n_out = n;
    return 0;
}

// The accepted names as messages quote them: "a" or "b"; "a", "b" or "c"; or, for
// choices marked one_of, one of "a", "b", "c".
static void choices_text(const choices_t *ch, char *out, size_t cap) {
    size_t o = (size_t)snprintf(out, cap, "%s", ch->one_of ? "one of " : "");
    for (int i = 0; i < ch->count && o < cap; i++) {
        const char *sep = i == 0 ? "" : (ch->one_of || i < ch->count - 1) ? ", " : " or ";
        o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", sep, ch->names[i]);
    }
}

// Sets key k from libconfig setting s. `where` is "file:line" or "override '...'";
// `raw` is the source text of a scalar value (integers) or NULL.
static int set_key(load_t *L, const cfg_key_t *k, const config_setting_t *s,
                   const char *where, const char *raw) {
    dpo_config_t *c = L->cfg;
    int t = config_setting_type(s);
    switch (k->kind) {
    case K_INT:
    case K_U64: {
        if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
            if (t == CONFIG_TYPE_FLOAT)
                errf(L->err, L->err_len, "%s: %s: expected an integer, got a float (%g)", where,
                     k->path, config_setting_get_float(s));
            else
                errf(L->err, L->err_len, "%s: %s: expected an integer, got %s", where, k->path,
                     type_name(t));
            return -1;
        }
        bool neg;
        unsigned long long mag;
        int big = int_value(s, raw, &neg, &mag);
        if (k->kind == K_INT) {
            if (big || (!neg && mag > (unsigned long long)INT_MAX) ||
                (neg && mag > (unsigned long long)INT_MAX + 1ULL)) {
                errf(L->err, L->err_len, "%s: %s: %s is out of range for a 32-bit integer",
                     where, k->path, raw ? raw : "the value");
                return -1;
            }
            *(int *)field(c, k) = neg ? (int)(0LL - (long long)mag) : (int)mag;
        } else {
            if (neg) {
                errf(L->err, L->err_len, "%s: %s: must be >= 0, got %s", where, k->path,
                     raw ? raw : "a negative value");
                return -1;
            }
            if (big) {
                errf(L->err, L->err_len, "%s: %s: %s is out of range for a 64-bit integer",
                     where, k->path, raw);
                return -1;
            }
            *(uint64_t *)field(c, k) = (uint64_t)mag;
        }
        return 0;
    }
    case K_FLOAT: {
        double d;
        if (!get_number(s, &d)) {
            errf(L->err, L->err_len, "%s: %s: expected a number, got %s", where, k->path,
                 type_name(t));
            return -1;
        }
        if (!float_ok(d)) {
            errf(L->err, L->err_len, "%s: %s: %g is not a finite 32-bit float", where, k->path,
                 d);
            return -1;
        }
        *(float *)field(c, k) = (float)d;
        return 0;
    }
    case K_BOOL:
        if (t != CONFIG_TYPE_BOOL) {
            errf(L->err, L->err_len, "%s: %s: expected a boolean (true or false), got %s", where,
                 k->path, type_name(t));
            return -1;
        }
        *(bool *)field(c, k) = config_setting_get_bool(s) != 0;
        return 0;
    case K_STR:
    case K_ENUM: {
        if (t != CONFIG_TYPE_STRING) {
            errf(L->err, L->err_len, "%s: %s: expected a string, got %s", where, k->path,
                 type_name(t));
            return -1;
        }
        const char *v = config_setting_get_string(s);
        if (k->kind == K_ENUM) {
            if (k->size && strlen(v) >= k->size) {
                errf(L->err, L->err_len, "%s: %s: longer than %zu characters", where, k->path,
                     k->size - 1);
                return -1;
            }
            for (int i = 0; i < k->choices->count; i++)
                if (strcmp(v, k->choices->names[i]) == 0) {
                    *(int *)field(c, k) = i;
                    return 0;
                }
            char expected[256];
            choices_text(k->choices, expected, sizeof expected);
            errf(L->err, L->err_len, "%s: %s: expected %s, got \"%s\"", where, k->path, expected,
                 v);
            return -1;
        }
        if (strlen(v) >= k->size) {
            errf(L->err, L->err_len, "%s: %s: longer than %zu characters", where, k->path,
                 k->size - 1);
            return -1;
        }
        set_str((char *)field(c, k), k->size, v);
        return 0;
    }
    case K_LOSSES: return set_losses(L, k, s, where);
    case K_WEIGHTS: {
        int n;
        if (set_float_list(L, k, s, where, c->loss.loss_weights, 1, DPO_MAX_LOSS_TYPES, &n))
            return -1;
        L->weights_set = true;
        L->n_weights = n;
        return 0;
    }
    case K_BETAS: {
        float b[DPO_MAX_LOSS_TYPES];
        int n;
        if (set_float_list(L, k, s, where, b, 2, 2, &n)) return -1;
        c->optim.beta1 = b[0];
        c->optim.beta2 = b[1];
        return 0;
    }
    }
    return -1;
}

static int apply_group(load_t *L, const config_setting_t *g, const char *prefix,
                       const char *top_file) {
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        const config_setting_t *s = config_setting_get_elem(g, i);
        const char *name = config_setting_name(s);
        char path[256];
        if (!name) continue;  // (list elements have no name; groups' members always do)
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", name);
        const char *file = config_setting_source_file(s);
        if (!file) file = top_file;
        int line = config_setting_source_line(s);
        char where[DPO_PATH_MAX + 32];
        snprintf(where, sizeof where, "%s:%d", file, line);

        const cfg_key_t *k = find_key(path);
        if (k) {
            char raw[96];
            const char *rawp = NULL;
            if ((k->kind == K_INT || k->kind == K_U64) &&
                raw_token_from_file(file, file == top_file ? L->text : NULL, line, name, raw,
                                    sizeof raw))
                rawp = raw;
            if (set_key(L, k, s, where, rawp)) return -1;
            origin_t *o = &L->origin[k - KEYS];
            o->file = file;
            o->line = line;
            o->override_idx = 0;
        } else if (is_group_path(path)) {
            if (!config_setting_is_group(s)) {
                errf(L->err, L->err_len, "%s: %s: is a section and expects a group { ... }, got %s",
                     where, path, type_name(config_setting_type(s)));
                return -1;
            }
            if (apply_group(L, s, path, top_file)) return -1;
        } else {
            char hint[160];
            suggest(path, config_setting_is_group(s), hint, sizeof hint);
            errf(L->err, L->err_len, "%s: unknown %s '%s'%s", where,
                 config_setting_is_group(s) ? "section" : "key", path, hint);
            return -1;
        }
    }
    return 0;
}

// Splits a list value ("a,b", "[a, b]", "(\"a\",\"b\")") and writes the libconfig
// list "(item, item)" into out, quoting the items when `strings`. -1 on bad input.
static int list_literal(const char *value, bool strings, char *out, size_t cap,
                        char *why, size_t why_len) {
    size_t vlen = strlen(value);
    char *v = malloc(vlen + 1);
    if (!v) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    memcpy(v, value, vlen + 1);
    char *p = trim(v);
    size_t n = strlen(p);
    if (n >= 2 && ((p[0] == '[' && p[n - 1] == ']') || (p[0] == '(' && p[n - 1] == ')'))) {
        p[n - 1] = '\0';
        p = trim(p + 1);
    }
    size_t o = 0;
    out[o++] = '(';
    int count = 0;
    int rc = 0;
    if (*p == '\0') {
        snprintf(why, why_len, "empty list");
        rc = -1;
    }
    for (char *item = p; rc == 0 && item;) {
        char *comma = strchr(item, ',');
        if (comma) *comma = '\0';
        char *it = trim(item);
        size_t il = strlen(it);
        if (il >= 2 && ((it[0] == '"' && it[il - 1] == '"') || (it[0] == '\'' && it[il - 1] == '\''))) {
            it[il - 1] = '\0';
            it++;
        }
        if (*it == '\0') {
            snprintf(why, why_len, "empty entry %d", count);
            rc = -1;
            break;
        }
        char buf[512];
        if (strings) {
            if (quote_into(buf, sizeof buf, it)) {
                snprintf(why, why_len, "entry %d too long", count);
                rc = -1;
                break;
            }
        } else {
            // numbers only: keep libconfig from seeing anything else
            for (const char *q = it; *q; q++)
                if (!isalnum((unsigned char)*q) && *q != '.' && *q != '+' && *q != '-') {
                    snprintf(why, why_len, "entry %d ('%s') is not a number", count, it);
                    rc = -1;
                    break;
                }
            if (rc) break;
            snprintf(buf, sizeof buf, "%s", it);
        }
        size_t bl = strlen(buf);
        if (o + bl + 4 > cap) {
            snprintf(why, why_len, "too long");
            rc = -1;
            break;
        }
        if (count) out[o++] = ',';
        memcpy(out + o, buf, bl);
        o += bl;
        count++;
        item = comma ? comma + 1 : NULL;
    }
    out[o++] = ')';
    out[o] = '\0';
    free(v);
    return rc;
}

static int apply_override(load_t *L, const char *arg, int idx) {
    char where[DPO_PATH_MAX + 64];
    snprintf(where, sizeof where, "override '%s'", arg);
    const char *eq = strchr(arg, '=');
    if (!eq) {
        errf(L->err, L->err_len, "%s: expected section.key=value", where);
        return -1;
    }
    size_t klen = (size_t)(eq - arg);
    char path[256];
    if (klen >= sizeof path) klen = sizeof path - 1;
    memcpy(path, arg, klen);
    path[klen] = '\0';
    char *key = trim(path);
    const cfg_key_t *k = find_key(key);
    if (!k) {
        if (*key && is_group_path(key)) {
            errf(L->err, L->err_len, "%s: '%s' is a section; override one of its keys", where,
                 key);
        } else {
            char hint[160];
            suggest(key, false, hint, sizeof hint);
            errf(L->err, L->err_len, "%s: unknown key '%s'%s", where, key, hint);
        }
        return -1;
    }

    size_t vlen = strlen(eq + 1);
    char *vbuf = malloc(vlen + 1);
    size_t cap = 4 * vlen + 64;
    char *doc = malloc(cap);
    int rc = -1;
    config_t lc;
    config_init(&lc);
    if (!vbuf || !doc) {
        errf(L->err, L->err_len, "%s: out of memory", where);
        goto out;
    }
    memcpy(vbuf, eq + 1, vlen + 1);
    char *value = trim(vbuf);
    size_t n = strlen(value);

    // Build "v = <libconfig literal>;"
    char *lit = doc + 4;
    size_t litcap = cap - 8;
    memcpy(doc, "v = ", 4);
    switch (k->kind) {
    case K_INT:
    case K_U64:
    case K_FLOAT: {
        bool ok = n > 0;
        for (const char *q = value; *q; q++)
            if (!isalnum((unsigned char)*q) && *q != '.' && *q != '+' && *q != '-') ok = false;
        if (!ok) {
            errf(L->err, L->err_len, "%s: %s: expected %s, got '%s'", where, k->path,
                 k->kind == K_FLOAT ? "a number" : "an integer", value);
            goto out;
        }
        snprintf(lit, litcap, "%s", value);
        break;
    }
    case K_BOOL:
        if (ieq(value, "true") || ieq(value, "false")) {
            snprintf(lit, litcap, "%s", ieq(value, "true") ? "true" : "false");
        } else {
            errf(L->err, L->err_len, "%s: %s: expected a boolean (true or false), got '%s'",
                 where, k->path, value);
            goto out;
        }
        break;
    case K_STR:
    case K_ENUM:
        if (n >= 2 && value[0] == '"' && value[n - 1] == '"') {
            snprintf(lit, litcap, "%s", value);  // libconfig handles the escapes
        } else {
            if (n >= 2 && value[0] == '\'' && value[n - 1] == '\'') {
                value[n - 1] = '\0';
                value++;
            }
            if (quote_into(lit, litcap, value)) {
                errf(L->err, L->err_len, "%s: %s: value too long", where, k->path);
                goto out;
            }
        }
        break;
    case K_LOSSES:
    case K_WEIGHTS:
    case K_BETAS: {
        char why[256];
        if (list_literal(value, k->kind == K_LOSSES, lit, litcap, why, sizeof why)) {
            errf(L->err, L->err_len, "%s: %s: %s", where, k->path, why);
            goto out;
        }
        break;
    }
    }
    strcat(doc, ";");

    if (!config_read_string(&lc, doc)) {
        if (k->kind == K_INT || k->kind == K_U64 || k->kind == K_FLOAT)
            errf(L->err, L->err_len, "%s: %s: expected %s, got '%s'", where, k->path,
                 k->kind == K_FLOAT ? "a number" : "an integer", value);
        else
            errf(L->err, L->err_len, "%s: %s: cannot parse value '%s' (%s)", where, k->path,
                 value, config_error_text(&lc));
        goto out;
    }
    const config_setting_t *root = config_root_setting(&lc);
    const config_setting_t *s = config_lookup(&lc, "v");
    if (!s || config_setting_length(root) != 1) {
        errf(L->err, L->err_len, "%s: %s: cannot parse value '%s'", where, k->path, value);
        goto out;
    }
    if (set_key(L, k, s, where, (k->kind == K_INT || k->kind == K_U64) ? value : NULL)) goto out;
    origin_t *o = &L->origin[k - KEYS];
    o->file = NULL;
    o->line = 0;
    o->override_idx = idx + 1;
    rc = 0;
out:
    config_destroy(&lc);
    free(vbuf);
    free(doc);
    return rc;
}

// ---------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------

typedef struct {
    char *err;
    size_t err_len;
    const char *key;  // the key the message is about
} verr_t;

static int vfail(verr_t *v, const char *key, const char *fmt, ...) DPO_CFG_PRINTF_ATTR(3, 4);
static int vfail(verr_t *v, const char *key, const char *fmt, ...) {
    v->key = key;
    int n = snprintf(v->err, v->err_len, "%s: ", key);
    if (n >= 0 && (size_t)n < v->err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->err + n, v->err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

#define REQ(cond, key, ...)                                                               \
    do {                                                                                  \
        if (!(cond)) return vfail(v, key, __VA_ARGS__);                                   \
    } while (0)
#define POS_INT(key, x) REQ((x) > 0, key, "must be > 0, got %d", (x))

// "be > 0", "be >= 2", "lie in (0, 1]", or the row's own text.
static void range_text(const cfg_key_t *k, char *out, size_t cap) {
    if (k->range_msg)
        snprintf(out, cap, "%s", k->range_msg);
    else if (k->range & R_MAX)
        snprintf(out, cap, "lie in %c%g, %g%c", (k->range & R_MIN_EXCL) ? '(' : '[', k->min,
                 k->max, (k->range & R_MAX_EXCL) ? ')' : ']');
    else
        snprintf(out, cap, "be %s %g", (k->range & R_MIN_EXCL) ? ">" : ">=", k->min);
}

// Whether x lies in row k's range; floats must be finite too (NaN never passes).
static bool in_range(const cfg_key_t *k, double x, bool is_float) {
    if ((k->range & R_MIN) && !((k->range & R_MIN_EXCL) ? x > k->min : x >= k->min)) return false;
    if (k->range & R_MAX) return (k->range & R_MAX_EXCL) ? x < k->max : x <= k->max;
    return !is_float || (x >= -FLT_MAX && x <= FLT_MAX);
}

// The checks that one row of the table describes: strings terminated, enums valid,
// values in the row's range.
static int validate_key(const dpo_config_t *c, const cfg_key_t *k, verr_t *v) {
    char rt[160];
    range_text(k, rt, sizeof rt);
    switch (k->kind) {
    case K_STR:
        // the struct may come from elsewhere than config_load (a test, a checkpoint)
        REQ(memchr(cfield(c, k), 0, k->size), k->path, "not a terminated string");
        return 0;
    case K_ENUM: {
        int e = *(const int *)cfield(c, k);
        REQ(e >= 0 && e < k->choices->count, k->path, "invalid value %d", e);
        return 0;
    }
    case K_INT: {
        int x = *(const int *)cfield(c, k);
        REQ(!k->range || in_range(k, (double)x, false), k->path, "must %s, got %d", rt, x);
        return 0;
    }
    case K_FLOAT: {
        float x = *(const float *)cfield(c, k);
        REQ(!k->range || in_range(k, (double)x, true), k->path, "must %s, got %g", rt, (double)x);
        return 0;
    }
    case K_U64:
    case K_BOOL: return 0;
    case K_LOSSES: {
        const dpo_loss_params_t *l = &c->loss;
        REQ(l->n_loss_types >= 1 && l->n_loss_types <= DPO_MAX_LOSS_TYPES, k->path,
            "must name between 1 and %d losses, got %d", DPO_MAX_LOSS_TYPES, l->n_loss_types);
        for (int i = 0; i < l->n_loss_types; i++)
            REQ((int)l->loss_type[i] >= 0 && l->loss_type[i] < DPO_LOSS_TYPE_COUNT, k->path,
                "entry %d has the invalid value %d", i, (int)l->loss_type[i]);
        return 0;
    }
    case K_WEIGHTS: {
        const dpo_loss_params_t *l = &c->loss;
        for (int i = 0; i < l->n_loss_types && i < DPO_MAX_LOSS_TYPES; i++)
            REQ(in_range(k, (double)l->loss_weights[i], true), k->path,
                "entry %d must %s, got %g", i, rt, (double)l->loss_weights[i]);
        return 0;
    }
    case K_BETAS: {
        const dpo_optim_params_t *o = &c->optim;
        REQ(in_range(k, (double)o->beta1, true) && in_range(k, (double)o->beta2, true), k->path,
            "both must %s, got [%g, %g]", rt, (double)o->beta1, (double)o->beta2);
        return 0;
    }
    }
    return 0;
}

static int validate_impl(const dpo_config_t *c, verr_t *v) {
    // first every row's own checks, in table order
    for (int i = 0; i < NKEYS; i++)
        if (validate_key(c, &KEYS[i], v)) return -1;

    // then the rules between keys
    const dpo_model_config_t *m = &c->model;
    REQ(m->num_attention_heads % m->num_key_value_heads == 0, "policy.model.num_key_value_heads",
        "must divide policy.model.num_attention_heads (%d), got %d", m->num_attention_heads,
        m->num_key_value_heads);
    if (m->head_dim == 0) {
        REQ(m->hidden_size % m->num_attention_heads == 0, "policy.model.hidden_size",
            "must be divisible by policy.model.num_attention_heads (%d) when "
            "policy.model.head_dim is 0 (derived), got %d",
            m->num_attention_heads, m->hidden_size);
        REQ((m->hidden_size / m->num_attention_heads) % 2 == 0, "policy.model.hidden_size",
            "hidden_size / num_attention_heads = %d must be even (RoPE rotates pairs of "
            "dimensions)",
            m->hidden_size / m->num_attention_heads);
    } else {
        REQ(m->head_dim % 2 == 0, "policy.model.head_dim",
            "must be even (RoPE rotates pairs of dimensions), got %d", m->head_dim);
    }

    REQ(c->train_global_batch_size % c->train_micro_batch_size == 0,
        "policy.train_micro_batch_size", "must divide policy.train_global_batch_size (%d), got %d",
        c->train_global_batch_size, c->train_micro_batch_size);

    const dpo_loss_params_t *l = &c->loss;
    REQ(l->preference_loss_weight > 0.0f || l->sft_loss_weight > 0.0f,
        "dpo.preference_loss_weight", "is 0 and so is dpo.sft_loss_weight: nothing to train");
    REQ(!(l->reference_free && c->reference_model[0]), "dpo.reference_model",
        "is set (\"%s\") but dpo.reference_free is true", c->reference_model);
    REQ(!(l->reference_free && c->precomputed_reference_logprobs),
        "dpo.precomputed_reference_logprobs", "is true but dpo.reference_free is true");
    REQ(!(c->precomputed_reference_logprobs && c->reference_model[0]), "dpo.reference_model",
        "is set (\"%s\") but dpo.precomputed_reference_logprobs is true (the dataset's stored "
        "reference log-probs are used)",
        c->reference_model);

    REQ(c->dataset_path[0], "data.dataset_path",
        "is required (the HDF5 dataset file; see doc/data-format.md)");

    if (c->ckpt_enabled) {
        REQ(c->checkpoint_dir[0], "checkpointing.checkpoint_dir",
            "must be set when checkpointing.enabled is true");
        POS_INT("checkpointing.save_period", c->save_period);
    } else {
        REQ(c->save_period >= 0, "checkpointing.save_period", "must be >= 0, got %d",
            c->save_period);
    }
    REQ(!(c->keep_top_k > 0 && !c->metric_name[0]), "checkpointing.keep_top_k",
        "is %d, which needs checkpointing.metric_name to rank checkpoints by (e.g. "
        "\"val:heldout/loss\")",
        c->keep_top_k);
    if (c->metric_name[0]) {
        const char *mn = c->metric_name;
        const char *slash = strchr(mn, '/');
        REQ(strncmp(mn, "val:", 4) == 0 && slash && slash > mn + 4 && slash[1] &&
                !strchr(slash + 1, '/'),
            "checkpointing.metric_name",
            "expected \"val:<set>/<metric>\" (e.g. \"val:heldout/loss\"), got \"%s\"", mn);
    }
    REQ(c->log_dir[0], "logger.log_dir", "must not be empty");

#ifndef DPO_HAVE_CUDA
    if (c->backend == DPO_BACKEND_CUDA)
        return vfail(v, "cluster.backend",
                     "\"cuda\": no CUDA backend in this build (it was configured without "
                     "CUDA/NCCL); use \"cpu\" or rebuild with CUDA");
#endif
    // cluster.matmul_precision is checked (by its row) on the CPU backend too, which
    // ignores it, so that a typo never waits for a GPU run.
    return 0;
}

int config_validate(const dpo_config_t *cfg, char *err, size_t err_len) {
    char local[64];
    verr_t v = {err && err_len ? err : local, err && err_len ? err_len : sizeof local, NULL};
    return validate_impl(cfg, &v);
}

// ---------------------------------------------------------------------------------
// config_load
// ---------------------------------------------------------------------------------

// Prefixes the message in err with where key (by path) was last set, if anywhere.
static void prefix_origin(const load_t *L, const char *path) {
    const cfg_key_t *k = path ? find_key(path) : NULL;
    if (!k) return;
    const origin_t *o = &L->origin[k - KEYS];
    char pre[DPO_PATH_MAX + 64];
    if (o->override_idx)
        snprintf(pre, sizeof pre, "override '%s'", L->overrides[o->override_idx - 1]);
    else if (o->file)
        snprintf(pre, sizeof pre, "%s:%d", o->file, o->line);
    else
        return;
    size_t msg_len = strlen(L->err);
    char *msg = malloc(msg_len + 1);
    if (!msg) return;
    memcpy(msg, L->err, msg_len + 1);
    snprintf(L->err, L->err_len, "%s: %s", pre, msg);
    free(msg);
}

// config_load's body; with `text`, that text is parsed instead of the file and `path`
// only names it in messages.
static int load_impl(dpo_config_t *cfg, const char *path, const char *text, int n_overrides,
                     char **overrides, char *err, size_t err_len) {
    char local_err[512];
    if (!err || !err_len) {
        err = local_err;
        err_len = sizeof local_err;
    }
    err[0] = '\0';
    load_t *L = calloc(1, sizeof *L);
    if (!L) {
        errf(err, err_len, "out of memory");
        return -1;
    }
    L->cfg = cfg;
    L->err = err;
    L->err_len = err_len;
    L->overrides = overrides;
    L->text = text;
    config_defaults(cfg);

    int rc = -1;
    config_t lc;
    config_init(&lc);
    if (text) {
        if (!config_read_string(&lc, text)) {
            errf(err, err_len, "%s:%d: %s", path, config_error_line(&lc), config_error_text(&lc));
            goto out;
        }
        if (apply_group(L, config_root_setting(&lc), "", path)) goto out;
    } else if (path && *path) {
        FILE *f = fopen(path, "r");
        if (!f) {
            errf(err, err_len, "cannot open config file '%s': %s", path, strerror(errno));
            goto out;
        }
        fclose(f);
        // @include paths are relative to the including file's directory
        size_t pl = strlen(path);
        char *dir = malloc(pl + 2);
        if (!dir) {
            errf(err, err_len, "out of memory");
            goto out;
        }
        memcpy(dir, path, pl + 1);
        char *slash = strrchr(dir, '/');
        if (slash == dir)
            dir[1] = '\0';
        else if (slash)
            *slash = '\0';
        else
            strcpy(dir, ".");
        config_set_include_dir(&lc, dir);
        free(dir);
        errno = 0;
        if (!config_read_file(&lc, path)) {
            if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
                errf(err, err_len, "cannot read config file '%s': %s", path,
                     errno ? strerror(errno) : "I/O error");
            else
                errf(err, err_len, "%s:%d: %s", config_error_file(&lc) ? config_error_file(&lc) : path,
                     config_error_line(&lc), config_error_text(&lc));
            goto out;
        }
        if (apply_group(L, config_root_setting(&lc), "", path)) goto out;
    }
    for (int i = 0; i < n_overrides; i++)
        if (apply_override(L, overrides[i], i)) goto out;

    // one weight per loss: all 1 unless given
    dpo_loss_params_t *lp = &cfg->loss;
    if (!L->weights_set) {
        float w = find_key("dpo.loss_weights")->def_f;
        memset(lp->loss_weights, 0, sizeof lp->loss_weights);
        for (int i = 0; i < lp->n_loss_types; i++) lp->loss_weights[i] = w;
    } else if (L->n_weights != lp->n_loss_types) {
        errf(err, err_len, "dpo.loss_weights: has %d entr%s but dpo.loss_type names %d loss%s "
             "(give one weight per loss, or leave dpo.loss_weights out for all 1)",
             L->n_weights, L->n_weights == 1 ? "y" : "ies", lp->n_loss_types,
             lp->n_loss_types == 1 ? "" : "es");
        prefix_origin(L, "dpo.loss_weights");
        goto out;
    }

    verr_t v = {err, err_len, NULL};
    if (validate_impl(cfg, &v)) {
        prefix_origin(L, v.key);
        goto out;
    }
    if (cfg->model.head_dim == 0)
        cfg->model.head_dim = cfg->model.hidden_size / cfg->model.num_attention_heads;
    rc = 0;
out:
    config_destroy(&lc);
    free(L);
    return rc;
}

int config_load(dpo_config_t *cfg, const char *path, int n_overrides, char **overrides,
                char *err, size_t err_len) {
    return load_impl(cfg, path, NULL, n_overrides, overrides, err, err_len);
}

int config_load_string(dpo_config_t *cfg, const char *text, const char *name, char *err,
                       size_t err_len) {
    return load_impl(cfg, name ? name : "(configuration text)", text ? text : "", 0, NULL, err,
                     err_len);
}

// ---------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------

static void write_value(const dpo_config_t *c, const cfg_key_t *k, FILE *f) {
    char buf[4 * DPO_PATH_MAX + 8];
    switch (k->kind) {
    case K_INT: fprintf(f, "%d", *(const int *)cfield(c, k)); break;
    case K_U64: {
        uint64_t u = *(const uint64_t *)cfield(c, k);
        fprintf(f, "%" PRIu64 "%s", u, u > (uint64_t)INT_MAX ? "L" : "");
        break;
    }
    case K_FLOAT:
        fmt_float(buf, sizeof buf, *(const float *)cfield(c, k));
        fputs(buf, f);
        break;
    case K_BOOL: fputs(*(const bool *)cfield(c, k) ? "true" : "false", f); break;
    case K_STR:
        if (quote_into(buf, sizeof buf, (const char *)cfield(c, k)) == 0) fputs(buf, f);
        break;
    case K_ENUM: {
        int e = *(const int *)cfield(c, k);
        fprintf(f, "\"%s\"", e >= 0 && e < k->choices->count ? k->choices->names[e] : "invalid");
        break;
    }
    case K_LOSSES:
        fputc('[', f);
        for (int i = 0; i < c->loss.n_loss_types && i < DPO_MAX_LOSS_TYPES; i++)
            fprintf(f, "%s\"%s\"", i ? ", " : "", loss_type_name(c->loss.loss_type[i]));
        fputc(']', f);
        break;
    case K_WEIGHTS:
        fputc('[', f);
        for (int i = 0; i < c->loss.n_loss_types && i < DPO_MAX_LOSS_TYPES; i++) {
            fmt_float(buf, sizeof buf, c->loss.loss_weights[i]);
            fprintf(f, "%s%s", i ? ", " : "", buf);
        }
        fputc(']', f);
        break;
    case K_BETAS: {
        char b2[48];
        fmt_float(buf, sizeof buf, c->optim.beta1);
        fmt_float(b2, sizeof b2, c->optim.beta2);
        fprintf(f, "[%s, %s]", buf, b2);
        break;
    }
    }
}

void config_write_cfg(const dpo_config_t *cfg, FILE *f) {
    char open[PATH_DEPTH_MAX][64];
    int depth = 0;
    fputs("# dpo_hpc configuration (libconfig syntax; every key is described in "
          "doc/config.md)\n",
          f);
    for (int i = 0; i < NKEYS; i++) {
        const cfg_key_t *k = &KEYS[i];
        char comps[PATH_DEPTH_MAX][64];
        int nc = 0;
        for (const char *p = k->path; *p && nc < PATH_DEPTH_MAX;) {
            const char *d = strchr(p, '.');
            size_t n = d ? (size_t)(d - p) : strlen(p);
            if (n >= sizeof comps[0]) n = sizeof comps[0] - 1;
            memcpy(comps[nc], p, n);
            comps[nc][n] = '\0';
            nc++;
            p = d ? d + 1 : p + n;
        }
        int ng = nc - 1;  // groups above the key
        int common = 0;
        while (common < depth && common < ng && strcmp(open[common], comps[common]) == 0) common++;
        while (depth > common) {
            depth--;
            fprintf(f, "%*s};\n", 2 * depth, "");
            if (depth == 0) fputc('\n', f);
        }
        while (depth < ng) {
            fprintf(f, "%*s%s = {\n", 2 * depth, "", comps[depth]);
            memcpy(open[depth], comps[depth], sizeof open[0]);
            depth++;
        }
        fprintf(f, "%*s%s = ", 2 * depth, "", comps[nc - 1]);
        write_value(cfg, k, f);
        fputs(";\n", f);
    }
    while (depth > 0) {
        depth--;
        fprintf(f, "%*s};\n", 2 * depth, "");
    }
}

char *config_to_string(const dpo_config_t *cfg) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) return NULL;
    config_write_cfg(cfg, f);
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static const char *kind_name(kind_t k) {
    switch (k) {
    case K_INT: return "int";
    case K_U64: return "uint64";
    case K_FLOAT: return "float";
    case K_BOOL: return "bool";
    case K_STR: return "string";
    case K_ENUM: return "enum";
    case K_LOSSES: return "loss list";
    case K_WEIGHTS: return "float list";
    case K_BETAS: return "2 floats";
    }
    return "?";
}

void config_write_keys(FILE *f) {
    dpo_config_t d;
    config_defaults(&d);
    for (int i = 0; i < NKEYS; i++) {
        const cfg_key_t *k = &KEYS[i];
        fprintf(f, "%s (%s) = ", k->path, kind_name(k->kind));
        write_value(&d, k, f);
        if (k->kind == K_ENUM) {
            char ch[256];
            choices_text(k->choices, ch, sizeof ch);
            fprintf(f, "; %s", ch);
        } else if (k->range) {
            char rt[160];
            range_text(k, rt, sizeof rt);
            fprintf(f, "; must %s", rt);
        }
        fprintf(f, "; %s\n", k->doc ? k->doc : "");
    }
}

// ---------------------------------------------------------------------------------
// Rank 0 loads, everyone receives
// ---------------------------------------------------------------------------------

// Every rank gets rank 0's status and message; on failure each rank that failed has
// printed nothing yet: rank 0 prints the message (or the first failing rank does, when
// rank 0 succeeded), and every rank exits 1 after MPI_Finalize.
static void exit_if_failed(bool mpi, int rank, int my_status, const char *my_msg) {
    int any = my_status != 0, first = my_status != 0 ? rank : INT_MAX;
    if (mpi) {
        int in[2] = {any, first}, out[2];
        MPI_Allreduce(&in[0], &out[0], 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        MPI_Allreduce(&in[1], &out[1], 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        any = out[0];
        first = out[1];
    }
    if (!any) return;
    if (rank == first) {
        fflush(stdout);
        fprintf(stderr, "dpo_hpc: error: %s\n", my_msg);
        fflush(stderr);
    }
    if (mpi) MPI_Finalize();
    exit(1);
}

void config_load_bcast(dpo_config_t *cfg, const char *path, int n_overrides, char **overrides) {
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    bool mpi = initialized && !finalized;
    int rank = 0, size = 1;
    if (mpi) {
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
    }

    // rank 0 loads and validates; its failure is everyone's
    char msg[2048] = "";
    int status = 0;
    if (rank == 0) status = config_load(cfg, path, n_overrides, overrides, msg, sizeof msg);
    exit_if_failed(mpi, rank, status, msg);
    if (!mpi || size == 1) return;

    // then its configuration travels as text, which every other rank parses back
    char *text = NULL;
    long long len = 0;
    if (rank == 0) {
        text = config_to_string(cfg);
        len = text ? (long long)strlen(text) + 1 : -1;
    }
    MPI_Bcast(&len, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD);
    if (len < 0 || len > INT_MAX) {
        snprintf(msg, sizeof msg, "cannot write the configuration as text for the other ranks");
        exit_if_failed(mpi, rank, 1, msg);  // (every rank fails here)
    }
    if (rank != 0) text = malloc((size_t)len);
    status = text ? 0 : -1;
    if (!text) snprintf(msg, sizeof msg, "rank %d: out of memory for the configuration", rank);
    exit_if_failed(mpi, rank, status, msg);
    MPI_Bcast(text, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank != 0) {
        char name[64];
        snprintf(name, sizeof name, "(configuration from rank 0)");
        char err[1800];
        status = config_load_string(cfg, text, name, err, sizeof err);
        if (status)
            snprintf(msg, sizeof msg, "rank %d: the configuration broadcast by rank 0 does not "
                     "load: %s", rank, err);
        // and it reads back to the same text
        char *again = status ? NULL : config_to_string(cfg);
        if (!status && (!again || strcmp(again, text) != 0)) {
            status = -1;
            snprintf(msg, sizeof msg, "rank %d: the configuration broadcast by rank 0 does not "
                     "read back to the same text", rank);
        }
        free(again);
    }
    free(text);
    exit_if_failed(mpi, rank, status, msg);
}
