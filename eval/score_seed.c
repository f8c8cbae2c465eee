// SEED-Bench (v1: image questions and the middle frame of the video ones), scored as LLaVA's
// scripts/convert_seed_for_submission.py scores it (checked against it by tests/test_eval_choice.c,
// goldens from tools/reference/eval/). The question file (llava-seed-bench.jsonl of LLaVA's eval.zip)
// already holds the prompts, so there is no prepare().
//   - an answer is right when its text equals the annotation's answer letter exactly ("A." and "a" are
//     wrong: the letter suffix makes LLaVA answer with the bare letter);
//   - answers are found by question_id as the script finds them: an annotation id that int() parses is
//     looked up as that number, any other as its string, and the answers file's ids as JSON typed them
//     (a string "123" is not the number 123); the last answer of an id counts;
//   - accuracy per question type (question_type_id, named by the annotation's question_type), over the
//     image questions ("image": data_type image, types 1-9), the video ones ("video") and all ("all",
//     the number LLaVA reports); a question without an answer counts as wrong ("missing").
// With in->out, writes the script's upload file (--result-upload-file) as seed_upload.jsonl, byte for
// byte as the script writes it. The script stops with KeyError at the first question without an answer;
// here those questions are left out of the file and counted in "upload_missing".
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "pyunicode.h"
#include "score_choice.h"

extern const eval_bench eval_bench_seed;

// Python's int(s) for the ids SEED uses: optional whitespace and sign, digits with single underscores
// between them. 1 and *v when it parses.
static int seed_int(const char *s, long long *v) {
    while (*s && isspace((unsigned char)*s)) s++;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!isdigit((unsigned char)*p)) return 0;
    char digits[64];
    size_t n = 0;
    digits[n++] = s[0] == '-' ? '-' : '+';
    for (; *p; p++) {
        if (isdigit((unsigned char)*p)) {
            if (n + 1 >= sizeof digits) return 0;
            digits[n++] = *p;
        } else if (*p == '_' && isdigit((unsigned char)p[1]) && isdigit((unsigned char)p[-1])) {
            continue;
        } else {
            break;
        }
    }
    while (*p && isspace((unsigned char)*p)) p++;
    if (*p) return 0;
    digits[n] = 0;
    errno = 0;
    *v = strtoll(digits, NULL, 10);
    return errno == 0;
}

// The key the script looks a question up by (int(question_id), else the string).
static char *seed_lookup_key(const cJSON *qid) {
    long long v;
    if (cJSON_IsString(qid) && seed_int(qid->valuestring, &v)) return sc_key_int(v);
    return sc_key(qid);
}

static cJSON *seed_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_seed;
    char *ap = eval_data_file(b, in, "SEED-Bench.json");
    cJSON *ann = ap ? eval_read_json(ap) : NULL, *out = NULL;
    eval_lines ans = {0};
    strmap res = {0}, only = {0};
    strbuf up = {0};
    char **tname = NULL;
    int ntype = 0;
    if (!ann || sc_read_answers(in->answers, &ans) != 0) goto done;
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(ann, "question_type");
    const cJSON *qs = cJSON_GetObjectItemCaseSensitive(ann, "questions");
    if (!cJSON_IsObject(types) || !cJSON_IsArray(qs)) {
        llava_fail("%s: no \"question_type\" object or \"questions\" list", ap);
        goto done;
    }
    for (const cJSON *t = types->child; t; t = t->next)
        if (cJSON_IsNumber(t) && t->valueint >= 0 && t->valueint < 1000 && t->valueint + 1 > ntype)
            ntype = t->valueint + 1;
    tname = xcalloc((size_t)ntype + 1, sizeof(char *));
    for (const cJSON *t = types->child; t; t = t->next)
        if (cJSON_IsNumber(t) && t->valueint >= 0 && t->valueint < ntype) tname[t->valueint] = t->string;  // last wins
    for (int i = 0; i < ans.n; i++) {
        char *k = sc_key(cJSON_GetObjectItemCaseSensitive(ans.obj[i], "question_id"));
        strmap_set_int(&res, k, i);
        free(k);
    }
    int restrict_ids = 0;
    if (in->questions) {  // the questions answered (a --limit run): those only
        eval_lines ql;
        if (eval_read_lines(in->questions, &ql) != 0) goto done;
        for (int i = 0; i < ql.n; i++) {
            char *k = sc_key(cJSON_GetObjectItemCaseSensitive(ql.obj[i], "question_id"));
            if (k) strmap_set_int(&only, k, 1);
            free(k);
        }
        eval_lines_free(&ql);
        restrict_ids = 1;
    }
    long *tcount = xcalloc((size_t)ntype + 1, sizeof(long)), *tright = xcalloc((size_t)ntype + 1, sizeof(long));
    long count[2] = {0, 0}, right[2] = {0, 0}, missing = 0, upload_missing = 0, total = 0, total_right = 0;
    int idx = 0, failed = 0;
    sb_puts(&up, "");
    for (const cJSON *q = qs->child; q; q = q->next, idx++) {
        const cJSON *qid = cJSON_GetObjectItemCaseSensitive(q, "question_id");
        const cJSON *tid = cJSON_GetObjectItemCaseSensitive(q, "question_type_id");
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(q, "data_type");
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(q, "answer");
        if (!(cJSON_IsString(qid) || cJSON_IsNumber(qid)) || !cJSON_IsNumber(tid) || tid->valueint < 0 ||
            tid->valueint >= ntype || !tname[tid->valueint] || !cJSON_IsString(dt) || !cJSON_IsString(want)) {
            llava_fail(
                "%s: question %d needs a question_id, a question_type_id named in question_type, a data_type "
                "and an answer",
                ap, idx + 1);
            failed = 1;
            break;
        }
        char *k = seed_lookup_key(qid);
        int in_set = !restrict_ids || strmap_get_int(&only, k) >= 0;
        if (!in_set) {
            free(k);
            continue;
        }
        int a = strmap_get_int(&res, k);
        free(k);
        int ok =
            a >= 0 && !strcmp(cJSON_GetObjectItemCaseSensitive(ans.obj[a], "text")->valuestring, want->valuestring);
        missing += a < 0;
        tcount[tid->valueint]++;
        tright[tid->valueint] += ok;
        total++;
        total_right += ok;
        int v = !strcmp(dt->valuestring, "video");
        if (v || !strcmp(dt->valuestring, "image")) count[v]++, right[v] += ok;
        // The upload line: the answer found by the id's string, else by int(id).
        char *ks = cJSON_IsString(qid) ? sc_key_str(qid->valuestring) : sc_key(qid);
        int u = strmap_get_int(&res, ks);
        free(ks);
        long long iv;
        if (u < 0 && cJSON_IsString(qid) && seed_int(qid->valuestring, &iv)) {
            char *ki = sc_key_int(iv);
            u = strmap_get_int(&res, ki);
            free(ki);
        }
        if (u < 0) {
            upload_missing++;
            continue;
        }
        sb_puts(&up, "{\"question_id\": ");
        if (cJSON_IsString(qid)) {
            pyu_json_string(&up, qid->valuestring);
        } else {
            char num[64];
            snprintf(num, sizeof num, "%lld", (long long)qid->valuedouble);
            sb_puts(&up, num);
        }
        sb_puts(&up, ", \"prediction\": ");
        pyu_json_string(&up, cJSON_GetObjectItemCaseSensitive(ans.obj[u], "text")->valuestring);
        sb_puts(&up, "}\n");
    }
    if (!failed) {
        out = cJSON_CreateObject();
        cJSON_AddNumberToObject(out, "all", sc_pct(total_right, total));
        if (count[0]) cJSON_AddNumberToObject(out, "image", sc_pct(right[0], count[0]));
        if (count[1]) cJSON_AddNumberToObject(out, "video", sc_pct(right[1], count[1]));
        cJSON_AddNumberToObject(out, "questions", total);
        cJSON_AddNumberToObject(out, "correct", total_right);
        cJSON_AddNumberToObject(out, "missing", missing);
        cJSON_AddNumberToObject(out, "upload_missing", upload_missing);
        cJSON *per = cJSON_AddObjectToObject(out, "types");
        for (int t = 0; t < ntype; t++)
            if (tcount[t]) {
                cJSON *o = cJSON_AddObjectToObject(per, tname[t]);
                cJSON_AddNumberToObject(o, "question_type_id", t);
                cJSON_AddNumberToObject(o, "acc", sc_pct(tright[t], tcount[t]));
                cJSON_AddNumberToObject(o, "questions", tcount[t]);
                cJSON_AddNumberToObject(o, "correct", tright[t]);
            }
        if (sc_write_out(in, "seed_upload.jsonl", up.p, up.n) != 0) {
            cJSON_Delete(out);
            out = NULL;
        }
    }
    free(tcount);
    free(tright);
done:
    free(up.p);
    free(tname);
    strmap_free(&res);
    strmap_free(&only);
    eval_lines_free(&ans);
    cJSON_Delete(ann);
    free(ap);
    return out;
}

const eval_bench eval_bench_seed = {
    .name = "seed",
    .title = "SEED-Bench",
    .question_file = "llava-seed-bench.jsonl",
    .image_folder = ".",
    .max_new_tokens = 128,
    .kind = EVAL_EXACT,
    .primary = "all",
    .published_7b = 58.6,
    .published_13b = 61.6,
    .download =
        "SEED-Bench.json and the images (SEED-Bench-image/) and middle video frames (SEED-Bench-video-image/, "
        "LLaVA's extract_video_frames.py) per github.com/AILab-CVC/SEED-Bench DATASET.md, with "
        "llava-seed-bench.jsonl from LLaVA's eval.zip, under playground/data/eval/seed_bench",
    .prepare = NULL,
    .score = seed_score,
};
