// safetensors.h — the Hugging Face safetensors format: an 8-byte little-endian
// header length N, N bytes of JSON ({"name": {"dtype", "shape", "data_offsets"}, ...,
// optional "__metadata__": {string: string}}), then the data section, which the
// tensors' [begin, end) byte ranges cover exactly, without overlaps or holes.
//
// Reading validates the whole header on open and then reads only the bytes of the
// requested slab (pread), converting F32 / BF16 / F16 to fp32. Writing produces F32
// or BF16 (round to nearest even), through a temporary file renamed into place.
#ifndef DPO_SAFETENSORS_H
#define DPO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 0, ST_BF16, ST_F16 } st_dtype_t;

typedef struct {
    char *name;
    st_dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end;  // byte range within the data section
} st_tensor_t;

typedef struct {
    char *path;
    int fd;
    uint64_t data_start;  // file offset of the data section (8 + N)
    uint64_t data_size;
    int n_tensors;
    st_tensor_t *tensors;
    int n_meta;
    char **meta_keys, **meta_values;  // "__metadata__" (string values only)
} st_file_t;

// Opens and validates path. Returns 0, or -1 with a message naming the file (and
// the tensor) in err.
int st_open(st_file_t *f, const char *path, char *err, size_t err_len);
void st_close(st_file_t *f);
int st_find(const st_file_t *f, const char *name);  // index, or -1
const char *st_meta(const st_file_t *f, const char *key);  // NULL when absent
const char *st_dtype_name(st_dtype_t d);
size_t st_dtype_size(st_dtype_t d);

// Reads rows [r0, r0 + nr) and columns [c0, c0 + nc) of tensor idx as fp32 into dst
// (nr * nc values, row-major). A 1-D tensor is one column: rows are its elements and
// c0 = 0, nc = 1. Returns 0, or -1 with a message.
int st_read_slab(const st_file_t *f, int idx, int64_t r0, int64_t nr, int64_t c0, int64_t nc,
                 float *dst, char *err, size_t err_len);

// One tensor to write: fp32 values, row-major, at its full shape.
typedef struct {
    const char *name;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const float *data;
} st_out_tensor_t;

// Writes the tensors (in the given order) in dtype (ST_F32 or ST_BF16) to path via
// path.tmp + rename; meta_keys/meta_values (n_meta pairs) become "__metadata__".
int st_write(const char *path, const st_out_tensor_t *t, int n, st_dtype_t dtype,
             const char *const *meta_keys, const char *const *meta_values, int n_meta,
             char *err, size_t err_len);

uint16_t st_f32_to_bf16(float x);  // round to nearest even; NaN stays NaN
float st_bf16_to_f32(uint16_t h);
float st_f16_to_f32(uint16_t h);

#endif
