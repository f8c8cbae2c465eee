// Collectives for data-parallel training (ARCHITECTURE.md decision 9): one interface, three
// backends, each in its own file of train/dist/ (single.c, mpi.c, nccl.c) below which sit the
// shared pieces (common.c: dispatch, sharding layout, deadlines; tcp.c: the rendezvous) and above
// which launch.c alone knows them all and puts a process group together. The backends never call
// each other: an NCCL group bootstrapped by MPI holds the MPI group and reaches it through its
// table (dist_impl.h).
//
//   single  one process; every collective is the identity.
//   mpi     CPU tensors over MPI (OpenMPI, MPICH): what CI runs, so every data-parallel code path is
//           tested on the CPU backend with 2-4 ranks.
//   nccl    GPU tensors over NCCL, bootstrapped through MPI (the NCCL unique id is broadcast with
//           MPI) or through the torchrun-style environment (the id is handed out over TCP by
//           rank 0 on MASTER_ADDR:MASTER_PORT).
//
// Which one a process gets follows from how it was launched (dist_init) and the device:
//   mpirun / srun with PMIx / PMI   (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_RANK) -> MPI is initialised;
//                                   device cpu: mpi; device cuda: nccl with the id sent over MPI
//   RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT (torchrun, or set by hand) -> nccl, id over TCP
//                                   (rank 0 listens on MASTER_PORT; under torchrun, whose agent
//                                   holds that port, on MASTER_PORT + 1; LLAVA_RENDEZVOUS_PORT
//                                   overrides); srun without an MPI plugin: SLURM_PROCID /
//                                   SLURM_NTASKS / SLURM_LOCALID stand in when MASTER_ADDR is set
//   nothing                         -> single
// There is no shared-file bootstrap, so no stale file from an earlier run can be picked up.
//
// Memory: "backend memory" is where the op table keeps tensors: host memory for the CPU backend
// (mpi, single), device memory for CUDA (nccl). Host variants take host memory on every backend.
//
// Timeouts: every collective has a deadline (dist_set_timeout). A rank that reaches it prints
// which collective, its sequence number and the deadline to stderr and brings the whole job down
// (MPI_Abort; ncclCommAbort and exit(1)), so a rank that hangs or dies never leaves the others
// waiting forever. Collectives therefore only return on success.
//
// Sharding layout used by every "shard" operation: an n-element buffer is cut into `world` slices
// of n / world elements, in rank order; the last rank's slice also takes the n % world left over.
// Slices are contiguous, and the collectives over them are the backends' equal-count ones plus,
// for the few leftover elements, one small extra reduce / broadcast.
#ifndef LLAVA_TRAIN_DIST_H
#define LLAVA_TRAIN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

typedef enum { DIST_SINGLE = 0, DIST_MPI = 1, DIST_NCCL = 2 } dist_backend;

typedef struct dist dist;

typedef struct {
    int cuda;          // tensors live on the GPU (train.device cuda): the nccl backend
    double timeout_s;  // deadline of the bootstrap and of every collective until dist_set_timeout
} dist_options;

// Sets up the process group from the environment (see above). Returns NULL with llava_errmsg() when
// the environment asks for something this build lacks or the rendezvous fails within the timeout.
dist *dist_init(const dist_options *o);
// A one-process group (no environment read): what a test or an in-process run uses.
dist *dist_single(void);
// A group that says it is rank `rank` of `world` but runs no collective (each is the identity): for
// computing a rank's sharding layout without a job, as the tests of the optimizer's buckets do. It
// reports itself as an MPI group so that the optimizer shards as it would on `world` ranks.
dist *dist_layout_only(int rank, int world);
// Finishes the group (MPI_Finalize, ncclCommDestroy) and frees it. NULL is fine.
void dist_finalize(dist *d);
// Ends every rank of the job now with `code` (MPI_Abort / ncclCommAbort + exit): the way out when
// one rank fails and the others would wait for it in their next collective.
void dist_abort(dist *d, int code) __attribute__((noreturn));

int dist_rank(const dist *d);
int dist_world(const dist *d);
int dist_local_rank(const dist *d);  // rank within the node: the GPU it uses
dist_backend dist_kind(const dist *d);
const char *dist_backend_name(dist_backend b);
// The deadline for each following collective, in seconds (two phases: a long one for start-up,
// then the run's collective timeout).
void dist_set_timeout(dist *d, double seconds);
double dist_timeout(const dist *d);

// ---- the sharding layout
size_t dist_shard_begin(size_t n, int world, int rank);
size_t dist_shard_count(size_t n, int world, int rank);

// ---- collectives on backend memory. `what` names the operation in a timeout message.
// buf (n) += over ranks, in place.
int dist_allreduce_f32(dist *d, float *buf, size_t n, const char *what);
// The sum over ranks of buf (n) restricted to this rank's slice, written to out
// (dist_shard_count(n, world, rank)). buf is not changed.
int dist_reduce_scatter_f32(dist *d, const float *buf, size_t n, float *out, const char *what);
// In place: each rank's slice of buf (n elements of elem_bytes) goes to every rank.
int dist_allgather(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what);
// bytes from `root` to every rank.
int dist_broadcast(dist *d, void *buf, size_t bytes, int root, const char *what);

// ---- the same two reductions, issued without waiting: what lets the gradient reduction of one
// layer run while the backward of the next one computes. The nccl backend orders each after the
// work already queued on the compute stream (an event) and runs it on its communication stream;
// the other backends run it at once, blocking. Buffers must stay untouched until dist_wait_async.
// Every blocking collective waits for the outstanding ones first (under the deadline).
int dist_allreduce_f32_async(dist *d, float *buf, size_t n, const char *what);
int dist_reduce_scatter_f32_async(dist *d, const float *buf, size_t n, float *out, const char *what);
// ZeRO-3's parameter gathers: dist_allgather's layout, issued without waiting (on nccl after the
// work queued on the compute stream, so a buffer still being read is not overwritten early). The
// compute stream waits for it through dist_async_mark / dist_compute_after before reading buf.
int dist_allgather_async(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what);
// Returns when every collective issued so far is complete (the deadline applies, as to any).
int dist_wait_async(dist *d, const char *what);
// A mark after the asynchronous collectives issued so far, and a wait for it on the compute stream
// (not the host): the work queued after dist_compute_after(d, mark) runs once they are done. How
// the reduction reuses a gradient buffer while later collectives are still running. The blocking
// backends return 0 and wait for nothing (their collectives are done when issued).
uint64_t dist_async_mark(dist *d);
void dist_compute_after(dist *d, uint64_t mark, const char *what);

// ---- collectives on host memory (any backend)
int dist_allreduce_host_f64(dist *d, double *x, int n, const char *what);
int dist_broadcast_host(dist *d, void *buf, size_t bytes, int root, const char *what);
// Every rank's slice of an n-element array (this rank's in `slice`) assembled in full (n) on
// `root`; `full` is ignored elsewhere.
int dist_gather_host_f32(dist *d, const float *slice, size_t n, float *full, int root, const char *what);
int dist_barrier(dist *d, const char *what);

// The backend whose ops the collectives on backend memory must follow (its stream, on the GPU):
// the trainer binds the context it runs the model in, and unbinds it (NULL) before closing it.
// Unbound, the nccl backend orders itself after all work on the device's blocking streams.
void dist_bind_backend(dist *d, llava_backend *be);

// ---- the TCP rendezvous of the torchrun-style launch (used by the nccl backend; exposed for
// tests). Rank 0 listens on port `port`, accepts the other world - 1 ranks (each says its rank and
// the world size it expects: a mismatch or a duplicate fails the run) and sends each of them
// `blob` (len bytes); the others connect to addr:port, retrying until the deadline, and receive
// the blob. Returns 0, or -1 with a message naming what was missing when the deadline passed.
int dist_tcp_rendezvous(const char *addr, int port, int rank, int world, void *blob, size_t len, double timeout_s);

#endif
