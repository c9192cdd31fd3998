// trainer.c — the DPO loop: data order, micro-batches, reference log-probs,
// loss, backward, data-parallel gradient reduction, optimizer, validation,
// checkpoints and metrics.
//
// Data order is a pure function of (seed, epoch), and the training position is
// (step, epoch, epoch_pos), so a resumed run sees exactly the pairs, in exactly
// the micro-batches, that the uninterrupted run saw.
#include "dpo/trainer.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dpo/backend.h"
#include "dpo/batch.h"
#include "dpo/ckpt.h"
#include "dpo/comm.h"
#include "dpo/dataset.h"
#include "dpo/error.h"
#include "dpo/hf_model.h"
#include "dpo/loss.h"
#include "dpo/metrics.h"
#include "dpo/model.h"
#include "dpo/grad_sync.h"
#include "dpo/optim.h"
#include "dpo/schedule.h"
#include "dpo/rng.h"
#include "dpo/util.h"

#define ERR_LEN 2048

typedef struct {
    const dpo_config_t *cfg;
    const dpo_mesh_t *mesh;
    const dpo_backend_t *be;
    dpo_dataset_t ds;
    dpo_model_t policy;
    dpo_model_t ref;          // unused when reference-free or precomputed
    bool have_ref_model;
    dpo_optim_t opt;
    dpo_grad_sync_t sync;  // bucketed DP gradient reduction of the policy
    dpo_batch_t batch;
    dpo_metrics_t metrics;
    int micro;                // pairs per training micro-batch
    int val_micro;            // pairs per forward-only (validation, precompute) micro-batch
    int accum;                // micro-batches per rank per step
    int64_t steps_per_epoch;
    int64_t total_steps;
    int64_t *perm;            // (train pairs) order of the current epoch
    int64_t perm_epoch;       // epoch perm was made for (-1: none)
    // Sized for cap = max(micro, val_micro) pairs:
    double *seq_logps;        // (2*cap) policy log-prob sums of a micro-batch
    double *ref_logps;        // (2*cap)
    double *dseq;             // (2*cap)
    int64_t *idx;             // (cap) pair indices of a micro-batch
    double **val_ref_cache;   // per validation split: (2*n_pairs) cached reference sums
    char ref_identity[1200];  // what produced the reference log-probs
    dpo_train_state_t st;
    double last_val_metric;
    bool have_val_metric;
    int consecutive_skips;    // dpo.nonfinite_policy = "skip": skipped steps in a row
    int64_t skipped_total;    // skipped steps of this process
} trainer_t;

// ---------------------------------------------------------------------------
// TEST-ONLY fault injection (doc/architecture.md, "Failure behaviour"). Read once
// from the environment at start-up; unset (the normal case) means no effect.
//   DPO_TEST_INJECT_NAN_STEP=S [DPO_TEST_INJECT_NAN_RANK=R (default 0)]
//   [DPO_TEST_INJECT_NAN_COUNT=N (default 1)]: world rank R's loss of steps
//       S..S+N-1 (1-based) becomes NaN, on that rank alone.
//   DPO_TEST_FAIL_STEP=S [DPO_TEST_FAIL_RANK=R (default 0)]:
//       world rank R calls dpo_fatal at the start of step S.
// ---------------------------------------------------------------------------
typedef struct {
    long long nan_step, nan_count, nan_rank, fail_step, fail_rank;  // step 0 = off
} test_faults_t;

static long long env_ll(const char *name, long long dflt) {
    const char *v = getenv(name);
    if (!v || !*v) return dflt;
    char *end;
    long long x = strtoll(v, &end, 10);
    return *end ? dflt : x;
}

static test_faults_t test_faults_from_env(void) {
    test_faults_t f = {env_ll("DPO_TEST_INJECT_NAN_STEP", 0), env_ll("DPO_TEST_INJECT_NAN_COUNT", 1),
                       env_ll("DPO_TEST_INJECT_NAN_RANK", 0), env_ll("DPO_TEST_FAIL_STEP", 0),
                       env_ll("DPO_TEST_FAIL_RANK", 0)};
    return f;
}

// SIGUSR1 / SIGTERM: the job's time is nearly up (Slurm --signal, the job scripts'
// timers, a scheduler's preemption). The handler only records the signal; the loop
// acts on it between steps, after every rank has agreed, so all ranks write the same
// checkpoint and stop together.
static volatile sig_atomic_t g_stop_signal = 0;

static void on_stop_signal(int sig) { g_stop_signal = sig; }

static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;   // MPI and file I/O calls resume instead of failing
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

// True on every rank when any rank has received a stop signal (one small
// all-reduce per step: negligible next to the step's gradient reduction).
static bool stop_requested(const dpo_mesh_t *mesh) {
    return !comm_all_ok(mesh, DPO_GROUP_WORLD, g_stop_signal == 0);
}

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

// The architecture the run trains: from policy.model_name's checkpoint or Hugging Face
// folder, or the config.
static void resolve_model_config(const dpo_config_t *cfg, const dpo_mesh_t *mesh,
                                 const char *path, dpo_model_config_t *mc) {
    char err[ERR_LEN] = "";
    if (path[0] == '\0') {
        *mc = cfg->model;
        return;
    }
    bool ok = (hf_is_model_dir(path) ? hf_read_config(path, mc, err, sizeof err)
                                     : ckpt_read_model_config(path, mc, err, sizeof err)) == 0;
    comm_agree_or_die(mesh, ok, "policy.model_name / dpo.reference_model", err);
}

// Loads weights from `path`, or draws them from the seed when path is "".
static void model_load_initial(dpo_model_t *m, const char *path, uint64_t seed) {
    char err[ERR_LEN];
    if (path[0] == '\0') {
        model_init_random(m, seed);
    } else if (hf_is_model_dir(path)) {  // each rank reads its own slabs
        bool ok = hf_load_model(path, m, err, sizeof err) == 0;
        comm_agree_or_die(m->mesh, ok, "policy.model_name / dpo.reference_model", err);
    } else {  // collective over the mesh (MPI-IO): every rank sees the same outcome
        bool ok = ckpt_load_model(path, m, err, sizeof err) == 0;
        comm_agree_or_die(m->mesh, ok, "policy.model_name / dpo.reference_model", err);
    }
}

static void make_model(trainer_t *t, dpo_model_t *m, const char *path, bool trainable) {
    dpo_model_config_t mc;
    char err[ERR_LEN];
    resolve_model_config(t->cfg, t->mesh, path, &mc);
    if (t->ds.vocab_size > mc.vocab_size)
        dpo_fatal_all("%s: the dataset's vocab_size (%d) exceeds the model's (%d)", t->cfg->dataset_path,
                  t->ds.vocab_size, mc.vocab_size);
    int max_tokens = t->batch.cap_tokens;
    if (model_init(m, t->be, t->mesh, &mc, trainable, max_tokens, t->cfg->logprob_chunk_size, err,
                   sizeof err) != 0)
        dpo_fatal_all("%s", err);
    model_load_initial(m, path, t->cfg->seed);
}

// Longest sequence over every split, checked against the configured limit.
static int check_sequence_lengths(const trainer_t *t) {
    int longest = dataset_max_seq_len(&t->ds.train);
    for (int i = 0; i < t->ds.n_val; i++) {
        int l = dataset_max_seq_len(&t->ds.val[i]);
        if (l > longest) longest = l;
    }
    if (longest > t->cfg->max_total_sequence_length)
        dpo_fatal_all("policy.max_total_sequence_length = %d, but %s holds a sequence of %d tokens "
                  "(prepare the data with a matching limit, or raise the key)",
                  t->cfg->max_total_sequence_length, t->cfg->dataset_path, longest);
    return longest;
}

static void describe_reference(trainer_t *t) {
    const dpo_config_t *cfg = t->cfg;
    const char *src = cfg->reference_model[0] ? cfg->reference_model : cfg->model_name;
    if (src[0])
        snprintf(t->ref_identity, sizeof t->ref_identity, "%s:%s",
                 hf_is_model_dir(src) ? "hf" : "checkpoint", src);
    else
        snprintf(t->ref_identity, sizeof t->ref_identity,
                 "random-init:seed=%llu,hidden=%d,layers=%d,heads=%d/%d,ffn=%d,vocab=%d,std=%g",
                 (unsigned long long)cfg->seed, cfg->model.hidden_size,
                 cfg->model.num_hidden_layers, cfg->model.num_attention_heads,
                 cfg->model.num_key_value_heads, cfg->model.intermediate_size,
                 cfg->model.vocab_size, (double)cfg->model.initializer_range);
}

static void trainer_setup(trainer_t *t, const dpo_config_t *cfg, const dpo_mesh_t *mesh,
                          const dpo_backend_t *be, bool for_training) {
    char err[ERR_LEN];
    memset(t, 0, sizeof *t);
    t->cfg = cfg;
    t->mesh = mesh;
    t->perm_epoch = -1;
    t->be = be;
    err[0] = '\0';
    bool opened = dataset_open(&t->ds, cfg->dataset_path, mesh->world, err, sizeof err) == 0;
    comm_agree_or_die(mesh, opened, "data.dataset_path", err);
    int longest = check_sequence_lengths(t);

    int dp = mesh->dp_size;
    t->micro = cfg->train_micro_batch_size;
    if (cfg->train_global_batch_size % (t->micro * dp) != 0)
        dpo_fatal_all("policy.train_global_batch_size (%d) must be a multiple of "
                  "policy.train_micro_batch_size (%d) x data-parallel size (%d)",
                  cfg->train_global_batch_size, t->micro, dp);
    t->accum = cfg->train_global_batch_size / (t->micro * dp);
    // Forward-only passes split dpo.val_global_batch_size over the DP ranks.
    if (cfg->val_global_batch_size % dp != 0)
        dpo_fatal_all("dpo.val_global_batch_size (%d) must be a multiple of the data-parallel "
                      "size (%d)", cfg->val_global_batch_size, dp);
    t->val_micro = cfg->val_global_batch_size / dp;
    // Forward-only micro-batches are no larger than training's unless asked: the
    // activations are sized for the larger of the two.
    int vm = cfg->val_micro_batch_size > 0 ? cfg->val_micro_batch_size : t->micro;
    if (vm < t->val_micro) t->val_micro = vm;
    int cap = t->micro > t->val_micro ? t->micro : t->val_micro;
    batch_alloc(&t->batch, cap, 2 * cap * longest);
    t->seq_logps = xcalloc(2 * (size_t)cap, sizeof(double), "log-probs");
    t->ref_logps = xcalloc(2 * (size_t)cap, sizeof(double), "reference log-probs");
    t->dseq = xcalloc(2 * (size_t)cap, sizeof(double), "loss gradients");
    t->idx = xcalloc((size_t)cap, sizeof(int64_t), "pair indices");
    describe_reference(t);

    if (for_training) {
        int64_t n = t->ds.train.n_pairs;
        t->steps_per_epoch = n / cfg->train_global_batch_size;
        if (t->steps_per_epoch == 0)
            dpo_fatal_all("policy.train_global_batch_size (%d) exceeds the %lld training pairs of %s",
                      cfg->train_global_batch_size, (long long)n, cfg->dataset_path);
        t->total_steps = t->steps_per_epoch * cfg->max_num_epochs;
        if (cfg->max_num_steps > 0 && cfg->max_num_steps < t->total_steps)
            t->total_steps = cfg->max_num_steps;
        t->perm = xcalloc((size_t)n, sizeof(int64_t), "epoch order");
    }
}

static void trainer_teardown(trainer_t *t) {
    if (t->val_ref_cache) {
        for (int i = 0; i < t->ds.n_val; i++) free(t->val_ref_cache[i]);
        free(t->val_ref_cache);
    }
    if (t->policy.be) {
        grad_sync_free(&t->sync);
        optim_free(&t->opt, &t->policy);
        model_free(&t->policy);
    }
    if (t->have_ref_model) model_free(&t->ref);
    batch_free(&t->batch);
    free(t->seq_logps);
    free(t->ref_logps);
    free(t->dseq);
    free(t->idx);
    free(t->perm);
    dataset_close(&t->ds);
    metrics_close(&t->metrics);
}

// ---------------------------------------------------------------------------
// One micro-batch
// ---------------------------------------------------------------------------

static void read_batch(trainer_t *t, const dpo_split_t *s, const int64_t *idx, int n) {
    char err[ERR_LEN];
    if (dataset_read_batch(&t->ds, s, idx, n, &t->batch, err, sizeof err) != 0)
        dpo_fatal("%s", err);
}

// Reference log-prob sums of the batch's sequences into t->ref_logps.
static void reference_logps(trainer_t *t) {
    const dpo_batch_t *b = &t->batch;
    if (t->cfg->loss.reference_free) {
        for (int s = 0; s < b->n_seq; s++) t->ref_logps[s] = 0.0;
    } else if (t->cfg->precomputed_reference_logprobs) {
        for (int s = 0; s < b->n_seq; s++) t->ref_logps[s] = (double)b->ref_logps[s];
    } else {
        model_forward(&t->ref, b, t->ref_logps, false);
    }
}

// Loss of the batch's pairs, each divided by `norm` (the step's global pair
// count); fills t->dseq and adds the pairs' statistics to st.
static void batch_loss(trainer_t *t, double norm, dpo_loss_stats_t *st) {
    const dpo_batch_t *b = &t->batch;
    for (int p = 0; p < b->n_pairs; p++) {
        int c = 2 * p, r = 2 * p + 1;
        dpo_pair_logps_t pl = {
            .policy_chosen = t->seq_logps[c],
            .policy_rejected = t->seq_logps[r],
            .ref_chosen = t->ref_logps[c],
            .ref_rejected = t->ref_logps[r],
            .n_chosen = b->n_completion[c],
            .n_rejected = b->n_completion[r],
        };
        double dc, dr;
        loss_pair(&t->cfg->loss, &pl, &dc, &dr, st);
        t->dseq[c] = dc / norm;
        t->dseq[r] = dr / norm;
        st->tokens += (double)(b->cu_seqlens[r + 1] - b->cu_seqlens[c]);
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

static void validate_split(trainer_t *t, int vi, dpo_loss_stats_t *st) {
    const dpo_split_t *s = &t->ds.val[vi];
    int64_t n = s->n_pairs;
    if (t->cfg->val_max_pairs > 0 && n > t->cfg->val_max_pairs) n = t->cfg->val_max_pairs;
    int mb = t->val_micro, dp = t->mesh->dp_size;
    bool compute_ref = !t->cfg->loss.reference_free && !t->cfg->precomputed_reference_logprobs;
    bool fill_cache = false;
    if (compute_ref && !t->val_ref_cache[vi]) {
        // The reference is frozen: its validation log-probs are computed once.
        t->val_ref_cache[vi] = xcalloc(2 * (size_t)n, sizeof(double), "validation reference cache");
        fill_cache = true;
    }
    int64_t *idx = t->idx;
    loss_stats_zero(st);
    int64_t nb = (n + mb - 1) / mb;
    for (int64_t k = t->mesh->dp_rank; k < nb; k += dp) {
        int cnt = (int)(n - k * mb < mb ? n - k * mb : mb);
        for (int i = 0; i < cnt; i++) idx[i] = k * mb + i;
        read_batch(t, s, idx, cnt);
        model_forward(&t->policy, &t->batch, t->seq_logps, false);
        if (compute_ref) {
            double *cache = t->val_ref_cache[vi] + 2 * k * mb;
            if (fill_cache) {
                model_forward(&t->ref, &t->batch, t->ref_logps, false);
                for (int j = 0; j < 2 * cnt; j++) cache[j] = t->ref_logps[j];
            }
            for (int j = 0; j < 2 * cnt; j++) t->ref_logps[j] = cache[j];
        } else {
            reference_logps(t);
        }
        batch_loss(t, 1.0, st);
    }
    comm_allreduce_f64(t->mesh, DPO_GROUP_DP, (double *)st, LOSS_STATS_NFIELDS, DPO_REDUCE_SUM);
}

static void run_validation(trainer_t *t, double elapsed) {
    if (t->ds.n_val == 0) return;
    const char *metric = t->cfg->metric_name;
    for (int vi = 0; vi < t->ds.n_val; vi++) {
        dpo_loss_stats_t st;
        double t0 = now_sec();
        validate_split(t, vi, &st);
        char split[DATASET_NAME_MAX + 8];
        snprintf(split, sizeof split, "val:%s", t->ds.val[vi].name);
        double dt = now_sec() - t0;
        dpo_metrics_ctx_t ctx = {.step = t->st.step, .total_steps = t->total_steps,
                                 .epoch = t->st.epoch, .split = split, .grad_norm = -1, .lr = -1,
                                 .tokens_per_sec = dt > 0 ? st.tokens / dt : 0,
                                 .elapsed_sec = elapsed};
        metrics_log(&t->metrics, &ctx, &st);
        // checkpointing.metric_name is "<split>/<field>", e.g. "val:heldout/loss".
        size_t sl = strlen(split);
        if (metric[0] && strncmp(metric, split, sl) == 0 && metric[sl] == '/') {
            double v;
            if (metrics_field(&st, metric + sl + 1, &v)) {
                t->last_val_metric = v;
                t->have_val_metric = true;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Training
// ---------------------------------------------------------------------------

static void ensure_epoch_order(trainer_t *t) {
    if (t->perm_epoch == t->st.epoch) return;
    int64_t n = t->ds.train.n_pairs;
    if (t->cfg->shuffle) {
        dpo_rng_t r;
        rng_seed(&r, t->cfg->seed, 0x5348554646ull + (uint64_t)t->st.epoch);  // "SHUFF" + epoch
        rng_permutation(&r, t->perm, n);
    } else {
        for (int64_t i = 0; i < n; i++) t->perm[i] = i;
    }
    t->perm_epoch = t->st.epoch;
}

// The step's micro-batches for the schedule: micro-batch j of DP rank r holds the
// pairs at global slots (j*dp + r)*micro ... of the step.
typedef struct {
    trainer_t *t;
    double norm;             // the step's global pair count
    dpo_loss_stats_t *st;
} step_ctx_t;

static const dpo_batch_t *step_load(void *ctx, int j) {
    step_ctx_t *c = ctx;
    trainer_t *t = c->t;
    int64_t base = t->st.epoch_pos + ((int64_t)j * t->mesh->dp_size + t->mesh->dp_rank) * t->micro;
    read_batch(t, &t->ds.train, t->perm + base, t->micro);
    reference_logps(t);
    return &t->batch;
}

static void step_loss(void *ctx, int j, const dpo_batch_t *b, const double *seq_logps,
                      double *dseq) {
    (void)j;
    (void)b;
    (void)seq_logps;
    (void)dseq;   // batch_loss reads t->seq_logps and writes t->dseq: the same buffers
    step_ctx_t *c = ctx;
    batch_loss(c->t, c->norm, c->st);
}

// One optimizer step over the global batch; returns the step's statistics and
// whether its update was skipped (dpo.nonfinite_policy = "skip").
static void train_step(trainer_t *t, const test_faults_t *tf, dpo_loss_stats_t *st,
                       double *grad_norm, float *lr, bool *skipped) {
    const dpo_config_t *cfg = t->cfg;
    const dpo_mesh_t *mesh = t->mesh;
    long long step_no = (long long)t->st.step + 1;  // 1-based, as logged
    if (tf->fail_step == step_no && tf->fail_rank == mesh->world_rank)
        dpo_fatal("injected failure at step %lld (DPO_TEST_FAIL_STEP, test only)", step_no);
    ensure_epoch_order(t);
    model_zero_grads(&t->policy);
    loss_stats_zero(st);
    // Forward, loss and backward of every micro-batch; the gradients are summed over
    // DP in buckets during the last backward (all-reduced, or with ZeRO-1
    // reduce-scattered so that each DP rank holds the sum for its shard).
    step_ctx_t sc = {.t = t, .norm = (double)cfg->train_global_batch_size, .st = st};
    dpo_step_fns_t fns = {.load = step_load, .loss = step_loss, .seq_logps = t->seq_logps,
                          .dseq = t->dseq};
    schedule_forward_backward_no_pipelining(&t->policy, &t->sync, t->accum, &fns, &sc);
    comm_allreduce_f64(mesh, DPO_GROUP_DP, (double *)st, LOSS_STATS_NFIELDS, DPO_REDUCE_SUM);
    *grad_norm = optim_global_grad_norm(&t->opt, &t->policy);
    if (tf->nan_step > 0 && step_no >= tf->nan_step && step_no < tf->nan_step + tf->nan_count &&
        tf->nan_rank == mesh->world_rank)
        st->loss = NAN;  // test only

    // One decision for the whole job: the lowest world rank that sees a non-finite
    // loss or gradient norm, combined over every rank (TP and DP) before any update.
    bool bad = !isfinite(*grad_norm) || !isfinite(st->loss);
    double flag = bad ? (double)(mesh->world_size - mesh->world_rank) : 0.0;
    comm_allreduce_f64(mesh, DPO_GROUP_WORLD, &flag, 1, DPO_REDUCE_MAX);
    *lr = optim_lr(&cfg->optim, t->st.step, t->total_steps);
    *skipped = false;
    if (flag > 0.0) {
        int who = mesh->world_size - (int)flag;
        bool skip = cfg->nonfinite_policy == DPO_NONFINITE_SKIP;
        if (skip && t->consecutive_skips >= cfg->max_skipped_steps)
            dpo_fatal_all("step %lld: non-finite loss or gradient norm (first seen on rank %d) "
                          "after %d consecutive skipped steps (dpo.max_skipped_steps = %d); "
                          "stopping without applying the update or writing a checkpoint",
                          step_no, who, t->consecutive_skips, cfg->max_skipped_steps);
        if (!skip)
            dpo_fatal_all("step %lld: non-finite loss or gradient norm (first seen on rank %d); "
                          "stopping without applying the update or writing a checkpoint "
                          "(dpo.nonfinite_policy = \"abort\"; lower policy.optimizer.lr?)",
                          step_no, who);
        t->consecutive_skips++;
        t->skipped_total++;
        log_warn("step %lld: non-finite loss or gradient norm (first seen on rank %d): update "
                 "skipped (%d in a row, dpo.max_skipped_steps = %d)",
                 step_no, who, t->consecutive_skips, cfg->max_skipped_steps);
        model_zero_grads(&t->policy);
        *skipped = true;
    } else {
        t->consecutive_skips = 0;
        optim_step(&t->opt, &t->policy, &cfg->optim, *lr, *grad_norm);
    }
    // A skipped step still moves the step counter (and with it the schedule) and the data.
    t->st.step++;
    t->st.epoch_pos += cfg->train_global_batch_size;
    if (t->st.epoch_pos + cfg->train_global_batch_size > t->ds.train.n_pairs) {
        t->st.epoch++;
        t->st.epoch_pos = 0;
    }
}

static void save_checkpoint(trainer_t *t, double elapsed) {
    const dpo_config_t *cfg = t->cfg;
    char err[ERR_LEN];
    t->st.elapsed_sec = elapsed;
    t->st.has_metric = t->have_val_metric;
    t->st.metric = t->last_val_metric;
    if (ckpt_save(cfg->checkpoint_dir, t->mesh, &t->policy, &t->opt, &t->st, cfg, err,
                  sizeof err) != 0)
        dpo_fatal_all("checkpointing: %s", err);  // every rank holds the same message
    if (t->mesh->world_rank == 0) {
        log_info("  saved checkpoint %s/step_%08lld.h5", cfg->checkpoint_dir, (long long)t->st.step);
        if (cfg->keep_top_k > 0) ckpt_prune(cfg->checkpoint_dir, cfg->keep_top_k, cfg->higher_is_better);
    }
    MPI_Barrier(t->mesh->world);
}

// Restores policy, optimizer and position from the latest checkpoint, if any.
static bool maybe_resume(trainer_t *t) {
    const dpo_config_t *cfg = t->cfg;
    if (!cfg->ckpt_enabled || !cfg->resume) return false;
    char *latest = ckpt_find_latest(cfg->checkpoint_dir);
    if (!latest) {
        log_info("checkpointing.resume: no checkpoint in %s, starting fresh", cfg->checkpoint_dir);
        return false;
    }
    char err[ERR_LEN] = "";
    bool ok = ckpt_load_model(latest, &t->policy, err, sizeof err) == 0 &&
              ckpt_load_optim(latest, &t->policy, &t->opt, err, sizeof err) == 0 &&
              ckpt_load_state(latest, &t->st, err, sizeof err) == 0;
    if (!ok) free(latest);
    comm_agree_or_die(t->mesh, ok, "checkpointing.resume", err);
    if (t->st.seed != cfg->seed)
        dpo_fatal_all("checkpointing.resume: %s was written with dpo.seed = %llu, this run has %llu",
                  latest, (unsigned long long)t->st.seed, (unsigned long long)cfg->seed);
    log_info("resumed from %s at step %lld (epoch %lld, pair %lld)", latest, (long long)t->st.step,
             (long long)t->st.epoch, (long long)t->st.epoch_pos);
    free(latest);
    return true;
}

// <log_dir>/config.cfg through config.cfg.tmp: every write checked, synced, renamed;
// the temporary file is removed on failure. Returns 0, or -1 with a message.
static int write_effective_config(const dpo_config_t *cfg, char *err, size_t err_len) {
    char path[DPO_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/config.cfg", cfg->log_dir);
    util_afile_t out;
    if (util_afile_open(&out, path, err, err_len) != 0) return -1;
    config_write_cfg(cfg, out.f);   // its fprintf errors stay in the stream's error flag
    return util_afile_commit(&out, err, err_len);
}

// The run's outputs, made once every input (model, reference, dataset, the checkpoint
// to resume) is open and checked, so a failed start leaves nothing behind: rank 0
// creates log_dir, writes config.cfg and opens metrics.jsonl (cut back to the
// checkpoint's step when resumed); every rank agrees on the outcome.
static void open_run_outputs(trainer_t *t, bool resumed) {
    const dpo_config_t *cfg = t->cfg;
    char err[ERR_LEN] = "";
    bool root = t->mesh->world_rank == 0, ok = true;
    if (root)
        ok = util_mkdir_p(cfg->log_dir, err, sizeof err) == 0 &&
             write_effective_config(cfg, err, sizeof err) == 0;
    if (ok)
        ok = (resumed ? metrics_open_resumed(&t->metrics, cfg->log_dir, root, t->st.step, err,
                                             sizeof err)
                      : metrics_open(&t->metrics, cfg->log_dir, root, err, sizeof err)) == 0;
    comm_agree_or_die(t->mesh, ok, "logger.log_dir", err);
}

// checkpointing.metric_name = "val:<set>/<field>" (config.c checked the form): the set
// must be a validation set of the dataset and the field a metric, or no checkpoint
// would ever be ranked by it.
static void check_metric_name(const trainer_t *t) {
    const char *mn = t->cfg->metric_name;
    if (!mn[0]) return;
    const char *set = mn + 4, *slash = strchr(set, '/');
    if (!slash) return;  // config.c refuses this form
    int len = (int)(slash - set);
    double v;
    dpo_loss_stats_t zero;
    loss_stats_zero(&zero);
    if (!metrics_field(&zero, slash + 1, &v))
        dpo_fatal_all("checkpointing.metric_name = \"%s\": \"%s\" is not a metric (loss, "
                      "preference_loss, sft_loss, accuracy, rewards_chosen, rewards_rejected, "
                      "margins, logps_chosen, logps_rejected)", mn, slash + 1);
    char sets[1024] = "";
    size_t at = 0;
    for (int i = 0; i < t->ds.n_val; i++) {
        const char *name = t->ds.val[i].name;
        if ((int)strlen(name) == len && strncmp(name, set, (size_t)len) == 0) return;
        if (at < sizeof sets)
            at += (size_t)snprintf(sets + at, sizeof sets - at, "%s%s", i ? ", " : "", name);
    }
    dpo_fatal_all("checkpointing.metric_name = \"%s\": %s has no validation set \"%.*s\" (its "
                  "validation sets: %s)", mn, t->cfg->dataset_path, len, set,
                  t->ds.n_val ? sets : "none");
}

static void print_banner(const trainer_t *t) {
    const dpo_config_t *cfg = t->cfg;
    const dpo_layout_t *lay = &t->policy.layout;
    log_info("model: %lld parameters (hidden %d, layers %d, heads %d/%d, head_dim %d, ffn %d, "
             "vocab %d%s%s%s)",
             (long long)layout_total_params(lay), lay->cfg.hidden_size, lay->cfg.num_hidden_layers,
             lay->cfg.num_attention_heads, lay->cfg.num_key_value_heads, lay->head_dim,
             lay->cfg.intermediate_size, lay->cfg.vocab_size,
             lay->cfg.tie_word_embeddings ? ", tied" : "", lay->cfg.attention_bias ? ", qkv bias" : "",
             lay->cfg.qk_norm ? ", qk-norm" : "");
    log_info("data: %s — %lld training pairs, %d validation set(s); %lld steps/epoch, %lld steps",
             cfg->dataset_path, (long long)t->ds.train.n_pairs, t->ds.n_val,
             (long long)t->steps_per_epoch, (long long)t->total_steps);
    log_info("batch: %d pairs/step = %d micro x %d accumulation x %d data-parallel; reference: %s",
             cfg->train_global_batch_size, t->micro, t->accum, t->mesh->dp_size,
             cfg->loss.reference_free ? "none (reference-free)"
             : cfg->precomputed_reference_logprobs ? "precomputed log-probs from the dataset"
                                                   : t->ref_identity);
    if (t->opt.sharded)
        log_info("optimizer: ZeRO-1, AdamW moments sharded over %d data-parallel ranks (%zu of %zu "
                 "elements of this TP slab per rank)",
                 t->mesh->dp_size, t->opt.n, lay->n_params);
}

// The reference side of a run: checks precomputed log-probs against this run's
// reference, or loads the reference model (frozen) unless the run is reference-free.
static void setup_reference(trainer_t *t) {
    const dpo_config_t *cfg = t->cfg;
    if (cfg->precomputed_reference_logprobs) {
        if (!t->ds.train.has_ref)
            dpo_fatal_all("dpo.precomputed_reference_logprobs = true, but %s holds no reference "
                      "log-probs (run dpo_hpc --precompute-reference first)", cfg->dataset_path);
        for (int i = 0; i < t->ds.n_val; i++)
            if (!t->ds.val[i].has_ref)
                dpo_fatal_all("%s: validation set %s has no reference log-probs", cfg->dataset_path,
                          t->ds.val[i].name);
        if (strcmp(t->ds.reference_model, t->ref_identity) != 0)
            dpo_fatal_all("dpo.precomputed_reference_logprobs: %s stores log-probs of \"%s\", but this "
                      "run's reference is \"%s\"", cfg->dataset_path, t->ds.reference_model,
                      t->ref_identity);
    } else if (!cfg->loss.reference_free) {
        // The reference is the initial policy (or dpo.reference_model), loaded before any
        // resume so that it stays the frozen starting point.
        make_model(t, &t->ref, cfg->reference_model[0] ? cfg->reference_model : cfg->model_name,
                   false);
        t->have_ref_model = true;
    }
}

int trainer_train(const dpo_config_t *cfg, const dpo_mesh_t *mesh, const dpo_backend_t *be) {
    trainer_t t;
    trainer_setup(&t, cfg, mesh, be, true);
    check_metric_name(&t);
    setup_reference(&t);
    make_model(&t, &t.policy, cfg->model_name, true);
    model_set_recompute(&t.policy, cfg->activation_checkpointing);
    optim_init(&t.opt, &t.policy, cfg->zero_stage);
    grad_sync_init(&t.sync, &t.policy, &t.opt, DPO_GRAD_BUCKET_BYTES);
    t.val_ref_cache = xcalloc((size_t)(t.ds.n_val > 0 ? t.ds.n_val : 1), sizeof(double *), "cache");
    t.st.seed = cfg->seed;
    bool resumed = maybe_resume(&t);
    print_banner(&t);
    open_run_outputs(&t, resumed);

    double t_start = now_sec() - t.st.elapsed_sec;
    if (cfg->val_at_start && !resumed) run_validation(&t, 0.0);
    int64_t step0 = t.st.step;
    test_faults_t faults = test_faults_from_env();
    install_stop_handlers();
    double t_loop = now_sec();
    bool stopped = false;
    while (t.st.step < t.total_steps) {
        dpo_loss_stats_t st;
        double gnorm;
        float lr;
        bool skipped;
        double t0 = now_sec();
        train_step(&t, &faults, &st, &gnorm, &lr, &skipped);
        double t1 = now_sec();
        double per_step = (t1 - t_loop) / (double)(t.st.step - step0);
        dpo_metrics_ctx_t ctx = {.step = t.st.step, .total_steps = t.total_steps,
                                 .epoch = t.st.epoch, .split = "train", .grad_norm = gnorm,
                                 .lr = lr, .tokens_per_sec = st.tokens / (t1 - t0),
                                 .elapsed_sec = t1 - t_start, .step_sec = per_step,
                                 .skipped = skipped ? 1 : 0};
        metrics_log(&t.metrics, &ctx, &st);
        bool last = t.st.step == t.total_steps;
        if ((cfg->val_period > 0 && t.st.step % cfg->val_period == 0) || last)
            run_validation(&t, now_sec() - t_start);
        bool saved = false;
        if (cfg->ckpt_enabled && ((cfg->save_period > 0 && t.st.step % cfg->save_period == 0) || last)) {
            save_checkpoint(&t, now_sec() - t_start);
            saved = true;
        }
        if (!last && stop_requested(mesh)) {
            log_info("stop signal received: %s at step %lld", cfg->ckpt_enabled ?
                     "saving a checkpoint and stopping" : "stopping (checkpointing is disabled, "
                     "so nothing is saved)", (long long)t.st.step);
            if (cfg->ckpt_enabled && !saved) save_checkpoint(&t, now_sec() - t_start);
            stopped = true;
            break;
        }
    }
    log_info("%s: %lld steps in %.1f s", stopped ? "stopped early" : "done", (long long)t.st.step,
             now_sec() - t_start);
    if (t.skipped_total > 0)
        log_info("skipped %lld step(s) with a non-finite loss or gradient norm",
                 (long long)t.skipped_total);
    trainer_teardown(&t);
    return stopped ? TRAINER_STOPPED_BY_SIGNAL : 0;
}

// ---------------------------------------------------------------------------
// Evaluation only
// ---------------------------------------------------------------------------

int trainer_evaluate(const dpo_config_t *cfg, const dpo_mesh_t *mesh, const dpo_backend_t *be,
                     const char *weights) {
    trainer_t t;
    char err[ERR_LEN];
    // Named here as --evaluate's argument, before the model loader's generic message.
    if (access(weights, R_OK) != 0)
        dpo_fatal_all("--evaluate %s: %s", weights, strerror(errno));
    trainer_setup(&t, cfg, mesh, be, false);
    if (t.ds.n_val == 0)
        dpo_fatal_all("--evaluate: %s has no validation split (dpo_prep --val NAME=FILE adds one)",
                      cfg->dataset_path);
    setup_reference(&t);   // as in training: from policy.model_name / dpo.reference_model
    make_model(&t, &t.policy, weights, false);
    // A checkpoint's records carry its step and epoch, so they line up with training's.
    err[0] = '\0';
    bool ok = hf_is_model_dir(weights) || ckpt_load_state(weights, &t.st, err, sizeof err) == 0;
    comm_agree_or_die(mesh, ok, "--evaluate", err);
    t.val_ref_cache = xcalloc((size_t)t.ds.n_val, sizeof(double *), "cache");
    // Every input checked: only now log_dir and eval.jsonl.
    bool root = mesh->world_rank == 0;
    ok = (!root || util_mkdir_p(cfg->log_dir, err, sizeof err) == 0) &&
         metrics_open_named(&t.metrics, cfg->log_dir, "eval.jsonl", root, err, sizeof err) == 0;
    comm_agree_or_die(mesh, ok, "logger.log_dir", err);
    log_info("evaluating %s against the reference %s on %d validation set(s) of %s", weights,
             t.ref_identity, t.ds.n_val, cfg->dataset_path);
    double t0 = now_sec();
    run_validation(&t, 0.0);
    log_info("evaluation done in %.1f s; records in %s/eval.jsonl", now_sec() - t0, cfg->log_dir);
    trainer_teardown(&t);
    return 0;
}

// ---------------------------------------------------------------------------
// Precomputed reference log-probs
// ---------------------------------------------------------------------------

// Reference sums of every pair of a split; the DP ranks share the work and the
// result is summed so that rank 0 holds every value.
static void reference_for_split(trainer_t *t, const dpo_split_t *s, float *chosen,
                                float *rejected) {
    int mb = t->val_micro, dp = t->mesh->dp_size;
    int64_t n = s->n_pairs, nb = (n + mb - 1) / mb;
    int64_t *idx = t->idx;
    memset(chosen, 0, (size_t)n * sizeof(float));
    memset(rejected, 0, (size_t)n * sizeof(float));
    for (int64_t k = t->mesh->dp_rank; k < nb; k += dp) {
        int cnt = (int)(n - k * mb < mb ? n - k * mb : mb);
        for (int i = 0; i < cnt; i++) idx[i] = k * mb + i;
        read_batch(t, s, idx, cnt);
        model_forward(&t->ref, &t->batch, t->ref_logps, false);
        for (int i = 0; i < cnt; i++) {
            chosen[k * mb + i] = (float)t->ref_logps[2 * i];
            rejected[k * mb + i] = (float)t->ref_logps[2 * i + 1];
        }
    }
    comm_allreduce_f32(t->mesh, DPO_GROUP_DP, chosen, (size_t)n, DPO_REDUCE_SUM);
    comm_allreduce_f32(t->mesh, DPO_GROUP_DP, rejected, (size_t)n, DPO_REDUCE_SUM);
}

int trainer_precompute_reference(const dpo_config_t *cfg, const dpo_mesh_t *mesh,
                                 const dpo_backend_t *be) {
    trainer_t t;
    char err[ERR_LEN];
    trainer_setup(&t, cfg, mesh, be, false);
    if (cfg->loss.reference_free) dpo_fatal_all("dpo.reference_free = true: there is no reference to precompute");
    make_model(&t, &t.ref, cfg->reference_model[0] ? cfg->reference_model : cfg->model_name, false);
    t.have_ref_model = true;
    log_info("precomputing reference log-probs of %s with %s", cfg->dataset_path, t.ref_identity);
    int n_splits = 1 + t.ds.n_val;
    float **vals = xcalloc(2 * (size_t)n_splits, sizeof(float *), "reference values");
    char (*groups)[DATASET_NAME_MAX + 16] = xcalloc((size_t)n_splits, sizeof *groups, "groups");
    int64_t *counts = xcalloc((size_t)n_splits, sizeof(int64_t), "counts");
    for (int i = 0; i < n_splits; i++) {
        const dpo_split_t *s = i == 0 ? &t.ds.train : &t.ds.val[i - 1];
        counts[i] = s->n_pairs;
        snprintf(groups[i], sizeof groups[i], "%s", s->group_path);
        vals[2 * i] = xcalloc((size_t)s->n_pairs + 1, sizeof(float), "chosen");
        vals[2 * i + 1] = xcalloc((size_t)s->n_pairs + 1, sizeof(float), "rejected");
        double t0 = now_sec();
        reference_for_split(&t, s, vals[2 * i], vals[2 * i + 1]);
        log_info("  %-20s %lld pairs in %.1f s", s->name, (long long)s->n_pairs, now_sec() - t0);
    }
    // The file is rewritten below: close it everywhere first.
    trainer_teardown(&t);
    int ok = 1;
    if (mesh->world_rank == 0) {
        // Every split into one copy of the file, renamed over it at the end.
        dataset_ref_split_t *refs = xcalloc((size_t)n_splits, sizeof *refs, "reference splits");
        for (int i = 0; i < n_splits; i++)
            refs[i] = (dataset_ref_split_t){groups[i], vals[2 * i], vals[2 * i + 1], counts[i]};
        ok = dataset_store_references(cfg->dataset_path, refs, n_splits, t.ref_identity, err,
                                      sizeof err) == 0;
        free(refs);
        if (ok) log_info("stored reference log-probs in %s", cfg->dataset_path);
    }
    for (int i = 0; i < 2 * n_splits; i++) free(vals[i]);
    free(vals);
    free(groups);
    free(counts);
    comm_agree_or_die(mesh, ok, "--precompute-reference", err);
    return 0;
}
