// VizWiz-VQA test as LLaVA-1.5 reports it: the answers go to the EvalAI server in the file
// scripts/convert_vizwiz_for_submission.py writes — for every question of llava_test.jsonl, in its
// order, {"image", "answer"} with the answer through EvalAIAnswerProcessor. No offline number.
//
// The official converter stops (an assert) when a question has no answer; here the question is
// uploaded with "" (as LLaVA's VQAv2 converter does) and reported as "missing".
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "pyunicode.h"
#include "vqa_norm.h"
#include "vqa_util.h"

extern const eval_bench eval_bench_vizwiz;

#define VIZWIZ_UPLOAD "answers_upload/vizwiz_test.json"

static cJSON *vizwiz_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_vizwiz;
    char *tpath = eval_data_file(b, in, b->question_file), *upath = NULL;
    eval_lines test = {0}, as = {0}, qs = {0};
    strmap last = {0};
    cJSON *out = NULL;
    int ok = tpath && eval_read_lines(tpath, &test) == 0 && vqa_read_answers(in->answers, &as, 0) == 0 &&
             (!in->questions || eval_read_lines(in->questions, &qs) == 0);
    if (ok) vqa_answers_last(&as, &last);
    const eval_lines *asked = in->questions ? &qs : &test;
    const char *asked_path = in->questions ? in->questions : tpath;
    int missing = 0;
    for (int i = 0; ok && i < asked->n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(asked->obj[i], "question_id");
        if (!qid) ok = 0, llava_fail("%s line %d: no question_id", asked_path, asked->line[i]);
        char *k = ok ? eval_qid_key(qid) : NULL;
        missing += ok && !strmap_get(&last, k);
        free(k);
    }
    if (ok && in->out) {
        strbuf s = {0};
        sb_puts(&s, "[");
        for (int i = 0; ok && i < test.n; i++) {
            const cJSON *qid = cJSON_GetObjectItemCaseSensitive(test.obj[i], "question_id");
            const cJSON *img = cJSON_GetObjectItemCaseSensitive(test.obj[i], "image");
            if (!qid || !cJSON_IsString(img)) {
                ok = 0;
                llava_fail("%s line %d: no question_id or image", tpath, test.line[i]);
                break;
            }
            char *k = eval_qid_key(qid);
            const cJSON *a = strmap_get(&last, k);
            free(k);
            char *ans = a ? evalai_answer(cJSON_GetObjectItemCaseSensitive(a, "text")->valuestring) : xstrdup("");
            sb_puts(&s, i ? ", {\"image\": " : "{\"image\": ");
            pyu_json_string(&s, img->valuestring);
            sb_puts(&s, ", \"answer\": ");
            pyu_json_string(&s, ans);
            sb_puts(&s, "}");
            free(ans);
        }
        sb_puts(&s, "]");
        upath = path_join(in->out, VIZWIZ_UPLOAD);
        if (ok && vqa_write(upath, &s) != 0) ok = 0;
        free(s.p);
    }
    if (ok) {
        out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "questions", asked->n);
        cJSON_AddNumberToObject(out, "answered", asked->n - missing);
        cJSON_AddNumberToObject(out, "missing", missing);
        cJSON_AddNumberToObject(out, "submission_questions", test.n);
        if (upath) cJSON_AddStringToObject(out, "submission_file", upath);
        else cJSON_AddNullToObject(out, "submission_file");
        cJSON_AddStringToObject(out, "submit_to", "https://eval.ai/web/challenges/challenge-page/2185/my-submission");
    }
    strmap_free(&last);
    eval_lines_free(&test);
    eval_lines_free(&as);
    eval_lines_free(&qs);
    free(upath);
    free(tpath);
    return out;
}

const eval_bench eval_bench_vizwiz = {
    .name = "vizwiz",
    .title = "VizWiz (test)",
    .question_file = "llava_test.jsonl",
    .image_folder = "test",
    .max_new_tokens = 128,
    .kind = EVAL_SUBMISSION,
    .primary = NULL,
    .published_7b = 50.0,
    .published_13b = 53.6,
    .download =
        "test.json (https://vizwiz.cs.colorado.edu/VizWiz_final/vqa_data/Annotations.zip) and test.zip "
        "(https://vizwiz.cs.colorado.edu/VizWiz_final/images/test.zip) extracted to `test`, under "
        "./playground/data/eval/vizwiz; llava_test.jsonl comes with LLaVA's eval.zip",
    .prepare = NULL,
    .score = vizwiz_score,
};
