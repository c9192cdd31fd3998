// prep.c — dpo_prep's record pipeline (see prep.h).
#define _POSIX_C_SOURCE 200809L
#include "dpo/prep.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dpo/error.h"
#include "dpo/jsonl.h"
#include "dpo/util.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Scratch reused across records so memory does not grow with the input.
typedef struct {
    prep_record_t rec;
    dstr_t masked[2], comp[2], full;
    tok_ids_t prompt[2], full_ids, comp_ids[2], seq[2];
} scratch_t;

static void scratch_free(scratch_t *s) {
    prep_record_free(&s->rec);
    for (int k = 0; k < 2; k++) {
        dstr_free(&s->masked[k]);
        dstr_free(&s->comp[k]);
        tok_ids_free(&s->prompt[k]);
        tok_ids_free(&s->comp_ids[k]);
        tok_ids_free(&s->seq[k]);
    }
    dstr_free(&s->full);
    tok_ids_free(&s->full_ids);
}

static void ids_append(tok_ids_t *dst, const int32_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) tok_ids_push(dst, src[i]);
}

static int encode(const prep_opts_t *o, const char *text, size_t len, tok_ids_t *out, char *err,
                  size_t err_len) {
    tok_ids_clear(out);
    return tokenizer_encode(o->tok, text, len, out, NULL, err, err_len);
}

// Completion ids of one side: the ids of (masked + completion) after the prompt's
// ids, which is what tokenising the whole rendered conversation gives (as HF's
// apply_chat_template(tokenize=True)); when the tokenizer merged across the prompt
// boundary, the completion is tokenised on its own so the prompt ids stay shared.
static int completion_ids(const prep_opts_t *o, scratch_t *s, int k, const tok_ids_t *prompt,
                          prep_stats_t *st, char *err, size_t err_len) {
    dstr_clear(&s->full);
    dstr_append(&s->full, s->masked[k].s, s->masked[k].len);
    dstr_append(&s->full, s->comp[k].s, s->comp[k].len);
    if (encode(o, s->full.s, s->full.len, &s->full_ids, err, err_len) < 0) return -1;
    tok_ids_t *c = &s->comp_ids[k];
    tok_ids_clear(c);
    bool prefix = s->full_ids.len > prompt->len &&
                  memcmp(s->full_ids.ids, prompt->ids, prompt->len * sizeof(int32_t)) == 0;
    if (prefix) {
        ids_append(c, s->full_ids.ids + prompt->len, s->full_ids.len - prompt->len);
        return 0;
    }
    st->retokenized++;
    return encode(o, s->comp[k].s, s->comp[k].len, c, err, err_len);
}

// A template BOS followed by a BOS the text itself carried: keep one.
static void dedupe_bos(const prep_opts_t *o, tok_ids_t *p) {
    const char *bos = tokenizer_bos_token(o->tok);
    int32_t id = bos ? tokenizer_token_to_id(o->tok, bos) : -1;
    if (id >= 0 && p->len >= 2 && p->ids[0] == id && p->ids[1] == id) {
        memmove(p->ids, p->ids + 1, (p->len - 1) * sizeof(int32_t));
        p->len--;
    }
}

typedef enum { REC_OK, REC_INVALID, REC_DROPPED, REC_FATAL } rec_status_t;

static rec_status_t process(const prep_opts_t *o, scratch_t *s, json_t *v, prep_format_t fmt,
                            dataset_writer_t *w, prep_stats_t *st, char *err, size_t err_len) {
    if (prep_parse_record(v, fmt, &o->keys, &s->rec, err, err_len) < 0) return REC_INVALID;
    const prep_msgs_t *side[2] = {&s->rec.chosen, &s->rec.rejected};
    for (int k = 0; k < 2; k++) {
        if (chat_template_render(o->tmpl, &s->rec.prompt, side[k], &s->masked[k], &s->comp[k], err,
                                 err_len) < 0)
            return REC_INVALID;
    }
    for (int k = 0; k < 2; k++) {
        if (k == 1 && strcmp(s->masked[1].s, s->masked[0].s) == 0) {
            tok_ids_clear(&s->prompt[1]);
            ids_append(&s->prompt[1], s->prompt[0].ids, s->prompt[0].len);
        } else if (encode(o, s->masked[k].s, s->masked[k].len, &s->prompt[k], err, err_len) < 0) {
            return REC_INVALID;
        }
        if (completion_ids(o, s, k, &s->prompt[k], st, err, err_len) < 0) return REC_INVALID;
        dedupe_bos(o, &s->prompt[k]);
        if (s->prompt[k].len == 0) {
            dpo_errf(err, err_len, "the prompt renders to no tokens (template %s has no BOS or "
                     "role markers and the prompt is empty)", o->tmpl->name);
            return REC_INVALID;
        }
    }
    size_t plen = s->prompt[0].len > s->prompt[1].len ? s->prompt[0].len : s->prompt[1].len;
    size_t max = (size_t)o->max_length;
    bool too_long = false;
    for (int k = 0; k < 2; k++) too_long |= s->prompt[k].len + s->comp_ids[k].len > max;
    if (too_long) {
        if (o->overlong == OVERLONG_DROP) {
            st->dropped_too_long++;
            return REC_DROPPED;
        }
        if (plen >= max) {  // the completion would be cut to nothing: never train on that
            st->dropped_prompt_too_long++;
            return REC_DROPPED;
        }
        for (int k = 0; k < 2; k++)
            if (s->prompt[k].len + s->comp_ids[k].len > max) s->comp_ids[k].len = max - s->prompt[k].len;
        st->truncated++;
    }
    // Sequence = prompt ++ completion, in scratch reused across records.
    for (int k = 0; k < 2; k++) {
        tok_ids_clear(&s->seq[k]);
        ids_append(&s->seq[k], s->prompt[k].ids, s->prompt[k].len);
        ids_append(&s->seq[k], s->comp_ids[k].ids, s->comp_ids[k].len);
    }
    int len[2] = {(int)s->seq[0].len, (int)s->seq[1].len};
    int rc = dataset_writer_add_pair(w, s->seq[0].ids, len[0], (int)s->prompt[0].len, s->seq[1].ids,
                                     len[1], (int)s->prompt[1].len);
    if (rc < 0) {
        dpo_errf(err, err_len, "%s", dataset_writer_error(w));
        return REC_FATAL;
    }
    st->written++;
    st->prompt_tokens += (int64_t)s->prompt[0].len;
    st->chosen_tokens += (int64_t)s->comp_ids[0].len;
    st->rejected_tokens += (int64_t)s->comp_ids[1].len;
    if ((int)plen > st->max_prompt) st->max_prompt = (int)plen;
    for (int k = 0; k < 2; k++)
        if (len[k] > st->max_seq) st->max_seq = len[k];
    return REC_OK;
}

static void progress(const jsonl_reader_t *r, const char *split, const prep_stats_t *st,
                     double t0, bool final) {
    double dt = now_s() - t0;
    double rate = dt > 0 ? (double)st->records / dt : 0;
    char eta[64] = "";
    if (r->size > 0 && r->bytes > 0 && !final) {
        double frac = (double)r->bytes / (double)r->size;
        double left = dt * (1 - frac) / frac;
        snprintf(eta, sizeof eta, ", %.1f%% of %s, ETA %.0f s", 100 * frac, jsonl_name(r), left);
    }
    fprintf(stderr, "dpo_prep: %s: %lld records, %lld pairs, %.0f records/s%s\n", split,
            (long long)st->records, (long long)st->written, rate, eta);
}

int prep_split(const prep_opts_t *o, dataset_writer_t *w, const char *name, char **files,
               int n_files, prep_stats_t *st, char *err, size_t err_len) {
    memset(st, 0, sizeof *st);
    if (dataset_writer_begin_split(w, name) < 0) {
        dpo_errf(err, err_len, "%s", dataset_writer_error(w));
        return -1;
    }
    scratch_t s = {0};
    int rc = 0;
    double t0 = now_s(), last = t0;
    for (int f = 0; f < n_files && rc == 0; f++) {
        jsonl_reader_t r;
        if (jsonl_open(&r, files[f], err, err_len) < 0) {
            rc = -1;
            break;
        }
        prep_format_t fmt = o->format;
        for (;;) {
            char msg[1024];
            json_t *v = NULL;
            int got = jsonl_next(&r, &v, msg, sizeof msg);
            if (got == 0) break;
            if (got == -2) {
                dpo_errf(err, err_len, "%s", msg);
                rc = -1;
                break;
            }
            st->records++;
            rec_status_t res = REC_INVALID;
            if (got == 1) {
                if (fmt == FMT_AUTO) {
                    fmt = prep_detect_format(v, &o->keys);
                    if (fmt != FMT_AUTO)
                        log_info("%s: input format %s (detected from line %lld)", jsonl_name(&r),
                                 prep_format_name(fmt), (long long)r.line);
                }
                char what[900];
                res = process(o, &s, v, fmt, w, st, what, sizeof what);
                if (res == REC_INVALID || res == REC_FATAL)
                    snprintf(msg, sizeof msg, "%s:%lld: %s", jsonl_name(&r), (long long)r.line, what);
                json_decref(v);
            }
            if (res == REC_FATAL || (res == REC_INVALID && !o->skip_invalid)) {
                dpo_errf(err, err_len, "%s%s", msg,
                         res == REC_INVALID ? " (use --skip-invalid to skip such records)" : "");
                rc = -1;
                break;
            }
            if (res == REC_INVALID) {
                st->invalid++;
                if (st->invalid <= o->report_invalid) log_warn("skipped: %s", msg);
                else if (st->invalid == o->report_invalid + 1)
                    log_warn("more invalid records skipped; their count is in the summary");
            }
            if (o->progress_every > 0 && (st->records & 255) == 0) {
                double t = now_s();
                if (t - last >= o->progress_every) {
                    progress(&r, name, st, t0, false);
                    last = t;
                }
            }
        }
        jsonl_close(&r);
    }
    st->seconds = now_s() - t0;
    scratch_free(&s);
    if (rc == 0 && st->written == 0) {
        dpo_errf(err, err_len, "split \"%s\": no pair was written (%lld records read; see the "
                 "counts above)", name, (long long)st->records);
        prep_stats_print(stderr, name, st);
        rc = -1;
    }
    return rc;
}

int prep_stats_store(dataset_writer_t *w, const prep_stats_t *st) {
    struct {
        const char *key;
        int64_t v;
    } a[] = {{"records_read", st->records},
             {"pairs_written", st->written},
             {"skipped_invalid", st->invalid},
             {"dropped_too_long", st->dropped_too_long},
             {"dropped_prompt_too_long", st->dropped_prompt_too_long},
             {"truncated", st->truncated},
             {"completion_retokenized", st->retokenized},
             {"prompt_tokens", st->prompt_tokens},
             {"chosen_completion_tokens", st->chosen_tokens},
             {"rejected_completion_tokens", st->rejected_tokens},
             {"max_prompt_tokens", st->max_prompt},
             {"max_sequence_tokens", st->max_seq}};
    for (size_t i = 0; i < sizeof a / sizeof *a; i++)
        if (dataset_writer_split_attr(w, a[i].key, a[i].v) < 0) return -1;
    return 0;
}

void prep_stats_print(FILE *f, const char *name, const prep_stats_t *st) {
    double n = st->written > 0 ? (double)st->written : 1;
    fprintf(f,
            "%s: %lld records read, %lld pairs written, %lld invalid skipped, dropped: %lld too "
            "long, %lld prompt too long; %lld truncated; %lld completions tokenised apart\n",
            name, (long long)st->records, (long long)st->written, (long long)st->invalid,
            (long long)st->dropped_too_long, (long long)st->dropped_prompt_too_long,
            (long long)st->truncated, (long long)st->retokenized);
    fprintf(f,
            "%s: tokens per pair: prompt %.1f (max %d), chosen completion %.1f, rejected "
            "completion %.1f; longest sequence %d; %.1f s (%.0f records/s)\n",
            name, (double)st->prompt_tokens / n, st->max_prompt, (double)st->chosen_tokens / n,
            (double)st->rejected_tokens / n, st->max_seq, st->seconds,
            st->seconds > 0 ? (double)st->records / st->seconds : 0.0);
}
