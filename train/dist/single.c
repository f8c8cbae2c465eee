// The one-process group: every collective over one rank is the identity.
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "dist_impl.h"

static int single_allreduce_f32(dist *d, float *buf, size_t n, const char *what) { return 0; }
static int single_reduce_scatter_f32(dist *d, const float *buf, size_t n, float *out, const char *what) {
    // Host memory only: on one rank the optimizer never shards, so this is never asked of a GPU.
    if (out != buf) memmove(out, buf, sizeof(float) * n);
    return 0;
}
static int single_allgather(dist *d, void *buf, size_t n, size_t elem_bytes, const char *what) { return 0; }
static int single_broadcast(dist *d, void *buf, size_t bytes, int root, const char *what) { return 0; }
static int single_allreduce_host_f64(dist *d, double *x, int n, const char *what) { return 0; }
static int single_broadcast_host(dist *d, void *buf, size_t bytes, int root, const char *what) { return 0; }
static int single_gather_host_f32(dist *d, const float *slice, size_t n, float *full, int root, const char *what) {
    if (full != slice) memmove(full, slice, sizeof(float) * n);
    return 0;
}
static int single_barrier(dist *d, const char *what) { return 0; }
static void single_abort(dist *d, int code) { exit(code); }
static void single_finalize(dist *d) {}

static const dist_impl SINGLE_IMPL = {single_allreduce_f32,
                                      single_reduce_scatter_f32,
                                      single_allgather,
                                      single_broadcast,
                                      single_allreduce_host_f64,
                                      single_broadcast_host,
                                      single_gather_host_f32,
                                      single_barrier,
                                      single_abort,
                                      single_finalize,
                                      NULL,
                                      NULL,
                                      NULL,
                                      NULL,
                                      NULL,
                                      NULL};

void dist_single_start(dist *d) {
    d->kind = DIST_SINGLE;
    d->rank = 0;
    d->world = 1;
    d->local_rank = 0;
    d->impl = &SINGLE_IMPL;
}

dist *dist_single(void) {
    dist *d = xcalloc(1, sizeof *d);
    d->timeout_s = 1800;
    dist_single_start(d);
    return d;
}

dist *dist_layout_only(int rank, int world) {
    dist *d = dist_single();
    d->kind = DIST_MPI;
    d->rank = rank;
    d->world = world;
    return d;
}
