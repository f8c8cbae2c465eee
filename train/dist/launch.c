// Which process group a process joins, from how it was launched (dist.h): the one file that knows
// every backend and puts them together (an NCCL group bootstrapped over MPI or over TCP).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "dist_impl.h"

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
    return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_RANK") || env("PMI_SIZE") ||
           env("MPI_LOCALNRANKS");
}

#ifdef LLAVA_HAVE_NCCL
// A group of the same ranks over NCCL, its unique id made by rank 0 and handed to the others over
// the MPI group `boot`, which the NCCL group then keeps (finalised after it, aborted through it).
// A rank that fails here ends the whole MPI job: the others would wait for it forever.
static dist *nccl_over_mpi(dist *boot, const dist_options *o) {
    size_t idn = dist_nccl_id_bytes();
    unsigned char *id = xcalloc(1, idn);
    if (boot->rank == 0 && dist_nccl_get_unique_id(id, idn) != 0) {
        fprintf(stderr, "llava: rank 0: %s\n", llava_errmsg());
        dist_abort(boot, 1);
    }
    dist_broadcast_host(boot, id, idn, 0, "bootstrap: NCCL id");
    dist *d = xcalloc(1, sizeof *d);
    d->rank = boot->rank;
    d->world = boot->world;
    d->local_rank = boot->local_rank;
    d->timeout_s = o->timeout_s;
    if (dist_nccl_start(d, id, idn, boot) != 0) {
        fprintf(stderr, "llava: rank %d: %s\n", d->rank, llava_errmsg());
        dist_abort(boot, 1);
    }
    free(id);
    return d;
}
#endif

dist *dist_init(const dist_options *o) {
    if (launched_by_mpi()) {
#ifdef LLAVA_HAVE_MPI
        dist *d = xcalloc(1, sizeof *d);
        d->timeout_s = o->timeout_s;
        if (dist_mpi_start(d) != 0) {
            free(d);
            return NULL;
        }
        if (!o->cuda) return d;
#ifdef LLAVA_HAVE_NCCL
        return nccl_over_mpi(d, o);
#else
        fprintf(stderr, "llava: rank %d: train.device=cuda on %d ranks needs NCCL, which this build lacks\n", d->rank,
                d->world);
        dist_abort(d, 1);
#endif
#else
        llava_fail(
            "this process was started by an MPI launcher (mpirun / srun), but llava was built without MPI "
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
        llava_fail(
            "WORLD_SIZE=%d without an MPI launcher: the CPU backend's collectives need MPI (launch with mpirun or "
            "srun --mpi=pmix); torchrun-style variables serve the NCCL backend (train.device=cuda)",
            world);
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
    if (rc == 0) rc = dist_nccl_start(d, id, idn, NULL);
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
