// The judged benchmarks (eval/bench_judged.c, eval/judge.c) against LLaVA's own scripts, run unmodified
// by tools/reference/eval/make_judged_goldens.py on synthetic data in LLaVA's formats
// (tests/data/eval/{llavabench,mmvet}/golden.json record LLaVA's commit and each script's sha256):
//
//   - llavabench with a judge: a fake OpenAI-compatible judge in this process (libmicrohttpd on
//     127.0.0.1) answers POST <url>/chat/completions with the canned review of the question asked and
//     records every request. Each request's system and user messages equal the ones
//     eval_gpt_review_bench.py sent its (stub) openai.ChatCompletion.create, byte for byte; the body
//     holds exactly model (the judge named), messages, temperature 0.2 and max_tokens 1024, as the
//     script passes them; reviews.jsonl equals the script's file byte for byte (and line by line as
//     JSON); the summary equals summarize_gpt_review.py's printed numbers per category and over all.
//     A rerun asks nothing (resume) and gives the same summary; a reviews file cut short is completed
//     with only the questions after it. A missing answer is counted and asked as an empty answer
//     (golden: the script on the answers with that line put back empty). The key, when given, goes
//     in an Authorization: Bearer header; a base URL with a final '/' works the same.
//   - without a judge: nothing is asked; judged false, the questions and missing counts;
//   - a judge answering 500 every time: an error naming the URL and the status, after retries;
//   - eval_judge_parse_score on the canned first lines and more: parse_score's results (Python's
//     float(): underscores, Unicode digits and spaces, inf / nan, no hex);
//   - mmvet: results.json byte-identical to convert_mmvet_for_eval.py's (numeric and string ids, a
//     repeated id, an id as number and as string, non-ASCII), missing answers counted, none at all.
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "common/util.h"
#include "eval/eval.h"
#include "eval/judge.h"

#define D "tests/data/eval/"
#define LB D "llavabench/"
#define MV D "mmvet/"
#define MAX_REQS 256

static char *tmp;

static cJSON *load(const char *path) {
    cJSON *j = eval_read_json(path);
    if (!j) {
        fprintf(stderr, "FAIL: cannot read %s: %s\n", path, llava_errmsg());
        exit(1);
    }
    return j;
}

static const cJSON *get(const cJSON *o, const char *key) { return cJSON_GetObjectItemCaseSensitive(o, key); }

static double num(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static const char *str(const cJSON *o, const char *key) {
    const cJSON *v = get(o, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

// Where two strings first differ, for a failure message.
static void show_difference(const char *what, const char *ours, const char *want) {
    size_t i = 0;
    while (ours[i] && ours[i] == want[i]) i++;
    fprintf(stderr, "  %s: first difference at byte %zu: ours \"%.60s\" golden \"%.60s\"\n", what, i, ours + i,
            want + i);
}

// The two files hold the same bytes.
static void check_same_file(const char *ours, const char *official) {
    size_t n1 = 0, n2 = 0;
    char *a = read_file(ours, 1 << 24, &n1), *b = read_file(official, 1 << 24, &n2);
    int same = a && b && n1 == n2 && memcmp(a, b, n1) == 0;
    CHECK(same, "%s (%zu bytes) differs from the official %s (%zu bytes)", ours, n1, official, n2);
    if (a && b && !same) show_difference(ours, a, b);
    free(a);
    free(b);
}

// ---------------------------------------------------------------------------------------------
// The fake judge: every request recorded; POST .../v1/chat/completions answered with the canned
// review of the golden request whose user message it carries; paths under /fail/ answer 500.

typedef struct {
    char *method, *url, *auth, *body;
} judge_req;

static struct {
    pthread_mutex_t mu;
    judge_req reqs[MAX_REQS];
    int n;
    const cJSON *golden;   // the golden requests of the run under way (an array)
    const cJSON *reviews;  // the canned reviews, in the same order
    struct MHD_Daemon *d;
    int port;
} J = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct {
    char *p;
    size_t n;
} upload;

static void judge_reset(const cJSON *golden, const cJSON *reviews) {
    pthread_mutex_lock(&J.mu);
    for (int i = 0; i < J.n; i++) {
        free(J.reqs[i].method);
        free(J.reqs[i].url);
        free(J.reqs[i].auth);
        free(J.reqs[i].body);
    }
    J.n = 0;
    J.golden = golden;
    J.reviews = reviews;
    pthread_mutex_unlock(&J.mu);
}

static int judge_count(void) {
    pthread_mutex_lock(&J.mu);
    int n = J.n;
    pthread_mutex_unlock(&J.mu);
    return n;
}

static const char *user_content(const cJSON *request) {
    const cJSON *m = cJSON_GetArrayItem(get(request, "messages"), 1);
    return cJSON_IsString(get(m, "content")) ? get(m, "content")->valuestring : NULL;
}

static char *judge_reply(const char *body) {
    cJSON *req = cJSON_Parse(body);
    const char *user = user_content(req), *review = "0 0\nno golden request carries this user message";
    int i = 0;
    for (const cJSON *g = J.golden ? J.golden->child : NULL; g && user; g = g->next, i++)
        if (user_content(g) && strcmp(user_content(g), user) == 0) {
            review = cJSON_GetArrayItem(J.reviews, i)->valuestring;
            break;
        }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "id", "chatcmpl-fake");
    cJSON_AddStringToObject(r, "object", "chat.completion");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddNumberToObject(choice, "index", 0);
    cJSON *msg = cJSON_AddObjectToObject(choice, "message");
    cJSON_AddStringToObject(msg, "role", "assistant");
    cJSON_AddStringToObject(msg, "content", review);
    cJSON_AddStringToObject(choice, "finish_reason", "stop");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(r, "choices"), choice);
    char *out = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    cJSON_Delete(req);
    return out;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *size, void **con_cls) {
    (void)cls;
    (void)version;
    upload *u = *con_cls;
    if (!u) {
        *con_cls = xcalloc(1, sizeof *u);
        return MHD_YES;
    }
    if (*size) {
        u->p = xrealloc(u->p, u->n + *size + 1);
        memcpy(u->p + u->n, data, *size);
        u->n += *size;
        u->p[u->n] = 0;
        *size = 0;
        return MHD_YES;
    }
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    pthread_mutex_lock(&J.mu);
    if (J.n < MAX_REQS) {
        judge_req *r = &J.reqs[J.n++];
        r->method = xstrdup(method);
        r->url = xstrdup(url);
        r->auth = auth ? xstrdup(auth) : NULL;
        r->body = xstrdup(u->p ? u->p : "");
    }
    unsigned status = MHD_HTTP_OK;
    char *body;
    if (strncmp(url, "/fail/", 6) == 0) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        body = xstrdup("{\"error\": {\"message\": \"the fake judge is overloaded\"}}");
    } else if (strcmp(method, "POST") != 0 || strcmp(url, "/v1/chat/completions") != 0) {
        status = MHD_HTTP_NOT_FOUND;
        body = xstrdup("{\"error\": {\"message\": \"not found\"}}");
    } else {
        body = judge_reply(u->p ? u->p : "");
    }
    pthread_mutex_unlock(&J.mu);
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    enum MHD_Result ok = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)c;
    (void)toe;
    upload *u = *con_cls;
    if (u) free(u->p);
    free(u);
    *con_cls = NULL;
}

static void judge_start(void) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;  // the kernel picks a free port
    J.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, NULL,
                           MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                           MHD_OPTION_END);
    if (!J.d) {
        fprintf(stderr, "FAIL: cannot start the fake judge\n");
        exit(1);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(J.d, MHD_DAEMON_INFO_BIND_PORT);
    J.port = info ? info->port : 0;
    if (!J.port) {
        fprintf(stderr, "FAIL: the fake judge has no port\n");
        exit(1);
    }
}

// ---------------------------------------------------------------------------------------------

static cJSON *score(const char *bench, const eval_inputs *in) {
    const eval_bench *b = eval_find(bench);
    if (!b) return NULL;
    llava_clear_error();
    return b->score(in);
}

// Request i of the fake judge against golden request g: the body's fields as the script passes them
// to openai.ChatCompletion.create, the model the one named, the messages byte for byte.
static void check_request(int i, const cJSON *g, const char *model, const char *key, const char *what) {
    const judge_req *r = &J.reqs[i];
    CHECK(strcmp(r->method, "POST") == 0 && strcmp(r->url, "/v1/chat/completions") == 0, "%s request %d: %s %s", what,
          i, r->method, r->url);
    char *want_auth = key ? xasprintf("Bearer %s", key) : NULL;
    CHECK(key ? r->auth && strcmp(r->auth, want_auth) == 0 : r->auth == NULL, "%s request %d: Authorization %s", what,
          i, r->auth ? r->auth : "(none)");
    free(want_auth);
    cJSON *b = cJSON_Parse(r->body);
    CHECK(cJSON_IsObject(b), "%s request %d: the body is not a JSON object: %.200s", what, i, r->body);
    if (!b) return;
    // The keys the script passes, no others.
    int nkeys = 0;
    for (const cJSON *k = b->child; k; k = k->next, nkeys++)
        CHECK(get(g, k->string) != NULL, "%s request %d: the script sends no \"%s\"", what, i, k->string);
    CHECK(nkeys == cJSON_GetArraySize(g), "%s request %d: %d fields, the script %d", what, i, nkeys,
          cJSON_GetArraySize(g));
    CHECK(strcmp(str(b, "model"), model) == 0, "%s request %d: model \"%s\", the judge named \"%s\"", what, i,
          str(b, "model"), model);
    CHECK(num(b, "temperature") == num(g, "temperature") && num(b, "temperature") == 0.2,
          "%s request %d: temperature %.17g, the script %.17g", what, i, num(b, "temperature"), num(g, "temperature"));
    CHECK(num(b, "max_tokens") == num(g, "max_tokens") && num(b, "max_tokens") == 1024,
          "%s request %d: max_tokens %g, the script %g", what, i, num(b, "max_tokens"), num(g, "max_tokens"));
    const cJSON *ms = get(b, "messages"), *gms = get(g, "messages");
    CHECK(cJSON_GetArraySize(ms) == 2 && cJSON_GetArraySize(gms) == 2, "%s request %d: %d messages", what, i,
          cJSON_GetArraySize(ms));
    for (int k = 0; k < 2 && k < cJSON_GetArraySize(ms); k++) {
        const cJSON *m = cJSON_GetArrayItem(ms, k), *gm = cJSON_GetArrayItem(gms, k);
        CHECK(cJSON_GetArraySize(m) == 2, "%s request %d message %d: %d fields", what, i, k, cJSON_GetArraySize(m));
        CHECK(strcmp(str(m, "role"), str(gm, "role")) == 0, "%s request %d message %d: role %s, the script %s", what, i,
              k, str(m, "role"), str(gm, "role"));
        int same = strcmp(str(m, "content"), str(gm, "content")) == 0;
        CHECK(same, "%s request %d: the %s message differs from the script's", what, i, str(gm, "role"));
        if (!same) show_difference(str(gm, "role"), str(m, "content"), str(gm, "content"));
    }
    cJSON_Delete(b);
}

// reviews.jsonl: the script's bytes, and each line the same JSON.
static void check_reviews(const char *ours, const char *official, const char *what) {
    check_same_file(ours, official);
    cJSON *a = eval_read_jsonl(ours), *b = eval_read_jsonl(official);
    CHECK(a && b && cJSON_GetArraySize(a) == cJSON_GetArraySize(b), "%s: %d review lines, the script %d", what,
          cJSON_GetArraySize(a), cJSON_GetArraySize(b));
    int i = 0;
    for (const cJSON *x = a ? a->child : NULL, *y = b ? b->child : NULL; x && y; x = x->next, y = y->next, i++) {
        CHECK(cJSON_GetArraySize(x) == cJSON_GetArraySize(y), "%s review %d: %d keys, the script %d", what, i + 1,
              cJSON_GetArraySize(x), cJSON_GetArraySize(y));
        for (const cJSON *v = y->child; v; v = v->next)
            CHECK(cJSON_Compare(get(x, v->string), v, 1), "%s review %d: \"%s\" differs", what, i + 1, v->string);
    }
    cJSON_Delete(a);
    cJSON_Delete(b);
}

// The summary: summarize_gpt_review.py's printed relative, reference and model, per category and all.
static void check_summary(const cJSON *s, const cJSON *golden, const char *what) {
    int n = 0;
    for (const cJSON *g = golden->child; g; g = g->next, n++) {
        const cJSON *o = strcmp(g->string, "all") == 0 ? get(s, "all") : get(get(s, "per_category"), g->string);
        CHECK(o != NULL, "%s: no \"%s\" in the summary", what, g->string);
        const char *keys[] = {"relative", "reference", "model"};
        for (int k = 0; k < 3 && o; k++)
            CHECK(num(o, keys[k]) == num(g, keys[k]), "%s %s %s: %.17g, summarize_gpt_review.py printed %.17g (%s)",
                  what, g->string, keys[k], num(o, keys[k]), num(g, keys[k]), str(g, "printed"));
    }
    CHECK(n == 4 && cJSON_GetArraySize(get(s, "per_category")) == n - 1, "%s: %d categories, golden %d", what,
          cJSON_GetArraySize(get(s, "per_category")), n - 1);
}

// Keeps the first n lines of a file.
static void cut_lines(const char *path, int n) {
    size_t len;
    char *t = read_file(path, 1 << 24, &len);
    char *p = t;
    for (int i = 0; p && i < n; i++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    write_file_atomic(path, t, p ? (size_t)(p - t) : len);
    free(t);
}

// One judged run: all questions asked as the script asked them; the reviews and summary as the
// script's; a rerun asks nothing; a cut reviews file is completed.
static void judged_run(const cJSON *g, const char *run, const char *key, const char *url_suffix) {
    const cJSON *gold = get(get(g, "runs"), run), *reqs = get(gold, "requests");
    int nq = cJSON_GetArraySize(reqs);
    char *answers = path_join(LB, str(gold, "answers")), *out = xasprintf("%s/llavabench_%s", tmp, run);
    char *official = path_join(LB, str(gold, "reviews_file")),
         *url = xasprintf("http://127.0.0.1:%d/v1%s", J.port, url_suffix);
    mkdir_p(out);
    eval_inputs in = {.data = LB,
                      .answers = answers,
                      .out = out,
                      .judge_url = url,
                      .judge_model = "fake",
                      .judge_key = key,
                      .judge_rule = LB "rule.json"};
    judge_reset(reqs, get(g, "reviews"));
    cJSON *s = score("llavabench", &in);
    CHECK(s != NULL, "llavabench %s: %s", run, llava_errmsg());
    CHECK(judge_count() == nq, "llavabench %s: %d requests for %d questions", run, judge_count(), nq);
    for (int i = 0; i < judge_count() && i < nq; i++) check_request(i, cJSON_GetArrayItem(reqs, i), "fake", key, run);
    if (s) {
        CHECK(cJSON_IsTrue(get(s, "judged")), "llavabench %s: judged", run);
        CHECK(num(s, "questions") == num(gold, "questions") && num(s, "missing") == num(gold, "missing"),
              "llavabench %s: %g questions, %g missing; golden %g, %g", run, num(s, "questions"), num(s, "missing"),
              num(gold, "questions"), num(gold, "missing"));
        CHECK(num(get(s, "all"), "questions") == nq, "llavabench %s: all over %g questions", run,
              num(get(s, "all"), "questions"));
        CHECK_EQ_STR(str(s, "judge_model"), "fake");
        check_reviews(str(s, "reviews_file"), official, run);
        check_summary(s, get(gold, "summary"), run);
    }
    cJSON_Delete(s);
    // A rerun: nothing asked, the same summary, the reviews file untouched.
    judge_reset(reqs, get(g, "reviews"));
    s = score("llavabench", &in);
    CHECK(s != NULL, "llavabench %s rerun: %s", run, llava_errmsg());
    CHECK(judge_count() == 0, "llavabench %s rerun: %d requests", run, judge_count());
    if (s) {
        check_summary(s, get(gold, "summary"), "rerun");
        check_reviews(str(s, "reviews_file"), official, "rerun");
    }
    cJSON_Delete(s);
    // Reviews kept for the first 5 questions: only the other ones asked.
    char *reviews = path_join(out, "reviews.jsonl");
    cut_lines(reviews, 5);
    judge_reset(reqs, get(g, "reviews"));
    s = score("llavabench", &in);
    CHECK(s != NULL, "llavabench %s resumed: %s", run, llava_errmsg());
    CHECK(judge_count() == nq - 5, "llavabench %s resumed: %d requests, want %d", run, judge_count(), nq - 5);
    for (int i = 0; i < judge_count() && i + 5 < nq; i++)
        check_request(i, cJSON_GetArrayItem(reqs, i + 5), "fake", key, "resumed");
    if (s) {
        check_summary(s, get(gold, "summary"), "resumed");
        check_reviews(reviews, official, "resumed");
    }
    cJSON_Delete(s);
    free(reviews);
    free(answers);
    free(out);
    free(official);
    free(url);
}

static void test_llavabench(void) {
    cJSON *g = load(LB "golden.json");
    judged_run(g, "complete", NULL, "");
    judged_run(g, "missing", "sk-test-key", "/");  // a key, and a base URL ending in '/'
    // The canned reviews hit parse_score's branches: both parsed and failed lines are in the run.
    int failed = 0, parsed = 0;
    for (const cJSON *c = get(g, "parse_score")->child; c; c = c->next) {
        failed += !cJSON_IsTrue(get(c, "parsed"));
        parsed += cJSON_IsTrue(get(c, "parsed"));
    }
    CHECK(failed > 5 && parsed > 5, "parse cases: %d parsed, %d failed", parsed, failed);

    // Without a judge: nothing asked, the counts.
    const char *runs[][2] = {{"complete", "0"}, {"missing", "1"}};
    for (int r = 0; r < 2; r++) {
        char *answers = xasprintf(LB "answers/%s.jsonl", runs[r][0]), *out = xasprintf("%s/nojudge_%d", tmp, r);
        mkdir_p(out);
        eval_inputs in = {.data = LB, .answers = answers, .out = out};
        judge_reset(NULL, NULL);
        cJSON *s = score("llavabench", &in);
        CHECK(s != NULL, "llavabench without a judge: %s", llava_errmsg());
        CHECK(judge_count() == 0, "without a judge: %d requests", judge_count());
        if (s) {
            CHECK(cJSON_IsFalse(get(s, "judged")), "without a judge: judged is not false");
            CHECK(num(s, "questions") == 12 && num(s, "missing") == atof(runs[r][1]),
                  "without a judge (%s): %g questions, %g missing", runs[r][0], num(s, "questions"), num(s, "missing"));
            CHECK(get(s, "all") == NULL, "without a judge: no scores");
        }
        char *rv = path_join(out, "reviews.jsonl");
        CHECK(!file_exists(rv), "without a judge: %s written", rv);
        free(rv);
        cJSON_Delete(s);
        free(answers);
        free(out);
    }

    // A judge that answers 500 every time: an error naming the URL and the status, after retries.
    char *url = xasprintf("http://127.0.0.1:%d/fail/v1", J.port);
    char *want = xasprintf("http://127.0.0.1:%d/fail/v1/chat/completions", J.port);
    char *out = path_join(tmp, "fail");
    mkdir_p(out);
    eval_inputs in = {.data = LB,
                      .answers = LB "answers/complete.jsonl",
                      .out = out,
                      .judge_url = url,
                      .judge_model = "fake",
                      .judge_rule = LB "rule.json"};
    judge_reset(NULL, NULL);
    cJSON *s = score("llavabench", &in);
    CHECK(s == NULL, "a judge answering 500 gave scores");
    CHECK_ERR_HAS(want);
    CHECK_ERR_HAS("500");
    CHECK(judge_count() >= 2, "a failed request is retried: %d requests", judge_count());
    char *rv = path_join(out, "reviews.jsonl");
    size_t len = 0;
    char *text = file_exists(rv) ? read_file(rv, 1 << 20, &len) : NULL;
    CHECK(len == 0, "no review written when the judge fails (%zu bytes)", len);
    free(text);
    free(rv);
    cJSON_Delete(s);
    // A judge without its model or rule: the flag named.
    in.judge_url = "http://127.0.0.1:1/v1";
    in.judge_model = NULL;
    s = score("llavabench", &in);
    CHECK(s == NULL, "a judge without a model");
    CHECK_ERR_HAS("--judge-model");
    in.judge_model = "fake";
    in.judge_rule = NULL;
    s = score("llavabench", &in);
    CHECK(s == NULL, "a judge without a rule file");
    CHECK_ERR_HAS("--judge-rule");
    free(url);
    free(want);
    free(out);
    cJSON_Delete(g);
}

static void test_parse_score(void) {
    cJSON *g = load(LB "golden.json");
    int n = 0;
    for (const cJSON *c = get(g, "parse_score")->child; c; c = c->next, n++) {
        const char *review = str(c, "review");
        double sc[2] = {0, 0};
        int parsed = eval_judge_parse_score(review, sc);
        int want = cJSON_IsTrue(get(c, "parsed"));
        CHECK(parsed == want, "parse_score(\"%s\"): parsed %d, the script %d", review, parsed, want);
        for (int k = 0; k < 2; k++) {
            const char *ws = cJSON_GetArrayItem(get(c, "score"), k)->valuestring;  // Python's repr
            double w = strtod(ws, NULL);
            int same = isnan(w) ? isnan(sc[k]) : sc[k] == w && signbit(sc[k]) == signbit(w);
            CHECK(same, "parse_score(\"%s\")[%d]: %.17g, the script %s", review, k, sc[k], ws);
        }
    }
    CHECK(n >= 50, "%d parse_score cases", n);
    cJSON_Delete(g);
}

static void test_mmvet(void) {
    cJSON *g = load(MV "golden.json");
    int n = 0;
    for (const cJSON *run = get(g, "runs")->child; run; run = run->next, n++) {
        char *answers = path_join(MV, str(run, "answers")), *official = path_join(MV, str(run, "results_file"));
        char *out = xasprintf("%s/mmvet_%s", tmp, run->string);
        mkdir_p(out);
        eval_inputs in = {.data = MV, .answers = answers, .out = out};
        cJSON *s = score("mmvet", &in);
        CHECK(s != NULL, "mmvet %s: %s", run->string, llava_errmsg());
        if (s) {
            check_same_file(str(s, "submission_file"), official);
            CHECK(num(s, "questions") == num(run, "questions") && num(s, "missing") == num(run, "missing"),
                  "mmvet %s: %g questions, %g missing; golden %g, %g", run->string, num(s, "questions"),
                  num(s, "missing"), num(run, "questions"), num(run, "missing"));
            CHECK(cJSON_IsFalse(get(s, "judged")), "mmvet %s: judged", run->string);
        }
        cJSON_Delete(s);
        free(answers);
        free(official);
        free(out);
    }
    CHECK(n == 3, "%d mmvet runs", n);
    cJSON_Delete(g);
}

int main(void) {
    tmp = check_tmpdir();
    judge_start();
    test_parse_score();
    test_llavabench();
    test_mmvet();
    MHD_stop_daemon(J.d);
    judge_reset(NULL, NULL);
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
