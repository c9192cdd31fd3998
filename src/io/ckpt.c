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
#define MSG_LEN 1024

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

// Collective over every rank of the file: creates /<group>/<name> at full shape
// and writes the elements [lo, hi) of this rank's slab, found at src on the device,
// when `writer`, nothing otherwise.
static int write_tensor(hid_t g, const char *gpath, const char *file, const dpo_model_t *m,
                        const dpo_tensor_t *t, const float *src, size_t lo, size_t hi,
                        bool writer, float *stage, hid_t dxpl, char *err, size_t err_len) {
    hsize_t dims[2];
    tensor_dims(t, dims);
    hid_t fsp = H5Screate_simple(t->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);  // every element is written below
    hid_t d = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, fsp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    if (d < 0) {
        dpo_errf(err, err_len, "%s: %s/%s: cannot create dataset (%s)", file, gpath, t->name,
             h5util_reason());
        H5Sclose(fsp);
        return -1;
    }
    size_t n = hi > lo ? hi - lo : 0;
    if (writer && n > 0) dpo_to_host(m->be, stage, src, n * sizeof(float));
    hid_t msp = select_part(fsp, t, lo, hi, writer && n > 0);
    herr_t rc = H5Dwrite(d, H5T_NATIVE_FLOAT, msp, fsp, dxpl, stage);
    if (rc < 0)
        dpo_errf(err, err_len, "%s: %s/%s: write failed (%s)", file, gpath, t->name, h5util_reason());
    H5Sclose(msp);
    H5Sclose(fsp);
    if (H5Dclose(d) < 0 && rc >= 0) {
        dpo_errf(err, err_len, "%s: %s/%s: close failed (%s)", file, gpath, t->name, h5util_reason());
        rc = -1;
    }
    return rc < 0 ? -1 : 0;
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

typedef struct {
    dpo_train_state_t st;
    char created[32];
    char producer[128];   // the writing program and version (dpo/program.h)
    int64_t config_len;
} save_hdr_t;

int ckpt_save(const char *dir, const dpo_mesh_t *mesh, const dpo_model_t *model,
              const dpo_optim_t *opt, const dpo_train_state_t *st, const dpo_config_t *cfg,
              char *err, size_t err_len) {
    h5util_quiet();
    MPI_Comm comm = mesh->world;
    int rank = mesh->world_rank;
    const dpo_layout_t *lay = &model->layout;
    // Attributes are written collectively and must be identical on every rank: take
    // rank 0's state, time and configuration text.
    save_hdr_t hdr;
    memset(&hdr, 0, sizeof hdr);
    char *config_text = NULL;
    if (rank == 0) {
        hdr.st = *st;
        util_iso_time(hdr.created, sizeof hdr.created);
        snprintf(hdr.producer, sizeof hdr.producer, "%s", dpo_producer());
        if (cfg) config_text = config_to_string(cfg);
        hdr.config_len = config_text ? (int64_t)strlen(config_text) : -1;
    }
    MPI_Bcast(&hdr, (int)sizeof hdr, MPI_BYTE, 0, comm);
    if (rank != 0 && hdr.config_len >= 0)
        config_text = xmalloc((size_t)hdr.config_len + 1, "checkpoint config text");
    if (hdr.config_len >= 0) {
        MPI_Bcast(config_text, (int)hdr.config_len + 1, MPI_CHAR, 0, comm);
    }

    char path[DPO_PATH_MAX + 64], tmp[DPO_PATH_MAX + 80];
    int ok = 1;
    if (snprintf(path, sizeof path, "%s/step_%08lld.h5", dir, (long long)hdr.st.step) >=
        (int)sizeof path) {
        dpo_errf(err, err_len, "%s: checkpoint directory path too long", dir);
        ok = 0;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (opt && !optim_covers(opt, model)) {
        dpo_errf(err, err_len, "%s: optimizer state holds %zu values but the model %zu", path, opt->n,
             lay->n_trainable);
        ok = 0;
    }
    if (rank == 0 && ok && util_mkdir_p(dir, err, err_len) < 0) ok = 0;
    if (!comm_agree_mpi(comm, ok, err, err_len)) {
        free(config_text);
        return -1;
    }

    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL);
    H5Pset_all_coll_metadata_ops(fapl, true);  // metadata reads: one rank, broadcast
    H5Pset_coll_metadata_write(fapl, true);    // metadata writes: collective, aggregated
    H5Pset_alignment(fapl, CKPT_ALIGN_THRESHOLD, CKPT_ALIGNMENT);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);  // dense attributes
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) dpo_errf(err, err_len, "%s: cannot create (%s)", tmp, h5util_reason());
    if (!comm_agree_mpi(comm, f >= 0, err, err_len)) {
        if (f >= 0) H5Fclose(f);
        free(config_text);
        return -1;
    }

    const dpo_train_state_t *s = &hdr.st;
    int r = 0;
    r |= h5util_attr_write_str(f, "format", CKPT_FORMAT_NAME);
    r |= h5util_attr_write_int(f, "format_version", H5T_STD_I32LE, CKPT_FORMAT_VERSION);
    r |= h5util_attr_write_int(f, "step", H5T_STD_I64LE, s->step);
    r |= h5util_attr_write_int(f, "epoch", H5T_STD_I64LE, s->epoch);
    r |= h5util_attr_write_int(f, "epoch_pos", H5T_STD_I64LE, s->epoch_pos);
    r |= h5util_attr_write(f, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &s->seed);
    r |= h5util_attr_write_f64(f, "elapsed_sec", s->elapsed_sec);
    r |= h5util_attr_write_f64(f, "metric", s->has_metric ? s->metric : NAN);
    r |= h5util_attr_write_int(f, "has_metric", H5T_STD_I32LE, s->has_metric);
    r |= h5util_attr_write_str(f, "created", hdr.created);
    r |= h5util_attr_write_str(f, "producer", hdr.producer);
    r |= h5util_attr_write_int(f, "tp_size", H5T_STD_I32LE, mesh->tp_size);
    r |= h5util_attr_write_int(f, "dp_size", H5T_STD_I32LE, mesh->dp_size);
    if (cfg) r |= h5util_attr_write_str(f, "metric_name", cfg->metric_name);
    if (config_text) r |= h5util_attr_write_str(f, "config", config_text);
    free(config_text);
    hid_t gm = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gm < 0 || write_model_config(gm, lay) < 0) r = -1;
    if (r)
        dpo_errf(err, err_len, "%s: cannot write attributes (%s)", tmp, h5util_reason());
    ok = comm_agree_mpi(comm, r == 0, err, err_len);

    float *stage = xmalloc(max_local_numel(lay) * sizeof(float), "checkpoint staging buffer");
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    // One DP replica writes; among TP ranks, a replicated slab (norm weights from
    // tp_rank 0, a replicated KV head from the first rank holding it) is written once.
    for (int i = 0; i < lay->n_tensors && ok; i++) {
        const dpo_tensor_t *t = &lay->tensors[i];
        bool writer = mesh->dp_rank == 0 && t->tp_writer;
        int w = write_tensor(gm, "/model", tmp, model, t, model->params + t->offset, 0,
                             slab_file_numel(t), writer, stage, dxpl, err, err_len);
        ok = comm_agree_mpi(comm, w == 0, err, err_len);
    }
    if (gm >= 0) H5Gclose(gm);
    if (ok && opt) {
        hid_t go = H5Gcreate2(f, "optimizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        int rr = go >= 0 ? h5util_attr_write_int(go, "t", H5T_STD_I64LE, opt->t) : -1;
        const char *names[2] = {"exp_avg", "exp_avg_sq"};
        const float *bufs[2] = {opt->m, opt->v};
        for (int k = 0; k < 2 && ok; k++) {
            char gpath[64];
            snprintf(gpath, sizeof gpath, "/optimizer/%s", names[k]);
            hid_t gk = go >= 0 ? H5Gcreate2(go, names[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                               : H5I_INVALID_HID;
            if (gk < 0 || rr < 0)
                dpo_errf(err, err_len, "%s: %s: cannot create (%s)", tmp, gpath, h5util_reason());
            ok = comm_agree_mpi(comm, gk >= 0 && rr == 0, err, err_len);
            for (int i = 0; i < lay->n_tensors && ok; i++) {
                const dpo_tensor_t *t = &lay->tensors[i];
                if (t->frozen) continue;  // no optimizer state
                // Full moments: one DP replica writes. ZeRO-1: every DP rank writes
                // the pieces of the tensor that lie in its shard (disjoint, covering).
                size_t lo, hi, at;
                range_part(t, opt->off, opt->n, &lo, &hi, &at);
                bool writer = (opt->sharded || mesh->dp_rank == 0) && t->tp_writer;
                int w = write_tensor(gk, gpath, tmp, model, t, bufs[k] + at, lo, hi, writer,
                                     stage, dxpl, err, err_len);
                ok = comm_agree_mpi(comm, w == 0, err, err_len);
            }
            if (gk >= 0) H5Gclose(gk);
        }
        if (go >= 0) H5Gclose(go);
    }
    H5Pclose(dxpl);
    free(stage);

    herr_t cr = H5Fclose(f);
    if (ok && cr < 0) dpo_errf(err, err_len, "%s: closing failed (%s)", tmp, h5util_reason());
    ok = comm_agree_mpi(comm, ok && cr >= 0, err, err_len);
    MPI_Barrier(comm);
    if (rank == 0) {
        if (ok) {
            int fd = open(tmp, O_RDONLY);
            if (fd >= 0) {
                fsync(fd);
                close(fd);
            }
            if (rename(tmp, path) != 0) {
                dpo_errf(err, err_len, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
                ok = 0;
            }
        }
        if (!ok) unlink(tmp);
    }
    // rank 0's verdict (and message) for everyone
    int verdict = ok;
    MPI_Bcast(&verdict, 1, MPI_INT, 0, comm);
    if (!verdict) {
        char msg[MSG_LEN];
        if (rank == 0) snprintf(msg, sizeof msg, "%s", err);
        MPI_Bcast(msg, MSG_LEN, MPI_CHAR, 0, comm);
        dpo_errf(err, err_len, "%s", msg);
        return -1;
    }
    return 0;
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
