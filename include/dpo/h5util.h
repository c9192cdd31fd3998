// h5util.h — HDF5 helpers shared by the dataset and checkpoint modules: quiet
// error handling with our own messages, and scalar attributes.
#ifndef DPO_H5UTIL_H
#define DPO_H5UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <hdf5.h>

// HDF5 prints its own error stack by default; we write our own messages.
void h5util_quiet(void);
// The most specific entry of HDF5's current error stack (the "why" of a message).
const char *h5util_reason(void);
// Why a write, flush or close of file `path` failed: the errno text when the call
// set errno (saved_errno, taken right after it), "No space left on device" when
// the file system of path has no block left (the MPI-IO driver does not pass
// errno through HDF5), HDF5's reason otherwise.
const char *h5util_write_reason(int saved_errno, const char *path);

// A file being written under a temporary name tmp, on a disk that may fill up.
// A close that fails leaves HDF5's file object half destroyed (closing it again,
// or HDF5's exit handler, crashes), so a close must find room: the writer holds
// headroom in "<tmp>.headroom" (posix_fallocate; none on a file system without it)
// from before it writes until just before the close, and a failed write frees the
// file's own space (truncating tmp) before closing it.
#define H5UTIL_HEADROOM_DEFAULT ((long long)1 << 16)
int h5util_headroom_reserve(const char *tmp, long long bytes, char *err, size_t err_len);
void h5util_headroom_release(const char *tmp);
// One process (the default driver): releases the headroom, flushes and closes,
// each checked; on failure err names tmp and the reason (the errno text) and the
// file is discarded. Leaves *f invalid.
int h5util_finish_file(hid_t *f, const char *tmp, char *err, size_t err_len);
// Releases the headroom, empties tmp, closes the id (once) and removes tmp.
void h5util_discard_file(hid_t *f, const char *tmp);

// Scalar attributes, replacing any attribute of the same name. 0 or -1.
int h5util_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *v);
int h5util_attr_write_int(hid_t obj, const char *name, hid_t file_type, int64_t v);
int h5util_attr_write_f64(hid_t obj, const char *name, double v);
int h5util_attr_write_f32(hid_t obj, const char *name, float v);
int h5util_attr_write_str(hid_t obj, const char *name, const char *val);  // UTF-8, fixed length

// Reads return 0 = read, 1 = absent, -1 = present but not a scalar of that kind
// (or, for strings, longer than out_len - 1).
int h5util_attr_read_int(hid_t obj, const char *name, int64_t *v);
int h5util_attr_read_u64(hid_t obj, const char *name, uint64_t *v);
int h5util_attr_read_f64(hid_t obj, const char *name, double *v);  // integers accepted
int h5util_attr_read_str(hid_t obj, const char *name, char *out, size_t out_len);

#endif
