// MMBench dev and MMBench-CN dev: the questions asked as LLaVA's llava/eval/model_vqa_mmbench.py asks
// them (--single-pred-prompt, --lang cn for CN), and CircularEval scored offline with exact matching.
// Checked by tests/test_eval_choice.c against the official code run unmodified (tools/reference/eval/).
//
// The TSV (mmbench_dev_20230712.tsv, mmbench_dev_cn_20231003.tsv) is read as pandas.read_table reads it:
// tab-separated, a field that starts with '"' quoted ("" for one quote, tabs and line breaks inside), a
// quote elsewhere kept, and pandas' default missing values ("", "nan", "None", "NA", "N/A", "NULL", ...)
// missing. Its images are base64 in the TSV: prepare() writes each as a file (the decoded bytes as they
// are, named <index>.jpg/.png/.gif by their content) under <out>/<bench>_images/.
//
// The question (model_vqa_mmbench.py): the options are the columns A, B, C, D up to the first missing
// one (missing, or the text "nan"/"none" in any case); the question is the hint (when there is one),
// "\n", the question, then "\n<letter>. <option>" per option, then "\nAnswer with the option's letter
// from the given choices directly." (CN: "\n请直接回答选项字母。").
//
// CircularEval. The dev TSVs already hold every question once per rotation of its options: the
// question at index i, its copies at i + k * 1,000,000 with the options shifted and the answer letter
// moved with them (MMBench's own layout; OpenCompass's evaluator groups rows by index % 1e6). LLaVA's
// mmbench.sh asks every row once (it does not pass --all-rounds, which would rotate each row again), and
// so does prepare(): question_id = the row's index, which encodes the rotation (index / 1e6). A TSV
// without such copies (every index below 1e6) is asked as LLaVA's --all-rounds asks it: once per
// rotation of the options shown, question_id = index + round * 1,000,000 (answers of LLaVA's own
// --all-rounds runs, which keep the index and write round_id, are read the same way).
//
// score(): the official number comes from OpenCompass's server, which matches answers to options with
// GPT where the letter cannot be read off. Offline, each answer is matched as VLMEvalKit's
// multiple_choice_eval(model='exact_matching') matches it (vlmeval/utils/matching_util.py can_infer at
// commit c6bdffd3, the step the server runs before asking GPT), so kind = EVAL_APPROXIMATE:
//   1. an answer holding "Failed to obtain answer via API" matches no letter by rule 2; one holding
//      "Sorry, I can't help with images of people yet.", "I can't process this file.", "I'm sorry, but
//      without the image provided" or "Cannot determine the answer" is "Z" (wrong);
//   2. the characters . ( ) [ ] , : ; ! * # { } become spaces and the answer is split on whitespace;
//      when exactly one of the row's option letters is a word, that letter; when none is and "Z" is a
//      word, "Z" (wrong);
//   3. else, lower-cased, when exactly one option's text (lower-cased) is inside the answer, its letter;
//   4. else nothing (wrong: GPT would be asked on the server).
// The option letters of a row are its non-missing A-D (a missing C does not hide D, unlike the prompt).
// A question is right only when every rotation of it is ("hit"). "Overall" (percent) over the questions,
// per category and per l2-category (VLMEvalKit's abbreviations: CP, FP-S, FP-C, LR, RR, AR). A row
// without an answer is wrong ("missing"). Lower-casing covers ASCII, Latin-1, Latin Extended-A, Greek,
// Cyrillic and full-width Latin letters (Python's str.lower() also maps rarer scripts).
//
// With in->out, writes LLaVA's upload file (scripts/convert_mmbench_for_submission.py writes an .xlsx
// with pandas): the same table (the TSV less hint, category, source, image, comment and l2-category, a
// prediction column sixth: the last answer of each index) as a TSV in pandas' to_csv quoting,
// <bench>_upload.tsv, which OpenCompass's evaluator and pandas read as they read the xlsx.
#include <stdlib.h>
#include <string.h>

#include "common/base64.h"
#include "common/util.h"
#include "data/image.h"
#include "eval.h"
#include "score_choice.h"

extern const eval_bench eval_bench_mmbench;
extern const eval_bench eval_bench_mmbench_cn;

#define MMB_ROUND 1000000LL

// ---- the TSV

typedef struct {
    char *s;
    int na;  // pandas' NaN
} mmb_cell;

typedef struct {
    int ncol, nrow;
    char **col;
    mmb_cell **cell;  // [row][col]
    int *line;        // the line each row starts on
    char *path;
} mmb_tsv;

static void tsv_free(mmb_tsv *t) {
    for (int c = 0; c < t->ncol; c++) free(t->col[c]);
    for (int r = 0; r < t->nrow; r++) {
        for (int c = 0; c < t->ncol; c++) free(t->cell[r][c].s);
        free(t->cell[r]);
    }
    free(t->col);
    free(t->cell);
    free(t->line);
    free(t->path);
    memset(t, 0, sizeof *t);
}

static int pandas_na(const char *s) {
    static const char *const NA[] = {"",     "#N/A",   "#N/A N/A", "#NA",  "-1.#IND", "-1.#QNAN", "-NaN",
                                     "-nan", "1.#IND", "1.#QNAN",  "<NA>", "N/A",     "NA",       "NULL",
                                     "NaN",  "None",   "n/a",      "nan",  "null"};
    for (size_t i = 0; i < sizeof NA / sizeof NA[0]; i++)
        if (!strcmp(s, NA[i])) return 1;
    return 0;
}

// One record: fields into *out (count *n). p advances past the record's line break. Lines counted.
static int tsv_record(const char **pp, const char *end, strbuf **out, int *n, int *cap, int *lineno) {
    const char *p = *pp;
    *n = 0;
    for (;;) {
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *out = xrealloc(*out, sizeof(strbuf) * (size_t)*cap);
        }
        strbuf *f = &(*out)[(*n)++];
        memset(f, 0, sizeof *f);
        sb_puts(f, "");
        if (p < end && *p == '"') {  // quoted
            p++;
            for (;;) {
                if (p >= end) break;  // pandas: EOF inside a string
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        sb_put(f, "\"", 1);
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (*p == '\n') ++*lineno;
                sb_put(f, p++, 1);
            }
        }
        while (p < end && *p != '\t' && *p != '\n' && *p != '\r') sb_put(f, p++, 1);
        if (p < end && *p == '\t') {
            p++;
            continue;
        }
        if (p < end && *p == '\r') p++;
        if (p < end && *p == '\n') p++;
        ++*lineno;
        break;
    }
    *pp = p;
    return 0;
}

static int tsv_read(const char *path, mmb_tsv *t) {
    memset(t, 0, sizeof *t);
    size_t len;
    char *text = read_file(path, (size_t)1 << 34, &len);
    if (!text) return -1;
    t->path = xstrdup(path);
    const char *p = text, *end = text + len;
    strbuf *f = NULL;
    int n = 0, cap = 0, lineno = 1, rc = 0, rcap = 0;
    while (p < end) {
        int start = lineno;
        if (*p == '\n' || *p == '\r') {  // a blank line (skip_blank_lines)
            p += (*p == '\r' && p + 1 < end && p[1] == '\n') ? 2 : 1;
            lineno++;
            continue;
        }
        tsv_record(&p, end, &f, &n, &cap, &lineno);
        if (!t->col) {
            t->ncol = n;
            t->col = xmalloc(sizeof(char *) * (size_t)n);
            for (int i = 0; i < n; i++) t->col[i] = f[i].p;
            continue;
        }
        if (n > t->ncol) {
            rc = llava_fail("%s line %d: %d fields where the header has %d", path, start, n, t->ncol);
            for (int i = 0; i < n; i++) free(f[i].p);
            break;
        }
        if (t->nrow == rcap) {
            rcap = rcap ? rcap * 2 : 256;
            t->cell = xrealloc(t->cell, sizeof(mmb_cell *) * (size_t)rcap);
            t->line = xrealloc(t->line, sizeof(int) * (size_t)rcap);
        }
        mmb_cell *row = xcalloc((size_t)t->ncol, sizeof(mmb_cell));
        for (int i = 0; i < t->ncol; i++) {
            row[i].s = i < n ? f[i].p : xstrdup("");
            row[i].na = pandas_na(row[i].s);
        }
        t->cell[t->nrow] = row;
        t->line[t->nrow++] = start;
    }
    free(f);
    free(text);
    if (!t->col && rc == 0) rc = llava_fail("%s: empty", path);
    if (rc != 0) tsv_free(t);
    return rc;
}

static int tsv_col(const mmb_tsv *t, const char *name) {
    for (int c = 0; c < t->ncol; c++)
        if (!strcmp(t->col[c], name)) return c;
    return -1;
}

// LLaVA's is_none: NaN, or the text "nan" / "none" in any case.
static int llava_is_none(const mmb_cell *c) {
    if (c->na) return 1;
    const char *s = c->s;
    return (strlen(s) == 3 && (s[0] | 32) == 'n' && (s[1] | 32) == 'a' && (s[2] | 32) == 'n') ||
           (strlen(s) == 4 && (s[0] | 32) == 'n' && (s[1] | 32) == 'o' && (s[2] | 32) == 'n' && (s[3] | 32) == 'e');
}

// ---- the benchmark's rows (with generated rotations for a TSV without copies)

typedef struct {
    mmb_tsv t;
    int ci, cq, ch, co[4], cans, ccat, cl2, cimg;
    long long *index;
    int copies;  // the TSV holds its rotations
} mmb_data;

static void data_free(mmb_data *d) {
    tsv_free(&d->t);
    free(d->index);
}

static int data_read(const eval_bench *b, const eval_inputs *in, mmb_data *d) {
    memset(d, 0, sizeof *d);
    char *p = eval_data_file(b, in, b->question_file);
    if (!p) return -1;
    int rc = tsv_read(p, &d->t);
    free(p);
    if (rc != 0) return -1;
    mmb_tsv *t = &d->t;
    d->ci = tsv_col(t, "index"), d->cq = tsv_col(t, "question"), d->ch = tsv_col(t, "hint");
    for (int k = 0; k < 4; k++) d->co[k] = tsv_col(t, (const char[]){(char)('A' + k), 0});
    d->cans = tsv_col(t, "answer"), d->ccat = tsv_col(t, "category"), d->cl2 = tsv_col(t, "l2-category");
    d->cimg = tsv_col(t, "image");
    if (d->ci < 0 || d->cq < 0 || d->co[0] < 0) {
        llava_fail("%s: no \"index\", \"question\" or \"A\" column", t->path);
        data_free(d);
        return -1;
    }
    d->index = xmalloc(sizeof(long long) * ((size_t)t->nrow + 1));
    for (int r = 0; r < t->nrow; r++) {
        const char *s = t->cell[r][d->ci].s;
        char *e;
        long long v = strtoll(s, &e, 10);
        if (!*s || *e || v < 0) {
            llava_fail("%s line %d: index \"%s\" is not a whole number", t->path, t->line[r], s);
            data_free(d);
            return -1;
        }
        d->index[r] = v;
        if (v >= MMB_ROUND) d->copies = 1;
    }
    return 0;
}

// The options shown for row r (model_vqa_mmbench.py's get_options): up to the first none.
static int shown_options(const mmb_data *d, int r, const char *opt[4]) {
    int n = 0;
    for (int k = 0; k < 4 && d->co[k] >= 0; k++) {
        const mmb_cell *c = &d->t.cell[r][d->co[k]];
        if (llava_is_none(c)) break;
        opt[n++] = c->s;
    }
    return n;
}

// The number of questions a row is asked as: 1, or a rotation per option shown.
static int row_rounds(const mmb_data *d, int r) {
    if (d->copies) return 1;
    const char *opt[4];
    int n = shown_options(d, r, opt);
    return n ? n : 1;
}

// ---- prepare

static char *question_text(const mmb_data *d, int r, int round, int cn) {
    mmb_tsv *t = (mmb_tsv *)&d->t;
    const mmb_cell *q = &t->cell[r][d->cq];
    if (q->na) return NULL;
    strbuf b = {0};
    sb_puts(&b, "");
    if (d->ch >= 0 && !llava_is_none(&t->cell[r][d->ch])) {
        sb_puts(&b, t->cell[r][d->ch].s);
        sb_puts(&b, "\n");
    }
    sb_puts(&b, q->s);
    const char *opt[4];
    int n = shown_options(d, r, opt);
    for (int k = 0; k < n; k++) {
        char head[8] = {'\n', (char)('A' + k), '.', ' ', 0};
        sb_puts(&b, head);
        sb_puts(&b, opt[(k + round) % n]);
    }
    sb_puts(&b, cn ? "\n请直接回答选项字母。" : "\nAnswer with the option's letter from the given choices directly.");
    return b.p;
}

static int mmb_prepare_bench(const eval_bench *b, int cn, const eval_inputs *in, const char *path, long limit) {
    mmb_data d;
    if (data_read(b, in, &d) != 0) return -1;
    char *base = in->out ? xstrdup(in->out) : path_dirname(path);
    char *sub = xasprintf("%s_images", b->name);
    char *dir = path_join(base, sub);
    int rc = mkdir_p(dir) == 0 ? 0 : llava_fail("%s: cannot make %s", b->name, dir);
    strbuf out = {0};
    sb_puts(&out, "");
    long written = 0;
    for (int r = 0; rc == 0 && r < d.t.nrow && (limit <= 0 || written < limit); r++) {
        char *rel = NULL;
        if (d.cimg >= 0 && !d.t.cell[r][d.cimg].na) {
            const char *s = d.t.cell[r][d.cimg].s;
            size_t sl = strlen(s);
            uint8_t *bytes = xmalloc(base64_decoded_max(sl) + 1);
            size_t bl;
            if (base64_decode(s, sl, bytes, &bl) != 0) {
                rc = llava_fail("%s line %d: the image is not base64: %s", d.t.path, d.t.line[r], llava_errmsg());
                free(bytes);
                break;
            }
            image_format f = image_sniff(bytes, bl);
            const char *ext = f == IMAGE_FMT_JPEG  ? "jpg"
                              : f == IMAGE_FMT_PNG ? "png"
                              : f == IMAGE_FMT_GIF ? "gif"
                                                   : "bin";
            char *name = xasprintf("%lld.%s", d.index[r], ext);
            char *full = path_join(dir, name);
            if (write_file_atomic(full, bytes, bl) != 0) rc = llava_fail_ctx("%s: writing %s", b->name, full);
            rel = path_join(sub, name);
            free(full);
            free(name);
            free(bytes);
        } else {
            rc = llava_fail("%s line %d: no image", d.t.path, d.t.line[r]);
        }
        int nr = row_rounds(&d, r);
        for (int k = 0; rc == 0 && k < nr && (limit <= 0 || written < limit); k++) {
            char *text = question_text(&d, r, k, cn);
            if (!text) {
                rc = llava_fail("%s line %d: no question", d.t.path, d.t.line[r]);
                break;
            }
            cJSON *q = cJSON_CreateObject();
            cJSON_AddNumberToObject(q, "question_id", (double)(d.index[r] + k * MMB_ROUND));
            cJSON_AddStringToObject(q, "image", rel);
            cJSON_AddStringToObject(q, "text", text);
            char *line = cJSON_PrintUnformatted(q);
            sb_puts(&out, line);
            sb_puts(&out, "\n");
            free(line);
            cJSON_Delete(q);
            free(text);
            written++;
        }
        free(rel);
    }
    if (rc == 0 && write_file_atomic(path, out.p, out.n) != 0) rc = llava_fail_ctx("%s: writing %s", b->name, path);
    free(out.p);
    free(dir);
    free(sub);
    free(base);
    data_free(&d);
    return rc;
}

static int mmb_prepare(const eval_inputs *in, const char *path, long limit) {
    return mmb_prepare_bench(&eval_bench_mmbench, 0, in, path, limit);
}
static int mmb_cn_prepare(const eval_inputs *in, const char *path, long limit) {
    return mmb_prepare_bench(&eval_bench_mmbench_cn, 1, in, path, limit);
}

// ---- matching (VLMEvalKit's can_infer at c6bdffd3)

static uint32_t py_lower1(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c < 0x80) return c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7) || (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) ||
        (c >= 0x410 && c <= 0x42F) || (c >= 0xFF21 && c <= 0xFF3A))
        return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c | 1;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
    if (c == 0x178) return 0xFF;
    return c;
}

static void put_utf8(strbuf *b, uint32_t c) {
    char o[4];
    int n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    if (n == 1) o[0] = (char)c;
    else if (n == 2) o[0] = (char)(0xC0 | (c >> 6)), o[1] = (char)(0x80 | (c & 0x3F));
    else if (n == 3)
        o[0] = (char)(0xE0 | (c >> 12)), o[1] = (char)(0x80 | ((c >> 6) & 0x3F)), o[2] = (char)(0x80 | (c & 0x3F));
    else
        o[0] = (char)(0xF0 | (c >> 18)), o[1] = (char)(0x80 | ((c >> 12) & 0x3F)),
        o[2] = (char)(0x80 | ((c >> 6) & 0x3F)), o[3] = (char)(0x80 | (c & 0x3F));
    sb_put(b, o, (size_t)n);
}

static char *py_lower(const char *s) {
    strbuf b = {0};
    sb_puts(&b, "");
    for (const char *p = s; *p;) {
        int n;
        uint32_t c = sc_utf8(p, &n);
        p += n;
        if (c == 0x130) {
            put_utf8(&b, 'i');
            put_utf8(&b, 0x307);
        } else {
            put_utf8(&b, py_lower1(c));
        }
    }
    return b.p;
}

// 'A'..'D', 'Z', or 0 for no letter.
char eval_mmbench_can_infer(const char *answer, const char *const choice[4]) {
    static const char *const REJECT[] = {"Sorry, I can't help with images of people yet.", "I can't process this file.",
                                         "I'm sorry, but without the image provided", "Cannot determine the answer"};
    if (!strstr(answer, "Failed to obtain answer via API")) {
        int z = 0;
        for (int i = 0; i < 4; i++)
            if (strstr(answer, REJECT[i])) z = 1;
        if (z) return 'Z';
        // split into words on whitespace after the punctuation became spaces
        int has[26] = {0};
        const char *p = answer;
        while (*p) {
            int n;
            uint32_t c = sc_utf8(p, &n);
            if (sc_py_space(c) || (c < 0x80 && strchr(".()[],:;!*#{}", (int)c))) {
                p += n;
                continue;
            }
            const char *w = p;
            for (;;) {
                c = sc_utf8(p, &n);
                if (!*p || sc_py_space(c) || (c < 0x80 && strchr(".()[],:;!*#{}", (int)c))) break;
                p += n;
            }
            if (p - w == 1 && w[0] >= 'A' && w[0] <= 'Z') has[w[0] - 'A'] = 1;
        }
        int count = 0;
        char only = 0;
        for (int k = 0; k < 4; k++)
            if (choice[k] && has[k]) count++, only = only ? only : (char)('A' + k);
        if (count == 1) return only;
        if (count == 0 && has['Z' - 'A']) return 'Z';
    }
    char *a = py_lower(answer);
    int cands = 0;
    char which = 0;
    for (int k = 0; k < 4; k++) {
        if (!choice[k]) continue;
        char *o = py_lower(choice[k]);
        if (strstr(a, o)) cands++, which = (char)('A' + k);
        free(o);
    }
    free(a);
    return cands == 1 ? which : 0;
}

// ---- score

static const char *l2_abbr(const char *s) {
    static const char *const FROM[] = {"coarse_perception",
                                       "finegrained_perception (instance-level)",
                                       "finegrained_perception (cross-instance)",
                                       "logic_reasoning",
                                       "relation_reasoning",
                                       "attribute_reasoning"};
    static const char *const TO[] = {"CP", "FP-S", "FP-C", "LR", "RR", "AR"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(s, FROM[i])) return TO[i];
    return s;
}

typedef struct {
    char *name;
    int n, hit;
} mmb_group;

static void group_add(mmb_group **g, int *ng, const char *name, int hit) {
    for (int i = 0; i < *ng; i++)
        if (!strcmp((*g)[i].name, name)) {
            (*g)[i].n++;
            (*g)[i].hit += hit;
            return;
        }
    *g = xrealloc(*g, sizeof(mmb_group) * (size_t)(*ng + 1));
    (*g)[*ng] = (mmb_group){xstrdup(name), 1, hit};
    ++*ng;
}

static int group_cmp(const void *a, const void *b) {
    return strcmp(((const mmb_group *)a)->name, ((const mmb_group *)b)->name);
}

static void groups_out(cJSON *o, mmb_group *g, int n) {
    qsort(g, (size_t)n, sizeof *g, group_cmp);
    for (int i = 0; i < n; i++) {
        cJSON_AddNumberToObject(o, g[i].name, sc_pct(g[i].hit, g[i].n));
        free(g[i].name);
    }
    free(g);
}

// A TSV field as pandas' to_csv writes it (QUOTE_MINIMAL; NaN empty).
static void tsv_put(strbuf *b, const mmb_cell *c) {
    if (c->na) return;
    const char *s = c->s;
    if (strpbrk(s, "\t\n\r\"")) {
        sb_puts(b, "\"");
        for (const char *p = s; *p; p++) {
            sb_put(b, p, 1);
            if (*p == '"') sb_put(b, "\"", 1);  // doubled
        }
        sb_puts(b, "\"");
    } else {
        sb_puts(b, s);
    }
}

static cJSON *mmb_score_bench(const eval_bench *b, const eval_inputs *in) {
    mmb_data d;
    if (data_read(b, in, &d) != 0) return NULL;
    eval_lines ans = {0}, qs = {0};
    strmap amap = {0}, rawmap = {0}, only = {0};
    cJSON *out = NULL;
    if (d.cans < 0) {
        llava_fail("%s: no \"answer\" column (MMBench's test split is scored on its server only)", d.t.path);
        goto done;
    }
    if (sc_read_answers(in->answers, &ans) != 0) goto done;
    for (int i = 0; i < ans.n; i++) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(ans.obj[i], "question_id");
        const cJSON *round = cJSON_GetObjectItemCaseSensitive(ans.obj[i], "round_id");
        char *k = sc_key(id);
        strmap_set_int(&rawmap, k, i);
        free(k);
        if (!d.copies && cJSON_IsNumber(id) && cJSON_IsNumber(round) && round->valueint > 0)
            k = sc_key_int((long long)id->valuedouble + round->valueint * MMB_ROUND);
        else k = sc_key(id);
        strmap_set_int(&amap, k, i);
        free(k);
    }
    int restrict_ids = 0;
    if (in->questions) {
        if (eval_read_lines(in->questions, &qs) != 0) goto done;
        for (int i = 0; i < qs.n; i++) {
            char *k = sc_key(cJSON_GetObjectItemCaseSensitive(qs.obj[i], "question_id"));
            if (k) strmap_set_int(&only, k, 1);
            free(k);
        }
        restrict_ids = 1;
    }
    // Every row (rotation) scored: hit[main] stays 1 while each of its rotations matches.
    strmap mains = {0};
    int nmain = 0, nrows = 0, missing = 0, matched = 0;
    int *mhit = xcalloc((size_t)d.t.nrow + 1, sizeof(int)), *mrow = xcalloc((size_t)d.t.nrow + 1, sizeof(int));
    // main questions first (index < 1e6), in index order as VLMEvalKit sorts them
    for (int r = 0; r < d.t.nrow; r++) {
        if (d.index[r] >= MMB_ROUND) continue;
        char *k = sc_key_int(d.index[r]);
        if (!restrict_ids || strmap_get_int(&only, k) >= 0) {
            if (strmap_get_int(&mains, k) < 0) {
                mrow[nmain] = r;
                mhit[nmain] = 1;
                strmap_set_int(&mains, k, nmain++);
            }
        }
        free(k);
    }
    for (int r = 0; r < d.t.nrow; r++) {
        int nr = row_rounds(&d, r);
        const char *shown[4];
        int ns = shown_options(&d, r, shown);
        for (int k = 0; k < nr; k++) {
            long long qid = d.index[r] + k * MMB_ROUND;
            char *key = sc_key_int(qid);
            if (restrict_ids && strmap_get_int(&only, key) < 0) {
                free(key);
                continue;
            }
            char *mk = sc_key_int(qid % MMB_ROUND);
            int m = strmap_get_int(&mains, mk);
            free(mk);
            int a = strmap_get_int(&amap, key);
            free(key);
            if (m < 0) continue;  // a rotation whose question is not asked
            nrows++;
            const char *choice[4] = {NULL, NULL, NULL, NULL};
            char want;
            const char *ans_s = d.t.cell[r][d.cans].s;
            if (d.copies) {
                for (int c = 0; c < 4; c++)
                    if (d.co[c] >= 0 && !d.t.cell[r][d.co[c]].na) choice[c] = d.t.cell[r][d.co[c]].s;
                want = ans_s[0] && !ans_s[1] ? ans_s[0] : '?';
            } else {  // the rotation shown: letter j holds option (j + k) % n
                for (int c = 0; c < ns; c++) choice[c] = shown[(c + k) % ns];
                int orig = ans_s[0] && !ans_s[1] ? ans_s[0] - 'A' : -1;
                want = orig >= 0 && orig < ns ? (char)('A' + (orig - k + ns) % ns) : '?';
            }
            const char *text = a >= 0 ? cJSON_GetObjectItemCaseSensitive(ans.obj[a], "text")->valuestring : NULL;
            // an empty prediction is an empty cell in the eval file, read back as NaN: "nan"
            if (!text || !text[0]) text = "nan";
            missing += a < 0;
            char got = eval_mmbench_can_infer(text, choice);
            matched += got != 0;
            if (got != want) mhit[m] = 0;
        }
    }
    out = cJSON_CreateObject();
    int hits = 0;
    mmb_group *cat = NULL, *l2 = NULL;
    int ncat = 0, nl2 = 0;
    for (int m = 0; m < nmain; m++) {
        hits += mhit[m];
        int r = mrow[m];
        if (d.ccat >= 0) group_add(&cat, &ncat, d.t.cell[r][d.ccat].s, mhit[m]);
        if (d.cl2 >= 0) group_add(&l2, &nl2, l2_abbr(d.t.cell[r][d.cl2].s), mhit[m]);
    }
    cJSON_AddNumberToObject(out, "Overall", sc_pct(hits, nmain));
    cJSON_AddNumberToObject(out, "questions", nmain);
    cJSON_AddNumberToObject(out, "correct", hits);
    cJSON_AddNumberToObject(out, "rows", nrows);
    cJSON_AddNumberToObject(out, "missing", missing);
    cJSON_AddNumberToObject(out, "rows_matched", matched);
    cJSON_AddStringToObject(out, "rotations", d.copies ? "the TSV's copies" : "generated (--all-rounds)");
    groups_out(cJSON_AddObjectToObject(out, "l2-category"), l2, nl2);
    groups_out(cJSON_AddObjectToObject(out, "category"), cat, ncat);
    free(mhit);
    free(mrow);
    strmap_free(&mains);
    if (in->out) {  // the upload table
        static const char *const DROP[] = {"hint", "category", "source", "image", "comment", "l2-category"};
        int keep[256], nk = 0;
        for (int c = 0; c < d.t.ncol && nk < 255; c++) {
            int drop = 0;
            for (int j = 0; j < 6; j++) drop |= !strcmp(d.t.col[c], DROP[j]);
            if (!drop) keep[nk++] = c;
        }
        int at = nk < 6 ? nk : 6;  // the prediction column's place
        strbuf up = {0};
        sb_puts(&up, "");
        for (int j = 0; j <= nk; j++) {
            if (j) sb_puts(&up, "\t");
            mmb_cell h = {j == at ? "prediction" : d.t.col[keep[j < at ? j : j - 1]], 0};
            tsv_put(&up, &h);
        }
        sb_puts(&up, "\n");
        for (int r = 0; r < d.t.nrow; r++) {
            char *k = sc_key_int(d.index[r]);
            int a = strmap_get_int(&rawmap, k);
            free(k);
            for (int j = 0; j <= nk; j++) {
                if (j) sb_puts(&up, "\t");
                if (j == at) {
                    mmb_cell p = {a >= 0 ? cJSON_GetObjectItemCaseSensitive(ans.obj[a], "text")->valuestring : "",
                                  a < 0};
                    tsv_put(&up, &p);
                } else {
                    tsv_put(&up, &d.t.cell[r][keep[j < at ? j : j - 1]]);
                }
            }
            sb_puts(&up, "\n");
        }
        char *name = xasprintf("%s_upload.tsv", b->name);
        int rc = sc_write_out(in, name, up.p, up.n);
        free(name);
        free(up.p);
        if (rc != 0) {
            cJSON_Delete(out);
            out = NULL;
        }
    }
done:
    strmap_free(&amap);
    strmap_free(&rawmap);
    strmap_free(&only);
    eval_lines_free(&ans);
    eval_lines_free(&qs);
    data_free(&d);
    return out;
}

static cJSON *mmb_score(const eval_inputs *in) { return mmb_score_bench(&eval_bench_mmbench, in); }
static cJSON *mmb_cn_score(const eval_inputs *in) { return mmb_score_bench(&eval_bench_mmbench_cn, in); }

const eval_bench eval_bench_mmbench = {
    .name = "mmbench",
    .title = "MMBench (dev)",
    .question_file = "mmbench_dev_20230712.tsv",
    .image_folder = NULL,    // prepare() writes the images under the out folder
    .max_new_tokens = 1024,  // model_vqa_mmbench.py
    .kind = EVAL_APPROXIMATE,
    .primary = "Overall",
    .published_7b = 64.3,
    .published_13b = 67.7,
    .download =
        "mmbench_dev_20230712.tsv (download.openmmlab.com/mmclassification/datasets/mmbench/) under "
        "playground/data/eval/mmbench",
    .prepare = mmb_prepare,
    .score = mmb_score,
};

const eval_bench eval_bench_mmbench_cn = {
    .name = "mmbench_cn",
    .title = "MMBench-CN (dev)",
    .question_file = "mmbench_dev_cn_20231003.tsv",
    .image_folder = NULL,
    .max_new_tokens = 1024,
    .kind = EVAL_APPROXIMATE,
    .primary = "Overall",
    .published_7b = 58.3,
    .published_13b = 63.6,
    .download =
        "mmbench_dev_cn_20231003.tsv (download.openmmlab.com/mmclassification/datasets/mmbench/) under "
        "playground/data/eval/mmbench_cn",
    .prepare = mmb_cn_prepare,
    .score = mmb_cn_score,
};
