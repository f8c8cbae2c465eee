// What the scorers share: JSON Lines, benchmark files, answers by question_id (eval/eval.h).
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"

cJSON *eval_read_jsonl(const char *path) {
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);
    if (!text) return NULL;
    cJSON *arr = cJSON_CreateArray();
    int lineno = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t L = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        lineno++;
        char *line = p;
        p += L + (nl ? 1 : 0);
        size_t k = 0;
        while (k < L && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r')) k++;
        if (k == L) continue;
        cJSON *o = cJSON_ParseWithLength(line, L);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            free(text);
            llava_fail("%s line %d: not a JSON object", path, lineno);
            return NULL;
        }
        cJSON_AddItemToArray(arr, o);
    }
    free(text);
    return arr;
}

cJSON *eval_read_json(const char *path) {
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);
    if (!text) return NULL;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!j) llava_fail("%s: not JSON (near byte %zu)", path, end ? (size_t)(end - text) : (size_t)0);
    free(text);
    return j;
}

char *eval_data_file(const eval_bench *b, const eval_inputs *in, const char *name) {
    char *p = path_join(in->data, name);
    if (!file_exists(p) && !dir_exists(p)) {
        llava_fail("%s: %s is missing; LLaVA's docs/Evaluation.md: %s", b->name, p, b->download);
        free(p);
        return NULL;
    }
    return p;
}

char *eval_qid_key(const cJSON *qid) { return cJSON_PrintUnformatted(qid); }

cJSON *eval_answers_by_id(const char *path) {
    cJSON *arr = eval_read_jsonl(path);
    if (!arr) return NULL;
    cJSON *by = cJSON_CreateObject();
    int i = 0;
    for (cJSON *o = arr->child; o; o = o->next, i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(o, "question_id");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(o, "text");
        if (!(cJSON_IsNumber(qid) || cJSON_IsString(qid)) || !cJSON_IsString(tx)) {
            llava_fail("%s: answer %d: %s", path, i + 1,
                       !qid                  ? "no question_id"
                       : !cJSON_IsString(tx) ? "\"text\" is not a string"
                                             : "bad question_id");
            cJSON_Delete(by);
            cJSON_Delete(arr);
            return NULL;
        }
        char *key = eval_qid_key(qid);
        if (!cJSON_GetObjectItemCaseSensitive(by, key))  // a repeated id: the first answer counts
            cJSON_AddItemToObject(by, key, cJSON_Duplicate(o, 1));
        free(key);
    }
    cJSON_Delete(arr);
    return by;
}
