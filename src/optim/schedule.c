// schedule.c — micro-batch schedules (include/dpo/schedule.h).
#include "dpo/schedule.h"

void schedule_forward_backward_no_pipelining(dpo_model_t *m, dpo_grad_sync_t *sync, int n_micro,
                                             const dpo_step_fns_t *fns, void *ctx) {
    dpo_model_acts_t *a = model_default_acts(m);
    int L = m->layout.cfg.num_hidden_layers;
    for (int j = 0; j < n_micro; j++) {
        const dpo_batch_t *b = fns->load(ctx, j);
        model_embed_fwd(m, a, b);
        model_layers_fwd(m, a, b, 0, L, true);
        model_head_fwd(m, a, b, fns->seq_logps);
        fns->loss(ctx, j, b, fns->seq_logps, fns->dseq);
        // Gradients accumulate over micro-batches; only the last one's backward
        // completes them, so only then can buckets be reduced.
        if (j == n_micro - 1) grad_sync_arm(sync);
        model_head_bwd(m, a, b, fns->dseq);
        model_layers_bwd(m, a, b, 0, L);
        model_embed_bwd(m, a, b);
    }
    grad_sync_finish(sync);
}
