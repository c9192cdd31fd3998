// rng.h — small deterministic random numbers (SplitMix64 seeding a xoshiro256**
// stream). Used for parameter init and per-epoch shuffles, so the same seed gives
// the same run on every machine and at every layout.
#ifndef DPO_RNG_H
#define DPO_RNG_H

#include <stdint.h>

typedef struct {
    uint64_t s[4];
} dpo_rng_t;

// Seeds a stream from (seed, stream id); distinct ids give independent streams.
void rng_seed(dpo_rng_t *r, uint64_t seed, uint64_t stream);
uint64_t rng_next(dpo_rng_t *r);
// Uniform in [0, 1).
double rng_uniform(dpo_rng_t *r);
// Standard normal (Box–Muller).
double rng_normal(dpo_rng_t *r);
// Fisher–Yates permutation of 0..n-1 into perm (n).
void rng_permutation(dpo_rng_t *r, int64_t *perm, int64_t n);

#endif
