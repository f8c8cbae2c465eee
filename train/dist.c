// The collective interface's front: launch detection, the one-process backend, the sharding
// layout, the deadline helpers and the TCP rendezvous of torchrun-style launches. The MPI and
// NCCL backends live in dist_mpi.c and dist_nccl.c.
#include "dist.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../common/util.h"

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
            "\nllava: rank %d of %d: collective #%llu (%s, %s) did not finish within %.0f s: another rank has died or hangs. "
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

// ---- the one-process backend: sums over one rank are the identity.
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

static const dist_impl SINGLE_IMPL = {single_allreduce_f32, single_reduce_scatter_f32, single_allgather, single_broadcast,
                                      single_allreduce_host_f64, single_broadcast_host, single_gather_host_f32,
                                      single_barrier, single_abort, single_finalize, NULL, NULL, NULL, NULL, NULL};

dist *dist_single(void) {
    dist *d = xcalloc(1, sizeof *d);
    d->kind = DIST_SINGLE;
    d->world = 1;
    d->timeout_s = 1800;
    d->impl = &SINGLE_IMPL;
    return d;
}

// ---- dispatch
int dist_allreduce_f32(dist *d, float *buf, size_t n, const char *what) {
    return d->impl->allreduce_f32(d, buf, n, what);
}
int dist_reduce_scatter_f32(dist *d, const float *buf, size_t n, float *out, const char *what) {
    return d->impl->reduce_scatter_f32(d, buf, n, out, what);
}
int dist_allreduce_f32_async(dist *d, float *buf, size_t n, const char *what) {
    return d->impl->allreduce_f32_async ? d->impl->allreduce_f32_async(d, buf, n, what) : d->impl->allreduce_f32(d, buf, n, what);
}
int dist_reduce_scatter_f32_async(dist *d, const float *buf, size_t n, float *out, const char *what) {
    return d->impl->reduce_scatter_f32_async ? d->impl->reduce_scatter_f32_async(d, buf, n, out, what)
                                             : d->impl->reduce_scatter_f32(d, buf, n, out, what);
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

// ---- launch detection
static const char *env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int env_int(const char *name, int *out) {
    const char *v = env(name);
    if (!v) return 0;
    char *end;
    long x = strtol(v, &end, 10);
    if (*end || x < 0 || x > 1 << 24) return -1;
    *out = (int)x;
    return 1;
}

static int launched_by_mpi(void) {
    return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_RANK") || env("PMI_SIZE") || env("MPI_LOCALNRANKS");
}

dist *dist_init(const dist_options *o) {
    if (launched_by_mpi()) {
#ifdef LLAVA_HAVE_MPI
        dist *d = xcalloc(1, sizeof *d);
        d->timeout_s = o->timeout_s;
        if (dist_mpi_init(d, o) != 0) {
            free(d);
            return NULL;
        }
        return d;
#else
        llava_fail("this process was started by an MPI launcher (mpirun / srun), but llava was built without MPI "
                   "(install libopenmpi-dev and rebuild)");
        return NULL;
#endif
    }
    // torchrun-style: RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; srun without an
    // MPI plugin gives SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, used when MASTER_ADDR is set.
    int rank = 0, world = 1, local = -1, port = 0;
    int have_rank = env_int("RANK", &rank), have_world = env_int("WORLD_SIZE", &world);
    int have_local = env_int("LOCAL_RANK", &local);
    if (have_rank == 0 && have_world == 0 && env("MASTER_ADDR") && env("SLURM_PROCID")) {
        have_rank = env_int("SLURM_PROCID", &rank);
        have_world = env_int("SLURM_NTASKS", &world);
        have_local = env_int("SLURM_LOCALID", &local);
    }
    if (have_rank < 0 || have_world < 0 || have_local < 0) {
        llava_fail("RANK, WORLD_SIZE and LOCAL_RANK must be non-negative integers");
        return NULL;
    }
    if (have_rank == 0 && have_world == 0) return dist_single();
    if (have_world == 0 || world < 1 || rank >= world) {
        llava_fail("RANK=%d needs WORLD_SIZE > RANK (got %s)", rank, env("WORLD_SIZE") ? env("WORLD_SIZE") : "none");
        return NULL;
    }
    // One rank on the GPU still goes through NCCL (a 1-GPU NCCL run checks the path against the
    // one-process run); on the CPU it needs nothing.
    if (world == 1 && !o->cuda) return dist_single();
    if (!o->cuda) {
        llava_fail("WORLD_SIZE=%d without an MPI launcher: the CPU backend's collectives need MPI (launch with mpirun or "
                   "srun --mpi=pmix); torchrun-style variables serve the NCCL backend (train.device=cuda)", world);
        return NULL;
    }
#ifdef LLAVA_HAVE_NCCL
    const char *addr = env("MASTER_ADDR");
    if (!addr || env_int("MASTER_PORT", &port) != 1 || port <= 0 || port > 65535) {
        llava_fail("WORLD_SIZE=%d: set MASTER_ADDR and MASTER_PORT (rank 0's host and a free TCP port)", world);
        return NULL;
    }
    // torchrun's agent holds a store of its own on MASTER_PORT: the id then goes over the port
    // after it. LLAVA_RENDEZVOUS_PORT chooses another.
    const char *te = env("TORCHELASTIC_USE_AGENT_STORE");
    if (te && (strcmp(te, "True") == 0 || strcmp(te, "true") == 0 || strcmp(te, "1") == 0)) port++;
    int chosen = 0;
    if (env_int("LLAVA_RENDEZVOUS_PORT", &chosen) == 1 && chosen > 0 && chosen <= 65535) port = chosen;
    dist *d = xcalloc(1, sizeof *d);
    d->rank = rank;
    d->world = world;
    d->local_rank = local >= 0 ? local : rank;
    d->timeout_s = o->timeout_s;
    size_t idn = dist_nccl_id_bytes();
    unsigned char *id = xcalloc(1, idn);
    int rc = rank == 0 ? dist_nccl_get_unique_id(id, idn) : 0;
    if (rc == 0) rc = dist_tcp_rendezvous(addr, port, rank, world, id, idn, o->timeout_s);
    if (rc == 0) rc = dist_nccl_init(d, id, idn, 0);
    free(id);
    if (rc != 0) {
        free(d);
        return NULL;
    }
    return d;
#else
    (void)port;
    if (world == 1) return dist_single();
    llava_fail("WORLD_SIZE=%d with train.device=cuda needs NCCL, which this build lacks", world);
    return NULL;
#endif
}

// ---- TCP rendezvous
#define RDV_MAGIC 0x6c6c7631u  // "llv1"

static int wait_fd(int fd, short events, double deadline) {
    for (;;) {
        double left = deadline - dist_now();
        if (left <= 0) return 0;
        struct pollfd p = {fd, events, 0};
        int ms = left > 1.0 ? 1000 : (int)(left * 1000) + 1;
        int r = poll(&p, 1, ms);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return -1;
    }
}

static int io_all(int fd, void *buf, size_t len, int writing, double deadline) {
    unsigned char *p = buf;
    while (len) {
        int w = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline);
        if (w <= 0) return w == 0 ? 0 : -1;
        ssize_t k = writing ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return -1;
        p += k;
        len -= (size_t)k;
    }
    return 1;
}

static int listen_on(int port) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    if (getaddrinfo(NULL, ps, &hints, &res) != 0) return llava_fail("rendezvous: cannot resolve the listening address");
    int fd = -1, err = 0;
    // IPv6 first with IPv4 mapped in (one socket serves both), else IPv4.
    for (int pass = 0; pass < 2 && fd < 0; pass++)
        for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
            if ((pass == 0) != (a->ai_family == AF_INET6)) continue;
            fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
            if (fd < 0) continue;
            int one = 1, zero = 0;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (a->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
            if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
                err = errno;
                close(fd);
                fd = -1;
            }
        }
    freeaddrinfo(res);
    if (fd < 0)
        return llava_fail("rendezvous: rank 0 cannot listen on MASTER_PORT %d: %s (is another job using it?)", port,
                          strerror(err));
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

// One connection attempt to addr:port, bounded by the deadline. Returns the socket or -1 (errno set).
static int connect_once(const char *addr, int port, double deadline, int *err) {
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int g = getaddrinfo(addr, ps, &hints, &res);
    if (g != 0) {
        *err = EHOSTUNREACH;
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        int r = connect(fd, a->ai_addr, a->ai_addrlen);
        if (r != 0 && errno == EINPROGRESS) {
            double d2 = dist_now() + 2.0;
            if (wait_fd(fd, POLLOUT, d2 < deadline ? d2 : deadline) == 1) {
                int so = 0;
                socklen_t sl = sizeof so;
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &sl);
                r = so ? -1 : 0;
                errno = so ? so : ETIMEDOUT;
            } else {
                errno = ETIMEDOUT;
            }
        }
        if (r != 0) {
            *err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

int dist_tcp_rendezvous(const char *addr, int port, int rank, int world, void *blob, size_t len, double timeout_s) {
    double deadline = dist_now() + timeout_s;
    if (world < 2) return 0;
    if (rank == 0) {
        int lfd = listen_on(port);
        if (lfd < 0) return -1;
        int *cfd = xcalloc((size_t)world, sizeof(int));
        int joined = 0, rc = 0;
        while (joined < world - 1 && rc == 0) {
            int w = wait_fd(lfd, POLLIN, deadline);
            if (w <= 0) {
                char missing[256] = "";
                size_t k = 0;
                for (int r = 1; r < world && k + 12 < sizeof missing; r++)
                    if (!cfd[r]) k += (size_t)snprintf(missing + k, sizeof missing - k, "%s%d", k ? ", " : "", r);
                rc = llava_fail("rendezvous: rank 0 waited %.0f s on port %d and %d of %d ranks never came (missing: %s)",
                                timeout_s, port, world - 1 - joined, world - 1, missing);
                break;
            }
            int fd = accept(lfd, NULL, NULL);
            if (fd < 0) continue;
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            uint32_t hello[4];
            if (io_all(fd, hello, sizeof hello, 0, deadline) != 1 || hello[0] != RDV_MAGIC) {
                close(fd);  // not one of ours (a port scanner, a stale client): ignore it
                continue;
            }
            int r = (int)hello[2];
            if ((int)hello[1] != world || hello[3] != (uint32_t)len || r <= 0 || r >= world || cfd[r]) {
                rc = llava_fail("rendezvous: a rank %d expecting WORLD_SIZE %u joined rank 0, whose WORLD_SIZE is %d%s", r,
                                hello[1], world, r > 0 && r < world && cfd[r] ? " (and that rank had joined already)" : "");
                close(fd);
                break;
            }
            cfd[r] = fd;
            joined++;
        }
        uint32_t head[2] = {RDV_MAGIC, (uint32_t)len};
        for (int r = 1; r < world && rc == 0; r++)
            if (io_all(cfd[r], head, sizeof head, 1, deadline) != 1 || io_all(cfd[r], blob, len, 1, deadline) != 1)
                rc = llava_fail("rendezvous: rank 0 could not send the id to rank %d", r);
        for (int r = 1; r < world; r++)
            if (cfd[r]) close(cfd[r]);
        free(cfd);
        close(lfd);
        return rc;
    }
    int fd = -1, err = 0, tries = 0;
    while (fd < 0) {
        fd = connect_once(addr, port, deadline, &err);
        tries++;
        if (fd >= 0) break;
        if (dist_now() >= deadline)
            return llava_fail("rendezvous: rank %d could not reach rank 0 at %s:%d within %.0f s (%d tries; last: %s)", rank,
                              addr, port, timeout_s, tries, strerror(err));
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
    }
    uint32_t hello[4] = {RDV_MAGIC, (uint32_t)world, (uint32_t)rank, (uint32_t)len}, head[2] = {0, 0};
    int rc = 0;
    if (io_all(fd, hello, sizeof hello, 1, deadline) != 1 || io_all(fd, head, sizeof head, 0, deadline) != 1 ||
        head[0] != RDV_MAGIC || head[1] != (uint32_t)len || io_all(fd, blob, len, 0, deadline) != 1)
        rc = llava_fail("rendezvous: rank %d reached %s:%d but got no id from rank 0 within %.0f s (rank 0 waits for every "
                        "rank; is one missing, or WORLD_SIZE different?)", rank, addr, port, timeout_s);
    close(fd);
    return rc;
}
