// generate_run.c — the dpo_hpc --generate mode (include/dpo/generate.h): JSONL
// prompts in, JSONL continuations out; doc/hf-interop.md, section "Generation".
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "dpo/backend.h"
#include "dpo/ckpt.h"
#include "dpo/comm.h"
#include "dpo/error.h"
#include "dpo/generate.h"
#include "dpo/generate_run.h"
#include "dpo/hf_model.h"
#include "dpo/jsonl.h"
#include "dpo/tokenizer.h"
#include "dpo/util.h"

#define GEN_ERR 2048

typedef struct {
    int n, cap;
    int32_t **ids;
    int *len;
    char **text;   // the "prompt" string, or NULL for a prompt_ids line (rank 0 only)
} prompts_t;

static void prompts_push(prompts_t *p, int32_t *ids, int len, char *text) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 16;
        p->ids = realloc(p->ids, (size_t)p->cap * sizeof *p->ids);
        p->len = realloc(p->len, (size_t)p->cap * sizeof *p->len);
        p->text = realloc(p->text, (size_t)p->cap * sizeof *p->text);
        if (!p->ids || !p->len || !p->text) dpo_fatal("out of memory reading prompts");
    }
    p->ids[p->n] = ids;
    p->len[p->n] = len;
    p->text[p->n] = text;
    p->n++;
}

static void prompts_free(prompts_t *p) {
    for (int i = 0; i < p->n; i++) {
        free(p->ids[i]);
        free(p->text[i]);
    }
    free(p->ids);
    free(p->len);
    free(p->text);
    memset(p, 0, sizeof *p);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// The tokenizer: the given folder, else policy.model_name's folder (a Hugging Face
// folder with tokenizer.json) or CKPT.h5.tokenizer/ (written by dpo_convert hf2h5).
// NULL without an error when none is found and none was asked for.
static dpo_tokenizer_t *find_tokenizer(const char *given, const char *model_name, char *err,
                                       size_t err_len, int *failed) {
    *failed = 0;
    if (given) {
        dpo_tokenizer_t *t = tokenizer_load(given, err, err_len);
        if (!t) *failed = 1;
        return t;
    }
    char path[DPO_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/tokenizer.json", model_name);
    struct stat st;
    const char *dir = NULL;
    char alt[DPO_PATH_MAX + 32];
    if (model_name[0] && stat(path, &st) == 0) {
        dir = model_name;
    } else {
        snprintf(alt, sizeof alt, "%s.tokenizer", model_name);
        if (model_name[0] && is_dir(alt)) dir = alt;
    }
    if (!dir) return NULL;
    dpo_tokenizer_t *t = tokenizer_load(dir, err, err_len);
    if (!t) *failed = 1;
    return t;
}

// Rank 0: reads every line; returns 0 or -1 with "file:line: ..." in err.
static int read_prompts(const char *in_path, dpo_tokenizer_t *tok, int vocab, prompts_t *out,
                        char *err, size_t err_len) {
    jsonl_reader_t r;
    if (jsonl_open(&r, in_path, err, err_len) != 0) return -1;
    int rc = 0;
    json_t *j = NULL;
    tok_ids_t buf = {0};
    char msg[GEN_ERR / 2];
    for (;;) {
        int k = jsonl_next(&r, &j, err, err_len);
        if (k == 0) break;
        if (k < 0) {
            rc = -1;
            break;
        }
        const char *where = jsonl_name(&r);
        json_t *ids = json_object_get(j, "prompt_ids"), *txt = json_object_get(j, "prompt");
        tok_ids_clear(&buf);
        char *text = NULL;
        if (!json_is_object(j)) {
            snprintf(err, err_len, "%s:%lld: a line must be a JSON object", where, (long long)r.line);
            rc = -1;
        } else if (ids) {
            size_t i;
            json_t *v;
            if (!json_is_array(ids)) {
                snprintf(err, err_len, "%s:%lld: prompt_ids must be an array of token ids", where,
                         (long long)r.line);
                rc = -1;
            }
            json_array_foreach(ids, i, v) {
                if (rc) break;
                json_int_t id = json_is_integer(v) ? json_integer_value(v) : -1;
                if (id < 0 || id >= vocab) {
                    snprintf(err, err_len,
                             "%s:%lld: prompt_ids[%zu] is not a token id of the model (0..%d)",
                             where, (long long)r.line, i, vocab - 1);
                    rc = -1;
                    break;
                }
                tok_ids_push(&buf, (int32_t)id);
            }
        } else if (json_is_string(txt)) {
            if (!tok) {
                snprintf(err, err_len,
                         "%s:%lld: a \"prompt\" text needs a tokenizer (--tokenizer DIR)", where,
                         (long long)r.line);
                rc = -1;
            } else if (tokenizer_encode(tok, json_string_value(txt), json_string_length(txt), &buf,
                                        NULL, msg, sizeof msg) != 0) {
                snprintf(err, err_len, "%s:%lld: %s", where, (long long)r.line, msg);
                rc = -1;
            } else {
                text = strdup(json_string_value(txt));
                for (size_t i = 0; i < buf.len && rc == 0; i++)
                    if (buf.ids[i] >= vocab) {
                        snprintf(err, err_len, "%s:%lld: the tokenizer gives id %d, outside the "
                                 "model's vocabulary (%d)", where, (long long)r.line, buf.ids[i], vocab);
                        rc = -1;
                    }
            }
        } else {
            snprintf(err, err_len, "%s:%lld: expected \"prompt_ids\" (array of ids) or \"prompt\" "
                     "(string)", where, (long long)r.line);
            rc = -1;
        }
        if (rc == 0 && buf.len == 0) {
            snprintf(err, err_len, "%s:%lld: empty prompt", where, (long long)r.line);
            rc = -1;
        }
        json_decref(j);
        if (rc) {
            free(text);
            break;
        }
        int32_t *copy = xmalloc(buf.len * sizeof(int32_t), "prompt");
        memcpy(copy, buf.ids, buf.len * sizeof(int32_t));
        prompts_push(out, copy, (int)buf.len, text);
    }
    tok_ids_free(&buf);
    jsonl_close(&r);
    return rc;
}

static json_t *ids_json(const int32_t *ids, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(a, json_integer(ids[i]));
    return a;
}

// The agreement of comm.h; on failure rank 0 prints the (lowest failing rank's)
// message and the caller returns 1 on every rank.
static bool agreed(const dpo_mesh_t *mesh, bool ok, const char *what, char *err, size_t err_len) {
    if (comm_agree(mesh, DPO_GROUP_WORLD, ok, err, err_len)) return true;
    if (mesh->world_rank == 0) fprintf(stderr, "dpo_hpc: error: %s%s%s\n", what, *what ? ": " : "", err);
    return false;
}

// A NeMo Gym rollout record: the prompt as the user message, the generation as the
// assistant's output message; "reward" is left for the user's verifier.
static json_t *rollout_json(const char *prompt, const char *text, int index, int sample,
                            bool eos) {
    return json_pack("{s:{s:[{s:s, s:s}]}, s:[{s:s, s:s, s:[{s:s, s:s}]}], s:i, s:i, s:s}",
                     "responses_create_params", "input", "role", "user", "content", prompt,
                     "output", "type", "message", "role", "assistant", "content", "type",
                     "output_text", "text", text, "prompt_index", index, "sample", sample,
                     "finish_reason", eos ? "eos" : "length");
}

int generate_main(const dpo_config_t *cfg, const dpo_mesh_t *mesh, const dpo_backend_t *be,
                  const gen_run_opts_t *opt) {
    const char *in_path = opt->in_path, *out_path = opt->out_path;
    const char *tokenizer_dir = opt->tokenizer_dir;
    const int32_t *eos_ids = opt->eos_ids;
    int n_eos = opt->n_eos;
    char err[GEN_ERR] = "";
    int rank0 = mesh->world_rank == 0;
    if (mesh->dp_size != 1) {
        if (rank0)
            fprintf(stderr, "dpo_hpc: error: --generate runs on one tensor-parallel group: launch "
                    "%d rank(s) (policy.tensor_parallel_size), not %d\n", mesh->tp_size,
                    mesh->world_size);
        return 1;
    }
    // The architecture (every rank reads config.json / the checkpoint's attributes).
    dpo_model_config_t mc = cfg->model;
    const char *path = cfg->model_name;
    int ok = 1;
    if (path[0] == '\0') {
        // No model: the random initialisation dpo_hpc trains from with the same
        // dpo.seed (and uses as the reference), e.g. to show answers before training.
    } else if ((hf_is_model_dir(path) ? hf_read_config(path, &mc, err, sizeof err)
                                      : ckpt_read_model_config(path, &mc, err, sizeof err)) != 0) {
        ok = 0;
    }
    if (!agreed(mesh, ok, "policy.model_name", err, sizeof err)) return 1;

    // Rank 0: tokenizer, prompts.
    dpo_tokenizer_t *tok = NULL;
    prompts_t pr = {0};
    int32_t *stop = xcalloc((size_t)n_eos + 1, sizeof(int32_t), "stop ids");
    int n_stop = 0;
    for (int i = 0; i < n_eos; i++) stop[n_stop++] = eos_ids[i];
    ok = 1;
    if (rank0) {
        int failed;
        tok = find_tokenizer(tokenizer_dir, path, err, sizeof err, &failed);
        if (failed) ok = 0;
        if (ok && tok && tokenizer_eos_token(tok)) {
            int32_t e = tokenizer_token_to_id(tok, tokenizer_eos_token(tok));
            if (e >= 0) stop[n_stop++] = e;
        }
        if (ok && opt->rollouts && !tok) {
            snprintf(err, sizeof err, "--rollouts writes text: it needs a tokenizer (--tokenizer DIR)");
            ok = 0;
        }
        if (ok && read_prompts(in_path, tok, mc.vocab_size, &pr, err, sizeof err) != 0) ok = 0;
    }
    if (!agreed(mesh, ok, "", err, sizeof err)) {
        prompts_free(&pr);
        if (tok) tokenizer_free(tok);
        free(stop);
        return 1;
    }
    comm_broadcast(mesh, DPO_GROUP_WORLD, &n_stop, sizeof n_stop, 0);
    comm_broadcast(mesh, DPO_GROUP_WORLD, stop, (size_t)n_stop * sizeof(int32_t), 0);
    int n = pr.n;
    comm_broadcast(mesh, DPO_GROUP_WORLD, &n, sizeof n, 0);
    int longest = 1;
    int32_t **ids = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int32_t *), "prompts");
    int *len = xcalloc((size_t)(n > 0 ? n : 1), sizeof(int), "prompt lengths");
    for (int i = 0; i < n; i++) {
        len[i] = rank0 ? pr.len[i] : 0;
        comm_broadcast(mesh, DPO_GROUP_WORLD, &len[i], sizeof(int), 0);
        ids[i] = rank0 ? pr.ids[i] : xmalloc((size_t)len[i] * sizeof(int32_t), "prompt");
        comm_broadcast(mesh, DPO_GROUP_WORLD, ids[i], (size_t)len[i] * sizeof(int32_t), 0);
        if (len[i] > longest) longest = len[i];
    }

    dpo_model_t m;
    int max_tokens = longest < 4096 ? longest : 4096;
    if (model_init(&m, be, mesh, &mc, false, max_tokens, cfg->logprob_chunk_size, err,
                   sizeof err) != 0)
        dpo_fatal_all("%s", err);
    if (path[0] == '\0') {
        model_init_random(&m, cfg->seed);
        ok = 1;
        if (rank0) printf("generate: no policy.model_name: random initialisation from dpo.seed = %llu\n",
                          (unsigned long long)cfg->seed);
    } else {
        ok = (hf_is_model_dir(path) ? hf_load_model(path, &m, err, sizeof err)
                                    : ckpt_load_model(path, &m, err, sizeof err)) == 0;
    }
    comm_agree_or_die(mesh, ok, "policy.model_name", err);
    dpo_generator_t g;
    if (generator_init(&g, &m, longest + cfg->gen_max_new_tokens, err, sizeof err) != 0)
        dpo_fatal_all("%s", err);
    dpo_gen_params_t gp = {.max_new_tokens = cfg->gen_max_new_tokens,
                           .temperature = cfg->gen_temperature,
                           .top_p = cfg->gen_top_p,
                           .top_k = cfg->gen_top_k,
                           .eos_ids = stop,
                           .n_eos = n_stop};
    log_info("generate: %d prompt(s) x %d sample(s) from %s, max_new_tokens %d, %s%s", n,
             opt->samples, in_path, gp.max_new_tokens,
             gp.temperature > 0.0f ? "sampling" : "greedy", opt->rollouts ? ", rollout records" : "");

    // <out_path>.tmp, renamed over out_path once complete (util.h)
    util_afile_t out = {0};
    ok = 1;
    if (rank0 && util_afile_open(&out, out_path, err, sizeof err) != 0) ok = 0;
    ok = agreed(mesh, ok, "", err, sizeof err);  // every rank takes part in every forward, or none
    bool write_ok = true;          // rank 0's records (a failure stops nothing mid-way)
    int32_t *gen = xmalloc((size_t)gp.max_new_tokens * sizeof(int32_t), "generated ids");
    size_t n_tokens = 0;
    double t0 = MPI_Wtime();
    for (int i = 0; ok && i < n; i++) {
        for (int smp = 0; smp < opt->samples; smp++) {
            dpo_rng_t rng;
            rng_seed(&rng, cfg->seed, ((uint64_t)smp << 32) | (uint64_t)i);
            bool eos;
            int k = generate_sequence(&g, ids[i], len[i], &gp, &rng, gen, &eos, NULL);
            n_tokens += (size_t)k;
            if (!rank0) continue;
            json_t *o;
            if (opt->rollouts) {  // text without the stop token; the prompt as text
                char *t = tokenizer_decode(tok, gen, (size_t)(eos ? k - 1 : k), NULL, err, sizeof err);
                char *p = pr.text[i] ? NULL : tokenizer_decode(tok, ids[i], (size_t)len[i], NULL, err, sizeof err);
                o = rollout_json(pr.text[i] ? pr.text[i] : p ? p : "", t ? t : "", i, smp, eos);
                if (!t || (!pr.text[i] && !p)) write_ok = false;
                free(t);
                free(p);
            } else {
                o = json_object();
                json_object_set_new(o, "index", json_integer(i));
                if (opt->samples > 1) json_object_set_new(o, "sample", json_integer(smp));
                if (pr.text[i]) json_object_set_new(o, "prompt", json_string(pr.text[i]));
                json_object_set_new(o, "prompt_ids", ids_json(ids[i], len[i]));
                json_object_set_new(o, "generated_ids", ids_json(gen, k));
                if (tok) {
                    char *t = tokenizer_decode(tok, gen, (size_t)k, NULL, err, sizeof err);
                    if (t) json_object_set_new(o, "text", json_string(t));
                    free(t);
                }
                json_object_set_new(o, "finish_reason", json_string(eos ? "eos" : "length"));
            }
            char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
            // a failed write is kept and reported by the commit; generation goes on
            util_afile_printf(&out, "%s\n", line);
            free(line);
            json_decref(o);
        }
    }
    if (rank0 && out.f) {
        if (!write_ok) {
            ok = 0;
            util_afile_abort(&out);
        } else if (util_afile_commit(&out, err, sizeof err) != 0) {
            ok = 0;
        }
    }
    ok = agreed(mesh, ok, "", err, sizeof err);
    if (ok)
        log_info("generate: %zu token(s) in %.2f s, written to %s", n_tokens, MPI_Wtime() - t0,
                 out_path);
    free(gen);
    generator_free(&g);
    model_free(&m);
    for (int i = 0; i < n; i++)
        if (!rank0) free(ids[i]);
    free(ids);
    free(len);
    prompts_free(&pr);
    if (tok) tokenizer_free(tok);
    free(stop);
    return ok ? 0 : 1;
}
