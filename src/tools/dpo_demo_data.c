// dpo_demo_data.c — generates the demo's preference data: integer addition with a
// verifiable answer, on a byte-level vocabulary (ids 0..255 are bytes, 256 = <bos>,
// 257 = <eos>; vocab_size 258).
//
//   prompt   = <bos> "a+b="            (ASCII digits)
//   chosen   = digits of a+b, <eos>
//   rejected = the sum with ONE digit changed by +-1, <eos>   (a near miss)
//
// A problem (a, b) belongs to the training or the held-out side by a fixed hash of
// (a, b) (15% held out, independent of --seed), so validation problems never appear
// in training. Splits: "train", and validation sets "heldout" (random held-out
// problems) and "heldout_carry" (held-out problems whose addition carries).
//
// Two outputs: --out writes the HDF5 dataset directly; --jsonl DIR writes the same
// problems as JSONL records {"prompt": "07+45=", "chosen": "052", "rejected": "053"}
// (one file per split) plus DIR/tokenizer/ — a Hugging Face tokenizer.json for the
// same byte-level vocabulary — so that dpo_prep makes the dataset, as a user's data
// would be made. Both give the same token ids (tests/demo_data_jsonl.sh).
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "dpo/dataset.h"
#include "dpo/error.h"
#include "dpo/program.h"
#include "dpo/rng.h"
#include "dpo/util.h"

#define TOK_BOS 256
#define TOK_EOS 257
#define VOCAB 258
#define TOKENIZER_ID "bytes+bos+eos-v1"
#define HELDOUT_PERMILLE 150  // 15% of problems are validation-only
#define MAX_OPERAND_LIMIT 1000000000000LL  // sums stay below 2e12: 13 digits
#define POOL_LIMIT ((int64_t)1 << 22)      // enumerate held-out problems up to this many
#define MAX_SEQ 64

typedef struct {
    const char *out, *jsonl_dir;
    int64_t train_pairs, val_pairs, max_operand;
    uint64_t seed;
    bool near_miss_last;
    int width;  // operand digits when zero-padded (0 = natural width)
} opts_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: dpo_demo_data --out PATH | --jsonl DIR [options]\n"
            "Writes the demo preference dataset (integer addition, byte-level vocabulary).\n"
            "  --out PATH            output HDF5 file\n"
            "  --jsonl DIR           instead: DIR/{train,heldout,heldout_carry}.jsonl and a\n"
            "                        byte-level Hugging Face tokenizer in DIR/tokenizer, for dpo_prep\n"
            "  --train-pairs N       training pairs (default 20000)\n"
            "  --val-pairs M         pairs in each validation set (default 500)\n"
            "  --max-operand K       operands uniform in 0..K (default 99, at most %lld)\n"
            "  --seed S              random seed (default 1234)\n"
            "  --near-miss last|any  digit of the sum the rejected answer changes (default any)\n"
            "  --digits fixed|natural  fixed (default): operands zero-padded to the width of K\n"
            "                        and the sum to one digit more (07+45=052), so each answer\n"
            "                        digit sits at a fixed distance from its operand digits\n"
            "  --help, --version     this text; the program's version\n",
            (long long)MAX_OPERAND_LIMIT);
}

DPO_NORETURN static void bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "dpo_demo_data: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n");
    usage(stderr);
    exit(2);
}

static int64_t parse_int(const char *opt, const char *s, int64_t lo, int64_t hi) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "dpo_demo_data: %s expects an integer in [%lld, %lld], got \"%s\"\n", opt,
                (long long)lo, (long long)hi, s);
        usage(stderr);
        exit(2);
    }
    return v;
}

static void parse_args(int argc, char **argv, opts_t *o) {
    *o = (opts_t){.out = NULL, .jsonl_dir = NULL, .train_pairs = 20000, .val_pairs = 500, .max_operand = 99,
                  .seed = 1234, .near_miss_last = false, .width = -1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (dpo_version_option(a, true)) exit(0);
        if (strncmp(a, "--", 2) != 0) bad_usage("unexpected argument \"%s\"", a);
        char key[64], *val;
        int rc = util_option(argc, argv, &i, key, sizeof key, &val);
        if (rc == -1) bad_usage("unknown option \"%s\"", a);
        if (rc == -2) bad_usage("option %s needs a value", a);
        if (strcmp(key, "--out") == 0) {
            if (!val[0]) bad_usage("%s needs a non-empty path", key);
            o->out = val;
        } else if (strcmp(key, "--jsonl") == 0) {
            if (!val[0]) bad_usage("%s needs a non-empty path", key);
            o->jsonl_dir = val;
        } else if (strcmp(key, "--train-pairs") == 0) {
            o->train_pairs = parse_int(key, val, 1, INT32_MAX);
        } else if (strcmp(key, "--val-pairs") == 0) {
            o->val_pairs = parse_int(key, val, 0, INT32_MAX);
        } else if (strcmp(key, "--max-operand") == 0) {
            o->max_operand = parse_int(key, val, 0, MAX_OPERAND_LIMIT);
        } else if (strcmp(key, "--seed") == 0) {
            char *end;
            errno = 0;
            unsigned long long s = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-') bad_usage("--seed expects a non-negative integer, got \"%s\"", val);
            o->seed = s;
        } else if (strcmp(key, "--near-miss") == 0) {
            if (strcmp(val, "last") == 0)
                o->near_miss_last = true;
            else if (strcmp(val, "any") == 0)
                o->near_miss_last = false;
            else
                bad_usage("--near-miss expects \"last\" or \"any\", got \"%s\"", val);
        } else if (strcmp(key, "--digits") == 0) {
            if (strcmp(val, "fixed") == 0)
                o->width = -1;  // resolved from --max-operand below
            else if (strcmp(val, "natural") == 0)
                o->width = 0;
            else
                bad_usage("--digits expects \"fixed\" or \"natural\", got \"%s\"", val);
        } else {
            bad_usage("unknown option \"%s\"", key);
        }
    }
    if (!o->out == !o->jsonl_dir) bad_usage("%s", "give one of --out PATH and --jsonl DIR");
    if (o->width < 0) o->width = snprintf(NULL, 0, "%lld", (long long)o->max_operand);
}

// ---- the problems ----

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Fixed rule (independent of the seed): the held-out side is stable across runs.
static bool is_heldout(int64_t a, int64_t b) {
    uint64_t h = mix64((uint64_t)a * 0x9E3779B97F4A7C15ull ^ mix64((uint64_t)b + 0x632BE59BD9B4E019ull));
    return h % 1000 < HELDOUT_PERMILLE;
}

static bool has_carry(int64_t a, int64_t b) {
    for (; a > 0 || b > 0; a /= 10, b /= 10)
        if (a % 10 + b % 10 >= 10) return true;
    return false;
}

static int64_t uniform_int(dpo_rng_t *r, int64_t n) { return (int64_t)(rng_next(r) % (uint64_t)n); }

// Appends the decimal digits of v, zero-padded to `width` (0 = natural), as byte tokens.
static int put_number(int32_t *t, int n, int64_t v, int width) {
    char s[32];
    int len = snprintf(s, sizeof s, "%0*lld", width, (long long)v);
    for (int i = 0; i < len; i++) t[n++] = (unsigned char)s[i];
    return n;
}

// The sum with one digit changed by +-1: never the correct sum, never negative,
// never a leading zero. Candidate (digit, sign) pairs are drawn uniformly.
static int64_t near_miss(dpo_rng_t *r, int64_t sum, bool last_only, int width) {
    char s[32];
    int len = snprintf(s, sizeof s, "%0*lld", width, (long long)sum);
    int cand_pos[64], cand_delta[64], nc = 0;
    for (int p = last_only ? len - 1 : 0; p < len; p++) {
        for (int delta = -1; delta <= 1; delta += 2) {
            int d = s[p] - '0' + delta;
            if (d < 0 || d > 9) continue;
            if (width == 0 && p == 0 && d == 0 && len > 1) continue;  // a leading zero
            cand_pos[nc] = p;
            cand_delta[nc] = delta;
            nc++;
        }
    }
    // nc >= 1: the last digit d can always move to d+1 (d < 9) or d-1 (d > 0)
    int k = (int)uniform_int(r, nc);
    s[cand_pos[k]] = (char)(s[cand_pos[k]] + cand_delta[k]);
    return strtoll(s, NULL, 10);
}


// ---- where the pairs go: the HDF5 writer (--out) or JSONL files (--jsonl) ----

typedef struct {
    dataset_writer_t *w;
    const char *dir;
    FILE *f;                      // current split's JSONL file (written as .tmp)
    char path[1200], tmp[1210];
} sink_t;

static int sink_end_split(sink_t *s, char *err, size_t err_len) {
    if (!s->f) return 0;
    int bad = ferror(s->f) | fclose(s->f);
    s->f = NULL;
    if (bad || rename(s->tmp, s->path) != 0) {
        snprintf(err, err_len, "%s: write failed: %s", s->tmp, strerror(errno));
        unlink(s->tmp);
        return -1;
    }
    return 0;
}

static int sink_begin_split(sink_t *s, const char *name, char *err, size_t err_len) {
    if (s->w) return dataset_writer_begin_split(s->w, name);
    if (sink_end_split(s, err, err_len) < 0) return -1;
    snprintf(s->path, sizeof s->path, "%s/%s.jsonl", s->dir, name);
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp", s->path);
    s->f = fopen(s->tmp, "w");
    if (!s->f) {
        snprintf(err, err_len, "%s: cannot create: %s", s->tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static void sink_attr(sink_t *s, const char *key, int64_t v) {
    if (s->w) dataset_writer_split_attr(s->w, key, v);
}

// chosen/rejected: <bos> prompt bytes | answer bytes <eos>, as token ids.
static int sink_pair(sink_t *s, const int32_t *chosen, int nc, const int32_t *rejected, int nr,
                     int prompt_len) {
    if (s->w) return dataset_writer_add_pair(s->w, chosen, nc, prompt_len, rejected, nr, prompt_len);
    char text[3][MAX_SEQ + 1];
    const int32_t *src[3] = {chosen + 1, chosen + prompt_len, rejected + prompt_len};
    int len[3] = {prompt_len - 1, nc - prompt_len - 1, nr - prompt_len - 1};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < len[k]; i++) text[k][i] = (char)src[k][i];  // ASCII digits, '+', '='
        text[k][len[k]] = '\0';
    }
    return fprintf(s->f, "{\"prompt\": \"%s\", \"chosen\": \"%s\", \"rejected\": \"%s\"}\n", text[0],
                   text[1], text[2]) < 0 ? -1 : 0;
}

static void sink_abort(sink_t *s) {
    if (s->w) dataset_writer_abort(s->w);
    if (s->f) {
        fclose(s->f);
        unlink(s->tmp);
    }
}

// GPT-2's byte-level alphabet: printable bytes stand for themselves, the others
// (controls, space, 0x7f-0xa0, 0xad) for code points 256, 257, ... in byte order.
static int byte_level_char(int b, char out[3]) {
    int cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))) {
        int k = 0;
        for (int x = 0; x < b; x++)
            k += !((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255));
        cp = 256 + k;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
    return 0;
}

static json_t *added_token(int id, const char *content) {
    return json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", id, "content", content,
                     "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1);
}

// DIR/tokenizer/tokenizer.json (+ tokenizer_config.json): byte-level BPE without
// merges, ids 0..255 = bytes, 256 = <bos>, 257 = <eos> — the demo's vocabulary.
static int write_tokenizer(const char *dir, char *err, size_t err_len) {
    char tdir[1200], path[1300];
    snprintf(tdir, sizeof tdir, "%s/tokenizer", dir);
    if (mkdir(tdir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, err_len, "%s: cannot create: %s", tdir, strerror(errno));
        return -1;
    }
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char c[3];
        byte_level_char(b, c);
        json_object_set_new(vocab, c, json_integer(b));
    }
    json_t *byte_level = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                   "trim_offsets", 1, "use_regex", 0);
    json_t *tok = json_pack(
        "{s:s, s:n, s:n, s:[o,o], s:n, s:O, s:n, s:o, s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, "
        "s:o, s:[]}}",
        "version", "1.0", "truncation", "padding", "added_tokens", added_token(TOK_BOS, "<bos>"),
        added_token(TOK_EOS, "<eos>"), "normalizer", "pre_tokenizer", byte_level, "post_processor",
        "decoder", byte_level, "model", "type", "BPE", "dropout", "unk_token",
        "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
        "ignore_merges", 0, "vocab", vocab, "merges");
    json_t *cfg = json_pack("{s:s, s:s, s:s, s:i}", "bos_token", "<bos>", "eos_token", "<eos>",
                            "tokenizer_class", "PreTrainedTokenizerFast", "model_max_length", MAX_SEQ);
    int rc = 0;
    snprintf(path, sizeof path, "%s/tokenizer.json", tdir);
    if (!tok || json_dump_file(tok, path, JSON_INDENT(1)) != 0) rc = -1;
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tdir);
    if (rc == 0 && (!cfg || json_dump_file(cfg, path, JSON_INDENT(1)) != 0)) rc = -1;
    if (rc < 0) snprintf(err, err_len, "%s: cannot write", path);
    json_decref(tok);
    json_decref(cfg);
    return rc;
}

typedef struct {
    int64_t n_pairs, n_tokens, n_carry;
} split_stats_t;

static int write_pair(sink_t *w, dpo_rng_t *r, int64_t a, int64_t b, bool last_only,
                      int width, split_stats_t *st) {
    int sum_width = width ? width + 1 : 0;
    int32_t chosen[MAX_SEQ], rejected[MAX_SEQ];
    int n = 0;
    chosen[n++] = TOK_BOS;
    n = put_number(chosen, n, a, width);
    chosen[n++] = '+';
    n = put_number(chosen, n, b, width);
    chosen[n++] = '=';
    int prompt_len = n;
    memcpy(rejected, chosen, (size_t)prompt_len * sizeof *chosen);
    int64_t sum = a + b;
    int nc = put_number(chosen, prompt_len, sum, sum_width);
    chosen[nc++] = TOK_EOS;
    int nr = put_number(rejected, prompt_len, near_miss(r, sum, last_only, sum_width), sum_width);
    rejected[nr++] = TOK_EOS;
    st->n_pairs++;
    st->n_tokens += nc + nr;
    st->n_carry += has_carry(a, b);
    return sink_pair(w, chosen, nc, rejected, nr, prompt_len);
}

// Held-out problems (optionally only those that carry), for sampling validation sets
// without repeats when the operand range is small enough to enumerate.
typedef struct {
    int64_t *a, *b;
    int64_t n;
} pool_t;

static void pool_build(pool_t *p, int64_t K, bool carry_only) {
    p->n = 0;
    int64_t cap = 1024;
    p->a = xmalloc((size_t)cap * sizeof *p->a, "problem pool");
    p->b = xmalloc((size_t)cap * sizeof *p->b, "problem pool");
    for (int64_t a = 0; a <= K; a++) {
        for (int64_t b = 0; b <= K; b++) {
            if (!is_heldout(a, b) || (carry_only && !has_carry(a, b))) continue;
            if (p->n == cap) {
                cap *= 2;
                p->a = realloc(p->a, (size_t)cap * sizeof *p->a);
                p->b = realloc(p->b, (size_t)cap * sizeof *p->b);
                if (!p->a || !p->b) dpo_fatal("out of memory building the problem pool");
            }
            p->a[p->n] = a;
            p->b[p->n] = b;
            p->n++;
        }
    }
}

static void pool_free(pool_t *p) {
    free(p->a);
    free(p->b);
}

static int write_val_split(sink_t *w, const char *name, const opts_t *o, bool carry_only,
                           uint64_t stream, split_stats_t *st, char *err, size_t err_len) {
    dpo_rng_t r;
    rng_seed(&r, o->seed, stream);
    int64_t K = o->max_operand;
    if (sink_begin_split(w, name, err, err_len) < 0) return -1;
    bool enumerable = (K + 1) <= POOL_LIMIT / (K + 1);
    if (enumerable) {
        pool_t p;
        pool_build(&p, K, carry_only);
        if (p.n == 0) {
            snprintf(err, err_len,
                     "no held-out problem%s exists for --max-operand %lld; raise --max-operand",
                     carry_only ? " with a carry" : "", (long long)K);
            pool_free(&p);
            return -1;
        }
        // A random order of the pool; repeats only once every problem was used.
        for (int64_t i = p.n - 1; i > 0; i--) {
            int64_t j = uniform_int(&r, i + 1), ta = p.a[i], tb = p.b[i];
            p.a[i] = p.a[j];
            p.b[i] = p.b[j];
            p.a[j] = ta;
            p.b[j] = tb;
        }
        for (int64_t i = 0; i < o->val_pairs; i++)
            write_pair(w, &r, p.a[i % p.n], p.b[i % p.n], o->near_miss_last, o->width, st);
        sink_attr(w, "distinct_problems", p.n < o->val_pairs ? p.n : o->val_pairs);
        pool_free(&p);
    } else {
        for (int64_t i = 0; i < o->val_pairs; i++) {
            int64_t a, b;
            int tries = 0;
            do {
                a = uniform_int(&r, K + 1);
                b = uniform_int(&r, K + 1);
                if (++tries > 1000000) {
                    snprintf(err, err_len, "cannot find held-out problems for %s", name);
                    return -1;
                }
            } while (!is_heldout(a, b) || (carry_only && !has_carry(a, b)));
            write_pair(w, &r, a, b, o->near_miss_last, o->width, st);
        }
    }
    sink_attr(w, "max_operand", K);
    sink_attr(w, "carry_only", carry_only);
    return 0;
}

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    opts_t o;
    dpo_program_set("dpo_demo_data");
    parse_args(argc, argv, &o);
    double t0 = now_sec();
    int64_t K = o.max_operand;

    // Training problems must exist: with tiny K every problem may be held out.
    if ((K + 1) <= POOL_LIMIT / (K + 1)) {
        int64_t n_train = 0;
        for (int64_t a = 0; a <= K; a++)
            for (int64_t b = 0; b <= K; b++) n_train += !is_heldout(a, b);
        if (n_train == 0) {
            fprintf(stderr, "dpo_demo_data: every problem with --max-operand %lld is held out; "
                            "raise --max-operand\n", (long long)K);
            return 1;
        }
    }

    char provenance[1024];
    snprintf(provenance, sizeof provenance,
             "dpo_demo_data: integer addition \"<bos>a+b=\" -> sum digits + <eos>; operands "
             "uniform in [0, %lld]; rejected = the sum with one digit changed by +-1 "
             "(--near-miss %s); numbers zero-padded to %d/%d digits (0 = natural width); "
             "--seed %llu; --train-pairs %lld; --val-pairs %lld per validation "
             "set; problem (a,b) is held out iff splitmix(a,b) mod 1000 < %d (seed-independent); "
             "val/heldout = held-out problems, val/heldout_carry = held-out problems with a carry",
             (long long)K, o.near_miss_last ? "last" : "any", o.width, o.width ? o.width + 1 : 0,
             (unsigned long long)o.seed, (long long)o.train_pairs, (long long)o.val_pairs, HELDOUT_PERMILLE);
    dataset_meta_t meta = {.vocab_size = VOCAB, .tokenizer = TOKENIZER_ID, .provenance = provenance};
    char err[2048];
    sink_t sink = {.dir = o.jsonl_dir}, *w = &sink;
    if (o.out) {
        sink.w = dataset_writer_create(o.out, &meta, err, sizeof err);
        if (!sink.w) {
            fprintf(stderr, "dpo_demo_data: %s\n", err);
            return 1;
        }
    } else if (mkdir(o.jsonl_dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "dpo_demo_data: %s: cannot create: %s\n", o.jsonl_dir, strerror(errno));
        return 1;
    }

    split_stats_t st_train = {0}, st_ho = {0}, st_carry = {0};
    dpo_rng_t r;
    rng_seed(&r, o.seed, 1);
    err[0] = 0;
    if (sink_begin_split(w, "train", err, sizeof err) < 0) {
        fprintf(stderr, "dpo_demo_data: %s\n", err);
        sink_abort(w);
        return 1;
    }
    for (int64_t i = 0; i < o.train_pairs; i++) {
        int64_t a, b;
        do {
            a = uniform_int(&r, K + 1);
            b = uniform_int(&r, K + 1);
        } while (is_heldout(a, b));
        write_pair(w, &r, a, b, o.near_miss_last, o.width, &st_train);
    }
    sink_attr(w, "max_operand", K);
    err[0] = 0;
    if (o.val_pairs > 0 &&
        (write_val_split(w, "heldout", &o, false, 2, &st_ho, err, sizeof err) < 0 ||
         write_val_split(w, "heldout_carry", &o, true, 3, &st_carry, err, sizeof err) < 0)) {
        if (err[0]) {  // our own message; otherwise commit reports the writer's
            fprintf(stderr, "dpo_demo_data: %s\n", err);
            sink_abort(w);
            return 1;
        }
    }
    int rc = sink.w ? dataset_writer_commit(sink.w, err, sizeof err)
                    : sink_end_split(w, err, sizeof err) < 0 ? -1
                                                             : write_tokenizer(o.jsonl_dir, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "dpo_demo_data: %s\n", err);
        return 1;
    }
    double dt = now_sec() - t0;
    if (o.out)
        printf("dpo_demo_data: wrote %s (vocab %d, tokenizer %s) in %.3f s\n", o.out, VOCAB,
               TOKENIZER_ID, dt);
    else
        printf("dpo_demo_data: wrote %s/{train,heldout,heldout_carry}.jsonl and %s/tokenizer/ "
               "(byte-level, vocab %d) in %.3f s\n", o.jsonl_dir, o.jsonl_dir, VOCAB, dt);
    printf("  train                %8lld pairs %10lld tokens (%lld with a carry)\n",
           (long long)st_train.n_pairs, (long long)st_train.n_tokens, (long long)st_train.n_carry);
    if (o.val_pairs > 0) {
        printf("  val/heldout          %8lld pairs %10lld tokens (%lld with a carry)\n",
               (long long)st_ho.n_pairs, (long long)st_ho.n_tokens, (long long)st_ho.n_carry);
        printf("  val/heldout_carry    %8lld pairs %10lld tokens\n", (long long)st_carry.n_pairs,
               (long long)st_carry.n_tokens);
    }
    printf("  operands 0..%lld (%s digits), near-miss %s, seed %llu, %d%% of problems held out\n",
           (long long)K, o.width ? "fixed" : "natural", o.near_miss_last ? "last" : "any",
           (unsigned long long)o.seed,
           HELDOUT_PERMILLE / 10);
    return 0;
}
