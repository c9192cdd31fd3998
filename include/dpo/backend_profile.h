// backend_profile.h — per-op timing of any backend. The wrapper's ops call the
// inner backend's ops between two clock readings, each taken after
// inner->synchronize(), so the times are right on asynchronous (GPU) backends too
// (at the cost of one synchronisation per op). Per op it accumulates calls and
// seconds, and for matmul also FLOPs (2·M·N·K).
//
// The trainer wraps its backend when the environment variable DPO_PROFILE_OPS=1 is
// set and prints the report on rank 0 at the end of the run; benchmarks/op_bench.c
// uses it directly.
#ifndef DPO_BACKEND_PROFILE_H
#define DPO_BACKEND_PROFILE_H

#include <stdbool.h>
#include <stdio.h>

#include "dpo/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// A new profiling backend around `inner` with zeroed counters (an instance: any
// number of profilers may wrap any backends). Free with backend_profile_free
// (the inner backend stays).
dpo_backend_t *backend_profile_wrap(const dpo_backend_t *inner);
void backend_profile_free(dpo_backend_t *prof);
// True when `be` is a profiling backend; its inner backend.
bool backend_is_profile(const dpo_backend_t *be);
const dpo_backend_t *backend_profile_inner(const dpo_backend_t *prof);
// True when DPO_PROFILE_OPS is set to a value other than "" or "0".
bool backend_profile_enabled(void);
// Clears the counters (e.g. after warm-up).
void backend_profile_reset(const dpo_backend_t *prof);
// Accumulated seconds of one op by its name in the op list ("matmul",
// "attention_fwd", ...); calls (when not NULL) receives its call count. Unknown
// names give 0.
double backend_profile_seconds(const dpo_backend_t *prof, const char *op, long long *calls);
// Seconds over all ops.
double backend_profile_total(const dpo_backend_t *prof);
// Prints the table sorted by time: op, calls, seconds, share of all op time, µs per
// call, and GFLOP/s for ops that count FLOPs (matmul).
void backend_profile_report(const dpo_backend_t *prof, FILE *f);

#ifdef __cplusplus
}
#endif

#endif
