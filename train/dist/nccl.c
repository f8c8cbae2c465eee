// The NCCL backend: GPU tensors (device memory) over NCCL on a communications stream of its own.
//
// Every collective waits for the device to finish what came before (cudaDeviceSynchronize), is
// enqueued on the communicator (non-blocking: ncclCommInitRankConfig with blocking = 0), and is then
// polled (ncclCommGetAsyncError and an event on the stream) against the collective deadline. Past
// the deadline, or on an asynchronous NCCL error, the rank names the collective, aborts the
// communicator (ncclCommAbort, which unblocks the kernels stuck waiting for a dead peer) and exits
// non-zero: each rank runs this watchdog itself, so a dead or hung rank stops every other one.
//
// The gradient reductions also come in an asynchronous form (dist_*_async): an event recorded on
// the compute stream (the stream of the backend bound with dist_bind_backend) orders the collective after the layer's weight-gradient kernels, the
// collective runs on this backend's stream while the compute stream goes on with the next layer's
// backward, and nothing waits on the host until dist_wait_async (or the next blocking collective),
// which polls them all against the deadline like any other.
#ifdef LLAVA_HAVE_NCCL

#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "dist_impl.h"
#include "kernels/device.h"

#define STAGE_BYTES ((size_t)64 << 20)  // device staging for host-memory collectives

typedef struct {
    ncclComm_t comm;
    cudaStream_t stream;
    cudaEvent_t done;
    cudaEvent_t ready;  // recorded on the compute stream before an asynchronous collective
    int pending;        // asynchronous collectives issued and not yet waited for
    // Marks (dist_async_mark): event k % N_MARKS recorded on this stream after the collectives
    // issued before mark k. A mark older than N_MARKS has had its event recorded again later: waiting
    // for the later point is still correct, only later than needed.
#define N_MARKS 64
    cudaEvent_t marks[N_MARKS];
    uint64_t n_marks;
    void *scratch;  // (STAGE_BYTES) device
    dist *boot;     // the MPI group that carried the unique id (NULL: TCP): finalised and aborted with this one
} nccl_state;

static void nccl_fatal(dist *d, const char *what, const char *why) __attribute__((noreturn));
static void nccl_fatal(dist *d, const char *what, const char *why) {
    fprintf(stderr, "\nllava: rank %d of %d: collective #%llu (%s, nccl) failed: %s. Stopping.\n", d->rank, d->world,
            (unsigned long long)d->seq, what ? what : "?", why);
    fflush(stderr);
    d->impl->abort(d, 1);
    _exit(1);
}

static void ck_cuda(dist *d, cudaError_t e, const char *what) {
    if (e != cudaSuccess) nccl_fatal(d, what, cudaGetErrorString(e));
}

static void ck_nccl(dist *d, ncclResult_t r, const char *what) {
    if (r != ncclSuccess && r != ncclInProgress) nccl_fatal(d, what, ncclGetErrorString(r));
}

static int nccl_wait_done(dist *d, const char *what, double deadline);

// Before a blocking collective: the outstanding asynchronous ones are complete (under their
// deadline), then everything the compute stream wrote.
static void nccl_begin(dist *d, const char *what) {
    nccl_state *s = d->state;
    if (s->pending) nccl_wait_done(d, what, dist_now() + d->timeout_s);
    ck_cuda(d, cudaDeviceSynchronize(), what);
}

// After enqueueing on the non-blocking communicator: polls until NCCL has issued the work.
static void nccl_issued(dist *d, const char *what, double deadline) {
    nccl_state *s = d->state;
    d->seq++;
    ncclResult_t ae = ncclInProgress;
    for (int it = 0;; it++) {
        ck_nccl(d, ncclCommGetAsyncError(s->comm, &ae), what);
        if (ae == ncclSuccess) return;
        if (ae != ncclInProgress) nccl_fatal(d, what, ncclGetErrorString(ae));
        if (dist_now() > deadline) dist_timeout_fail(d, what);
        dist_poll_pause(it);
    }
}

// Waits until the communicator has issued the work and the stream has run it.
static int nccl_wait(dist *d, const char *what) {
    double deadline = dist_now() + d->timeout_s;
    nccl_issued(d, what, deadline);
    return nccl_wait_done(d, what, deadline);
}

// Until everything queued on this backend's stream so far has run.
static int nccl_wait_done(dist *d, const char *what, double deadline) {
    nccl_state *s = d->state;
    ncclResult_t ae;
    s->pending = 0;
    ck_cuda(d, cudaEventRecord(s->done, s->stream), what);
    for (int it = 0;; it++) {
        cudaError_t e = cudaEventQuery(s->done);
        if (e == cudaSuccess) return 0;
        if (e != cudaErrorNotReady) nccl_fatal(d, what, cudaGetErrorString(e));
        ck_nccl(d, ncclCommGetAsyncError(s->comm, &ae), what);
        if (ae != ncclSuccess && ae != ncclInProgress) nccl_fatal(d, what, ncclGetErrorString(ae));
        if (dist_now() > deadline) dist_timeout_fail(d, what);
        dist_poll_pause(it);
    }
}

static int nccl_allreduce_f32(dist *d, float *buf, size_t n, const char *what) {
    nccl_state *s = d->state;
    nccl_begin(d, what);
    ck_nccl(d, ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, s->comm, s->stream), what);
    return nccl_wait(d, what);
}

// Enqueues the reduce-scatter of dist.h's layout on this backend's stream.
static void enqueue_reduce_scatter(dist *d, const float *buf, size_t n, float *out, const char *what) {
    nccl_state *s = d->state;
    size_t per = n / (size_t)d->world, tail = n - per * (size_t)d->world;
    ck_nccl(d, ncclGroupStart(), what);
    if (per) ck_nccl(d, ncclReduceScatter(buf, out, per, ncclFloat, ncclSum, s->comm, s->stream), what);
    // The n % world left over belong to the last rank.
    if (tail)
        ck_nccl(d,
                ncclReduce(buf + per * (size_t)d->world, out + per, tail, ncclFloat, ncclSum, d->world - 1, s->comm,
                           s->stream),
                what);
    ck_nccl(d, ncclGroupEnd(), what);
}

static int nccl_reduce_scatter_f32(dist *d, const float *buf, size_t n, float *out, const char *what) {
    nccl_begin(d, what);
    enqueue_reduce_scatter(d, buf, n, out, what);
    return nccl_wait(d, what);
}

// The asynchronous reductions: after what the compute stream has queued, without waiting.
static void nccl_async_begin(dist *d, const char *what) {
    nccl_state *s = d->state;
    if (d->be) llava_device_record(d->be, s->ready);
    else ck_cuda(d, cudaEventRecord(s->ready, 0), what);  // the legacy stream: after every blocking stream
    ck_cuda(d, cudaStreamWaitEvent(s->stream, s->ready, 0), what);
}

// After enqueueing an asynchronous collective: issued by NCCL (under the deadline), and counted
// as outstanding until dist_wait_async.
static int nccl_async_end(dist *d, const char *what) {
    nccl_state *s = d->state;
    nccl_issued(d, what, dist_now() + d->timeout_s);
    s->pending++;
    return 0;
}

static int nccl_allreduce_f32_async(dist *d, float *buf, size_t n, const char *what) {
    nccl_state *s = d->state;
    nccl_async_begin(d, what);
    ck_nccl(d, ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, s->comm, s->stream), what);
    return nccl_async_end(d, what);
}

static int nccl_reduce_scatter_f32_async(dist *d, const float *buf, size_t n, float *out, const char *what) {
    nccl_async_begin(d, what);
    enqueue_reduce_scatter(d, buf, n, out, what);
    return nccl_async_end(d, what);
}

static uint64_t nccl_async_mark(dist *d) {
    nccl_state *s = d->state;
    uint64_t k = ++s->n_marks;
    ck_cuda(d, cudaEventRecord(s->marks[k % N_MARKS], s->stream), "mark");
    return k;
}

static void nccl_compute_after(dist *d, uint64_t mark, const char *what) {
    nccl_state *s = d->state;
    if (mark == 0 || mark > s->n_marks) return;
    if (d->be) llava_device_wait(d->be, s->marks[mark % N_MARKS]);
    else ck_cuda(d, cudaStreamWaitEvent(0, s->marks[mark % N_MARKS], 0), what);
}

static int nccl_wait_async(dist *d, const char *what) {
    nccl_state *s = d->state;
    return s->pending ? nccl_wait_done(d, what, dist_now() + d->timeout_s) : 0;
}

// Enqueues the all-gather of dist.h's layout, in place, on this backend's stream.
static void enqueue_allgather(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what) {
    nccl_state *s = d->state;
    size_t per = n / (size_t)d->world, tail = n - per * (size_t)d->world;
    char *b = buf;
    ck_nccl(d, ncclGroupStart(), what);
    if (per)  // in place: this rank's slice sits at its offset in the output
        ck_nccl(
            d,
            ncclAllGather(b + (size_t)d->rank * per * elem_bytes, b, per * elem_bytes, ncclUint8, s->comm, s->stream),
            what);
    if (tail) {
        char *t = b + per * (size_t)d->world * elem_bytes;
        ck_nccl(d, ncclBroadcast(t, t, tail * elem_bytes, ncclUint8, d->world - 1, s->comm, s->stream), what);
    }
    ck_nccl(d, ncclGroupEnd(), what);
}

static int nccl_allgather(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what) {
    nccl_begin(d, what);
    enqueue_allgather(d, buf, n, elem_bytes, what);
    return nccl_wait(d, what);
}

// ZeRO-3's prefetch: after what the compute stream has queued (a layer still reading the buffer it
// overwrites), on the communication stream, without waiting.
static int nccl_allgather_async(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what) {
    nccl_async_begin(d, what);
    enqueue_allgather(d, buf, n, elem_bytes, what);
    return nccl_async_end(d, what);
}

static int nccl_broadcast(dist *d, void *buf, size_t bytes, int root, const char *what) {
    nccl_state *s = d->state;
    nccl_begin(d, what);
    ck_nccl(d, ncclBroadcast(buf, buf, bytes, ncclUint8, root, s->comm, s->stream), what);
    return nccl_wait(d, what);
}

static int nccl_allreduce_host_f64(dist *d, double *x, int n, const char *what) {
    nccl_state *s = d->state;
    size_t bytes = sizeof(double) * (size_t)n;
    if (bytes > STAGE_BYTES) nccl_fatal(d, what, "too many host values for the staging buffer");
    nccl_begin(d, what);
    ck_cuda(d, cudaMemcpy(s->scratch, x, bytes, cudaMemcpyHostToDevice), what);
    ck_nccl(d, ncclAllReduce(s->scratch, s->scratch, (size_t)n, ncclDouble, ncclSum, s->comm, s->stream), what);
    nccl_wait(d, what);
    ck_cuda(d, cudaMemcpy(x, s->scratch, bytes, cudaMemcpyDeviceToHost), what);
    return 0;
}

static int nccl_broadcast_host(dist *d, void *buf, size_t bytes, int root, const char *what) {
    nccl_state *s = d->state;
    nccl_begin(d, what);
    for (size_t off = 0; off < bytes; off += STAGE_BYTES) {
        size_t k = bytes - off < STAGE_BYTES ? bytes - off : STAGE_BYTES;
        if (d->rank == root) ck_cuda(d, cudaMemcpy(s->scratch, (char *)buf + off, k, cudaMemcpyHostToDevice), what);
        ck_nccl(d, ncclBroadcast(s->scratch, s->scratch, k, ncclUint8, root, s->comm, s->stream), what);
        nccl_wait(d, what);
        if (d->rank != root) ck_cuda(d, cudaMemcpy((char *)buf + off, s->scratch, k, cudaMemcpyDeviceToHost), what);
    }
    return 0;
}

// Rank by rank, in staging-sized pieces, point to point: the root never holds more than one piece
// on the device (a 7B model's Adam moments would not fit there whole).
static int nccl_gather_host_f32(dist *d, const float *slice, size_t n, float *full, int root, const char *what) {
    nccl_state *s = d->state;
    const size_t chunk = STAGE_BYTES / sizeof(float);
    nccl_begin(d, what);
    for (int r = 0; r < d->world; r++) {
        size_t cnt = dist_shard_count(n, d->world, r), beg = dist_shard_begin(n, d->world, r);
        if (r == root) {
            if (d->rank == root) memmove(full + beg, slice, sizeof(float) * cnt);
            continue;
        }
        if (d->rank != r && d->rank != root) continue;
        for (size_t off = 0; off < cnt; off += chunk) {
            size_t k = cnt - off < chunk ? cnt - off : chunk;
            if (d->rank == r) {
                ck_cuda(d, cudaMemcpy(s->scratch, slice + off, sizeof(float) * k, cudaMemcpyHostToDevice), what);
                ck_nccl(d, ncclSend(s->scratch, k, ncclFloat, root, s->comm, s->stream), what);
                nccl_wait(d, what);
            } else {
                ck_nccl(d, ncclRecv(s->scratch, k, ncclFloat, r, s->comm, s->stream), what);
                nccl_wait(d, what);
                ck_cuda(d, cudaMemcpy(full + beg + off, s->scratch, sizeof(float) * k, cudaMemcpyDeviceToHost), what);
            }
        }
    }
    return 0;
}

static int nccl_barrier(dist *d, const char *what) {
    nccl_state *s = d->state;
    nccl_begin(d, what);
    ck_nccl(d, ncclAllReduce(s->scratch, s->scratch, 1, ncclFloat, ncclSum, s->comm, s->stream), what);
    return nccl_wait(d, what);
}

static void nccl_abort(dist *d, int code) {
    nccl_state *s = d->state;
    fflush(stdout);
    fflush(stderr);
    if (s && s->comm) ncclCommAbort(s->comm);
    if (s && s->boot) s->boot->impl->abort(s->boot, code);
    exit(code);
}

static void nccl_finalize(dist *d) {
    nccl_state *s = d->state;
    if (!s) return;
    cudaDeviceSynchronize();
    ncclCommDestroy(s->comm);
    cudaFree(s->scratch);
    cudaEventDestroy(s->done);
    cudaEventDestroy(s->ready);
    for (int k = 0; k < N_MARKS; k++) cudaEventDestroy(s->marks[k]);
    cudaStreamDestroy(s->stream);
    dist *boot = s->boot;
    free(s);
    d->state = NULL;
    dist_finalize(boot);
}

static const dist_impl NCCL_IMPL = {nccl_allreduce_f32,
                                    nccl_reduce_scatter_f32,
                                    nccl_allgather,
                                    nccl_broadcast,
                                    nccl_allreduce_host_f64,
                                    nccl_broadcast_host,
                                    nccl_gather_host_f32,
                                    nccl_barrier,
                                    nccl_abort,
                                    nccl_finalize,
                                    nccl_allreduce_f32_async,
                                    nccl_reduce_scatter_f32_async,
                                    nccl_allgather_async,
                                    nccl_wait_async,
                                    nccl_async_mark,
                                    nccl_compute_after};

size_t dist_nccl_id_bytes(void) { return sizeof(ncclUniqueId); }

int dist_nccl_get_unique_id(void *id, size_t len) {
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return llava_fail("ncclGetUniqueId: %s", ncclGetErrorString(r));
    memcpy(id, &u, len < sizeof u ? len : sizeof u);
    return 0;
}

static int create_marks(nccl_state *s) {
    for (int k = 0; k < N_MARKS; k++)
        if (cudaEventCreateWithFlags(&s->marks[k], cudaEventDisableTiming) != cudaSuccess) return -1;
    return 0;
}

int dist_nccl_start(dist *d, const void *id, size_t len, dist *boot) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0)
        return llava_fail("rank %d: the NCCL backend needs a GPU and none is visible", d->rank);
    // GPU = local rank; a launcher that shows each rank one GPU (srun --gpus-per-task=1) leaves it
    // device 0. The GPU is chosen before anything allocates on it (the CUDA backend uses the current
    // device).
    int dev = ndev == 1 ? 0 : d->local_rank;
    if (dev >= ndev)
        return llava_fail("rank %d: local rank %d but only %d GPUs are visible on this node", d->rank, d->local_rank,
                          ndev);
    if (cudaSetDevice(dev) != cudaSuccess) return llava_fail("rank %d: cudaSetDevice(%d) failed", d->rank, dev);
    nccl_state *s = xcalloc(1, sizeof *s);
    s->boot = boot;
    if (cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking) != cudaSuccess ||
        cudaEventCreateWithFlags(&s->done, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&s->ready, cudaEventDisableTiming) != cudaSuccess || create_marks(s) != 0 ||
        cudaMalloc(&s->scratch, STAGE_BYTES) != cudaSuccess) {
        free(s);
        return llava_fail("rank %d: cannot create the NCCL stream or staging buffer", d->rank);
    }
    ncclConfig_t cfg = NCCL_CONFIG_INITIALIZER;
    cfg.blocking = 0;  // init and collectives return at once; nccl_wait polls them against the deadline
    ncclUniqueId u;
    memset(&u, 0, sizeof u);
    memcpy(&u, id, len < sizeof u ? len : sizeof u);
    ncclResult_t r = ncclCommInitRankConfig(&s->comm, d->world, u, d->rank, &cfg);
    if (r != ncclSuccess && r != ncclInProgress) {
        free(s);
        return llava_fail("rank %d: ncclCommInitRank: %s", d->rank, ncclGetErrorString(r));
    }
    double deadline = dist_now() + d->timeout_s;
    ncclResult_t ae = ncclInProgress;
    for (int it = 0; ae == ncclInProgress; it++) {
        ncclCommGetAsyncError(s->comm, &ae);
        if (ae != ncclInProgress) break;
        if (dist_now() > deadline) {
            ncclCommAbort(s->comm);
            free(s);
            return llava_fail("rank %d of %d: the NCCL communicator was not ready within %.0f s (is a rank missing?)",
                              d->rank, d->world, d->timeout_s);
        }
        dist_poll_pause(it);
    }
    if (ae != ncclSuccess) {
        ncclCommAbort(s->comm);
        free(s);
        return llava_fail("rank %d: NCCL communicator: %s", d->rank, ncclGetErrorString(ae));
    }
    d->kind = DIST_NCCL;
    d->impl = &NCCL_IMPL;
    d->state = s;
    return 0;
}

#else
typedef int dist_nccl_unused;  // this build has no NCCL
#endif
