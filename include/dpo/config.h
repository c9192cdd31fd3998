// config.h — the run configuration: a libconfig file plus `section.key=value`
// overrides, validated on rank 0 and broadcast to every rank as plain bytes
// (the struct holds no pointers for that reason).
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

typedef enum {
    LOSS_SIGMOID = 0,  // DPO (Rafailov et al.), with label smoothing = cDPO
    LOSS_IPO,          // IPO (Azar et al.), on length-averaged log-probs as TRL
    LOSS_HINGE,        // SLiC hinge
    LOSS_ROBUST,       // robust DPO (Chowdhury et al.)
    LOSS_TYPE_COUNT
} dpo_loss_type_t;

typedef enum { SCHED_CONSTANT = 0, SCHED_LINEAR, SCHED_COSINE } dpo_sched_type_t;

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

typedef struct {
    // policy
    char model_name[DPO_PATH_MAX];   // checkpoint (.h5) to start from; "" = random init
    dpo_model_config_t model;        // used when model_name is "" (else read from it)
    int train_global_batch_size;     // pairs per optimizer step, over all DP ranks
    int train_micro_batch_size;      // pairs per forward/backward on one rank
    int max_total_sequence_length;   // longest prompt+completion sequence accepted
    int logprob_chunk_size;          // tokens per chunk of logits (bounds memory)
    float max_grad_norm;             // 0 = no clipping
    int tensor_parallel_size;
    int zero_stage;                  // 0: replicated optimizer; 1: moments sharded over DP
    bool activation_checkpointing;   // recompute each layer's forward in the backward
    float lr;
    float weight_decay;
    float beta1, beta2;
    float adam_eps;
    dpo_sched_type_t sched_type;
    int warmup_steps;
    float min_lr_ratio;              // floor of the decay, as a fraction of lr
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
    char reference_model[DPO_PATH_MAX];  // "" = frozen copy of the initial policy
    bool precomputed_reference_logprobs; // use the dataset's stored reference log-probs
    uint64_t seed;
    char nonfinite_policy[16];       // "abort" or "skip": what a non-finite loss/grad does
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
    char backend[DPO_NAME_MAX];      // "cpu" or "cuda"
    char matmul_precision[DPO_NAME_MAX];  // CUDA matmuls: "bf16", "tf32" or "fp32"
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

// Rank 0 loads and validates; every rank receives the result. On failure every rank
// exits non-zero with rank 0's message (no rank other than 0 opens the file).
void config_load_bcast(dpo_config_t *cfg, const char *path, int n_overrides, char **overrides);

const char *loss_type_name(dpo_loss_type_t t);

#endif
