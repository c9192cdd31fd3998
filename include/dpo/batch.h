// batch.h — a packed micro-batch: the chosen and rejected sequences of its pairs
// concatenated without padding (sequence 2i = chosen of pair i, 2i+1 = rejected),
// with the offsets attention and RoPE need and the list of scored positions.
//
// A position p of a sequence is "scored" when tokens[p+1] is a completion token:
// the hidden state at p predicts it. Only those rows ever meet the LM head.
#ifndef DPO_BATCH_H
#define DPO_BATCH_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    int n_pairs;
    int n_seq;               // 2 * n_pairs
    int n_tokens;
    int cap_tokens, cap_pairs;  // allocated capacities
    int32_t *tokens;         // (n_tokens)
    int32_t *cu_seqlens;     // (n_seq + 1) token offset of each sequence
    int32_t *pos;            // (n_tokens) position within the sequence (RoPE restarts)
    int32_t *comp_start;     // (n_seq) index within the sequence of the first completion token
    int n_scored;
    int32_t *scored_rows;    // (n_scored) packed row whose hidden state predicts the target
    int32_t *scored_targets; // (n_scored) the completion token predicted
    int32_t *scored_seq;     // (n_scored) sequence the row belongs to
    int32_t *n_completion;   // (n_seq) completion tokens per sequence
    bool has_ref;
    float *ref_logps;        // (n_seq) stored reference log-prob sums, when has_ref
    int64_t *pair_index;     // (n_pairs) index of each pair in its split (for writing back)
} dpo_batch_t;

void batch_alloc(dpo_batch_t *b, int cap_pairs, int cap_tokens);
void batch_free(dpo_batch_t *b);
// Starts an empty batch.
void batch_clear(dpo_batch_t *b);
// Appends one sequence (call chosen, then rejected, for each pair). Returns -1 when
// the batch capacity would be exceeded.
int batch_add_sequence(dpo_batch_t *b, const int32_t *tokens, int len, int comp_start);
// Fills pos, scored_* and n_completion from tokens / cu_seqlens / comp_start.
void batch_finalize(dpo_batch_t *b);

#endif
