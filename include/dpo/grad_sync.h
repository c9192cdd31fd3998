// grad_sync.h — the data-parallel gradient reduction in buckets, issued from the
// backward as buckets complete (PyTorch DDP's and Megatron's scheme).
//
// The trainable prefix of the flat gradient vector is cut into contiguous buckets
// of about `bucket_bytes`, in backward order (the LM head's end of the vector
// first, the embedding's last). During the last micro-batch of a step the model's
// gradient hook counts completed tensors; when a bucket's last tensor is done its
// reduction is issued: an all-reduce over DP of the bucket, or with ZeRO-1 a
// reduce-scatter of it onto the DP shards it overlaps (into opt->gshard). On the
// CUDA backend the collectives run while the backward continues; on the CPU
// backend (MPI) they are the same element-wise sums as one reduction of the
// whole vector, so results do not change. A model smaller than one bucket has
// one bucket, reduced with exactly the call the unbucketed reduction makes.
#ifndef DPO_GRAD_SYNC_H
#define DPO_GRAD_SYNC_H

#include <stdbool.h>
#include <stddef.h>

#include "dpo/model.h"
#include "dpo/optim.h"

// Default bucket size: PyTorch DDP's bucket_cap_mb (25 MiB).
#define DPO_GRAD_BUCKET_BYTES ((size_t)25 << 20)

typedef struct {
    size_t lo, hi;   // flat element range [lo, hi) of the gradient vector
    int n_tensors;   // trainable tensors in it
    int pending;     // tensors not yet complete in the armed micro-batch
    bool issued;
} dpo_grad_bucket_t;

typedef struct {
    dpo_model_t *model;
    dpo_optim_t *opt;
    int n_buckets;
    dpo_grad_bucket_t *buckets;  // (n_buckets), in issue order
    int *bucket_of;              // (n_tensors) bucket index, -1 for frozen tensors
    bool armed;
    int n_issued;
    int n_issued_in_backward;    // of those, issued by the hook (the overlap)
} dpo_grad_sync_t;

void grad_sync_init(dpo_grad_sync_t *g, dpo_model_t *model, dpo_optim_t *opt,
                    size_t bucket_bytes);
void grad_sync_free(dpo_grad_sync_t *g);
// Before the backward of a step's last micro-batch: from now on each completed
// bucket is reduced at once.
void grad_sync_arm(dpo_grad_sync_t *g);
// After that backward: issues any bucket not yet issued (every one, when the
// hook was never armed), waits for the reductions, disarms. The gradients are
// then reduced as optim_reduce_grads would leave them.
void grad_sync_finish(dpo_grad_sync_t *g);

#endif
