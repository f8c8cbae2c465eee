// vizwiz_val: VizWiz-VQA val scored offline; not part of LLaVA-1.5's protocol (its VizWiz number is the
// test server's, eval/bench_vizwiz.c), and no published number.
//
// The questions: VizWiz's val.json (Annotations.zip: a list of {image, question, answers: ten
// {answer, answer_confidence}, answer_type, answerable}); prepare() writes them in LLaVA's question
// format the way LLaVA's llava_test.jsonl has VizWiz's test questions: question_id and image the
// image's file name (VizWiz's question ids are its image names), text the question and the prompt
// suffix of LLaVA's VizWiz files. The answers: what scripts/convert_vizwiz_for_submission.py would
// upload (the answer through EvalAIAnswerProcessor; no other rule, "unanswerable" included).
//
// The accuracy: VizWiz's own evaluation code (the VizWiz API's vqaEval.py) is not available here from
// its source at a known version, so this is the VQA evaluator applied to VizWiz's answers:
// GT-Vision-Lab/VQA's vqaEval.py (Python 2.7), the metric VizWiz's challenge reports (min(1,
// matches/3) over the 10-choose-9 subsets). As vqav2_val computes it (eval/bench_vqav2.c): the
// answer and the ten annotators' answers stripped; where the annotators disagree, all of them through
// processPunctuation and processDigitArticle (eval/vqa_norm.c), unnormalised where all ten agree;
// each annotator left out in turn, the answer's matches among the other nine; the mean over questions
// and per answer_type, 100 times, rounded to 2 decimals as Python 2 rounds. VizWiz's answers carry no
// answer_id: each is left out by its position, which is what vqaEval.py's `item != gtAnsDatum` does
// with VQA v2's answers, each made distinct by its answer_id (tools/reference/eval/make_vqa_goldens.py
// gives vqaEval.py VizWiz's answers in the VQA v2 layout, answer_id 1..10). Third-party copies of the
// VizWiz API's evaluator (e.g. TRI-ML/vlm-evaluation vlm_eval/util/evaluation/vizwiz/eval.py) leave
// out by position too, but normalise the answer always and the annotators' answers never: on
// answers that normalisation changes the two can differ. A question without an answer scores 0
// ("missing").
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "pyunicode.h"
#include "vqa_norm.h"
#include "vqa_util.h"

extern const eval_bench eval_bench_vizwiz_val;

#define VIZWIZ_VAL "val.json"
#define VIZWIZ_SUFFIX                                                                                                  \
    "\nWhen the provided information is insufficient, respond with 'Unanswerable'.\nAnswer the question using a "      \
    "single word or phrase."

// val.json, checked: every entry has image, question, a non-empty answers list of answer strings and
// answer_type. NULL with an error naming the file and the entry.
static cJSON *vizwiz_val_read(const char *path) {
    cJSON *j = eval_read_json(path);
    if (!j) return NULL;
    if (!cJSON_IsArray(j)) {
        cJSON_Delete(j);
        llava_fail("%s: not a JSON list of questions (VizWiz's val.json)", path);
        return NULL;
    }
    int i = 0;
    for (const cJSON *q = j->child; q; q = q->next, i++) {
        const cJSON *answers = cJSON_GetObjectItemCaseSensitive(q, "answers");
        int ok = cJSON_IsString(cJSON_GetObjectItemCaseSensitive(q, "image")) &&
                 cJSON_IsString(cJSON_GetObjectItemCaseSensitive(q, "question")) &&
                 cJSON_IsString(cJSON_GetObjectItemCaseSensitive(q, "answer_type")) && cJSON_IsArray(answers) &&
                 cJSON_GetArraySize(answers) > 0;
        for (const cJSON *a = ok ? answers->child : NULL; a; a = a->next)
            if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(a, "answer"))) ok = 0;
        if (!ok) {
            cJSON_Delete(j);
            llava_fail("%s: question %d lacks image, question, answer_type or answers (each with an answer)", path, i);
            return NULL;
        }
    }
    return j;
}

static int vizwiz_val_prepare(const eval_inputs *in, const char *path, long limit) {
    char *vpath = eval_data_file(&eval_bench_vizwiz_val, in, VIZWIZ_VAL);
    cJSON *j = vpath ? vizwiz_val_read(vpath) : NULL;
    int rc = j ? 0 : -1;
    strbuf b = {0};
    sb_puts(&b, "");
    long n = 0;
    for (const cJSON *q = j ? j->child : NULL; q && (limit <= 0 || n < limit); q = q->next, n++) {
        const char *image = cJSON_GetObjectItemCaseSensitive(q, "image")->valuestring;
        char *prompt = xasprintf("%s" VIZWIZ_SUFFIX, cJSON_GetObjectItemCaseSensitive(q, "question")->valuestring);
        sb_puts(&b, "{\"question_id\": ");
        pyu_json_string(&b, image);
        sb_puts(&b, ", \"image\": ");
        pyu_json_string(&b, image);
        sb_puts(&b, ", \"text\": ");
        pyu_json_string(&b, prompt);
        sb_puts(&b, "}\n");
        free(prompt);
    }
    if (rc == 0) rc = vqa_write(path, &b);
    free(b.p);
    cJSON_Delete(j);
    free(vpath);
    return rc;
}

// vqaEval.evaluate()'s accuracy of one question: the uploaded answer against the n annotators' answers.
static double vqa_question_acc(const char *uploaded, const cJSON *answers) {
    int n = cJSON_GetArraySize(answers), j = 0, differ = 0;
    char **gt = xcalloc((size_t)n, sizeof *gt);
    for (const cJSON *a = answers->child; a; a = a->next, j++) {
        gt[j] = vqa_eval_prestrip(cJSON_GetObjectItemCaseSensitive(a, "answer")->valuestring);
        if (j && strcmp(gt[j], gt[0]) != 0) differ = 1;
    }
    char *res = vqa_eval_prestrip(uploaded);
    if (differ) {  // len(set(gtAnswers)) > 1
        for (j = 0; j <= n; j++) {
            char **s = j < n ? &gt[j] : &res;
            char *p = vqa_eval_punctuation(*s), *d = vqa_eval_digit_article(p);
            free(p);
            free(*s);
            *s = d;
        }
    }
    double acc_sum = 0;
    for (j = 0; j < n; j++) {
        int matches = 0;
        for (int m = 0; m < n; m++) matches += m != j && strcmp(gt[m], res) == 0;
        double acc = (double)matches / 3;
        acc_sum += acc < 1 ? acc : 1;
    }
    for (j = 0; j < n; j++) free(gt[j]);
    free(gt);
    free(res);
    return acc_sum / n;
}

static cJSON *vizwiz_val_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_vizwiz_val;
    char *vpath = eval_data_file(b, in, VIZWIZ_VAL);
    cJSON *val = vpath ? vizwiz_val_read(vpath) : NULL, *out = NULL;
    eval_lines as = {0}, qs = {0};
    strmap last = {0}, by_image = {0};
    vqa_acc_tally tally = {0};
    const cJSON **order = NULL;
    int nq = 0;
    int ok = val && vqa_read_answers(in->answers, &as, 0) == 0 &&
             (!in->questions || eval_read_lines(in->questions, &qs) == 0);
    if (ok) {
        vqa_answers_last(&as, &last);
        for (const cJSON *q = val->child; q; q = q->next) {
            char *k = eval_qid_key(cJSON_GetObjectItemCaseSensitive(q, "image"));
            strmap_put(&by_image, k, (void *)q);
            free(k);
        }
        // The questions scored: the question file's, in its order, or all of val.json.
        order = xcalloc((size_t)(in->questions ? qs.n : cJSON_GetArraySize(val)) + 1, sizeof *order);
    }
    if (ok && in->questions) {
        for (int i = 0; ok && i < qs.n; i++) {
            const cJSON *qid = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id");
            char *k = qid ? eval_qid_key(qid) : NULL;
            order[nq] = k ? strmap_get(&by_image, k) : NULL;
            if (!order[nq++]) {
                ok = 0;
                llava_fail("%s line %d: question %s is not in %s", in->questions, qs.line[i],
                           k ? k : "(no question_id)", vpath);
            }
            free(k);
        }
    } else if (ok) {
        for (const cJSON *q = val->child; q; q = q->next) order[nq++] = q;
    }
    if (ok && nq == 0) ok = 0, llava_fail("vizwiz_val: no questions to score");
    int missing = 0;
    for (int i = 0; ok && i < nq; i++) {
        const cJSON *q = order[i];
        const char *atype = cJSON_GetObjectItemCaseSensitive(q, "answer_type")->valuestring;
        char *k = eval_qid_key(cJSON_GetObjectItemCaseSensitive(q, "image"));
        const cJSON *line = strmap_get(&last, k);
        free(k);
        double acc = 0;
        if (!line) {
            missing++;
        } else {  // what convert_vizwiz_for_submission.py uploads, then vqaEval.evaluate()
            char *up = evalai_answer(cJSON_GetObjectItemCaseSensitive(line, "text")->valuestring);
            acc = vqa_question_acc(up, cJSON_GetObjectItemCaseSensitive(q, "answers"));
            free(up);
        }
        vqa_tally_add(&tally, atype, acc);
    }
    if (ok) out = vqa_tally_scores(&tally, nq, missing);
    free(order);
    vqa_tally_free(&tally);
    strmap_free(&by_image);
    strmap_free(&last);
    eval_lines_free(&as);
    eval_lines_free(&qs);
    cJSON_Delete(val);
    free(vpath);
    return out;
}

const eval_bench eval_bench_vizwiz_val = {
    .name = "vizwiz_val",
    .title = "VizWiz (val, offline)",
    .question_file = VIZWIZ_VAL,
    .image_folder = "val",
    .max_new_tokens = 128,
    .kind = EVAL_EXACT,
    .primary = "accuracy",
    .published_7b = NAN,
    .published_13b = NAN,
    .download =
        "not part of LLaVA's protocol: val.json (https://vizwiz.cs.colorado.edu/VizWiz_final/vqa_data/Annotations.zip) "
        "and val.zip (https://vizwiz.cs.colorado.edu/VizWiz_final/images/val.zip) extracted to `val`, under "
        "./playground/data/eval/vizwiz",
    .prepare = vizwiz_val_prepare,
    .score = vizwiz_val_score,
};
