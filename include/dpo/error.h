// error.h — fatal errors and logging that name the rank, for an SPMD program.
//
// A fatal error on any rank must take the whole job down (MPI_Abort) rather than
// leave the other ranks blocked in a collective.
//
// The rule for errors:
//   - environment errors (a missing file, a bad key, a full disk) RETURN: -1 or
//     false with the reason in the caller's err buffer, naming the file, key or
//     tensor; the program layer decides;
//   - programmer errors (a broken invariant, a NULL table entry) DIE at once:
//     dpo_fatal, which names the rank and aborts the job;
//   - a step every rank does on its own (opening a file, binding a device) AGREES
//     first, then dies: comm_agree / comm_agree_or_die (comm.h) give every rank
//     the lowest failing rank's message, named, and end the job cleanly
//     (dpo_fatal_all), so no rank is left waiting in a collective.
#ifndef DPO_ERROR_H
#define DPO_ERROR_H

#include <stdarg.h>
#include <stdio.h>

#if defined(__GNUC__)
#define DPO_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define DPO_NORETURN __attribute__((noreturn))
#else
#define DPO_PRINTF(a, b)
#define DPO_NORETURN
#endif

#ifdef __cplusplus
extern "C" {
#endif

// Set once MPI is up; messages then carry "[rank N]". comm_errors_init (comm.h)
// calls both: the rank, and how a fatal error ends the job (abort_job: MPI_Abort,
// taking every rank down; finish_job: MPI_Finalize, this rank's clean end).
// Without them (serial tools) a fatal error is exit(1).
void log_set_rank(int rank, int world_size);
void dpo_set_job_exit(void (*abort_job)(void), void (*finish_job)(void));
int log_rank(void);

// Informational output, printed by rank 0 only.
// Name that prefixes warnings and errors ("dpo_hpc" unless a tool sets its own).
void log_set_program(const char *name);
void log_info(const char *fmt, ...) DPO_PRINTF(1, 2);
// Warnings, printed by whichever rank sees them, prefixed with the rank.
void log_warn(const char *fmt, ...) DPO_PRINTF(1, 2);
// Prints "dpo_hpc: error [rank N]: <message>" to stderr and ends the job with
// exit code 1 (MPI_Abort when several ranks run, exit() otherwise).
void dpo_fatal(const char *fmt, ...) DPO_PRINTF(1, 2) DPO_NORETURN;

// For an error every rank detects identically (a configuration or data-shape
// check): rank 0 prints it once, every rank finalizes MPI and exits 1. Must be
// reached by all ranks; use dpo_fatal for errors of one rank.
void dpo_fatal_all(const char *fmt, ...) DPO_PRINTF(1, 2) DPO_NORETURN;

// snprintf into a caller's error buffer (no-op when err is NULL or err_len 0).
void dpo_errf(char *err, size_t err_len, const char *fmt, ...) DPO_PRINTF(3, 4);

// Checked allocation: dies with a message naming what was being allocated.
void *xmalloc(size_t bytes, const char *what);
void *xcalloc(size_t n, size_t size, const char *what);
void *xrealloc(void *p, size_t bytes, const char *what);

#ifdef __cplusplus
}
#endif

#endif
