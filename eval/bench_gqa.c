// GQA testdev-balanced as LLaVA-1.5 scores it: scripts/convert_gqa_for_eval.py turns the answers into
// GQA's predictions file (each answer with its final periods stripped and lowered; every line kept,
// in order), and GQA's eval.py — as LLaVA's docs/Evaluation.md has it modified (the gist linked
// there: scene graphs, choices, validity, plausibility, grounding and consistency left out, since
// GQA 1.2 ships no testdev choices) — scores the balanced questions by exact match:
// accuracy, binary (every structural type but "query") and open ("query") accuracy, and the
// chi-square distance of the predicted answer distribution per global group ("distribution").
//
// eval.py refuses predictions that leave a question out; here a question without an answer is
// counted as answered with nothing (never a gold answer: wrong) and reported as "missing".
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "pyunicode.h"
#include "vqa_util.h"

extern const eval_bench eval_bench_gqa;

#define GQA_QUESTIONS "data/testdev_balanced_questions.json"
#define GQA_PREDICTIONS "testdev_balanced_predictions.json"

// convert_gqa_for_eval.py's prediction: res['text'].rstrip('.').lower().
static char *gqa_prediction(const char *text) {
    char *r = pyu_rstrip_ascii(text, ".");
    char *low = pyu_lower3_utf8(r);
    free(r);
    return low;
}

// The file convert_gqa_for_eval.py writes: json.dump of [{"questionId", "prediction"}] in the
// answers' order.
static int gqa_write_predictions(const char *path, const eval_lines *as, char *const *pred) {
    strbuf b = {0};
    sb_puts(&b, "[");
    for (int i = 0; i < as->n; i++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(as->obj[i], "question_id");
        sb_puts(&b, i ? ", {\"questionId\": " : "{\"questionId\": ");
        if (cJSON_IsString(qid)) pyu_json_string(&b, qid->valuestring);
        else pyu_json_int(&b, qid->valuedouble);
        sb_puts(&b, ", \"prediction\": ");
        pyu_json_string(&b, pred[i]);
        sb_puts(&b, "}");
    }
    sb_puts(&b, "]");
    int rc = vqa_write(path, &b);
    free(b.p);
    return rc;
}

// The answers a distribution group saw, in first-seen order, with their counts.
typedef struct {
    char *group, *answer;
    int count;
} gqa_count;

static double gqa_avg(double sum, int n) { return n ? sum / n : 0.0; }

static cJSON *gqa_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_gqa;
    char *qpath = eval_data_file(b, in, GQA_QUESTIONS);
    cJSON *qs = qpath ? eval_read_json(qpath) : NULL, *out = NULL;
    eval_lines as = {0};
    strmap asked = {0}, last = {0}, groups = {0}, gold_at = {0}, pred_count = {0};
    char **pred = NULL, *ppath = NULL;
    gqa_count *gold = NULL;
    char **group_names = NULL;
    int ng = 0, ngold = 0;
    int ok = qs && vqa_read_answers(in->answers, &as, 0) == 0 &&
             (!in->questions || vqa_question_ids(in->questions, &asked) == 0);
    if (ok && !cJSON_IsObject(qs)) ok = 0, llava_fail("%s: not a JSON object of questions", qpath);
    if (ok) {
        pred = xcalloc((size_t)as.n + 1, sizeof *pred);
        for (int i = 0; i < as.n; i++)
            pred[i] = gqa_prediction(cJSON_GetObjectItemCaseSensitive(as.obj[i], "text")->valuestring);
        if (in->out) {
            ppath = path_join(in->out, GQA_PREDICTIONS);
            if (gqa_write_predictions(ppath, &as, pred) != 0) ok = 0;
        }
        // predictions = {p["questionId"]: p["prediction"] for p in predictions}: the last wins.
        for (int i = 0; i < as.n; i++) {
            char *k = eval_qid_key(cJSON_GetObjectItemCaseSensitive(as.obj[i], "question_id"));
            strmap_put(&last, k, pred[i]);
            free(k);
        }
    }
    double acc = 0, bin = 0, opn = 0;  // sums of the 0/1 scores, in the questions' order
    int n_acc = 0, n_bin = 0, n_open = 0, missing = 0;
    for (const cJSON *q = ok ? qs->child : NULL; q; q = q->next) {
        cJSON key_item = {.type = cJSON_String, .valuestring = q->string};
        char *k = eval_qid_key(&key_item);
        int skip = in->questions && !strmap_get(&asked, k);
        const cJSON *bal = cJSON_GetObjectItemCaseSensitive(q, "isBalanced");
        if (skip || !cJSON_IsTrue(bal)) {
            free(k);
            continue;
        }
        const cJSON *gold_s = cJSON_GetObjectItemCaseSensitive(q, "answer");
        const cJSON *types = cJSON_GetObjectItemCaseSensitive(q, "types");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(types, "structural");
        const cJSON *grp = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(q, "groups"), "global");
        if (!cJSON_IsString(gold_s) || !cJSON_IsString(st) || !(cJSON_IsString(grp) || cJSON_IsNull(grp))) {
            free(k);
            ok = 0;
            llava_fail("%s: question %s lacks answer, types.structural or groups.global", qpath, q->string);
            break;
        }
        const char *p = strmap_get(&last, k);
        free(k);
        if (!p) missing++, p = "";
        double s = strcmp(p, gold_s->valuestring) == 0 ? 1.0 : 0.0;
        acc += s, n_acc++;
        if (strcmp(st->valuestring, "query") == 0) opn += s, n_open++;
        else bin += s, n_bin++;
        if (cJSON_IsString(grp)) {
            // dist["gold"][group][gold] += 1 and dist["predicted"][group][predicted] += 1
            if (!strmap_get(&groups, grp->valuestring)) {
                group_names = xrealloc(group_names, (size_t)(ng + 1) * sizeof *group_names);
                group_names[ng++] = grp->valuestring;
                strmap_put(&groups, grp->valuestring, (void *)(intptr_t)ng);
            }
            char *gk = xasprintf("%s\x1f%s", grp->valuestring, gold_s->valuestring);
            intptr_t at = (intptr_t)strmap_get(&gold_at, gk);
            if (!at) {
                gold = xrealloc(gold, (size_t)(ngold + 1) * sizeof *gold);
                gold[ngold] = (gqa_count){grp->valuestring, gold_s->valuestring, 0};
                strmap_put(&gold_at, gk, (void *)(intptr_t)(at = ++ngold));
            }
            gold[at - 1].count++;
            free(gk);
            char *pk = xasprintf("%s\x1f%s", grp->valuestring, p);
            strmap_put(&pred_count, pk, (void *)((intptr_t)strmap_get(&pred_count, pk) + 1));
            free(pk);
        }
    }
    if (ok && n_acc == 0) ok = 0, llava_fail("%s: no balanced question to score", qpath);
    if (ok) {
        out = cJSON_CreateObject();
        // eval.py: avg(scores[k]) * 100, printed "%.2f"
        cJSON_AddNumberToObject(out, "accuracy", gqa_avg(acc, n_acc) * 100);
        cJSON_AddNumberToObject(out, "binary", gqa_avg(bin, n_bin) * 100);
        cJSON_AddNumberToObject(out, "open", gqa_avg(opn, n_open) * 100);
        if (ng > 0) {
            // chiSquare(gold, predicted) / 100, over the groups and their gold answers in first-seen order
            double sum_score = 0;
            long sum_overall = 0;
            for (int g = 0; g < ng; g++) {
                double score = 0;
                long overall = 0;
                for (int i = 0; i < ngold; i++) {
                    if (strcmp(gold[i].group, group_names[g]) != 0) continue;
                    char *pk = xasprintf("%s\x1f%s", gold[i].group, gold[i].answer);
                    long o = (long)(intptr_t)strmap_get(&pred_count, pk), e = gold[i].count;
                    free(pk);
                    double d = (double)(o - e);
                    score += d * d / (double)e;
                    overall += e;
                }
                sum_score += score * (double)overall;
                sum_overall += overall;
            }
            cJSON_AddNumberToObject(out, "distribution", sum_score / (double)sum_overall / 100);
        }
        cJSON_AddNumberToObject(out, "questions", n_acc);
        cJSON_AddNumberToObject(out, "missing", missing);
        if (ppath) cJSON_AddStringToObject(out, "predictions_file", ppath);
    }
    for (int i = 0; pred && i < as.n; i++) free(pred[i]);
    free(pred);
    free(gold);
    free(group_names);
    free(ppath);
    strmap_free(&asked);
    strmap_free(&last);
    strmap_free(&groups);
    strmap_free(&gold_at);
    strmap_free(&pred_count);
    eval_lines_free(&as);
    cJSON_Delete(qs);
    free(qpath);
    return out;
}

const eval_bench eval_bench_gqa = {
    .name = "gqa",
    .title = "GQA",
    .question_file = "llava_gqa_testdev_balanced.jsonl",
    .image_folder = "data/images",
    .max_new_tokens = 128,
    .kind = EVAL_EXACT,
    .primary = "accuracy",
    .published_7b = 62.0,
    .published_13b = 63.3,
    .download =
        "the GQA data (https://cs.stanford.edu/people/dorarad/gqa/download.html: testdev_balanced_questions.json "
        "and the images) under ./playground/data/eval/gqa/data; llava_gqa_testdev_balanced.jsonl comes with "
        "LLaVA's eval.zip",
    .prepare = NULL,
    .score = gqa_score,
};
