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
    int missing = ok ? vqa_count_missing(asked, asked_path, &last) : 0;
    if (missing < 0) ok = 0;
    if (ok && in->out) {
        upath = path_join(in->out, VIZWIZ_UPLOAD);
        if (vqa_write_submission(upath, &test, tpath, &last, 1) != 0) ok = 0;
    }
    if (ok)
        out = vqa_submission_scores(asked->n, missing, test.n, upath,
                                    "https://eval.ai/web/challenges/challenge-page/2185/my-submission");
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
