// `llava serve` over the demo's trained model (the ctest fixture demo_model), as a client sees it:
// the executable started on a free loopback port with an API key, then
//   - plain and streamed chat completions (temperature 0) answer exactly what `llava generate` answers
//     for the same image and question (both its engine path and its --no-cache reference path), and for
//     two images in one message (--max-images 2);
//   - 32 requests at once (half streamed, images 0..31, their own questions) all answer what
//     `llava generate --questions` answers for them;
//   - the key: /v1 routes refuse a missing or wrong key (401), /health needs none;
//   - every class of bad request gets its 4xx in OpenAI's error shape, the engine's refusals
//     included (max_tokens past the context, a prompt longer than the context), and the server
//     answers correctly afterwards; local files only inside --allow-local-files;
//   - a client that hangs up mid-stream has its request cancelled;
//   - SIGTERM with a streamed request in flight: no new connections, that request runs to its
//     end (finish_reason "length", [DONE]), and the server exits 0.
// Runs $LLAVA_BIN on $LLAVA_DEMO_DIR (CMake sets both).
#include <cjson/cJSON.h>
#include <pthread.h>
#include <signal.h>

#include "check.h"
#include "data/strbuf.h"
#include "serve_client.h"

#define N_CONC 32
#define KEY "test-key-0123"

static const char *BIN, *DEMO;
static char MODEL[512], TOK[512], IMAGES[512], TMP[256], LOG[300];
static char BASE[64];
static int PORT;
static pid_t SRV;
static const char *AUTH[] = {"-H", "Authorization: Bearer " KEY, NULL};
static char *QUESTION[N_CONC], *REF[N_CONC], *URL[N_CONC];

// Runs argv, returns its exit status; its stdout into *out (NUL-terminated) when out is not NULL.
static int run(const char *const *argv, char **out) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        close(pfd[0]);
        close(pfd[1]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(pfd[1]);
    char *buf = NULL;
    size_t len = 0;
    sc_read_until(pfd[0], &buf, &len, 0, NULL, 120);
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    if (out) *out = buf ? buf : calloc(1, 1);
    else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Starts the server and waits for its "listening on" line.
static int start_server(void) {
    int pfd[2];
    if (pipe(pfd) != 0) return -1;
    SRV = fork();
    if (SRV == 0) {
        dup2(pfd[1], 1);
        int lf = open(LOG, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(lf, 2);
        close(pfd[0]);
        close(pfd[1]);
        execl(BIN, "llava", "serve", "--model", MODEL, "--tokenizer", TOK, "--port", "0", "--api-key", KEY,
              "--model-id", "demo-llava", "--allow-local-files", IMAGES, "--max-body-bytes", "256K",
              "--max-image-bytes", "64K", "--max-images", "2", (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);
    char *buf = NULL;
    size_t len = 0;
    int ok = sc_read_until(pfd[0], &buf, &len, 0, "(model demo-llava)\n", 60);
    close(pfd[0]);
    const char *at = buf ? strstr(buf, "listening on http://127.0.0.1:") : NULL;
    CHECK(ok && at, "the server did not say where it listens: %s", buf ? buf : "(nothing)");
    if (at) PORT = atoi(at + strlen("listening on http://127.0.0.1:"));
    free(buf);
    snprintf(BASE, sizeof BASE, "http://127.0.0.1:%d", PORT);
    return PORT > 0 ? 0 : -1;
}

static char *url(const char *path) { return xasprintf("%s%s", BASE, path); }

// A chat body about image i (its data: URL, its question), greedy, and extra fields.
static char *chat_body(int i, int stream, const char *extra) {
    return xasprintf(
        "{\"model\":\"anything\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"%s\"}},{\"type\":\"text\",\"text\":\"%s\"}]}],\"temperature\":0,"
        "\"stream\":%s%s%s}",
        URL[i], QUESTION[i], stream ? "true" : "false", extra ? "," : "", extra ? extra : "");
}

typedef struct {
    char text[512], finish[16];
    int status, prompt_tokens, completion_tokens, usage;
    char body[1024];
} answer;

// POSTs a chat body (with the key) and reads the answer, plain or streamed.
static void ask(const char *body, int stream, const char *const *extra, answer *a) {
    memset(a, 0, sizeof *a);
    char *u = url("/v1/chat/completions");
    sc_reply r;
    sc_curl("POST", u, body, extra ? extra : AUTH, &r);
    free(u);
    a->status = r.status;
    snprintf(a->body, sizeof a->body, "%s", r.body);
    if (r.status == 200 && stream) {
        int n = 0;
        if (sc_sse_content(r.body, a->text, sizeof a->text, &n, a->finish, sizeof a->finish, &a->usage) != 0)
            snprintf(a->finish, sizeof a->finish, "bad-sse");
        const char *u2 = strstr(r.body, "\"usage\":{\"prompt_tokens\":");
        if (u2)
            sscanf(u2, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d", &a->prompt_tokens,
                   &a->completion_tokens);
    } else if (r.status == 200) {
        cJSON *j = cJSON_Parse(r.body);
        const cJSON *c0 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
        const cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(c0, "message"), "content");
        const cJSON *f = cJSON_GetObjectItem(c0, "finish_reason");
        const cJSON *us = cJSON_GetObjectItem(j, "usage");
        if (cJSON_IsString(c)) snprintf(a->text, sizeof a->text, "%s", c->valuestring);
        if (cJSON_IsString(f)) snprintf(a->finish, sizeof a->finish, "%s", f->valuestring);
        a->prompt_tokens =
            cJSON_GetObjectItem(us, "prompt_tokens") ? cJSON_GetObjectItem(us, "prompt_tokens")->valueint : -1;
        a->completion_tokens =
            cJSON_GetObjectItem(us, "completion_tokens") ? cJSON_GetObjectItem(us, "completion_tokens")->valueint : -1;
        cJSON_Delete(j);
    }
    sc_reply_free(&r);
}

// The request must get `status` with an OpenAI error of `type` whose message holds `needle`.
static void expect_error(const char *method, const char *path, const char *body, const char *const *extra, int status,
                         const char *type, const char *needle) {
    char *u = url(path);
    sc_reply r;
    sc_curl(method, u, body, extra, &r);
    free(u);
    cJSON *j = cJSON_Parse(r.body);
    const cJSON *e = cJSON_GetObjectItem(j, "error");
    const cJSON *t = cJSON_GetObjectItem(e, "type"), *m = cJSON_GetObjectItem(e, "message");
    CHECK(r.status == status, "%s %s: %d, want %d: %.300s", method, path, r.status, status, r.body);
    CHECK(cJSON_IsString(t) && !strcmp(t->valuestring, type), "%s %s: error type: %.300s", method, path, r.body);
    CHECK(cJSON_IsString(m) && strstr(m->valuestring, needle), "%s %s: message lacks \"%s\": %.300s", method, path,
          needle, r.body);
    CHECK(cJSON_HasObjectItem(e, "param") && cJSON_HasObjectItem(e, "code"), "%s %s: shape: %.300s", method, path,
          r.body);
    cJSON_Delete(j);
    sc_reply_free(&r);
}

static void load_questions(void) {
    char *qa_path = xasprintf("%s/data/eval_qa.json", DEMO);
    size_t n;
    char *qa = sc_read_file(qa_path, &n);
    CHECK(qa != NULL, "cannot read %s (the demo_fast fixture makes it)", qa_path);
    if (!qa) exit(check_done());
    cJSON *j = cJSON_Parse(qa);
    char *qpath = xasprintf("%s/q.jsonl", TMP);
    FILE *qf = fopen(qpath, "w");
    for (int i = 0; i < N_CONC; i++) {
        const cJSON *it = cJSON_GetArrayItem(j, i);
        const char *v = cJSON_GetArrayItem(cJSON_GetObjectItem(it, "conversations"), 0)
                            ->child->next->valuestring;  // {"from", "value"}
        const char *q = strncmp(v, "<image>\n", 8) == 0 ? v + 8 : v;
        QUESTION[i] = xstrdup(q);
        const char *img = cJSON_GetObjectItem(it, "image")->valuestring;
        char *p = xasprintf("%s/data/%s", DEMO, img);
        URL[i] = sc_data_url(p);
        CHECK(URL[i] != NULL, "cannot read %s", p);
        free(p);
        fprintf(qf, "{\"question_id\": %d, \"image\": \"%s\", \"text\": \"%s\"}\n", i, img, q);
    }
    fclose(qf);
    cJSON_Delete(j);
    free(qa);
    // The references: llava generate over the same questions.
    char *apath = xasprintf("%s/a.jsonl", TMP), *folder = xasprintf("%s/data", DEMO);
    const char *argv[] = {BIN,   "generate",       "--model", MODEL,       "--tokenizer", TOK, "--questions",
                          qpath, "--image-folder", folder,    "--answers", apath,         NULL};
    CHECK(run(argv, NULL) == 0, "llava generate --questions failed");
    FILE *af = fopen(apath, "r");
    char line[4096];
    int got = 0;
    while (af && fgets(line, sizeof line, af)) {
        cJSON *a = cJSON_Parse(line);
        int id = cJSON_GetObjectItem(a, "question_id")->valueint;
        if (id >= 0 && id < N_CONC) REF[id] = xstrdup(cJSON_GetObjectItem(a, "text")->valuestring), got++;
        cJSON_Delete(a);
    }
    if (af) fclose(af);
    CHECK(got == N_CONC, "%d reference answers", got);
    free(apath);
    free(folder);
    free(qpath);
    free(qa_path);
}

static void test_same_as_generate(void) {
    // llava generate, one question: the engine path and the --no-cache reference path.
    char *img = xasprintf("%s/data/images/eval_00000.png", DEMO);
    const char *g1[] = {BIN,       "generate", "--model",  MODEL,       "--tokenizer", TOK,
                        "--image", img,        "--prompt", QUESTION[0], NULL};
    const char *g2[] = {BIN,       "generate", "--model",  MODEL,       "--tokenizer", TOK,
                        "--image", img,        "--prompt", QUESTION[0], "--no-cache",  NULL};
    char *o1 = NULL, *o2 = NULL;
    CHECK(run(g1, &o1) == 0 && run(g2, &o2) == 0, "llava generate failed");
    size_t l1 = strlen(o1);
    if (l1 && o1[l1 - 1] == '\n') o1[l1 - 1] = 0;
    size_t l2 = strlen(o2);
    if (l2 && o2[l2 - 1] == '\n') o2[l2 - 1] = 0;
    CHECK_EQ_STR(o1, o2);
    CHECK_EQ_STR(o1, "yellow");  // tests/cli.cmake's cli_generate_color
    CHECK_EQ_STR(REF[0], o1);
    answer a, s;
    char *b = chat_body(0, 0, NULL);
    ask(b, 0, NULL, &a);
    free(b);
    CHECK(a.status == 200, "plain: %d %s", a.status, a.body);
    CHECK_EQ_STR(a.text, o1);
    CHECK_EQ_STR(a.finish, "stop");
    b = chat_body(0, 1, "\"stream_options\":{\"include_usage\":true}");
    ask(b, 1, NULL, &s);
    free(b);
    CHECK(s.status == 200, "stream: %d %s", s.status, s.body);
    CHECK_EQ_STR(s.text, o1);
    CHECK_EQ_STR(s.finish, "stop");
    CHECK(s.usage && s.prompt_tokens == a.prompt_tokens && s.completion_tokens == a.completion_tokens,
          "usage: stream %d/%d, plain %d/%d", s.prompt_tokens, s.completion_tokens, a.prompt_tokens,
          a.completion_tokens);
    CHECK(a.prompt_tokens > 36, "prompt_tokens %d (36 image features and the text)", a.prompt_tokens);
    // The same image read from --allow-local-files by relative path and file:// URL.
    char *b2 = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
        "\"eval_00001.png\"},{\"type\":\"text\",\"text\":\"%s\"}]}],\"temperature\":0}",
        QUESTION[1]);
    ask(b2, 0, NULL, &a);
    CHECK(a.status == 200 && !strcmp(a.text, REF[1]), "local file: %d \"%s\" vs \"%s\" %s", a.status, a.text, REF[1],
          a.body);
    free(b2);
    b2 = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
        "\"file://%s/eval_00001.png\"}},{\"type\":\"text\",\"text\":\"%s\"}]}],\"temperature\":0}",
        IMAGES, QUESTION[1]);
    ask(b2, 0, NULL, &a);
    CHECK(a.status == 200 && !strcmp(a.text, REF[1]), "file URL: %d \"%s\" %s", a.status, a.text, a.body);
    free(b2);
    free(o1);
    free(o2);
    free(img);
}

// Two images in one message (two image parts, --max-images 2): the answer `llava generate --image a --image b` gives,
// with both images' features in the prompt.
static void test_two_images(void) {
    char *a0 = xasprintf("%s/data/images/eval_00000.png", DEMO), *a1 = xasprintf("%s/data/images/eval_00001.png", DEMO);
    const char *g[] = {BIN, "generate", "--model", MODEL,      "--tokenizer", TOK, "--image",
                       a0,  "--image",  a1,        "--prompt", QUESTION[0],   NULL};
    char *o = NULL;
    CHECK(run(g, &o) == 0, "llava generate with two images failed");
    size_t l = strlen(o);
    if (l && o[l - 1] == '\n') o[l - 1] = 0;
#define PART "{\"type\":\"image_url\",\"image_url\":\"%s\"}"
    char *p0 = xasprintf(PART, "eval_00000.png"), *p1 = xasprintf(PART, "eval_00001.png");
#undef PART
    char *b = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[%s,%s,{\"type\":\"text\",\"text\":\"%s\"}]}],"
        "\"temperature\":0}",
        p0, p1, QUESTION[0]);
    answer a;
    ask(b, 0, NULL, &a);
    CHECK(a.status == 200 && !strcmp(a.text, o), "two images: %d \"%s\" vs generate's \"%s\" %s", a.status, a.text, o,
          a.body);
    CHECK(a.prompt_tokens > 2 * 36, "prompt_tokens %d (two images' 36 features each and the text)", a.prompt_tokens);
    printf("two images in one message: \"%s\", as llava generate answers (three: test_bad_requests)\n", o);
    free(b), free(p0), free(p1), free(o), free(a0), free(a1);
}

typedef struct {
    int i;
    answer a;
} conc_arg;

static void *conc_one(void *arg) {
    conc_arg *c = arg;
    char *b = chat_body(c->i, c->i % 2, NULL);
    ask(b, c->i % 2, NULL, &c->a);
    free(b);
    return NULL;
}

static void test_concurrent(void) {
    pthread_t th[N_CONC];
    static conc_arg a[N_CONC];
    double t0 = sc_now();
    for (int i = 0; i < N_CONC; i++) {
        a[i].i = i;
        pthread_create(&th[i], NULL, conc_one, &a[i]);
    }
    int ok = 0;
    for (int i = 0; i < N_CONC; i++) {
        pthread_join(th[i], NULL);
        int good = a[i].a.status == 200 && REF[i] && !strcmp(a[i].a.text, REF[i]) && !strcmp(a[i].a.finish, "stop");
        CHECK(good, "request %d (%s): %d \"%s\" (%s), want \"%s\": %.200s", i, i % 2 ? "stream" : "plain",
              a[i].a.status, a[i].a.text, a[i].a.finish, REF[i] ? REF[i] : "?", a[i].a.body);
        ok += good;
    }
    printf("%d concurrent requests (16 streamed): %d right, %.2f s wall\n", N_CONC, ok, sc_now() - t0);
}

static void test_auth_and_routes(void) {
    char *u = url("/health");
    sc_reply r;
    sc_curl("GET", u, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"status\":\"ok\"") && strstr(r.body, "\"model\":\"demo-llava\""),
          "health without a key: %d %s", r.status, r.body);
    sc_reply_free(&r);
    free(u);
    u = url("/v1/models");
    sc_curl("GET", u, NULL, AUTH, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"id\":\"demo-llava\""), "models: %d %s", r.status, r.body);
    sc_reply_free(&r);
    free(u);
    const char *wrong[] = {"-H", "Authorization: Bearer not-the-key", NULL};
    char *b = chat_body(0, 0, NULL);
    expect_error("GET", "/v1/models", NULL, NULL, 401, "authentication_error", "API key");
    expect_error("POST", "/v1/chat/completions", b, NULL, 401, "authentication_error", "API key");
    expect_error("POST", "/v1/chat/completions", b, wrong, 401, "authentication_error", "Incorrect API key");
    free(b);
    expect_error("GET", "/v2/anything", NULL, AUTH, 404, "invalid_request_error", "Unknown request URL");
    expect_error("GET", "/v1/chat/completions", NULL, AUTH, 405, "invalid_request_error", "not allowed");
    expect_error("POST", "/v1/models", "{}", AUTH, 405, "invalid_request_error", "not allowed");
}

static void test_bad_requests(void) {
    const char *P = "/v1/chat/completions", *I = "invalid_request_error";
    expect_error("POST", P, "{\"messages\": [", AUTH, 400, I, "parse the JSON");
    expect_error("POST", P, "{\"temperature\":0}", AUTH, 400, I, "'messages'");
    expect_error("POST", P, "{\"messages\":[]}", AUTH, 400, I, "empty array");
    expect_error("POST", P, "{\"messages\":5}", AUTH, 400, I, "Invalid type for 'messages'");
    expect_error("POST", P, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":\"hot\"}", AUTH, 400,
                 I, "Invalid type for 'temperature'");
    expect_error("POST", P, "{\"messages\":[{\"role\":\"pirate\",\"content\":\"x\"}]}", AUTH, 400, I, "pirate");
    expect_error("POST", P,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"assistant\",\"content\":\"y\"}]}",
                 AUTH, 400, I, "the last message must be a user message");
    expect_error("POST", P, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"n\":2}", AUTH, 400, I, "n=1");
    char *b = chat_body(0, 0, "\"max_tokens\":1000");  // the engine: past the context of 256
    expect_error("POST", P, b, AUTH, 400, I, "exceeds the context");
    free(b);
    strbuf longq = {0};
    sb_puts(&longq, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    for (int i = 0; i < 400; i++) sb_puts(&longq, "circle ");
    sb_puts(&longq, "\"}]}");
    expect_error("POST", P, longq.p, AUTH, 400, I, "the context holds");
    free(longq.p);
    char *two = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"%s\"},"
        "{\"type\":\"image_url\",\"image_url\":\"%s\"},{\"type\":\"image_url\",\"image_url\":\"%s\"},"
        "{\"type\":\"text\",\"text\":\"x\"}]}]}",
        URL[0], URL[1], URL[2]);
    expect_error("POST", P, two, AUTH, 400, I, "at most 2");
    free(two);
    const char *urls[][2] = {
        {"https://example.com/cat.png", "the server fetches nothing: send the image as a data: URL"},
        {"data:image/png;base64,bm90IGFuIGltYWdl", "could not be read"},
        {"data:image/png;base64,%%%", "not valid base64"},
        {"/etc/hostname", "outside the directory"},
        {"../eval_qa.json", "outside the directory"},
        {"missing.png", "Cannot open"},
    };
    for (int i = 0; i < 6; i++) {
        char *bb = xasprintf(
            "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{"
            "\"url\":\"%s\"}},{\"type\":\"text\",\"text\":\"x\"}]}]}",
            urls[i][0]);
        expect_error("POST", P, bb, AUTH, 400, I, urls[i][1]);
        free(bb);
    }
    // Over --max-image-bytes (64K) and --max-body-bytes (256K).
    size_t big = 100 << 10;
    char *img = xmalloc(big + 1);
    memset(img, 'A', big);
    img[big] = 0;
    char *bb = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":"
        "\"data:image/png;base64,%s\"}]}]}",
        img);
    expect_error("POST", P, bb, AUTH, 413, I, "--max-image-bytes");
    free(bb);
    free(img);
    char *huge = xmalloc((300 << 10) + 64);
    int n = sprintf(huge, "{\"messages\":[{\"role\":\"user\",\"content\":\"");
    memset(huge + n, 'a', 300 << 10);
    strcpy(huge + n + (300 << 10), "\"}]}");
    expect_error("POST", P, huge, AUTH, 413, I, "--max-body-bytes");
    free(huge);
    // Still answering, and right.
    answer a;
    b = chat_body(2, 0, NULL);
    ask(b, 0, NULL, &a);
    free(b);
    CHECK(a.status == 200 && !strcmp(a.text, REF[2]), "after the bad requests: %d \"%s\" vs \"%s\"", a.status, a.text,
          REF[2]);
}

// A long streamed answer (ignore_eos): max_tokens tokens after the prompt.
static int long_stream(int max_tokens) {
    char extra[160];
    snprintf(extra, sizeof extra, "\"ignore_eos\":true,\"max_tokens\":%d,\"stream_options\":{\"include_usage\":true}",
             max_tokens);
    char *b = chat_body(0, 1, extra);
    int fd = sc_post_raw(PORT, "/v1/chat/completions", b, "Authorization: Bearer " KEY);
    free(b);
    return fd;
}

static void test_hangup(void) {
    int fd = long_stream(170);
    char *buf = NULL;
    size_t len = 0;
    CHECK(sc_read_until(fd, &buf, &len, 0, "\"content\":\"y", 10), "first words: %s", buf ? buf : "");
    close(fd);
    free(buf);
    // The request ends cancelled (its log line says so) and leaves the engine.
    double t0 = sc_now();
    int cancelled = 0;
    while (!cancelled && sc_now() - t0 < 10) {
        char *log = sc_read_file(LOG, NULL);
        cancelled = log && strstr(log, "cancelled)") != NULL;
        free(log);
        if (!cancelled) usleep(20000);
    }
    CHECK(cancelled, "no cancelled request in the log");
    char *u = url("/health");
    sc_reply r;
    int idle = 0;
    for (int k = 0; k < 100 && !idle; k++) {
        sc_curl("GET", u, NULL, NULL, &r);
        idle = strstr(r.body, "\"running\":0,\"queued\":0") != NULL;
        sc_reply_free(&r);
        if (!idle) usleep(20000);
    }
    CHECK(idle, "the engine still runs the cancelled request");
    free(u);
}

static void test_sigterm(void) {
    int fd = long_stream(170);
    char *buf = NULL;
    size_t len = 0;
    CHECK(sc_read_until(fd, &buf, &len, 0, "\"content\":\"y", 10), "first words: %s", buf ? buf : "");
    CHECK(buf && !strstr(buf, "finish_reason\":\"length"), "the answer ended before the signal");
    kill(SRV, SIGTERM);
    // New connections are refused soon after the signal.
    int refused = 0;
    for (int k = 0; k < 200 && !refused; k++) {
        int c = sc_connect(PORT);
        if (c < 0) refused = 1;
        else {
            close(c);
            usleep(10000);
        }
    }
    CHECK(refused, "connections still accepted after SIGTERM");
    // The request in flight runs to its end.
    CHECK(sc_read_until(fd, &buf, &len, 0, NULL, 30), "the stream did not end");
    close(fd);
    const char *body = buf ? strstr(buf, "\r\n\r\n") : NULL;
    char text[4096], finish[16];
    int usage = 0;
    CHECK(body && sc_sse_content(body + 4, text, sizeof text, NULL, finish, sizeof finish, &usage) == 0,
          "the stream: %.300s", buf ? buf : "");
    CHECK_EQ_STR(finish, "length");
    CHECK(body && strstr(body, "\"completion_tokens\":170,"), "usage: %.300s", body ? strstr(body, "\"usage\":{") : "");
    free(buf);
    int st = 0;
    double t0 = sc_now();
    pid_t w = 0;
    while ((w = waitpid(SRV, &st, WNOHANG)) == 0 && sc_now() - t0 < 30) usleep(10000);
    CHECK(w == SRV && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's exit: %s %d",
          w == SRV ? (WIFEXITED(st) ? "status" : "signal") : "still running",
          w == SRV ? (WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st)) : 0);
    if (w != SRV) {
        kill(SRV, SIGKILL);
        waitpid(SRV, &st, 0);
    }
    SRV = 0;
    char *log = sc_read_file(LOG, NULL);
    CHECK(log && strstr(log, "Terminated: accepting no more connections; finishing 1 request\n"), "log: %s",
          log ? log : "");
    CHECK(log && strstr(log, "POST /v1/chat/completions 200 stream prompt_tokens=") &&
              strstr(log, "completion_tokens=170 "),
          "log: %s", log ? log : "");
    CHECK(log && strstr(log, "llava serve: stopped\n"), "log: %s", log ? log : "");
    free(log);
}

int main(void) {
    BIN = getenv("LLAVA_BIN");
    DEMO = getenv("LLAVA_DEMO_DIR");
    if (!BIN || !DEMO) {
        fprintf(stderr, "FAIL: LLAVA_BIN and LLAVA_DEMO_DIR must be set (ctest sets them)\n");
        return 1;
    }
    snprintf(MODEL, sizeof MODEL, "%s/checkpoints/stage2/model", DEMO);
    snprintf(TOK, sizeof TOK, "%s/tokenizer.model", DEMO);
    snprintf(IMAGES, sizeof IMAGES, "%s/data/images", DEMO);
    char *t = check_tmpdir();
    snprintf(TMP, sizeof TMP, "%s", t);
    free(t);
    snprintf(LOG, sizeof LOG, "%s/serve.log", TMP);
    double t0 = sc_now();
    load_questions();
    if (start_server() != 0) {
        if (SRV > 0) kill(SRV, SIGKILL);
        return check_done();
    }
    printf("server up in %.2f s (references included)\n", sc_now() - t0);
    test_auth_and_routes();
    test_same_as_generate();
    test_two_images();
    test_concurrent();
    test_bad_requests();
    test_hangup();
    test_sigterm();
    if (SRV > 0) {
        kill(SRV, SIGKILL);
        waitpid(SRV, NULL, 0);
    }
    if (check_fail_count) {
        char *log = sc_read_file(LOG, NULL);
        fprintf(stderr, "--- the server's log:\n%s", log ? log : "");
        free(log);
    }
    for (int i = 0; i < N_CONC; i++) {
        free(QUESTION[i]);
        free(REF[i]);
        free(URL[i]);
    }
    check_rm_rf(TMP);
    printf("%.1f s\n", sc_now() - t0);
    return check_done();
}
