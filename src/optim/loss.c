// loss.c — the DPO loss family on the four log-probs and two lengths of a pair.
//
// Everything here is double precision plain C: the model hands over per-sequence
// log-prob sums, and gets back d loss / d sum for its backward. doc/losses.md has
// the formulas, their sources (TRL DPOTrainer, NeMo RL DPOLossFn) and the metrics.
#include "dpo/loss.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dpo/math_shared.h"

// Token count used to average a sequence's log-prob (1 when there are no tokens, as
// NeMo RL's clamp(min=1), so an empty completion never divides by zero).
static double avg_count(int n) { return n > 0 ? (double)n : 1.0; }

// One preference loss L(h) of the implicit-reward difference h, and dL/dh.
static double pref_loss_of_h(dpo_loss_type_t type, double h, double beta, double ls,
                             double *dl_dh) {
    double x = beta * h;
    switch (type) {
    case DPO_LOSS_SIGMOID: {
        // -(1-ls) logσ(x) - ls logσ(-x); d/dx = -(1-ls) σ(-x) + ls σ(x)
        double l = -(1.0 - ls) * dpo_log_sigmoid(x) - ls * dpo_log_sigmoid(-x);
        *dl_dh = beta * (-(1.0 - ls) * dpo_sigmoid(-x) + ls * dpo_sigmoid(x));
        return l;
    }
    case DPO_LOSS_IPO: {
        // (h - 1/(2β))²; d/dh = 2 (h - 1/(2β))
        double r = h - 1.0 / (2.0 * beta);
        *dl_dh = 2.0 * r;
        return r * r;
    }
    case DPO_LOSS_HINGE: {
        // max(0, 1 - x); subgradient 0 at and beyond the kink
        double r = 1.0 - x;
        if (r > 0.0) {
            *dl_dh = -beta;
            return r;
        }
        *dl_dh = 0.0;
        return 0.0;
    }
    case DPO_LOSS_ROBUST: {
        // (-(1-ls) logσ(x) + ls logσ(-x)) / (1 - 2ls);
        // d/dx = (-(1-ls) σ(-x) - ls σ(x)) / (1 - 2ls)
        double den = 1.0 - 2.0 * ls;
        double l = (-(1.0 - ls) * dpo_log_sigmoid(x) + ls * dpo_log_sigmoid(-x)) / den;
        *dl_dh = beta * (-(1.0 - ls) * dpo_sigmoid(-x) - ls * dpo_sigmoid(x)) / den;
        return l;
    }
    default:
        *dl_dh = 0.0;
        return 0.0;
    }
}

double loss_pair(const dpo_loss_params_t *cfg, const dpo_pair_logps_t *p, double *d_chosen,
                 double *d_rejected, dpo_loss_stats_t *st) {
    const double beta = (double)cfg->beta;
    const double ls = (double)cfg->label_smoothing;
    const double ref_c = cfg->reference_free ? 0.0 : p->ref_chosen;
    const double ref_r = cfg->reference_free ? 0.0 : p->ref_rejected;
    const double len_c = avg_count(p->n_chosen), len_r = avg_count(p->n_rejected);

    // ---- preference loss: Σ_k w_k L_k ----
    double pref = 0.0, dpref_c = 0.0, dpref_r = 0.0;
    bool any_ipo = false;
    for (int k = 0; k < cfg->n_loss_types; k++) {
        dpo_loss_type_t type = cfg->loss_type[k];
        double w = (double)cfg->loss_weights[k];
        // IPO always on length-averaged log-probs (TRL); the others follow the switch.
        bool avg = type == DPO_LOSS_IPO || cfg->preference_average_log_probs;
        if (type == DPO_LOSS_IPO) any_ipo = true;
        double ac = avg ? len_c : 1.0, ar = avg ? len_r : 1.0;
        double h = (p->policy_chosen / ac - p->policy_rejected / ar) - (ref_c / ac - ref_r / ar);
        double dl_dh;
        double l = pref_loss_of_h(type, h, beta, ls, &dl_dh);
        pref += w * l;
        dpref_c += w * dl_dh / ac;   // dh/dπc = 1/ac
        dpref_r -= w * dl_dh / ar;   // dh/dπr = -1/ar
    }

    // ---- SFT term on the chosen completion (NeMo RL) ----
    double sft_len = cfg->sft_average_log_probs ? len_c : 1.0;
    double sft = -p->policy_chosen / sft_len;
    double dsft_c = -1.0 / sft_len;

    const double wp = (double)cfg->preference_loss_weight;
    const double ws = (double)cfg->sft_loss_weight;
    double loss = wp * pref + ws * sft;
    if (d_chosen) *d_chosen = wp * dpref_c + ws * dsft_c;
    if (d_rejected) *d_rejected = wp * dpref_r;

    if (st) {
        // Metrics as TRL logs them: β·(policy - reference) on the log-probs its loss
        // sees, i.e. sums, except length-averaged when IPO is one of the loss types.
        double mc = any_ipo ? len_c : 1.0, mr = any_ipo ? len_r : 1.0;
        double lp_c = p->policy_chosen / mc, lp_r = p->policy_rejected / mr;
        double rc = beta * (lp_c - ref_c / mc);
        double rr = beta * (lp_r - ref_r / mr);
        st->pairs += 1.0;
        st->loss += loss;
        st->preference_loss += pref;
        st->sft_loss += sft;
        st->accuracy += rc > rr ? 1.0 : 0.0;
        st->rewards_chosen += rc;
        st->rewards_rejected += rr;
        st->margins += rc - rr;
        st->logps_chosen += lp_c;
        st->logps_rejected += lp_r;
    }
    return loss;
}

void loss_stats_zero(dpo_loss_stats_t *st) { memset(st, 0, sizeof *st); }

void loss_stats_add(dpo_loss_stats_t *dst, const dpo_loss_stats_t *src) {
    double *d = (double *)dst;
    const double *s = (const double *)src;
    for (size_t i = 0; i < LOSS_STATS_NFIELDS; i++) d[i] += s[i];
}
