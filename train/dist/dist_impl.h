// Private to train/dist/: the process group's layout and the table each backend fills, the
// helpers every backend shares (deadlines, polling), and the constructors launch.c puts together.
#ifndef LLAVA_TRAIN_DIST_IMPL_H
#define LLAVA_TRAIN_DIST_IMPL_H

#include "dist.h"

typedef struct {
    int (*allreduce_f32)(dist *d, float *buf, size_t n, const char *what);
    int (*reduce_scatter_f32)(dist *d, const float *buf, size_t n, float *out, const char *what);
    int (*allgather)(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what);
    int (*broadcast)(dist *d, void *buf, size_t bytes, int root, const char *what);
    int (*allreduce_host_f64)(dist *d, double *x, int n, const char *what);
    int (*broadcast_host)(dist *d, void *buf, size_t bytes, int root, const char *what);
    int (*gather_host_f32)(dist *d, const float *slice, size_t n, float *full, int root, const char *what);
    int (*barrier)(dist *d, const char *what);
    void (*abort)(dist *d, int code);
    void (*finalize)(dist *d);
    // Optional (NULL: the blocking versions above, run at once).
    int (*allreduce_f32_async)(dist *d, float *buf, size_t n, const char *what);
    int (*reduce_scatter_f32_async)(dist *d, const float *buf, size_t n, float *out, const char *what);
    int (*allgather_async)(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what);
    int (*wait_async)(dist *d, const char *what);
    uint64_t (*async_mark)(dist *d);
    void (*compute_after)(dist *d, uint64_t mark, const char *what);
} dist_impl;

struct dist {
    dist_backend kind;
    int rank, world, local_rank;
    double timeout_s;
    uint64_t seq;  // collectives issued so far (named in timeout messages)
    const dist_impl *impl;
    void *state;        // the backend's own
    llava_backend *be;  // the compute backend the collectives follow (dist_bind_backend), or NULL
};

// Fails the job after a collective passed its deadline (prints, then the backend's abort).
void dist_timeout_fail(dist *d, const char *what) __attribute__((noreturn));
double dist_now(void);
// Sleep between polls of an unfinished collective: short at first, longer as the wait goes on.
void dist_poll_pause(int iteration);

// ---- the backends (each fills a dist that launch.c allocated; 0 or -1 with llava_errmsg())
// single.c: the one-process group.
void dist_single_start(dist *d);
// mpi.c: MPI_Init and the CPU collectives over MPI_COMM_WORLD.
int dist_mpi_start(dist *d);
// nccl.c: the communicator from a unique id that rank 0 made and every rank now holds. `boot` is
// the group that carried the id when it was MPI (NULL for the TCP rendezvous): the NCCL group keeps
// it, finalises it after itself and aborts through it, so the whole MPI job ends together.
size_t dist_nccl_id_bytes(void);
int dist_nccl_get_unique_id(void *id, size_t len);
int dist_nccl_start(dist *d, const void *id, size_t len, dist *boot);

#endif
