// The judge client (eval/judge.h): one POST per question through libcurl.
#include "judge.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

typedef struct {
    char *p;
    size_t n;
} grow;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx) {
    grow *g = ctx;
    size_t k = size * nmemb;
    if (g->n + k > (64u << 20)) return 0;  // a judge's reply is a paragraph, not 64 MB
    g->p = xrealloc(g->p, g->n + k + 1);
    memcpy(g->p + g->n, ptr, k);
    g->n += k;
    g->p[g->n] = 0;
    return k;
}

static int ask_once(const eval_inputs *in, const char *body, char **reply) {
    static int inited;
    if (!inited) curl_global_init(CURL_GLOBAL_DEFAULT), inited = 1;
    CURL *c = curl_easy_init();
    if (!c) return llava_fail("judge: cannot start libcurl");
    size_t ul = strlen(in->judge_url);
    char *url =
        xasprintf("%.*s/chat/completions", (int)(ul && in->judge_url[ul - 1] == '/' ? ul - 1 : ul), in->judge_url);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char *auth = in->judge_key ? xasprintf("Authorization: Bearer %s", in->judge_key) : NULL;
    if (auth) h = curl_slist_append(h, auth);
    grow g = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &g);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    int ret = 0;
    if (rc != CURLE_OK) ret = llava_fail("judge: %s: %s", url, curl_easy_strerror(rc));
    else if (status != 200) ret = llava_fail("judge: %s answered %ld: %.300s", url, status, g.p ? g.p : "(no body)");
    cJSON *j = ret == 0 ? cJSON_Parse(g.p ? g.p : "") : NULL;
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(j, "choices");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(choices, 0), "message");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (ret == 0 && !cJSON_IsString(content))
        ret = llava_fail("judge: %s: the reply has no choices[0].message.content: %.300s", url, g.p ? g.p : "");
    if (ret == 0) *reply = xstrdup(content->valuestring);
    cJSON_Delete(j);
    free(g.p);
    free(auth);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    return ret;
}

int eval_judge_ask(const eval_inputs *in, const char *system, const char *user, double temperature, int max_tokens,
                   int tries, char **reply) {
    cJSON *req = cJSON_CreateObject();
    cJSON_AddStringToObject(req, "model", in->judge_model);
    cJSON *msgs = cJSON_AddArrayToObject(req, "messages");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "system");
    cJSON_AddStringToObject(m, "content", system);
    cJSON_AddItemToArray(msgs, m);
    m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", "user");
    cJSON_AddStringToObject(m, "content", user);
    cJSON_AddItemToArray(msgs, m);
    cJSON_AddNumberToObject(req, "temperature", temperature);
    cJSON_AddNumberToObject(req, "max_tokens", max_tokens);
    char *body = cJSON_PrintUnformatted(req);
    cJSON_Delete(req);
    int rc = -1;
    for (int t = 0; t < (tries > 0 ? tries : 1) && rc != 0; t++) {
        if (t) usleep(500000);
        rc = ask_once(in, body, reply);
    }
    free(body);
    return rc;
}

void eval_judge_parse_score(const char *review, double score[2]) {
    score[0] = score[1] = -1;
    size_t n = strcspn(review, "\n");
    char *line = strndup(review, n);
    for (char *p = line; *p; p++)
        if (*p == ',') *p = ' ';
    // Python's str.split(' '): every single space separates (two spaces make an empty field).
    int fields = 1;
    for (char *p = line; *p; p++) fields += *p == ' ';
    if (fields == 2) {
        char *sp = strchr(line, ' ');
        *sp = 0;
        char *e0, *e1;
        double a = strtod(line, &e0), b = strtod(sp + 1, &e1);
        // float() takes surrounding whitespace and nothing else; an empty field fails.
        int ok0 = e0 != line && !strpbrk(line, "xX"), ok1 = e1 != sp + 1 && !strpbrk(sp + 1, "xX");  // no hex
        while (ok0 && *e0 && (*e0 == '\t' || *e0 == '\r')) e0++;
        while (ok1 && *e1 && (*e1 == '\t' || *e1 == '\r')) e1++;
        if (ok0 && ok1 && !*e0 && !*e1) score[0] = a, score[1] = b;
    }
    free(line);
}
