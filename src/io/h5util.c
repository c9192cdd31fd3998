// h5util.c — quiet HDF5 errors and scalar attributes.
#include "dpo/h5util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/statvfs.h>

void h5util_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc && e->desc[0]) snprintf((char *)data, 256, "%s", e->desc);
    return 0;
}

const char *h5util_reason(void) {
    static char buf[256];
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    if (!buf[0]) snprintf(buf, sizeof buf, "HDF5 error");
    return buf;
}

// The folder that holds path ("." for a bare name) has no free block.
static bool disk_full_at(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    struct statvfs vfs;
    return statvfs(dir, &vfs) == 0 && vfs.f_bavail == 0;
}

const char *h5util_write_reason(int saved_errno, const char *path) {
    if (saved_errno != 0) return strerror(saved_errno);
    if (path && disk_full_at(path)) return strerror(ENOSPC);
    return h5util_reason();
}

static void headroom_name(const char *tmp, char *out, size_t n) { snprintf(out, n, "%s.headroom", tmp); }

int h5util_headroom_reserve(const char *tmp, long long bytes, char *err, size_t err_len) {
    char p[4200];
    headroom_name(tmp, p, sizeof p);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = fd < 0 ? errno : posix_fallocate(fd, 0, (off_t)bytes);
    if (fd >= 0) close(fd);
    if (e == 0 || e == EOPNOTSUPP || e == EINVAL) return 0;  // reserved, or cannot be
    if (err && err_len)
        snprintf(err, err_len, "%s: cannot reserve %lld bytes of headroom in %s: %s", tmp, bytes, p,
                 strerror(e));
    unlink(p);
    return -1;
}

void h5util_headroom_release(const char *tmp) {
    char p[4200];
    headroom_name(tmp, p, sizeof p);
    unlink(p);
}

void h5util_discard_file(hid_t *f, const char *tmp) {
    h5util_headroom_release(tmp);
    if (*f >= 0) {
        if (truncate(tmp, 0) != 0) {
            // nothing to free (already gone): the close goes on regardless
        }
        H5Fclose(*f);
    }
    *f = H5I_INVALID_HID;
    unlink(tmp);
}

int h5util_finish_file(hid_t *f, const char *tmp, char *err, size_t err_len) {
    h5util_headroom_release(tmp);
    errno = 0;
    if (H5Fflush(*f, H5F_SCOPE_GLOBAL) < 0) {
        if (err && err_len) snprintf(err, err_len, "%s: flush failed: %s", tmp, h5util_write_reason(errno, tmp));
        h5util_discard_file(f, tmp);
        return -1;
    }
    herr_t rc = H5Fclose(*f);
    *f = H5I_INVALID_HID;  // even after a failure: a second close would crash
    if (rc >= 0) return 0;
    if (err && err_len) snprintf(err, err_len, "%s: close failed: %s", tmp, h5util_write_reason(errno, tmp));
    unlink(tmp);
    return -1;
}

int h5util_attr_write(hid_t obj, const char *name, hid_t file_type, hid_t mem_type, const void *v) {
    if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0) return -1;
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a >= 0 && H5Awrite(a, mem_type, v) >= 0) ? 0 : -1;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

int h5util_attr_write_int(hid_t obj, const char *name, hid_t file_type, int64_t v) {
    return h5util_attr_write(obj, name, file_type, H5T_NATIVE_INT64, &v);
}

int h5util_attr_write_f64(hid_t obj, const char *name, double v) {
    return h5util_attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

int h5util_attr_write_f32(hid_t obj, const char *name, float v) {
    return h5util_attr_write(obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &v);
}

int h5util_attr_write_str(hid_t obj, const char *name, const char *val) {
    if (!val) val = "";
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(val) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = h5util_attr_write(obj, name, t, t, val);
    H5Tclose(t);
    return rc;
}

// A scalar attribute of class cls (floats also accept integers) read as mem_type.
static int attr_read(hid_t obj, const char *name, H5T_class_t cls, hid_t mem_type, void *v) {
    if (H5Aexists(obj, name) <= 0) return 1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t c = ft >= 0 ? H5Tget_class(ft) : H5T_NO_CLASS;
    bool class_ok = c == cls || (cls == H5T_FLOAT && c == H5T_INTEGER);
    int rc = (class_ok && sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 &&
              H5Aread(a, mem_type, v) >= 0)
                 ? 0
                 : -1;
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

int h5util_attr_read_int(hid_t obj, const char *name, int64_t *v) {
    return attr_read(obj, name, H5T_INTEGER, H5T_NATIVE_INT64, v);
}

int h5util_attr_read_u64(hid_t obj, const char *name, uint64_t *v) {
    return attr_read(obj, name, H5T_INTEGER, H5T_NATIVE_UINT64, v);
}

int h5util_attr_read_f64(hid_t obj, const char *name, double *v) {
    return attr_read(obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE, v);
}

int h5util_attr_read_str(hid_t obj, const char *name, char *out, size_t out_len) {
    out[0] = 0;
    if (H5Aexists(obj, name) <= 0) return 1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    int rc = -1;
    hid_t ft = H5Aget_type(a);
    hid_t sp = H5Aget_space(a);
    if (ft >= 0 && sp >= 0 && H5Tget_class(ft) == H5T_STRING && H5Sget_simple_extent_npoints(sp) == 1) {
        if (H5Tis_variable_str(ft) > 0) {
            hid_t mt = H5Tcopy(H5T_C_S1);
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ft));
            char *p = NULL;
            if (H5Aread(a, mt, &p) >= 0) {
                if (p && strlen(p) < out_len) {
                    strcpy(out, p);
                    rc = 0;
                }
                if (p) H5free_memory(p);
            }
            H5Tclose(mt);
        } else {
            size_t size = H5Tget_size(ft);
            char *buf = calloc(size + 1, 1);
            hid_t mt = H5Tcopy(ft);
            if (buf && H5Aread(a, mt, buf) >= 0 && strlen(buf) < out_len) {
                strcpy(out, buf);
                rc = 0;
            }
            H5Tclose(mt);
            free(buf);
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    H5Aclose(a);
    return rc;
}
