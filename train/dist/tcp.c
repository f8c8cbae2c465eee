// The TCP rendezvous of torchrun-style launches (dist.h): rank 0 hands a blob (the NCCL unique id)
// to every other rank over one listening socket, under a deadline.
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

#include "common/util.h"
#include "dist_impl.h"

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
                rc = llava_fail(
                    "rendezvous: rank 0 waited %.0f s on port %d and %d of %d ranks never came (missing: %s)",
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
                rc = llava_fail("rendezvous: a rank %d expecting WORLD_SIZE %u joined rank 0, whose WORLD_SIZE is %d%s",
                                r, hello[1], world,
                                r > 0 && r < world && cfd[r] ? " (and that rank had joined already)" : "");
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
            return llava_fail("rendezvous: rank %d could not reach rank 0 at %s:%d within %.0f s (%d tries; last: %s)",
                              rank, addr, port, timeout_s, tries, strerror(err));
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
    }
    uint32_t hello[4] = {RDV_MAGIC, (uint32_t)world, (uint32_t)rank, (uint32_t)len}, head[2] = {0, 0};
    int rc = 0;
    if (io_all(fd, hello, sizeof hello, 1, deadline) != 1 || io_all(fd, head, sizeof head, 0, deadline) != 1 ||
        head[0] != RDV_MAGIC || head[1] != (uint32_t)len || io_all(fd, blob, len, 0, deadline) != 1)
        rc = llava_fail(
            "rendezvous: rank %d reached %s:%d but got no id from rank 0 within %.0f s (rank 0 waits for every "
            "rank; is one missing, or WORLD_SIZE different?)",
            rank, addr, port, timeout_s);
    close(fd);
    return rc;
}
