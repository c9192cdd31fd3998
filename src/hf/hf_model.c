// hf_model.c — Hugging Face model folders as a source of architecture and weights
// (include/dpo/hf_model.h, doc/hf-interop.md).
//
// config.json of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM and
// Qwen3ForCausalLM maps onto dpo_model_config_t; anything that would change the
// computation in a way our model does not implement is refused with the field named,
// never silently ignored. Tensors keep their Hugging Face names in our layout, so the
// weights load by name: each rank reads its slab of each tensor straight from the
// safetensors file(s) with pread, with no communication.
#include "dpo/hf_model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "dpo/error.h"
#include "dpo/safetensors.h"

typedef enum { ARCH_LLAMA, ARCH_MISTRAL, ARCH_QWEN2, ARCH_QWEN3 } hf_arch_t;

static const struct {
    const char *cls, *model_type;
    hf_arch_t arch;
} g_archs[] = {{"LlamaForCausalLM", "llama", ARCH_LLAMA},
               {"MistralForCausalLM", "mistral", ARCH_MISTRAL},
               {"Qwen2ForCausalLM", "qwen2", ARCH_QWEN2},
               {"Qwen3ForCausalLM", "qwen3", ARCH_QWEN3}};
#define N_ARCHS (int)(sizeof g_archs / sizeof g_archs[0])

bool hf_is_model_dir(const char *path) {
    struct stat sb;
    if (!path || !path[0] || stat(path, &sb) != 0 || !S_ISDIR(sb.st_mode)) return false;
    char p[4096];
    if (snprintf(p, sizeof p, "%s/config.json", path) >= (int)sizeof p) return false;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// ---- config.json ----

static bool is_set(const json_t *v) {  // present and not null / false / 0 / "" / [] / {}
    if (!v || json_is_null(v) || json_is_false(v)) return false;
    if (json_is_integer(v)) return json_integer_value(v) != 0;
    if (json_is_real(v)) return json_real_value(v) != 0.0;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_array(v)) return json_array_size(v) > 0;
    if (json_is_object(v)) return json_object_size(v) > 0;
    return true;
}

// Positive integer field; `def` < 0 = required. 0 when absent and def == 0.
static int get_int(json_t *root, const char *what, const char *key, int def, bool allow_null,
                   int *out, char *err, size_t err_len) {
    json_t *v = json_object_get(root, key);
    if (!v || (allow_null && json_is_null(v))) {
        if (def < 0) {
            dpo_errf(err, err_len, "%s: field %s is missing", what, key);
            return -1;
        }
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30)) {
        dpo_errf(err, err_len, "%s: field %s must be a positive integer", what, key);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num(json_t *root, const char *what, const char *key, double def, double *out,
                   char *err, size_t err_len) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || json_number_value(v) <= 0) {
        dpo_errf(err, err_len, "%s: field %s must be a positive number", what, key);
        return -1;
    }
    *out = json_number_value(v);
    return 0;
}

static int get_bool(json_t *root, const char *what, const char *key, bool def, bool *out,
                    char *err, size_t err_len) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        dpo_errf(err, err_len, "%s: field %s must be true or false", what, key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int find_arch(json_t *root, const char *what, hf_arch_t *arch, char *err, size_t err_len) {
    json_t *a = json_object_get(root, "architectures");
    if (a && !json_is_null(a)) {
        if (!json_is_array(a) || json_array_size(a) != 1 || !json_is_string(json_array_get(a, 0))) {
            dpo_errf(err, err_len, "%s: field architectures must list exactly one class name", what);
            return -1;
        }
        const char *name = json_string_value(json_array_get(a, 0));
        for (int i = 0; i < N_ARCHS; i++)
            if (strcmp(name, g_archs[i].cls) == 0) {
                *arch = g_archs[i].arch;
                return 0;
            }
        dpo_errf(err, err_len,
                 "%s: field architectures: %s is not supported (LlamaForCausalLM, "
                 "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM are)",
                 what, name);
        return -1;
    }
    json_t *mt = json_object_get(root, "model_type");
    const char *name = json_is_string(mt) ? json_string_value(mt) : NULL;
    for (int i = 0; name && i < N_ARCHS; i++)
        if (strcmp(name, g_archs[i].model_type) == 0) {
            *arch = g_archs[i].arch;
            return 0;
        }
    dpo_errf(err, err_len, "%s: field %s: %s is not supported (llama, mistral, qwen2, qwen3 are)",
             what, name ? "model_type" : "architectures", name ? name : "missing");
    return -1;
}

// Fields that change the computation in ways this model does not implement.
static int refuse_unsupported(json_t *root, const char *what, hf_arch_t arch, int n_layers,
                              char *err, size_t err_len) {
    json_t *v;
    const char *act_keys[] = {"hidden_act", "hidden_activation"};
    for (int i = 0; i < 2; i++) {
        v = json_object_get(root, act_keys[i]);
        if (v && !json_is_null(v) && !(json_is_string(v) && strcmp(json_string_value(v), "silu") == 0)) {
            dpo_errf(err, err_len, "%s: field %s must be \"silu\" (SwiGLU MLP)", what, act_keys[i]);
            return -1;
        }
    }
    v = json_object_get(root, "rope_scaling");
    if (is_set(v)) {
        json_t *t = json_is_object(v) ? json_object_get(v, "rope_type") : NULL;
        if (!json_is_string(t) && json_is_object(v)) t = json_object_get(v, "type");
        bool plain = json_is_string(t) && strcmp(json_string_value(t), "default") == 0;
        if (!plain) {
            dpo_errf(err, err_len,
                     "%s: field rope_scaling (type %s) is not supported: only plain RoPE "
                     "(rope_scaling null) is implemented",
                     what, json_is_string(t) ? json_string_value(t) : "?");
            return -1;
        }
    }
    v = json_object_get(root, "rope_parameters");  // newer transformers: rope_type + rope_theta
    if (is_set(v)) {
        json_t *t = json_is_object(v) ? json_object_get(v, "rope_type") : NULL;
        if (!json_is_string(t) || strcmp(json_string_value(t), "default") != 0) {
            dpo_errf(err, err_len,
                     "%s: field rope_parameters (rope_type %s) is not supported: only rope_type "
                     "\"default\" is implemented",
                     what, json_is_string(t) ? json_string_value(t) : "?");
            return -1;
        }
    }
    v = json_object_get(root, "partial_rotary_factor");
    if (v && !json_is_null(v) && !(json_is_number(v) && json_number_value(v) == 1.0)) {
        dpo_errf(err, err_len, "%s: field partial_rotary_factor must be 1 (RoPE on every dimension)",
                 what);
        return -1;
    }
    const char *moe[] = {"num_experts", "num_local_experts", "n_routed_experts",
                         "num_experts_per_tok", "moe_intermediate_size", "n_shared_experts"};
    for (size_t i = 0; i < sizeof moe / sizeof moe[0]; i++)
        if (is_set(json_object_get(root, moe[i]))) {
            dpo_errf(err, err_len, "%s: field %s: mixture-of-experts models are not supported", what,
                     moe[i]);
            return -1;
        }
    if (is_set(json_object_get(root, "mlp_bias"))) {
        dpo_errf(err, err_len, "%s: field mlp_bias: MLP biases are not supported", what);
        return -1;
    }
    if (arch != ARCH_QWEN2 && is_set(json_object_get(root, "attention_bias"))) {
        dpo_errf(err, err_len,
                 "%s: field attention_bias: true adds a bias to o_proj as well as q/k/v, and this "
                 "model has no o_proj bias",
                 what);
        return -1;
    }
    if (is_set(json_object_get(root, "quantization_config"))) {
        dpo_errf(err, err_len, "%s: field quantization_config: quantized weights are not supported",
                 what);
        return -1;
    }
    // Sliding-window attention, where it would apply.
    v = json_object_get(root, "layer_types");
    if (v && !json_is_null(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (!json_is_string(e) || strcmp(json_string_value(e), "full_attention") != 0) {
                dpo_errf(err, err_len,
                         "%s: field layer_types[%zu] is not \"full_attention\": sliding-window "
                         "attention is not supported",
                         what, i);
                return -1;
            }
        }
    }
    if (arch == ARCH_QWEN2 || arch == ARCH_QWEN3) {
        if (is_set(json_object_get(root, "use_sliding_window"))) {
            int mwl = n_layers;
            json_t *m = json_object_get(root, "max_window_layers");
            if (json_is_integer(m)) mwl = (int)json_integer_value(m);
            if (mwl < n_layers) {
                dpo_errf(err, err_len,
                         "%s: field use_sliding_window: sliding-window attention (layers %d and "
                         "up) is not supported",
                         what, mwl);
                return -1;
            }
        }
    } else {
        v = json_object_get(root, "sliding_window");
        if (v && !json_is_null(v)) {
            json_t *mp = json_object_get(root, "max_position_embeddings");
            if (!json_is_integer(v) || !json_is_integer(mp) ||
                json_integer_value(v) < json_integer_value(mp)) {
                dpo_errf(err, err_len,
                         "%s: field sliding_window: a window smaller than max_position_embeddings "
                         "is not supported (only full attention is implemented)",
                         what);
                return -1;
            }
        }
    }
    return 0;
}

static int parse_root(json_t *root, const char *what, dpo_model_config_t *mc, char *err,
                      size_t err_len) {
    memset(mc, 0, sizeof *mc);
    if (!json_is_object(root)) {
        dpo_errf(err, err_len, "%s: not a JSON object", what);
        return -1;
    }
    hf_arch_t arch;
    if (find_arch(root, what, &arch, err, err_len) < 0) return -1;
    if (get_int(root, what, "vocab_size", -1, false, &mc->vocab_size, err, err_len) < 0 ||
        get_int(root, what, "hidden_size", -1, false, &mc->hidden_size, err, err_len) < 0 ||
        get_int(root, what, "num_hidden_layers", -1, false, &mc->num_hidden_layers, err, err_len) < 0 ||
        get_int(root, what, "num_attention_heads", -1, false, &mc->num_attention_heads, err,
                err_len) < 0 ||
        get_int(root, what, "num_key_value_heads", mc->num_attention_heads, true,
                &mc->num_key_value_heads, err, err_len) < 0 ||
        get_int(root, what, "intermediate_size", -1, false, &mc->intermediate_size, err, err_len) < 0)
        return -1;
    int head_dim = 0;
    if (get_int(root, what, "head_dim", 0, true, &head_dim, err, err_len) < 0) return -1;
    if (arch == ARCH_QWEN3 && head_dim == 0) head_dim = 128;  // Qwen3Config's default
    if (head_dim == 0) {
        if (mc->hidden_size % mc->num_attention_heads != 0) {
            dpo_errf(err, err_len,
                     "%s: field hidden_size (%d) is not a multiple of num_attention_heads (%d) and "
                     "head_dim is not given",
                     what, mc->hidden_size, mc->num_attention_heads);
            return -1;
        }
        head_dim = mc->hidden_size / mc->num_attention_heads;
    }
    mc->head_dim = head_dim;
    if (mc->num_attention_heads % mc->num_key_value_heads != 0) {
        dpo_errf(err, err_len, "%s: field num_key_value_heads (%d) does not divide num_attention_heads (%d)",
                 what, mc->num_key_value_heads, mc->num_attention_heads);
        return -1;
    }
    if (head_dim % 2 != 0) {
        dpo_errf(err, err_len, "%s: field head_dim (%d) must be even for RoPE", what, head_dim);
        return -1;
    }
    double theta = 10000.0, eps = 1e-6, init = 0.02;
    json_t *rp = json_object_get(root, "rope_parameters");
    if (get_num(root, what, "rope_theta", 10000.0, &theta, err, err_len) < 0 ||
        (json_is_object(rp) && get_num(rp, what, "rope_theta", theta, &theta, err, err_len) < 0) ||
        get_num(root, what, "rms_norm_eps", 1e-6, &eps, err, err_len) < 0 ||
        get_num(root, what, "initializer_range", 0.02, &init, err, err_len) < 0 ||
        get_bool(root, what, "tie_word_embeddings", false, &mc->tie_word_embeddings, err, err_len) < 0)
        return -1;
    mc->rope_theta = (float)theta;
    mc->rms_norm_eps = (float)eps;
    mc->initializer_range = (float)init;
    mc->attention_bias = arch == ARCH_QWEN2;
    mc->qk_norm = arch == ARCH_QWEN3;
    return refuse_unsupported(root, what, arch, mc->num_hidden_layers, err, err_len);
}

int hf_parse_config(const char *json_text, const char *what, dpo_model_config_t *mc, char *err,
                    size_t err_len) {
    json_error_t je;
    json_t *root = json_loads(json_text, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        dpo_errf(err, err_len, "%s: not valid JSON (line %d: %s)", what, je.line, je.text);
        return -1;
    }
    int rc = parse_root(root, what, mc, err, err_len);
    json_decref(root);
    return rc;
}

int hf_read_config(const char *dir, dpo_model_config_t *mc, char *err, size_t err_len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        dpo_errf(err, err_len, "%s: %s (line %d)", path, je.text, je.line);
        return -1;
    }
    int rc = parse_root(root, path, mc, err, err_len);
    json_decref(root);
    return rc;
}

// ---- weights ----

// The safetensors files of a folder and which file holds each tensor.
typedef struct {
    const char *dir;
    int n_files;
    char **file_names;
    st_file_t *files;     // opened on first use
    bool *opened;
    json_t *weight_map;   // name -> file name (sharded); NULL for one model.safetensors
} hf_files_t;

static void files_free(hf_files_t *h) {
    for (int i = 0; i < h->n_files; i++) {
        if (h->opened[i]) st_close(&h->files[i]);
        free(h->file_names[i]);
    }
    free(h->file_names);
    free(h->files);
    free(h->opened);
    if (h->weight_map) json_decref(h->weight_map);
}

static int add_file(hf_files_t *h, const char *name) {
    for (int i = 0; i < h->n_files; i++)
        if (strcmp(h->file_names[i], name) == 0) return i;
    h->file_names = xrealloc(h->file_names, (size_t)(h->n_files + 1) * sizeof(char *), "file list");
    h->file_names[h->n_files] = strdup(name);
    if (!h->file_names[h->n_files]) dpo_fatal("out of memory");
    return h->n_files++;
}

static int files_init(hf_files_t *h, const char *dir, char *err, size_t err_len) {
    memset(h, 0, sizeof *h);
    h->dir = dir;
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (stat(path, &sb) == 0) {
        json_error_t je;
        json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
        if (!root) {
            dpo_errf(err, err_len, "%s: %s (line %d)", path, je.text, je.line);
            return -1;
        }
        json_t *wm = json_object_get(root, "weight_map");
        if (!json_is_object(wm)) {
            dpo_errf(err, err_len, "%s: weight_map is missing or not an object", path);
            json_decref(root);
            return -1;
        }
        const char *k;
        json_t *v;
        json_object_foreach(wm, k, v) {
            const char *fn = json_is_string(v) ? json_string_value(v) : NULL;
            if (!fn || !fn[0] || strchr(fn, '/') || strcmp(fn, "..") == 0) {
                dpo_errf(err, err_len, "%s: weight_map[\"%s\"] is not a file name in the folder", path, k);
                json_decref(root);
                files_free(h);
                return -1;
            }
            add_file(h, fn);
        }
        h->weight_map = json_incref(wm);
        json_decref(root);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (stat(path, &sb) != 0) {
            dpo_errf(err, err_len,
                     "%s: neither model.safetensors nor model.safetensors.index.json is there "
                     "(only safetensors weights are read)",
                     dir);
            return -1;
        }
        add_file(h, "model.safetensors");
    }
    h->files = xcalloc((size_t)(h->n_files ? h->n_files : 1), sizeof(st_file_t), "file list");
    h->opened = xcalloc((size_t)(h->n_files ? h->n_files : 1), sizeof(bool), "file list");
    return 0;
}

static st_file_t *files_get(hf_files_t *h, int i, char *err, size_t err_len) {
    if (!h->opened[i]) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", h->dir, h->file_names[i]);
        if (st_open(&h->files[i], path, err, err_len) < 0) return NULL;
        h->opened[i] = true;
    }
    return &h->files[i];
}

// Tensors the folder may hold that this model ignores: RoPE tables of old exports,
// and an lm_head that merely repeats the tied embedding.
static bool ignorable(const dpo_layout_t *lay, const char *name) {
    size_t n = strlen(name);
    const char *suffix = ".rotary_emb.inv_freq";
    size_t sn = strlen(suffix);
    if (n > sn && strcmp(name + n - sn, suffix) == 0) return true;
    return lay->cfg.tie_word_embeddings && strcmp(name, "lm_head.weight") == 0;
}

// Every tensor the folder holds must be one this model has (or an ignorable one).
static int check_extra(hf_files_t *h, const dpo_layout_t *lay, char *err, size_t err_len) {
    if (h->weight_map) {
        const char *k;
        json_t *v;
        json_object_foreach(h->weight_map, k, v) {
            if (layout_find(lay, k) < 0 && !ignorable(lay, k)) {
                dpo_errf(err, err_len,
                         "%s: tensor \"%s\" (in %s) is not part of this architecture per config.json",
                         h->dir, k, json_string_value(v));
                return -1;
            }
        }
        return 0;
    }
    st_file_t *f = files_get(h, 0, err, err_len);
    if (!f) return -1;
    for (int i = 0; i < f->n_tensors; i++)
        if (layout_find(lay, f->tensors[i].name) < 0 && !ignorable(lay, f->tensors[i].name)) {
            dpo_errf(err, err_len, "%s: tensor \"%s\" is not part of this architecture per config.json",
                     f->path, f->tensors[i].name);
            return -1;
        }
    return 0;
}

int hf_load_model(const char *dir, dpo_model_t *model, char *err, size_t err_len) {
    const dpo_layout_t *lay = &model->layout;
    hf_files_t h;
    if (files_init(&h, dir, err, err_len) < 0) return -1;
    int rc = check_extra(&h, lay, err, err_len);
    size_t mx = 1;
    for (int i = 0; i < lay->n_tensors; i++) {
        size_t n = (size_t)(lay->tensors[i].local_shape[0] * lay->tensors[i].local_shape[1]);
        if (n > mx) mx = n;
    }
    float *stage = rc == 0 ? xmalloc(mx * sizeof(float), "weights staging buffer") : NULL;
    for (int i = 0; i < lay->n_tensors && rc == 0; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        int fi = 0;
        if (h.weight_map) {
            json_t *v = json_object_get(h.weight_map, t->name);
            if (!v) {
                dpo_errf(err, err_len, "%s/model.safetensors.index.json: tensor \"%s\" is missing", dir,
                         t->name);
                rc = -1;
                break;
            }
            fi = add_file(&h, json_string_value(v));
        }
        st_file_t *f = files_get(&h, fi, err, err_len);
        if (!f) {
            rc = -1;
            break;
        }
        int k = st_find(f, t->name);
        if (k < 0) {
            dpo_errf(err, err_len, "%s: tensor \"%s\" is missing", f->path, t->name);
            rc = -1;
            break;
        }
        const st_tensor_t *s = &f->tensors[k];
        bool same = s->ndim == t->ndim && s->shape[0] == t->shape[0] &&
                    (t->ndim == 1 || s->shape[1] == t->shape[1]);
        if (!same) {
            char have[128] = "(", want[64];
            for (int d = 0; d < s->ndim; d++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", d ? ", " : "",
                         (long long)s->shape[d]);
            snprintf(have + strlen(have), sizeof have - strlen(have), ")");
            if (t->ndim == 1)
                snprintf(want, sizeof want, "(%lld)", (long long)t->shape[0]);
            else
                snprintf(want, sizeof want, "(%lld, %lld)", (long long)t->shape[0],
                         (long long)t->shape[1]);
            dpo_errf(err, err_len, "%s: tensor \"%s\": shape %s but config.json implies %s", f->path,
                     t->name, have, want);
            rc = -1;
            break;
        }
        if (st_read_slab(f, k, t->local_start[0], t->local_shape[0], t->local_start[1],
                         t->local_shape[1], stage, err, err_len) < 0) {
            rc = -1;
            break;
        }
        dpo_to_device(model->be, model->params + t->offset, stage,
                             (size_t)(t->local_shape[0] * t->local_shape[1]) * sizeof(float));
    }
    free(stage);
    files_free(&h);
    return rc;
}
