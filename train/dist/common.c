// The shared floor of the collective interface (dist.h), below every backend: dispatch through
// the group's table, the sharding layout, the deadline helpers, the binding to a compute backend.
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "dist_impl.h"

double dist_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void dist_poll_pause(int iteration) {
    // Yield first (ranks oversubscribed on few cores must let each other run), then sleep a little:
    // a collective that takes long is waiting for another rank, not for this one's CPU.
    if (iteration < 2000) {
        sched_yield();
        return;
    }
    struct timespec ts = {0, iteration < 20000 ? 20000L : 200000L};
    nanosleep(&ts, NULL);
}

void dist_timeout_fail(dist *d, const char *what) {
    fprintf(stderr,
            "\nllava: rank %d of %d: collective #%llu (%s, %s) did not finish within %.0f s: another rank has died or "
            "hangs. "
            "Stopping every rank (the deadline is train.collective_timeout_s; start-up uses train.init_timeout_s).\n",
            d->rank, d->world, (unsigned long long)d->seq, what ? what : "?", dist_backend_name(d->kind), d->timeout_s);
    fflush(stderr);
    d->impl->abort(d, 1);
    _exit(1);  // an abort that returned
}

const char *dist_backend_name(dist_backend b) {
    switch (b) {
    case DIST_SINGLE: return "single";
    case DIST_MPI: return "mpi";
    case DIST_NCCL: return "nccl";
    }
    return "?";
}

int dist_rank(const dist *d) { return d ? d->rank : 0; }
int dist_world(const dist *d) { return d ? d->world : 1; }
int dist_local_rank(const dist *d) { return d ? d->local_rank : 0; }
dist_backend dist_kind(const dist *d) { return d ? d->kind : DIST_SINGLE; }
void dist_set_timeout(dist *d, double seconds) {
    if (d) d->timeout_s = seconds;
}
double dist_timeout(const dist *d) { return d ? d->timeout_s : 0; }

size_t dist_shard_begin(size_t n, int world, int rank) { return (n / (size_t)world) * (size_t)rank; }

size_t dist_shard_count(size_t n, int world, int rank) {
    size_t per = n / (size_t)world;
    return rank == world - 1 ? n - per * (size_t)(world - 1) : per;
}

// ---- dispatch
int dist_allreduce_f32(dist *d, float *buf, size_t n, const char *what) {
    return d->impl->allreduce_f32(d, buf, n, what);
}
int dist_reduce_scatter_f32(dist *d, const float *buf, size_t n, float *out, const char *what) {
    return d->impl->reduce_scatter_f32(d, buf, n, out, what);
}
int dist_allreduce_f32_async(dist *d, float *buf, size_t n, const char *what) {
    return d->impl->allreduce_f32_async ? d->impl->allreduce_f32_async(d, buf, n, what)
                                        : d->impl->allreduce_f32(d, buf, n, what);
}
int dist_reduce_scatter_f32_async(dist *d, const float *buf, size_t n, float *out, const char *what) {
    return d->impl->reduce_scatter_f32_async ? d->impl->reduce_scatter_f32_async(d, buf, n, out, what)
                                             : d->impl->reduce_scatter_f32(d, buf, n, out, what);
}
int dist_allgather_async(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what) {
    return d->impl->allgather_async ? d->impl->allgather_async(d, buf, n, elem_bytes, what)
                                    : d->impl->allgather(d, buf, n, elem_bytes, what);
}
int dist_wait_async(dist *d, const char *what) { return d->impl->wait_async ? d->impl->wait_async(d, what) : 0; }
uint64_t dist_async_mark(dist *d) { return d->impl->async_mark ? d->impl->async_mark(d) : 0; }
void dist_compute_after(dist *d, uint64_t mark, const char *what) {
    if (d->impl->compute_after) d->impl->compute_after(d, mark, what);
}
int dist_allgather(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what) {
    return d->impl->allgather(d, buf, n, elem_bytes, what);
}
int dist_broadcast(dist *d, void *buf, size_t bytes, int root, const char *what) {
    return d->impl->broadcast(d, buf, bytes, root, what);
}
int dist_allreduce_host_f64(dist *d, double *x, int n, const char *what) {
    return d->impl->allreduce_host_f64(d, x, n, what);
}
int dist_broadcast_host(dist *d, void *buf, size_t bytes, int root, const char *what) {
    return d->impl->broadcast_host(d, buf, bytes, root, what);
}
int dist_gather_host_f32(dist *d, const float *slice, size_t n, float *full, int root, const char *what) {
    return d->impl->gather_host_f32(d, slice, n, full, root, what);
}
int dist_barrier(dist *d, const char *what) { return d->impl->barrier(d, what); }

void dist_abort(dist *d, int code) {
    fflush(stdout);
    fflush(stderr);
    if (d) d->impl->abort(d, code);
    exit(code);
}

void dist_finalize(dist *d) {
    if (!d) return;
    d->impl->finalize(d);
    free(d);
}

void dist_bind_backend(dist *d, llava_backend *be) {
    if (d) d->be = be;
}
