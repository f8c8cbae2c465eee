// MME (perception: 10 subtasks, cognition: 4), scored as LLaVA's pipeline scores it (checked against
// it by tests/test_eval_choice.c, goldens from tools/reference/eval/): convert_answer_to_mme.py (from
// LLaVA's eval.zip) finds each answer's ground truth, and MME's eval_tool/calculation.py
// (BradyFU/Awesome-Multimodal-Large-Language-Models, Evaluation branch) scores it:
//   - the ground truth: every MME_Benchmark_release_version/<task>/ (questions_answers_YN/ when the task
//     has an images/ folder) *.txt line "question<TAB>Yes|No"; an answer's question is its prompt less
//     "Answer the question using a single word or phrase." (then stripped), plus " Please answer yes or
//     no." (or with two spaces, the way some of MME's files spell it); the task is the question_id up to
//     the first '/', the file the id's last part up to its first '.', plus ".txt";
//   - an answer (lower-cased) is "yes" or "no" when it is exactly that, else "yes" when its first 4
//     characters hold "yes", else "no" when they hold "no", else "other" (wrong); "Not sure" is "no";
//   - per task: acc (right / questions), acc+ (images with both questions right / images, the
//     questions taken two by two in order: MME asks two per image), score = acc*100 + acc+*100;
//     perception = the sum of the 10 perception scores (max 2000), cognition of the 4 others.
// MME's question_ids repeat (both questions of an image share the image's path), so answers are
// matched to the question file's questions by question_id and prompt (by order within an id when an
// answer has no prompt), and each task's lines are taken in the question file's order, which is the
// answers file's order for LLaVA's own runs. A question without an answer is scored as an empty answer
// in its place ("missing"); the official pipeline would drop it and pair the rest out of step, or stop.
// An answer holding a line break or a tab is cut there ("cut_answers"): calculation.py reads its files
// line by line and splits on tabs, and stops on such an answer.
// With in->out, writes the files calculation.py reads (convert_answer_to_mme.py's output) under
// mme_eval_tool/<task>.txt.
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "eval.h"
#include "score_choice.h"

extern const eval_bench eval_bench_mme;

static const char *const MME_TASKS[14] = {"existence",
                                          "count",
                                          "position",
                                          "color",
                                          "posters",
                                          "celebrity",
                                          "scene",
                                          "landmark",
                                          "artwork",
                                          "OCR",
                                          "commonsense_reasoning",
                                          "numerical_calculation",
                                          "text_translation",
                                          "code_reasoning"};
#define MME_PERCEPTION 10
#define MME_SHORT "Answer the question using a single word or phrase."
#define MME_YN " Please answer yes or no."
#define MME_YN2 "  Please answer yes or no."

// The ground truth: key "task\x1ffile\x1fquestion" -> index into gt_ans.
typedef struct {
    strmap map;
    char **ans;
    int n, cap;
} mme_gt;

static void gt_free(mme_gt *g) {
    strmap_free(&g->map);
    for (int i = 0; i < g->n; i++) free(g->ans[i]);
    free(g->ans);
}

static char *gt_key(const char *task, const char *file, const char *q) {
    return xasprintf("%s\x1f%s\x1f%s", task, file, q);
}

// Python's str.strip() on [s, s+n): the stripped range.
static void py_strip_range(const char **s, size_t *n) {
    const char *p = *s, *e = *s + *n;
    int k;
    while (p < e && sc_py_space(sc_utf8(p, &k))) p += k;
    while (e > p) {
        const char *q = e - 1;
        while (q > p && ((unsigned char)*q & 0xC0) == 0x80) q--;
        if (!sc_py_space(sc_utf8(q, &k)) || q + k != e) break;
        e = q;
    }
    *s = p;
    *n = (size_t)(e - p);
}

static int gt_read_file(mme_gt *g, const char *task, const char *dir, const char *file) {
    char *p = path_join(dir, file);
    size_t len;
    char *text = read_file(p, (size_t)1 << 28, &len);
    if (!text) {
        free(p);
        return -1;
    }
    int lineno = 0, rc = 0;
    for (char *s = text; s < text + len && rc == 0;) {  // Python's universal newlines: \n, \r\n, \r
        char *e = s;
        while (e < text + len && *e != '\n' && *e != '\r') e++;
        char *next = e < text + len ? e + (e[0] == '\r' && e + 1 < text + len && e[1] == '\n' ? 2 : 1) : e;
        lineno++;
        const char *ls = s;
        size_t ln = (size_t)(e - s);
        py_strip_range(&ls, &ln);
        const char *tab = memchr(ls, '\t', ln);
        if (!tab || memchr(tab + 1, '\t', ln - (size_t)(tab + 1 - ls))) {
            rc = llava_fail("%s line %d: not \"question<TAB>answer\" (convert_answer_to_mme.py stops here too)", p,
                            lineno);
            break;
        }
        char *q = xmalloc((size_t)(tab - ls) + 1);
        memcpy(q, ls, (size_t)(tab - ls));
        q[tab - ls] = 0;
        char *k = gt_key(task, file, q);
        free(q);
        size_t an = ln - (size_t)(tab + 1 - ls);
        char *a = xmalloc(an + 1);
        memcpy(a, tab + 1, an);
        a[an] = 0;
        int at = strmap_get_int(&g->map, k);
        if (at >= 0) {  // a repeated question: the last line counts (a dict assignment)
            free(g->ans[at]);
            g->ans[at] = a;
        } else {
            if (g->n == g->cap) {
                g->cap = g->cap ? g->cap * 2 : 256;
                g->ans = xrealloc(g->ans, sizeof(char *) * (size_t)g->cap);
            }
            g->ans[g->n] = a;
            strmap_set_int(&g->map, k, g->n++);
        }
        free(k);
        s = next;
    }
    free(text);
    free(p);
    return rc;
}

static int gt_read(mme_gt *g, const char *root) {
    DIR *d = opendir(root);
    if (!d) return llava_fail("mme: cannot read the folder %s", root);
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2]))) continue;
        char *cat = path_join(root, e->d_name);
        if (!dir_exists(cat)) {
            free(cat);
            continue;
        }
        char *img = path_join(cat, "images");
        char *qa = file_exists(img) || dir_exists(img) ? path_join(cat, "questions_answers_YN") : xstrdup(cat);
        DIR *qd = opendir(qa);
        if (!qd) {
            rc = llava_fail("mme: %s has images/ but no questions_answers_YN/ folder", cat);
        } else {
            struct dirent *f;
            while (rc == 0 && (f = readdir(qd))) {
                size_t L = strlen(f->d_name);
                if (L >= 4 && !strcmp(f->d_name + L - 4, ".txt")) rc = gt_read_file(g, e->d_name, qa, f->d_name);
            }
            closedir(qd);
        }
        free(img);
        free(qa);
        free(cat);
    }
    closedir(d);
    return rc;
}

// str.replace(old, new) for every occurrence.
static char *str_replace_all(const char *s, const char *old, const char *rep) {
    strbuf b = {0};
    sb_puts(&b, "");
    size_t ol = strlen(old);
    for (const char *p = s;;) {
        const char *f = strstr(p, old);
        if (!f) {
            sb_puts(&b, p);
            break;
        }
        sb_put(&b, p, (size_t)(f - p));
        sb_puts(&b, rep);
        p = f + ol;
    }
    return b.p;
}

// The question convert_answer_to_mme.py looks the ground truth up by (NULL: not found, *q_out set to
// the last form tried).
static const char *gt_find(const mme_gt *g, const char *task, const char *file, const char *prompt, char **q_out) {
    char *p = xstrdup(prompt);
    if (strstr(p, MME_SHORT)) {
        char *r = str_replace_all(p, MME_SHORT, "");
        const char *s = r;
        size_t n = strlen(r);
        py_strip_range(&s, &n);
        free(p);
        p = xmalloc(n + 1);
        memcpy(p, s, n);
        p[n] = 0;
        free(r);
    }
    if (!strstr(p, "Please answer yes or no.")) {
        char *r = xasprintf("%s%s", p, MME_YN);
        free(p);
        p = r;
        char *k = gt_key(task, file, p);
        if (strmap_get_int(&g->map, k) < 0) {
            r = str_replace_all(p, MME_YN, MME_YN2);
            free(p);
            p = r;
        }
        free(k);
    }
    char *k = gt_key(task, file, p);
    int at = strmap_get_int(&g->map, k);
    free(k);
    *q_out = p;
    return at >= 0 ? g->ans[at] : NULL;
}

// calculation.py's parse_pred_ans on the lower-cased answer: 1 yes, 0 no, -1 other.
int eval_mme_parse(const char *a) {
    // Lower-case (ASCII letters are all that "yes"/"no" can match; U+0130 lower-cases to two code
    // points, which moves the 4-character window) and keep the first 4 code points.
    char pre[64];
    size_t n = 0;
    int cps = 0;
    for (const char *p = a; *p && cps < 4;) {
        int k;
        uint32_t c = sc_utf8(p, &k);
        if (c == 0x130) {
            pre[n++] = 'i';
            cps++;
            if (cps < 4) pre[n++] = '\x01', cps++;  // U+0307, never a letter of yes/no
            p += k;
            continue;
        }
        for (int j = 0; j < k; j++) pre[n++] = (char)(p[j] >= 'A' && p[j] <= 'Z' ? p[j] + 32 : p[j]);
        p += k;
        cps++;
    }
    pre[n] = 0;
    // (the whole answer exactly "yes" or "no" is covered: its first 4 characters hold it)
    if (strstr(pre, "yes")) return 1;
    if (strstr(pre, "no")) return 0;
    return -1;
}

typedef struct {
    int n, right, plus, images, other, unpaired, split_pairs, TP, FN, TN, FP, present;
} mme_task;

static cJSON *mme_score(const eval_inputs *in) {
    const eval_bench *b = &eval_bench_mme;
    char *root = eval_data_file(b, in, "MME_Benchmark_release_version");
    char *qp = root ? sc_question_path(b, in, b->question_file) : NULL;
    mme_gt gt = {0};
    eval_lines qs = {0}, ans = {0};
    cJSON *out = NULL;
    int *match = NULL;
    if (!qp || gt_read(&gt, root) != 0 || eval_read_lines(qp, &qs) != 0 || sc_read_answers(in->answers, &ans) != 0)
        goto done;
    // Answers to questions: by question_id and prompt (by order within the id without a prompt).
    match = xmalloc(sizeof(int) * ((size_t)qs.n + 1));
    strmap first = {0};  // qid key -> first question index; questions of one id chained by next[]
    int *next = xmalloc(sizeof(int) * ((size_t)qs.n + 1));
    for (int i = qs.n - 1; i >= 0; i--) {
        match[i] = -1;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id");
        const cJSON *tx = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "text");
        if (!cJSON_IsString(id) || !cJSON_IsString(tx)) {
            llava_fail("%s line %d: an MME question needs a string question_id and a text", qp, qs.line[i]);
            strmap_free(&first);
            free(next);
            goto done;
        }
        next[i] = strmap_get_int(&first, id->valuestring);
        strmap_set_int(&first, id->valuestring, i);
    }
    for (int a = 0; a < ans.n; a++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ans.obj[a], "question_id");
        const cJSON *pr = cJSON_GetObjectItemCaseSensitive(ans.obj[a], "prompt");
        int q = cJSON_IsString(id) ? strmap_get_int(&first, id->valuestring) : -1;
        for (; q >= 0; q = next[q]) {
            if (match[q] >= 0) continue;
            if (!cJSON_IsString(pr) ||
                !strcmp(pr->valuestring, cJSON_GetObjectItemCaseSensitive(qs.obj[q], "text")->valuestring))
                break;
        }
        if (q < 0) {
            char *shown = cJSON_PrintUnformatted(id);
            llava_fail("%s line %d: no question of the question file %s has question_id %s%s", in->answers, ans.line[a],
                       qp, shown, cJSON_IsString(pr) ? " and this prompt (or it was answered twice)" : "");
            free(shown);
            strmap_free(&first);
            free(next);
            goto done;
        }
        match[q] = a;
    }
    strmap_free(&first);
    free(next);
    mme_task t[14];
    memset(t, 0, sizeof t);
    strbuf files[14];
    memset(files, 0, sizeof files);
    int missing = 0, cut = 0, failed = 0;
    int prev_q[14], prev_ok[14];
    for (int i = 0; i < 14; i++) prev_q[i] = -1, prev_ok[i] = 0;
    for (int i = 0; i < qs.n && !failed; i++) {
        const char *qid = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id")->valuestring;
        size_t tl = strcspn(qid, "/");
        int task = -1;
        for (int k = 0; k < 14; k++)
            if (strlen(MME_TASKS[k]) == tl && !strncmp(MME_TASKS[k], qid, tl)) task = k;
        char *tname = xmalloc(tl + 1);
        memcpy(tname, qid, tl);
        tname[tl] = 0;
        const char *last = strrchr(qid, '/');
        last = last ? last + 1 : qid;
        size_t fl = strcspn(last, ".");
        char *file = xasprintf("%.*s.txt", (int)fl, last);
        int a = match[i];
        const char *prompt = cJSON_GetObjectItemCaseSensitive(qs.obj[i], "text")->valuestring;
        const char *text = "";
        if (a >= 0) {
            const cJSON *pr = cJSON_GetObjectItemCaseSensitive(ans.obj[a], "prompt");
            if (cJSON_IsString(pr)) prompt = pr->valuestring;
            text = cJSON_GetObjectItemCaseSensitive(ans.obj[a], "text")->valuestring;
        } else {
            missing++;
        }
        char *qtext = NULL;
        const char *g = gt_find(&gt, tname, file, prompt, &qtext);
        if (!g || task < 0) {
            if (a >= 0)
                llava_fail("%s line %d: no ground truth for task %s, file %s, question \"%s\" under %s", in->answers,
                           ans.line[a], tname, file, qtext, root);
            else
                llava_fail("%s line %d: no ground truth for task %s, file %s, question \"%s\" under %s", qp, qs.line[i],
                           tname, file, qtext, root);
            if (g && task < 0)
                llava_fail("%s line %d: \"%s\" is none of MME's 14 tasks", a >= 0 ? in->answers : qp,
                           a >= 0 ? ans.line[a] : qs.line[i], tname);
            failed = 1;
        } else {
            int gy = (g[0] | 32) == 'y' && (g[1] | 32) == 'e' && (g[2] | 32) == 's' && !g[3];
            int gn = (g[0] | 32) == 'n' && (g[1] | 32) == 'o' && !g[2];
            if (!gy && !gn) {
                llava_fail("mme: the ground truth of task %s, file %s, question \"%s\" is \"%s\", not yes or no", tname,
                           file, qtext, g);
                failed = 1;
            } else {
                size_t keep = strcspn(text, "\n\r\t");
                if (text[keep]) cut++;
                char *ansx = xmalloc(keep + 1);
                memcpy(ansx, text, keep);
                ansx[keep] = 0;
                int p = eval_mme_parse(ansx);
                mme_task *T = &t[task];
                int ok = p == gy;
                T->present = 1;
                T->n++;
                T->right += ok;
                if (p < 0) T->other++;
                else if (gy) p ? T->TP++ : T->FN++;
                else p ? T->FP++ : T->TN++;
                // two by two, in order
                if (prev_q[task] < 0) {
                    prev_q[task] = i;
                    prev_ok[task] = ok;
                } else {
                    T->images++;
                    T->plus += ok && prev_ok[task];
                    const char *pid =
                        cJSON_GetObjectItemCaseSensitive(qs.obj[prev_q[task]], "question_id")->valuestring;
                    T->split_pairs += strcmp(pid, qid) != 0;
                    prev_q[task] = -1;
                }
                sb_puts(&files[task], file);
                sb_puts(&files[task], "\t");
                sb_puts(&files[task], qtext);
                sb_puts(&files[task], "\t");
                sb_puts(&files[task], g);
                sb_puts(&files[task], "\t");
                sb_puts(&files[task], ansx);
                sb_puts(&files[task], "\n");
                free(ansx);
            }
        }
        free(qtext);
        free(file);
        free(tname);
    }
    if (!failed) {
        out = cJSON_CreateObject();
        cJSON *tasks = cJSON_CreateObject();
        double sums[2] = {0, 0};
        int absent = 0;
        for (int k = 0; k < 14; k++) {
            mme_task *T = &t[k];
            if (prev_q[k] >= 0) T->images++, T->unpaired++;  // a lone last question: its image cannot count for acc+
            if (!T->present) {
                absent++;
                continue;
            }
            double acc = sc_pct(T->right, T->n), plus = sc_pct(T->plus, T->images);
            double score = 0;
            score += acc;
            score += plus;
            sums[k >= MME_PERCEPTION] += score;
            cJSON *o = cJSON_AddObjectToObject(tasks, MME_TASKS[k]);
            cJSON_AddNumberToObject(o, "score", score);
            cJSON_AddNumberToObject(o, "acc", acc);
            cJSON_AddNumberToObject(o, "acc_plus", plus);
            cJSON_AddNumberToObject(o, "questions", T->n);
            cJSON_AddNumberToObject(o, "images", T->images);
            cJSON_AddNumberToObject(o, "other_num", T->other);
            cJSON_AddNumberToObject(o, "TP", T->TP);
            cJSON_AddNumberToObject(o, "FN", T->FN);
            cJSON_AddNumberToObject(o, "TN", T->TN);
            cJSON_AddNumberToObject(o, "FP", T->FP);
            cJSON_AddNumberToObject(o, "precision",
                                    T->TP + T->FP ? (double)T->TP / (double)(T->TP + T->FP) * 100 : 0.0);
            cJSON_AddNumberToObject(o, "recall", T->TP + T->FN ? (double)T->TP / (double)(T->TP + T->FN) * 100 : 0.0);
            if (T->unpaired) cJSON_AddNumberToObject(o, "unpaired", T->unpaired);
            if (T->split_pairs) cJSON_AddNumberToObject(o, "pairs_of_two_images", T->split_pairs);
            if (in->out) {
                char *name = xasprintf("mme_eval_tool/%s.txt", MME_TASKS[k]);
                int rc = sc_write_out(in, name, files[k].p, files[k].n);
                free(name);
                if (rc != 0) failed = 1;
            }
        }
        cJSON_AddNumberToObject(out, "perception", sums[0]);
        cJSON_AddNumberToObject(out, "cognition", sums[1]);
        cJSON_AddNumberToObject(out, "questions", qs.n);
        cJSON_AddNumberToObject(out, "missing", missing);
        cJSON_AddNumberToObject(out, "cut_answers", cut);
        cJSON_AddNumberToObject(out, "tasks_absent", absent);
        cJSON_AddItemToObject(out, "tasks", tasks);
        if (failed) {
            cJSON_Delete(out);
            out = NULL;
        }
    }
    for (int k = 0; k < 14; k++) free(files[k].p);
done:
    free(match);
    gt_free(&gt);
    eval_lines_free(&qs);
    eval_lines_free(&ans);
    free(qp);
    free(root);
    return out;
}

const eval_bench eval_bench_mme = {
    .name = "mme",
    .title = "MME",
    .question_file = "llava_mme.jsonl",
    .image_folder = "MME_Benchmark_release_version",
    .max_new_tokens = 128,
    .kind = EVAL_EXACT,
    .primary = "perception",
    .published_7b = 1510.7,
    .published_13b = 1531.3,
    .download =
        "MME_Benchmark_release_version/ per github.com/BradyFU/Awesome-Multimodal-Large-Language-Models "
        "(Evaluation branch), with llava_mme.jsonl from LLaVA's eval.zip, under playground/data/eval/MME",
    .prepare = NULL,
    .score = mme_score,
};
