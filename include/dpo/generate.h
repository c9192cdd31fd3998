// generate.h — text generation on top of the model: prefill a prompt into a KV
// cache, then decode one token at a time (greedy, or temperature + top-k + top-p
// sampling from a seeded stream), stopping at an EOS id or after max_new_tokens.
// Works at any tensor-parallel size: the last position's vocabulary slabs are
// gathered over the TP group, and every TP rank picks the same token from the same
// numbers and the same random stream. doc/hf-interop.md, section "Generation".
#ifndef DPO_GENERATE_H
#define DPO_GENERATE_H

#include <stdbool.h>
#include <stdint.h>

#include "dpo/config.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "dpo/rng.h"

typedef struct {
    int max_new_tokens;
    float temperature;     // <= 0: greedy (argmax; the lowest id wins an exact tie)
    float top_p;           // nucleus mass in (0, 1]; 1 = off
    int top_k;             // keep the k most likely tokens; 0 = off
    const int32_t *eos_ids;  // stop after emitting one of these (the EOS is kept)
    int n_eos;
} dpo_gen_params_t;

// Picks a token from the logits of the n valid vocabulary entries. Greedy when
// p->temperature <= 0 (rng unused); otherwise softmax(logits / temperature)
// restricted to the top_k most likely tokens, then to the smallest most-likely-first
// set whose probability reaches top_p, renormalised, and one draw of rng_uniform.
int32_t gen_pick_token(const float *logits, int n, const dpo_gen_params_t *p, dpo_rng_t *rng);

typedef struct {
    dpo_model_t *m;
    dpo_kv_cache_t cache;
    float *slab;   // (max(vocab_local, ...)) this rank's logits of the last position
    float *full;   // (vocab_padded) the gathered logits
} dpo_generator_t;

// A generator for sequences of up to `capacity` positions (prompt + new tokens).
// The model needs max_tokens >= 1 (longer prompts are prefilled in pieces).
int generator_init(dpo_generator_t *g, dpo_model_t *m, int capacity, char *err, size_t err_len);
void generator_free(dpo_generator_t *g);

// Continues prompt (n_prompt >= 1 ids, the same on every TP rank): writes up to
// p->max_new_tokens ids to out and returns how many; *hit_eos tells whether the last
// one is an EOS id. Collective over the TP group. When step_logits is non-NULL it
// receives, per generated token, the full logits (vocab_size floats per row) it was
// picked from (tests compare them with a full forward).
int generate_sequence(dpo_generator_t *g, const int32_t *prompt, int n_prompt,
                      const dpo_gen_params_t *p, dpo_rng_t *rng, int32_t *out, bool *hit_eos,
                      float *step_logits);

#endif
