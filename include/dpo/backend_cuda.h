// backend_cuda.h — the CUDA backend's C entry points: device enumeration and
// description, opening an instance on a device, its stream.
//
// Declared in every build. In a build with CUDA they load the backend's shared
// library (libdpo_backend_cuda.so, cuda/) on first use, so a process that never
// asks for CUDA never loads cudart / cuBLAS / cuBLASLt; in a build without CUDA,
// and when the library cannot be loaded, they report that (device count 0, open
// fails with the reason). src/backend/backend_cuda_loader.c implements them.
#ifndef DPO_BACKEND_CUDA_H
#define DPO_BACKEND_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "dpo/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Precision of the CUDA backend's matmuls. Storage stays fp32 in every case; the
// tensor cores read the operands rounded to bf16 (or tf32) and accumulate in fp32.
typedef enum {
    DPO_MATMUL_FP32 = 0,   // exact fp32 (CUDA cores), for checks
    DPO_MATMUL_TF32 = 1,   // tf32 tensor cores (10-bit mantissa)
    DPO_MATMUL_BF16 = 2    // bf16 tensor cores (7-bit mantissa), the default
} dpo_matmul_precision_t;

// What a device is, for binding checks and reports.
typedef struct {
    char name[256];         // e.g. "NVIDIA H100 80GB HBM3"
    unsigned char uuid[16]; // unique per physical GPU (same under any CUDA_VISIBLE_DEVICES)
    int pci_domain, pci_bus, pci_device;
    size_t total_mem;       // bytes
} dpo_cuda_device_info_t;

// Number of CUDA devices visible to this process; 0 on any CUDA error (no driver,
// no device, CUDA_VISIBLE_DEVICES empty, ...), in builds without CUDA, and when
// the backend library cannot be loaded (backend_cuda_available says why).
int backend_cuda_device_count(void);

// Whether this build has the CUDA backend and its library loads; false with the
// reason in err ("this build has no CUDA backend ...", or the library path and
// dlerror()).
bool backend_cuda_available(char *err, size_t err_len);

// Describes visible device `ordinal` (does not bind it). 0 on success, -1 with the
// reason in err.
int backend_cuda_device_info(int ordinal, dpo_cuda_device_info_t *out, char *err,
                             size_t err_len);

// Opens a NEW CUDA backend instance on device `ordinal`: makes the device current
// for the calling thread and creates the instance's compute stream, cuBLASLt
// handle, workspace and plan cache. Returns the instance (validated with
// backend_check), or NULL with the reason in err. Instances are independent: a
// second one on the same device has its own stream, one on another device its own
// everything. An instance's ops make its device current before they queue work.
dpo_backend_t *backend_cuda_open(int ordinal, dpo_matmul_precision_t precision, char *err,
                                 size_t err_len);
// Waits for the instance's work and frees it (NULL: no-op).
void backend_cuda_close(dpo_backend_t *be);

// The instance's compute stream as a cudaStream_t cast to void *, for C code that
// queues work on it (NCCL collectives). be must come from backend_cuda_open.
void *backend_cuda_stream(const dpo_backend_t *be);
// The instance's device ordinal.
int backend_cuda_device(const dpo_backend_t *be);

struct dpo_dcomm;
// The NCCL device collectives on instance be's buffers (dcomm.h), over the MPI
// communicators mpi_comms points at: MPI_Comm[DPO_N_GROUPS] (world, TP, DP), kept
// as void * so that this header needs no mpi.h. Collective over the world. Use
// dcomm_nccl_open (mesh.h), which passes a mesh's communicators.
struct dpo_dcomm *backend_cuda_dcomm_open(const dpo_backend_t *be, const void *mpi_comms,
                                          char *err, size_t err_len);

// ---- the library's side (cuda/backend_cuda.cu; not for callers) ----
// The shared library exports one symbol, DPO_CUDA_BACKEND_ENTRY, a function that
// returns its entry points; the loader checks the version before any use.
#define DPO_CUDA_BACKEND_ABI 2
#define DPO_CUDA_BACKEND_ENTRY "dpo_cuda_backend_entry"
typedef struct {
    int abi;   // DPO_CUDA_BACKEND_ABI
    int (*device_count)(void);
    int (*device_info)(int ordinal, dpo_cuda_device_info_t *out, char *err, size_t err_len);
    dpo_backend_t *(*open)(int ordinal, int precision, char *err, size_t err_len);
    void (*close)(dpo_backend_t *be);
    void *(*stream)(const dpo_backend_t *be);
    int (*device)(const dpo_backend_t *be);
    struct dpo_dcomm *(*dcomm_open)(const dpo_backend_t *be, const void *mpi_comms, char *err,
                                    size_t err_len);
} dpo_cuda_backend_api_t;
const dpo_cuda_backend_api_t *dpo_cuda_backend_entry(void);
struct dpo_dcomm *dpo_cuda_dcomm_open(const dpo_backend_t *be, const void *mpi_comms, char *err,
                                      size_t err_len);   // cuda/dcomm_nccl.cu

#ifdef __cplusplus
}
#endif

#endif
