// schedule.h — how a step's micro-batches flow through the model (Megatron's
// forward_backward_no_pipelining is the shape): for each micro-batch, load it,
// forward, loss, backward, accumulating gradients; the data-parallel reduction
// is armed for the last micro-batch's backward so that buckets are reduced as
// they complete. A pipeline schedule (1F1B) would be a second function here over
// the same model passes (model.h: embed / layers [l0, l1) / head).
#ifndef DPO_SCHEDULE_H
#define DPO_SCHEDULE_H

#include "dpo/batch.h"
#include "dpo/grad_sync.h"
#include "dpo/model.h"

typedef struct {
    // Reads micro-batch `micro` (0-based) of the step and prepares whatever the
    // loss needs besides the policy (e.g. reference log-probs); returns the batch.
    const dpo_batch_t *(*load)(void *ctx, int micro);
    // From the policy's per-sequence log-prob sums, the loss's derivative with
    // respect to each (dseq), already normalised over the step.
    void (*loss)(void *ctx, int micro, const dpo_batch_t *b, const double *seq_logps,
                 double *dseq);
    double *seq_logps, *dseq;   // (sequences of a micro-batch) scratch, the caller's
} dpo_step_fns_t;

// Runs n_micro micro-batches forward and backward on the model's own activation
// handle, then completes the gradient reduction (grad_sync_finish). The model's
// gradients must be zero before the first micro-batch (model_zero_grads).
void schedule_forward_backward_no_pipelining(dpo_model_t *m, dpo_grad_sync_t *sync, int n_micro,
                                             const dpo_step_fns_t *fns, void *ctx);

#endif
