// backend_profile.c — a backend whose every op times the inner backend's op
// (include/dpo/backend_profile.h). The wrappers, the op names and the FLOP
// counts all come from the op list in backend.h, so a new op is profiled
// without touching this file.
#include "dpo/backend_profile.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dpo/error.h"

typedef struct {
    long long calls;
    double sec;
    double flops;
} op_stat_t;

// The profiler instance's state: the backend it wraps and one counter per op.
typedef struct {
    const dpo_backend_t *inner;
    op_stat_t stat[DPO_BACKEND_N_OPS];
} profile_ctx_t;

// Op indices in list order (PROF_OP_<name>).
#define OP_INDEX_V(name, params, args, flops) PROF_OP_##name,
#define OP_INDEX_R(type, name, params, args, flops) PROF_OP_##name,
enum { DPO_BACKEND_OPS(OP_INDEX_V, OP_INDEX_R) PROF_OP_COUNT };
_Static_assert((int)PROF_OP_COUNT == (int)DPO_BACKEND_N_OPS, "one index per op");

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Both clock readings follow a synchronisation of the inner backend, so an
// asynchronous (GPU) op is timed from its start to its end. synchronize itself
// is timed without the extra synchronisation before it.
static double op_begin(const profile_ctx_t *c, int op) {
    if (op != PROF_OP_synchronize) dpo_synchronize(c->inner);
    return now();
}

static void op_end(profile_ctx_t *c, int op, double t0, double flops) {
    dpo_synchronize(c->inner);
    c->stat[op].sec += now() - t0;
    c->stat[op].calls++;
    c->stat[op].flops += flops;
}

#define PROF_WRAP_V(name, params, args, flops)                                  \
    static void prof_##name(const dpo_backend_t *be DPO_UNPAREN params) {       \
        profile_ctx_t *c = be->ctx;                                             \
        double t0 = op_begin(c, PROF_OP_##name);                                \
        c->inner->ops->name(c->inner DPO_UNPAREN args);                         \
        op_end(c, PROF_OP_##name, t0, (double)(flops));                         \
    }
#define PROF_WRAP_R(type, name, params, args, flops)                            \
    static type prof_##name(const dpo_backend_t *be DPO_UNPAREN params) {       \
        profile_ctx_t *c = be->ctx;                                             \
        double t0 = op_begin(c, PROF_OP_##name);                                \
        type r = c->inner->ops->name(c->inner DPO_UNPAREN args);                \
        op_end(c, PROF_OP_##name, t0, (double)(flops));                         \
        return r;                                                               \
    }
DPO_BACKEND_OPS(PROF_WRAP_V, PROF_WRAP_R)

#define PROF_FIELD_V(name, params, args, flops) .name = prof_##name,
#define PROF_FIELD_R(type, name, params, args, flops) .name = prof_##name,
static const dpo_backend_ops_t g_profile_ops = {
    .name = "profile",
    DPO_BACKEND_OPS(PROF_FIELD_V, PROF_FIELD_R)
};

dpo_backend_t *backend_profile_wrap(const dpo_backend_t *inner) {
    backend_check(inner);
    profile_ctx_t *c = xcalloc(1, sizeof *c, "op profiler");
    c->inner = inner;
    dpo_backend_t *be = xcalloc(1, sizeof *be, "op profiler");
    be->ops = &g_profile_ops;
    be->ctx = c;
    backend_check(be);
    return be;
}

bool backend_is_profile(const dpo_backend_t *be) { return be && be->ops == &g_profile_ops; }

static profile_ctx_t *ctx_of(const dpo_backend_t *prof) {
    if (!backend_is_profile(prof)) dpo_fatal("backend_profile: not a profiling backend");
    return prof->ctx;
}

const dpo_backend_t *backend_profile_inner(const dpo_backend_t *prof) {
    return ctx_of(prof)->inner;
}

void backend_profile_free(dpo_backend_t *prof) {
    if (!prof) return;
    free(ctx_of(prof));
    free(prof);
}

bool backend_profile_enabled(void) {
    const char *e = getenv("DPO_PROFILE_OPS");
    return e && e[0] && strcmp(e, "0") != 0;
}

void backend_profile_reset(const dpo_backend_t *prof) {
    profile_ctx_t *c = ctx_of(prof);
    memset(c->stat, 0, sizeof c->stat);
}

double backend_profile_seconds(const dpo_backend_t *prof, const char *op, long long *calls) {
    const profile_ctx_t *c = ctx_of(prof);
    for (int i = 0; i < DPO_BACKEND_N_OPS; i++)
        if (strcmp(op, dpo_backend_op_names[i]) == 0) {
            if (calls) *calls = c->stat[i].calls;
            return c->stat[i].sec;
        }
    if (calls) *calls = 0;
    return 0.0;
}

double backend_profile_total(const dpo_backend_t *prof) {
    const profile_ctx_t *c = ctx_of(prof);
    double s = 0.0;
    for (int i = 0; i < DPO_BACKEND_N_OPS; i++) s += c->stat[i].sec;
    return s;
}

void backend_profile_report(const dpo_backend_t *prof, FILE *f) {
    const profile_ctx_t *c = ctx_of(prof);
    // Ops by time, descending (insertion sort: a few dozen entries).
    int order[DPO_BACKEND_N_OPS];
    for (int i = 0; i < DPO_BACKEND_N_OPS; i++) {
        int j = i;
        while (j > 0 && c->stat[order[j - 1]].sec < c->stat[i].sec) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = i;
    }
    double total = backend_profile_total(prof);
    fprintf(f, "op profile (%s backend; every op synchronised):\n", c->inner->ops->name);
    fprintf(f, "  %-18s %10s %11s %7s %12s %9s\n", "op", "calls", "seconds", "share", "us/call",
            "GFLOP/s");
    for (int k = 0; k < DPO_BACKEND_N_OPS; k++) {
        const op_stat_t *s = &c->stat[order[k]];
        if (s->calls == 0) continue;
        fprintf(f, "  %-18s %10lld %11.4f %6.1f%% %12.1f", dpo_backend_op_names[order[k]],
                s->calls, s->sec, total > 0 ? 100.0 * s->sec / total : 0.0,
                1e6 * s->sec / (double)s->calls);
        if (s->flops > 0 && s->sec > 0) fprintf(f, " %9.2f", s->flops / s->sec / 1e9);
        fputc('\n', f);
    }
    fprintf(f, "  %-18s %10s %11.4f %6.1f%%\n", "total", "", total, 100.0);
}
