// app/serve_http.c, the HTTP side of `llava serve`, in process, over a scripted engine (no model):
// routes, 404/405, authentication, body limits (413 with and without Content-Length), plain and
// streamed answers (SSE framing, usage chunk, [DONE]), the engine's refusals (400, 503) and failures
// (500), a client that hangs up (its request cancelled, plain or streamed), 32 requests at once,
// and the shutdown sequence: quiesce (new connections refused), the running stream delivered to its
// end, drain. The requests go through curl; hang-ups and mid-stream steps through raw sockets.
#include "app/serve_http.h"

#include <cjson/cJSON.h>
#include <pthread.h>

#include "check.h"
#include "data/strbuf.h"
#include "serve_client.h"

// ---------------------------------------------------------------------------------------------
// The scripted engine: it answers "you said: TEXT" (TEXT: the last message's text; " [image WxH]"
// per image), one word per step, and reads the text for what to do: "slow" words take 100 ms each,
// "hang" never ends (until cancelled), "refuse" is a bad request, "fail" fails after one word.

typedef struct job {
    int id;
    char *reply;
    size_t pos, len;
    int words, max_words, delay_ms, hang, fail, cancelled, prompt_tokens;
    finish_reason finish;
    double next;
    engine_callbacks cb;
    struct job *next_job;
} job;

typedef struct {
    pthread_mutex_t mu;
    pthread_t th;
    job *jobs;
    int next_id, closed, quit;
    int submits, cancels;
    gen_params last;
    float last_temperature;
} fake_engine;

static double now_ms(void) { return sc_now() * 1e3; }

static int fake_submit(void *self, const engine_chat *c, const gen_params *p, const engine_callbacks *cb, char *err,
                       size_t cap) {
    fake_engine *f = self;
    const engine_message *m = &c->messages[c->n_messages - 1];
    pthread_mutex_lock(&f->mu);
    if (f->closed) {
        pthread_mutex_unlock(&f->mu);
        snprintf(err, cap, "the engine is shutting down");
        return ENGINE_CLOSED;
    }
    if (strstr(m->text, "refuse")) {
        pthread_mutex_unlock(&f->mu);
        snprintf(err, cap, "the prompt (999 tokens) does not fit the context (256 tokens)");
        return ENGINE_BAD_REQUEST;
    }
    job *j = xcalloc(1, sizeof *j);
    j->id = f->next_id++;
    strbuf sb = {0};
    sb_puts(&sb, "you said: ");
    sb_put(&sb, m->text, m->text_len);
    for (int i = 0; i < c->n_images; i++) {
        char t[64];
        snprintf(t, sizeof t, " [image %dx%d]", c->images[i].w, c->images[i].h);
        sb_puts(&sb, t);
    }
    j->finish = FINISH_STOP;
    for (int i = 0; i < p->n_stop; i++) {
        char *s = strstr(sb.p, p->stop[i]);
        if (s) {
            sb.n = (size_t)(s - sb.p);
            sb.p[sb.n] = 0;
        }
    }
    j->reply = sb.p;
    j->len = sb.n;
    j->max_words = p->max_new_tokens;
    j->delay_ms = strstr(m->text, "slow") ? 100 : 1;
    j->hang = strstr(m->text, "hang") != NULL;
    j->fail = strstr(m->text, "fail") != NULL;
    j->prompt_tokens = 10;
    j->next = now_ms() + j->delay_ms;
    j->cb = *cb;
    j->next_job = f->jobs;
    f->jobs = j;
    f->submits++;
    f->last = *p;
    f->last_temperature = p->sample.temperature;
    pthread_mutex_unlock(&f->mu);
    return j->id;
}

static void fake_cancel(void *self, int id) {
    fake_engine *f = self;
    pthread_mutex_lock(&f->mu);
    for (job *j = f->jobs; j; j = j->next_job)
        if (j->id == id) {
            j->cancelled = 1;
            f->cancels++;
        }
    pthread_mutex_unlock(&f->mu);
}

static void fake_stats(void *self, engine_stats *s) {
    fake_engine *f = self;
    memset(s, 0, sizeof *s);
    pthread_mutex_lock(&f->mu);
    for (job *j = f->jobs; j; j = j->next_job) s->running++;
    s->requests_done = (uint64_t)f->submits;
    pthread_mutex_unlock(&f->mu);
}

static void finish_job(job *j, finish_reason fin, const char *error) {
    engine_result r = {0};
    r.id = j->id;
    r.finish = fin;
    r.text = j->reply;
    r.text_len = j->pos;
    r.n_tokens = j->words;
    r.prompt_tokens = j->prompt_tokens;
    r.error = error;
    j->cb.on_done(j->cb.ctx, &r);
    free(j->reply);
    free(j);
}

// One step: every job whose time has come emits its next word (with its space), or ends.
static void *fake_loop(void *arg) {
    fake_engine *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        if (f->quit) {
            pthread_mutex_unlock(&f->mu);
            return NULL;
        }
        double t = now_ms();
        for (job **pp = &f->jobs; *pp;) {
            job *j = *pp;
            int end = 0;
            finish_reason fin = FINISH_STOP;
            const char *error = NULL;
            if (j->cancelled) end = 1, fin = FINISH_CANCELLED;
            else if (!j->hang && t >= j->next) {
                if (j->pos == j->len) end = 1, fin = FINISH_STOP;
                else if (j->max_words && j->words == j->max_words) end = 1, fin = FINISH_LENGTH;
                else if (j->fail && j->words == 1) end = 1, fin = FINISH_ERROR, error = "the model failed (scripted)";
                else {
                    size_t e = j->pos;
                    while (e < j->len && j->reply[e] != ' ') e++;
                    if (e < j->len) e++;
                    j->cb.on_text(j->cb.ctx, j->id, j->reply + j->pos, e - j->pos);
                    j->pos = e;
                    j->words++;
                    j->next = t + j->delay_ms;
                }
            }
            if (end) {
                *pp = j->next_job;
                finish_job(j, fin, error);
            } else pp = &j->next_job;
        }
        pthread_mutex_unlock(&f->mu);
        usleep(500);
    }
}

static void fake_start(fake_engine *f) {
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    pthread_create(&f->th, NULL, fake_loop, f);
}

// Ends the loop; requests it still holds end as cancelled (their callbacks run, as an engine's would).
static void fake_stop(fake_engine *f) {
    pthread_mutex_lock(&f->mu);
    f->quit = 1;
    pthread_mutex_unlock(&f->mu);
    pthread_join(f->th, NULL);
    while (f->jobs) {
        job *j = f->jobs;
        f->jobs = j->next_job;
        finish_job(j, FINISH_CANCELLED, NULL);
    }
    pthread_mutex_destroy(&f->mu);
}

static float fake_temperature(fake_engine *f) {
    pthread_mutex_lock(&f->mu);
    float t = f->last_temperature;
    pthread_mutex_unlock(&f->mu);
    return t;
}

static int fake_count(fake_engine *f, int *field) {
    pthread_mutex_lock(&f->mu);
    int v = *field;
    pthread_mutex_unlock(&f->mu);
    return v;
}

// ---------------------------------------------------------------------------------------------

static engine_info INFO = {.model_id = "fake-llava",
                           .device = "fake",
                           .max_context = 256,
                           .max_batch = 8,
                           .max_images = 1,
                           .tokens_per_image = 36,
                           .image_size = 48,
                           .vocab_size = 700,
                           .eos = 2,
                           .kv_tokens = 2048};
static char BASE[64];
static char *PNG_URL;

static char *url(const char *path) { return xasprintf("%s%s", BASE, path); }

static const cJSON *jpath(const cJSON *j, const char *a, int idx, const char *b, const char *c) {
    const cJSON *v = cJSON_GetObjectItem(j, a);
    if (idx >= 0) v = cJSON_GetArrayItem(v, idx);
    if (b) v = cJSON_GetObjectItem(v, b);
    if (c) v = cJSON_GetObjectItem(v, c);
    return v;
}

// A request that must be answered with `status` and an OpenAI error of this type (and param, "" null).
static void expect_error(const char *method, const char *path, const char *body, const char *const *extra, int status,
                         const char *type, const char *param) {
    char *u = url(path);
    sc_reply r;
    sc_curl(method, u, body, extra, &r);
    CHECK(r.status == status, "%s %s: status %d, want %d: %s", method, path, r.status, status, r.body);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    CHECK(cJSON_IsObject(e), "%s %s: no error object: %s", method, path, r.body);
    const cJSON *t = cJSON_GetObjectItem(e, "type"), *p = cJSON_GetObjectItem(e, "param"),
                *m = cJSON_GetObjectItem(e, "message"), *c = cJSON_GetObjectItem(e, "code");
    CHECK(cJSON_IsString(t) && !strcmp(t->valuestring, type), "%s %s: type: %s", method, path, r.body);
    CHECK(cJSON_IsString(m) && m->valuestring[0], "%s %s: message: %s", method, path, r.body);
    CHECK(c != NULL, "%s %s: no code member: %s", method, path, r.body);
    if (param[0]) CHECK(cJSON_IsString(p) && !strcmp(p->valuestring, param), "%s %s: param: %s", method, path, r.body);
    else CHECK(cJSON_IsNull(p), "%s %s: param not null: %s", method, path, r.body);
    CHECK(strcasestr(r.headers, "content-type: application/json") != NULL, "%s %s: headers %s", method, path,
          r.headers);
    cJSON_Delete(j);
    sc_reply_free(&r);
    free(u);
}

// POST a chat body; the answer's content (a plain answer) or NULL.
static char *chat_plain(const char *body, const char *const *extra, char *finish, int *completion_tokens) {
    char *u = url("/v1/chat/completions");
    sc_reply r;
    sc_curl("POST", u, body, extra, &r);
    free(u);
    char *out = NULL;
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *c = jpath(j, "choices", 0, "message", "content");
    if (r.status == 200 && cJSON_IsString(c)) {
        out = xstrdup(c->valuestring);
        const cJSON *f = jpath(j, "choices", 0, "finish_reason", NULL);
        if (finish) snprintf(finish, 16, "%s", cJSON_IsString(f) ? f->valuestring : "?");
        const cJSON *ct = jpath(j, "usage", -1, "completion_tokens", NULL);
        if (completion_tokens) *completion_tokens = cJSON_IsNumber(ct) ? ct->valueint : -1;
    } else fprintf(stderr, "chat_plain: %d %s\n", r.status, r.body);
    cJSON_Delete(j);
    sc_reply_free(&r);
    return out;
}

static void test_routes(fake_engine *f) {
    char *u = url("/health");
    sc_reply r;
    sc_curl("GET", u, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"status\":\"ok\"") && strstr(r.body, "\"model\":\"fake-llava\""),
          "health: %d %s", r.status, r.body);
    sc_reply_free(&r);
    const char *head[] = {"-I", NULL};
    sc_curl("HEAD", u, NULL, head, &r);
    CHECK(r.status == 200 && !strchr(r.body, '{'), "HEAD /health: %d, %s", r.status, r.body);  // -I: headers only
    sc_reply_free(&r);
    free(u);
    u = url("/v1/models");
    sc_curl("GET", u, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"object\":\"list\"") && strstr(r.body, "\"id\":\"fake-llava\""),
          "models: %d %s", r.status, r.body);
    sc_reply_free(&r);
    free(u);
    u = url("/v1/models/fake-llava");
    sc_curl("GET", u, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"object\":\"model\""), "model: %d %s", r.status, r.body);
    sc_reply_free(&r);
    free(u);
    expect_error("GET", "/v1/models/gpt-4", NULL, NULL, 404, "invalid_request_error", "model");
    expect_error("GET", "/nothing", NULL, NULL, 404, "invalid_request_error", "");
    expect_error("GET", "/v1/completions", NULL, NULL, 404, "invalid_request_error", "");
    expect_error("GET", "/v1/chat/completions", NULL, NULL, 405, "invalid_request_error", "");
    expect_error("PUT", "/v1/chat/completions", "{}", NULL, 405, "invalid_request_error", "");
    expect_error("POST", "/health", "{}", NULL, 405, "invalid_request_error", "");
    expect_error("DELETE", "/v1/models", NULL, NULL, 405, "invalid_request_error", "");
    u = url("/v1/chat/completions");
    sc_curl("GET", u, NULL, NULL, &r);
    CHECK(strcasestr(r.headers, "allow: POST") != NULL, "405 without Allow: %s", r.headers);
    sc_reply_free(&r);
    free(u);
    CHECK_EQ_INT(fake_count(f, &f->submits), 0);
}

static void test_chat(fake_engine *f) {
    char finish[16];
    int ct = 0;
    char *c = chat_plain("{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"hello there\"}]}", NULL,
                         finish, &ct);
    CHECK(c && !strcmp(c, "you said: hello there"), "content %s", c ? c : "(none)");
    CHECK_EQ_STR(finish, "stop");
    CHECK_EQ_INT(ct, 4);
    free(c);
    CHECK_NEAR(fake_temperature(f), 1.0, 0);  // OpenAI's default
    // The whole answer object.
    char *u = url("/v1/chat/completions");
    sc_reply r;
    sc_curl("POST", u, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0}", NULL, &r);
    cJSON *j = cJSON_Parse(r.body);
    CHECK(r.status == 200 && j, "%d %s", r.status, r.body);
    const cJSON *id = cJSON_GetObjectItem(j, "id"), *obj = cJSON_GetObjectItem(j, "object"),
                *model = cJSON_GetObjectItem(j, "model"), *created = cJSON_GetObjectItem(j, "created");
    CHECK(cJSON_IsString(id) && !strncmp(id->valuestring, "chatcmpl-", 9) && strlen(id->valuestring) == 33, "id: %s",
          r.body);
    CHECK(cJSON_IsString(obj) && !strcmp(obj->valuestring, "chat.completion"), "object: %s", r.body);
    CHECK(cJSON_IsString(model) && !strcmp(model->valuestring, "fake-llava"), "model: %s", r.body);
    CHECK(cJSON_IsNumber(created) && created->valuedouble > 1.6e9, "created: %s", r.body);
    const cJSON *role = jpath(j, "choices", 0, "message", "role"), *idx = jpath(j, "choices", 0, "index", NULL);
    CHECK(cJSON_IsString(role) && !strcmp(role->valuestring, "assistant") && cJSON_IsNumber(idx) && idx->valueint == 0,
          "choice: %s", r.body);
    const cJSON *pt = jpath(j, "usage", -1, "prompt_tokens", NULL), *tt = jpath(j, "usage", -1, "total_tokens", NULL);
    CHECK(cJSON_IsNumber(pt) && pt->valueint == 10 && cJSON_IsNumber(tt) && tt->valueint == 13, "usage: %s", r.body);
    CHECK(strcasestr(r.headers, "content-type: application/json") != NULL, "headers %s", r.headers);
    CHECK_NEAR(fake_temperature(f), 0, 0);
    cJSON_Delete(j);
    sc_reply_free(&r);
    free(u);
    // max_tokens ends with "length"; a stop string cuts; an image reaches the engine decoded.
    c = chat_plain("{\"messages\":[{\"role\":\"user\",\"content\":\"one two three four\"}],\"max_tokens\":2}", NULL,
                   finish, &ct);
    CHECK(c && !strcmp(c, "you said: "), "content %s", c ? c : "(none)");
    CHECK_EQ_STR(finish, "length");
    CHECK_EQ_INT(ct, 2);
    free(c);
    c = chat_plain("{\"messages\":[{\"role\":\"user\",\"content\":\"one two STOP three\"}],\"stop\":[\"STOP\"]}", NULL,
                   finish, NULL);
    CHECK(c && !strcmp(c, "you said: one two "), "content %s", c ? c : "(none)");
    free(c);
    char *body = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}}]}]}",
        PNG_URL);
    c = chat_plain(body, NULL, finish, NULL);
    CHECK(c && !strcmp(c, "you said: look [image 4x3]"), "content %s", c ? c : "(none)");
    free(c);
    free(body);
    // The engine's refusals and failures.
    expect_error("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"refuse\"}]}", NULL,
                 400, "invalid_request_error", "");
    expect_error("POST", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"fail now\"}]}", NULL,
                 500, "server_error", "");
}

static void test_stream(fake_engine *f) {
    (void)f;
    char *u = url("/v1/chat/completions");
    sc_reply r;
    sc_curl("POST", u,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"stream \\\"this\\\" please\"}],\"stream\":true,"
            "\"stream_options\":{\"include_usage\":true}}",
            NULL, &r);
    CHECK(r.status == 200, "stream: %d %s", r.status, r.body);
    CHECK(strcasestr(r.headers, "content-type: text/event-stream") != NULL, "headers %s", r.headers);
    CHECK(strcasestr(r.headers, "transfer-encoding: chunked") != NULL, "headers %s", r.headers);
    char text[256], finish[16];
    int n = 0, usage = 0;
    CHECK(sc_sse_content(r.body, text, sizeof text, &n, finish, sizeof finish, &usage) == 0, "SSE framing: %s", r.body);
    CHECK_EQ_STR(text, "you said: stream \"this\" please");
    CHECK_EQ_STR(finish, "stop");
    CHECK_EQ_INT(usage, 1);
    // role, the text, finish, usage, [DONE]: the fake engine gives 5 words, and the server sends the
    // text that came since its last write as one event (a loaded machine joins some words).
    CHECK(n >= 1 + 1 + 1 + 1 + 1 && n <= 1 + 5 + 1 + 1 + 1, "%d events", n);
    CHECK(strstr(r.body, "\"delta\":{\"role\":\"assistant\",\"content\":\"\"}") == r.body + 6 + 113 ||
              strstr(r.body, "\"delta\":{\"role\":\"assistant\"") != NULL,
          "first chunk: %s", r.body);
    CHECK(!strncmp(strstr(r.body, "data: ") + 6, "{\"id\":\"chatcmpl-", 16), "%s", r.body);
    const char *role = strstr(r.body, "\"role\"");
    const char *first_content = strstr(r.body, "\"content\":\"you");
    CHECK(role && first_content && role < first_content, "the role chunk comes first: %s", r.body);
    sc_reply_free(&r);
    // Without include_usage: no usage chunk, no "usage" key; a length finish.
    sc_curl("POST", u,
            "{\"messages\":[{\"role\":\"user\",\"content\":\"a b c d\"}],\"stream\":true,\"max_completion_tokens\":3}",
            NULL, &r);
    CHECK(sc_sse_content(r.body, text, sizeof text, &n, finish, sizeof finish, &usage) == 0, "SSE: %s", r.body);
    CHECK_EQ_STR(text, "you said: a ");
    CHECK_EQ_STR(finish, "length");
    CHECK_EQ_INT(usage, 0);
    CHECK(strstr(r.body, "usage") == NULL, "usage key: %s", r.body);
    sc_reply_free(&r);
    // A failure after the stream began is an error event, then [DONE].
    sc_curl("POST", u, "{\"messages\":[{\"role\":\"user\",\"content\":\"fail soon\"}],\"stream\":true}", NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "data: {\"error\":{") && strstr(r.body, "scripted") &&
              strstr(r.body, "data: [DONE]\n\n"),
          "failed stream: %s", r.body);
    sc_reply_free(&r);
    // A refused stream is a plain error.
    expect_error("POST", "/v1/chat/completions",
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"refuse\"}],\"stream\":true}", NULL, 400,
                 "invalid_request_error", "");
    free(u);
}

static void test_bad_requests(fake_engine *f) {
    int before = fake_count(f, &f->submits);
    const char *P = "/v1/chat/completions";
    expect_error("POST", P, "{not json", NULL, 400, "invalid_request_error", "");
    expect_error("POST", P, "", NULL, 400, "invalid_request_error", "");
    expect_error("POST", P, "{\"messages\":5}", NULL, 400, "invalid_request_error", "messages");
    expect_error("POST", P, "{\"messages\":[]}", NULL, 400, "invalid_request_error", "messages");
    expect_error("POST", P, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", NULL, 400,
                 "invalid_request_error", "temperature");
    expect_error("POST", P, "{\"messages\":[{\"role\":\"assistant\",\"content\":\"x\"}]}", NULL, 400,
                 "invalid_request_error", "messages[0].role");
    expect_error("POST", P, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":3}", NULL, 400,
                 "invalid_request_error", "n");
    expect_error("POST", P,
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                 "\"https://example.com/cat.png\"}}]}]}",
                 NULL, 400, "invalid_request_error", "messages[0].content[0].image_url.url");
    expect_error("POST", P,
                 "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
                 "\"/etc/passwd\"}}]}]}",
                 NULL, 400, "invalid_request_error", "messages[0].content[0].image_url.url");
    char *two = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"%s\"},"
        "{\"type\":\"image_url\",\"image_url\":\"%s\"}]}]}",
        PNG_URL, PNG_URL);
    expect_error("POST", P, two, NULL, 400, "invalid_request_error", "messages");
    free(two);
    // Bodies over --max-body-bytes (64 KiB here): with a Content-Length, and chunked.
    size_t big = 100 << 10;
    char *body = xmalloc(big + 64);
    int n = snprintf(body, 64, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    memset(body + n, 'a', big);
    strcpy(body + n + big, "\"}]}");
    expect_error("POST", P, body, NULL, 413, "invalid_request_error", "");
    const char *chunked[] = {"-H", "Transfer-Encoding: chunked", NULL};
    expect_error("POST", P, body, chunked, 413, "invalid_request_error", "");
    // An image over --max-image-bytes (1 KiB here).
    body[n] = 0;
    char *img = xmalloc(4096);
    memset(img, 'A', 4000);
    img[4000] = 0;
    char *b2 = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
        "\"data:image/png;base64,%s\"}]}]}",
        img);
    expect_error("POST", P, b2, NULL, 413, "invalid_request_error", "messages[0].content[0].image_url");
    free(b2);
    free(img);
    free(body);
    CHECK_EQ_INT(fake_count(f, &f->submits), before);  // none of them reached the engine
    // The server still answers.
    char *c = chat_plain("{\"messages\":[{\"role\":\"user\",\"content\":\"still here\"}]}", NULL, NULL, NULL);
    CHECK(c && !strcmp(c, "you said: still here"), "after bad requests: %s", c ? c : "(none)");
    free(c);
}

static void test_hangups(fake_engine *f) {
    int port = atoi(strrchr(BASE, ':') + 1);
    // A stream whose reader goes away after the first word.
    int c0 = fake_count(f, &f->cancels);
    int fd = sc_post_raw(port, "/v1/chat/completions",
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"slow slow slow slow slow slow slow slow "
                         "slow\"}],\"stream\":true}",
                         NULL);
    char *buf = NULL;
    size_t len = 0;
    CHECK(sc_read_until(fd, &buf, &len, 0, "\"content\":\"you ", 5), "first word: %s", buf ? buf : "");
    close(fd);
    double t0 = sc_now();
    while (fake_count(f, &f->cancels) == c0 && sc_now() - t0 < 3) usleep(10000);
    CHECK(fake_count(f, &f->cancels) == c0 + 1, "the stream's request was not cancelled");
    free(buf);
    // A plain request whose client hangs up while it waits.
    fd = sc_post_raw(port, "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hang\"}]}", NULL);
    usleep(100000);
    close(fd);
    t0 = sc_now();
    while (fake_count(f, &f->cancels) == c0 + 1 && sc_now() - t0 < 3) usleep(10000);
    CHECK(fake_count(f, &f->cancels) == c0 + 2, "the plain request was not cancelled");
}

typedef struct {
    int i, ok;
} conc_arg;

static void *conc_one(void *arg) {
    conc_arg *a = arg;
    char *body = xasprintf("{\"messages\":[{\"role\":\"user\",\"content\":\"number %d\"}],\"stream\":%s}", a->i,
                           a->i % 2 ? "true" : "false");
    char want[64];
    snprintf(want, sizeof want, "you said: number %d", a->i);
    if (a->i % 2) {
        char *u = url("/v1/chat/completions");
        sc_reply r;
        sc_curl("POST", u, body, NULL, &r);
        char text[128];
        a->ok = r.status == 200 && sc_sse_content(r.body, text, sizeof text, NULL, NULL, 0, NULL) == 0 &&
                !strcmp(text, want);
        sc_reply_free(&r);
        free(u);
    } else {
        char *c = chat_plain(body, NULL, NULL, NULL);
        a->ok = c && !strcmp(c, want);
        free(c);
    }
    free(body);
    return NULL;
}

static void test_concurrent(void) {
    enum { N = 32 };
    pthread_t th[N];
    conc_arg a[N];
    double t0 = sc_now();
    for (int i = 0; i < N; i++) {
        a[i] = (conc_arg){i, 0};
        pthread_create(&th[i], NULL, conc_one, &a[i]);
    }
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        ok += a[i].ok;
    }
    CHECK(ok == N, "%d of %d concurrent requests answered right", ok, N);
    printf("%d concurrent requests (half streamed) in %.2f s\n", N, sc_now() - t0);
}

static void test_auth(fake_engine *f) {
    serve_options o = {.host = "127.0.0.1",
                       .port = 0,
                       .api_key = "sekret-key",
                       .max_body_bytes = 1 << 20,
                       .max_image_bytes = 1 << 20,
                       .info = &INFO,
                       .engine = {f, fake_submit, fake_cancel, fake_stats},
                       .log = stderr};
    serve_server *s = serve_start(&o);
    CHECK(s != NULL, "start: %s", llava_errmsg());
    if (!s) return;
    char saved[64];
    snprintf(saved, sizeof saved, "%s", BASE);
    snprintf(BASE, sizeof BASE, "http://127.0.0.1:%d", serve_port(s));
    char *u = url("/health");
    sc_reply r;
    sc_curl("GET", u, NULL, NULL, &r);
    CHECK(r.status == 200, "/health needs no key: %d", r.status);
    sc_reply_free(&r);
    free(u);
    const char *wrong[] = {"-H", "Authorization: Bearer nope", NULL};
    const char *basic[] = {"-H", "Authorization: Basic c2VrcmV0LWtleQ==", NULL};
    const char *prefix[] = {"-H", "Authorization: Bearer sekret-ke", NULL};
    const char *right[] = {"-H", "Authorization: Bearer sekret-key", NULL};
    const char *chat = "{\"messages\":[{\"role\":\"user\",\"content\":\"secret\"}]}";
    expect_error("GET", "/v1/models", NULL, NULL, 401, "authentication_error", "");
    expect_error("GET", "/v1/models", NULL, wrong, 401, "authentication_error", "");
    expect_error("GET", "/v1/models", NULL, basic, 401, "authentication_error", "");
    expect_error("GET", "/v1/models", NULL, prefix, 401, "authentication_error", "");
    expect_error("POST", "/v1/chat/completions", chat, NULL, 401, "authentication_error", "");
    expect_error("POST", "/v1/chat/completions", chat, wrong, 401, "authentication_error", "");
    expect_error("GET", "/v1/nothing", NULL, NULL, 401, "authentication_error", "");
    u = url("/v1/models");
    sc_curl("GET", u, NULL, NULL, &r);
    CHECK(strcasestr(r.headers, "www-authenticate: Bearer") != NULL, "401 headers %s", r.headers);
    CHECK(strstr(r.body, "\"code\":\"invalid_api_key\"") != NULL, "401 body %s", r.body);
    sc_reply_free(&r);
    sc_curl("GET", u, NULL, right, &r);
    CHECK(r.status == 200, "with the key: %d %s", r.status, r.body);
    sc_reply_free(&r);
    free(u);
    char *c = chat_plain(chat, right, NULL, NULL);
    CHECK(c && !strcmp(c, "you said: secret"), "chat with the key: %s", c ? c : "(none)");
    free(c);

    // The engine's loop ends with a request unfinished: the waiting client gets a 500, not a hang.
    int fd =
        sc_post_raw(serve_port(s), "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"hang\"}]}",
                    "Authorization: Bearer sekret-key");
    usleep(200000);
    serve_engine_gone(s);
    char *buf = NULL;
    size_t len = 0;
    sc_read_until(fd, &buf, &len, 0, NULL, 5);
    CHECK(buf && strstr(buf, " 500 ") && strstr(buf, "the engine stopped"), "engine gone: %s", buf ? buf : "");
    free(buf);
    close(fd);
    serve_quiesce(s);
    CHECK(serve_drain(s, 5) == 0, "drain");
    serve_stop(s);
    snprintf(BASE, sizeof BASE, "%s", saved);
}

// The shutdown sequence of `llava serve` on SIGTERM: quiesce, the engine finishes, drain, stop.
static void test_shutdown(serve_server *s, fake_engine *f) {
    int port = serve_port(s);
    int fd = sc_post_raw(port, "/v1/chat/completions",
                         "{\"messages\":[{\"role\":\"user\",\"content\":\"slow to the end\"}],\"stream\":true}", NULL);
    char *buf = NULL;
    size_t len = 0;
    CHECK(sc_read_until(fd, &buf, &len, 0, "\"content\":\"you ", 5), "first word: %s", buf ? buf : "");
    CHECK(serve_in_flight(s) == 1, "in flight: %d", serve_in_flight(s));
    serve_quiesce(s);
    pthread_mutex_lock(&f->mu);
    f->closed = 1;  // engine_shutdown
    pthread_mutex_unlock(&f->mu);
    int again = sc_connect(port);
    CHECK(again < 0, "a new connection was accepted after quiesce");
    if (again >= 0) close(again);
    CHECK(sc_read_until(fd, &buf, &len, 0, NULL, 10), "the stream did not end");
    char *body = strstr(buf, "\r\n\r\n");
    char text[128] = "";
    CHECK(body && sc_sse_content(body + 4, text, sizeof text, NULL, NULL, 0, NULL) == 0, "stream: %s", buf);
    CHECK_EQ_STR(text, "you said: slow to the end");
    CHECK(strcasestr(buf, "connection: close") != NULL, "no Connection: close while draining: %s", buf);
    close(fd);
    free(buf);
    CHECK(serve_drain(s, 5) == 0, "drain: %d in flight", serve_in_flight(s));
    serve_stop(s);
}

int main(void) {
    char *tmp = check_tmpdir();
    image_u8 im = {4, 3, calloc(36, 1)};
    char *png = path_join(tmp, "i.png");
    image_write_png(png, &im);
    PNG_URL = sc_data_url(png);
    fake_engine f;
    fake_start(&f);
    FILE *log = tmpfile();
    serve_options o = {.host = "127.0.0.1",
                       .port = 0,
                       .max_body_bytes = 64 << 10,
                       .max_image_bytes = 1 << 10,
                       .info = &INFO,
                       .engine = {&f, fake_submit, fake_cancel, fake_stats},
                       .log = log};
    serve_server *s = serve_start(&o);
    CHECK(s != NULL, "start: %s", llava_errmsg());
    if (!s) return check_done();
    snprintf(BASE, sizeof BASE, "http://127.0.0.1:%d", serve_port(s));
    // The port is taken now: a second server on it fails with a message.
    serve_options o2 = o;
    o2.port = serve_port(s);
    serve_server *s2 = serve_start(&o2);
    CHECK(s2 == NULL && strstr(llava_errmsg(), "cannot listen"), "second server on the port: %s", llava_errmsg());
    if (s2) serve_stop(s2);
    o2.port = 0;
    o2.allow_dir = "/nonexistent-dir";
    CHECK(serve_start(&o2) == NULL && strstr(llava_errmsg(), "--allow-local-files"), "%s", llava_errmsg());

    test_routes(&f);
    test_chat(&f);
    test_stream(&f);
    test_bad_requests(&f);
    test_hangups(&f);
    test_concurrent();
    test_auth(&f);
    test_shutdown(s, &f);
    fake_stop(&f);

    // One line per request.
    fflush(log);
    rewind(log);
    char line[1024];
    int lines = 0, chat_ok = 0, stream_ok = 0, e413 = 0;
    while (fgets(line, sizeof line, log)) {
        lines++;
        chat_ok +=
            strstr(line, "llava serve: POST /v1/chat/completions 200 prompt_tokens=10 completion_tokens=") != NULL;
        stream_ok += strstr(line, "POST /v1/chat/completions 200 stream prompt_tokens=10") != NULL;
        e413 += strstr(line, "POST /v1/chat/completions 413 ") != NULL;
    }
    CHECK(lines > 60 && chat_ok > 10 && stream_ok > 10 && e413 == 3, "log: %d lines, %d chat, %d stream, %d 413", lines,
          chat_ok, stream_ok, e413);
    fclose(log);
    free(PNG_URL);
    free(png);
    free(im.rgb);
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
