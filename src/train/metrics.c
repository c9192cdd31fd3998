// metrics.c — console lines and metrics.jsonl records (rank 0).
#include "dpo/metrics.h"

#include <errno.h>
#include <math.h>
#include <string.h>

static void fmt_hms(char *buf, size_t n, double sec) {
    if (!(sec >= 0) || sec > 1e8) {
        snprintf(buf, n, "--:--:--");
        return;
    }
    long s = (long)(sec + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
}

int metrics_open(dpo_metrics_t *m, const char *log_dir, bool is_root, bool append, char *err,
                 size_t err_len) {
    return metrics_open_named(m, log_dir, "metrics.jsonl", is_root, append, err, err_len);
}

int metrics_open_named(dpo_metrics_t *m, const char *log_dir, const char *name, bool is_root,
                       bool append, char *err, size_t err_len) {
    memset(m, 0, sizeof *m);
    if (!is_root) return 0;
    snprintf(m->path, sizeof m->path, "%s/%s", log_dir, name);
    m->jsonl = fopen(m->path, append ? "a" : "w");
    if (!m->jsonl) {
        snprintf(err, err_len, "cannot open %s: %s", m->path, strerror(errno));
        return -1;
    }
    return 0;
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

// JSON has no NaN/Infinity: write null so every line stays parseable.
static void json_num(FILE *f, const char *key, double v, bool comma) {
    if (isfinite(v))
        fprintf(f, "\"%s\": %.17g%s", key, v, comma ? ", " : "");
    else
        fprintf(f, "\"%s\": null%s", key, comma ? ", " : "");
}

void metrics_log(dpo_metrics_t *m, const dpo_metrics_ctx_t *c, const dpo_loss_stats_t *st) {
    if (!m->jsonl) return;
    static const char *fields[] = {"loss",         "preference_loss",  "sft_loss",
                                   "accuracy",     "rewards_chosen",   "rewards_rejected",
                                   "margins",      "logps_chosen",     "logps_rejected"};
    FILE *f = m->jsonl;
    fprintf(f, "{\"step\": %lld, \"epoch\": %lld, \"split\": \"%s\", ", (long long)c->step,
            (long long)c->epoch, c->split);
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        double v = 0;
        metrics_field(st, fields[i], &v);
        json_num(f, fields[i], v, true);
    }
    if (c->grad_norm >= 0) json_num(f, "grad_norm", c->grad_norm, true);
    if (c->lr >= 0) json_num(f, "lr", c->lr, true);
    if (c->lr >= 0) fprintf(f, "\"skipped\": %d, ", c->skipped ? 1 : 0);
    json_num(f, "pairs", st->pairs, true);
    json_num(f, "tokens", st->tokens, true);
    json_num(f, "tokens_per_sec", c->tokens_per_sec, true);
    json_num(f, "elapsed_sec", c->elapsed_sec, false);
    fprintf(f, "}\n");
    fflush(f);

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
    if (m->jsonl) fclose(m->jsonl);
    m->jsonl = NULL;
}
