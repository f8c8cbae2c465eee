// A backend context: one device's state behind the op table (kernels/ops.h). Everything a backend
// keeps between ops lives here, not in globals: the device, the stream, library handles (cuBLASLt),
// the GEMM plan cache, the scratch and staging buffers, the allocator's pools and its byte counts.
// So two contexts can live in one process, even on one device (inference beside training, tests),
// and a context can be closed and everything it held is gone.
//
//   llava_backend *be = llava_backend_open("cuda", NULL);      // or "cpu"
//   if (!be) fprintf(stderr, "%s\n", llava_errmsg());           // names why (no device, no build)
//   be->ops->linear_forward(be, out, x, W, b, N, I, O);          // every op takes its context first
//   llava_backend_close(be);
//
// Every op checks its preconditions on every build (LLAVA_REQUIRE, common/util.h; the checks both
// backends share are kernels/op_require.c's): a wrong shape, a negative size or a missing buffer stops
// the program with the op's name, the backend and the condition, never reads out of bounds.
#ifndef LLAVA_KERNELS_BACKEND_H
#define LLAVA_KERNELS_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    int device;  // CUDA: the device ordinal; -1 takes the current device, which a NCCL rank has already
                 // chosen from its local rank (what NULL options mean). Ignored by the CPU backend.
} llava_backend_options;

// What a backend is and what its device can do.
typedef struct {
    char name[16];              // "cpu" or "cuda"
    char device[160];           // "NVIDIA H100 80GB HBM3, sm_90, 132 SMs" / "x86-64 CPU, OpenBLAS, 2 threads"
    int ordinal;                // CUDA device ordinal (-1 on the CPU)
    uint64_t memory_total;      // bytes of device memory (CPU: MemTotal of /proc/meminfo)
    uint64_t memory_free;       // bytes free now (CPU: MemAvailable)
    double peak_bf16_tflops;    // nominal dense bf16 peak (H100/H200 989.4, A100 312), 0 when unknown
    double peak_bandwidth_gbs;  // nominal memory bandwidth, 0 when unknown
} llava_backend_info;

// Functions of the context itself (not ops). A backend fills what it has; NULL entries mean the
// capability does not exist there (a CPU has no stream).
typedef struct llava_backend_iface {
    void (*close)(llava_backend *be);
    void (*describe)(const llava_backend *be, llava_backend_info *info);
    // 1 when the op runs on this backend with these sizes, else 0 with why (see llava_op_shape).
    int (*supports)(const llava_backend *be, const llava_op_shape *s, char *why, size_t cap);
    void *(*stream)(llava_backend *be);              // the stream every op is enqueued on
    void (*record)(llava_backend *be, void *event);  // the event completes once the ops enqueued so far have
    void (*wait)(llava_backend *be, void *event);    // the ops enqueued after this wait for the event
} llava_backend_iface;

struct llava_backend {
    const llava_ops *ops;              // the op table: be->ops->NAME(be, ...)
    const llava_backend_iface *iface;  // the context's own functions (backend.h, device.h)
    void *impl;                        // the backend's state (kernels/cpu/, kernels/cuda/)
    // Memory handed out by ops->alloc and not yet freed, and the most there ever was at once (bytes,
    // as allocated: the CUDA allocator's rounding included). Library workspaces and staging buffers
    // the backend keeps for itself are not counted (llava_backend_info has the device's totals).
    uint64_t bytes_in_use, bytes_peak;
    // Batch-invariant arithmetic (llava_backend_set_batch_invariant): 0 by default.
    int batch_invariant;
};

// Opens a backend by name ("cpu", "cuda"). NULL with llava_errmsg() when this build or machine has
// none; `o` may be NULL for the defaults.
llava_backend *llava_backend_open(const char *name, const llava_backend_options *o);
void llava_backend_close(llava_backend *be);
void llava_backend_describe(const llava_backend *be, llava_backend_info *info);
// 1 when `name` can be opened here; else 0 with the reason in why (cap bytes), without opening it.
int llava_backend_available(const char *name, char *why, size_t cap);
// 1 when op `s->op` with the sizes in s runs on this backend; 0 with the reason otherwise.
int llava_backend_supports(const llava_backend *be, const llava_op_shape *s, char *why, size_t cap);
// Threads the CPU backend's GEMMs use. OpenBLAS has one setting for the whole process, so this is
// not per context. Results are deterministic for a given count; different counts sum in different
// orders. Small models run fastest on one.
void llava_cpu_set_threads(int n);
// Batch-invariant arithmetic: with `on`, every row of an op's result is computed the same way
// whatever other rows the call holds, so a sequence's logits do not depend on what it is batched
// with (generation: greedy answers independent of the batch). The CPU backend then runs each
// linear layer in fixed chunks of LLAVA_INVARIANT_ROWS rows (OpenBLAS picks its kernels by the
// matrix sizes, so a row's dot products would otherwise be summed differently in a GEMM of another
// height); every other CPU op already works row by row. The CUDA backend does not honour it yet
// (cuBLAS chooses algorithms by size): on CUDA, a batch may change a near-tied greedy choice.
#define LLAVA_INVARIANT_ROWS 8
void llava_backend_set_batch_invariant(llava_backend *be, int on);
// Starts the peak count again from the bytes in use now (a measurement of one phase).
void llava_backend_reset_peak(llava_backend *be);

#ifdef __cplusplus
}
#endif

#endif
