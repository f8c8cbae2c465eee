// The HTTP side of `llava serve` (serve_http.h).
#include "serve_http.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "data/strbuf.h"
#include "serve_api.h"

// How often a waiting connection thread looks at its socket.
#define SERVE_POLL_MS 200
// A stream with nothing to say for this long gets an SSE comment line (proxies close silent streams).
#define SERVE_SSE_KEEPALIVE_S 15.0
// A connection that sends nothing for this long is closed.
#define SERVE_IDLE_TIMEOUT_S 300
#define SERVE_MAX_CONNECTIONS 512

struct serve_server {
    struct MHD_Daemon *d;
    serve_options o;
    char *api_key, *allow_dir, *model_id;
    serve_limits lim;
    int port;
    long long created;
    MHD_socket listen_fd;  // after serve_quiesce: ours to close
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int in_flight, draining, engine_gone;
};

typedef enum { ROUTE_NONE, ROUTE_CHAT } route_kind;

// One HTTP request, shared by its connection's thread and (once submitted) the engine's callbacks.
typedef struct {
    serve_server *srv;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;  // the connection's, the engine's (until on_done), a streamed response's (until freed)

    char method[16], path[160];
    struct timespec t0;
    route_kind route;
    strbuf body;
    size_t discarded;             // bytes of a body over the limit, read and dropped
    unsigned long long declared;  // a Content-Length over the limit (0: none), answered once the body is read
    int too_big, status;
    char note[200];  // the error's message, for the log line
    int fd;

    // The engine's side.
    int id, submitted, done, cancel_sent;
    strbuf text;  // a plain request's answer; a stream's text not yet written
    finish_reason finish;
    int prompt_tokens, completion_tokens;
    char *error;

    // A stream.
    int stream, include_usage, phase;  // phase 0: role chunk next, 1: text, 2: all written
    struct timespec last_write;
    strbuf out;
    size_t out_pos;
    char cid[48];
    long long created;
} serve_req;

static double ms_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) * 1e3 + (double)(t.tv_nsec - t0->tv_nsec) / 1e6;
}

static void req_unref(serve_req *r) {
    pthread_mutex_lock(&r->mu);
    int left = --r->refs;
    pthread_mutex_unlock(&r->mu);
    if (left) return;
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    free(r->body.p);
    free(r->text.p);
    free(r->out.p);
    free(r->error);
    free(r);
}

// "chatcmpl-" and 24 random letters and digits.
static void make_id(char *out, size_t cap) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char rnd[24];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        uint64_t x = (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 20) ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof rnd; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            rnd[i] = (unsigned char)(x >> 56);
        }
    }
    char s[25];
    for (int i = 0; i < 24; i++) s[i] = A[rnd[i] % 62];
    s[24] = 0;
    snprintf(out, cap, "chatcmpl-%s", s);
}

// The peer closed its side (or the socket failed): nobody will read the answer.
static int peer_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    if (poll(&p, 1, 0) <= 0) return 0;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// ---------------------------------------------------------------------------------------------
// Responses

static enum MHD_Result queue(struct MHD_Connection *c, serve_req *r, int status, char *body, const char *ctype,
                             const char *allow) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (status == MHD_HTTP_UNAUTHORIZED) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    pthread_mutex_lock(&r->srv->mu);
    int draining = r->srv->draining;
    pthread_mutex_unlock(&r->srv->mu);
    if (draining) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    r->status = status;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static enum MHD_Result queue_json(struct MHD_Connection *c, serve_req *r, int status, char *json) {
    return queue(c, r, status, json, "application/json", NULL);
}

static enum MHD_Result queue_error(struct MHD_Connection *c, serve_req *r, const serve_error *e, const char *allow) {
    snprintf(r->note, sizeof r->note, "%.199s", e->message);
    return queue(c, r, e->status, serve_error_json(e), "application/json", allow);
}

// ---------------------------------------------------------------------------------------------
// The engine's callbacks (on the engine's thread: short, never blocking for long)

static void on_text(void *ctx, int id, const char *text, size_t len) {
    (void)id;
    serve_req *r = ctx;
    if (!r->stream) return;  // a plain answer is taken whole from on_done (set before submit: no race)
    pthread_mutex_lock(&r->mu);
    sb_put(&r->text, text, len);
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

static void on_done(void *ctx, const engine_result *res) {
    serve_req *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (!r->stream) {  // the whole answer, as the engine states it
        r->text.n = 0;
        sb_put(&r->text, res->text ? res->text : "", res->text ? res->text_len : 0);
    }
    r->finish = res->finish;
    r->prompt_tokens = res->prompt_tokens;
    r->completion_tokens = res->n_tokens;
    if (res->finish == FINISH_ERROR) r->error = xstrdup(res->error ? res->error : "the model failed");
    r->done = 1;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    req_unref(r);  // the engine's reference
}

// Waits (r->mu held) for the engine's next callback, SERVE_POLL_MS at most. 1 when the client went
// away (its request is then cancelled; r->mu is released around the call), 2 when the engine is gone.
static int wait_engine(serve_req *r) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_nsec += SERVE_POLL_MS * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&r->cv, &r->mu, &dl);
    if (r->done) return 0;
    if (peer_gone(r->fd)) {
        if (!r->cancel_sent) {
            r->cancel_sent = 1;
            int id = r->id;
            pthread_mutex_unlock(&r->mu);  // engine_cancel takes the engine's lock
            r->srv->o.engine.cancel(r->srv->o.engine.self, id);
            pthread_mutex_lock(&r->mu);
        }
        return 1;
    }
    pthread_mutex_lock(&r->srv->mu);
    int gone = r->srv->engine_gone;
    pthread_mutex_unlock(&r->srv->mu);
    return gone ? 2 : 0;
}

// ---------------------------------------------------------------------------------------------
// Streams

static serve_answer_meta stream_meta(const serve_req *r) {
    serve_answer_meta m = {r->cid, r->created, r->srv->model_id};
    return m;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    serve_req *r = cls;
    serve_answer_meta m = stream_meta(r);
    pthread_mutex_lock(&r->mu);
    while (r->out_pos == r->out.n) {
        r->out.n = r->out_pos = 0;
        if (r->phase == 2) {
            pthread_mutex_unlock(&r->mu);
            return MHD_CONTENT_READER_END_OF_STREAM;
        }
        if (r->phase == 0) {
            serve_sse_role(&r->out, &m, r->include_usage);
            r->phase = 1;
        } else if (r->text.n) {
            serve_sse_text(&r->out, &m, r->include_usage, r->text.p, r->text.n);
            r->text.n = 0;
        } else if (r->done) {
            if (r->finish == FINISH_ERROR) {
                serve_error e;
                serve_error_set(&e, 500, "server_error", NULL, NULL, "%s", r->error);
                serve_sse_error(&r->out, &e);
                snprintf(r->note, sizeof r->note, "%.199s", r->error);
            } else {
                serve_sse_finish(&r->out, &m, r->include_usage, r->finish);
                if (r->include_usage) serve_sse_usage(&r->out, &m, r->prompt_tokens, r->completion_tokens);
            }
            serve_sse_done(&r->out);
            r->phase = 2;
        } else if (ms_since(&r->last_write) > SERVE_SSE_KEEPALIVE_S * 1e3) {
            sb_puts(&r->out, ": keep-alive\n\n");
        } else {
            int w = wait_engine(r);
            if (w == 1) {
                snprintf(r->note, sizeof r->note, "the client went away: cancelled");
                pthread_mutex_unlock(&r->mu);
                return MHD_CONTENT_READER_END_WITH_ERROR;
            }
            if (w == 2) {
                serve_error e;
                serve_error_set(&e, 500, "server_error", NULL, NULL, "the engine stopped before the answer ended");
                serve_sse_error(&r->out, &e);
                serve_sse_done(&r->out);
                r->phase = 2;
            }
        }
    }
    size_t n = r->out.n - r->out_pos;
    if (n > max) n = max;
    memcpy(buf, r->out.p + r->out_pos, n);
    r->out_pos += n;
    clock_gettime(CLOCK_MONOTONIC, &r->last_write);
    pthread_mutex_unlock(&r->mu);
    return (ssize_t)n;
}

static void stream_free(void *cls) {
    serve_req *r = cls;
    pthread_mutex_lock(&r->mu);
    int cancel = r->submitted && !r->done && !r->cancel_sent;
    if (cancel) {
        r->cancel_sent = 1;
        snprintf(r->note, sizeof r->note, "the stream broke off: cancelled");
    }
    int id = r->id;
    pthread_mutex_unlock(&r->mu);
    if (cancel) r->srv->o.engine.cancel(r->srv->o.engine.self, id);
    req_unref(r);
}

// ---------------------------------------------------------------------------------------------
// Routes

static enum MHD_Result chat(struct MHD_Connection *c, serve_req *r) {
    serve_server *s = r->srv;
    serve_chat_request q;
    serve_error e;
    if (serve_parse_chat(r->body.p ? r->body.p : "", r->body.n, &s->lim, &q, &e) != 0)
        return queue_error(c, r, &e, NULL);
    free(r->body.p);
    r->body = (strbuf){0};
    engine_chat ch = {q.messages, q.n_messages, q.images, q.n_images, 0};
    engine_callbacks cb = {on_text, on_done, r};
    r->stream = q.stream;
    r->include_usage = q.stream && q.include_usage;
    make_id(r->cid, sizeof r->cid);
    r->created = (long long)time(NULL);
    pthread_mutex_lock(&r->mu);
    r->refs++;  // the engine's, given back by on_done
    pthread_mutex_unlock(&r->mu);
    char msg[1024] = "";
    int id = s->o.engine.submit_chat(s->o.engine.self, &ch, &q.params, &cb, msg, sizeof msg);
    serve_chat_request_free(&q);
    if (id < 0) {
        pthread_mutex_lock(&r->mu);
        r->refs--;  // no callback will come
        pthread_mutex_unlock(&r->mu);
        serve_error_from_engine(&e, id, msg);
        return queue_error(c, r, &e, NULL);
    }
    pthread_mutex_lock(&r->mu);
    r->id = id;
    r->submitted = 1;
    pthread_mutex_unlock(&r->mu);

    if (r->stream) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, r, stream_free);
        if (!resp) return MHD_NO;
        pthread_mutex_lock(&r->mu);
        r->refs++;  // the response's, given back by stream_free
        pthread_mutex_unlock(&r->mu);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        pthread_mutex_lock(&s->mu);
        int draining = s->draining;
        pthread_mutex_unlock(&s->mu);
        if (draining) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
        r->status = 200;
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ok;
    }

    pthread_mutex_lock(&r->mu);
    int w = 0;
    while (!r->done && (w = wait_engine(r)) == 0) {
    }
    if (w == 1) {  // nobody to answer: close the connection
        snprintf(r->note, sizeof r->note, "the client went away: cancelled");
        r->status = 499;
        pthread_mutex_unlock(&r->mu);
        return MHD_NO;
    }
    if (w == 2 || r->finish == FINISH_ERROR) {
        serve_error_set(&e, 500, "server_error", NULL, NULL, "%s",
                        w == 2 ? "the engine stopped before the answer ended" : r->error);
        pthread_mutex_unlock(&r->mu);
        return queue_error(c, r, &e, NULL);
    }
    serve_answer_meta m = stream_meta(r);
    char *json = serve_completion_json(&m, r->text.p, r->text.n, r->finish, r->prompt_tokens, r->completion_tokens);
    pthread_mutex_unlock(&r->mu);
    return queue_json(c, r, 200, json);
}

static char *health_json(serve_server *s) {
    engine_stats st;
    memset(&st, 0, sizeof st);
    s->o.engine.stats(s->o.engine.self, &st);
    pthread_mutex_lock(&s->mu);
    int draining = s->draining, in_flight = s->in_flight;
    pthread_mutex_unlock(&s->mu);
    const engine_info *info = s->o.info;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", draining ? "shutting_down" : "ok");
    cJSON_AddStringToObject(o, "model", s->model_id);
    cJSON_AddStringToObject(o, "device", info->device ? info->device : "");
    cJSON_AddNumberToObject(o, "max_context", info->max_context);
    cJSON_AddNumberToObject(o, "max_batch", info->max_batch);
    cJSON_AddNumberToObject(o, "max_images", info->max_images);
    cJSON_AddNumberToObject(o, "kv_tokens", (double)info->kv_tokens);
    cJSON_AddNumberToObject(o, "running", st.running);
    cJSON_AddNumberToObject(o, "queued", st.queued);
    cJSON_AddNumberToObject(o, "http_requests_in_flight", in_flight);
    cJSON_AddNumberToObject(o, "requests_done", (double)st.requests_done);
    cJSON_AddNumberToObject(o, "prompt_tokens", (double)st.prompt_tokens);
    cJSON_AddNumberToObject(o, "generated_tokens", (double)st.generated_tokens);
    cJSON_AddNumberToObject(o, "prefill_passes", (double)st.prefill_passes);
    cJSON_AddNumberToObject(o, "decode_passes", (double)st.decode_passes);
    cJSON_AddNumberToObject(o, "kv_blocks", st.kv_blocks);
    cJSON_AddNumberToObject(o, "kv_blocks_free", st.kv_blocks_free);
    cJSON_AddNumberToObject(o, "uptime_s", (double)((long long)time(NULL) - s->created));
    char *j = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return j;
}

// Constant-time comparison of the key a client sent with ours.
static int key_matches(const char *got, size_t got_len, const char *want) {
    size_t wl = strlen(want);
    unsigned diff = (unsigned)(got_len ^ wl);
    for (size_t i = 0; i < wl; i++) diff |= (unsigned char)want[i] ^ (unsigned char)(i < got_len ? got[i] : 0);
    return diff == 0;
}

static int authorized(serve_server *s, struct MHD_Connection *c) {
    if (!s->api_key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return 0;
    h += 7;
    while (*h == ' ') h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t')) n--;
    return key_matches(h, n, s->api_key);
}

static int is_get(const char *m) { return !strcmp(m, "GET") || !strcmp(m, "HEAD"); }

// The first call for a request (its headers read, its body not yet): everything but a chat
// completion is answered here.
static enum MHD_Result begin(struct MHD_Connection *c, serve_req *r, const char *url, const char *method) {
    serve_server *s = r->srv;
    serve_error e;
    int v1 = !strncmp(url, "/v1/", 4) || !strcmp(url, "/v1");
    if (!strcmp(url, "/health")) {
        if (!is_get(method)) goto not_allowed_get;
        return queue_json(c, r, 200, health_json(s));
    }
    if (v1 && !authorized(s, c)) {
        serve_error_set(&e, 401, "authentication_error", NULL, "invalid_api_key",
                        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION)
                            ? "Incorrect API key provided."
                            : "You didn't provide an API key. You need to provide your API key in an Authorization "
                              "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        return queue_error(c, r, &e, NULL);
    }
    if (!strcmp(url, "/v1/models")) {
        if (!is_get(method)) goto not_allowed_get;
        return queue_json(c, r, 200, serve_models_json(s->model_id, s->created));
    }
    if (!strncmp(url, "/v1/models/", 11)) {
        if (!is_get(method)) goto not_allowed_get;
        if (strcmp(url + 11, s->model_id) != 0) {
            serve_error_set(&e, 404, "invalid_request_error", "model", "model_not_found",
                            "The model '%s' does not exist; this server serves '%s'.", url + 11, s->model_id);
            return queue_error(c, r, &e, NULL);
        }
        return queue_json(c, r, 200, serve_model_json(s->model_id, s->created));
    }
    if (!strcmp(url, "/v1/chat/completions")) {
        if (strcmp(method, "POST") != 0) {
            serve_error_set(&e, 405, "invalid_request_error", NULL, "method_not_allowed",
                            "%s is not allowed on %s (POST is).", method, url);
            return queue_error(c, r, &e, "POST");
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno == 0 && end != cl && n > s->o.max_body_bytes) {
                // Answered before the body only when the client waits for a 100 Continue or the body is
                // far over the limit: a client that is sending its body would otherwise see the
                // connection reset under it and never read the 413. Else the body is read and dropped.
                const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_EXPECT);
                if ((expect && strcasecmp(expect, "100-continue") == 0) ||
                    n > s->o.max_body_bytes + ((size_t)16 << 20)) {
                    serve_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large",
                                    "The request body is %llu bytes; this server takes at most %zu (--max-body-bytes).",
                                    n, s->o.max_body_bytes);
                    return queue_error(c, r, &e, NULL);
                }
                r->declared = n;
                r->too_big = 1;
            }
        }
        r->route = ROUTE_CHAT;
        return MHD_YES;  // the body comes next
    }
    serve_error_set(&e, 404, "invalid_request_error", NULL, "unknown_url",
                    "Unknown request URL: %s %s. This server answers POST /v1/chat/completions, GET /v1/models and GET "
                    "/health.",
                    method, url);
    return queue_error(c, r, &e, NULL);
not_allowed_get:
    serve_error_set(&e, 405, "invalid_request_error", NULL, "method_not_allowed", "%s is not allowed on %s (GET is).",
                    method, url);
    return queue_error(c, r, &e, "GET, HEAD");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    serve_server *s = cls;
    serve_req *r = *con_cls;
    if (!r) {
        r = xcalloc(1, sizeof *r);
        r->srv = s;
        r->refs = 1;  // the connection's, given back when the request completes
        r->id = -1;
        pthread_mutex_init(&r->mu, NULL);
        pthread_cond_init(&r->cv, NULL);
        clock_gettime(CLOCK_MONOTONIC, &r->t0);
        r->last_write = r->t0;
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->path, sizeof r->path, "%s", url);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        r->fd = ci ? (int)ci->connect_fd : -1;
        *con_cls = r;
        pthread_mutex_lock(&s->mu);
        s->in_flight++;
        pthread_mutex_unlock(&s->mu);
        return begin(c, r, url, method);
    }
    if (r->route != ROUTE_CHAT || r->status) {  // answered already: what still comes is dropped
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_big && r->body.n + *upload_size > s->o.max_body_bytes) {
            r->too_big = 1;
            free(r->body.p);
            r->body = (strbuf){0};
        }
        if (!r->too_big) sb_put(&r->body, upload, *upload_size);
        else if ((r->discarded += *upload_size) > s->o.max_body_bytes + ((size_t)16 << 20))
            return MHD_NO;  // a chunked body far over the limit: not worth reading to its end for the 413
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->too_big) {
        serve_error e;
        if (r->declared)
            serve_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large",
                            "The request body is %llu bytes; this server takes at most %zu (--max-body-bytes).",
                            r->declared, s->o.max_body_bytes);
        else
            serve_error_set(&e, 413, "invalid_request_error", NULL, "request_too_large",
                            "The request body is larger than this server takes (%zu bytes, --max-body-bytes).",
                            s->o.max_body_bytes);
        return queue_error(c, r, &e, NULL);
    }
    return chat(c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)c;
    serve_server *s = cls;
    serve_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (s->o.log) {
        pthread_mutex_lock(&r->mu);
        int status = r->status ? r->status : 500;
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->note[0])
            snprintf(r->note, sizeof r->note, "%s",
                     toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED   ? "timed out"
                     : toe == MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN ? "the server stopped"
                     : toe == MHD_REQUEST_TERMINATED_CLIENT_ABORT    ? "the client went away"
                     : toe == MHD_REQUEST_TERMINATED_READ_ERROR      ? "read error"
                                                                     : "connection error");
        fprintf(s->o.log, "llava serve: %s %s %d%s prompt_tokens=%d completion_tokens=%d %.1f ms%s%s%s\n", r->method,
                r->path, status, r->stream ? " stream" : "", r->prompt_tokens, r->completion_tokens, ms_since(&r->t0),
                r->note[0] ? " (" : "", r->note, r->note[0] ? ")" : "");
        pthread_mutex_unlock(&r->mu);
    }
    req_unref(r);
    pthread_mutex_lock(&s->mu);
    s->in_flight--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    serve_server *s = cls;
    if (!s->o.log) return;
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    size_t n = strlen(buf);
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
    fprintf(s->o.log, "llava serve: libmicrohttpd: %s\n", buf);
}

// ---------------------------------------------------------------------------------------------
// The server

serve_server *serve_start(const serve_options *o) {
    serve_server *s = xcalloc(1, sizeof *s);
    s->o = *o;
    s->listen_fd = MHD_INVALID_SOCKET;
    s->api_key = o->api_key ? xstrdup(o->api_key) : NULL;
    s->model_id = xstrdup(o->info && o->info->model_id ? o->info->model_id : "llava");
    s->created = (long long)time(NULL);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (o->allow_dir) {
        s->allow_dir = realpath(o->allow_dir, NULL);
        if (!s->allow_dir || !dir_exists(s->allow_dir)) {
            llava_fail("--allow-local-files %s: %s", o->allow_dir, s->allow_dir ? "not a directory" : strerror(errno));
            goto fail;
        }
    }
    s->lim.allow_dir = s->allow_dir;
    s->lim.max_image_bytes = o->max_image_bytes;
    s->lim.max_image_pixels = o->max_image_pixels;
    s->lim.max_images = o->info ? o->info->max_images : 1;

    const char *host = o->host ? o->host : "127.0.0.1";
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_flags = AI_PASSIVE;
    hints.ai_socktype = SOCK_STREAM;
    char port[16];
    snprintf(port, sizeof port, "%d", o->port);
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai != 0 || !ai) {
        llava_fail("--host %s: %s", host, gai ? gai_strerror(gai) : "no address");
        goto fail;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    // (MHD_OPTION_LISTENING_ADDRESS_REUSE is left out: on Linux it sets SO_REUSEPORT, and a second
    // server on a port in use would start and share it instead of failing.)
    s->d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,            //
                            MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s,                         //
                            MHD_OPTION_SOCK_ADDR, ai->ai_addr,                              //
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,                   //
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)SERVE_IDLE_TIMEOUT_S,  //
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)SERVE_MAX_CONNECTIONS,   //
                            MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->d) {
        llava_fail("cannot listen on %s port %d (is the port taken?)", host, o->port);
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    return s;
fail:
    free(s->api_key);
    free(s->allow_dir);
    free(s->model_id);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return NULL;
}

int serve_port(const serve_server *s) { return s->port; }

int serve_in_flight(serve_server *s) {
    pthread_mutex_lock(&s->mu);
    int n = s->in_flight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void serve_quiesce(serve_server *s) {
    pthread_mutex_lock(&s->mu);
    int was = s->draining;
    s->draining = 1;
    pthread_mutex_unlock(&s->mu);
    if (was) return;
    s->listen_fd = MHD_quiesce_daemon(s->d);
    // Linux stops a listening socket at shutdown(): new connections are refused at once instead of
    // waiting in the backlog. The descriptor itself is closed after MHD_stop_daemon.
    if (s->listen_fd != MHD_INVALID_SOCKET) shutdown(s->listen_fd, SHUT_RDWR);
}

void serve_engine_gone(serve_server *s) {
    pthread_mutex_lock(&s->mu);
    s->engine_gone = 1;
    pthread_mutex_unlock(&s->mu);
}

int serve_drain(serve_server *s, double timeout_s) {
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    double t = (double)dl.tv_sec + (double)dl.tv_nsec / 1e9 + timeout_s;
    dl.tv_sec = (time_t)t;
    dl.tv_nsec = (long)((t - (double)dl.tv_sec) * 1e9);
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (s->in_flight > 0)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
            rc = s->in_flight > 0 ? -1 : 0;
            break;
        }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void serve_stop(serve_server *s) {
    if (!s) return;
    MHD_stop_daemon(s->d);
    if (s->listen_fd != MHD_INVALID_SOCKET) close(s->listen_fd);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->api_key);
    free(s->allow_dir);
    free(s->model_id);
    free(s);
}
