// ScienceQA (test split; LLaVA reports the IMG subset), asked as LLaVA's llava/eval/model_vqa_science.py
// asks it with --single-pred-prompt and scored as llava/eval/eval_science_qa.py scores it (checked
// against both by tests/test_eval_choice.c, goldens from tools/reference/eval/).
//
// prepare(): for each conversation of llava_test_CQM-A.json, the human turn with every "<image>"
// removed and the whitespace around it stripped, then "\nAnswer with the option's letter from the given
// choices directly."; the image, when there is one, as the conversation names it (under images/test).
//
// score(): the problems of pid_splits.json's "test" list (problems.json), in that order; an answer is
// matched by its string question_id (the last answer of an id counts, as a Python dict keeps it) and
// read as the script reads it:
//   1. the whole text is one of A B C D E;
//   2. else the text is at least 3 characters, the first one of A-E and the next two ". ";
//   3. else exactly one match of the regex 'The answer is ([A-Z]).' (the '.' any character but a
//      newline: "The answer is B" at the very end does not match, two matches do not count);
//   4. else "FAILED". A letter past the problem's choices is wrong.
// A problem without an answer is "FAILED" (and reported in "missing"). The IMG subset is the answered
// problems whose prompt holds "<image>" (the script's rule), or, when the prompt does not (an answers
// file whose prompt lacks the token), whose problem has an image: the same set for PyTorch LLaVA's
// answers. The script counts a missing answer outside the IMG subset whatever its problem (its prompt
// is 'Unknown'); so does this scorer, and it reports those in "missing_img".
// With in->out, writes the script's two output files (its --output-file and --output-result) as
// scienceqa_output.json and scienceqa_result.json.
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "score_choice.h"

extern const eval_bench eval_bench_scienceqa;

#define SQA_SUFFIX "Answer with the option's letter from the given choices directly."

static void sqa_strip(char **s) {  // Python str.strip()
    char *p = *s;
    int n;
    while (*p && sc_py_space(sc_utf8(p, &n))) p += n;
    size_t len = strlen(p);
    // from the end: step back over whole code points
    while (len > 0) {
        size_t k = len - 1;
        while (k > 0 && ((unsigned char)p[k] & 0xC0) == 0x80) k--;
        if (!sc_py_space(sc_utf8(p + k, &n)) || k + (size_t)n != len) break;
        len = k;
    }
    char *o = xmalloc(len + 1);
    memcpy(o, p, len);
    o[len] = 0;
    free(*s);
    *s = o;
}

static char *sqa_text(const char *value) {  // value.replace('<image>', '').strip() + suffix
    strbuf b = {0};
    sb_puts(&b, "");
    for (const char *p = value; *p;) {
        if (!strncmp(p, "<image>", 7)) {
            p += 7;
            continue;
        }
        sb_put(&b, p++, 1);
    }
    sqa_strip(&b.p);
    char *t = xasprintf("%s\n%s", b.p, SQA_SUFFIX);
    free(b.p);
    return t;
}

static int sqa_prepare(const eval_inputs *in, const char *path, long limit) {
    const eval_bench *bn = &eval_bench_scienceqa;
    char *qp = eval_data_file(bn, in, bn->question_file);
    if (!qp) return -1;
    cJSON *arr = eval_read_json(qp);
    if (!arr) {
        free(qp);
        return -1;
    }
    int rc = 0;
    strbuf out = {0};
    sb_puts(&out, "");
    if (!cJSON_IsArray(arr)) rc = llava_fail("%s: not a JSON array of LLaVA conversations", qp);
    long i = 0;
    for (const cJSON *e = arr ? arr->child : NULL; rc == 0 && e && (limit <= 0 || i < limit); e = e->next, i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(e, "id");
        const cJSON *img = cJSON_GetObjectItemCaseSensitive(e, "image");
        const cJSON *conv = cJSON_GetObjectItemCaseSensitive(e, "conversations");
        const cJSON *first = cJSON_IsArray(conv) ? conv->child : NULL;
        const cJSON *val = first ? cJSON_GetObjectItemCaseSensitive(first, "value") : NULL;
        if (!(cJSON_IsString(id) || cJSON_IsNumber(id)) || !cJSON_IsString(val) || (img && !cJSON_IsString(img))) {
            rc = llava_fail(
                "%s: entry %ld: a conversation needs an \"id\", a string \"image\" if any, and a first "
                "turn with a string \"value\"",
                qp, i + 1);
            break;
        }
        char *text = sqa_text(val->valuestring);
        cJSON *q = cJSON_CreateObject();
        cJSON_AddItemToObject(q, "question_id", cJSON_Duplicate(id, 0));
        if (img) cJSON_AddStringToObject(q, "image", img->valuestring);
        cJSON_AddStringToObject(q, "text", text);
        free(text);
        char *line = cJSON_PrintUnformatted(q);
        sb_puts(&out, line);
        sb_puts(&out, "\n");
        free(line);
        cJSON_Delete(q);
    }
    if (rc == 0 && write_file_atomic(path, out.p, out.n) != 0) rc = llava_fail_ctx("scienceqa: writing %s", path);
    free(out.p);
    cJSON_Delete(arr);
    free(qp);
    return rc;
}

// The letter eval_science_qa.py parses, or NULL for "FAILED". `buf` holds one letter.
static const char *sqa_parse(const char *t, char buf[2]) {
    static const char *const OPT = "ABCDE";
    if (t[0] && !t[1] && strchr(OPT, t[0])) return buf[0] = t[0], buf[1] = 0, buf;
    if (t[0] && strchr(OPT, t[0]) && t[1] == '.' && t[2] == ' ') return buf[0] = t[0], buf[1] = 0, buf;
    int found = 0;
    char letter = 0;
    for (const char *p = t; *p;) {
        if (!strncmp(p, "The answer is ", 14) && p[14] >= 'A' && p[14] <= 'Z' && p[15] && p[15] != '\n') {
            int n;
            sc_utf8(p + 15, &n);
            if (!found) letter = p[14];
            found++;
            p += 15 + n;
        } else {
            p++;
        }
    }
    if (found == 1) return buf[0] = letter, buf[1] = 0, buf;
    return NULL;
}

static cJSON *sqa_score(const eval_inputs *in) {
    const eval_bench *bn = &eval_bench_scienceqa;
    char *pp = eval_data_file(bn, in, "problems.json"), *sp = pp ? eval_data_file(bn, in, "pid_splits.json") : NULL;
    cJSON *problems = sp ? eval_read_json(pp) : NULL, *splits = problems ? eval_read_json(sp) : NULL;
    eval_lines ans = {0};
    cJSON *out = NULL, *results = NULL, *sqa = NULL;
    strmap pred = {0}, only = {0};
    int restrict_ids = 0;
    if (!splits || sc_read_answers(in->answers, &ans) != 0) goto done;
    const cJSON *test = cJSON_GetObjectItemCaseSensitive(splits, "test");
    if (!cJSON_IsArray(test)) {
        llava_fail("%s: no \"test\" list", sp);
        goto done;
    }
    for (int i = 0; i < ans.n; i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ans.obj[i], "question_id");
        if (cJSON_IsString(id)) strmap_set_int(&pred, id->valuestring, i);  // problems.json's ids are strings
    }
    if (in->questions) {  // a question file answered (a --limit run): its problems only
        eval_lines qs;
        if (eval_read_lines(in->questions, &qs) != 0) goto done;
        for (int i = 0; i < qs.n; i++) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id");
            if (cJSON_IsString(id)) strmap_set_int(&only, id->valuestring, 1);
        }
        eval_lines_free(&qs);
        restrict_ids = 1;
    }
    results = cJSON_CreateObject();
    cJSON *correct_l = cJSON_AddArrayToObject(results, "correct"),
          *incorrect_l = cJSON_AddArrayToObject(results, "incorrect");
    sqa = cJSON_CreateObject();
    cJSON *res_map = cJSON_CreateObject(), *outs_map = cJSON_CreateObject();
    int correct = 0, total = 0, img_correct = 0, img_total = 0, missing = 0, missing_img = 0;
    for (const cJSON *pid = test->child; pid; pid = pid->next) {
        if (!cJSON_IsString(pid)) {
            llava_fail("%s: the \"test\" list holds a non-string id", sp);
            cJSON_Delete(res_map);
            cJSON_Delete(outs_map);
            goto done;
        }
        if (restrict_ids && strmap_get_int(&only, pid->valuestring) < 0) continue;
        const cJSON *prob = cJSON_GetObjectItemCaseSensitive(problems, pid->valuestring);
        const cJSON *choices = prob ? cJSON_GetObjectItemCaseSensitive(prob, "choices") : NULL;
        const cJSON *answer = prob ? cJSON_GetObjectItemCaseSensitive(prob, "answer") : NULL;
        const cJSON *image = prob ? cJSON_GetObjectItemCaseSensitive(prob, "image") : NULL;
        if (!cJSON_IsArray(choices) || !cJSON_IsNumber(answer) || answer->valueint < 0 || answer->valueint > 4) {
            llava_fail("%s: problem %s lacks \"choices\" or an \"answer\" index (0-4)", pp, pid->valuestring);
            cJSON_Delete(res_map);
            cJSON_Delete(outs_map);
            goto done;
        }
        int a = strmap_get_int(&pred, pid->valuestring);
        const char *text = "FAILED", *prompt = "Unknown";
        if (a >= 0) {
            text = cJSON_GetObjectItemCaseSensitive(ans.obj[a], "text")->valuestring;
            const cJSON *pr = cJSON_GetObjectItemCaseSensitive(ans.obj[a], "prompt");
            prompt = cJSON_IsString(pr) ? pr->valuestring : "";
        }
        char buf[2];
        const char *parsed = sqa_parse(text, buf);
        int nchoices = cJSON_GetArraySize(choices);
        int pred_idx = parsed && parsed[0] <= 'E' && parsed[0] - 'A' < nchoices ? parsed[0] - 'A' : -1;
        int ok = pred_idx == answer->valueint;
        int has_image = image && !cJSON_IsNull(image);
        int multimodal = a >= 0 && (strstr(prompt, "<image>") != NULL || has_image);
        if (a < 0) missing++, missing_img += has_image;
        total++;
        correct += ok;
        img_total += multimodal;
        img_correct += multimodal && ok;
        char gt[2] = {(char)("ABCDE"[answer->valueint]), 0};
        cJSON *an = cJSON_CreateObject();
        cJSON_AddStringToObject(an, "question_id", pid->valuestring);
        cJSON_AddStringToObject(an, "parsed_ans", parsed ? parsed : "FAILED");
        cJSON_AddStringToObject(an, "ground_truth", gt);
        cJSON_AddStringToObject(an, "question", prompt);
        cJSON_AddStringToObject(an, "pred", text);
        cJSON_AddBoolToObject(an, "is_multimodal", multimodal);
        cJSON_AddItemToArray(ok ? correct_l : incorrect_l, an);
        cJSON_AddNumberToObject(res_map, pid->valuestring, pred_idx);
        cJSON_AddStringToObject(outs_map, pid->valuestring, text);
    }
    double acc = sc_pct(correct, total);
    cJSON_AddNumberToObject(sqa, "acc", acc);
    cJSON_AddNumberToObject(sqa, "correct", correct);
    cJSON_AddNumberToObject(sqa, "count", total);
    cJSON_AddItemToObject(sqa, "results", res_map);
    cJSON_AddItemToObject(sqa, "outputs", outs_map);
    out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "img_acc", sc_pct(img_correct, img_total));
    cJSON_AddNumberToObject(out, "acc", acc);
    cJSON_AddNumberToObject(out, "correct", correct);
    cJSON_AddNumberToObject(out, "count", total);
    cJSON_AddNumberToObject(out, "img_correct", img_correct);
    cJSON_AddNumberToObject(out, "img_count", img_total);
    cJSON_AddNumberToObject(out, "missing", missing);
    cJSON_AddNumberToObject(out, "missing_img", missing_img);
    if (in->out) {
        char *o1 = cJSON_Print(results), *o2 = cJSON_Print(sqa);
        int rc = sc_write_out(in, "scienceqa_output.json", o1, strlen(o1));
        if (rc == 0) rc = sc_write_out(in, "scienceqa_result.json", o2, strlen(o2));
        free(o1);
        free(o2);
        if (rc != 0) {
            cJSON_Delete(out);
            out = NULL;
        }
    }
done:
    cJSON_Delete(results);
    cJSON_Delete(sqa);
    strmap_free(&pred);
    strmap_free(&only);
    eval_lines_free(&ans);
    cJSON_Delete(problems);
    cJSON_Delete(splits);
    free(pp);
    free(sp);
    return out;
}

const eval_bench eval_bench_scienceqa = {
    .name = "scienceqa",
    .title = "ScienceQA-IMG",
    .question_file = "llava_test_CQM-A.json",
    .image_folder = "images/test",
    .max_new_tokens = 1024,  // model_vqa_science.py
    .kind = EVAL_EXACT,
    .primary = "img_acc",
    .published_7b = 66.8,
    .published_13b = 71.6,
    .download =
        "images/, pid_splits.json and problems.json from data/scienceqa of github.com/lupantech/ScienceQA, "
        "with llava_test_CQM-A.json from LLaVA's eval.zip, under playground/data/eval/scienceqa",
    .prepare = sqa_prepare,
    .score = sqa_score,
};
