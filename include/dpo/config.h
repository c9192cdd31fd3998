// config.h — the run configuration: a libconfig file plus `section.key=value`
// overrides, validated on rank 0 and broadcast to every rank as its text (what
// config_write_cfg writes), which every rank parses back.
//
// Each key is one row of the table in config.c (name, type, field, default, range
// or choices, doc); defaults, parsing, overrides, range checks and writing all
// come from it.
//
// Section and key names follow NeMo RL where the meaning is the same and TRL
// where NeMo RL has no equivalent; doc/config.md lists every key.
#ifndef DPO_CONFIG_H
#define DPO_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define DPO_PATH_MAX 1024
#define DPO_NAME_MAX 64
#define DPO_MAX_LOSS_TYPES 8

// Every string choice of the configuration is an enum; its names (the values the
// file and the overrides accept) are the table of config.c, in this order.
typedef enum {
    DPO_LOSS_SIGMOID = 0,  // "sigmoid": DPO (Rafailov et al.), with label smoothing = cDPO
    DPO_LOSS_IPO,          // "ipo": IPO (Azar et al.), on length-averaged log-probs as TRL
    DPO_LOSS_HINGE,        // "hinge": SLiC hinge
    DPO_LOSS_ROBUST,       // "robust": robust DPO (Chowdhury et al.)
    DPO_LOSS_TYPE_COUNT
} dpo_loss_type_t;

typedef enum {
    DPO_SCHED_CONSTANT = 0,  // "constant"
    DPO_SCHED_LINEAR,        // "linear"
    DPO_SCHED_COSINE,        // "cosine"
    DPO_SCHED_TYPE_COUNT
} dpo_sched_type_t;

// dpo.nonfinite_policy: what a non-finite loss or gradient does.
typedef enum {
    DPO_NONFINITE_ABORT = 0,  // "abort": stop the run
    DPO_NONFINITE_SKIP,       // "skip": drop the step's update
    DPO_NONFINITE_COUNT
} dpo_nonfinite_policy_t;

// cluster.backend (dpo_backend_t is the ops table; this is the choice of one).
typedef enum {
    DPO_BACKEND_CPU = 0,  // "cpu"
    DPO_BACKEND_CUDA,     // "cuda"
    DPO_BACKEND_KIND_COUNT
} dpo_backend_kind_t;

// cluster.matmul_precision as configured; dpo_hpc maps it to the CUDA backend's
// dpo_matmul_precision_t (backend.h).
typedef enum {
    DPO_CFG_MATMUL_BF16 = 0,  // "bf16"
    DPO_CFG_MATMUL_TF32,      // "tf32"
    DPO_CFG_MATMUL_FP32,      // "fp32"
    DPO_CFG_MATMUL_COUNT
} dpo_cfg_matmul_t;

// Architecture of the Llama-family decoder (names as Hugging Face config.json).
typedef struct {
    int vocab_size;
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int num_key_value_heads;
    int head_dim;              // 0 in the file = hidden_size / num_attention_heads
    int intermediate_size;
    float rope_theta;
    float rms_norm_eps;
    bool attention_bias;       // Qwen2: bias on q, k, v projections
    bool qk_norm;              // Qwen3: per-head RMSNorm on q and k
    bool tie_word_embeddings;
    float initializer_range;   // std of the normal init of matrices
} dpo_model_config_t;

// What loss_pair needs (dpo.* loss keys).
typedef struct {
    float beta;                      // dpo.reference_policy_kl_penalty
    float preference_loss_weight;
    float sft_loss_weight;
    bool preference_average_log_probs;
    bool sft_average_log_probs;
    int n_loss_types;
    dpo_loss_type_t loss_type[DPO_MAX_LOSS_TYPES];
    float loss_weights[DPO_MAX_LOSS_TYPES];
    float label_smoothing;
    bool reference_free;
} dpo_loss_params_t;

// What optim_lr and optim_step need (policy.optimizer.*, policy.scheduler.*,
// policy.max_grad_norm).
typedef struct {
    float max_grad_norm;             // 0 = no clipping
    float lr;
    float weight_decay;
    float beta1, beta2;
    float adam_eps;
    dpo_sched_type_t sched_type;
    int warmup_steps;
    float min_lr_ratio;              // floor of the decay, as a fraction of lr
} dpo_optim_params_t;

typedef struct {
    // policy
    char model_name[DPO_PATH_MAX];   // checkpoint (.h5) to start from; "" = random init
    dpo_model_config_t model;        // used when model_name is "" (else read from it)
    int train_global_batch_size;     // pairs per optimizer step, over all DP ranks
    int train_micro_batch_size;      // pairs per forward/backward on one rank
    int max_total_sequence_length;   // longest prompt+completion sequence accepted
    int logprob_chunk_size;          // tokens per chunk of logits (bounds memory)
    int tensor_parallel_size;
    int zero_stage;                  // 0: replicated optimizer; 1: moments sharded over DP
    bool activation_checkpointing;   // recompute each layer's forward in the backward
    dpo_optim_params_t optim;        // optimizer, schedule, clipping
    // generation (dpo_hpc --generate)
    int gen_max_new_tokens;          // tokens generated per prompt at most
    float gen_temperature;           // 0 = greedy
    float gen_top_p;                 // nucleus mass in (0, 1]
    int gen_top_k;                   // 0 = off

    // dpo
    int max_num_steps;               // 0 = no limit (then max_num_epochs bounds the run)
    int max_num_epochs;
    int val_period;                  // 0 = no periodic validation
    bool val_at_start;
    int val_global_batch_size;       // pairs per validation batch
    int val_micro_batch_size;        // pairs per validation forward per rank; 0 = train micro
    int val_max_pairs;               // 0 = whole validation sets
    dpo_loss_params_t loss;          // the loss terms and their parameters
    char reference_model[DPO_PATH_MAX];  // "" = frozen copy of the initial policy
    bool precomputed_reference_logprobs; // use the dataset's stored reference log-probs
    uint64_t seed;
    dpo_nonfinite_policy_t nonfinite_policy;  // what a non-finite loss/grad does
    int max_skipped_steps;           // "skip": consecutive skipped steps tolerated

    // data
    char dataset_path[DPO_PATH_MAX];  // HDF5 dataset file (doc/data-format.md)
    bool shuffle;

    // checkpointing
    bool ckpt_enabled;
    char checkpoint_dir[DPO_PATH_MAX];
    int save_period;
    int keep_top_k;                  // 0 = keep all
    char metric_name[DPO_NAME_MAX * 2];  // e.g. "val:default/loss"
    bool higher_is_better;
    bool resume;

    // logger
    char log_dir[DPO_PATH_MAX];      // output directory: metrics.jsonl, config.cfg

    // cluster
    dpo_backend_kind_t backend;
    dpo_cfg_matmul_t matmul_precision;  // CUDA matmuls
    int num_threads;                 // OpenMP threads per rank; 0 = cores / local ranks
} dpo_config_t;

// Fills `cfg` with every default (doc/config.md).
void config_defaults(dpo_config_t *cfg);

// Reads `path`, then applies `n_overrides` strings of the form "section.key=value"
// in order, then validates. On any problem writes a message naming the file:line
// and/or the key into `err` and returns -1; returns 0 on success.
int config_load(dpo_config_t *cfg, const char *path, int n_overrides, char **overrides,
                char *err, size_t err_len);

// Validation alone (ranges, consistency); also used after loading a checkpoint's
// model config. Returns 0 or -1 with a message naming the key in `err`.
int config_validate(const dpo_config_t *cfg, char *err, size_t err_len);

// Writes the effective configuration in libconfig syntax (loadable by config_load).
void config_write_cfg(const dpo_config_t *cfg, FILE *f);
// The same text in a malloc'ed string (for checkpoint attributes).
char *config_to_string(const dpo_config_t *cfg);

// Parses configuration text (e.g. config_to_string's) as config_load parses a file,
// then validates; `name` stands for the file in messages.
int config_load_string(dpo_config_t *cfg, const char *text, const char *name, char *err,
                       size_t err_len);

// Rank 0 loads and validates, then broadcasts the configuration's text; every other
// rank parses it and checks that it reads back to the same text. On failure every
// rank exits non-zero with the message (no rank other than 0 opens the file).
void config_load_bcast(dpo_config_t *cfg, const char *path, int n_overrides, char **overrides);

// The table's keys: count, and the i-th key's "section.key" name and doc line.
int config_key_count(void);
const char *config_key_name(int i);
const char *config_key_doc(int i);
// One line per key: name, type, default, range or choices, doc.
void config_write_keys(FILE *f);

// Names of the enum values as the configuration spells them ("unknown" if invalid).
const char *loss_type_name(dpo_loss_type_t t);
const char *sched_type_name(dpo_sched_type_t t);
const char *nonfinite_policy_name(dpo_nonfinite_policy_t p);
const char *backend_kind_name(dpo_backend_kind_t b);
const char *cfg_matmul_name(dpo_cfg_matmul_t m);

#endif
