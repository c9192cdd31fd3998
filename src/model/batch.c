// batch.c — packing pairs into one unpadded micro-batch.
#include "dpo/batch.h"

#include <stdlib.h>
#include <string.h>

#include "dpo/error.h"

void batch_alloc(dpo_batch_t *b, int cap_pairs, int cap_tokens) {
    memset(b, 0, sizeof *b);
    b->cap_pairs = cap_pairs;
    b->cap_tokens = cap_tokens;
    int cap_seq = 2 * cap_pairs;
    b->tokens = xcalloc((size_t)cap_tokens, sizeof(int32_t), "batch tokens");
    b->pos = xcalloc((size_t)cap_tokens, sizeof(int32_t), "batch positions");
    b->cu_seqlens = xcalloc((size_t)cap_seq + 1, sizeof(int32_t), "batch offsets");
    b->comp_start = xcalloc((size_t)cap_seq, sizeof(int32_t), "batch completion starts");
    b->n_completion = xcalloc((size_t)cap_seq, sizeof(int32_t), "batch completion counts");
    b->scored_rows = xcalloc((size_t)cap_tokens, sizeof(int32_t), "batch scored rows");
    b->scored_targets = xcalloc((size_t)cap_tokens, sizeof(int32_t), "batch scored targets");
    b->scored_seq = xcalloc((size_t)cap_tokens, sizeof(int32_t), "batch scored sequences");
    b->ref_logps = xcalloc((size_t)cap_seq, sizeof(float), "batch reference log-probs");
    b->pair_index = xcalloc((size_t)cap_pairs, sizeof(int64_t), "batch pair indices");
}

void batch_free(dpo_batch_t *b) {
    free(b->tokens);
    free(b->pos);
    free(b->cu_seqlens);
    free(b->comp_start);
    free(b->n_completion);
    free(b->scored_rows);
    free(b->scored_targets);
    free(b->scored_seq);
    free(b->ref_logps);
    free(b->pair_index);
    memset(b, 0, sizeof *b);
}

void batch_clear(dpo_batch_t *b) {
    b->n_pairs = b->n_seq = b->n_tokens = b->n_scored = 0;
    b->has_ref = false;
    b->cu_seqlens[0] = 0;
}

int batch_add_sequence(dpo_batch_t *b, const int32_t *tokens, int len, int comp_start) {
    if (b->n_seq >= 2 * b->cap_pairs || b->n_tokens + len > b->cap_tokens) return -1;
    memcpy(b->tokens + b->n_tokens, tokens, (size_t)len * sizeof(int32_t));
    b->comp_start[b->n_seq] = comp_start;
    b->n_tokens += len;
    b->n_seq++;
    b->cu_seqlens[b->n_seq] = b->n_tokens;
    b->n_pairs = b->n_seq / 2;
    return 0;
}

void batch_finalize(dpo_batch_t *b) {
    b->n_scored = 0;
    for (int s = 0; s < b->n_seq; s++) {
        int start = b->cu_seqlens[s], len = b->cu_seqlens[s + 1] - start;
        for (int p = 0; p < len; p++) b->pos[start + p] = p;
        // Row p predicts token p+1; completion tokens are those at index >= comp_start.
        int first = b->comp_start[s] > 1 ? b->comp_start[s] : 1;
        b->n_completion[s] = len - first > 0 ? len - first : 0;
        for (int p = first; p < len; p++) {
            b->scored_rows[b->n_scored] = start + p - 1;
            b->scored_targets[b->n_scored] = b->tokens[start + p];
            b->scored_seq[b->n_scored] = s;
            b->n_scored++;
        }
    }
}
