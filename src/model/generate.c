// generate.c — KV-cached generation over the model (include/dpo/generate.h).
#include "dpo/generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/comm.h"
#include "dpo/error.h"
#include "dpo/util.h"

typedef struct {
    float logit;
    int32_t id;
} cand_t;

// Most likely first; the lower id first between equal logits.
static int cand_cmp(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->logit > y->logit) return -1;
    if (x->logit < y->logit) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

int32_t gen_pick_token(const float *logits, int n, const dpo_gen_params_t *p, dpo_rng_t *rng) {
    if (n <= 0) dpo_fatal("gen_pick_token: empty vocabulary");
    if (p->temperature <= 0.0f) {
        int32_t best = 0;
        for (int i = 1; i < n; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    cand_t *c = xmalloc((size_t)n * sizeof(cand_t), "sampling candidates");
    for (int i = 0; i < n; i++) {
        c[i].logit = logits[i];
        c[i].id = i;
    }
    qsort(c, (size_t)n, sizeof(cand_t), cand_cmp);
    int keep = n;
    if (p->top_k > 0 && p->top_k < keep) keep = p->top_k;
    // Softmax of logits / temperature over the kept candidates, in double.
    double *pr = xmalloc((size_t)keep * sizeof(double), "sampling probabilities");
    double mx = (double)c[0].logit / p->temperature, sum = 0.0;
    for (int i = 0; i < keep; i++) {
        pr[i] = exp((double)c[i].logit / p->temperature - mx);
        sum += pr[i];
    }
    // Nucleus: the shortest most-likely-first prefix whose probability reaches top_p.
    if (p->top_p < 1.0f) {
        double cum = 0.0;
        int k = 0;
        while (k < keep) {
            cum += pr[k] / sum;
            k++;
            if (cum >= (double)p->top_p) break;
        }
        keep = k;
    }
    double mass = 0.0;
    for (int i = 0; i < keep; i++) mass += pr[i];
    double u = rng_uniform(rng) * mass, acc = 0.0;
    int32_t pick = c[keep - 1].id;
    for (int i = 0; i < keep; i++) {
        acc += pr[i];
        if (u < acc) {
            pick = c[i].id;
            break;
        }
    }
    free(pr);
    free(c);
    return pick;
}

int generator_init(dpo_generator_t *g, dpo_model_t *m, int capacity, char *err, size_t err_len) {
    memset(g, 0, sizeof *g);
    if (kv_cache_init(&g->cache, m, capacity, err, err_len) != 0) return -1;
    g->m = m;
    g->slab = xcalloc((size_t)m->layout.vocab_local, sizeof(float), "logit slab");
    g->full = xcalloc((size_t)m->layout.vocab_padded, sizeof(float), "logits");
    return 0;
}

void generator_free(dpo_generator_t *g) {
    kv_cache_free(&g->cache);
    free(g->slab);
    free(g->full);
    memset(g, 0, sizeof *g);
}

// Gathers the last position's vocabulary slabs into g->full on every TP rank.
static void gather_logits(dpo_generator_t *g) {
    const dpo_layout_t *lay = &g->m->layout;
    if (g->m->mesh->tp_size == 1) {
        memcpy(g->full, g->slab, (size_t)lay->vocab_local * sizeof(float));
        return;
    }
    comm_allgather_f32(g->m->mesh, DPO_GROUP_TP, g->slab, g->full, (size_t)lay->vocab_local);
}

int generate_sequence(dpo_generator_t *g, const int32_t *prompt, int n_prompt,
                      const dpo_gen_params_t *p, dpo_rng_t *rng, int32_t *out, bool *hit_eos,
                      float *step_logits) {
    dpo_model_t *m = g->m;
    int V = m->layout.cfg.vocab_size;
    *hit_eos = false;
    if (n_prompt < 1) dpo_fatal("generate: empty prompt");
    if (n_prompt + p->max_new_tokens - 1 > g->cache.capacity)
        dpo_fatal("generate: prompt of %d tokens + %d new exceeds the cache's %d positions",
                  n_prompt, p->max_new_tokens, g->cache.capacity);
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            dpo_fatal("generate: prompt token %d outside the vocabulary (%d)", prompt[i], V);
    kv_cache_reset(&g->cache);
    // Prefill, in pieces of at most max_tokens; logits of the last position only.
    for (int i0 = 0; i0 < n_prompt; i0 += m->max_tokens) {
        int n = n_prompt - i0 < m->max_tokens ? n_prompt - i0 : m->max_tokens;
        bool last = i0 + n == n_prompt;
        model_forward_cached(m, &g->cache, prompt + i0, n, last ? 1 : 0, g->slab);
    }
    int n_out = 0;
    while (n_out < p->max_new_tokens) {
        gather_logits(g);
        if (step_logits) memcpy(step_logits + (size_t)n_out * V, g->full, (size_t)V * sizeof(float));
        int32_t tok = gen_pick_token(g->full, V, p, rng);   // padding columns never count
        out[n_out++] = tok;
        for (int e = 0; e < p->n_eos; e++)
            if (tok == p->eos_ids[e]) *hit_eos = true;
        if (*hit_eos || n_out == p->max_new_tokens) break;
        model_forward_cached(m, &g->cache, &tok, 1, 1, g->slab);
    }
    return n_out;
}
