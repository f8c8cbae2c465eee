// What the `llava serve` tests need of a client: curl (the real HTTP client, run as a program) for
// requests, a raw socket for the cases curl cannot time (hang up mid-stream, a signal mid-answer),
// base64 for data: URLs, and reading SSE bodies.
#ifndef LLAVA_TESTS_SERVE_CLIENT_H
#define LLAVA_TESTS_SERVE_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static inline char *sc_b64(const uint8_t *in, size_t n) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *o++ = A[v >> 18 & 63];
        *o++ = A[v >> 12 & 63];
        *o++ = i + 1 < n ? A[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? A[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static inline char *sc_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    b[got] = 0;
    if (len) *len = got;
    return b;
}

// "data:image/png;base64,..." of a file.
static inline char *sc_data_url(const char *path) {
    size_t n;
    char *bytes = sc_read_file(path, &n);
    if (!bytes) return NULL;
    char *b = sc_b64((const uint8_t *)bytes, n);
    free(bytes);
    char *url = malloc(strlen(b) + 32);
    sprintf(url, "data:image/png;base64,%s", b);
    free(b);
    return url;
}

typedef struct {
    int status;  // the HTTP status; 0 when curl got no answer
    char *body;  // NUL-terminated
    size_t len;
    char *headers;  // the response's header lines
} sc_reply;

static inline void sc_reply_free(sc_reply *r) {
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

// Runs curl: METHOD url, with `body` (NULL: none) as application/json and extra arguments (NULL
// terminated, may be NULL). Returns the status (0: no answer).
static inline int sc_curl(const char *method, const char *url, const char *body, const char *const *extra,
                          sc_reply *out) {
    memset(out, 0, sizeof *out);
    char dir[] = "/tmp/llava_sc_XXXXXX";
    if (!mkdtemp(dir)) return 0;
    char in_path[64], out_path[64], hdr_path[64];
    snprintf(in_path, sizeof in_path, "%s/in", dir);
    snprintf(out_path, sizeof out_path, "%s/out", dir);
    snprintf(hdr_path, sizeof hdr_path, "%s/hdr", dir);
    if (body) {
        FILE *f = fopen(in_path, "wb");
        fwrite(body, 1, strlen(body), f);
        fclose(f);
    }
    const char *argv[64];
    int n = 0;
    char at_in[80];
    snprintf(at_in, sizeof at_in, "@%s", in_path);
    argv[n++] = "curl";
    argv[n++] = "-sS";
    argv[n++] = "-N";
    argv[n++] = "--max-time";
    argv[n++] = "60";
    argv[n++] = "-o";
    argv[n++] = out_path;
    argv[n++] = "-D";
    argv[n++] = hdr_path;
    argv[n++] = "-w";
    argv[n++] = "%{http_code}";
    argv[n++] = "-X";
    argv[n++] = method;
    if (body) {
        argv[n++] = "-H";
        argv[n++] = "Content-Type: application/json";
        argv[n++] = "--data-binary";
        argv[n++] = at_in;
    }
    for (int i = 0; extra && extra[i] && n < 60; i++) argv[n++] = extra[i];
    argv[n++] = url;
    argv[n] = NULL;
    int pfd[2];
    if (pipe(pfd) != 0) return 0;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execvp("curl", (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    char code[16] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof code - 1 && (r = read(pfd[0], code + got, sizeof code - 1 - got)) > 0) got += (size_t)r;
    close(pfd[0]);
    int st;
    waitpid(pid, &st, 0);
    out->status = atoi(code);
    out->body = sc_read_file(out_path, &out->len);
    if (!out->body) out->body = calloc(1, 1);
    out->headers = sc_read_file(hdr_path, NULL);
    if (!out->headers) out->headers = calloc(1, 1);
    unlink(in_path);
    unlink(out_path);
    unlink(hdr_path);
    rmdir(dir);
    return out->status;
}

// A TCP connection to 127.0.0.1:port, or -1.
static inline int sc_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

// Sends an HTTP/1.0 POST of a JSON body (the answer then ends when the server closes the connection,
// without chunked framing). The socket, or -1.
static inline int sc_post_raw(int port, const char *path, const char *body, const char *extra_header) {
    int fd = sc_connect(port);
    if (fd < 0) return -1;
    char head[512];
    int hn = snprintf(head, sizeof head,
                      "POST %s HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
                      "%zu\r\n%s%s\r\n",
                      path, strlen(body), extra_header ? extra_header : "", extra_header ? "\r\n" : "");
    if (write(fd, head, (size_t)hn) != hn || write(fd, body, strlen(body)) != (ssize_t)strlen(body)) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline double sc_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

// Reads from fd into *buf (grown, NUL-terminated) until `needle` appears after offset `from`, the peer
// closes (needle NULL: read to the end), or timeout_s passes. 1 when found (or, needle NULL, at EOF).
static inline int sc_read_until(int fd, char **buf, size_t *len, size_t from, const char *needle, double timeout_s) {
    double end = sc_now() + timeout_s;
    for (;;) {
        if (needle && *buf && *len > from && strstr(*buf + from, needle)) return 1;
        double left = end - sc_now();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
        char tmp[4096];
        ssize_t r = read(fd, tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return needle ? (*buf && *len > from && strstr(*buf + from, needle) != NULL) : 1;
        *buf = realloc(*buf, *len + (size_t)r + 1);
        memcpy(*buf + *len, tmp, (size_t)r);
        *len += (size_t)r;
        (*buf)[*len] = 0;
    }
}

// The "content" deltas of an SSE body, concatenated (JSON-unescaped by cJSON), and the events' count.
// Each event must be "data: ...\n\n"; returns -1 when one is not, or the body does not end with
// "data: [DONE]\n\n".
#include <cjson/cJSON.h>
static inline int sc_sse_content(const char *body, char *out, size_t cap, int *n_events, char *finish, size_t fcap,
                                 int *saw_usage) {
    size_t o = 0;
    int n = 0, done = 0;
    out[0] = 0;
    if (finish) finish[0] = 0;
    if (saw_usage) *saw_usage = 0;
    const char *p = body;
    while (*p) {
        if (strncmp(p, "data: ", 6) != 0) return -1;
        const char *end = strstr(p, "\n\n");
        if (!end) return -1;
        n++;
        if (!strncmp(p + 6, "[DONE]", 6)) {
            done = 1;
            p = end + 2;
            if (*p) return -1;
            break;
        }
        cJSON *j = cJSON_ParseWithLength(p + 6, (size_t)(end - p - 6));
        if (!j) return -1;
        const cJSON *ch = cJSON_GetObjectItem(j, "choices");
        const cJSON *c0 = cJSON_GetArrayItem(ch, 0);
        const cJSON *d = cJSON_GetObjectItem(c0, "delta");
        const cJSON *t = cJSON_GetObjectItem(d, "content");
        if (cJSON_IsString(t)) {
            size_t tl = strlen(t->valuestring);
            if (o + tl < cap) {
                memcpy(out + o, t->valuestring, tl);
                o += tl;
                out[o] = 0;
            }
        }
        const cJSON *f = cJSON_GetObjectItem(c0, "finish_reason");
        if (finish && cJSON_IsString(f)) snprintf(finish, fcap, "%s", f->valuestring);
        const cJSON *u = cJSON_GetObjectItem(j, "usage");
        if (saw_usage && cJSON_IsObject(u)) *saw_usage = 1;
        cJSON_Delete(j);
        p = end + 2;
    }
    if (n_events) *n_events = n;
    return done ? 0 : -1;
}

#endif
