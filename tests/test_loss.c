// test_loss.c — the DPO loss family (src/optim/loss.c) against hand-computed values,
// its derivatives against central finite differences, and its metrics.
//
// The numbers below were worked out by hand and checked with python3 in double
// precision. Every config value is exactly representable in float (β = 0.125,
// label smoothing 0.125, weights 0.75 / 0.25 / 0.5), so the float fields of the
// config do not perturb the expected values.
//
// The base pair used throughout:
//   policy   chosen  -12.5 (5 tokens)   rejected -15.0 (8 tokens)
//   reference chosen -13.0              rejected -14.0
// Sums:      h = (-12.5 + 15.0) - (-13.0 + 14.0) = 2.5 - 1.0 = 1.5,  x = βh = 0.1875
// Averaged:  π = -2.5, -1.875; ref = -2.6, -1.75
//            h = (-2.5 + 1.875) - (-2.6 + 1.75) = -0.625 + 0.85 = 0.225, x = 0.028125
// Reference-free (sums): h = 2.5, x = 0.3125; (averaged): h = -0.625
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dpo/loss.h"
#include "testutil.h"

static const dpo_pair_logps_t BASE = {
    .policy_chosen = -12.5, .policy_rejected = -15.0,
    .ref_chosen = -13.0, .ref_rejected = -14.0,
    .n_chosen = 5, .n_rejected = 8,
};

// A config with one loss type, no SFT term, sums everywhere.
static dpo_loss_params_t make_cfg(dpo_loss_type_t type) {
    dpo_loss_params_t c;
    memset(&c, 0, sizeof c);
    c.beta = 0.125f;
    c.preference_loss_weight = 1.0f;
    c.sft_loss_weight = 0.0f;
    c.n_loss_types = 1;
    c.loss_type[0] = type;
    c.loss_weights[0] = 1.0f;
    return c;
}

static double value(const dpo_loss_params_t *c, const dpo_pair_logps_t *p) {
    double dc, dr;
    return loss_pair(c, p, &dc, &dr, NULL);
}

// ---- 1. values against hand-computed constants ----
static void test_values(void) {
    const double tol = 1e-12;
    dpo_loss_params_t c;

    // sigmoid, sums: -logσ(0.1875) = log(1 + e^-0.1875) = 0.60378528955559474
    const double L0 = 0.60378528955559474;
    c = make_cfg(DPO_LOSS_SIGMOID);
    CHECK_CLOSE(value(&c, &BASE), L0, tol, tol);

    // cDPO, ls = 0.125: -(1-ls) logσ(x) - ls logσ(-x) = L0 + ls·x (as logσ(x) - logσ(-x) = x)
    //   = 0.60378528955559474 + 0.125·0.1875 = 0.62722278955559474
    c.label_smoothing = 0.125f;
    CHECK_CLOSE(value(&c, &BASE), 0.62722278955559474, tol, tol);

    // sigmoid on averaged log-probs: -logσ(0.028125) = 0.67918355425435817
    c = make_cfg(DPO_LOSS_SIGMOID);
    c.preference_average_log_probs = true;
    CHECK_CLOSE(value(&c, &BASE), 0.67918355425435817, tol, tol);
    // ... with ls = 0.125: 0.67918355425435817 + 0.125·0.028125 = 0.68269917925435819
    c.label_smoothing = 0.125f;
    CHECK_CLOSE(value(&c, &BASE), 0.68269917925435819, tol, tol);

    // IPO: always averaged (switch off here): (0.225 - 1/(2·0.125))² = (0.225 - 4)² = 14.250625
    c = make_cfg(DPO_LOSS_IPO);
    CHECK_CLOSE(value(&c, &BASE), 14.250625, tol, tol);
    c.preference_average_log_probs = true;  // the switch changes nothing for IPO
    CHECK_CLOSE(value(&c, &BASE), 14.250625, tol, tol);

    // hinge, sums: max(0, 1 - 0.1875) = 0.8125; averaged: 1 - 0.028125 = 0.971875
    c = make_cfg(DPO_LOSS_HINGE);
    CHECK_CLOSE(value(&c, &BASE), 0.8125, tol, tol);
    c.preference_average_log_probs = true;
    CHECK_CLOSE(value(&c, &BASE), 0.971875, tol, tol);
    // beyond the margin: β = 1, sums: 1 - 1.5 < 0 → 0, derivative 0
    c = make_cfg(DPO_LOSS_HINGE);
    c.beta = 1.0f;
    {
        double dc = 9, dr = 9;
        CHECK_CLOSE(loss_pair(&c, &BASE, &dc, &dr, NULL), 0.0, 0, tol);
        CHECK(dc == 0.0 && dr == 0.0);
    }
    // exactly at the kink: h = (-13.5 + 15) - 1 = 0.5 and β = 2, so βh = 1:
    // value 0, subgradient 0
    {
        dpo_pair_logps_t k = BASE;
        k.policy_chosen = -13.5;
        c.beta = 2.0f;
        double dc = 9, dr = 9;
        CHECK_CLOSE(loss_pair(&c, &k, &dc, &dr, NULL), 0.0, 0, tol);
        CHECK(dc == 0.0 && dr == 0.0);
    }

    // robust, ls = 0.125: (-(1-ls) logσ(x) + ls logσ(-x)) / (1-2ls)
    //   numerator = L0 + ls·(logσ(x) + logσ(-x)) = L0 + ls·(-2·L0 - x) = (1-2ls)·L0 - ls·x
    //   → L0 - ls·x/(1-2ls) = 0.60378528955559474 - 0.125·0.1875/0.75 = 0.57253528955559474
    c = make_cfg(DPO_LOSS_ROBUST);
    c.label_smoothing = 0.125f;
    CHECK_CLOSE(value(&c, &BASE), 0.57253528955559474, tol, tol);
    // robust with ls = 0 is plain DPO
    c.label_smoothing = 0.0f;
    CHECK_CLOSE(value(&c, &BASE), L0, tol, tol);

    // reference_free (the ref fields are ignored even if set):
    // sigmoid, sums: h = 2.5 → -logσ(0.3125) = 0.54905486227066813
    c = make_cfg(DPO_LOSS_SIGMOID);
    c.reference_free = true;
    CHECK_CLOSE(value(&c, &BASE), 0.54905486227066813, tol, tol);
    // IPO: h = -2.5 + 1.875 = -0.625 → (-0.625 - 4)² = 21.390625
    c = make_cfg(DPO_LOSS_IPO);
    c.reference_free = true;
    CHECK_CLOSE(value(&c, &BASE), 21.390625, tol, tol);

    // SFT term (NeMo RL): sft = -policy_chosen = 12.5 (sum) or 12.5/5 = 2.5 (average)
    // sigmoid + 0.25·sft: 0.60378528955559474 + 3.125 = 3.72878528955559474
    c = make_cfg(DPO_LOSS_SIGMOID);
    c.sft_loss_weight = 0.25f;
    {
        dpo_loss_stats_t st;
        loss_stats_zero(&st);
        double dc, dr;
        CHECK_CLOSE(loss_pair(&c, &BASE, &dc, &dr, &st), 3.7287852895555949, tol, tol);
        CHECK_CLOSE(st.sft_loss, 12.5, tol, tol);
        CHECK_CLOSE(st.preference_loss, L0, tol, tol);
        CHECK_CLOSE(st.loss, 3.7287852895555949, tol, tol);
    }
    c.sft_average_log_probs = true;  // 0.60378528955559474 + 0.25·2.5 = 1.2287852895555949
    CHECK_CLOSE(value(&c, &BASE), 1.2287852895555949, tol, tol);

    // weighted combination: 0.75·sigmoid (sums) + 0.25·IPO (averaged),
    // preference_loss_weight 0.5, sft_loss_weight 0.25 averaged:
    //   pref = 0.75·0.60378528955559474 + 0.25·14.250625 = 0.45283896716669606 + 3.56265625
    //        = 4.0154952171666958
    //   loss = 0.5·4.0154952171666958 + 0.25·2.5 = 2.0077476085833479 + 0.625 = 2.6327476085833479
    c = make_cfg(DPO_LOSS_SIGMOID);
    c.n_loss_types = 2;
    c.loss_type[1] = DPO_LOSS_IPO;
    c.loss_weights[0] = 0.75f;
    c.loss_weights[1] = 0.25f;
    c.preference_loss_weight = 0.5f;
    c.sft_loss_weight = 0.25f;
    c.sft_average_log_probs = true;
    {
        dpo_loss_stats_t st;
        loss_stats_zero(&st);
        double dc, dr;
        CHECK_CLOSE(loss_pair(&c, &BASE, &dc, &dr, &st), 2.6327476085833479, tol, tol);
        CHECK_CLOSE(st.preference_loss, 4.0154952171666958, tol, tol);
        CHECK_CLOSE(st.sft_loss, 2.5, tol, tol);
    }
}

// ---- 2. policy == reference: sigmoid loss is exactly ln 2, no margin ----
static void test_policy_equals_reference(void) {
    dpo_pair_logps_t p = {.policy_chosen = -37.25, .policy_rejected = -41.5,
                          .ref_chosen = -37.25, .ref_rejected = -41.5,
                          .n_chosen = 11, .n_rejected = 13};
    for (int avg = 0; avg < 2; avg++) {
        dpo_loss_params_t c = make_cfg(DPO_LOSS_SIGMOID);
        c.preference_average_log_probs = avg;
        dpo_loss_stats_t st;
        loss_stats_zero(&st);
        double dc, dr;
        double l = loss_pair(&c, &p, &dc, &dr, &st);
        CHECK_CLOSE(l, log(2.0), 0, 1e-12);
        CHECK(st.margins == 0.0);
        CHECK(st.rewards_chosen == 0.0 && st.rewards_rejected == 0.0);
        CHECK(st.accuracy == 0.0);
        // d/dπc = -β·σ(0) = -β/2 (per token when averaged), d/dπr = +β/2
        double ac = avg ? 11.0 : 1.0, ar = avg ? 13.0 : 1.0;
        CHECK_CLOSE(dc, -0.0625 / ac, 1e-14, 1e-15);
        CHECK_CLOSE(dr, 0.0625 / ar, 1e-14, 1e-15);
    }
}

// ---- 3. derivatives against central finite differences ----
static int fd_checks = 0;

static void fd_check(const dpo_loss_params_t *c, const dpo_pair_logps_t *p, const char *what) {
    double dc, dr;
    loss_pair(c, p, &dc, &dr, NULL);
    const double eps = 1e-5;
    dpo_pair_logps_t q = *p;
    q.policy_chosen = p->policy_chosen + eps;
    double lp = value(c, &q);
    q.policy_chosen = p->policy_chosen - eps;
    double lm = value(c, &q);
    double fdc = (lp - lm) / (2 * eps);
    q = *p;
    q.policy_rejected = p->policy_rejected + eps;
    lp = value(c, &q);
    q.policy_rejected = p->policy_rejected - eps;
    lm = value(c, &q);
    double fdr = (lp - lm) / (2 * eps);
    if (!test_close(dc, fdc, 1e-6, 1e-9) || !test_close(dr, fdr, 1e-6, 1e-9)) {
        test_fail(__FILE__, __LINE__,
                  "%s: type %d avg %d ls %g rf %d sft %g/%d: d (%.12g, %.12g) vs fd (%.12g, %.12g)",
                  what, c->loss_type[0], c->preference_average_log_probs,
                  (double)c->label_smoothing, c->reference_free, (double)c->sft_loss_weight,
                  c->sft_average_log_probs, dc, dr, fdc, fdr);
    }
    fd_checks++;
}

static void test_finite_differences(void) {
    // Several pairs: the base one, one with the rejected preferred, a long one, and one
    // with a large margin (sigmoid saturating).
    const dpo_pair_logps_t pairs[] = {
        BASE,
        {.policy_chosen = -20.0, .policy_rejected = -9.0, .ref_chosen = -18.5,
         .ref_rejected = -10.25, .n_chosen = 7, .n_rejected = 3},
        {.policy_chosen = -310.0, .policy_rejected = -295.5, .ref_chosen = -305.0,
         .ref_rejected = -299.0, .n_chosen = 200, .n_rejected = 170},
        {.policy_chosen = -5.0, .policy_rejected = -90.0, .ref_chosen = -6.0,
         .ref_rejected = -30.0, .n_chosen = 4, .n_rejected = 9},
    };
    const int npairs = (int)(sizeof pairs / sizeof pairs[0]);
    const float smoothing[] = {0.0f, 0.125f};
    const float sft_w[] = {0.0f, 0.375f};
    for (int type = 0; type < DPO_LOSS_TYPE_COUNT; type++)
        for (int avg = 0; avg < 2; avg++)
            for (int rf = 0; rf < 2; rf++)
                for (int il = 0; il < 2; il++)
                    for (int is = 0; is < 2; is++)
                        for (int sa = 0; sa < 2; sa++)
                            for (int ip = 0; ip < npairs; ip++) {
                                dpo_loss_params_t c = make_cfg((dpo_loss_type_t)type);
                                c.preference_average_log_probs = avg;
                                c.reference_free = rf;
                                c.label_smoothing = smoothing[il];
                                c.sft_loss_weight = sft_w[is];
                                c.sft_average_log_probs = sa;
                                c.preference_loss_weight = 0.75f;
                                // the hinge's kink is not differentiable: skip pairs
                                // that sit within the FD step of it
                                if (type == DPO_LOSS_HINGE) {
                                    double ac = avg ? pairs[ip].n_chosen : 1;
                                    double ar = avg ? pairs[ip].n_rejected : 1;
                                    double rc = rf ? 0 : pairs[ip].ref_chosen;
                                    double rr = rf ? 0 : pairs[ip].ref_rejected;
                                    double h = (pairs[ip].policy_chosen - rc) / ac -
                                               (pairs[ip].policy_rejected - rr) / ar;
                                    if (fabs(1.0 - 0.125 * h) < 1e-3) continue;
                                }
                                fd_check(&c, &pairs[ip], "single");
                            }
    // combinations of two and three loss types
    for (int avg = 0; avg < 2; avg++)
        for (int ip = 0; ip < npairs; ip++) {
            dpo_loss_params_t c = make_cfg(DPO_LOSS_SIGMOID);
            c.n_loss_types = 3;
            c.loss_type[1] = DPO_LOSS_IPO;
            c.loss_type[2] = DPO_LOSS_ROBUST;
            c.loss_weights[0] = 0.5f;
            c.loss_weights[1] = 0.25f;
            c.loss_weights[2] = 0.25f;
            c.label_smoothing = 0.125f;
            c.preference_average_log_probs = avg;
            c.sft_loss_weight = 0.5f;
            c.sft_average_log_probs = !avg;
            fd_check(&c, &pairs[ip], "combo3");
            c.n_loss_types = 2;
            c.loss_type[1] = DPO_LOSS_HINGE;
            fd_check(&c, &pairs[ip], "combo2");
        }
    // both derivatives of the hinge side: chosen pushed up, rejected down
    {
        dpo_loss_params_t c = make_cfg(DPO_LOSS_HINGE);
        double dc, dr;
        loss_pair(&c, &BASE, &dc, &dr, NULL);
        CHECK_CLOSE(dc, -0.125, 0, 1e-15);
        CHECK_CLOSE(dr, 0.125, 0, 1e-15);
    }
    CHECK(fd_checks > 500);
}

// ---- 4. extreme margins stay finite ----
static void test_extremes(void) {
    dpo_pair_logps_t p = BASE;
    for (int s = -1; s <= 1; s += 2) {
        p.policy_chosen = s * 8000.0;
        for (int type = 0; type < DPO_LOSS_TYPE_COUNT; type++) {
            dpo_loss_params_t c = make_cfg((dpo_loss_type_t)type);
            c.label_smoothing = 0.125f;
            double dc, dr;
            double l = loss_pair(&c, &p, &dc, &dr, NULL);
            CHECK(isfinite(l) && isfinite(dc) && isfinite(dr));
        }
    }
    // sigmoid at a huge positive margin: loss ~ e^-x ~ 0, at a huge negative one ~ -x
    dpo_loss_params_t c = make_cfg(DPO_LOSS_SIGMOID);
    p = BASE;
    p.policy_chosen = 8000.0;  // h = 8000 + 15 - 1 = 8014, x = 1001.75
    CHECK_CLOSE(value(&c, &p), 0.0, 0, 1e-300);
    p.policy_chosen = -8000.0;  // h = -8000 + 15 - 1 = -7986, x = -998.25 → loss 998.25
    CHECK_CLOSE(value(&c, &p), 998.25, 1e-15, 0);
}

// ---- 5. metrics ----
static void test_stats(void) {
    const double tol = 1e-12;
    dpo_loss_stats_t st, st2;

    // sigmoid, sums: rewards β(π - ref): chosen 0.125·0.5 = 0.0625,
    // rejected 0.125·(-1.0) = -0.125, margin 0.1875 → accuracy 1
    dpo_loss_params_t c = make_cfg(DPO_LOSS_SIGMOID);
    loss_stats_zero(&st);
    st.tokens = 42.0;  // the caller's field: loss_pair must not touch it
    double dc, dr;
    double l = loss_pair(&c, &BASE, &dc, &dr, &st);
    CHECK(st.pairs == 1.0);
    CHECK_CLOSE(st.loss, l, tol, tol);
    CHECK_CLOSE(st.preference_loss, 0.60378528955559474, tol, tol);
    CHECK(st.sft_loss == 12.5);  // sft_loss is reported even with weight 0
    CHECK_CLOSE(st.rewards_chosen, 0.0625, tol, tol);
    CHECK_CLOSE(st.rewards_rejected, -0.125, tol, tol);
    CHECK_CLOSE(st.margins, 0.1875, tol, tol);
    CHECK(st.accuracy == 1.0);
    CHECK(st.logps_chosen == -12.5 && st.logps_rejected == -15.0);
    CHECK(st.tokens == 42.0);

    // preference_average_log_probs changes the loss but not the metrics (TRL: sums)
    c.preference_average_log_probs = true;
    loss_stats_zero(&st2);
    loss_pair(&c, &BASE, &dc, &dr, &st2);
    CHECK_CLOSE(st2.rewards_chosen, 0.0625, tol, tol);
    CHECK_CLOSE(st2.rewards_rejected, -0.125, tol, tol);
    CHECK_CLOSE(st2.preference_loss, 0.67918355425435817, tol, tol);
    CHECK(st2.logps_chosen == -12.5);

    // IPO among the loss types: TRL averages every log-prob, so do the metrics:
    // chosen 0.125·(-2.5 + 2.6) = 0.0125, rejected 0.125·(-1.875 + 1.75) = -0.015625,
    // margin 0.028125, logps -2.5 / -1.875
    c = make_cfg(DPO_LOSS_SIGMOID);
    c.n_loss_types = 2;
    c.loss_type[1] = DPO_LOSS_IPO;
    c.loss_weights[1] = 1.0f;
    loss_stats_zero(&st2);
    loss_pair(&c, &BASE, &dc, &dr, &st2);
    CHECK_CLOSE(st2.rewards_chosen, 0.0125, tol, tol);
    CHECK_CLOSE(st2.rewards_rejected, -0.015625, tol, tol);
    CHECK_CLOSE(st2.margins, 0.028125, tol, tol);
    CHECK_CLOSE(st2.logps_chosen, -2.5, tol, tol);
    CHECK_CLOSE(st2.logps_rejected, -1.875, tol, tol);
    CHECK(st2.accuracy == 1.0);

    // reference_free: the reference is 0, rewards are β·π:
    // chosen 0.125·(-12.5) = -1.5625, rejected 0.125·(-15) = -1.875
    c = make_cfg(DPO_LOSS_SIGMOID);
    c.reference_free = true;
    loss_stats_zero(&st2);
    loss_pair(&c, &BASE, &dc, &dr, &st2);
    CHECK_CLOSE(st2.rewards_chosen, -1.5625, tol, tol);
    CHECK_CLOSE(st2.rewards_rejected, -1.875, tol, tol);
    CHECK_CLOSE(st2.margins, 0.3125, tol, tol);

    // a pair the policy gets wrong: rewards chosen 0.125·(-20 + 18.5) = -0.1875,
    // rejected 0.125·(-9 + 10.25) = 0.15625 → accuracy 0; accumulate onto st
    c = make_cfg(DPO_LOSS_SIGMOID);
    dpo_pair_logps_t bad = {.policy_chosen = -20.0, .policy_rejected = -9.0,
                            .ref_chosen = -18.5, .ref_rejected = -10.25,
                            .n_chosen = 7, .n_rejected = 3};
    loss_stats_zero(&st2);
    double l2 = loss_pair(&c, &bad, &dc, &dr, &st2);
    // h = -1.5 - 1.25 = -2.75, x = -0.34375 → loss = log(1 + e^0.34375)
    CHECK_CLOSE(l2, log1p(exp(0.34375)), tol, tol);
    CHECK(st2.accuracy == 0.0);
    CHECK_CLOSE(st2.margins, -0.34375, tol, tol);

    loss_stats_add(&st, &st2);
    CHECK(st.pairs == 2.0);
    CHECK(st.accuracy == 1.0);
    CHECK_CLOSE(st.loss, l + l2, tol, tol);
    CHECK_CLOSE(st.rewards_chosen, 0.0625 - 0.1875, tol, tol);
    CHECK_CLOSE(st.rewards_rejected, -0.125 + 0.15625, tol, tol);
    CHECK_CLOSE(st.margins, 0.1875 - 0.34375, tol, tol);
    CHECK_CLOSE(st.logps_chosen, -32.5, tol, tol);
    CHECK_CLOSE(st.logps_rejected, -24.0, tol, tol);
    CHECK_CLOSE(st.sft_loss, 32.5, tol, tol);
    CHECK(st.tokens == 42.0);

    // loss_stats_add covers every field; the stats are all doubles
    CHECK(LOSS_STATS_NFIELDS * sizeof(double) == sizeof(dpo_loss_stats_t));
    CHECK(LOSS_STATS_NFIELDS == 11);
    double a[LOSS_STATS_NFIELDS], b[LOSS_STATS_NFIELDS];
    for (size_t i = 0; i < LOSS_STATS_NFIELDS; i++) {
        a[i] = (double)i;
        b[i] = 100.0 * (double)(i + 1);
    }
    memcpy(&st, a, sizeof st);
    memcpy(&st2, b, sizeof st2);
    loss_stats_add(&st, &st2);
    memcpy(a, &st, sizeof st);
    for (size_t i = 0; i < LOSS_STATS_NFIELDS; i++) CHECK(a[i] == (double)i + b[i]);
    loss_stats_zero(&st);
    memcpy(a, &st, sizeof st);
    for (size_t i = 0; i < LOSS_STATS_NFIELDS; i++) CHECK(a[i] == 0.0);

    // NULL stats and NULL derivative pointers are accepted
    CHECK_CLOSE(loss_pair(&c, &BASE, NULL, NULL, NULL), 0.60378528955559474, tol, tol);
}

int main(void) {
    test_values();
    test_policy_equals_reference();
    test_finite_differences();
    test_extremes();
    test_stats();
    printf("test_loss: %d finite-difference checks\n", fd_checks);
    return test_finish("test_loss");
}
