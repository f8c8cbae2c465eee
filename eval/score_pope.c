// POPE (COCO adversarial / popular / random), scored as LLaVA's llava/eval/eval_pope.py scores it
// (checked against it by tests/test_eval_choice.c, goldens from tools/reference/eval/):
//   - an answer is "no" when its first sentence (the text up to the first '.'), with the commas removed
//     and split on single spaces, holds the word "No", "not" or "no"; anything else is "yes"
//     ("Not sure" is yes, "No\nthere" is yes: only spaces split);
//   - a split's answers are the answers to its questions (the question file's "category") in the
//     answers file's order, paired with the labels of coco/coco_pope_<split>.json BY ORDER, as the
//     script does: a missing or reordered answer shifts the pairs (reported, never hidden: "missing"
//     and "misaligned" per split), and the pairs stop at the shorter list;
//   - per split TP, FP, TN, FN, accuracy, precision, recall, F1 and the yes ratio (in percent here;
//     the script prints fractions), and LLaVA's reported number: the mean F1 of the splits.
// Where the script divides by zero (no answer in a split, no "yes" predicted, no "yes" label) it
// stops with ZeroDivisionError; here that metric is 0.
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "score_choice.h"

extern const eval_bench eval_bench_pope;

static const char *const POPE_SPLITS[3] = {"adversarial", "popular", "random"};

// 1 when eval_pope.py reads the answer as "no".
static int pope_says_no(const char *text) {
    size_t n = strcspn(text, ".");  // only the first sentence
    char *s = xmalloc(n + 1);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (text[i] != ',') s[m++] = text[i];
    s[m] = 0;
    int no = 0;
    for (char *w = s;;) {  // str.split(' '): every single space splits, empty words included
        char *sp = strchr(w, ' ');
        size_t L = sp ? (size_t)(sp - w) : strlen(w);
        if ((L == 2 && (!strncmp(w, "No", 2) || !strncmp(w, "no", 2))) || (L == 3 && !strncmp(w, "not", 3))) no = 1;
        if (!sp) break;
        w = sp + 1;
    }
    free(s);
    return no;
}

static cJSON *pope_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_pope;
    char *qp = sc_question_path(b, in, b->question_file);
    if (!qp) return NULL;
    eval_lines qs, ans;
    if (eval_read_lines(qp, &qs) != 0) {
        free(qp);
        return NULL;
    }
    if (sc_read_answers(in->answers, &ans) != 0) {
        eval_lines_free(&qs);
        free(qp);
        return NULL;
    }
    cJSON *out = NULL;
    strmap qmap = {0}, answered = {0};
    int *qsplit = xcalloc((size_t)qs.n + 1, sizeof(int)), *qpos = xcalloc((size_t)qs.n + 1, sizeof(int));
    int nq[3] = {0, 0, 0};
    for (int i = 0; i < qs.n; i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id");
        const cJSON *cat = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "category");
        char *k = sc_key(id);
        if (!k || !cJSON_IsString(cat)) {
            llava_fail("%s line %d: a POPE question needs a question_id and a \"category\"", qp, qs.line[i]);
            free(k);
            goto done;
        }
        qsplit[i] = -1;
        for (int s = 0; s < 3; s++)
            if (!strcmp(cat->valuestring, POPE_SPLITS[s])) qsplit[i] = s, qpos[i] = nq[s]++;
        strmap_set_int(&qmap, k, i);
        free(k);
    }
    // Each split's answers in the answers file's order, as eval_pope.py selects them.
    int *apred[3], na[3] = {0, 0, 0}, misaligned[3] = {0, 0, 0};
    for (int s = 0; s < 3; s++) apred[s] = xmalloc(sizeof(int) * ((size_t)ans.n + 1));
    for (int i = 0; i < ans.n; i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ans.obj[i], "question_id");
        char *k = sc_key(id);
        int q = strmap_get_int(&qmap, k);
        if (q < 0) {
            char *shown = cJSON_PrintUnformatted(id);
            llava_fail("%s line %d: question_id %s is not in the question file %s (eval_pope.py stops here too)",
                       in->answers, ans.line[i], shown, qp);
            free(shown);
            free(k);
            for (int s = 0; s < 3; s++) free(apred[s]);
            goto done;
        }
        strmap_set_int(&answered, k, 1);
        free(k);
        int s = qsplit[q];
        if (s < 0) continue;
        if (qpos[q] != na[s]) misaligned[s]++;
        apred[s][na[s]++] = !pope_says_no(cJSON_GetObjectItemCaseSensitive(ans.obj[i], "text")->valuestring);
    }
    out = cJSON_CreateObject();
    double f1sum = 0, accsum = 0;
    int nsplits = 0, missing_all = 0;
    cJSON *splits = cJSON_CreateObject();
    for (int s = 0; s < 3; s++) {
        if (!nq[s]) continue;  // a question file without this split (a --limit run)
        char name[64];
        snprintf(name, sizeof name, "coco/coco_pope_%s.json", POPE_SPLITS[s]);
        char *lp = eval_data_file(b, in, name);
        eval_lines lab;
        if (!lp || eval_read_lines(lp, &lab) != 0) {
            free(lp);
            cJSON_Delete(splits);
            cJSON_Delete(out);
            out = NULL;
            for (int t = 0; t < 3; t++) free(apred[t]);
            goto done;
        }
        int TP = 0, FP = 0, TN = 0, FN = 0, yes = 0, bad = 0;
        for (int i = 0; i < lab.n && !bad; i++)
            if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(lab.obj[i], "label"))) bad = lab.line[i];
        if (bad) {
            llava_fail("%s line %d: no \"label\"", lp, bad);
            eval_lines_free(&lab);
            free(lp);
            cJSON_Delete(splits);
            cJSON_Delete(out);
            out = NULL;
            for (int t = 0; t < 3; t++) free(apred[t]);
            goto done;
        }
        for (int i = 0; i < na[s]; i++) yes += apred[s][i];
        int pairs = na[s] < lab.n ? na[s] : lab.n;
        for (int i = 0; i < pairs; i++) {
            int label = strcmp(cJSON_GetObjectItemCaseSensitive(lab.obj[i], "label")->valuestring, "no") != 0;
            int pred = apred[s][i];
            TP += pred && label;
            FP += pred && !label;
            TN += !pred && !label;
            FN += !pred && label;
        }
        int missing = 0;
        for (int i = 0; i < qs.n; i++)
            if (qsplit[i] == s) {
                char *k = sc_key(cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id"));
                missing += strmap_get_int(&answered, k) < 0;
                free(k);
            }
        double precision = TP + FP ? (double)TP / (double)(TP + FP) : 0.0;
        double recall = TP + FN ? (double)TP / (double)(TP + FN) : 0.0;
        double f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
        double acc = TP + TN + FP + FN ? (double)(TP + TN) / (double)(TP + TN + FP + FN) : 0.0;
        double yes_ratio = na[s] ? (double)yes / (double)na[s] : 0.0;
        cJSON *o = cJSON_AddObjectToObject(splits, POPE_SPLITS[s]);
        cJSON_AddNumberToObject(o, "TP", TP);
        cJSON_AddNumberToObject(o, "FP", FP);
        cJSON_AddNumberToObject(o, "TN", TN);
        cJSON_AddNumberToObject(o, "FN", FN);
        cJSON_AddNumberToObject(o, "acc", acc * 100);
        cJSON_AddNumberToObject(o, "precision", precision * 100);
        cJSON_AddNumberToObject(o, "recall", recall * 100);
        cJSON_AddNumberToObject(o, "f1", f1 * 100);
        cJSON_AddNumberToObject(o, "yes_ratio", yes_ratio * 100);
        cJSON_AddNumberToObject(o, "samples", na[s]);  // the script's "# samples"
        cJSON_AddNumberToObject(o, "labels", lab.n);
        cJSON_AddNumberToObject(o, "questions", nq[s]);
        cJSON_AddNumberToObject(o, "missing", missing);
        cJSON_AddNumberToObject(o, "misaligned", misaligned[s]);
        f1sum += f1;
        accsum += acc;
        nsplits++;
        missing_all += missing;
        eval_lines_free(&lab);
        free(lp);
    }
    for (int s = 0; s < 3; s++) free(apred[s]);
    cJSON_AddNumberToObject(out, "f1", nsplits ? f1sum / nsplits * 100 : 0.0);
    cJSON_AddNumberToObject(out, "acc", nsplits ? accsum / nsplits * 100 : 0.0);
    cJSON_AddNumberToObject(out, "splits_scored", nsplits);
    cJSON_AddNumberToObject(out, "missing", missing_all);
    cJSON_AddItemToObject(out, "splits", splits);
done:
    strmap_free(&qmap);
    strmap_free(&answered);
    free(qsplit);
    free(qpos);
    eval_lines_free(&qs);
    eval_lines_free(&ans);
    free(qp);
    return out;
}

const eval_bench eval_bench_pope = {
    .name = "pope",
    .title = "POPE",
    .question_file = "llava_pope_test.jsonl",
    .image_folder = "val2014",
    .max_new_tokens = 128,
    .kind = EVAL_EXACT,
    .primary = "f1",
    .published_7b = 85.9,
    .published_13b = 85.9,
    .download =
        "coco/ from POPE (github.com/AoiDragon/POPE, output/coco at e3e3926) and COCO val2014 images, "
        "with llava_pope_test.jsonl from LLaVA's eval.zip, under playground/data/eval/pope",
    .prepare = NULL,
    .score = pope_score,
};
