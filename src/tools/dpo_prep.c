// dpo_prep.c — JSONL preference data -> the HDF5 dataset dpo_hpc trains on, with
// the model's own Hugging Face tokenizer and chat template (doc/data-prep.md).
//
//   dpo_prep --tokenizer DIR --output data.h5 --train a.jsonl [--val NAME=b.jsonl ...]
//   dpo_prep tokenize --tokenizer DIR   < {"text": ...} lines   > {"ids": [...]} lines
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dpo/chat_template.h"
#include "dpo/dataset.h"
#include "dpo/error.h"
#include "dpo/prep.h"
#include "dpo/program.h"
#include "dpo/tokenize_cli.h"
#include "dpo/tokenizer.h"
#include "dpo/util.h"

#define MAX_INPUTS 256
#define MAX_SPLITS 33

typedef struct {
    char name[DATASET_NAME_MAX];
    char *files[MAX_INPUTS];
    int n;
} split_in_t;

typedef struct {
    const char *tokenizer, *output, *template_name, *template_file;
    split_in_t split[MAX_SPLITS];  // [0] is "train"
    int n_split;
    prep_opts_t o;
    bool force;
} cli_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: dpo_prep --tokenizer DIR --output OUT.h5 --train FILE [options]\n"
            "       dpo_prep tokenize --tokenizer DIR   (JSON lines {\"text\":...} on stdin ->\n"
            "                                            {\"ids\":[...]} on stdout)\n"
            "Turns JSONL preference data into dpo_hpc's HDF5 dataset (doc/data-prep.md).\n"
            "  --tokenizer DIR        folder with tokenizer.json (+ tokenizer_config.json)\n"
            "  --output PATH          dataset file; written to PATH.tmp, renamed when complete\n"
            "  --train FILE           training input (repeat for several files)\n"
            "  --val [NAME=]FILE      validation set NAME (default: the file's stem); repeat\n"
            "                         for several sets, or the same NAME for several files\n"
            "  --format F             auto (default, per file), nemo, binary, pairs, legacy, trl\n"
            "  --prompt-key K         binary format keys (default prompt, chosen, rejected)\n"
            "  --chosen-key K\n"
            "  --rejected-key K\n"
            "  --chat-template T      auto (default), chatml, llama3, llama2, mistral, plain,\n"
            "                         custom (with --template-file FILE, libconfig)\n"
            "  --max-length N         tokens per sequence, prompt + completion (default 2048)\n"
            "  --overlong drop|truncate  over-long pairs: drop (default) or keep the prompt\n"
            "                         and cut the completions\n"
            "  --skip-invalid         skip bad records (counted; the first few reported)\n"
            "                         instead of stopping at the first\n"
            "  --report-invalid N     how many skipped records to describe (default 5)\n"
            "  --progress SECONDS     progress line interval on stderr (default 5; 0 = off)\n"
            "  --force                replace an existing output file\n"
            "  --help, --version      this text; the program's version\n");
}

DPO_NORETURN static void bad_usage(const char *fmt, const char *arg) {
    fprintf(stderr, "dpo_prep: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(dpo_prep --help lists the options)\n");
    exit(2);
}

static long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "dpo_prep: %s expects an integer in [%ld, %ld], got \"%s\"\n", opt, lo, hi, s);
        exit(2);
    }
    return v;
}

static split_in_t *split_named(cli_t *c, const char *name) {
    for (int i = 0; i < c->n_split; i++)
        if (strcmp(c->split[i].name, name) == 0) return &c->split[i];
    if (c->n_split == MAX_SPLITS) bad_usage("at most %s splits", "32 validation");
    split_in_t *s = &c->split[c->n_split++];
    snprintf(s->name, sizeof s->name, "%s", name);
    return s;
}

static void add_input(cli_t *c, const char *name, char *file) {
    if (strlen(name) >= DATASET_NAME_MAX) bad_usage("split name \"%s\" is too long", name);
    split_in_t *s = split_named(c, name);
    if (s->n == MAX_INPUTS) bad_usage("too many input files for split %s", name);
    s->files[s->n++] = file;
}

// --val [NAME=]FILE: without NAME the set is named after the file (its stem).
static void add_val(cli_t *c, char *arg) {
    char *eq = strchr(arg, '=');
    char name[DATASET_NAME_MAX];
    char *file = arg;
    if (eq && eq != arg && !memchr(arg, '/', (size_t)(eq - arg))) {
        size_t n = (size_t)(eq - arg);
        if (n >= sizeof name) bad_usage("validation set name in \"%s\" is too long", arg);
        memcpy(name, arg, n);
        name[n] = '\0';
        file = eq + 1;
    } else {
        const char *base = strrchr(arg, '/');
        base = base ? base + 1 : arg;
        snprintf(name, sizeof name, "%s", base);
        char *dot = strrchr(name, '.');
        if (dot && dot != name) *dot = '\0';
    }
    if (strcmp(name, "train") == 0) bad_usage("%s: a validation set cannot be named \"train\"", arg);
    add_input(c, name, file);
}

static void parse_args(int argc, char **argv, cli_t *c) {
    memset(c, 0, sizeof *c);
    c->template_name = "auto";
    c->o.keys = (prep_keys_t){"prompt", "chosen", "rejected"};
    c->o.max_length = 2048;
    c->o.report_invalid = 5;
    c->o.progress_every = 5.0;
    split_named(c, "train");
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (dpo_version_option(a, true)) exit(0);
        if (strncmp(a, "--", 2) != 0) bad_usage("unexpected argument \"%s\"", a);
        if (strcmp(a, "--skip-invalid") == 0) {
            c->o.skip_invalid = true;
            continue;
        }
        if (strcmp(a, "--force") == 0) {
            c->force = true;
            continue;
        }
        char key[64], *val;
        int rc = util_option(argc, argv, &i, key, sizeof key, &val);
        if (rc == -1) bad_usage("unknown option \"%s\"", a);
        if (rc == -2) bad_usage("option %s needs a value", a);
        if (strcmp(key, "--tokenizer") == 0) c->tokenizer = val;
        else if (strcmp(key, "--output") == 0) c->output = val;
        else if (strcmp(key, "--train") == 0) add_input(c, "train", val);
        else if (strcmp(key, "--val") == 0) add_val(c, val);
        else if (strcmp(key, "--format") == 0) {
            int f = prep_format_parse(val);
            if (f < 0) bad_usage("--format: unknown format \"%s\" (auto, nemo, binary, pairs, legacy, trl)", val);
            c->o.format = (prep_format_t)f;
        } else if (strcmp(key, "--prompt-key") == 0) c->o.keys.prompt = val;
        else if (strcmp(key, "--chosen-key") == 0) c->o.keys.chosen = val;
        else if (strcmp(key, "--rejected-key") == 0) c->o.keys.rejected = val;
        else if (strcmp(key, "--chat-template") == 0) c->template_name = val;
        else if (strcmp(key, "--template-file") == 0) c->template_file = val;
        else if (strcmp(key, "--max-length") == 0) c->o.max_length = (int)parse_long(key, val, 2, 1 << 24);
        else if (strcmp(key, "--overlong") == 0) {
            if (strcmp(val, "drop") == 0) c->o.overlong = OVERLONG_DROP;
            else if (strcmp(val, "truncate") == 0) c->o.overlong = OVERLONG_TRUNCATE;
            else bad_usage("--overlong expects drop or truncate, got \"%s\"", val);
        } else if (strcmp(key, "--report-invalid") == 0) c->o.report_invalid = (int)parse_long(key, val, 0, 1000000);
        else if (strcmp(key, "--progress") == 0) {
            char *end;
            c->o.progress_every = strtod(val, &end);
            if (end == val || *end || c->o.progress_every < 0) bad_usage("--progress expects seconds >= 0, got \"%s\"", val);
        } else bad_usage("unknown option \"%s\"", key);
    }
    if (!c->tokenizer) bad_usage("%s", "--tokenizer DIR is required");
    if (!c->output) bad_usage("%s", "--output PATH is required");
    if (c->split[0].n == 0) bad_usage("%s", "--train FILE is required");
    if (c->template_file && strcmp(c->template_name, "custom") != 0)
        bad_usage("--template-file needs --chat-template custom (got %s)", c->template_name);
}

// The output (and its temporary PATH.tmp) must be none of the inputs: the split
// files, the tokenizer folder's files, the template file. Exits 1 before reading.
static void refuse_output_among_inputs(const cli_t *c) {
    util_input_t in[MAX_SPLITS * MAX_INPUTS + 2];
    int n = 0;
    in[n++] = (util_input_t){"--tokenizer", c->tokenizer};
    in[n++] = (util_input_t){"--template-file", c->template_file};
    for (int s = 0; s < c->n_split; s++)
        for (int f = 0; f < c->split[s].n; f++)
            in[n++] = (util_input_t){s == 0 ? "--train" : "--val", c->split[s].files[f]};
    char tmp[PATH_MAX + 8], err[2 * PATH_MAX + 512];
    snprintf(tmp, sizeof tmp, "%s.tmp", c->output);
    if (util_check_output("--output", c->output, in, n, err, sizeof err) != 0 ||
        util_check_output("--output's temporary file", tmp, in, n, err, sizeof err) != 0) {
        fprintf(stderr, "dpo_prep: error: %s\n", err);
        exit(1);
    }
}

// Provenance attribute: how the file was made, so a dataset explains itself.
static void provenance(const cli_t *c, const char *picked, char *buf, size_t n) {
    size_t at = (size_t)snprintf(buf, n, "dpo_prep: tokenizer %s; chat template %s; max_length %d, overlong %s; inputs:",
                                 c->tokenizer, picked, c->o.max_length,
                                 c->o.overlong == OVERLONG_DROP ? "drop" : "truncate");
    for (int s = 0; s < c->n_split && at < n; s++)
        for (int f = 0; f < c->split[s].n && at < n; f++)
            at += (size_t)snprintf(buf + at, n - at, " %s=%s", c->split[s].name, c->split[s].files[f]);
}

int main(int argc, char **argv) {
    log_set_program("dpo_prep");
    dpo_program_set("dpo_prep");
    if (argc > 1 && strcmp(argv[1], "tokenize") == 0) return tokenize_cli_main(argc - 1, argv + 1);
    cli_t c;
    parse_args(argc, argv, &c);
    refuse_output_among_inputs(&c);
    char err[2048];
    struct stat st;
    if (!c.force && stat(c.output, &st) == 0) {
        fprintf(stderr, "dpo_prep: error: %s exists (use --force to replace it)\n", c.output);
        return 1;
    }
    dpo_tokenizer_t *tok = tokenizer_load(c.tokenizer, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "dpo_prep: error: %s\n", err);
        return 1;
    }
    chat_template_t tmpl;
    char picked[256];
    if (chat_template_init(&tmpl, c.template_name, c.template_file, tok, picked, sizeof picked, err,
                           sizeof err) < 0) {
        fprintf(stderr, "dpo_prep: error: %s\n", err);
        tokenizer_free(tok);
        return 1;
    }
    log_info("dpo_prep: tokenizer %s (%s, vocabulary %d); chat template %s", c.tokenizer,
             tokenizer_identity(tok), tokenizer_vocab_size(tok), picked);
    c.o.tok = tok;
    c.o.tmpl = &tmpl;
    char prov[4096];
    provenance(&c, picked, prov, sizeof prov);
    dataset_meta_t meta = {.vocab_size = tokenizer_vocab_size(tok),
                           .tokenizer = tokenizer_identity(tok),
                           .provenance = prov};
    int rc = 1;
    dataset_writer_t *w = dataset_writer_create(c.output, &meta, err, sizeof err);
    if (!w) {
        fprintf(stderr, "dpo_prep: error: %s\n", err);
        goto out;
    }
    for (int s = 0; s < c.n_split; s++) {
        prep_stats_t stats;
        if (prep_split(&c.o, w, c.split[s].name, c.split[s].files, c.split[s].n, &stats, err,
                       sizeof err) < 0 ||
            prep_stats_store(w, &stats) < 0) {
            if (!err[0]) snprintf(err, sizeof err, "%s", dataset_writer_error(w));
            fprintf(stderr, "dpo_prep: error: %s\ndpo_prep: no output written (%s left as it was)\n",
                    err, c.output);
            dataset_writer_abort(w);
            goto out;
        }
        prep_stats_print(stdout, c.split[s].name, &stats);
        err[0] = '\0';
    }
    if (dataset_writer_commit(w, err, sizeof err) < 0) {
        fprintf(stderr, "dpo_prep: error: %s\n", err);
        goto out;
    }
    log_info("dpo_prep: wrote %s", c.output);
    rc = 0;
out:
    chat_template_free(&tmpl);
    tokenizer_free(tok);
    return rc;
}
