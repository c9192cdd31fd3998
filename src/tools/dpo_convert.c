// dpo_convert.c — Hugging Face model folders <-> dpo_hpc checkpoints (doc/hf-interop.md).
//
//   dpo_convert hf2h5 HF_DIR OUT.h5
//   dpo_convert h52hf CKPT.h5 OUT_DIR [--dtype bf16|fp32] [--max-shard-size BYTES]
//
// One process (MPI over MPI_COMM_SELF, tensor-parallel size 1): the whole model is
// held in memory once. Outputs are written under a temporary name and renamed.
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hdf5.h>
#include <jansson.h>
#include <mpi.h>

#include "dpo/comm.h"
#include "dpo/backend.h"
#include "dpo/ckpt.h"
#include "dpo/error.h"
#include "dpo/h5util.h"
#include "dpo/hf_model.h"
#include "dpo/mesh.h"
#include "dpo/model.h"
#include "dpo/program.h"
#include "dpo/safetensors.h"
#include "dpo/tokenizer.h"
#include "dpo/util.h"

#define ERR_LEN 2048
#define PATH_LEN 4096
#define HF_CONFIG_MAX (1 << 20)

// Tokenizer files copied along with the weights.
static const char *const g_tok_files[] = {"tokenizer.json", "tokenizer_config.json",
                                          "special_tokens_map.json"};
#define N_TOK_FILES (int)(sizeof g_tok_files / sizeof g_tok_files[0])

static void usage(FILE *f) {
    fprintf(f,
            "usage: dpo_convert hf2h5 HF_DIR OUT.h5\n"
            "       dpo_convert h52hf CKPT.h5 OUT_DIR [--dtype bf16|fp32] [--max-shard-size BYTES]\n"
            "       dpo_convert --help | --version\n"
            "Converts between Hugging Face model folders and dpo_hpc checkpoints "
            "(doc/hf-interop.md).\n");
}

static bool exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static int copy_file(const char *src, const char *dst, char *err, size_t err_len) {
    FILE *in = fopen(src, "rb");
    if (!in) {
        dpo_errf(err, err_len, "%s: cannot open: %s", src, strerror(errno));
        return -1;
    }
    FILE *out = fopen(dst, "wb");
    if (!out) {
        dpo_errf(err, err_len, "%s: cannot create: %s", dst, strerror(errno));
        fclose(in);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    if (ferror(in)) rc = -1;
    fclose(in);
    if (fclose(out) != 0) rc = -1;
    if (rc) dpo_errf(err, err_len, "%s: copy to %s failed", src, dst);
    return rc;
}

// Removes a directory's plain files and the directory (our own temporary folders).
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[PATH_LEN];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    dstr_t b = {0};
    char buf[1 << 14];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) dstr_append(&b, buf, n);
    fclose(f);
    if (!b.s) dstr_append(&b, "", 0);
    return b.s;
}

static int write_text(const char *path, const char *text, char *err, size_t err_len) {
    util_afile_t out;  // checked writes, temp + rename (util.h)
    if (util_afile_open(&out, path, err, err_len) != 0) return -1;
    util_afile_write(&out, text, strlen(text));
    return util_afile_commit(&out, err, err_len);
}

// A model of one rank holding every tensor whole.
static int make_model(dpo_model_t *m, const dpo_mesh_t *mesh, const dpo_model_config_t *mc,
                      char *err, size_t err_len) {
    return model_init(m, backend_cpu(), mesh, mc, false, 1, 1, err, err_len);
}

// ---- hf2h5 ----

static int hf2h5(const char *hf_dir, const char *out, const dpo_mesh_t *mesh, char *err,
                 size_t err_len) {
    if (!hf_is_model_dir(hf_dir)) {
        dpo_errf(err, err_len, "%s: not a Hugging Face model folder (no config.json)", hf_dir);
        return -1;
    }
    dpo_model_config_t mc;
    if (hf_read_config(hf_dir, &mc, err, err_len) < 0) return -1;
    char path[PATH_LEN];
    snprintf(path, sizeof path, "%s/config.json", hf_dir);
    char *config_text = read_text(path);
    if (!config_text || strlen(config_text) >= HF_CONFIG_MAX) {
        dpo_errf(err, err_len, "%s: cannot read (or larger than 1 MiB)", path);
        free(config_text);
        return -1;
    }
    // The tokenizer's identity, when the folder has one we can load.
    char identity[512] = "";
    snprintf(path, sizeof path, "%s/tokenizer.json", hf_dir);
    if (exists(path)) {
        char terr[ERR_LEN];
        dpo_tokenizer_t *tok = tokenizer_load(hf_dir, terr, sizeof terr);
        if (tok) {
            snprintf(identity, sizeof identity, "%s", tokenizer_identity(tok));
            tokenizer_free(tok);
        } else {
            log_warn("%s: tokenizer not recorded: %s", hf_dir, terr);
        }
    }

    dpo_model_t m;
    if (make_model(&m, mesh, &mc, err, err_len) < 0) {
        free(config_text);
        return -1;
    }
    int rc = hf_load_model(hf_dir, &m, err, err_len);
    char tmpdir[PATH_LEN], tmpfile[PATH_LEN + 32];
    snprintf(tmpdir, sizeof tmpdir, "%s.tmpdir", out);
    snprintf(tmpfile, sizeof tmpfile, "%s/step_00000000.h5", tmpdir);
    if (rc == 0) {
        remove_dir(tmpdir);
        dpo_train_state_t st = {0};
        rc = ckpt_save(tmpdir, mesh, &m, NULL, &st, NULL, err, err_len);
    }
    model_free(&m);
    if (rc == 0) {  // provenance attributes, then the rename into place
        h5util_quiet();
        hid_t f = H5Fopen(tmpfile, H5F_ACC_RDWR, H5P_DEFAULT);
        int r = f < 0 ? -1 : 0;
        if (r == 0) r |= h5util_attr_write_str(f, "hf_config", config_text);
        if (r == 0) r |= h5util_attr_write_str(f, "hf_source", hf_dir);
        if (r == 0 && identity[0]) r |= h5util_attr_write_str(f, "tokenizer_identity", identity);
        if (f >= 0 && H5Fclose(f) < 0) r = -1;
        if (r) {
            dpo_errf(err, err_len, "%s: cannot add attributes (%s)", tmpfile, h5util_reason());
            rc = -1;
        } else if (rename(tmpfile, out) != 0) {
            dpo_errf(err, err_len, "%s: cannot rename to %s: %s", tmpfile, out, strerror(errno));
            rc = -1;
        }
    }
    remove_dir(tmpdir);
    free(config_text);
    if (rc < 0) return -1;

    // Tokenizer files beside the checkpoint: OUT.h5.tokenizer/
    char tokdir[PATH_LEN], toktmp[PATH_LEN + 8];
    snprintf(tokdir, sizeof tokdir, "%s.tokenizer", out);
    snprintf(toktmp, sizeof toktmp, "%s.tmp", tokdir);
    int n_copied = 0;
    remove_dir(toktmp);
    for (int i = 0; i < N_TOK_FILES && rc == 0; i++) {
        char src[PATH_LEN], dst[PATH_LEN + 64];
        snprintf(src, sizeof src, "%s/%s", hf_dir, g_tok_files[i]);
        if (!exists(src)) continue;
        if (n_copied == 0 && util_mkdir_p(toktmp, err, err_len) < 0) return -1;
        snprintf(dst, sizeof dst, "%s/%s", toktmp, g_tok_files[i]);
        rc = copy_file(src, dst, err, err_len);
        n_copied++;
    }
    if (rc == 0 && n_copied > 0) {
        remove_dir(tokdir);
        if (rename(toktmp, tokdir) != 0) {
            dpo_errf(err, err_len, "%s: cannot rename to %s: %s", toktmp, tokdir, strerror(errno));
            rc = -1;
        }
    }
    if (rc < 0) remove_dir(toktmp);
    if (rc == 0)
        printf("dpo_convert: %s -> %s%s%s\n", hf_dir, out, n_copied ? " (tokenizer files in " : "",
               n_copied ? tokdir : "");
    if (rc == 0 && n_copied) printf(")\n");
    return rc;
}

// ---- h52hf ----

// The shortest decimal that reads back as the same float, as a JSON number.
static json_t *json_f32(float x) {
    char buf[64];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)x);
        if ((float)strtod(buf, NULL) == x) break;
    }
    return json_real(strtod(buf, NULL));
}

static bool same_arch(const dpo_model_config_t *a, const dpo_model_config_t *b) {
    return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->num_hidden_layers == b->num_hidden_layers &&
           a->num_attention_heads == b->num_attention_heads &&
           a->num_key_value_heads == b->num_key_value_heads && a->head_dim == b->head_dim &&
           a->intermediate_size == b->intermediate_size && a->rope_theta == b->rope_theta &&
           a->rms_norm_eps == b->rms_norm_eps && a->attention_bias == b->attention_bias &&
           a->qk_norm == b->qk_norm && a->tie_word_embeddings == b->tie_word_embeddings;
}

// config.json for mc: the source folder's own (when the checkpoint came from one and
// still has its architecture), else generated.
static json_t *make_config(const dpo_model_config_t *mc, const char *src_text, const char *dtype,
                           char *err, size_t err_len) {
    if (src_text) {
        dpo_model_config_t sc;
        char e2[ERR_LEN];
        json_t *root = json_loads(src_text, 0, NULL);
        if (root && hf_parse_config(src_text, "hf_config", &sc, e2, sizeof e2) == 0 &&
            same_arch(&sc, mc)) {
            json_object_del(root, "dtype");
            json_object_set_new(root, "torch_dtype", json_string(dtype));
            return root;
        }
        if (root) json_decref(root);
    }
    const char *cls, *type;
    if (mc->qk_norm && mc->attention_bias) {
        dpo_errf(err, err_len, "no Hugging Face architecture has both QK-norm and a q/k/v bias");
        return NULL;
    } else if (mc->qk_norm) {
        cls = "Qwen3ForCausalLM", type = "qwen3";
    } else if (mc->attention_bias) {
        cls = "Qwen2ForCausalLM", type = "qwen2";
    } else {
        cls = "LlamaForCausalLM", type = "llama";
    }
    json_t *r = json_object();
    json_t *archs = json_array();
    json_array_append_new(archs, json_string(cls));
    json_object_set_new(r, "architectures", archs);
    json_object_set_new(r, "model_type", json_string(type));
    json_object_set_new(r, "vocab_size", json_integer(mc->vocab_size));
    json_object_set_new(r, "hidden_size", json_integer(mc->hidden_size));
    json_object_set_new(r, "intermediate_size", json_integer(mc->intermediate_size));
    json_object_set_new(r, "num_hidden_layers", json_integer(mc->num_hidden_layers));
    json_object_set_new(r, "num_attention_heads", json_integer(mc->num_attention_heads));
    json_object_set_new(r, "num_key_value_heads", json_integer(mc->num_key_value_heads));
    json_object_set_new(r, "head_dim", json_integer(mc->head_dim));
    json_object_set_new(r, "hidden_act", json_string("silu"));
    json_object_set_new(r, "max_position_embeddings", json_integer(4096));
    json_object_set_new(r, "rms_norm_eps", json_f32(mc->rms_norm_eps));
    json_object_set_new(r, "rope_theta", json_f32(mc->rope_theta));
    json_object_set_new(r, "rope_scaling", json_null());
    json_object_set_new(r, "initializer_range", json_f32(mc->initializer_range));
    json_object_set_new(r, "tie_word_embeddings", json_boolean(mc->tie_word_embeddings));
    json_object_set_new(r, "attention_dropout", json_real(0.0));
    if (!mc->attention_bias) json_object_set_new(r, "attention_bias", json_false());
    if (!mc->qk_norm && !mc->attention_bias) json_object_set_new(r, "mlp_bias", json_false());
    if (mc->qk_norm || mc->attention_bias) json_object_set_new(r, "use_sliding_window", json_false());
    json_object_set_new(r, "use_cache", json_true());
    json_object_set_new(r, "torch_dtype", json_string(dtype));
    return r;
}

static int dump_json(const char *path, json_t *j, char *err, size_t err_len) {
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    if (!text) {
        dpo_errf(err, err_len, "%s: cannot format JSON", path);
        return -1;
    }
    dstr_t b = {0};
    dstr_puts(&b, text);
    dstr_puts(&b, "\n");
    free(text);
    int rc = write_text(path, b.s, err, err_len);
    dstr_free(&b);
    return rc;
}

// Weights into dir: one model.safetensors, or shards of at most max_shard bytes (a
// tensor larger than the limit gets a shard of its own) with the index.
static int write_weights(const char *dir, const dpo_model_t *m, const float *host, st_dtype_t dt,
                         uint64_t max_shard, char *err, size_t err_len) {
    const dpo_layout_t *lay = &m->layout;
    int n = lay->n_tensors;
    st_out_tensor_t *ts = xcalloc((size_t)n, sizeof *ts, "tensor list");
    int *shard = xcalloc((size_t)n, sizeof(int), "tensor list");
    uint64_t total = 0, in_shard = 0;
    int n_shards = 1;
    for (int i = 0; i < n; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        ts[i].name = t->name;
        ts[i].ndim = t->ndim;
        ts[i].shape[0] = t->shape[0];
        ts[i].shape[1] = t->shape[1];
        ts[i].data = host + t->offset;
        uint64_t bytes = (uint64_t)(t->shape[0] * t->shape[1]) * st_dtype_size(dt);
        if (max_shard > 0 && in_shard > 0 && in_shard + bytes > max_shard) {
            n_shards++;
            in_shard = 0;
        }
        shard[i] = n_shards - 1;
        in_shard += bytes;
        total += bytes;
    }
    const char *mk[] = {"format"}, *mv[] = {"pt"};
    char path[2 * PATH_LEN], name[64];
    int rc = 0;
    if (n_shards == 1) {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = st_write(path, ts, n, dt, mk, mv, 1, err, err_len);
    } else {
        json_t *index = json_object(), *meta = json_object(), *wm = json_object();
        json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
        json_object_set_new(index, "metadata", meta);
        for (int s = 0, first = 0; s < n_shards && rc == 0; s++) {
            int last = first;
            while (last < n && shard[last] == s) last++;
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
            snprintf(path, sizeof path, "%s/%s", dir, name);
            rc = st_write(path, ts + first, last - first, dt, mk, mv, 1, err, err_len);
            for (int i = first; i < last; i++) json_object_set_new(wm, ts[i].name, json_string(name));
            first = last;
        }
        json_object_set_new(index, "weight_map", wm);
        snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
        if (rc == 0) rc = dump_json(path, index, err, err_len);
        json_decref(index);
    }
    free(ts);
    free(shard);
    return rc;
}

static int h52hf(const char *ckpt, const char *out, st_dtype_t dt, uint64_t max_shard,
                 const dpo_mesh_t *mesh, char *err, size_t err_len) {
    if (exists(out)) {
        dpo_errf(err, err_len, "%s: already exists (choose a new output folder)", out);
        return -1;
    }
    dpo_model_config_t mc;
    if (ckpt_read_model_config(ckpt, &mc, err, err_len) < 0) return -1;
    // The source config.json, when the checkpoint was made by hf2h5.
    char *src_config = xmalloc(HF_CONFIG_MAX, "config text");
    h5util_quiet();
    hid_t f = H5Fopen(ckpt, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0 || h5util_attr_read_str(f, "hf_config", src_config, HF_CONFIG_MAX) != 0)
        src_config[0] = '\0';
    if (f >= 0) H5Fclose(f);

    dpo_model_t m;
    if (make_model(&m, mesh, &mc, err, err_len) < 0) {
        free(src_config);
        return -1;
    }
    int rc = ckpt_load_model(ckpt, &m, err, err_len);
    float *host = NULL;
    if (rc == 0) {
        host = xmalloc(m.layout.n_params * sizeof(float) + 1, "weights");
        dpo_to_host(m.be, host, m.params, m.layout.n_params * sizeof(float));
    }
    char tmp[PATH_LEN + 16], path[2 * PATH_LEN];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    json_t *cfg = NULL;
    if (rc == 0) {
        cfg = make_config(&mc, src_config[0] ? src_config : NULL,
                          dt == ST_BF16 ? "bfloat16" : "float32", err, err_len);
        if (!cfg) rc = -1;
    }
    if (rc == 0) {
        remove_dir(tmp);
        rc = util_mkdir_p(tmp, err, err_len);
    }
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/config.json", tmp);
        rc = dump_json(path, cfg, err, err_len);
    }
    if (rc == 0) {
        json_t *gen = json_object();
        json_object_set_new(gen, "_from_model_config", json_true());
        const char *ids[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        for (int i = 0; i < 3; i++) {
            json_t *v = json_object_get(cfg, ids[i]);
            if (v && !json_is_null(v)) json_object_set(gen, ids[i], v);
        }
        snprintf(path, sizeof path, "%s/generation_config.json", tmp);
        rc = dump_json(path, gen, err, err_len);
        json_decref(gen);
    }
    if (rc == 0) rc = write_weights(tmp, &m, host, dt, max_shard, err, err_len);
    // Tokenizer files recorded by hf2h5 beside the checkpoint.
    char tokdir[PATH_LEN];
    snprintf(tokdir, sizeof tokdir, "%s.tokenizer", ckpt);
    for (int i = 0; i < N_TOK_FILES && rc == 0; i++) {
        char src[PATH_LEN + 64];
        snprintf(src, sizeof src, "%s/%s", tokdir, g_tok_files[i]);
        if (!exists(src)) continue;
        snprintf(path, sizeof path, "%s/%s", tmp, g_tok_files[i]);
        rc = copy_file(src, path, err, err_len);
    }
    if (rc == 0 && rename(tmp, out) != 0) {
        dpo_errf(err, err_len, "%s: cannot rename to %s: %s", tmp, out, strerror(errno));
        rc = -1;
    }
    if (rc < 0) remove_dir(tmp);
    if (cfg) json_decref(cfg);
    free(host);
    free(src_config);
    model_free(&m);
    if (rc == 0) printf("dpo_convert: %s -> %s\n", ckpt, out);
    return rc;
}

// The outputs, and the temporary folders each mode empties and replaces, must not
// be (or hold) the input model or its tokenizer files.
static int check_outputs(bool to_h5, const char *src, const char *out, char *err, size_t err_len) {
    char tok[PATH_LEN + 16], dir[PATH_LEN + 32];
    snprintf(tok, sizeof tok, "%s.tokenizer", src);
    util_input_t in[] = {{to_h5 ? "HF_DIR" : "CKPT", src},
                         {"CKPT's tokenizer folder", to_h5 ? NULL : tok}};
    int n = (int)(sizeof in / sizeof in[0]);
    if (util_check_output_dir(to_h5 ? "OUT" : "OUT_DIR", out, in, n, err, err_len) != 0) return -1;
    const char *suffixes[] = {".tmpdir", ".tokenizer", ".tokenizer.tmp"};
    for (int i = 0; i < (to_h5 ? 3 : 1); i++) {
        snprintf(dir, sizeof dir, "%s%s", out, to_h5 ? suffixes[i] : ".tmp");
        if (util_check_output_dir("the output's folder", dir, in, n, err, err_len) != 0) return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    log_set_program("dpo_convert");
    comm_errors_init();
    dpo_program_set("dpo_convert");
    if (argc >= 2 && dpo_version_option(argv[1], true)) {
        MPI_Finalize();
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        usage(stdout);
        MPI_Finalize();
        return 0;
    }
    if (argc < 4 || (strcmp(argv[1], "hf2h5") != 0 && strcmp(argv[1], "h52hf") != 0)) {
        usage(stderr);
        MPI_Finalize();
        return 2;
    }
    bool to_h5 = strcmp(argv[1], "hf2h5") == 0;
    st_dtype_t dt = ST_F32;
    uint64_t max_shard = 0;
    for (int i = 4; i < argc; i++) {
        char key[32], *val = NULL;
        int r = to_h5 ? -1 : util_option(argc, argv, &i, key, sizeof key, &val);
        if (r == 0 && strcmp(key, "--dtype") == 0 && (strcmp(val, "bf16") == 0 || strcmp(val, "fp32") == 0)) {
            dt = strcmp(val, "bf16") == 0 ? ST_BF16 : ST_F32;
        } else if (r == 0 && strcmp(key, "--max-shard-size") == 0) {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(val, &end, 10);
            if (errno || end == val || *end || val[0] == '-' || v == 0) {
                fprintf(stderr, "dpo_convert: --max-shard-size needs a positive byte count (got %s)\n", val);
                MPI_Finalize();
                return 2;
            }
            max_shard = v;
        } else {
            fprintf(stderr, "dpo_convert: unknown or incomplete option %s\n", argv[i]);
            usage(stderr);
            MPI_Finalize();
            return 2;
        }
    }
    char err[ERR_LEN] = "";
    if (check_outputs(to_h5, argv[2], argv[3], err, sizeof err) != 0) {
        fprintf(stderr, "dpo_convert: error: %s\n", err);
        MPI_Finalize();
        return 1;
    }
    dpo_mesh_t mesh;
    mesh_init_self(&mesh);
    int rc = to_h5 ? hf2h5(argv[2], argv[3], &mesh, err, sizeof err)
                   : h52hf(argv[2], argv[3], dt, max_shard, &mesh, err, sizeof err);
    if (rc != 0) fprintf(stderr, "dpo_convert: error: %s\n", err);
    mesh_free(&mesh);
    MPI_Finalize();
    return rc ? 1 : 0;
}
