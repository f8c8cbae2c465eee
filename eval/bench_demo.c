// The built-in demo's held-out questions as a benchmark (`llava demo` writes them): each question
// asked with its image and again with a blank one; an answer is right when it is the expected word
// (case and a final period ignored). A model that learned to look scores high with the image and
// near chance without it.
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"

extern const eval_bench eval_bench_demo;

// The answer as the demo compares it: trimmed, lower case, without a final period.
static char *demo_norm(const char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    char *o = xstrdup(s);
    size_t n = strlen(o);
    while (n && (isspace((unsigned char)o[n - 1]) || o[n - 1] == '.')) o[--n] = 0;
    for (size_t i = 0; i < n; i++) o[i] = (char)tolower((unsigned char)o[i]);
    return o;
}

static cJSON *demo_score(const eval_inputs *in) {
    char *qp = in->questions ? xstrdup(in->questions) : eval_data_file(&eval_bench_demo, in, "eval_questions.jsonl");
    if (!qp) return NULL;
    cJSON *qs = eval_read_jsonl(qp), *ans = qs ? eval_answers_by_id(in->answers) : NULL;
    free(qp);
    if (!ans) {
        cJSON_Delete(qs);
        return NULL;
    }
    // Per question type (the questions' "category"), with the image and blind.
    enum { MAXC = 16 };
    char *cats[MAXC];
    int nc = 0, n[2][MAXC] = {{0}}, right[2][MAXC] = {{0}}, missing = 0, total[2] = {0, 0}, ok[2] = {0, 0};
    int i = 0;
    for (const cJSON *q = qs->child; q; q = q->next, i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "question_id");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(q, "answer");
        const cJSON *cat = cJSON_GetObjectItemCaseSensitive(q, "category");
        const cJSON *blind = cJSON_GetObjectItemCaseSensitive(q, "blind");
        if (!qid || !cJSON_IsString(want) || !cJSON_IsString(cat)) {
            llava_fail("demo: question %d of the question file lacks question_id, answer or category", i + 1);
            cJSON_Delete(qs);
            cJSON_Delete(ans);
            return NULL;
        }
        int c = 0;
        while (c < nc && strcmp(cats[c], cat->valuestring) != 0) c++;
        if (c == nc && nc < MAXC) cats[nc++] = cat->valuestring;
        if (c == MAXC) c = MAXC - 1;
        int b = cJSON_IsTrue(blind);
        char *key = eval_qid_key(qid);
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(ans, key);
        free(key);
        int good = 0;
        if (!a) missing++;
        else {
            char *got = demo_norm(cJSON_GetObjectItemCaseSensitive(a, "text")->valuestring),
                 *w = demo_norm(want->valuestring);
            good = strcmp(got, w) == 0;
            free(got);
            free(w);
        }
        n[b][c]++;
        right[b][c] += good;
        total[b]++;
        ok[b] += good;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "accuracy_with_image", total[0] ? (double)ok[0] / total[0] : 0.0);
    cJSON_AddNumberToObject(out, "accuracy_blind", total[1] ? (double)ok[1] / total[1] : 0.0);
    cJSON_AddNumberToObject(out, "questions", total[0]);
    cJSON_AddNumberToObject(out, "missing", missing);
    cJSON *per = cJSON_AddObjectToObject(out, "per_category");
    for (int c = 0; c < nc; c++) {
        cJSON *o = cJSON_AddObjectToObject(per, cats[c]);
        cJSON_AddNumberToObject(o, "questions", n[0][c]);
        cJSON_AddNumberToObject(o, "with_image", n[0][c] ? (double)right[0][c] / n[0][c] : 0.0);
        cJSON_AddNumberToObject(o, "blind", n[1][c] ? (double)right[1][c] / n[1][c] : 0.0);
    }
    cJSON_Delete(qs);
    cJSON_Delete(ans);
    return out;
}

const eval_bench eval_bench_demo = {
    .name = "demo",
    .title = "llava.c demo (held out)",
    .question_file = "eval_questions.jsonl",
    .image_folder = ".",
    .max_new_tokens = 16,
    .kind = EVAL_EXACT,
    .primary = "accuracy_with_image",
    .published_7b = NAN,
    .published_13b = NAN,
    .download = "`llava demo` writes it (data/eval_questions.jsonl under its --out folder)",
    .prepare = NULL,
    .score = demo_score,
};
