// Helpers of the POPE, ScienceQA, MME, SEED-Bench and MMBench scorers (eval/score_choice.h).
#include "score_choice.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

int sc_read_answers(const char *path, eval_lines *out) {
    if (eval_read_lines(path, out) != 0) return -1;
    for (int i = 0; i < out->n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(out->obj[i], "question_id");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(out->obj[i], "text");
        const char *why = !qid ? "no question_id"
                          : !(cJSON_IsNumber(qid) || cJSON_IsString(qid))
                              ? "question_id is neither a number nor a string"
                          : !tx                 ? "no \"text\""
                          : !cJSON_IsString(tx) ? "\"text\" is not a string"
                                                : NULL;
        if (why) {
            llava_fail("%s line %d: %s", path, out->line[i], why);
            eval_lines_free(out);
            return -1;
        }
    }
    return 0;
}

char *sc_key_str(const char *s) { return xasprintf("s:%s", s); }
char *sc_key_int(long long v) { return xasprintf("n:%lld", v); }

char *sc_key(const cJSON *qid) {
    if (cJSON_IsString(qid)) return sc_key_str(qid->valuestring);
    if (!cJSON_IsNumber(qid)) return NULL;
    double v = qid->valuedouble;
    if (v == (double)(long long)v) return sc_key_int((long long)v);
    return xasprintf("n:%.17g", v);
}

char *sc_question_path(const eval_bench *b, const eval_inputs *in, const char *name) {
    if (in->questions) {
        if (!file_exists(in->questions)) {
            llava_fail("%s: the question file %s is missing", b->name, in->questions);
            return NULL;
        }
        return xstrdup(in->questions);
    }
    return eval_data_file(b, in, name);
}

uint32_t sc_utf8(const char *s, int *len) {
    const unsigned char *p = (const unsigned char *)s;
    uint32_t c = p[0];
    int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 1) {
        *len = 1;
        return c;
    }
    if (n == 0) {
        *len = 1;
        return 0xFFFD;
    }
    uint32_t v = c & (0x7Fu >> n);
    for (int i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) {
            *len = 1;
            return 0xFFFD;
        }
        v = (v << 6) | (p[i] & 0x3F);
    }
    static const uint32_t minv[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < minv[n] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *len = 1;
        return 0xFFFD;
    }
    *len = n;
    return v;
}

int sc_py_space(uint32_t c) {
    // Python 3: the characters with bidirectional type WS, B or S, or category Zs.
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

int sc_write_out(const eval_inputs *in, const char *name, const char *data, size_t len) {
    if (!in->out) return 0;
    char *p = path_join(in->out, name);
    char *dir = path_dirname(p);
    int rc = mkdir_p(dir);
    if (rc == 0) rc = write_file_atomic(p, data, len);
    if (rc != 0) llava_fail_ctx("writing %s", p);
    free(dir);
    free(p);
    return rc;
}

double sc_pct(long num, long den) { return den ? (double)num / (double)den * 100.0 : 0.0; }
