// VQAv2 as LLaVA-1.5 reports it: test-dev answers go to the EvalAI server, in the file
// scripts/convert_vqav2_for_submission.py writes (every test2015 question from
// llava_vqav2_mscoco_test2015.jsonl, the answer through EvalAIAnswerProcessor, "" where there is
// none). No offline number: the server's is the published one.
//
// vqav2_val scores val2014 offline with the official VQA accuracy, GT-Vision-Lab/VQA's vqaEval.py
// (Python 2.7), on what the same converter would upload: for each question, the answer and the ten
// annotators' answers stripped; where the annotators disagree, both through processPunctuation and
// processDigitArticle (eval/vqa_norm.c; the annotators' answers are left as they are when all ten
// agree); then min(1, matches/3) averaged over the ten leave-one-out subsets, and 100 times the mean
// rounded to 2 decimals as Python 2 rounds. It needs the official val files beside the test files:
// v2_OpenEnded_mscoco_val2014_questions.json, v2_mscoco_val2014_annotations.json and the val2014
// images; prepare() writes LLaVA's question format from the first. A question without an answer
// scores 0 ("missing").
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "pyunicode.h"
#include "vqa_norm.h"
#include "vqa_util.h"

extern const eval_bench eval_bench_vqav2, eval_bench_vqav2_val;

#define VQAV2_TEST_ALL "llava_vqav2_mscoco_test2015.jsonl"
#define VQAV2_UPLOAD "answers_upload/llava_vqav2_mscoco_test-dev2015.json"
#define VQAV2_VAL_QUESTIONS "v2_OpenEnded_mscoco_val2014_questions.json"
#define VQAV2_VAL_ANNOTATIONS "v2_mscoco_val2014_annotations.json"
#define VQA_SUFFIX "\nAnswer the question using a single word or phrase."

static cJSON *vqav2_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_vqav2;
    char *qpath = in->questions ? xstrdup(in->questions) : eval_data_file(b, in, b->question_file);
    char *tpath = qpath ? eval_data_file(b, in, VQAV2_TEST_ALL) : NULL, *upath = NULL;
    eval_lines qs = {0}, test = {0}, as = {0};
    strmap last = {0};
    cJSON *out = NULL;
    int ok = tpath && eval_read_lines(qpath, &qs) == 0 && eval_read_lines(tpath, &test) == 0 &&
             vqa_read_answers(in->answers, &as, 0) == 0;
    if (ok) vqa_answers_last(&as, &last);
    int missing = ok ? vqa_count_missing(&qs, qpath, &last) : 0;
    if (missing < 0) ok = 0;
    if (ok && in->out) {
        upath = path_join(in->out, VQAV2_UPLOAD);
        if (vqa_write_submission(upath, &test, tpath, &last, 0) != 0) ok = 0;
    }
    if (ok)
        out = vqa_submission_scores(qs.n, missing, test.n, upath,
                                    "https://eval.ai/web/challenges/challenge-page/830/my-submission");
    strmap_free(&last);
    eval_lines_free(&qs);
    eval_lines_free(&test);
    eval_lines_free(&as);
    free(upath);
    free(tpath);
    free(qpath);
    return out;
}

// LLaVA's question format for val2014, as its test-dev file has it.
static int vqav2_val_prepare(const eval_inputs *in, const char *path, long limit) {
    char *qpath = eval_data_file(&eval_bench_vqav2_val, in, VQAV2_VAL_QUESTIONS);
    cJSON *j = qpath ? eval_read_json(qpath) : NULL;
    const cJSON *qs = cJSON_GetObjectItemCaseSensitive(j, "questions");
    int rc = 0;
    if (!j) rc = -1;
    else if (!cJSON_IsArray(qs)) rc = llava_fail("%s: no \"questions\" array", qpath);
    strbuf b = {0};
    sb_puts(&b, "");
    long n = 0;
    for (const cJSON *q = rc ? NULL : qs->child; q && (limit <= 0 || n < limit); q = q->next, n++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "question_id");
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(q, "image_id");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(q, "question");
        if (!cJSON_IsNumber(qid) || !cJSON_IsNumber(img) || !cJSON_IsString(text)) {
            rc = llava_fail("%s: question %ld lacks question_id, image_id or question", qpath, n);
            break;
        }
        char image[64];
        snprintf(image, sizeof image, "COCO_val2014_%012.0f.jpg", img->valuedouble);
        char *prompt = xasprintf("%s" VQA_SUFFIX, text->valuestring);
        sb_puts(&b, "{\"question_id\": ");
        pyu_json_int(&b, qid->valuedouble);
        sb_puts(&b, ", \"image\": ");
        pyu_json_string(&b, image);
        sb_puts(&b, ", \"text\": ");
        pyu_json_string(&b, prompt);
        sb_puts(&b, ", \"category\": \"default\"}\n");
        free(prompt);
    }
    if (rc == 0) rc = vqa_write(path, &b);
    free(b.p);
    cJSON_Delete(j);
    free(qpath);
    return rc;
}

static cJSON *vqav2_val_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_vqav2_val;
    char *apath = eval_data_file(b, in, VQAV2_VAL_ANNOTATIONS);
    cJSON *ann = apath ? eval_read_json(apath) : NULL, *out = NULL;
    eval_lines as = {0}, qs = {0};
    strmap last = {0}, by_qid = {0};
    vqa_acc_tally tally = {0};
    int ok = ann && vqa_read_answers(in->answers, &as, 0) == 0 &&
             (!in->questions || eval_read_lines(in->questions, &qs) == 0);
    const cJSON *anns = ok ? cJSON_GetObjectItemCaseSensitive(ann, "annotations") : NULL;
    if (ok && !cJSON_IsArray(anns)) ok = 0, llava_fail("%s: no \"annotations\" array", apath);
    if (ok) vqa_answers_last(&as, &last);
    // The questions scored: the question file's, in its order, or every annotation's.
    int nq = 0;
    const cJSON **order = NULL;
    for (const cJSON *a = ok ? anns->child : NULL; a; a = a->next) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(a, "question_id");
        if (!cJSON_IsNumber(qid)) {
            ok = 0;
            llava_fail("%s: an annotation without question_id", apath);
            break;
        }
        char *k = eval_qid_key(qid);
        strmap_put(&by_qid, k, (void *)a);
        free(k);
    }
    int total = in->questions ? qs.n : cJSON_GetArraySize(anns);
    if (ok) order = xcalloc((size_t)total + 1, sizeof *order);
    if (ok && in->questions) {
        for (int i = 0; ok && i < qs.n; i++) {
            const cJSON *qid = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id");
            char *k = qid ? eval_qid_key(qid) : NULL;
            order[nq] = k ? strmap_get(&by_qid, k) : NULL;
            if (!order[nq]) {
                ok = 0;
                llava_fail("%s line %d: question %s has no annotation in %s", in->questions, qs.line[i], k ? k : "?",
                           apath);
            }
            nq++;
            free(k);
        }
    } else if (ok) {
        for (const cJSON *a = anns->child; a; a = a->next) order[nq++] = a;
    }
    if (ok && nq == 0) ok = 0, llava_fail("vqav2_val: no questions to score");
    int missing = 0;
    for (int i = 0; ok && i < nq; i++) {
        const cJSON *a = order[i];
        const cJSON *gts = cJSON_GetObjectItemCaseSensitive(a, "answers");
        const cJSON *atype = cJSON_GetObjectItemCaseSensitive(a, "answer_type");
        int n = cJSON_GetArraySize(gts);
        char *k = eval_qid_key(cJSON_GetObjectItemCaseSensitive(a, "question_id"));
        const cJSON *line = strmap_get(&last, k);
        free(k);
        if (!cJSON_IsArray(gts) || n == 0 || !cJSON_IsString(atype)) {
            ok = 0;
            llava_fail("%s: question %.0f lacks answers or answer_type", apath,
                       cJSON_GetObjectItemCaseSensitive(a, "question_id")->valuedouble);
            break;
        }
        double avg = 0;
        if (!line) {
            missing++;
        } else {
            // The answer as convert_vqav2_for_submission.py uploads it, then vqaEval.evaluate().
            char *up = evalai_answer(cJSON_GetObjectItemCaseSensitive(line, "text")->valuestring);
            char *res = vqa_eval_prestrip(up);
            free(up);
            cJSON **gt = xcalloc((size_t)n, sizeof *gt);
            int j = 0, differ = 0;
            for (const cJSON *g = gts->child; g; g = g->next, j++) {
                const cJSON *s = cJSON_GetObjectItemCaseSensitive(g, "answer");
                if (!cJSON_IsString(s)) {
                    ok = 0;
                    break;
                }
                gt[j] = cJSON_Duplicate(g, 1);
                char *t = vqa_eval_prestrip(s->valuestring);
                cJSON_ReplaceItemInObjectCaseSensitive(gt[j], "answer", cJSON_CreateString(t));
                free(t);
                if (j && strcmp(cJSON_GetObjectItemCaseSensitive(gt[j], "answer")->valuestring,
                                cJSON_GetObjectItemCaseSensitive(gt[0], "answer")->valuestring) != 0)
                    differ = 1;
            }
            if (!ok) {
                llava_fail("%s: an annotator's answer that is not a string", apath);
            } else {
                if (differ) {  // len(set(gtAnswers)) > 1
                    for (j = 0; j < n; j++) {
                        const char *s = cJSON_GetObjectItemCaseSensitive(gt[j], "answer")->valuestring;
                        char *p = vqa_eval_punctuation(s), *d = vqa_eval_digit_article(p);
                        cJSON_ReplaceItemInObjectCaseSensitive(gt[j], "answer", cJSON_CreateString(d));
                        free(p);
                        free(d);
                    }
                    char *p = vqa_eval_punctuation(res), *d = vqa_eval_digit_article(p);
                    free(res);
                    free(p);
                    res = d;
                }
                double acc_sum = 0;
                for (j = 0; j < n; j++) {
                    int matches = 0;
                    for (int m = 0; m < n; m++)  // the others: every answer whose dict differs from this one
                        if (!cJSON_Compare(gt[m], gt[j], 1) &&
                            strcmp(cJSON_GetObjectItemCaseSensitive(gt[m], "answer")->valuestring, res) == 0)
                            matches++;
                    double acc = (double)matches / 3;
                    acc_sum += acc < 1 ? acc : 1;
                }
                avg = acc_sum / n;
            }
            for (j = 0; j < n; j++) cJSON_Delete(gt[j]);
            free(gt);
            free(res);
        }
        vqa_tally_add(&tally, atype->valuestring, avg);
    }
    if (ok) out = vqa_tally_scores(&tally, nq, missing);
    free(order);
    vqa_tally_free(&tally);
    strmap_free(&by_qid);
    strmap_free(&last);
    eval_lines_free(&as);
    eval_lines_free(&qs);
    cJSON_Delete(ann);
    free(apath);
    return out;
}

const eval_bench eval_bench_vqav2 = {
    .name = "vqav2",
    .title = "VQAv2 (test-dev)",
    .question_file = "llava_vqav2_mscoco_test-dev2015.jsonl",
    .image_folder = "test2015",
    .max_new_tokens = 128,
    .kind = EVAL_SUBMISSION,
    .primary = NULL,
    .published_7b = 78.5,
    .published_13b = 80.0,
    .download =
        "test2015 (http://images.cocodataset.org/zips/test2015.zip) under ./playground/data/eval/vqav2; "
        "llava_vqav2_mscoco_test-dev2015.jsonl and llava_vqav2_mscoco_test2015.jsonl come with LLaVA's eval.zip",
    .prepare = NULL,
    .score = vqav2_score,
};

const eval_bench eval_bench_vqav2_val = {
    .name = "vqav2_val",
    .title = "VQAv2 (val2014, offline)",
    .question_file = VQAV2_VAL_QUESTIONS,
    .image_folder = "val2014",
    .max_new_tokens = 128,
    .kind = EVAL_EXACT,
    .primary = "accuracy",
    .published_7b = NAN,
    .published_13b = NAN,
    .download =
        "not part of LLaVA's protocol: the official VQA v2 val files "
        "(https://visualqa.org/download.html: v2_Questions_Val_mscoco.zip, v2_Annotations_Val_mscoco.zip) and "
        "val2014 (http://images.cocodataset.org/zips/val2014.zip) under ./playground/data/eval/vqav2",
    .prepare = vqav2_val_prepare,
    .score = vqav2_val_score,
};
