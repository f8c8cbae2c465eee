// The VQA-family scorers' shared pieces (eval/vqa_util.h).
#include "vqa_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"

int vqa_read_answers(const char *path, eval_lines *out, int need_prompt) {
    if (eval_read_lines(path, out) != 0) return -1;
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
            eval_lines_free(out);
            return llava_fail("%s line %d: %s", path, line, bad);
        }
    }
    return 0;
}

void vqa_answers_last(const eval_lines *a, strmap *by_id) {
    for (int i = 0; i < a->n; i++) {
        char *k = eval_qid_key(cJSON_GetObjectItemCaseSensitive(a->obj[i], "question_id"));
        strmap_put(by_id, k, a->obj[i]);
        free(k);
    }
}

int vqa_question_ids(const char *path, strmap *ids) {
    eval_lines q;
    if (eval_read_lines(path, &q) != 0) return -1;
    for (int i = 0; i < q.n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q.obj[i], "question_id");
        if (!cJSON_IsNumber(qid) && !cJSON_IsString(qid)) {
            int line = q.line[i];
            eval_lines_free(&q);
            strmap_free(ids);
            return llava_fail("%s line %d: no question_id", path, line);
        }
        char *k = eval_qid_key(qid);
        strmap_put(ids, k, (void *)(intptr_t)(i + 1));
        free(k);
    }
    eval_lines_free(&q);
    return 0;
}

int vqa_write(const char *path, const strbuf *b) {
    char *dir = path_dirname(path);
    int rc = mkdir_p(dir);
    free(dir);
    if (rc == 0) rc = write_file_atomic(path, b->p ? b->p : "", b->n);
    return rc == 0 ? 0 : llava_fail_ctx("cannot write %s", path);
}
