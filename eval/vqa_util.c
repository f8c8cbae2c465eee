// The VQA-family scorers' shared pieces (eval/vqa_util.h).
#include "vqa_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"

static uint64_t fnv1a(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static size_t slot_of(const strmap *m, const char *key) {
    size_t i = (size_t)(fnv1a(key) & (m->cap - 1));
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->cap - 1);
    return i;
}

void strmap_put(strmap *m, const char *key, void *val) {
    if (2 * (m->n + 1) > m->cap) {
        strmap big = {.cap = m->cap ? 2 * m->cap : 64};
        big.keys = xcalloc(big.cap, sizeof *big.keys);
        big.vals = xcalloc(big.cap, sizeof *big.vals);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i]) continue;
            size_t j = slot_of(&big, m->keys[i]);
            big.keys[j] = m->keys[i];
            big.vals[j] = m->vals[i];
            big.n++;
        }
        free(m->keys);
        free(m->vals);
        *m = big;
    }
    size_t i = slot_of(m, key);
    if (!m->keys[i]) {
        m->keys[i] = xstrdup(key);
        m->n++;
    }
    m->vals[i] = val;
}

void *strmap_get(const strmap *m, const char *key) {
    if (!m->cap) return NULL;
    size_t i = slot_of(m, key);
    return m->keys[i] ? m->vals[i] : NULL;
}

void strmap_free(strmap *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

int jsonl_read_lines(const char *path, jsonl_lines *out) {
    memset(out, 0, sizeof *out);
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);
    if (!text) return -1;
    out->arr = cJSON_CreateArray();
    int cap = 0, lineno = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t L = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        char *line = p;
        p += L + (nl ? 1 : 0);
        lineno++;
        size_t k = 0;
        while (k < L && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == L) continue;
        cJSON *o = cJSON_ParseWithLength(line, L);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            free(text);
            jsonl_lines_free(out);
            return llava_fail("%s line %d: not a JSON object", path, lineno);
        }
        cJSON_AddItemToArray(out->arr, o);
        if (out->n == cap) {
            cap = cap ? 2 * cap : 1024;
            out->obj = xrealloc(out->obj, (size_t)cap * sizeof *out->obj);
            out->line = xrealloc(out->line, (size_t)cap * sizeof *out->line);
        }
        out->obj[out->n] = o;
        out->line[out->n++] = lineno;
    }
    free(text);
    return 0;
}

void jsonl_lines_free(jsonl_lines *l) {
    cJSON_Delete(l->arr);
    free(l->obj);
    free(l->line);
    memset(l, 0, sizeof *l);
}

int vqa_read_answers(const char *path, jsonl_lines *out, int need_prompt) {
    if (jsonl_read_lines(path, out) != 0) return -1;
    for (int i = 0; i < out->n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(out->obj[i], "question_id");
        const char *bad =
            !qid                                           ? "no question_id"
            : !cJSON_IsNumber(qid) && !cJSON_IsString(qid) ? "question_id is neither a number nor a string"
            : !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(out->obj[i], "text")) ? "no \"text\" string"
            : need_prompt && !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(out->obj[i], "prompt"))
                ? "no \"prompt\" string"
                : NULL;
        if (bad) {
            int line = out->line[i];
            jsonl_lines_free(out);
            return llava_fail("%s line %d: %s", path, line, bad);
        }
    }
    return 0;
}

void vqa_answers_last(const jsonl_lines *a, strmap *by_id) {
    for (int i = 0; i < a->n; i++) {
        char *k = eval_qid_key(cJSON_GetObjectItemCaseSensitive(a->obj[i], "question_id"));
        strmap_put(by_id, k, a->obj[i]);
        free(k);
    }
}

int vqa_question_ids(const char *path, strmap *ids) {
    jsonl_lines q;
    if (jsonl_read_lines(path, &q) != 0) return -1;
    for (int i = 0; i < q.n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q.obj[i], "question_id");
        if (!cJSON_IsNumber(qid) && !cJSON_IsString(qid)) {
            int line = q.line[i];
            jsonl_lines_free(&q);
            strmap_free(ids);
            return llava_fail("%s line %d: no question_id", path, line);
        }
        char *k = eval_qid_key(qid);
        strmap_put(ids, k, (void *)(intptr_t)(i + 1));
        free(k);
    }
    jsonl_lines_free(&q);
    return 0;
}

int vqa_write(const char *path, const strbuf *b) {
    char *dir = path_dirname(path);
    int rc = mkdir_p(dir);
    free(dir);
    if (rc == 0) rc = write_file_atomic(path, b->p ? b->p : "", b->n);
    return rc == 0 ? 0 : llava_fail_ctx("cannot write %s", path);
}
