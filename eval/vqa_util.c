// The VQA-family scorers' shared pieces (eval/vqa_util.h).
#include "vqa_util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "pyunicode.h"
#include "vqa_norm.h"

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

int vqa_count_missing(const eval_lines *asked, const char *path, const strmap *last) {
    int missing = 0;
    for (int i = 0; i < asked->n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(asked->obj[i], "question_id");
        if (!qid) return llava_fail("%s line %d: no question_id", path, asked->line[i]);
        char *k = eval_qid_key(qid);
        missing += !strmap_get(last, k);
        free(k);
    }
    return missing;
}

int vqa_write_submission(const char *path, const eval_lines *test, const char *test_path, const strmap *last,
                         int by_image) {
    strbuf s = {0};
    int ok = 1;
    sb_puts(&s, "[");
    for (int i = 0; i < test->n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(test->obj[i], "question_id");
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(test->obj[i], "image");
        if (by_image ? !qid || !cJSON_IsString(img) : !cJSON_IsNumber(qid)) {
            ok = 0;
            llava_fail(by_image ? "%s line %d: no question_id or image" : "%s line %d: no numeric question_id",
                       test_path, test->line[i]);
            break;
        }
        char *k = eval_qid_key(qid);
        const cJSON *a = strmap_get(last, k);
        free(k);
        char *ans = a ? evalai_answer(cJSON_GetObjectItemCaseSensitive(a, "text")->valuestring) : xstrdup("");
        if (by_image) {
            sb_puts(&s, i ? ", {\"image\": " : "{\"image\": ");
            pyu_json_string(&s, img->valuestring);
        } else {
            sb_puts(&s, i ? ", {\"question_id\": " : "{\"question_id\": ");
            pyu_json_int(&s, qid->valuedouble);
        }
        sb_puts(&s, ", \"answer\": ");
        pyu_json_string(&s, ans);
        sb_puts(&s, "}");
        free(ans);
    }
    sb_puts(&s, "]");
    if (ok && vqa_write(path, &s) != 0) ok = 0;
    free(s.p);
    return ok ? 0 : -1;
}

cJSON *vqa_submission_scores(int questions, int missing, int submission_questions, const char *upath,
                             const char *submit_to) {
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "questions", questions);
    cJSON_AddNumberToObject(out, "answered", questions - missing);
    cJSON_AddNumberToObject(out, "missing", missing);
    cJSON_AddNumberToObject(out, "submission_questions", submission_questions);
    if (upath) cJSON_AddStringToObject(out, "submission_file", upath);
    else cJSON_AddNullToObject(out, "submission_file");
    cJSON_AddStringToObject(out, "submit_to", submit_to);
    return out;
}

void vqa_tally_add(vqa_acc_tally *t, const char *type, double acc) {
    t->sum += acc;
    intptr_t ti = (intptr_t)strmap_get(&t->idx, type) - 1;
    if (ti < 0) {
        t->t = xrealloc(t->t, (size_t)(t->nt + 1) * sizeof *t->t);
        t->t[t->nt] = (vqa_type_acc){type, 0, 0};
        ti = t->nt++;
        strmap_put(&t->idx, type, (void *)(intptr_t)t->nt);
    }
    t->t[ti].sum += acc;
    t->t[ti].n++;
}

cJSON *vqa_tally_scores(const vqa_acc_tally *t, int questions, int missing) {
    cJSON *out = cJSON_CreateObject();
    // setAccuracy: round(100*float(sum(accQA))/len(accQA), 2), and per answer type
    cJSON_AddNumberToObject(out, "accuracy", pyu_round2_py2(100 * t->sum / questions, 2));
    cJSON *per = cJSON_AddObjectToObject(out, "perAnswerType");
    for (int i = 0; i < t->nt; i++)
        cJSON_AddNumberToObject(per, t->t[i].type, pyu_round2_py2(100 * t->t[i].sum / t->t[i].n, 2));
    cJSON_AddNumberToObject(out, "questions", questions);
    cJSON_AddNumberToObject(out, "missing", missing);
    return out;
}

void vqa_tally_free(vqa_acc_tally *t) {
    strmap_free(&t->idx);
    free(t->t);
    memset(t, 0, sizeof *t);
}
