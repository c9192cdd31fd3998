// dpo_pairs.c — turns NeMo Gym rollouts (JSONL) into DPO preference pairs (JSONL) that
// dpo_prep reads: the semantics and the printed report of NeMo Gym's
// transform_gym_to_dpo.py, plus deterministic ties, --context full, malformed
// rollouts named by file:line, and an atomic output file. doc/dpo-pairs.md.
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpo/error.h"
#include "dpo/jsonl.h"
#include "dpo/pairs.h"
#include "dpo/program.h"
#include "dpo/util.h"

#define MAX_SHOWN 5  // malformed rollouts reported one by one under --skip-invalid

typedef struct {
    const char *input, *output;
    bool stratified, skip_invalid;
    pairs_context_t context;
    double min_gap, high, low;
} opts_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: dpo_pairs --input ROLLOUTS.jsonl --output PAIRS.jsonl [options]\n"
            "Turns NeMo Gym rollouts into DPO preference pairs (prompt, chosen, rejected JSONL),\n"
            "as NeMo Gym's transform_gym_to_dpo.py does. See doc/dpo-pairs.md.\n"
            "  --input PATH            rollouts, one JSON object per line (\"-\" = stdin; required)\n"
            "  --output PATH           pairs to write (required); written to a temporary file\n"
            "                          and renamed when complete; parent directories are made\n"
            "  --strategy S            same_prompt (default): the best against the worst rollout\n"
            "                          of each prompt; stratified: every rollout with reward >=\n"
            "                          high_threshold against every one with reward <= low_threshold\n"
            "  --min_gap G             minimum reward gap, chosen - rejected (default 0.2)\n"
            "  --high_threshold H      stratified: least reward of a chosen rollout (default 0.7)\n"
            "  --low_threshold L       stratified: greatest reward of a rejected rollout (default 0.4)\n"
            "  --context last|full     prompt = text of the last user message (default), or the\n"
            "                          list of input messages up to and including it\n"
            "  --skip-invalid          skip malformed rollouts (counted, the first %d reported)\n"
            "                          instead of stopping at the first one\n"
            "  --help, --version       this text; the program's version\n"
            "Options also take the form --opt=value, and '-' and '_' are the same in their\n"
            "names (--min-gap = --min_gap). Exit status: 0 done (also when no pair is made),\n"
            "1 bad input or I/O error, 2 bad usage.\n",
            MAX_SHOWN);
}

static void report(const char *tag, const char *fmt, va_list ap) {
    fflush(stdout);  // keep stdout's lines before ours when both go to one terminal
    fprintf(stderr, "dpo_pairs: %s: ", tag);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

DPO_PRINTF(1, 2) static void error_msg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report("error", fmt, ap);
    va_end(ap);
}

DPO_PRINTF(1, 2) static void warn_msg(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report("warning", fmt, ap);
    va_end(ap);
}

DPO_PRINTF(1, 2) DPO_NORETURN static void bad_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report("error", fmt, ap);
    va_end(ap);
    usage(stderr);
    exit(2);
}

// A finite decimal number (what Python's float() takes, less nan/inf/underscores).
static double parse_real(const char *opt, const char *s) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || strpbrk(s, "xXnN") || !(v - v == 0))
        bad_usage("--%s expects a number, got \"%s\"", opt, s);
    return v;
}

static void parse_args(int argc, char **argv, opts_t *o) {
    *o = (opts_t){.min_gap = 0.2, .high = 0.7, .low = 0.4, .context = PAIRS_CONTEXT_LAST};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (dpo_version_option(a, true)) exit(0);
        if (strncmp(a, "--", 2) != 0 || !a[2]) bad_usage("unexpected argument \"%s\"", a);
        char key[64];
        const char *eq = strchr(a, '='), *val = NULL;
        size_t klen = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (klen >= sizeof key) bad_usage("unknown option \"%s\"", a);
        for (size_t k = 0; k < klen; k++) key[k] = a[2 + k] == '-' ? '_' : a[2 + k];
        key[klen] = 0;
        if (strcmp(key, "skip_invalid") == 0) {
            if (eq) bad_usage("--skip-invalid takes no value");
            o->skip_invalid = true;
            continue;
        }
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            bad_usage("--%s needs a value", key);
        if (strcmp(key, "input") == 0 || strcmp(key, "output") == 0) {
            if (!val[0]) bad_usage("--%s needs a non-empty path", key);
            *(key[0] == 'i' ? &o->input : &o->output) = val;
        } else if (strcmp(key, "strategy") == 0) {
            if (strcmp(val, "same_prompt") == 0)
                o->stratified = false;
            else if (strcmp(val, "stratified") == 0)
                o->stratified = true;
            else
                bad_usage("--strategy expects same_prompt or stratified, got \"%s\"", val);
        } else if (strcmp(key, "context") == 0) {
            if (strcmp(val, "last") == 0)
                o->context = PAIRS_CONTEXT_LAST;
            else if (strcmp(val, "full") == 0)
                o->context = PAIRS_CONTEXT_FULL;
            else
                bad_usage("--context expects last or full, got \"%s\"", val);
        } else if (strcmp(key, "min_gap") == 0) {
            o->min_gap = parse_real(key, val);
        } else if (strcmp(key, "high_threshold") == 0) {
            o->high = parse_real(key, val);
        } else if (strcmp(key, "low_threshold") == 0) {
            o->low = parse_real(key, val);
        } else {
            bad_usage("unknown option \"%s\"", a);
        }
    }
    if (!o->input) bad_usage("--input PATH is required");
    if (!o->output) bad_usage("--output PATH is required");
}

// ---- the output file: written under a temporary name, renamed when complete ----

static char *g_tmp;                    // temporary output path while it exists
static volatile sig_atomic_t g_tmp_live;

// An interrupted run must not leave its temporary file behind (then dies of the signal).
static void on_signal(int sig) {
    if (g_tmp_live) unlink(g_tmp);
    signal(sig, SIG_DFL);
    raise(sig);
}

typedef struct {
    const char *output;
    FILE *f;
    pairs_buf_t line, first;
    size_t n, n_empty_prompt, n_empty_response;
    pairs_sum_t gap, chosen, rejected;
    char err[2048];
} writer_t;

// mkdir -p of the output's directory (the script does output_path.parent.mkdir).
static int make_parents(const char *path, char *err, size_t err_len) {
    char *p = strdup(path);
    if (!p) dpo_fatal("out of memory");
    char *slash = strrchr(p, '/');
    int rc = 0;
    if (slash && slash != p) {
        *slash = 0;
        for (char *q = p + 1;; q++) {
            if (*q != '/' && *q) continue;
            char c = *q;
            *q = 0;
            if (mkdir(p, 0777) != 0 && errno != EEXIST) {
                dpo_errf(err, err_len, "cannot create directory %s: %s", p, strerror(errno));
                rc = -1;
                break;
            }
            *q = c;
            if (!c) break;
        }
    }
    free(p);
    return rc;
}

static int open_tmp(writer_t *w) {
    if (make_parents(w->output, w->err, sizeof w->err) != 0) return -1;
    const char *slash = strrchr(w->output, '/');
    size_t dir_len = slash ? (size_t)(slash - w->output) + 1 : 0;
    // Hidden and in the same directory, so the final rename is atomic.
    size_t cap = strlen(w->output) + 32;
    g_tmp = xmalloc(cap, "temporary path");
    snprintf(g_tmp, cap, "%.*s.%s.tmp.XXXXXX", (int)dir_len, w->output, w->output + dir_len);
    int fd = mkstemp(g_tmp);
    if (fd < 0) {
        dpo_errf(w->err, sizeof w->err, "cannot create a temporary file next to %s: %s", w->output,
                 strerror(errno));
        return -1;
    }
    g_tmp_live = 1;
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);  // mkstemp's 0600 would make the pairs private
    w->f = fdopen(fd, "w");
    if (!w->f) {
        dpo_errf(w->err, sizeof w->err, "cannot open %s: %s", g_tmp, strerror(errno));
        close(fd);
        return -1;
    }
    return 0;
}

static void drop_tmp(writer_t *w) {
    if (w->f) fclose(w->f);
    w->f = NULL;
    if (g_tmp_live) unlink(g_tmp);
    g_tmp_live = 0;
    free(g_tmp);
    g_tmp = NULL;
}

static int commit(writer_t *w) {
    int rc = 0;
    if (fflush(w->f) != 0 || fsync(fileno(w->f)) != 0) {
        dpo_errf(w->err, sizeof w->err, "cannot write %s: %s", g_tmp, strerror(errno));
        rc = -1;
    }
    FILE *f = w->f;
    w->f = NULL;
    if (fclose(f) != 0 && rc == 0) {
        dpo_errf(w->err, sizeof w->err, "cannot write %s: %s", g_tmp, strerror(errno));
        rc = -1;
    }
    if (rc == 0 && rename(g_tmp, w->output) != 0) {
        dpo_errf(w->err, sizeof w->err, "cannot rename %s to %s: %s", g_tmp, w->output,
                 strerror(errno));
        rc = -1;
    }
    if (rc != 0) unlink(g_tmp);
    g_tmp_live = 0;
    free(g_tmp);
    g_tmp = NULL;
    return rc;
}

// The pairing's callback: one record to the file, and the statistics.
static int emit(void *user, const pairs_rollout_t *chosen, const pairs_rollout_t *rejected,
                pairs_num_t gap) {
    writer_t *w = user;
    if (!(gap.d - gap.d == 0)) {  // JSON has no infinity
        dpo_errf(w->err, sizeof w->err, "the reward gap between lines %lld and %lld overflows",
                 (long long)chosen->line, (long long)rejected->line);
        return -1;
    }
    // Opened at the first pair: no pair, no file (nor directory), as in the script.
    if (!w->f && open_tmp(w) != 0) return -1;
    w->line.len = 0;
    pairs_format_record(&w->line, chosen, rejected, gap);
    pairs_buf_put(&w->line, "\n", 1);
    if (fwrite(w->line.p, 1, w->line.len, w->f) != w->line.len) {
        dpo_errf(w->err, sizeof w->err, "cannot write %s: %s", g_tmp, strerror(errno));
        return -1;
    }
    if (w->n == 0) pairs_buf_put(&w->first, w->line.p, w->line.len);
    // Kept as the script keeps them, but worth a warning (dpo_prep refuses empty completions).
    if (strcmp(chosen->prompt, "\"\"") == 0 || strcmp(chosen->prompt, "[]") == 0) w->n_empty_prompt++;
    if (strcmp(chosen->response, "\"\"") == 0 || strcmp(rejected->response, "\"\"") == 0)
        w->n_empty_response++;
    pairs_sum_add(&w->gap, gap);
    pairs_sum_add(&w->chosen, chosen->reward);
    pairs_sum_add(&w->rejected, rejected->reward);
    w->n++;
    return 0;
}

// ---- main ----

typedef struct {
    pairs_rollout_t *r;
    size_t n, cap;
} rollouts_t;

static void free_rollouts(rollouts_t *rs) {
    for (size_t i = 0; i < rs->n; i++) pairs_rollout_free(&rs->r[i]);
    free(rs->r);
}

// Reads every rollout. Returns 0, or -1 after printing why.
static int load(const opts_t *o, rollouts_t *rs, size_t *n_bad) {
    jsonl_reader_t rd;
    char err[2048];
    if (jsonl_open(&rd, o->input, err, sizeof err) != 0) {
        error_msg("%s", err);
        return -1;
    }
    *n_bad = 0;
    for (;;) {
        json_t *rec;
        int rc = jsonl_next(&rd, &rec, err, sizeof err);
        if (rc == 0) break;
        if (rc == -2) {
            error_msg("%s", err);
            jsonl_close(&rd);
            return -1;
        }
        if (rc == 1) {
            char why[1024];
            pairs_rollout_t ro;
            int prc = pairs_rollout_parse(rec, o->context, &ro, why, sizeof why);
            json_decref(rec);
            if (prc == 0) {
                ro.line = rd.line;
                if (rs->n == rs->cap) {
                    rs->cap = rs->cap ? 2 * rs->cap : 1024;
                    pairs_rollout_t *p = realloc(rs->r, rs->cap * sizeof *p);
                    if (!p) dpo_fatal("out of memory holding %zu rollouts", rs->n);
                    rs->r = p;
                }
                rs->r[rs->n++] = ro;
                continue;
            }
            dpo_errf(err, sizeof err, "%s:%lld: %s", jsonl_name(&rd), (long long)rd.line, why);
        }
        // An invalid JSON line or a malformed rollout.
        if (!o->skip_invalid) {
            error_msg("%s", err);
            fprintf(stderr, "dpo_pairs: (--skip-invalid skips malformed rollouts and goes on)\n");
            jsonl_close(&rd);
            return -1;
        }
        if (*n_bad < MAX_SHOWN) warn_msg("skipped %s", err);
        (*n_bad)++;
    }
    jsonl_close(&rd);
    if (*n_bad > MAX_SHOWN) warn_msg("... and %zu more malformed rollouts skipped", *n_bad - MAX_SHOWN);
    return 0;
}

int main(int argc, char **argv) {
    opts_t o;
    dpo_program_set("dpo_pairs");
    parse_args(argc, argv, &o);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);  // e.g. `dpo_pairs ... | head` closing stdout early

    // The pairs replace --output: it must not be the rollouts they are made from.
    char err[2048];
    bool from_stdin = strcmp(o.input, "-") == 0;  // /dev/stdin: the file redirected to it
    util_input_t in[] = {{from_stdin ? "--input - (standard input)" : "--input",
                          from_stdin ? "/dev/stdin" : o.input}};
    if (util_check_output("--output", o.output, in, 1, err, sizeof err) != 0) {
        error_msg("%s", err);
        return 1;
    }
    // The rename would replace a device, a pipe or a directory entry: refuse those early.
    struct stat st;
    if (stat(o.output, &st) == 0 && !S_ISREG(st.st_mode)) {
        error_msg("--output %s exists and is not a regular file", o.output);
        return 1;
    }

    rollouts_t rs = {0};
    size_t n_bad = 0;
    if (load(&o, &rs, &n_bad) != 0) {
        free_rollouts(&rs);
        return 1;
    }
    // The report below repeats the script's lines (and order) so runs compare.
    log_info("Loaded %zu rollouts from %s", rs.n, o.input);
    if (n_bad) log_info("Skipped %zu invalid rollouts (--skip-invalid)", n_bad);

    writer_t w = {.output = o.output};
    int rc;
    if (!o.stratified) {
        size_t n_prompts = 0;
        rc = pairs_same_prompt(rs.r, rs.n, o.min_gap, &n_prompts, emit, &w);
        log_info("Found %zu unique prompts", n_prompts);
    } else {
        rc = pairs_stratified(rs.r, rs.n, o.min_gap, o.high, o.low, emit, &w);
    }
    free_rollouts(&rs);
    if (rc != 0) {
        error_msg("%s", w.err);
        drop_tmp(&w);
        pairs_buf_free(&w.line);
        pairs_buf_free(&w.first);
        return 1;
    }
    log_info("Created %zu DPO pairs", w.n);
    if (w.n_empty_prompt)
        warn_msg("%zu pairs have an empty prompt (a rollout without a user message)", w.n_empty_prompt);
    if (w.n_empty_response)
        warn_msg("%zu pairs have an empty chosen or rejected response (dpo_prep refuses those "
                 "records; its --skip-invalid skips them)", w.n_empty_response);

    char g[40], hi[40], lo[40];
    if (w.n == 0) {
        pairs_format_double(o.min_gap, g, sizeof g);
        pairs_format_double(o.high, hi, sizeof hi);
        pairs_format_double(o.low, lo, sizeof lo);
        log_info("❌ No pairs created. Try:");
        log_info("   - Lower --min_gap (current: %s)", g);
        log_info("   - Adjust thresholds (high: %s, low: %s)", hi, lo);
        log_info("   - Check reward distribution in rollouts");
        if (stat(o.output, &st) == 0)
            warn_msg("%s was left as it was: it is not the output of this run", o.output);
        return 0;
    }
    double n = (double)w.n;
    log_info("Average reward gap: %.3f", pairs_sum_value(&w.gap).d / n);
    log_info("Average chosen reward: %.3f", pairs_sum_value(&w.chosen).d / n);
    log_info("Average rejected reward: %.3f", pairs_sum_value(&w.rejected).d / n);

    if (commit(&w) != 0) {
        error_msg("%s", w.err);
        pairs_buf_free(&w.line);
        pairs_buf_free(&w.first);
        return 1;
    }
    log_info("✅ Wrote %zu pairs to %s", w.n, o.output);

    log_info("\n--- Example DPO Pair ---");
    json_error_t je;
    json_t *ex = json_loads(w.first.p, 0, &je);
    if (ex) {  // always: the record is our own JSON
        w.line.len = 0;
        pairs_json_encode(&w.line, ex, 2);
        log_info("%s", w.line.p);
        json_decref(ex);
    }
    pairs_buf_free(&w.line);
    pairs_buf_free(&w.first);
    return 0;
}
