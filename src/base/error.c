// error.c — rank-aware logging and fatal errors. No MPI here: how a fatal error
// ends a job of several ranks is installed by the parallel layer (comm_errors_init),
// so serial tools (dpo_pairs, dpo_prep's tokenizer) link this layer without MPI.
#include "dpo/error.h"

#include <stdlib.h>

static int g_rank = 0;
static int g_world = 1;
static const char *g_prog = "dpo_hpc";
static void (*g_abort_job)(void);    // ends every rank (MPI_Abort)
static void (*g_finish_job)(void);   // this rank's clean end (MPI_Finalize)

void dpo_set_job_exit(void (*abort_job)(void), void (*finish_job)(void)) {
    g_abort_job = abort_job;
    g_finish_job = finish_job;
}

void log_set_program(const char *name) { g_prog = name; }

void log_set_rank(int rank, int world_size) {
    g_rank = rank;
    g_world = world_size;
}

int log_rank(void) { return g_rank; }

void log_info(const char *fmt, ...) {
    if (g_rank != 0) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

// Each line goes out in one write, so that lines of several ranks do not interleave.
static void emit_line(const char *tag, const char *fmt, va_list ap) {
    char line[4096];
    int n = snprintf(line, sizeof line, "%s", tag);
    if (n < 0 || (size_t)n >= sizeof line) n = 0;
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    fprintf(stderr, "%s\n", line);
    fflush(stderr);
}

void log_warn(const char *fmt, ...) {
    va_list ap;
    char tag[64];
    if (g_world > 1) snprintf(tag, sizeof tag, "%s: warning [rank %d]: ", g_prog, g_rank);
    else snprintf(tag, sizeof tag, "%s: warning: ", g_prog);
    va_start(ap, fmt);
    emit_line(tag, fmt, ap);
    va_end(ap);
}

// One line on stderr, after whatever stdout holds.
static void report(const char *tag, const char *fmt, va_list ap) {
    fflush(stdout);
    emit_line(tag, fmt, ap);
}

void dpo_fatal(const char *fmt, ...) {
    va_list ap;
    char tag[64];
    snprintf(tag, sizeof tag, "%s: error [rank %d]: ", g_prog, g_rank);
    va_start(ap, fmt);
    report(tag, fmt, ap);
    va_end(ap);
    // With several ranks, only an abort of the job frees the others from collectives.
    if (g_abort_job && g_world > 1) g_abort_job();
    exit(1);
}

void dpo_fatal_all(const char *fmt, ...) {
    if (g_rank == 0) {
        va_list ap;
        va_start(ap, fmt);
        char tag[64];
        snprintf(tag, sizeof tag, "%s: error: ", g_prog);
        report(tag, fmt, ap);
        va_end(ap);
    }
    if (g_finish_job) g_finish_job();
    exit(1);
}

void dpo_errf(char *err, size_t err_len, const char *fmt, ...) {
    if (!err || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

void *xmalloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) dpo_fatal("out of memory allocating %zu bytes for %s", bytes, what);
    return p;
}

void *xcalloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) dpo_fatal("out of memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void *xrealloc(void *p, size_t bytes, const char *what) {
    void *q = realloc(p, bytes ? bytes : 1);
    if (!q) dpo_fatal("out of memory growing %s to %zu bytes", what, bytes);
    return q;
}
