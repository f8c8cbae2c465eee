// `llava data` (app/cmd_data.c, docs/data.md) end to end:
//   check    on a broken dataset (tests/data/prep/data.json, whose missing, unreadable and escaping images and
//            malformed records test_prep_cli uses, plus an <image> in an answer, an image without <image>, <image>
//            in two turns): its --json report is byte for byte the report `llava prep` writes on the same data but
//            for "out" (null), its listing names every sample with prep's reason, nothing is written (not in the
//            data's folder, not in the working directory), --strict fails exactly where `prep --strict` does;
//            prep_run's dry run called directly counts as the real run
//   stats    exact counts, turns, word and token histograms, percentiles and the longest samples of a small
//            known dataset; the .h5 prep writes from it gives the same token histograms; the SVG's bars
//   convert  llava -> sharegpt -> llava gives the same JSON values byte for byte, openai-messages -> llava ->
//            openai-messages too; LLaMA-Factory's layout (messages/role/content, "images"); refusals named by
//            record index and id with their reason, exit 1 and nothing written, or counted with --skip-bad
//   usage    exit 2 on usage errors, `llava data --help`
// Runs the executable named by $LLAVA_BIN (set by CMake), else build/llava.
#include <dirent.h>
#include <limits.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "data/jsonl.h"
#include "data/prep.h"
#include "data/template.h"
#include "tokenizer_golden.h"

#define PREP_DIR "tests/data/prep/"
#define TOK GOLDEN_DIR "tiny.model"

static char *dir;

static const char *bin(void) {
    const char *b = getenv("LLAVA_BIN");
    return b && *b ? b : "build/llava";
}

static char *tmp_path(const char *name) { return xasprintf("%s/%s", dir, name); }

// Runs `llava ARGS` from the repository root (or from `cwd`); stdout in *out, stderr in *err (either may be NULL).
static int run_in(const char *cwd, const char *args, char **out, char **err) {
    char *o = tmp_path("cmd.out"), *e = tmp_path("cmd.err");
    char root[PATH_MAX];
    CHECK(getcwd(root, sizeof root) != NULL, "getcwd");
    const char *b = bin();
    char *abs_bin = b[0] == '/' ? xstrdup(b) : xasprintf("%s/%s", root, b);
    char *cmd = cwd ? xasprintf("cd '%s' && '%s' %s > '%s' 2> '%s'", cwd, abs_bin, args, o, e)
                    : xasprintf("'%s' %s > '%s' 2> '%s'", abs_bin, args, o, e);
    int st = system(cmd);
    char *ot = read_file(o, 1 << 24, NULL), *et = read_file(e, 1 << 24, NULL);
    if (out) *out = ot ? ot : xstrdup("");
    else free(ot);
    if (err) *err = et ? et : xstrdup("");
    else free(et);
    unlink(o);
    unlink(e);
    free(cmd);
    free(abs_bin);
    free(o);
    free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run(const char *args, char **out, char **err) { return run_in(NULL, args, out, err); }

static void write_text(const char *path, const char *text) {
    CHECK(write_file_atomic(path, text, strlen(text)) == 0, "cannot write %s", path);
}

// The names in a folder, sorted, one a line.
static char *listing(const char *path) {
    struct dirent **names;
    int n = scandir(path, &names, NULL, alphasort);
    strbuf s = {0};
    sb_put(&s, "", 0);
    for (int i = 0; i < n; i++) {
        sb_puts(&s, names[i]->d_name);
        sb_puts(&s, "\n");
        free(names[i]);
    }
    if (n >= 0) free(names);
    return s.p;
}

static int file_is(const char *path) { return access(path, F_OK) == 0; }

// ---------------------------------------------------------------------------------------------
// check

// data.json of tests/data/prep plus three samples whose <image> does not pair as LLaVA-1.5 needs.
static char *broken_dataset(void) {
    char *path = tmp_path("broken/data.json"), *d = tmp_path("broken");
    mkdir_p(d);
    size_t n;
    char *text = read_file(PREP_DIR "data.json", 1 << 20, &n);
    CHECK(text != NULL, "cannot read %sdata.json", PREP_DIR);
    char *end = text ? strrchr(text, ']') : NULL;
    if (end) *end = 0;
    char *all = xasprintf(
        "%s,\n"
        "{\"id\": \"answer-image\", \"image\": \"coco/000000000002.jpg\", \"conversations\": [{\"from\": \"human\", "
        "\"value\": \"Look at this.\"}, {\"from\": \"gpt\", \"value\": \"<image>\\nA picture of noise.\"}]},\n"
        "{\"id\": \"no-token\", \"image\": \"coco/000000000002.jpg\", \"conversations\": [{\"from\": \"human\", "
        "\"value\": \"What is it?\"}, {\"from\": \"gpt\", \"value\": \"Noise.\"}]},\n"
        "{\"id\": \"two-tokens\", \"image\": \"coco/000000000002.jpg\", \"conversations\": [{\"from\": \"human\", "
        "\"value\": \"<image>\\nWhat is it?\"}, {\"from\": \"gpt\", \"value\": \"Noise.\"}, {\"from\": \"human\", "
        "\"value\": \"<image>\\nAnd now?\"}, {\"from\": \"gpt\", \"value\": \"Still noise.\"}]}\n]\n",
        text ? text : "[");
    write_text(path, all);
    free(all);
    free(text);
    free(d);
    return path;
}

static void test_check(void) {
    char *data = broken_dataset(), *bdir = tmp_path("broken"), *empty = tmp_path("empty"), *out = tmp_path("p/x.h5");
    char *pdir = tmp_path("p");
    mkdir_p(empty);
    mkdir_p(pdir);
    char root[PATH_MAX];
    CHECK(getcwd(root, sizeof root) != NULL, "getcwd");
    char *common = xasprintf("--data '%s' --image-folder '%s/" PREP_DIR "images' --tokenizer '%s/" TOK
                             "' --template vicuna_v1 --model-max-length 96 --threads 2 --quiet",
                             data, root, root);
    // prep's report on the data
    char *args = xasprintf("prep %s --out '%s'", common, out), *text, *err;
    CHECK_EQ_INT(run(args, &text, &err), 0);
    free(args);
    free(text);
    free(err);
    char *rpath = tmp_path("p/x.report.json");
    char *report = read_file(rpath, 1 << 24, NULL);
    CHECK(report != NULL, "prep wrote no report");
    if (!report) report = xstrdup("");

    // check --json, from an empty working directory: the same report, "out" null, and no file anywhere
    char *before = listing(bdir);
    args = xasprintf("data check %s --json", common);
    CHECK_EQ_INT(run_in(empty, args, &text, &err), 0);
    CHECK(strcmp(err, "") == 0, "stderr: %s", err);
    free(err);
    free(args);
    strbuf want = {0};
    strbuf quoted = {0};
    json_string_encode(out, strlen(out), &quoted);
    char *at = strstr(report, quoted.p);
    CHECK(at != NULL, "prep's report does not name its output");
    if (at) {
        sb_put(&want, report, (size_t)(at - report));
        sb_puts(&want, "null");
        sb_puts(&want, at + quoted.n);
    }
    CHECK(want.p && strcmp(text, want.p) == 0, "check --json:\n%s\nprep's report:\n%s", text, report);
    char *after = listing(bdir), *in_empty = listing(empty);
    CHECK_EQ_STR(after, before);
    CHECK_EQ_STR(in_empty, ".\n..\n");
    free(after);
    free(in_empty);
    free(want.p);
    free(quoted.p);

    // The counts of every kind, and the listing: every sample of prep's report with its reason.
    cJSON *rep = cJSON_Parse(report);
    static const int counts[PREP_N_KINDS] = {1, 2, 3, 5, 1, 2, 1, 1, 1};
    for (int k = 0; k < PREP_N_KINDS; k++) {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(rep, prep_kind_name(k));
        CHECK(cJSON_IsNumber(c) && c->valueint == counts[k], "prep's %s: %d, expected %d", prep_kind_name(k),
              cJSON_IsNumber(c) ? c->valueint : -1, counts[k]);
    }
    free(text);
    args = xasprintf("data check %s", common);
    CHECK_EQ_INT(run_in(empty, args, &text, &err), 0);
    free(args);
    CHECK(strstr(text, "22 records -> 9 samples would be written (6 with an image, 3 text-only;") != NULL, "check: %s",
          text);
    CHECK(strstr(text, "nothing written") != NULL, "check: %s", text);
    CHECK(strstr(text, "14 samples would be left out or masked\n") != NULL, "check: %s", text);
    const cJSON *samples = cJSON_GetObjectItemCaseSensitive(rep, "samples");
    int listed = 0;
    for (int k = 0; k < PREP_N_KINDS; k++) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(samples, prep_kind_name(k));
        char *head = xasprintf("%s (%d):\n", prep_kind_name(k), cJSON_GetArraySize(list));
        CHECK(strstr(text, head) != NULL, "no \"%s\" in\n%s", head, text);
        free(head);
        for (const cJSON *e = list ? list->child : NULL; e; e = e->next, listed++) {
            const cJSON *idx = cJSON_GetObjectItemCaseSensitive(e, "index"),
                        *id = cJSON_GetObjectItemCaseSensitive(e, "id"),
                        *why = cJSON_GetObjectItemCaseSensitive(e, "reason");
            char *line = id->valuestring[0]
                             ? xasprintf("  record %d (id %s): %s\n", idx->valueint, id->valuestring, why->valuestring)
                             : xasprintf("  record %d: %s\n", idx->valueint, why->valuestring);
            CHECK(strstr(text, line) != NULL, "no line \"%s\" in the listing", line);
            free(line);
        }
    }
    CHECK_EQ_INT(listed, 17);
    // The reasons of the kinds the brief names, as prep gives them.
    CHECK(strstr(text, "  record 4 (id missing-1): ") != NULL && strstr(text, "No such file or directory") != NULL,
          "missing image: %s", text);
    CHECK(strstr(text, "  record 19 (id answer-image): the <image> is in turn 1, an answer") != NULL,
          "image in answer: %s", text);
    CHECK(strstr(text, "  record 15 (id long-image): 330 tokens, cut to model_max_length 96\n") != NULL,
          "truncated: %s", text);
    CHECK(strstr(text, "  record 2 (id 665k-multi): tokenization mismatch: 89 vs. 88") != NULL, "mismatch: %s", text);
    free(text);
    free(err);
    cJSON_Delete(rep);

    // --strict: 1 here, as prep --strict fails; on the clean first two records 0, as prep --strict succeeds.
    args = xasprintf("data check %s --strict", common);
    CHECK_EQ_INT(run(args, &text, &err), 1);
    CHECK(strstr(text, "(--strict: exit 1)") != NULL, "check --strict: %s", text);
    free(text);
    free(err);
    free(args);
    char *sout = tmp_path("p/strict.h5");
    args = xasprintf("prep %s --strict --out '%s'", common, sout);
    CHECK_EQ_INT(run(args, NULL, NULL), 1);
    free(args);
    char *clean = tmp_path("clean.json");
    char *src = read_file(PREP_DIR "data.json", 1 << 20, NULL);
    cJSON *arr = src ? cJSON_Parse(src) : NULL, *two = cJSON_CreateArray();
    cJSON_AddItemToArray(two, cJSON_Duplicate(cJSON_GetArrayItem(arr, 0), 1));
    cJSON_AddItemToArray(two, cJSON_Duplicate(cJSON_GetArrayItem(arr, 1), 1));
    char *ct = cJSON_Print(two);
    write_text(clean, ct);
    free(ct);
    cJSON_Delete(two);
    cJSON_Delete(arr);
    free(src);
    char *ccommon = xasprintf(
        "--data '%s' --image-folder " PREP_DIR "images --tokenizer " TOK " --template vicuna_v1 --quiet", clean);
    args = xasprintf("data check %s --strict", ccommon);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    CHECK(strstr(text, "clean: every sample would be written and supervised\n") != NULL, "clean check: %s", text);
    free(text);
    free(err);
    free(args);
    args = xasprintf("prep %s --strict --out '%s'", ccommon, sout);
    CHECK_EQ_INT(run(args, NULL, NULL), 0);
    free(args);
    free(ccommon);
    free(clean);
    free(sout);

    // prep_run's dry run itself: no output path, the counts of the real run, the report to a stream.
    prep_options o;
    prep_options_default(&o);
    o.data_path = data;
    o.image_folder = PREP_DIR "images";
    o.tokenizer_path = TOK;
    o.template_name = "vicuna_v1";
    o.model_max_length = 96;
    o.threads = 2;
    o.dry_run = 1;
    char *mem = NULL;
    size_t mem_n = 0;
    FILE *ms = open_memstream(&mem, &mem_n);
    o.report_to = ms;
    prep_counts c;
    CHECK(prep_run(&o, &c) == 0, "dry run: %s", llava_errmsg());
    fclose(ms);
    CHECK_EQ_INT(c.records, 22);
    CHECK_EQ_INT(c.written, 9);
    for (int k = 0; k < PREP_N_KINDS; k++) CHECK_EQ_INT(c.kind[k], counts[k]);
    CHECK(mem && strstr(mem, "\"out\": null,\n") != NULL, "dry-run report: %s", mem ? mem : "");
    free(mem);
    after = listing(bdir);
    CHECK_EQ_STR(after, before);
    free(after);
    // Under strict the dry run fails at the first bad sample, as prep does.
    o.strict = 1;
    o.report_to = NULL;
    CHECK(prep_run(&o, &c) == -1, "a strict dry run passed");
    CHECK_ERR_HAS("(--strict)");

    free(before);
    free(report);
    free(rpath);
    free(common);
    free(data);
    free(bdir);
    free(empty);
    free(out);
    free(pdir);
}

// ---------------------------------------------------------------------------------------------
// stats

// Words (LLaVA's modality lengths): a 6, b 5, c 16, d 3, e 13; record 5 is not an object.
static const char STATS_JSON[] =
    "[\n"
    "{\"id\": \"a\", \"image\": \"coco/000000000001.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
    "\"<image>\\nWhat is it?\"}, {\"from\": \"gpt\", \"value\": \"A cat.\"}]},\n"
    "{\"id\": \"b\", \"image\": \"coco/000000000002.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": "
    "\"<image>\\nWho?\"}, {\"from\": \"gpt\", \"value\": \"Me.\"}, {\"from\": \"human\", \"value\": \"Why?\"}, "
    "{\"from\": \"gpt\", \"value\": \"Because.\"}]},\n"
    "{\"id\": \"c\", \"image\": \"coco/000000000001.png\", \"conversations\": [{\"from\": \"human\", \"value\": "
    "\"<image>\\nDescribe the picture in detail please.\"}, {\"from\": \"gpt\", \"value\": \"It is a small red house "
    "by the sea.\"}]},\n"
    "{\"id\": \"d\", \"conversations\": [{\"from\": \"human\", \"value\": \"Hello there\"}, {\"from\": \"gpt\", "
    "\"value\": \"Hi\"}]},\n"
    "{\"id\": \"e\", \"conversations\": [{\"from\": \"human\", \"value\": \"one two three\"}, {\"from\": \"gpt\", "
    "\"value\": \"four five\"}, {\"from\": \"human\", \"value\": \"six\"}, {\"from\": \"gpt\", \"value\": \"seven "
    "eight nine ten\"}, {\"from\": \"human\", \"value\": \"eleven\"}, {\"from\": \"gpt\", \"value\": \"twelve "
    "thirteen\"}]},\n"
    "42\n"
    "]\n";

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }
static double num(const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

static void check_hist(const cJSON *d, const int *want, int n, const char *what) {
    const cJSON *h = get(d, "histogram");
    CHECK(cJSON_GetArraySize(h) == n, "%s: %d bins, expected %d", what, cJSON_GetArraySize(h), n);
    for (int b = 0; b < n && b < cJSON_GetArraySize(h); b++)
        CHECK(cJSON_GetArrayItem(h, b)->valueint == want[b], "%s: bin %d holds %d, expected %d", what, b,
              cJSON_GetArrayItem(h, b)->valueint, want[b]);
}

// The token lengths prep_sample gives the stats dataset's samples (vicuna_v1, hf431, no truncation): text
// tokens (without the image's -200) and supervised spans.
static void expected_tokens(const cJSON *arr, int64_t text[5], int spans[5]) {
    tokenizer *t = tok_load(TOK);
    prep_config c = {.tok = t, .mode = TOK_HF431, .tmpl = conv_template_builtin("vicuna_v1"), .model_max_length = 0};
    for (int i = 0; i < 5; i++) {
        const cJSON *s = cJSON_GetArrayItem(arr, i);
        conv_turn turns[8];
        int n = 0;
        for (const cJSON *e = get(s, "conversations")->child; e && n < 8; e = e->next, n++) {
            const char *v = get(e, "value")->valuestring;
            turns[n] = (conv_turn){get(e, "from")->valuestring, v, strlen(v)};
        }
        prep_result r;
        CHECK(prep_sample(&c, "x", turns, (size_t)n, get(s, "image") != NULL, &r) == 0, "%s", llava_errmsg());
        text[i] = 0;
        spans[i] = 0;
        for (size_t k = 0; k < r.ids.n; k++) {
            text[i] += r.ids.v[k] != IMAGE_TOKEN_INDEX;
            spans[i] += r.labels.v[k] != IGNORE_INDEX && (k == 0 || r.labels.v[k - 1] == IGNORE_INDEX);
        }
        prep_result_free(&r);
    }
    tok_free(t);
}

static void test_stats(void) {
    char *path = tmp_path("stats.json"), *text, *err;
    write_text(path, STATS_JSON);
    // Words, without a tokenizer: bins of 4 up to 16.
    char *args = xasprintf("data stats '%s' --json --bin-width 4 --model-max-length 16 --top 3", path);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    free(args);
    cJSON *j = cJSON_Parse(text);
    CHECK(j != NULL, "stats --json: %s %s", text, err);
    CHECK_EQ_STR(get(j, "format")->valuestring, "json");
    CHECK_EQ_STR(get(j, "unit")->valuestring, "words");
    CHECK(num(j, "records") == 6 && num(j, "samples") == 5 && num(j, "unusable") == 1, "counts: %s", text);
    CHECK(num(j, "with_image") == 3 && num(j, "text_only") == 2 && num(j, "distinct_images") == 2, "images: %s", text);
    CHECK_NEAR(num(j, "text_only_share"), 0.4, 1e-12);
    const cJSON *turns = get(j, "turns_per_sample");
    CHECK(num(turns, "2") == 3 && num(turns, "4") == 1 && num(turns, "6") == 1 && cJSON_GetArraySize(turns) == 3,
          "turns: %s", text);
    const cJSON *w = get(j, "text");
    static const int wh[] = {1, 2, 0, 1, 1};  // d | a b | - | e | c (16: the last bin holds 16 and above)
    check_hist(w, wh, 5, "words");
    CHECK(num(w, "total") == 43 && num(w, "min") == 3 && num(w, "p50") == 6 && num(w, "p90") == 16 &&
              num(w, "p99") == 16 && num(w, "max") == 16 && num(w, "over_model_max_length") == 0,
          "word stats: %s", text);
    CHECK_NEAR(num(w, "mean"), 8.6, 1e-12);
    const cJSON *starts = get(j, "bin_starts");
    CHECK(cJSON_GetArraySize(starts) == 5 && cJSON_GetArrayItem(starts, 4)->valueint == 16, "bin starts");
    const cJSON *lg = get(j, "longest");
    CHECK(cJSON_GetArraySize(lg) == 3, "longest: %s", text);
    static const char *lid[] = {"c", "e", "a"};
    static const int lidx[] = {2, 4, 0}, lw[] = {16, 13, 6};
    for (int i = 0; i < 3 && i < cJSON_GetArraySize(lg); i++) {
        const cJSON *e = cJSON_GetArrayItem(lg, i);
        CHECK(strcmp(get(e, "id")->valuestring, lid[i]) == 0 && num(e, "index") == lidx[i] && num(e, "text") == lw[i],
              "longest %d: %s", i, text);
    }
    CHECK(get(j, "with_image_tokens") == NULL, "token lengths without a tokenizer");
    cJSON_Delete(j);
    free(text);
    free(err);
    // The human view says the same.
    args = xasprintf("data stats '%s' --bin-width 4 --model-max-length 16 --top 3", path);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    free(args);
    CHECK(strstr(text, "  with an image    3 (60.0%), 2 distinct image files\n") != NULL, "stats: %s", text);
    CHECK(strstr(text, "  text-only        2 (40.0%)\n") != NULL, "stats: %s", text);
    CHECK(strstr(text, "  turns/sample     2: 3, 4: 1, 6: 1\n") != NULL, "stats: %s", text);
    CHECK(strstr(text, "    [4, 8)                        2\n") != NULL, "stats: %s", text);
    CHECK(strstr(text, "    >= 16                         1\n") != NULL, "stats: %s", text);
    CHECK(strstr(text, "    record 2 (id c): 16 words\n") != NULL, "stats: %s", text);
    free(text);
    free(err);

    // Tokens: prep_sample's lengths, binned by 32 up to 640; with image tokens = text + 576 per image.
    cJSON *arr = cJSON_Parse(STATS_JSON);
    int64_t tt[5];
    int spans[5];
    expected_tokens(arr, tt, spans);
    cJSON_Delete(arr);
    enum { W = 32, L = 640, NB = L / W + 1 };
    int ht[NB], hw[NB];
    memset(ht, 0, sizeof ht);
    memset(hw, 0, sizeof hw);
    int64_t tot_t = 0, tot_w = 0;
    for (int i = 0; i < 5; i++) {
        int64_t with = tt[i] + (i < 3 ? 576 : 0);
        ht[tt[i] / W >= NB - 1 ? NB - 1 : tt[i] / W]++;
        hw[with / W >= NB - 1 ? NB - 1 : with / W]++;
        tot_t += tt[i];
        tot_w += with;
    }
    args = xasprintf("data stats '%s' --json --tokenizer " TOK
                     " --template vicuna_v1 --bin-width %d --model-max-length %d",
                     path, W, L);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    free(args);
    j = cJSON_Parse(text);
    CHECK(j && strcmp(get(j, "unit")->valuestring, "tokens") == 0, "stats --tokenizer: %s %s", text, err);
    CHECK(num(j, "samples") == 5 && num(j, "unusable") == 1, "counts: %s", text);
    check_hist(get(j, "text"), ht, NB, "text tokens");
    check_hist(get(j, "with_image_tokens"), hw, NB, "tokens with the image's");
    CHECK(num(get(j, "text"), "total") == (double)tot_t, "text total: %s", text);
    CHECK(num(get(j, "with_image_tokens"), "total") == (double)tot_w, "with total: %s", text);
    int over = 0;
    for (int i = 0; i < 3; i++) over += tt[i] + 576 > L;
    CHECK(num(get(j, "with_image_tokens"), "over_model_max_length") == over, "over: %s", text);
    printf("stats: text tokens %lld %lld %lld %lld %lld, %d of 3 image samples over %d with 576 image tokens\n",
           (long long)tt[0], (long long)tt[1], (long long)tt[2], (long long)tt[3], (long long)tt[4], over, L);
    char *json_text = text;
    cJSON *jj = j;
    free(err);
    // One thread or several: the same numbers (the records are counted in input order).
    args = xasprintf("data stats '%s' --json --tokenizer " TOK
                     " --template vicuna_v1 --bin-width %d --model-max-length %d --threads 1",
                     path, W, L);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    CHECK_EQ_STR(text, json_text);
    free(text);
    free(err);
    free(args);

    // The .h5 prep writes from the same data (no truncation): the same token histograms; answers per sample are
    // the supervised spans.
    char *h5 = tmp_path("stats.h5");
    args = xasprintf("prep --data '%s' --image-folder " PREP_DIR "images --tokenizer " TOK
                     " --template vicuna_v1 --model-max-length 0 --out '%s' --quiet",
                     path, h5);
    CHECK_EQ_INT(run(args, NULL, NULL), 0);
    free(args);
    char *svg = tmp_path("hist.svg");
    args = xasprintf("data stats '%s' --json --bin-width %d --model-max-length %d --plot '%s'", h5, W, L, svg);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    free(args);
    j = cJSON_Parse(text);
    CHECK(j && strcmp(get(j, "format")->valuestring, "h5") == 0, "stats of the .h5: %s %s", text, err);
    CHECK(
        num(j, "records") == 6 && num(j, "samples") == 5 && num(j, "with_image") == 3 && num(j, "distinct_images") == 2,
        "h5 counts: %s", text);
    CHECK(cJSON_Compare(get(j, "text"), get(jj, "text"), 1), "h5 text tokens differ:\n%s\nJSON:\n%s", text, json_text);
    CHECK(cJSON_Compare(get(j, "with_image_tokens"), get(jj, "with_image_tokens"), 1), "h5 tokens with images differ");
    CHECK(cJSON_Compare(get(j, "longest"), get(jj, "longest"), 1), "h5 longest differ");
    int hs[8] = {0};
    for (int i = 0; i < 5; i++) hs[spans[i] < 7 ? spans[i] : 7]++;
    const cJSON *ans = get(j, "answers_per_sample");
    int n_keys = 0;
    for (int s = 0; s < 8; s++) {
        char key[8];
        snprintf(key, sizeof key, "%d", s);
        n_keys += hs[s] != 0;
        CHECK(num(ans, key) == (hs[s] ? hs[s] : -1), "answers %s: %s", key, text);
    }
    CHECK(cJSON_GetArraySize(ans) == n_keys, "answers: %s", text);
    // The SVG: one bar per bin in each panel, each titled with its bin and count.
    char *pic = read_file(svg, 1 << 20, NULL);
    CHECK(pic && strncmp(pic, "<svg xmlns=\"http://www.w3.org/2000/svg\"", 39) == 0, "not an SVG");
    int bars = 0;
    for (const char *p = pic; p && (p = strstr(p, "class=\"bar\"")); p++) bars++;
    CHECK_EQ_INT(bars, 2 * NB);
    char *t0 = xasprintf("<title>[0, 32): %d</title>", ht[0]),
         *tl = xasprintf("<title>&gt;= 640: %d</title>", hw[NB - 1]);
    CHECK(pic && strstr(pic, t0) && strstr(pic, tl), "SVG titles %s / %s", t0, tl);
    CHECK(pic && strstr(pic, "</svg>\n") != NULL, "SVG not closed");
    free(t0);
    free(tl);
    free(pic);
    cJSON_Delete(j);
    cJSON_Delete(jj);
    free(json_text);
    free(text);
    free(err);
    free(svg);
    free(h5);
    free(path);
}

// ---------------------------------------------------------------------------------------------
// convert

// LLaVA's own layout, key order as LLaVA's files have it: the image before the text, after it, in a later
// turn's... (only in the first user turn here), text-only, a numeric id, Unicode and escapes.
static const char LLAVA_JSON[] =
    "[\n"
    "{\"id\":\"v-1\",\"image\":\"coco/1.jpg\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\\nWhat is "
    "shown?\"},{\"from\":\"gpt\",\"value\":\"A cat.\"}]},\n"
    "{\"id\":\"v-2\",\"image\":\"coco/2.jpg\",\"conversations\":[{\"from\":\"human\",\"value\":\"Describe it "
    "briefly.\\n<image>\"},{\"from\":\"gpt\",\"value\":\"A dog \\\"Rex\\\" on grass.\"},{\"from\":\"human\",\"value\":"
    "\"And the sky?\"},{\"from\":\"gpt\",\"value\":\"Blue.\"}]},\n"
    "{\"id\":\"t-1\",\"conversations\":[{\"from\":\"human\",\"value\":\"Caf\xc3\xa9 \xe2\x98\x95 \\u00e9\\t"
    "tab\"},{\"from\":\"gpt\",\"value\":\"Oui.\\n\\nNon.\"}]},\n"
    "{\"id\":42,\"image\":\"ocr/3.png\",\"conversations\":[{\"from\":\"human\",\"value\":\"<image>\"},{\"from\":"
    "\"gpt\",\"value\":\"Only a picture.\"}]}\n"
    "]\n";

// OpenAI messages (JSON Lines) as convert writes them.
static const char OPENAI_JSONL[] =
    "{\"id\":\"o-1\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
    "\"a/1.jpg\"}},{\"type\":\"text\",\"text\":\"What is this?\"}]},{\"role\":\"assistant\",\"content\":\"A "
    "bird.\"}]}\n"
    "{\"id\":\"o-2\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Read the "
    "sign.\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"b/2.png\"}}]},{\"role\":\"assistant\",\"content\":"
    "\"STOP\"},{\"role\":\"user\",\"content\":\"Why?\"},{\"role\":\"assistant\",\"content\":\"Traffic.\"}]}\n"
    "\n"
    "{\"id\":\"o-3\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"},{\"role\":\"assistant\",\"content\":"
    "\"Hi!\"}]}\n"
    "{\"id\":\"o-4\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{\"url\":"
    "\"c/3.jpg\"}}]},{\"role\":\"assistant\",\"content\":\"A tree.\"}]}\n";

// Every element of two JSON arrays (or lines) printed alike.
static void check_same_values(const char *a_path, const char *b_path, int a_lines, int b_lines) {
    char *a = read_file(a_path, 1 << 20, NULL), *b = read_file(b_path, 1 << 20, NULL);
    CHECK(a && b, "cannot read %s or %s", a_path, b_path);
    if (!a || !b) {
        free(a);
        free(b);
        return;
    }
    strbuf as = {0}, bs = {0};
    for (int w = 0; w < 2; w++) {
        char *t = w ? b : a;
        int lines = w ? b_lines : a_lines;
        strbuf *o = w ? &bs : &as;
        sb_put(o, "", 0);
        cJSON *arr = NULL;
        if (lines) {
            arr = cJSON_CreateArray();
            for (char *l = strtok(t, "\n"); l; l = strtok(NULL, "\n")) cJSON_AddItemToArray(arr, cJSON_Parse(l));
        } else {
            arr = cJSON_Parse(t);
        }
        CHECK(cJSON_IsArray(arr), "not JSON: %s", w ? b_path : a_path);
        for (const cJSON *e = arr ? arr->child : NULL; e; e = e->next) {
            char *p = cJSON_PrintUnformatted(e);
            sb_puts(o, p);
            sb_puts(o, "\n");
            free(p);
        }
        cJSON_Delete(arr);
    }
    CHECK(strcmp(as.p, bs.p) == 0, "%s and %s differ:\n%s\nvs.\n%s", a_path, b_path, as.p, bs.p);
    free(as.p);
    free(bs.p);
    free(a);
    free(b);
}

static void test_convert_round_trips(void) {
    char *llava = tmp_path("rt.json"), *sg = tmp_path("rt.sharegpt.json"), *back = tmp_path("rt.back.json");
    write_text(llava, LLAVA_JSON);
    char *args = xasprintf("data convert --to sharegpt '%s' --out '%s'", llava, sg), *text, *err;
    CHECK_EQ_INT(run(args, &text, &err), 0);
    CHECK(strstr(text, "4 records (llava) -> 4 samples in") != NULL, "convert: %s %s", text, err);
    free(text);
    free(err);
    free(args);
    // ShareGPT: the same conversations, the image as an "images" list.
    char *s = read_file(sg, 1 << 20, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    CHECK(cJSON_GetArraySize(j) == 4, "sharegpt: %s", s ? s : "");
    const cJSON *r0 = cJSON_GetArrayItem(j, 0);
    CHECK(get(r0, "image") == NULL && cJSON_GetArraySize(get(r0, "images")) == 1 &&
              strcmp(get(r0, "images")->child->valuestring, "coco/1.jpg") == 0,
          "sharegpt image: %s", s);
    CHECK(get(cJSON_GetArrayItem(j, 2), "images") == NULL, "a text-only sample has no images");
    cJSON_Delete(j);
    free(s);
    args = xasprintf("data convert --from sharegpt '%s' --out '%s'", sg, back);
    CHECK_EQ_INT(run(args, NULL, NULL), 0);
    free(args);
    check_same_values(llava, back, 0, 0);

    // openai-messages -> llava -> openai-messages
    char *oa = tmp_path("rt.openai.jsonl"), *ol = tmp_path("rt.openai.llava.json"), *oback = tmp_path("rt.back.jsonl");
    write_text(oa, OPENAI_JSONL);
    args = xasprintf("data convert --from openai-messages '%s' --out '%s'", oa, ol);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    CHECK(strstr(text, "4 records (openai-messages) -> 4 samples in") != NULL, "convert: %s %s", text, err);
    free(text);
    free(err);
    free(args);
    s = read_file(ol, 1 << 20, NULL);
    j = s ? cJSON_Parse(s) : NULL;
    static const char *first_value[] = {"<image>\nWhat is this?", "Read the sign.\n<image>", "Hello", "<image>"};
    static const char *image[] = {"a/1.jpg", "b/2.png", NULL, "c/3.jpg"};
    for (int i = 0; i < 4; i++) {
        const cJSON *r = cJSON_GetArrayItem(j, i), *c = get(r, "conversations");
        CHECK(c && strcmp(get(c->child, "from")->valuestring, "human") == 0 &&
                  strcmp(get(c->child, "value")->valuestring, first_value[i]) == 0,
              "llava record %d: %s", i, s);
        CHECK(image[i] ? get(r, "image") && strcmp(get(r, "image")->valuestring, image[i]) == 0 : !get(r, "image"),
              "llava record %d image", i);
    }
    cJSON_Delete(j);
    free(s);
    args = xasprintf("data convert --to openai-messages '%s' --out '%s'", ol, oback);
    CHECK_EQ_INT(run(args, NULL, NULL), 0);
    free(args);
    check_same_values(oa, oback, 1, 1);
    // (and the LLaVA file's own trip through OpenAI's layout)
    char *lo = tmp_path("rt.llava.openai.json"), *lob = tmp_path("rt.llava.openai.back.json");
    args = xasprintf("data convert --to openai-messages '%s' --out '%s'", llava, lo);
    CHECK_EQ_INT(run(args, NULL, NULL), 0);
    free(args);
    args = xasprintf("data convert --from openai-messages '%s' --out '%s'", lo, lob);
    CHECK_EQ_INT(run(args, NULL, NULL), 0);
    free(args);
    check_same_values(llava, lob, 0, 0);
    free(lo);
    free(lob);
    free(oa);
    free(ol);
    free(oback);
    free(llava);
    free(sg);
    free(back);
}

// LLaMA-Factory's multimodal ShareGPT as its data/README.md and mllm_demo.json lay it out, and refusals.
static void test_convert_refusals(void) {
    char *lf = tmp_path("lf.json"), *out = tmp_path("lf.llava.json"), *text, *err;
    write_text(lf,
               "[\n"
               "{\"messages\": [{\"content\": \"<image>Who are they?\", \"role\": \"user\"}, {\"content\": \"Two "
               "players.\", \"role\": \"assistant\"}, {\"content\": \"What are they doing?<image>\", \"role\": "
               "\"user\"}, {\"content\": \"Celebrating.\", \"role\": \"assistant\"}], \"images\": [\"demo/1.jpg\", "
               "\"demo/1.jpg\"]},\n"
               "{\"messages\": [{\"content\": \"<image>Who is he?\", \"role\": \"user\"}, {\"content\": \"A player.\", "
               "\"role\": \"assistant\"}], \"images\": [\"demo/2.jpg\"]},\n"
               "{\"conversations\": [{\"from\": \"human\", \"value\": \"Hi\"}, {\"from\": \"gpt\", \"value\": "
               "\"Hello\"}], \"system\": \"Be brief.\"},\n"
               "{\"id\": \"tool-1\", \"conversations\": [{\"from\": \"human\", \"value\": \"Weather?\"}, {\"from\": "
               "\"function_call\", \"value\": \"{}\"}, {\"from\": \"observation\", \"value\": \"sun\"}, {\"from\": "
               "\"gpt\", \"value\": \"Sunny.\"}], \"tools\": \"[]\"},\n"
               "{\"conversations\": [{\"from\": \"human\", \"value\": \"Draw a cat\"}, {\"from\": \"gpt\", \"value\": "
               "\"<image>\"}], \"images\": [\"x.png\"]},\n"
               "{\"conversations\": [{\"from\": \"human\", \"value\": \"Plain text\"}, {\"from\": \"gpt\", \"value\": "
               "\"Fine.\"}]}\n"
               "]\n");
    char *args = xasprintf("data convert --from llama-factory '%s' --out '%s'", lf, out);
    CHECK_EQ_INT(run(args, &text, &err), 1);
    static const char *want[] = {
        "llava data convert: record 0: 2 images in one sample: LLaVA-1.5 takes one image per sample\n",
        "llava data convert: record 2: a system message (\"system\"): LLaVA-1.5's templates carry their own system "
        "prompt\n",
        "llava data convert: record 3 (id tool-1): tool descriptions (\"tools\"): LLaVA-1.5 has no tool calls\n",
        "llava data convert: record 4: the image is in turn 1, the assistant's: LLaVA-1.5 takes its image in a user "
        "turn",
        "llava data convert: 4 of 6 records refused: nothing written (--skip-bad writes the rest)\n"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(strstr(err, want[i]) != NULL, "no \"%s\" in:\n%s", want[i], err);
    CHECK(!file_is(out), "%s written despite refusals", out);
    free(text);
    free(err);
    free(args);
    args = xasprintf("data convert --from llama-factory '%s' --out '%s' --skip-bad", lf, out);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    CHECK(strstr(text, "6 records (llama-factory) -> 2 samples in") != NULL &&
              strstr(text, "4 refused and skipped") != NULL,
          "convert --skip-bad: %s", text);
    CHECK(strstr(err, "record 0: 2 images in one sample: LLaVA-1.5 takes one image per sample (skipped)\n") != NULL,
          "stderr: %s", err);
    free(text);
    free(err);
    free(args);
    char *got = read_file(out, 1 << 20, NULL);
    CHECK(got && strcmp(got,
                        "[\n"
                        "{\"id\":\"1\",\"image\":\"demo/2.jpg\",\"conversations\":[{\"from\":\"human\",\"value\":"
                        "\"<image>Who is he?\"},{\"from\":\"gpt\",\"value\":\"A player.\"}]},\n"
                        "{\"id\":\"5\",\"conversations\":[{\"from\":\"human\",\"value\":\"Plain text\"},{\"from\":"
                        "\"gpt\",\"value\":\"Fine.\"}]}\n"
                        "]\n") == 0,
          "llama-factory -> llava:\n%s", got ? got : "");
    free(got);

    // OpenAI messages that LLaVA's format cannot carry, each named by record and id.
    char *oa = tmp_path("bad.jsonl"), *oout = tmp_path("bad.llava.json");
    write_text(oa,
               "{\"id\": \"sys\", \"messages\": [{\"role\": \"system\", \"content\": \"Be nice.\"}, {\"role\": "
               "\"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}]}\n"
               "{\"id\": \"two-images\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
               "\"image_url\": {\"url\": \"a.jpg\"}}, {\"type\": \"image_url\", \"image_url\": {\"url\": \"b.jpg\"}}, "
               "{\"type\": \"text\", \"text\": \"Compare.\"}]}, {\"role\": \"assistant\", \"content\": \"Same.\"}]}\n"
               "{\"id\": \"answer-image\", \"messages\": [{\"role\": \"user\", \"content\": \"Draw\"}, {\"role\": "
               "\"assistant\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"c.jpg\"}}]}]}\n"
               "{\"id\": \"tool\", \"messages\": [{\"role\": \"user\", \"content\": \"Weather?\"}, {\"role\": "
               "\"assistant\", \"content\": null, \"tool_calls\": [{\"id\": \"1\"}]}, {\"role\": \"tool\", "
               "\"content\": \"sun\"}, {\"role\": \"assistant\", \"content\": \"Sunny.\"}]}\n"
               "{\"id\": \"order\", \"messages\": [{\"role\": \"user\", \"content\": \"A\"}, {\"role\": \"user\", "
               "\"content\": \"B\"}, {\"role\": \"assistant\", \"content\": \"C\"}]}\n"
               "{\"id\": \"web\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", "
               "\"image_url\": {\"url\": \"https://example.com/x.jpg\"}}]}, {\"role\": \"assistant\", \"content\": "
               "\"X\"}]}\n"
               "{\"id\": \"literal\", \"messages\": [{\"role\": \"user\", \"content\": \"What does <image> mean?\"}, "
               "{\"role\": \"assistant\", \"content\": \"A tag.\"}]}\n"
               "{\"id\": \"ok\", \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}, {\"type\": "
               "\"text\", \"text\": \"What?\"}]}, {\"role\": \"assistant\", \"content\": \"Ok.\"}], \"images\": "
               "[\"trl/1.jpg\"]}\n");
    args = xasprintf("data convert --from openai-messages '%s' --out '%s'", oa, oout);
    CHECK_EQ_INT(run(args, &text, &err), 1);
    static const char *owant[] = {
        "record 0 (id sys): a system message (turn 0): LLaVA-1.5's templates carry their own system prompt\n",
        "record 1 (id two-images): a second image (turn 0): LLaVA-1.5 takes one image per sample\n",
        "record 2 (id answer-image): an image in turn 1, the assistant's: LLaVA-1.5 takes its image in a user turn\n",
        "record 3 (id tool): a tool call (turn 1): LLaVA-1.5 has no tool calls\n",
        "record 4 (id order): turn 1 is the user's where the assistant's is expected",
        "record 5 (id web): an image URL in turn 0 (https://): LLaVA's format names a file under the image folder",
        "record 6 (id literal): a literal <image> in the text of turn 0",
        "7 of 8 records refused: nothing written"};
    for (size_t i = 0; i < sizeof owant / sizeof owant[0]; i++)
        CHECK(strstr(err, owant[i]) != NULL, "no \"%s\" in:\n%s", owant[i], err);
    CHECK(strstr(err, "record 7") == NULL, "record 7 refused: %s", err);
    CHECK(!file_is(oout), "%s written despite refusals", oout);
    free(text);
    free(err);
    free(args);
    args = xasprintf("data convert --from openai-messages '%s' --out '%s' --skip-bad", oa, oout);
    CHECK_EQ_INT(run(args, &text, &err), 0);
    free(args);
    got = read_file(oout, 1 << 20, NULL);
    CHECK(got && strcmp(got,
                        "[\n{\"id\":\"ok\",\"image\":\"trl/1.jpg\",\"conversations\":[{\"from\":\"human\",\"value\":"
                        "\"<image>\\nWhat?\"},{\"from\":\"gpt\",\"value\":\"Ok.\"}]}\n]\n") == 0,
          "openai -> llava:\n%s", got ? got : "");
    free(got);
    free(text);
    free(err);

    // LLaVA records that the other layouts cannot carry either: <image> in two turns, an image without <image>.
    char *lv = tmp_path("bad.llava.in.json"), *lout = tmp_path("bad.openai.jsonl");
    write_text(lv,
               "[{\"id\": \"twice\", \"image\": \"a.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": "
               "\"<image>\\nA?\"}, {\"from\": \"gpt\", \"value\": \"B\"}, {\"from\": \"human\", \"value\": "
               "\"<image>\\nC?\"}, {\"from\": \"gpt\", \"value\": \"D\"}]},\n"
               "{\"id\": \"untagged\", \"image\": \"a.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": "
               "\"A?\"}, {\"from\": \"gpt\", \"value\": \"B\"}]},\n"
               "{\"id\": \"nul\", \"conversations\": [{\"from\": \"human\", \"value\": \"a\\u0000b\"}, {\"from\": "
               "\"gpt\", \"value\": \"c\"}]},\n"
               "{\"id\": \"escaped\", \"conversations\": [{\"from\": \"human\", \"value\": \"a\\\\u0000b\"}, "
               "{\"from\": \"gpt\", \"value\": \"c\"}]}]\n");
    args = xasprintf("data convert --to openai-messages '%s' --out '%s'", lv, lout);
    CHECK_EQ_INT(run(args, &text, &err), 1);
    CHECK(strstr(err, "record 0 (id twice): <image> in 2 places for one image") != NULL, "stderr: %s", err);
    CHECK(strstr(err, "record 1 (id untagged): an image but no <image> placeholder in the conversation\n") != NULL,
          "stderr: %s", err);
    CHECK(strstr(err, "record 2 (id nul): a NUL character (\\u0000) in a string\n") != NULL, "stderr: %s", err);
    CHECK(strstr(err, "record 3") == NULL, "an escaped backslash before u0000 is no NUL: %s", err);
    CHECK(!file_is(lout), "written despite refusals");
    free(text);
    free(err);
    free(args);
    free(lv);
    free(lout);
    free(oa);
    free(oout);
    free(lf);
    free(out);
}

// ---------------------------------------------------------------------------------------------

static void test_usage(void) {
    char *text, *err;
    CHECK_EQ_INT(run("data --help", &text, &err), 0);
    CHECK(strstr(text, "usage: llava data check") != NULL && strstr(text, "llava data convert --to") != NULL,
          "--help: %s", text);
    free(text);
    free(err);
    static const char *bad[] = {
        "data",
        "data bogus",
        "data check --data x.json --image-folder . --tokenizer " TOK,     // no template
        "data check --data x.json --tokenizer " TOK " --template plain",  // no image folder
        "data check --data x.json --image-folder . --tokenizer " TOK " --template plain --mode nope",
        "data stats",
        "data stats x.json --tokenizer " TOK,  // a tokenizer without a template
        "data stats x.json --bin-width 0",
        "data convert --from sharegpt x.json",  // no --out
        "data convert --from nope x.json --out y.json",
        "data convert --to llama-factory x.json --out y.json",
        "data convert --from sharegpt --to openai-messages x.json --out y.json",
        "data check --bogus",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(run(bad[i], &text, &err) == 2, "llava %s: not a usage error (stderr %s)", bad[i], err);
        free(text);
        free(err);
    }
    // A missing input is an error (1), not a usage error.
    CHECK_EQ_INT(run("data stats no-such-file.json", NULL, NULL), 1);
    // convert never writes over its input.
    char *in = tmp_path("self.json");
    write_text(in, LLAVA_JSON);
    char *args = xasprintf("data convert --to sharegpt '%s' --out '%s'", in, in);
    CHECK_EQ_INT(run(args, NULL, NULL), 2);
    char *t = read_file(in, 1 << 20, NULL);
    CHECK(t && strcmp(t, LLAVA_JSON) == 0, "the input was changed");
    free(t);
    free(args);
    free(in);
}

int main(void) {
    dir = check_tmpdir();
    test_usage();
    test_check();
    test_stats();
    test_convert_round_trips();
    test_convert_refusals();
    check_rm_rf(dir);
    free(dir);
    return check_done();
}
