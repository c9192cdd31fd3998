// loss.h — the DPO loss family on a few numbers per pair (plain C).
//
// Each pair enters through its policy and reference log-prob sums and completion
// token counts; the loss returns its value and the derivative with respect to the
// two policy sums, which is all the backward needs. Normalising by the global
// number of pairs of the step is the caller's job, so accumulation is exact.
#ifndef DPO_LOSS_H
#define DPO_LOSS_H

#include "dpo/config.h"

typedef struct {
    double policy_chosen, policy_rejected;  // sums of completion-token log-probs
    double ref_chosen, ref_rejected;        // the same under the reference (0 if reference_free)
    int n_chosen, n_rejected;               // completion tokens
} dpo_pair_logps_t;

// Per-pair values summed over a step (divide by `pairs` to report).
typedef struct {
    double pairs;
    double loss, preference_loss, sft_loss;
    double accuracy;          // count of pairs with reward_chosen > reward_rejected
    double rewards_chosen, rewards_rejected, margins;  // β-scaled, as TRL
    // Policy log-probs as the preference loss sees them: sums, or per-token means
    // when an IPO term is listed (TRL averages every reward metric then).
    double logps_chosen, logps_rejected;
    double tokens;            // all tokens (prompt + completion) of the pairs
} dpo_loss_stats_t;

// Loss of one pair (unnormalised); writes d loss / d policy_chosen and
// d loss / d policy_rejected, and adds the pair's metrics to `st` (may be NULL).
double loss_pair(const dpo_loss_params_t *cfg, const dpo_pair_logps_t *p, double *d_chosen,
                 double *d_rejected, dpo_loss_stats_t *st);

void loss_stats_zero(dpo_loss_stats_t *st);
// Adds the fields of src into dst (the same layout as an array of doubles).
void loss_stats_add(dpo_loss_stats_t *dst, const dpo_loss_stats_t *src);
#define LOSS_STATS_NFIELDS (sizeof(dpo_loss_stats_t) / sizeof(double))

#endif
