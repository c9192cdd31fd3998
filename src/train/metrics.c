// metrics.c — console lines and metrics.jsonl records (rank 0).
#include "dpo/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "dpo/error.h"
#include "dpo/util.h"

static void fmt_hms(char *buf, size_t n, double sec) {
    if (!(sec >= 0) || sec > 1e8) {
        snprintf(buf, n, "--:--:--");
        return;
    }
    long s = (long)(sec + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
}

int metrics_open(dpo_metrics_t *m, const char *log_dir, bool is_root, char *err, size_t err_len) {
    return metrics_open_named(m, log_dir, "metrics.jsonl", is_root, err, err_len);
}

static int open_stream(dpo_metrics_t *m, const char *log_dir, const char *name, const char *mode,
                       char *err, size_t err_len) {
    snprintf(m->path, sizeof m->path, "%s/%s", log_dir, name);
    m->jsonl = fopen(m->path, mode);
    if (!m->jsonl) {
        dpo_errf(err, err_len, "cannot open %s: %s", m->path, strerror(errno));
        return -1;
    }
    return 0;
}

int metrics_open_named(dpo_metrics_t *m, const char *log_dir, const char *name, bool is_root,
                       char *err, size_t err_len) {
    memset(m, 0, sizeof *m);
    return is_root ? open_stream(m, log_dir, name, "w", err, err_len) : 0;
}

// The step of a complete record ("{\"step\": N, ..." and its newline), or -1 for a
// line cut short (a kill during the write) or not ours.
static long long record_step(const char *line, ssize_t len) {
    long long step;
    if (len <= 0 || line[len - 1] != '\n') return -1;
    if (sscanf(line, "{\"step\": %lld,", &step) != 1 || step < 0) return -1;
    return step;
}

// Copies the complete records of `in` up to `step` to `out` (flushed and synced);
// counts the records kept and dropped. Returns 0 or an errno value.
// Copies the complete records of `in` up to `step` to out (a partial last line has no
// step and is dropped); counts what is kept and dropped.
static void copy_records_upto(FILE *in, util_afile_t *out, int64_t step, long long *kept,
                              long long *dropped) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        long long s = record_step(line, n);
        if (s < 0 || s > step) {
            (*dropped)++;
            continue;
        }
        util_afile_write(out, line, (size_t)n);
        (*kept)++;
    }
    free(line);
}

// metrics.jsonl cut back to the records up to `step`, atomically (util_afile: tmp,
// fsync, rename).
static int keep_records_upto(const char *path, int64_t step, char *err, size_t err_len) {
    FILE *in = fopen(path, "r");
    if (!in) {
        if (errno == ENOENT) return 0;  // nothing logged yet: nothing to keep
        dpo_errf(err, err_len, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    util_afile_t out;
    if (util_afile_open(&out, path, err, err_len) != 0) {
        fclose(in);
        return -1;
    }
    long long kept = 0, dropped = 0;
    copy_records_upto(in, &out, step, &kept, &dropped);
    bool read_failed = ferror(in) != 0;
    int read_errno = errno;
    fclose(in);
    if (read_failed) {
        dpo_errf(err, err_len, "cannot read %s: %s", path, strerror(read_errno ? read_errno : EIO));
        util_afile_abort(&out);
        return -1;
    }
    if (util_afile_commit(&out, err, err_len) != 0) return -1;
    if (dropped > 0)
        log_info("%s: kept the %lld record(s) up to step %lld, dropped %lld logged after that "
                 "checkpoint (or cut short)", path, kept, (long long)step, dropped);
    return 0;
}

int metrics_open_resumed(dpo_metrics_t *m, const char *log_dir, bool is_root, int64_t step,
                         char *err, size_t err_len) {
    memset(m, 0, sizeof *m);
    if (!is_root) return 0;
    snprintf(m->path, sizeof m->path, "%s/metrics.jsonl", log_dir);
    if (keep_records_upto(m->path, step, err, err_len) != 0) return -1;
    return open_stream(m, log_dir, "metrics.jsonl", "a", err, err_len);
}

bool metrics_field(const dpo_loss_stats_t *st, const char *field, double *value) {
    double n = st->pairs > 0 ? st->pairs : 1;
    struct {
        const char *name;
        double v;
    } f[] = {{"loss", st->loss / n},
             {"preference_loss", st->preference_loss / n},
             {"sft_loss", st->sft_loss / n},
             {"accuracy", st->accuracy / n},
             {"rewards_chosen", st->rewards_chosen / n},
             {"rewards_rejected", st->rewards_rejected / n},
             {"margins", st->margins / n},
             {"logps_chosen", st->logps_chosen / n},
             {"logps_rejected", st->logps_rejected / n}};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (strcmp(f[i].name, field) == 0) {
            *value = f[i].v;
            return true;
        }
    return false;
}

// One piece of a record; the first failure's errno is kept for the record's check.
DPO_PRINTF(2, 3) static void put(dpo_metrics_t *m, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (vfprintf(m->jsonl, fmt, ap) < 0 && !m->write_errno) m->write_errno = errno ? errno : EIO;
    va_end(ap);
}

// JSON has no NaN/Infinity: write null so every line stays parseable.
static void json_num(dpo_metrics_t *m, const char *key, double v, bool comma) {
    if (isfinite(v))
        put(m, "\"%s\": %.17g%s", key, v, comma ? ", " : "");
    else
        put(m, "\"%s\": null%s", key, comma ? ", " : "");
}

// A record is complete on disk or the job ends: never a silent cut (a full disk).
static void end_record(dpo_metrics_t *m) {
    put(m, "}\n");
    if (fflush(m->jsonl) != 0 && !m->write_errno) m->write_errno = errno ? errno : EIO;
    if (m->write_errno)
        dpo_fatal("%s: cannot write a metrics record: %s", m->path, strerror(m->write_errno));
}

void metrics_log(dpo_metrics_t *m, const dpo_metrics_ctx_t *c, const dpo_loss_stats_t *st) {
    if (!m->jsonl) return;
    static const char *fields[] = {"loss",         "preference_loss",  "sft_loss",
                                   "accuracy",     "rewards_chosen",   "rewards_rejected",
                                   "margins",      "logps_chosen",     "logps_rejected"};
    put(m, "{\"step\": %lld, \"epoch\": %lld, \"split\": \"%s\", ", (long long)c->step,
        (long long)c->epoch, c->split);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        double v = 0;
        metrics_field(st, fields[i], &v);
        json_num(m, fields[i], v, true);
    }
    if (c->grad_norm >= 0) json_num(m, "grad_norm", c->grad_norm, true);
    if (c->lr >= 0) json_num(m, "lr", c->lr, true);
    if (c->lr >= 0) put(m, "\"skipped\": %d, ", c->skipped ? 1 : 0);
    json_num(m, "pairs", st->pairs, true);
    json_num(m, "tokens", st->tokens, true);
    json_num(m, "tokens_per_sec", c->tokens_per_sec, true);
    json_num(m, "elapsed_sec", c->elapsed_sec, false);
    end_record(m);

    double n = st->pairs > 0 ? st->pairs : 1;
    char el[32], eta[32];
    fmt_hms(el, sizeof el, c->elapsed_sec);
    if (c->lr >= 0) {
        double left = (double)(c->total_steps - c->step) * c->step_sec;
        fmt_hms(eta, sizeof eta, left);
        printf("step %5lld/%lld | loss %.4f | acc %.3f | margin %+.4f | lr %.2e | gnorm %.3f | "
               "%.0f tok/s | elapsed %s | ETA %s%s\n",
               (long long)c->step, (long long)c->total_steps, st->loss / n, st->accuracy / n,
               st->margins / n, c->lr, c->grad_norm, c->tokens_per_sec, el, eta,
               c->skipped ? " | SKIPPED (non-finite)" : "");
    } else {
        printf("  %-22s step %5lld | loss %.4f | acc %.3f | margin %+.4f | chosen %+.4f | "
               "rejected %+.4f | %.0f pairs\n",
               c->split, (long long)c->step, st->loss / n, st->accuracy / n, st->margins / n,
               st->rewards_chosen / n, st->rewards_rejected / n, st->pairs);
    }
    fflush(stdout);
}

void metrics_close(dpo_metrics_t *m) {
    if (!m->jsonl) return;
    FILE *f = m->jsonl;
    m->jsonl = NULL;
    int e = fflush(f) != 0 ? errno : 0;
    if (!e && fsync(fileno(f)) != 0 && errno != EINVAL) e = errno;  // EINVAL: cannot sync
    if (fclose(f) != 0 && !e) e = errno;
    if (e) dpo_fatal("%s: cannot write: %s", m->path, strerror(e));
}
