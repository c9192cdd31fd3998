// backend_profile.h — per-op timing of any backend. The wrapper's ops call the
// inner backend's ops between two clock readings, each taken after
// inner->synchronize(), so the times are right on asynchronous (GPU) backends too
// (at the cost of one synchronisation per op). Per op it accumulates calls and
// seconds, and for matmul also FLOPs (2·M·N·K).
//
// The trainer wraps its backend when the environment variable DPO_PROFILE_OPS=1 is
// set and prints the report on rank 0 at the end of the run; benchmarks/op_bench.c
// uses it directly. One process profiles one inner backend at a time.
#ifndef DPO_BACKEND_PROFILE_H
#define DPO_BACKEND_PROFILE_H

#include <stdbool.h>
#include <stdio.h>

#include "dpo/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Returns the profiling table around `inner` (the same table on every call; a
// later call with another inner backend re-targets it and resets the counters).
const dpo_backend_t *backend_profile_wrap(const dpo_backend_t *inner);
// True when DPO_PROFILE_OPS is set to a value other than "" or "0".
bool backend_profile_enabled(void);
// Clears the counters (e.g. after warm-up).
void backend_profile_reset(void);
// Accumulated seconds of one op by its field name ("matmul", "attention_fwd", ...);
// calls (when not NULL) receives its call count. Unknown names give 0.
double backend_profile_seconds(const char *op, long long *calls);
// Seconds over all ops.
double backend_profile_total(void);
// Prints the table sorted by time: op, calls, seconds, share of all op time, µs per
// call, and GFLOP/s for matmul.
void backend_profile_report(FILE *f);

#ifdef __cplusplus
}
#endif

#endif
