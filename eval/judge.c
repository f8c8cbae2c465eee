// The judge client (eval/judge.h): one POST per question through libcurl.
#include "judge.h"

#include <curl/curl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/util.h"
#include "pyunicode.h"

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

// Python 3's float() on one field of the score line (UTF-8, n bytes): code points other than ASCII
// become ' ' when str.isspace() holds, their digit when they are Unicode decimals, else fail
// (_PyUnicode_TransformDecimalAndSpaceToASCII); underscores only between digits; ASCII whitespace
// stripped from both ends; then a decimal ([sign] digits [. digits] [e [sign] digits], a digit on one
// side of the point at least) or [sign] inf / infinity / nan in any case, and nothing else (no hex,
// no "nan(...)"). 1 with the value in *v, or 0.
static int py_float(const char *s, size_t n, double *v) {
    char *a = xmalloc(4 * n + 1);
    size_t k = 0;
    pyustr u = {0};
    char *field = strndup(s, n);
    pyustr_set(&u, field);
    free(field);
    int ok = 1;
    for (size_t i = 0; i < u.n && ok; i++) {
        uint32_t c = u.c[i];
        if (c < 127) a[k++] = (char)c;
        else if (pyu_isspace(PYU3, c)) a[k++] = ' ';
        else if (pyu_re_digit(PYU3, c)) {
            uint32_t z = c;  // Unicode's decimal digits come in runs of ten, from 0 to 9
            while (pyu_re_digit(PYU3, z - 1)) z--;
            a[k++] = (char)('0' + (c - z) % 10);
        } else ok = 0;
    }
    pyustr_free(&u);
    a[k] = 0;
    // Underscores: each between two digits; dropped.
    size_t m = 0;
    for (size_t i = 0; i < k && ok; i++) {
        char prev = i ? a[i - 1] : 0;
        if (a[i] == '_') {
            ok = prev >= '0' && prev <= '9' && i + 1 < k && a[i + 1] >= '0' && a[i + 1] <= '9';
        } else a[m++] = a[i];
    }
    a[ok ? m : 0] = 0;
    const char *b = a, *e = a + (ok ? m : 0);
    while (b < e && strchr(" \t\n\v\f\r", *b) && *b) b++;
    while (e > b + 1 && strchr(" \t\n\v\f\r", e[-1]) && e[-1]) e--;
    const char *p = b;
    if (ok && p < e && (*p == '+' || *p == '-')) p++;
    size_t rest = (size_t)(e - p);
    if (!ok || p == e) ok = 0;
    else if ((rest == 3 && !strncasecmp(p, "inf", 3)) || (rest == 8 && !strncasecmp(p, "infinity", 8)))
        *v = *b == '-' ? -INFINITY : INFINITY;
    else if (rest == 3 && !strncasecmp(p, "nan", 3)) *v = NAN;
    else {
        int digits = 0;
        while (p < e && *p >= '0' && *p <= '9') p++, digits++;
        if (p < e && *p == '.') {
            p++;
            while (p < e && *p >= '0' && *p <= '9') p++, digits++;
        }
        ok = digits > 0;
        if (ok && p < e && (*p == 'e' || *p == 'E')) {
            p++;
            if (p < e && (*p == '+' || *p == '-')) p++;
            int ed = 0;
            while (p < e && *p >= '0' && *p <= '9') p++, ed++;
            ok = ed > 0;
        }
        ok = ok && p == e;
        if (ok) {
            char *num = strndup(b, (size_t)(e - b));
            *v = strtod(num, NULL);  // a decimal: correctly rounded, as Python's
            free(num);
        }
    }
    free(a);
    return ok;
}

int eval_judge_parse_score(const char *review, double score[2]) {
    score[0] = score[1] = -1;
    size_t n = strcspn(review, "\n");
    char *line = strndup(review, n);
    for (char *p = line; *p; p++)
        if (*p == ',') *p = ' ';
    // Python's str.split(' '): every single space separates (two spaces make an empty field).
    int fields = 1, ok = 0;
    for (char *p = line; *p; p++) fields += *p == ' ';
    if (fields == 2) {
        char *sp = strchr(line, ' ');
        double a, b;
        ok = py_float(line, (size_t)(sp - line), &a) && py_float(sp + 1, strlen(sp + 1), &b);
        if (ok) score[0] = a, score[1] = b;
    }
    free(line);
    return ok;
}
