// The run lock (runlock.h).
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

// The holder's text, without its newline ("" when empty or unreadable).
static void read_holder(int fd, char *out, size_t cap) {
    out[0] = 0;
    ssize_t k = pread(fd, out, cap - 1, 0);
    if (k <= 0) return;
    out[k] = 0;
    char *nl = strchr(out, '\n');
    if (nl) *nl = 0;
}

int run_lock_take(run_lock *l, const char *dir) {
    l->fd = -1;
    l->path = NULL;
    if (mkdir_p(dir) != 0) return -1;
    char *path = path_join(dir, ".llava.lock");
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        int rc = llava_fail("%s: cannot open the run lock: %s", path, strerror(errno));
        free(path);
        return rc;
    }
    char holder[256];
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        read_holder(fd, holder, sizeof holder);
        close(fd);
        int rc = e == EWOULDBLOCK
                     ? llava_fail("%s is in use by another llava train (%s; lock %s): one run per output folder", dir,
                                  holder[0] ? holder : "holder unknown", path)
                     : llava_fail("%s: cannot lock: %s", path, strerror(e));
        free(path);
        return rc;
    }
    read_holder(fd, holder, sizeof holder);
    if (holder[0])
        fprintf(stderr, "train: %s was left locked by a run that no longer holds it (%s); taking it over\n", dir,
                holder);
    char host[128] = "?";
    gethostname(host, sizeof host - 1);
    char text[320];
    int n = snprintf(text, sizeof text, "pid %d host %s since %lld\n", (int)getpid(), host, (long long)time(NULL));
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)n, 0) != n) {
        int rc = llava_fail("%s: cannot write the run lock: %s", path, strerror(errno));
        close(fd);
        free(path);
        return rc;
    }
    l->fd = fd;
    l->path = path;
    return 0;
}

void run_lock_release(run_lock *l) {
    if (l->fd >= 0) {
        if (ftruncate(l->fd, 0) != 0) { /* the next run will only report a stale holder */
        }
        close(l->fd);  // releases the flock
    }
    free(l->path);
    l->fd = -1;
    l->path = NULL;
}
