// ckpt.c — checkpoints in parallel HDF5 (doc/checkpoint-format.md).
//
// One file per checkpoint, <dir>/step_<%08lld>.h5, written collectively by every
// rank of the mesh through the MPI-IO driver to <name>.tmp and renamed by rank 0
// once complete. Every tensor is one dataset at its FULL logical shape; each rank
// writes (DP rank 0 only) or reads (every rank) the hyperslab its layout holds, so
// a checkpoint written at one TP x DP layout loads at any other. With ZeRO-1 the
// optimizer moments are sharded over DP: every DP rank writes, and reads, just the
// pieces of each tensor that fall in its shard of the flat parameter vector.
//
// Every collective HDF5 call is made by every rank in the same order, and ranks
// agree on success after each tensor (one small allreduce), so an I/O error on one
// rank never leaves the others blocked and every rank returns the same message.
#include "dpo/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>
#include <mpi.h>

#include "dpo/comm.h"
#include "dpo/error.h"
#include "dpo/h5util.h"
#include "dpo/program.h"
#include "dpo/util.h"

// HDF5 tuning (doc/checkpoint-format.md, "Parallel I/O choices"): every object of
// at least 1 MiB (large tensors) starts on a 1 MiB boundary, which matches common
// parallel file system stripe sizes and keeps one writer per stripe; smaller
// objects (norm weights, metadata) stay packed so small models do not bloat.
#define CKPT_ALIGN_THRESHOLD ((hsize_t)1 << 20)
#define CKPT_ALIGNMENT ((hsize_t)1 << 20)

// ---- small file helpers ----

static void fmt_shape(char *buf, size_t n, int ndim, const hsize_t *d) {
    if (ndim == 1)
        snprintf(buf, n, "(%llu)", (unsigned long long)d[0]);
    else if (ndim == 2)
        snprintf(buf, n, "(%llu, %llu)", (unsigned long long)d[0], (unsigned long long)d[1]);
    else
        snprintf(buf, n, "(%d dimensions)", ndim);
}

// ---- the model config on /model ----

static int write_model_config(hid_t g, const dpo_layout_t *lay) {
    const dpo_model_config_t *c = &lay->cfg;
    int rc = 0;
    rc |= h5util_attr_write_int(g, "vocab_size", H5T_STD_I32LE, c->vocab_size);
    rc |= h5util_attr_write_int(g, "hidden_size", H5T_STD_I32LE, c->hidden_size);
    rc |= h5util_attr_write_int(g, "num_hidden_layers", H5T_STD_I32LE, c->num_hidden_layers);
    rc |= h5util_attr_write_int(g, "num_attention_heads", H5T_STD_I32LE, c->num_attention_heads);
    rc |= h5util_attr_write_int(g, "num_key_value_heads", H5T_STD_I32LE, c->num_key_value_heads);
    rc |= h5util_attr_write_int(g, "head_dim", H5T_STD_I32LE, lay->head_dim);  // effective (never 0)
    rc |= h5util_attr_write_int(g, "intermediate_size", H5T_STD_I32LE, c->intermediate_size);
    // float32, as in the config struct (h5py shows 1e-05, not 9.99999974738e-06)
    rc |= h5util_attr_write_f32(g, "rope_theta", c->rope_theta);
    rc |= h5util_attr_write_f32(g, "rms_norm_eps", c->rms_norm_eps);
    rc |= h5util_attr_write_int(g, "attention_bias", H5T_STD_I32LE, c->attention_bias);
    rc |= h5util_attr_write_int(g, "qk_norm", H5T_STD_I32LE, c->qk_norm);
    rc |= h5util_attr_write_int(g, "tie_word_embeddings", H5T_STD_I32LE, c->tie_word_embeddings);
    rc |= h5util_attr_write_f32(g, "initializer_range", c->initializer_range);
    return rc ? -1 : 0;
}

static int read_model_config(hid_t g, const char *path, dpo_model_config_t *mc, char *err,
                             size_t err_len) {
    memset(mc, 0, sizeof *mc);
    struct {
        const char *name;
        int *dst;
        bool required;
    } ints[] = {{"vocab_size", &mc->vocab_size, true},
                {"hidden_size", &mc->hidden_size, true},
                {"num_hidden_layers", &mc->num_hidden_layers, true},
                {"num_attention_heads", &mc->num_attention_heads, true},
                {"num_key_value_heads", &mc->num_key_value_heads, true},
                {"head_dim", &mc->head_dim, false},
                {"intermediate_size", &mc->intermediate_size, true}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        int64_t v = 0;
        int r = h5util_attr_read_int(g, ints[i].name, &v);
        if (r < 0 || (r > 0 && ints[i].required)) {
            dpo_errf(err, err_len, "%s: /model: attribute %s is %s", path, ints[i].name,
                 r > 0 ? "missing" : "not an integer");
            return -1;
        }
        *ints[i].dst = (int)v;
    }
    struct {
        const char *name;
        float *dst;
        double def;
    } flts[] = {{"rope_theta", &mc->rope_theta, 10000.0},
                {"rms_norm_eps", &mc->rms_norm_eps, 1e-6},
                {"initializer_range", &mc->initializer_range, 0.02}};
    for (size_t i = 0; i < sizeof flts / sizeof flts[0]; i++) {
        double v = flts[i].def;
        if (h5util_attr_read_f64(g, flts[i].name, &v) < 0) {
            dpo_errf(err, err_len, "%s: /model: attribute %s is not a number", path, flts[i].name);
            return -1;
        }
        *flts[i].dst = (float)v;
    }
    struct {
        const char *name;
        bool *dst;
    } bools[] = {{"attention_bias", &mc->attention_bias},
                 {"qk_norm", &mc->qk_norm},
                 {"tie_word_embeddings", &mc->tie_word_embeddings}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++) {
        int64_t v = 0;
        if (h5util_attr_read_int(g, bools[i].name, &v) < 0) {
            dpo_errf(err, err_len, "%s: /model: attribute %s is not an integer (0/1)", path,
                 bools[i].name);
            return -1;
        }
        *bools[i].dst = v != 0;
    }
    return 0;
}

static void fmt_arch(char *buf, size_t n, const dpo_model_config_t *c) {
    snprintf(buf, n,
             "vocab %d, hidden %d, layers %d, heads %d/%d, head_dim %d, ffn %d, bias %d, qk_norm "
             "%d, tied %d",
             c->vocab_size, c->hidden_size, c->num_hidden_layers, c->num_attention_heads,
             c->num_key_value_heads, c->head_dim, c->intermediate_size, c->attention_bias,
             c->qk_norm, c->tie_word_embeddings);
}

// Checks format and version of an open checkpoint.
static int check_format(hid_t f, const char *path, char *err, size_t err_len) {
    char fmt[128];
    int r = h5util_attr_read_str(f, "format", fmt, sizeof fmt);
    if (r != 0 || strcmp(fmt, CKPT_FORMAT_NAME) != 0) {
        dpo_errf(err, err_len, "%s: not a dpo_hpc checkpoint (root attribute format is %s%s%s)", path,
             r == 0 ? "\"" : "", r == 0 ? fmt : "missing", r == 0 ? "\"" : "");
        return -1;
    }
    int64_t v = 0;
    if (h5util_attr_read_int(f, "format_version", &v) != 0 || v != CKPT_FORMAT_VERSION) {
        dpo_errf(err, err_len, "%s: checkpoint format_version %lld is not supported (this build reads %d)",
             path, (long long)v, CKPT_FORMAT_VERSION);
        return -1;
    }
    return 0;
}

// Opens read-only: with the MPI-IO driver over comm (collective loads), or with the
// default driver (comm == MPI_COMM_NULL: any one rank, metadata only).
static hid_t open_ckpt(const char *path, MPI_Comm comm, char *err, size_t err_len) {
    h5util_quiet();
    struct stat st;
    if (stat(path, &st) != 0) {
        dpo_errf(err, err_len, "%s: cannot open checkpoint: %s", path, strerror(errno));
        return H5I_INVALID_HID;
    }
    if (H5Fis_hdf5(path) <= 0) {
        dpo_errf(err, err_len, "%s: not an HDF5 file", path);
        return H5I_INVALID_HID;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (comm != MPI_COMM_NULL) {
        H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
        // every metadata read happens once (rank 0) and is broadcast
        H5Pset_all_coll_metadata_ops(fapl, true);
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        dpo_errf(err, err_len, "%s: cannot open HDF5 file (%s)", path, h5util_reason());
        return H5I_INVALID_HID;
    }
    if (check_format(f, path, err, err_len) < 0) {
        H5Fclose(f);
        return H5I_INVALID_HID;
    }
    return f;
}

// ---- tensors ----

static void tensor_dims(const dpo_tensor_t *t, hsize_t *d) {
    d[0] = (hsize_t)t->shape[0];
    d[1] = (hsize_t)t->shape[1];
}

// Elements of tensor t's slab that the file holds: the slab's rows without the
// padding rows of a vocabulary slab (those come last in the allocation).
static size_t slab_file_numel(const dpo_tensor_t *t) {
    return (size_t)(t->local_shape[0] * t->local_shape[1]);
}

// Selects, in the file space of tensor t, the elements [lo, hi) of this rank's slab
// (row-major local order, hi <= slab_file_numel) and returns a 1-D memory space of
// hi - lo elements; nothing on both sides for a rank that takes no part (!active or
// an empty range). A contiguous range of a slab is up to three hyperslabs of the
// full tensor: the tail of its first row, whole rows, the head of its last row.
// HDF5 walks a selection in row-major order, the order of the memory elements.
static hid_t select_part(hid_t fsp, const dpo_tensor_t *t, size_t lo, size_t hi, bool active) {
    if (!active || hi <= lo) {
        hsize_t one = 1;
        H5Sselect_none(fsp);
        hid_t msp = H5Screate_simple(1, &one, NULL);
        H5Sselect_none(msp);
        return msp;
    }
    const size_t w = (size_t)t->local_shape[1];  // 1 for a vector
    const hsize_t r_base = (hsize_t)t->local_start[0], c_base = (hsize_t)t->local_start[1];
    size_t r0 = lo / w, c0 = lo % w, r1 = hi / w, c1 = hi % w;  // end is (r1, c1) exclusive
    H5Sselect_none(fsp);
    hsize_t start[2], count[2];
    if (r0 == r1) {  // within one row
        start[0] = r_base + r0; start[1] = c_base + c0;
        count[0] = 1; count[1] = c1 - c0;
        H5Sselect_hyperslab(fsp, H5S_SELECT_OR, start, NULL, count, NULL);
    } else {
        if (c0 > 0) {  // tail of the first row
            start[0] = r_base + r0; start[1] = c_base + c0;
            count[0] = 1; count[1] = w - c0;
            H5Sselect_hyperslab(fsp, H5S_SELECT_OR, start, NULL, count, NULL);
            r0++;
        }
        if (r1 > r0) {  // whole rows
            start[0] = r_base + r0; start[1] = c_base;
            count[0] = r1 - r0; count[1] = w;
            H5Sselect_hyperslab(fsp, H5S_SELECT_OR, start, NULL, count, NULL);
        }
        if (c1 > 0) {  // head of the last row
            start[0] = r_base + r1; start[1] = c_base;
            count[0] = 1; count[1] = c1;
            H5Sselect_hyperslab(fsp, H5S_SELECT_OR, start, NULL, count, NULL);
        }
    }
    hsize_t n = (hsize_t)(hi - lo);
    return H5Screate_simple(1, &n, NULL);
}

// The range of the flat parameter vector [off, off + n) seen from tensor t: the
// part of its slab in the file that the range covers, as slab indices [*lo, *hi),
// and the position in the range's buffer of slab element *lo (*at).
static void range_part(const dpo_tensor_t *t, size_t off, size_t n, size_t *lo, size_t *hi,
                       size_t *at) {
    size_t a = t->offset, b = t->offset + slab_file_numel(t);
    size_t s = a > off ? a : off, e = b < off + n ? b : off + n;
    if (s >= e) {
        *lo = *hi = *at = 0;
        return;
    }
    *lo = s - a;
    *hi = e - a;
    *at = s - off;
}

// Collective: reads the elements [lo, hi) of this rank's slab of /<group>/<name>
// into dst on the device (shape checked).
static int read_tensor(hid_t g, const char *gpath, const char *file, const dpo_model_t *m,
                       const dpo_tensor_t *t, float *dst, size_t lo, size_t hi, float *stage,
                       hid_t dxpl, char *err, size_t err_len) {
    if (H5Lexists(g, t->name, H5P_DEFAULT) <= 0) {
        char a[256];
        fmt_arch(a, sizeof a, &m->layout.cfg);
        dpo_errf(err, err_len,
             "%s: %s/%s: missing (the checkpoint holds a different architecture; this model: %s)",
             file, gpath, t->name, a);
        return -1;
    }
    hid_t d = H5Dopen2(g, t->name, H5P_DEFAULT);
    if (d < 0) {
        dpo_errf(err, err_len, "%s: %s/%s: not a dataset (%s)", file, gpath, t->name, h5util_reason());
        return -1;
    }
    hid_t fsp = H5Dget_space(d), ft = H5Dget_type(d);
    hsize_t want[2], have[2] = {0, 0};
    tensor_dims(t, want);
    int nd = H5Sget_simple_extent_ndims(fsp);
    if (nd >= 1 && nd <= 2) H5Sget_simple_extent_dims(fsp, have, NULL);
    int rc = 0;
    if (nd != t->ndim || have[0] != want[0] || (nd == 2 && have[1] != want[1])) {
        char sa[64], sb[64];
        fmt_shape(sa, sizeof sa, nd, have);
        fmt_shape(sb, sizeof sb, t->ndim, want);
        dpo_errf(err, err_len, "%s: %s/%s: stored shape %s but this model expects %s", file, gpath,
             t->name, sa, sb);
        rc = -1;
    } else if (H5Tget_class(ft) != H5T_FLOAT) {
        dpo_errf(err, err_len, "%s: %s/%s: not floating-point", file, gpath, t->name);
        rc = -1;
    }
    if (rc == 0) {  // every rank reaches here together: the checks see the same file
        size_t n = hi > lo ? hi - lo : 0;
        hid_t msp = select_part(fsp, t, lo, hi, n > 0);
        if (H5Dread(d, H5T_NATIVE_FLOAT, msp, fsp, dxpl, stage) < 0) {
            dpo_errf(err, err_len, "%s: %s/%s: read failed (%s)", file, gpath, t->name, h5util_reason());
            rc = -1;
        } else if (n > 0) {
            dpo_to_device(m->be, dst, stage, n * sizeof(float));
        }
        H5Sclose(msp);
    }
    H5Tclose(ft);
    H5Sclose(fsp);
    H5Dclose(d);
    return rc;
}

static size_t max_local_numel(const dpo_layout_t *lay) {
    size_t mx = 1;
    for (int i = 0; i < lay->n_tensors; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        size_t n = (size_t)(t->local_shape[0] * t->local_shape[1]);
        if (n > mx) mx = n;
    }
    return mx;
}

// Names in a group that the layout does not know (a different architecture).
typedef struct {
    const dpo_layout_t *lay;
    char extra[DPO_TENSOR_NAME_MAX + 32];
} extra_ctx_t;

static herr_t find_extra(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    extra_ctx_t *c = data;
    if (layout_find(c->lay, name) < 0) {
        snprintf(c->extra, sizeof c->extra, "%s", name);
        return 1;  // stop
    }
    return 0;
}

// Reads every tensor of the layout from group gpath (collective): the elements of
// the flat vector [off, off + n) into buf (buf[0] is element off).
// trainable_only: the group holds optimizer moments, which frozen tensors lack.
static int load_group(hid_t f, const char *gpath, const char *file, const dpo_model_t *m,
                      float *buf, size_t off, size_t n, bool trainable_only, char *err,
                      size_t err_len) {
    MPI_Comm comm = m->mesh->world;
    const dpo_layout_t *lay = &m->layout;
    hid_t g = H5Gopen2(f, gpath, H5P_DEFAULT);
    if (g < 0) {
        dpo_errf(err, err_len, "%s: %s: missing", file, gpath);
        return -1;
    }
    extra_ctx_t ex = {.lay = lay, .extra = ""};
    H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, find_extra, &ex);
    if (ex.extra[0]) {
        char a[256];
        fmt_arch(a, sizeof a, &lay->cfg);
        dpo_errf(err, err_len,
             "%s: %s/%s: stored tensor that this model does not have (different architecture; "
             "this model: %s)",
             file, gpath, ex.extra, a);
        H5Gclose(g);
        return -1;
    }
    float *stage = xmalloc(max_local_numel(lay) * sizeof(float), "checkpoint staging buffer");
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    int ok = 1;
    for (int i = 0; i < lay->n_tensors && ok; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        if (trainable_only && t->frozen) continue;
        size_t lo, hi, at;
        range_part(t, off, n, &lo, &hi, &at);
        int r = read_tensor(g, gpath, file, m, t, buf + at, lo, hi, stage, dxpl, err, err_len);
        ok = comm_agree_mpi(comm, r == 0, err, err_len);
    }
    H5Pclose(dxpl);
    free(stage);
    H5Gclose(g);
    return ok ? 0 : -1;
}

// The optimizer state matches the model: full moments, or one DP shard of it.
static bool optim_covers(const dpo_optim_t *opt, const dpo_model_t *model) {
    if (!opt->sharded) return opt->off == 0 && opt->n == model->layout.n_trainable;
    return opt->n * (size_t)model->mesh->dp_size == model->n_alloc &&
           opt->off == (size_t)model->mesh->dp_rank * opt->n;
}

// ---- save ----
//
// A save runs in phases, and the ranks agree (comm_agree_mpi) at the end of each
// before the next collective HDF5 call, so an error on one rank sends every rank
// down the same path: create the file, write the attributes, create every dataset
// (metadata only), reserve the file's space on disk (rank 0), write the tensors,
// flush, close, and rank 0 syncs and renames. The reservation makes a full disk fail
// there, before HDF5 has written anything of size, where every rank is in step;
// on a file system without it a failure comes from a write and is agreed the same
// way. A failed save frees its data before closing (so the close can write the
// little metadata it flushes), closes the file on every rank and removes the
// temporary file: the previous checkpoint is never touched.

// Room beyond HDF5's end of allocation for what the close still allocates.
#define CKPT_RESERVE_SLACK ((off_t)1 << 16)
// Headroom held in <tmp>.headroom from before the file is created until its close:
// a failed save frees it so that the close can flush its metadata (about 0.5 KiB a
// dataset) even when other files filled the disk.
#define CKPT_HEADROOM_BASE (1LL << 16)
#define CKPT_HEADROOM_PER_DATASET 2048LL

typedef struct {
    dpo_train_state_t st;
    char created[32];
    char producer[128];   // the writing program and version (dpo/program.h)
    int64_t config_len;
} save_hdr_t;

typedef struct {
    MPI_Comm comm;
    int rank;
    const dpo_mesh_t *mesh;
    const dpo_model_t *model;
    const dpo_optim_t *opt;
    save_hdr_t hdr;
    char *config_text;  // rank 0's configuration text, on every rank (or NULL)
    char path[DPO_PATH_MAX + 64], tmp[DPO_PATH_MAX + 80];
    hid_t f;
    hid_t groups[3];  // /model, /optimizer/exp_avg, /optimizer/exp_avg_sq
    char *err;
    size_t err_len;
} saver_t;

static const char *const k_group_path[3] = {"/model", "/optimizer/exp_avg", "/optimizer/exp_avg_sq"};

static int n_groups(const saver_t *s) { return s->opt ? 3 : 1; }

// The part of tensor t that this rank writes in group k: the slab elements
// [*lo, *hi) found at *src, and whether it writes at all. False: the group has no
// dataset for t (a frozen tensor has no optimizer moments).
static bool tensor_part(const saver_t *s, int k, const dpo_tensor_t *t, size_t *lo, size_t *hi,
                        const float **src, bool *writer) {
    const dpo_mesh_t *mesh = s->mesh;
    if (k == 0) {  // one DP replica writes; a replicated TP slab is written once
        *lo = 0;
        *hi = slab_file_numel(t);
        *src = s->model->params + t->offset;
        *writer = mesh->dp_rank == 0 && t->tp_writer;
        return true;
    }
    if (t->frozen) return false;
    // Full moments: one DP replica writes. ZeRO-1: every DP rank writes the pieces
    // of the tensor that lie in its shard (disjoint, covering).
    size_t at;
    range_part(t, s->opt->off, s->opt->n, lo, hi, &at);
    *src = (k == 1 ? s->opt->m : s->opt->v) + at;
    *writer = (s->opt->sharded || mesh->dp_rank == 0) && t->tp_writer;
    return true;
}

// Rank 0's header (state, time, producer, configuration text) on every rank:
// attributes are written collectively and must be identical everywhere.
static void share_header(saver_t *s, const dpo_train_state_t *st, const dpo_config_t *cfg) {
    memset(&s->hdr, 0, sizeof s->hdr);
    if (s->rank == 0) {
        s->hdr.st = *st;
        util_iso_time(s->hdr.created, sizeof s->hdr.created);
        snprintf(s->hdr.producer, sizeof s->hdr.producer, "%s", dpo_producer());
        if (cfg) s->config_text = config_to_string(cfg);
        s->hdr.config_len = s->config_text ? (int64_t)strlen(s->config_text) : -1;
    }
    MPI_Bcast(&s->hdr, (int)sizeof s->hdr, MPI_BYTE, 0, s->comm);
    if (s->rank != 0 && s->hdr.config_len >= 0)
        s->config_text = xmalloc((size_t)s->hdr.config_len + 1, "checkpoint config text");
    if (s->hdr.config_len >= 0)
        MPI_Bcast(s->config_text, (int)s->hdr.config_len + 1, MPI_CHAR, 0, s->comm);
}

// Removes step_*.h5.tmp (and .tmp.headroom) files that a killed save left behind (rank 0, the only
// writer of the folder), so they do not fill the disk; a reader never takes them.
static void remove_stale_tmps(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "step_", 5) != 0 || !strstr(e->d_name, ".h5.tmp")) continue;
        char p[DPO_PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0 && errno != ENOENT)
            log_warn("checkpointing: cannot delete %s: %s", p, strerror(errno));
    }
    closedir(d);
}

// Rank 0 reserves the headroom (see CKPT_HEADROOM_BASE and h5util.h).
static bool reserve_headroom(saver_t *s) {
    long long bytes = CKPT_HEADROOM_BASE + CKPT_HEADROOM_PER_DATASET * s->model->layout.n_tensors * n_groups(s);
    return h5util_headroom_reserve(s->tmp, bytes, s->err, s->err_len) == 0;
}

static void release_headroom(const saver_t *s) {
    if (s->rank == 0) h5util_headroom_release(s->tmp);
}

// Paths, checks, the folder (rank 0 creates it) and the headroom. Not collective.
static bool save_prepare(saver_t *s, const char *dir) {
    bool ok = true;
    if (snprintf(s->path, sizeof s->path, "%s/step_%08lld.h5", dir, (long long)s->hdr.st.step) >=
        (int)sizeof s->path) {
        dpo_errf(s->err, s->err_len, "%s: checkpoint directory path too long", dir);
        ok = false;
    }
    snprintf(s->tmp, sizeof s->tmp, "%s.tmp", s->path);
    if (s->opt && !optim_covers(s->opt, s->model)) {
        dpo_errf(s->err, s->err_len, "%s: optimizer state holds %zu values but the model %zu",
                 s->path, s->opt->n, s->model->layout.n_trainable);
        ok = false;
    }
    if (s->rank == 0 && ok) {
        if (util_mkdir_p(dir, s->err, s->err_len) < 0) {
            ok = false;
        } else {
            remove_stale_tmps(dir);
            ok = reserve_headroom(s);
        }
    }
    return ok;
}

static bool save_create(saver_t *s) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, s->comm, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, true);  // metadata reads: one rank, broadcast
    H5Pset_coll_metadata_write(fapl, true);    // metadata writes: collective, aggregated
    H5Pset_alignment(fapl, CKPT_ALIGN_THRESHOLD, CKPT_ALIGNMENT);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);  // dense attributes
    errno = 0;
    s->f = H5Fcreate(s->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (s->f < 0)
        dpo_errf(s->err, s->err_len, "%s: cannot create: %s", s->tmp, h5util_write_reason(errno, s->tmp));
    return s->f >= 0;
}

// Root attributes and the groups (with /model's architecture and /optimizer's t).
static bool save_header(saver_t *s, const dpo_config_t *cfg) {
    const dpo_train_state_t *st = &s->hdr.st;
    hid_t f = s->f;
    errno = 0;
    int r = 0;
    r |= h5util_attr_write_str(f, "format", CKPT_FORMAT_NAME);
    r |= h5util_attr_write_int(f, "format_version", H5T_STD_I32LE, CKPT_FORMAT_VERSION);
    r |= h5util_attr_write_int(f, "step", H5T_STD_I64LE, st->step);
    r |= h5util_attr_write_int(f, "epoch", H5T_STD_I64LE, st->epoch);
    r |= h5util_attr_write_int(f, "epoch_pos", H5T_STD_I64LE, st->epoch_pos);
    r |= h5util_attr_write(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &st->seed);
    r |= h5util_attr_write_f64(f, "elapsed_sec", st->elapsed_sec);
    r |= h5util_attr_write_f64(f, "metric", st->has_metric ? st->metric : NAN);
    r |= h5util_attr_write_int(f, "has_metric", H5T_STD_I32LE, st->has_metric);
    r |= h5util_attr_write_str(f, "created", s->hdr.created);
    r |= h5util_attr_write_str(f, "producer", s->hdr.producer);
    r |= h5util_attr_write_int(f, "tp_size", H5T_STD_I32LE, s->mesh->tp_size);
    r |= h5util_attr_write_int(f, "dp_size", H5T_STD_I32LE, s->mesh->dp_size);
    if (cfg) r |= h5util_attr_write_str(f, "metric_name", cfg->metric_name);
    if (s->config_text) r |= h5util_attr_write_str(f, "config", s->config_text);
    s->groups[0] = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (s->groups[0] < 0 || write_model_config(s->groups[0], &s->model->layout) < 0) r = -1;
    if (s->opt && r == 0) {
        hid_t go = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (go < 0 || h5util_attr_write_int(go, "t", H5T_STD_I64LE, s->opt->t) < 0) r = -1;
        for (int k = 1; k < 3 && go >= 0; k++)
            if ((s->groups[k] = H5Gcreate2(go, k == 1 ? "exp_avg" : "exp_avg_sq", H5P_DEFAULT,
                                           H5P_DEFAULT, H5P_DEFAULT)) < 0)
                r = -1;
        if (go >= 0) H5Gclose(go);
    }
    if (r)
        dpo_errf(s->err, s->err_len, "%s: cannot write attributes and groups: %s", s->tmp,
                 h5util_write_reason(errno, s->tmp));
    return r == 0;
}

// Collective: creates group k's dataset of tensor t at its full shape, its space
// allocated in the file at once (so the end of allocation knows every byte).
static bool create_tensor(saver_t *s, int k, const dpo_tensor_t *t) {
    hsize_t dims[2];
    tensor_dims(t, dims);
    hid_t fsp = H5Screate_simple(t->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);  // every element is written later
    errno = 0;
    hid_t d = H5Dcreate2(s->groups[k], t->name, H5T_IEEE_F32LE, fsp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(fsp);
    if (d < 0) {
        dpo_errf(s->err, s->err_len, "%s: %s/%s: cannot create dataset: %s", s->tmp,
                 k_group_path[k], t->name, h5util_write_reason(errno, s->tmp));
        return false;
    }
    return H5Dclose(d) >= 0;
}

// Collective: writes this rank's part of tensor t into group k's dataset.
static bool write_tensor(saver_t *s, int k, const dpo_tensor_t *t, float *stage, hid_t dxpl) {
    size_t lo, hi;
    const float *src;
    bool writer;
    tensor_part(s, k, t, &lo, &hi, &src, &writer);
    size_t n = hi > lo ? hi - lo : 0;
    if (writer && n > 0) dpo_to_host(s->model->be, stage, src, n * sizeof(float));
    hid_t d = H5Dopen2(s->groups[k], t->name, H5P_DEFAULT);
    if (d < 0) {
        dpo_errf(s->err, s->err_len, "%s: %s/%s: cannot open dataset (%s)", s->tmp,
                 k_group_path[k], t->name, h5util_reason());
        return false;
    }
    hid_t fsp = H5Dget_space(d);
    hid_t msp = select_part(fsp, t, lo, hi, writer && n > 0);
    errno = 0;
    herr_t rc = H5Dwrite(d, H5T_NATIVE_FLOAT, msp, fsp, dxpl, stage);
    if (rc < 0)
        dpo_errf(s->err, s->err_len, "%s: %s/%s: write failed: %s", s->tmp, k_group_path[k],
                 t->name, h5util_write_reason(errno, s->tmp));
    H5Sclose(msp);
    H5Sclose(fsp);
    if (H5Dclose(d) < 0 && rc >= 0) {
        dpo_errf(s->err, s->err_len, "%s: %s/%s: write failed: %s", s->tmp, k_group_path[k],
                 t->name, h5util_write_reason(errno, s->tmp));
        rc = -1;
    }
    return rc >= 0;
}

// Every dataset of every group (create) or this rank's data in each (write),
// agreeing after each tensor.
static bool save_tensors(saver_t *s, bool create) {
    const dpo_layout_t *lay = &s->model->layout;
    float *stage = NULL;
    hid_t dxpl = H5I_INVALID_HID;
    if (!create) {
        stage = xmalloc(max_local_numel(lay) * sizeof(float), "checkpoint staging buffer");
        dxpl = H5Pcreate(H5P_DATASET_XFER);
        H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    }
    bool ok = true;
    for (int k = 0; k < n_groups(s) && ok; k++) {
        for (int i = 0; i < lay->n_tensors && ok; i++) {
            const dpo_tensor_t *t = &lay->tensors[i];
            size_t lo, hi;
            const float *src;
            bool writer;
            if (!tensor_part(s, k, t, &lo, &hi, &src, &writer)) continue;
            bool r = create ? create_tensor(s, k, t) : write_tensor(s, k, t, stage, dxpl);
            ok = comm_agree_mpi(s->comm, r, s->err, s->err_len);
        }
    }
    if (dxpl >= 0) H5Pclose(dxpl);
    free(stage);
    return ok;
}

// Rank 0 allocates the file's blocks up to HDF5's end of allocation (plus room for
// the close): no later write of this save can find the disk full. A file system
// that cannot reserve (EOPNOTSUPP, EINVAL) is left to report at the write, which
// DPO_CKPT_NO_RESERVE=1 makes the tests exercise on any file system.
static bool save_reserve(saver_t *s) {
    const char *off = getenv("DPO_CKPT_NO_RESERVE");
    if (s->rank != 0 || (off && strcmp(off, "1") == 0)) return true;
    hsize_t size = 0;
    if (H5Fget_filesize(s->f, &size) < 0) return true;  // nothing to size: write unreserved
    int fd = open(s->tmp, O_WRONLY);
    if (fd < 0) {
        dpo_errf(s->err, s->err_len, "%s: cannot open to reserve space: %s", s->tmp, strerror(errno));
        return false;
    }
    int e = posix_fallocate(fd, 0, (off_t)size + CKPT_RESERVE_SLACK);
    close(fd);
    if (e != 0 && e != EOPNOTSUPP && e != EINVAL) {
        dpo_errf(s->err, s->err_len, "%s: cannot reserve %llu bytes: %s", s->tmp,
                 (unsigned long long)size + (unsigned long long)CKPT_RESERVE_SLACK, strerror(e));
        return false;
    }
    return true;
}

static void close_groups(saver_t *s) {
    for (int k = 0; k < 3; k++) {
        if (s->groups[k] >= 0) H5Gclose(s->groups[k]);
        s->groups[k] = H5I_INVALID_HID;
    }
}

// Collective: flush and close of a complete file, then rank 0's sync and rename;
// every rank returns rank 0's verdict.
static bool save_finish(saver_t *s) {
    close_groups(s);
    release_headroom(s);  // the reservation holds the rest
    errno = 0;
    bool r = H5Fflush(s->f, H5F_SCOPE_GLOBAL) >= 0;
    if (!r) dpo_errf(s->err, s->err_len, "%s: flush failed: %s", s->tmp, h5util_write_reason(errno, s->tmp));
    if (!comm_agree_mpi(s->comm, r, s->err, s->err_len)) return false;
    errno = 0;
    r = H5Fclose(s->f) >= 0;
    if (!r) dpo_errf(s->err, s->err_len, "%s: close failed: %s", s->tmp, h5util_write_reason(errno, s->tmp));
    s->f = H5I_INVALID_HID;
    bool ok = comm_agree_mpi(s->comm, r, s->err, s->err_len);
    if (ok && s->rank == 0 && util_commit_tmp(s->tmp, s->path, s->err, s->err_len) != 0) ok = false;
    return comm_agree_mpi(s->comm, ok, s->err, s->err_len);
}

// After an agreed failure: rank 0 frees the headroom and empties the temporary
// file (its data are lost anyway), so the close finds room for the metadata it
// flushes; every rank closes the file, and rank 0 removes it.
static void save_discard(saver_t *s) {
    close_groups(s);
    release_headroom(s);
    if (s->f >= 0) {
        if (s->rank == 0 && truncate(s->tmp, 0) != 0 && errno != ENOENT)
            log_warn("checkpointing: cannot empty %s: %s", s->tmp, strerror(errno));
        MPI_Barrier(s->comm);
        if (H5Fclose(s->f) < 0) log_warn("checkpointing: %s: close after the failure failed", s->tmp);
        s->f = H5I_INVALID_HID;
    }
    MPI_Barrier(s->comm);
    if (s->rank == 0 && unlink(s->tmp) != 0 && errno != ENOENT)
        log_warn("checkpointing: cannot delete %s: %s", s->tmp, strerror(errno));
}

int ckpt_save(const char *dir, const dpo_mesh_t *mesh, const dpo_model_t *model,
              const dpo_optim_t *opt, const dpo_train_state_t *st, const dpo_config_t *cfg,
              char *err, size_t err_len) {
    h5util_quiet();
    saver_t s = {.comm = mesh->world, .rank = mesh->world_rank, .mesh = mesh, .model = model,
                 .opt = opt, .f = H5I_INVALID_HID, .err = err, .err_len = err_len};
    for (int k = 0; k < 3; k++) s.groups[k] = H5I_INVALID_HID;
    share_header(&s, st, cfg);
    bool ok = comm_agree_mpi(s.comm, save_prepare(&s, dir), err, err_len);
    if (ok) ok = comm_agree_mpi(s.comm, save_create(&s), err, err_len);
    if (ok) ok = comm_agree_mpi(s.comm, save_header(&s, cfg), err, err_len);
    if (ok) ok = save_tensors(&s, true);
    if (ok) ok = comm_agree_mpi(s.comm, save_reserve(&s), err, err_len);
    if (ok) ok = save_tensors(&s, false);
    if (ok) ok = save_finish(&s);
    if (!ok) save_discard(&s);
    free(s.config_text);
    return ok ? 0 : -1;
}

// ---- load ----

int ckpt_read_model_config(const char *path, dpo_model_config_t *mc, char *err, size_t err_len) {
    hid_t f = open_ckpt(path, MPI_COMM_NULL, err, err_len);
    if (f < 0) return -1;
    int rc = -1;
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
    if (g < 0)
        dpo_errf(err, err_len, "%s: /model: missing", path);
    else {
        rc = read_model_config(g, path, mc, err, err_len);
        H5Gclose(g);
    }
    H5Fclose(f);
    return rc;
}

int ckpt_load_model(const char *path, dpo_model_t *model, char *err, size_t err_len) {
    hid_t f = open_ckpt(path, model->mesh->world, err, err_len);
    if (f < 0) return -1;
    int rc = load_group(f, "/model", path, model, model->params, 0, model->layout.n_params, false, err,
                        err_len);
    H5Fclose(f);
    return rc;
}

int ckpt_load_optim(const char *path, const dpo_model_t *model, dpo_optim_t *opt, char *err,
                    size_t err_len) {
    if (!optim_covers(opt, model)) {
        dpo_errf(err, err_len, "%s: optimizer state holds %zu values but the model %zu", path, opt->n,
             model->layout.n_trainable);
        return -1;
    }
    hid_t f = open_ckpt(path, model->mesh->world, err, err_len);
    if (f < 0) return -1;
    int rc = -1;
    hid_t g = H5I_INVALID_HID;
    int64_t t = 0;
    if (H5Lexists(f, "optimizer", H5P_DEFAULT) <= 0) {
        dpo_errf(err, err_len, "%s: /optimizer: missing (a weights-only checkpoint cannot resume training)",
             path);
    } else if ((g = H5Gopen2(f, "optimizer", H5P_DEFAULT)) < 0 || h5util_attr_read_int(g, "t", &t) != 0) {
        dpo_errf(err, err_len, "%s: /optimizer: attribute t (optimizer steps) missing", path);
    } else if (load_group(f, "/optimizer/exp_avg", path, model, opt->m, opt->off, opt->n, true, err,
                          err_len) == 0 &&
               load_group(f, "/optimizer/exp_avg_sq", path, model, opt->v, opt->off, opt->n, true, err,
                          err_len) == 0) {
        opt->t = t;
        rc = 0;
    }
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return rc;
}

int ckpt_load_state(const char *path, dpo_train_state_t *st, char *err, size_t err_len) {
    hid_t f = open_ckpt(path, MPI_COMM_NULL, err, err_len);
    if (f < 0) return -1;
    memset(st, 0, sizeof *st);
    int64_t has_metric = 0;
    int rc = 0;
    const char *bad = NULL;
    if (h5util_attr_read_int(f, "step", &st->step) != 0) bad = "step";
    else if (h5util_attr_read_int(f, "epoch", &st->epoch) != 0) bad = "epoch";
    else if (h5util_attr_read_int(f, "epoch_pos", &st->epoch_pos) != 0) bad = "epoch_pos";
    else if (h5util_attr_read_u64(f, "seed", &st->seed) != 0) bad = "seed";
    else if (h5util_attr_read_f64(f, "elapsed_sec", &st->elapsed_sec) != 0) bad = "elapsed_sec";
    else if (h5util_attr_read_int(f, "has_metric", &has_metric) != 0) bad = "has_metric";
    else if (h5util_attr_read_f64(f, "metric", &st->metric) != 0) bad = "metric";
    if (bad) {
        dpo_errf(err, err_len, "%s: /: attribute %s missing or of the wrong type", path, bad);
        rc = -1;
    }
    st->has_metric = has_metric != 0;
    if (!st->has_metric) st->metric = 0.0;
    H5Fclose(f);
    return rc;
}

// ---- directory management ----

// step number of "step_<digits>.h5", or -1
static long long parse_step_name(const char *name) {
    if (strncmp(name, "step_", 5) != 0) return -1;
    const char *p = name + 5;
    if (*p < '0' || *p > '9') return -1;
    long long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (LLONG_MAX - 9) / 10) return -1;
        v = v * 10 + (*p - '0');
    }
    return strcmp(p, ".h5") == 0 ? v : -1;
}

typedef struct {
    char *path;
    long long step;
    bool has_metric;
    double metric;
} ckpt_entry_t;

static int list_ckpts(const char *dir, ckpt_entry_t **out) {
    *out = NULL;
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0, cap = 0;
    ckpt_entry_t *v = NULL;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long long step = parse_step_name(e->d_name);
        if (step < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            v = realloc(v, (size_t)cap * sizeof *v);
            if (!v) dpo_fatal("out of memory listing checkpoints in %s", dir);
        }
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        v[n].path = xmalloc(len, "checkpoint path");
        snprintf(v[n].path, len, "%s/%s", dir, e->d_name);
        v[n].step = step;
        v[n].has_metric = false;
        v[n].metric = 0;
        n++;
    }
    closedir(d);
    *out = v;
    return n;
}

static void free_entries(ckpt_entry_t *v, int n) {
    for (int i = 0; i < n; i++) free(v[i].path);
    free(v);
}

char *ckpt_find_latest(const char *dir) {
    ckpt_entry_t *v;
    int n = list_ckpts(dir, &v);
    int best = -1;
    for (int i = 0; i < n; i++)
        if (best < 0 || v[i].step > v[best].step) best = i;
    char *path = NULL;
    if (best >= 0) {
        path = v[best].path;
        v[best].path = NULL;
    }
    free_entries(v, n);
    return path;
}

static bool g_higher_is_better;

// best first: with a metric before without; better metric; then newer step
static int cmp_quality(const void *pa, const void *pb) {
    const ckpt_entry_t *a = pa, *b = pb;
    if (a->has_metric != b->has_metric) return a->has_metric ? -1 : 1;
    if (a->has_metric && a->metric != b->metric) {
        bool a_better = g_higher_is_better ? a->metric > b->metric : a->metric < b->metric;
        return a_better ? -1 : 1;
    }
    return a->step > b->step ? -1 : (a->step < b->step ? 1 : 0);
}

void ckpt_prune(const char *dir, int keep_top_k, bool higher_is_better) {
    if (keep_top_k <= 0) return;  // 0 = keep all
    h5util_quiet();
    ckpt_entry_t *v;
    int n = list_ckpts(dir, &v);
    long long latest = -1;
    for (int i = 0; i < n; i++) {
        if (v[i].step > latest) latest = v[i].step;
        hid_t f = H5Fopen(v[i].path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f < 0) continue;  // unreadable: counts as without a metric
        int64_t hm = 0;
        double m = 0;
        if (h5util_attr_read_int(f, "has_metric", &hm) == 0 && hm && h5util_attr_read_f64(f, "metric", &m) == 0 &&
            !isnan(m)) {
            v[i].has_metric = true;
            v[i].metric = m;
        }
        H5Fclose(f);
    }
    g_higher_is_better = higher_is_better;
    if (n > 1) qsort(v, (size_t)n, sizeof *v, cmp_quality);
    for (int i = keep_top_k; i < n; i++) {
        if (v[i].step == latest) continue;
        if (unlink(v[i].path) != 0 && errno != ENOENT)
            log_warn("checkpointing: cannot delete %s: %s", v[i].path, strerror(errno));
    }
    free_entries(v, n);
}
