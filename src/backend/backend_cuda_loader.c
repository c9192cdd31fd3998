// backend_cuda_loader.c — the CUDA backend's C entry points (backend_cuda.h). In a
// build with CUDA they dlopen libdpo_backend_cuda.so on first use and forward to
// its entry points; so cudart, cuBLAS and cuBLASLt are loaded only by a process
// that asks for the CUDA backend. Without CUDA they report that it is not built.
//
// The library is looked for, in order:
//   1. $DPO_CUDA_BACKEND_LIB, when set (only there: an override is never ignored);
//   2. <directory of the executable>/../lib/libdpo_backend_cuda.so (installed
//      layout <prefix>/bin + <prefix>/lib, and the build tree's bin/ + lib/);
//   3. the path it was built at (DPO_CUDA_BACKEND_BUILD_PATH).
// The load happens once per process; the first call should come from one thread
// (the programs call it from main before any threads start).
#include "dpo/backend_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dpo/error.h"

#define NO_CUDA_BUILD "this build has no CUDA backend (configure with nvcc present, -DDPO_CUDA=ON)"

#ifdef DPO_HAVE_CUDA
#include <dlfcn.h>
#include <unistd.h>

#define LIB_NAME "libdpo_backend_cuda.so"

static const dpo_cuda_backend_api_t *g_api;   // the loaded library's entry points
static bool g_tried;
static char g_load_err[2048];

// Tries one path; on failure appends "PATH: reason" to g_load_err.
static const dpo_cuda_backend_api_t *try_load(const char *path) {
    size_t used = strlen(g_load_err);
    char *e = g_load_err + used;
    size_t left = sizeof g_load_err - used;
    const char *sep = used ? "; " : "";
    if (access(path, F_OK) != 0) {
        snprintf(e, left, "%s%s: no such file", sep, path);
        return NULL;
    }
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        snprintf(e, left, "%s%s: %s", sep, path, why ? why : "dlopen failed");
        return NULL;
    }
    const dpo_cuda_backend_api_t *(*entry)(void);
    void *sym = dlsym(h, DPO_CUDA_BACKEND_ENTRY);
    // POSIX: a function pointer converts through void * (dlsym's contract).
    memcpy(&entry, &sym, sizeof entry);
    const dpo_cuda_backend_api_t *api = sym ? entry() : NULL;
    if (!api || api->abi != DPO_CUDA_BACKEND_ABI) {
        snprintf(e, left, "%s%s: %s", sep, path,
                 !sym ? "no " DPO_CUDA_BACKEND_ENTRY " symbol (not a dpo_hpc CUDA backend)"
                      : "built for another version of dpo_hpc (ABI mismatch)");
        dlclose(h);
        return NULL;
    }
    return api;   // stays loaded until the process ends
}

static const dpo_cuda_backend_api_t *load(void) {
    if (g_tried) return g_api;
    g_tried = true;
    g_load_err[0] = '\0';
    const char *env = getenv("DPO_CUDA_BACKEND_LIB");
    if (env && env[0]) {
        g_api = try_load(env);
    } else {
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
            exe[n] = '\0';
            char *slash = strrchr(exe, '/');
            if (slash) {
                *slash = '\0';
                char path[4096 + 64];
                snprintf(path, sizeof path, "%s/../lib/%s", exe, LIB_NAME);
                g_api = try_load(path);
            }
        }
#ifdef DPO_CUDA_BACKEND_BUILD_PATH
        if (!g_api) g_api = try_load(DPO_CUDA_BACKEND_BUILD_PATH);
#endif
    }
    return g_api;
}

static const dpo_cuda_backend_api_t *api_or_err(char *err, size_t err_len) {
    const dpo_cuda_backend_api_t *api = load();
    if (!api)
        dpo_errf(err, err_len, "cannot load the CUDA backend library (%s%s)", g_load_err,
                 getenv("DPO_CUDA_BACKEND_LIB") ? "" : "; set DPO_CUDA_BACKEND_LIB to its path");
    return api;
}

// An instance's entry points: a backend not opened here (another table) is a
// programmer error.
static const dpo_cuda_backend_api_t *api_of(const dpo_backend_t *be, const char *what) {
    if (!be || !g_api || !be->ops || !be->ops->name || strcmp(be->ops->name, "cuda") != 0)
        dpo_fatal("%s: not a CUDA backend instance", what);
    return g_api;
}

bool backend_cuda_available(char *err, size_t err_len) { return api_or_err(err, err_len) != NULL; }

int backend_cuda_device_count(void) {
    const dpo_cuda_backend_api_t *api = load();
    return api ? api->device_count() : 0;
}

int backend_cuda_device_info(int ordinal, dpo_cuda_device_info_t *out, char *err,
                             size_t err_len) {
    const dpo_cuda_backend_api_t *api = api_or_err(err, err_len);
    if (!api) return -1;
    return api->device_info(ordinal, out, err, err_len);
}

dpo_backend_t *backend_cuda_open(int ordinal, dpo_matmul_precision_t precision, char *err,
                                 size_t err_len) {
    const dpo_cuda_backend_api_t *api = api_or_err(err, err_len);
    return api ? api->open(ordinal, (int)precision, err, err_len) : NULL;
}

void backend_cuda_close(dpo_backend_t *be) {
    if (be) api_of(be, "backend_cuda_close")->close(be);
}

struct dpo_dcomm *backend_cuda_dcomm_open(const dpo_backend_t *be, const void *mpi_comms,
                                          char *err, size_t err_len) {
    return api_of(be, "backend_cuda_dcomm_open")->dcomm_open(be, mpi_comms, err, err_len);
}

void *backend_cuda_stream(const dpo_backend_t *be) {
    return api_of(be, "backend_cuda_stream")->stream(be);
}

int backend_cuda_device(const dpo_backend_t *be) {
    return api_of(be, "backend_cuda_device")->device(be);
}

#else  // no CUDA in this build

bool backend_cuda_available(char *err, size_t err_len) {
    dpo_errf(err, err_len, NO_CUDA_BUILD);
    return false;
}

int backend_cuda_device_count(void) { return 0; }

int backend_cuda_device_info(int ordinal, dpo_cuda_device_info_t *out, char *err,
                             size_t err_len) {
    (void)ordinal;
    memset(out, 0, sizeof *out);
    dpo_errf(err, err_len, NO_CUDA_BUILD);
    return -1;
}

dpo_backend_t *backend_cuda_open(int ordinal, dpo_matmul_precision_t precision, char *err,
                                 size_t err_len) {
    (void)ordinal;
    (void)precision;
    dpo_errf(err, err_len, NO_CUDA_BUILD);
    return NULL;
}

void backend_cuda_close(dpo_backend_t *be) {
    if (be) dpo_fatal("backend_cuda_close: this build has no CUDA backend");
}

void *backend_cuda_stream(const dpo_backend_t *be) {
    (void)be;
    dpo_fatal("backend_cuda_stream: this build has no CUDA backend");
}

int backend_cuda_device(const dpo_backend_t *be) {
    (void)be;
    dpo_fatal("backend_cuda_device: this build has no CUDA backend");
}

struct dpo_dcomm *backend_cuda_dcomm_open(const dpo_backend_t *be, const void *mpi_comms,
                                          char *err, size_t err_len) {
    (void)be;
    (void)mpi_comms;
    dpo_errf(err, err_len, NO_CUDA_BUILD);
    return NULL;
}

#endif
