// safetensors.c — reading and writing the safetensors format (include/dpo/safetensors.h).
//
// The header is validated completely on open, so a later slab read can trust the
// offsets: every tensor's byte range lies in the data section, matches its dtype and
// shape, and the ranges tile the data section without overlaps or holes (as the
// reference implementation requires). Slab reads use pread of just the rows needed.
#include "dpo/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "dpo/error.h"
#include "dpo/util.h"

// Headers beyond this size are refused as corrupt (the reference reader's limit).
#define ST_HEADER_MAX ((uint64_t)100 << 20)
// Bytes read per pread when a slab spans whole rows.
#define ST_CHUNK_BYTES ((size_t)8 << 20)

const char *st_dtype_name(st_dtype_t d) {
    switch (d) {
    case ST_F32: return "F32";
    case ST_BF16: return "BF16";
    case ST_F16: return "F16";
    }
    return "?";
}

size_t st_dtype_size(st_dtype_t d) { return d == ST_F32 ? 4 : 2; }

// ---- number conversions ----

static uint32_t f32_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_f32(uint32_t u) {
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t st_f32_to_bf16(float x) {
    uint32_t u = f32_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u)  // NaN: keep it quiet and a NaN
        return (uint16_t)((u >> 16) | 0x0040u);
    // Round to nearest, ties to even: add 0x7fff plus the lowest kept bit.
    uint32_t lsb = (u >> 16) & 1u;
    u += 0x7fffu + lsb;
    return (uint16_t)(u >> 16);
}

float st_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    uint32_t u;
    if (exp == 0x1f) {
        u = sign | 0x7f800000u | (man << 13);  // inf / NaN
    } else if (exp != 0) {
        u = sign | ((exp + 112u) << 23) | (man << 13);  // normal: rebias 15 -> 127
    } else if (man == 0) {
        u = sign;  // signed zero
    } else {       // subnormal: man * 2^-24, exact in fp32
        int e = -1;
        do {
            man <<= 1;
            e++;
        } while (!(man & 0x400u));
        man &= 0x3ffu;
        u = sign | ((uint32_t)(112 - e) << 23) | (man << 13);
    }
    return bits_f32(u);
}

static uint64_t le64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | b[i];
    return v;
}

static void put_le64(unsigned char *b, uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

// ---- reading ----

static int parse_dtype(const char *s, st_dtype_t *d) {
    if (strcmp(s, "F32") == 0) *d = ST_F32;
    else if (strcmp(s, "BF16") == 0) *d = ST_BF16;
    else if (strcmp(s, "F16") == 0) *d = ST_F16;
    else return -1;
    return 0;
}

static int cmp_begin(const void *a, const void *b) {
    const st_tensor_t *x = *(const st_tensor_t *const *)a, *y = *(const st_tensor_t *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : (x->end > y->end ? 1 : 0);
}

// Fills t from one header entry; -1 with a message naming the tensor.
static int parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size,
                       st_tensor_t *t, char *err, size_t err_len) {
    if (!json_is_object(v)) {
        dpo_errf(err, err_len, "%s: tensor \"%s\": header entry is not an object", path, name);
        return -1;
    }
    json_t *dt = json_object_get(v, "dtype"), *sh = json_object_get(v, "shape"),
           *off = json_object_get(v, "data_offsets");
    if (!json_is_string(dt) || !json_is_array(sh) || !json_is_array(off)) {
        dpo_errf(err, err_len, "%s: tensor \"%s\": needs string dtype, array shape and array data_offsets",
                 path, name);
        return -1;
    }
    if (parse_dtype(json_string_value(dt), &t->dtype) < 0) {
        dpo_errf(err, err_len, "%s: tensor \"%s\": dtype %s is not supported (F32, BF16, F16 are)", path,
                 name, json_string_value(dt));
        return -1;
    }
    size_t nd = json_array_size(sh);
    if (nd > ST_MAX_DIMS) {
        dpo_errf(err, err_len, "%s: tensor \"%s\": %zu dimensions (at most %d)", path, name, nd,
                 ST_MAX_DIMS);
        return -1;
    }
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *e = json_array_get(sh, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0) {
            dpo_errf(err, err_len, "%s: tensor \"%s\": shape[%zu] is not a non-negative integer", path,
                     name, i);
            return -1;
        }
        t->shape[i] = (int64_t)json_integer_value(e);
        if (t->shape[i] > 0 && numel > (UINT64_MAX / 8) / (uint64_t)t->shape[i]) {
            dpo_errf(err, err_len, "%s: tensor \"%s\": shape too large", path, name);
            return -1;
        }
        numel *= (uint64_t)t->shape[i];
    }
    if (json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
        !json_is_integer(json_array_get(off, 1)) || json_integer_value(json_array_get(off, 0)) < 0 ||
        json_integer_value(json_array_get(off, 1)) < 0) {
        dpo_errf(err, err_len, "%s: tensor \"%s\": data_offsets must be [begin, end] (non-negative)",
                 path, name);
        return -1;
    }
    t->begin = (uint64_t)json_integer_value(json_array_get(off, 0));
    t->end = (uint64_t)json_integer_value(json_array_get(off, 1));
    if (t->end < t->begin || t->end > data_size) {
        dpo_errf(err, err_len,
                 "%s: tensor \"%s\": data_offsets [%llu, %llu] out of range (data section holds %llu "
                 "bytes)",
                 path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                 (unsigned long long)data_size);
        return -1;
    }
    uint64_t want = numel * st_dtype_size(t->dtype);
    if (t->end - t->begin != want) {
        dpo_errf(err, err_len,
                 "%s: tensor \"%s\": data_offsets span %llu bytes but dtype %s and its shape need %llu",
                 path, name, (unsigned long long)(t->end - t->begin), st_dtype_name(t->dtype),
                 (unsigned long long)want);
        return -1;
    }
    t->name = strdup(name);
    if (!t->name) dpo_fatal("out of memory reading %s", path);
    return 0;
}

static int parse_metadata(st_file_t *f, json_t *meta, char *err, size_t err_len) {
    if (!json_is_object(meta)) {
        dpo_errf(err, err_len, "%s: __metadata__ is not an object", f->path);
        return -1;
    }
    size_t n = json_object_size(meta);
    f->meta_keys = xcalloc(n ? n : 1, sizeof(char *), "safetensors metadata");
    f->meta_values = xcalloc(n ? n : 1, sizeof(char *), "safetensors metadata");
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v)) {
            dpo_errf(err, err_len, "%s: __metadata__ \"%s\" is not a string", f->path, k);
            return -1;
        }
        f->meta_keys[f->n_meta] = strdup(k);
        f->meta_values[f->n_meta] = strdup(json_string_value(v));
        if (!f->meta_keys[f->n_meta] || !f->meta_values[f->n_meta])
            dpo_fatal("out of memory reading %s", f->path);
        f->n_meta++;
    }
    return 0;
}

static int parse_header(st_file_t *f, const char *text, size_t len, char *err, size_t err_len) {
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        dpo_errf(err, err_len, "%s: header is not valid JSON (line %d column %d: %s)", f->path,
                 je.line, je.column, je.text);
        return -1;
    }
    int rc = 0;
    if (!json_is_object(root)) {
        dpo_errf(err, err_len, "%s: header is not a JSON object", f->path);
        rc = -1;
    }
    size_t n = rc == 0 ? json_object_size(root) : 0;
    f->tensors = xcalloc(n ? n : 1, sizeof(st_tensor_t), "safetensors header");
    const char *k;
    json_t *v;
    if (rc == 0) {
        json_object_foreach(root, k, v) {
            if (strcmp(k, "__metadata__") == 0) {
                if (parse_metadata(f, v, err, err_len) < 0) {
                    rc = -1;
                    break;
                }
                continue;
            }
            if (parse_entry(f->path, k, v, f->data_size, &f->tensors[f->n_tensors], err,
                            err_len) < 0) {
                rc = -1;
                break;
            }
            f->n_tensors++;
        }
    }
    json_decref(root);
    if (rc < 0) return -1;
    // The byte ranges must tile the data section: sorted by begin, each starts where
    // the previous ended, and the last ends at the end of the file.
    st_tensor_t **order = xmalloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *order,
                                  "safetensors header");
    for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_begin);
    uint64_t at = 0;
    for (int i = 0; i < f->n_tensors && rc == 0; i++) {
        const st_tensor_t *t = order[i];
        if (t->begin < at) {
            dpo_errf(err, err_len, "%s: tensor \"%s\": data_offsets [%llu, %llu] overlap tensor \"%s\"",
                     f->path, t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                     order[i - 1]->name);
            rc = -1;
        } else if (t->begin > at) {
            dpo_errf(err, err_len,
                     "%s: tensor \"%s\": data_offsets begin at %llu, leaving a hole after byte %llu",
                     f->path, t->name, (unsigned long long)t->begin, (unsigned long long)at);
            rc = -1;
        }
        at = t->end;
    }
    if (rc == 0 && at != f->data_size) {
        dpo_errf(err, err_len,
                 "%s: the tensors cover %llu bytes of a %llu-byte data section (trailing bytes)",
                 f->path, (unsigned long long)at, (unsigned long long)f->data_size);
        rc = -1;
    }
    free(order);
    return rc;
}

int st_open(st_file_t *f, const char *path, char *err, size_t err_len) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
    f->path = strdup(path);
    if (!f->path) dpo_fatal("out of memory");
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) {
        dpo_errf(err, err_len, "%s: cannot open: %s", path, strerror(errno));
        st_close(f);
        return -1;
    }
    struct stat sb;
    unsigned char lenb[8];
    if (fstat(f->fd, &sb) != 0 || sb.st_size < 8 || pread(f->fd, lenb, 8, 0) != 8) {
        dpo_errf(err, err_len, "%s: truncated: no 8-byte header length", path);
        st_close(f);
        return -1;
    }
    uint64_t hlen = le64(lenb), fsize = (uint64_t)sb.st_size;
    if (hlen < 2 || hlen > ST_HEADER_MAX || hlen > fsize - 8) {
        dpo_errf(err, err_len, "%s: header length %llu does not fit the file (%llu bytes)%s", path,
                 (unsigned long long)hlen, (unsigned long long)fsize,
                 hlen > ST_HEADER_MAX ? " or exceeds 100 MiB" : "");
        st_close(f);
        return -1;
    }
    char *text = xmalloc((size_t)hlen + 1, "safetensors header");
    ssize_t got = pread(f->fd, text, (size_t)hlen, 8);
    if (got != (ssize_t)hlen) {
        dpo_errf(err, err_len, "%s: cannot read the %llu-byte header", path, (unsigned long long)hlen);
        free(text);
        st_close(f);
        return -1;
    }
    text[hlen] = '\0';
    f->data_start = 8 + hlen;
    f->data_size = fsize - f->data_start;
    int rc = 0;
    if (text[0] != '{') {
        dpo_errf(err, err_len, "%s: header does not start with '{' (not a safetensors file?)", path);
        rc = -1;
    } else {
        rc = parse_header(f, text, (size_t)hlen, err, err_len);
    }
    free(text);
    if (rc < 0) st_close(f);
    return rc;
}

void st_close(st_file_t *f) {
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    free(f->path);
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

int st_find(const st_file_t *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return i;
    return -1;
}

const char *st_meta(const st_file_t *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

static void convert(st_dtype_t d, const unsigned char *src, size_t n, float *dst) {
    if (d == ST_F32) {
        for (size_t i = 0; i < n; i++) {
            const unsigned char *b = src + 4 * i;
            dst[i] = bits_f32((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                              (uint32_t)b[3] << 24);
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            dst[i] = d == ST_BF16 ? st_bf16_to_f32(h) : st_f16_to_f32(h);
        }
    }
}

// pread of exactly n bytes at off; -1 on error or a short file.
static int read_full(int fd, void *buf, size_t n, uint64_t off) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

int st_read_slab(const st_file_t *f, int idx, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                 float *dst, char *err, size_t err_len) {
    const st_tensor_t *t = &f->tensors[idx];
    // View as (rows, cols): a 1-D tensor is one column; more dims fold into cols.
    int64_t rows = t->ndim >= 1 ? t->shape[0] : 1, cols = 1;
    for (int i = 1; i < t->ndim; i++) cols *= t->shape[i];
    if (r0 < 0 || nr < 0 || c0 < 0 || nc < 0 || r0 + nr > rows || c0 + nc > cols) {
        dpo_errf(err, err_len, "%s: tensor \"%s\": slab rows [%lld, %lld) cols [%lld, %lld) outside its shape",
                 f->path, t->name, (long long)r0, (long long)(r0 + nr), (long long)c0,
                 (long long)(c0 + nc));
        return -1;
    }
    size_t es = st_dtype_size(t->dtype);
    uint64_t base = f->data_start + t->begin;
    if (nc == cols) {  // whole rows: one contiguous range, read in chunks
        size_t total = (size_t)(nr * cols), per = ST_CHUNK_BYTES / es;
        unsigned char *buf = xmalloc((total < per ? total : per) * es + 1, "safetensors read buffer");
        for (size_t done = 0; done < total;) {
            size_t k = total - done < per ? total - done : per;
            if (read_full(f->fd, buf, k * es, base + ((uint64_t)r0 * (uint64_t)cols + done) * es) < 0) {
                dpo_errf(err, err_len, "%s: tensor \"%s\": read failed (file truncated?)", f->path,
                         t->name);
                free(buf);
                return -1;
            }
            convert(t->dtype, buf, k, dst + done);
            done += k;
        }
        free(buf);
        return 0;
    }
    unsigned char *buf = xmalloc((size_t)nc * es + 1, "safetensors read buffer");
    for (int64_t r = 0; r < nr; r++) {
        uint64_t off = base + ((uint64_t)(r0 + r) * (uint64_t)cols + (uint64_t)c0) * es;
        if (read_full(f->fd, buf, (size_t)nc * es, off) < 0) {
            dpo_errf(err, err_len, "%s: tensor \"%s\": read failed (file truncated?)", f->path, t->name);
            free(buf);
            return -1;
        }
        convert(t->dtype, buf, (size_t)nc, dst + r * nc);
    }
    free(buf);
    return 0;
}

// ---- writing ----

int st_write(const char *path, const st_out_tensor_t *t, int n, st_dtype_t dtype,
             const char *const *meta_keys, const char *const *meta_values, int n_meta,
             char *err, size_t err_len) {
    if (dtype != ST_F32 && dtype != ST_BF16) {
        dpo_errf(err, err_len, "%s: writing dtype %s is not supported (F32, BF16)", path,
                 st_dtype_name(dtype));
        return -1;
    }
    size_t es = st_dtype_size(dtype);
    json_t *root = json_object();
    if (n_meta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < n_meta; i++) json_object_set_new(m, meta_keys[i], json_string(meta_values[i]));
        json_object_set_new(root, "__metadata__", m);
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        json_t *e = json_object(), *sh = json_array(), *off = json_array();
        uint64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            json_array_append_new(sh, json_integer(t[i].shape[d]));
            numel *= (uint64_t)t[i].shape[d];
        }
        json_array_append_new(off, json_integer((json_int_t)at));
        json_array_append_new(off, json_integer((json_int_t)(at + numel * es)));
        at += numel * es;
        json_object_set_new(e, "dtype", json_string(st_dtype_name(dtype)));
        json_object_set_new(e, "shape", sh);
        json_object_set_new(e, "data_offsets", off);
        if (json_object_get(root, t[i].name)) {
            dpo_errf(err, err_len, "%s: tensor \"%s\" given twice", path, t[i].name);
            json_decref(e);
            json_decref(root);
            return -1;
        }
        json_object_set_new(root, t[i].name, e);
    }
    char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!text) dpo_fatal("out of memory writing %s", path);
    size_t hlen = strlen(text), padded = (hlen + 7) / 8 * 8;  // data section 8-byte aligned

    // <path>.tmp, renamed over path once complete (util.h): no partial file, ever
    util_afile_t out;
    if (util_afile_open(&out, path, err, err_len) != 0) {
        free(text);
        return -1;
    }
    unsigned char lenb[8];
    put_le64(lenb, (uint64_t)padded);
    bool ok = util_afile_write(&out, lenb, 8) && util_afile_write(&out, text, hlen) &&
              util_afile_write(&out, "       ", padded - hlen);  // < 8 spaces of padding
    free(text);
    enum { BLOCK = 1 << 16 };
    unsigned char *buf = xmalloc((size_t)BLOCK * 4, "safetensors write buffer");
    for (int i = 0; i < n && ok; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        for (size_t s = 0; s < numel && ok; s += BLOCK) {
            size_t k = numel - s < BLOCK ? numel - s : BLOCK;
            for (size_t j = 0; j < k; j++) {
                float x = t[i].data[s + j];
                if (dtype == ST_F32) {
                    uint32_t u = f32_bits(x);
                    for (int b = 0; b < 4; b++) buf[4 * j + (size_t)b] = (unsigned char)(u >> (8 * b));
                } else {
                    uint16_t h = st_f32_to_bf16(x);
                    buf[2 * j] = (unsigned char)h;
                    buf[2 * j + 1] = (unsigned char)(h >> 8);
                }
            }
            ok = util_afile_write(&out, buf, k * es);
        }
    }
    free(buf);
    return util_afile_commit(&out, err, err_len);  // reports a failed write too
}
