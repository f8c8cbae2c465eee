// The MPI backend: CPU tensors (host memory) over MPI's nonblocking collectives, each polled with
// MPI_Test against the collective deadline; past it the rank names the collective and calls
// MPI_Abort, which ends every rank of the job. Under mpirun / srun with train.device=cuda this group
// carries the NCCL unique id and stays beneath the NCCL group (launch.c).
#ifdef LLAVA_HAVE_MPI

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "dist_impl.h"

// Counts in one MPI call stay below INT_MAX; bigger buffers go in pieces.
#define MPI_CHUNK ((size_t)1 << 30)

static int mpi_wait(dist *d, MPI_Request *req, const char *what) {
    double deadline = dist_now() + d->timeout_s;
    d->seq++;
    for (int it = 0;; it++) {
        int flag = 0;
        MPI_Test(req, &flag, MPI_STATUS_IGNORE);
        if (flag) return 0;
        if (dist_now() > deadline) dist_timeout_fail(d, what);
        dist_poll_pause(it);
    }
}

static int mpi_allreduce_f32(dist *d, float *buf, size_t n, const char *what) {
    for (size_t off = 0; off < n; off += MPI_CHUNK) {
        size_t k = n - off < MPI_CHUNK ? n - off : MPI_CHUNK;
        MPI_Request r;
        MPI_Iallreduce(MPI_IN_PLACE, buf + off, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
        mpi_wait(d, &r, what);
    }
    return 0;
}

// The layout's per-rank counts and displacements (in elements), checked against int.
static int layout(const dist *d, size_t n, int *counts, int *displs, const char *what) {
    if (n > (size_t)INT_MAX)
        return llava_fail("%s: %zu elements in one sharded collective exceed MPI's int counts", what, n);
    for (int r = 0; r < d->world; r++) {
        counts[r] = (int)dist_shard_count(n, d->world, r);
        displs[r] = (int)dist_shard_begin(n, d->world, r);
    }
    return 0;
}

static int mpi_reduce_scatter_f32(dist *d, const float *buf, size_t n, float *out, const char *what) {
    int *counts = xmalloc(sizeof(int) * (size_t)d->world), *displs = xmalloc(sizeof(int) * (size_t)d->world);
    int rc = layout(d, n, counts, displs, what);
    if (rc == 0) {
        MPI_Request r;
        MPI_Ireduce_scatter(buf, out, counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &r);
        mpi_wait(d, &r, what);
    }
    free(counts);
    free(displs);
    return rc;
}

static int mpi_allgather(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what) {
    int *counts = xmalloc(sizeof(int) * (size_t)d->world), *displs = xmalloc(sizeof(int) * (size_t)d->world);
    int rc = layout(d, n, counts, displs, what);
    if (rc == 0) {
        MPI_Datatype t;
        MPI_Type_contiguous((int)elem_bytes, MPI_BYTE, &t);
        MPI_Type_commit(&t);
        MPI_Request r;
        MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, counts, displs, t, MPI_COMM_WORLD, &r);
        mpi_wait(d, &r, what);
        MPI_Type_free(&t);
    }
    free(counts);
    free(displs);
    return rc;
}

static int mpi_broadcast(dist *d, void *buf, size_t bytes, int root, const char *what) {
    for (size_t off = 0; off < bytes; off += MPI_CHUNK) {
        size_t k = bytes - off < MPI_CHUNK ? bytes - off : MPI_CHUNK;
        MPI_Request r;
        MPI_Ibcast((char *)buf + off, (int)k, MPI_BYTE, root, MPI_COMM_WORLD, &r);
        mpi_wait(d, &r, what);
    }
    return 0;
}

static int mpi_allreduce_host_f64(dist *d, double *x, int n, const char *what) {
    MPI_Request r;
    MPI_Iallreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD, &r);
    return mpi_wait(d, &r, what);
}

static int mpi_gather_host_f32(dist *d, const float *slice, size_t n, float *full, int root, const char *what) {
    int *counts = xmalloc(sizeof(int) * (size_t)d->world), *displs = xmalloc(sizeof(int) * (size_t)d->world);
    int rc = layout(d, n, counts, displs, what);
    if (rc == 0) {
        MPI_Request r;
        MPI_Igatherv(slice, counts[d->rank], MPI_FLOAT, full, counts, displs, MPI_FLOAT, root, MPI_COMM_WORLD, &r);
        mpi_wait(d, &r, what);
    }
    free(counts);
    free(displs);
    return rc;
}

static int mpi_barrier(dist *d, const char *what) {
    MPI_Request r;
    MPI_Ibarrier(MPI_COMM_WORLD, &r);
    return mpi_wait(d, &r, what);
}

static void mpi_abort(dist *d, int code) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    exit(code);
}

static void mpi_finalize(dist *d) { MPI_Finalize(); }

static const dist_impl MPI_IMPL = {mpi_allreduce_f32,
                                   mpi_reduce_scatter_f32,
                                   mpi_allgather,
                                   mpi_broadcast,
                                   mpi_allreduce_host_f64,
                                   mpi_broadcast,
                                   mpi_gather_host_f32,
                                   mpi_barrier,
                                   mpi_abort,
                                   mpi_finalize,
                                   NULL,
                                   NULL,
                                   NULL,
                                   NULL,
                                   NULL,
                                   NULL};

int dist_mpi_start(dist *d) {
    int provided = 0;
    // Loader threads never call MPI: only the main thread does.
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return llava_fail("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &d->local_rank);
    MPI_Comm_free(&node);
    d->kind = DIST_MPI;
    d->impl = &MPI_IMPL;
    return 0;
}

#else
typedef int dist_mpi_unused;  // this build has no MPI
#endif
