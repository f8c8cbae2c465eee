// A TCP port on the loopback interface that nothing listens on right now (the kernel picks it),
// for tests that run a rendezvous. Another process could take it before the test does; the tests
// that use it fail loudly then rather than hang.
#ifndef LLAVA_TESTS_FREE_PORT_H
#define LLAVA_TESTS_FREE_PORT_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static inline int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    bind(fd, (struct sockaddr *)&a, sizeof a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    close(fd);
    return ntohs(a.sin_port);
}

#endif
