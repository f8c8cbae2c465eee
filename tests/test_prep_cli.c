// `llava prep` and `llava show` end to end on tests/data/prep/ with the small tokenizer: the summary prep
// prints, and `llava show --json` of one sample equal to prep_sample's tokens and labels, with the text the
// tokens stand for ("<s>" and the conversation string) and its supervised span; the human view with the span
// marked; --id; an index out of range; no default template; never writing over the input or, without --force,
// over a file prep did not write; SIGTERM mid-run (no temporary file left, exit 128 + 15). Runs the executable
// named by $LLAVA_BIN (set by CMake), else build/llava.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/prep.h"
#include "tokenizer_golden.h"

#define PREP_DIR "tests/data/prep/"
#define TOK GOLDEN_DIR "tiny.model"

static char *dir;

static const char *bin(void) {
    const char *b = getenv("LLAVA_BIN");
    return b && *b ? b : "build/llava";
}

static char *tmp_path(const char *name) { return xasprintf("%s/%s", dir, name); }

// prep_sample on record `index` of data.json (vicuna_v1, hf431, model_max_length 96).
static int expected(const cJSON *arr, int index, prep_result *r) {
    const cJSON *s = cJSON_GetArrayItem(arr, index);
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(s, "conversations");
    conv_turn turns[8];
    int n = 0;
    for (const cJSON *e = conv->child; e && n < 8; e = e->next, n++) {
        const char *v = cJSON_GetObjectItemCaseSensitive(e, "value")->valuestring;
        turns[n] = (conv_turn){cJSON_GetObjectItemCaseSensitive(e, "from")->valuestring, v, strlen(v)};
    }
    tokenizer *t = tok_load(TOK);
    prep_config c = {.tok = t, .mode = TOK_HF431, .tmpl = conv_template_builtin("vicuna_v1"), .model_max_length = 96};
    int rc = prep_sample(&c, "x", turns, (size_t)n, cJSON_GetObjectItemCaseSensitive(s, "image") != NULL, r);
    tok_free(t);
    return rc;
}

// Runs `llava ARGS`; stdout in *out. Shows stderr when the command fails unexpectedly.
static int run_cmd(const char *args, char **out, int expect_fail) {
    char *o = tmp_path("cmd.out"), *e = tmp_path("cmd.err");
    char *cmd = xasprintf("'%s' %s > '%s' 2> '%s'", bin(), args, o, e);
    int st = system(cmd);
    *out = read_file(o, 1 << 24, NULL);
    if (!*out) *out = xstrdup("");
    char *err = read_file(e, 1 << 24, NULL);
    if (err && *err && !expect_fail && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) fprintf(stderr, "%s: %s", args, err);
    free(err);
    free(cmd);
    free(o);
    free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const cJSON *arr) {
    char *out = tmp_path("cli.h5"), *text;
    char *args = xasprintf(
        "prep --data %sdata.json --image-folder %simages --tokenizer %s --template vicuna_v1 --model-max-length 96 "
        "--threads 2 --out '%s'",
        PREP_DIR, PREP_DIR, TOK, out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    CHECK(strstr(text, "19 records -> 8 samples") != NULL, "prep said: %s", text);
    CHECK(strstr(text, "left out, image path refused             3") != NULL, "prep said: %s", text);
    free(text);
    free(args);

    // --json of row 1 (record 1: "<image>\nWhat is shown?..." -> "Noise")
    prep_result r;
    CHECK(expected(arr, 1, &r) == 0, "%s", llava_errmsg());
    strbuf want = {0};
    sb_puts(&want,
            "{\"index\": 1, \"id\": \"665k-vqa\", \"image\": \"coco/000000000002.jpg\", \"source_index\": 1, "
            "\"flags\": [], "
            "\"modality_length\": 14, \"input_ids\": [");
    for (size_t k = 0; k < r.ids.n; k++) {
        char b[16];
        snprintf(b, sizeof b, "%s%d", k ? ", " : "", r.ids.v[k]);
        sb_puts(&want, b);
    }
    sb_puts(&want, "], \"labels\": [");
    for (size_t k = 0; k < r.labels.n; k++) {
        char b[16];
        snprintf(b, sizeof b, "%s%d", k ? ", " : "", r.labels.v[k]);
        sb_puts(&want, b);
    }
    // The text is "<s>" and the conversation string prep tokenized; the supervised span is the answer and its </s>.
    char *full = xasprintf("<s>%s", r.prompt);
    sb_puts(&want, "], \"text\": ");
    json_string_encode(full, strlen(full), &want);
    sb_puts(&want, ", \"supervised\": [\" Noise</s>\"]}\n");
    args = xasprintf("show '%s' --index 1 --json", out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    CHECK(strcmp(text, want.p) == 0, "show --json:\n%s\nexpected:\n%s", text, want.p);
    free(text);
    free(args);
    // The human view marks the supervised span; --id finds the same sample.
    args = xasprintf("show '%s' --id 665k-vqa --color never", out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    CHECK(strstr(text, "ASSISTANT:\xe2\x9f\xa6 Noise</s>\xe2\x9f\xa7") != NULL, "show: %s", text);
    CHECK(strstr(text, "USER: <image>\nWhat is shown?") != NULL, "show: %s", text);
    free(text);
    free(args);
    args = xasprintf("show '%s' --index 8", out);
    CHECK(run_cmd(args, &text, 1) != 0, "an index out of range");
    free(text);
    free(args);
    free(full);
    free(want.p);
    prep_result_free(&r);
    free(out);
}

// Reads a run's stderr (kept by run_cmd in cmd.err).
static char *last_err(void) {
    char *e = tmp_path("cmd.err");
    char *t = read_file(e, 1 << 24, NULL);
    free(e);
    return t ? t : xstrdup("");
}

// The template decides every label: prep has no default for it. --template, or a --config preset that sets
// data.template (or --set data.template=...), must name it.
static void test_template_required(void) {
    char *out = tmp_path("notemplate.h5"), *text;
    char *args = xasprintf("prep --data %sdata.json --image-folder %simages --tokenizer %s --out '%s' --quiet",
                           PREP_DIR, PREP_DIR, TOK, out);
    CHECK_EQ_INT(run_cmd(args, &text, 1), 2);
    char *err = last_err();
    CHECK(strstr(err,
                 "llava prep: no template: give --template NAME|FILE.json (built in: plain, vicuna_v1, "
                 "llava_llama_2, mistral_instruct, llava_llama_3, qwen_1_5; or --config with a preset that sets "
                 "data.template)\n") == err,
          "stderr: %s", err);
    CHECK(!file_exists(out), "%s was written without a template", out);
    free(err);
    free(text);
    free(args);
    // A preset without data.template supplies none either (the schema's default is no choice).
    unlink(out);
    char *preset = tmp_path("preset.json");
    static const char pj[] = "{\"data\": {\"model_max_length\": 96}}";
    write_file_atomic(preset, pj, strlen(pj));
    args = xasprintf("prep --config '%s' --data %sdata.json --image-folder %simages --tokenizer %s --out '%s' --quiet",
                     preset, PREP_DIR, PREP_DIR, TOK, out);
    CHECK_EQ_INT(run_cmd(args, &text, 1), 2);
    err = last_err();
    CHECK(strstr(err, "no template") != NULL, "stderr: %s", err);
    CHECK(!file_exists(out), "%s was written without a template", out);
    free(err);
    free(text);
    free(args);
    // The stage-2 preset sets vicuna_v1; so does --set.
    args = xasprintf(
        "prep --config configs/llava15-7b-stage2.json --data %sdata.json --image-folder %simages "
        "--tokenizer %s --model-max-length 96 --out '%s' --quiet",
        PREP_DIR, PREP_DIR, TOK, out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    CHECK(strstr(text, "19 records -> 8 samples") != NULL, "prep said: %s", text);
    free(text);
    free(args);
    llava_dataset d;
    if (dataset_open(&d, out) == 0) {
        CHECK_EQ_STR(d.template_name, "vicuna_v1");
        dataset_close(&d);
    } else {
        CHECK(0, "%s", llava_errmsg());
    }
    args = xasprintf(
        "prep --set data.template=plain --data %sdata.json --image-folder %simages --tokenizer %s --out "
        "'%s' --quiet",
        PREP_DIR, PREP_DIR, TOK, out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    CHECK(strstr(text, "19 records -> 4 samples") != NULL, "prep said: %s", text);
    free(text);
    free(args);
    free(preset);
    free(out);
}

static int same_bytes(const char *a, const char *b) {
    size_t na, nb;
    char *x = read_file(a, 1 << 24, &na), *y = read_file(b, 1 << 24, &nb);
    int same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

// Runs prep on `data` into `out` (extra flags after), expecting exit status `want`; returns its stderr.
static char *prep_into(const char *data, const char *out, const char *extra, int want) {
    char *text, *args = xasprintf(
                    "prep --data '%s' --image-folder %simages --tokenizer %s --template vicuna_v1 "
                    "--model-max-length 96 --out '%s' --quiet %s",
                    data, PREP_DIR, TOK, out, extra);
    CHECK(run_cmd(args, &text, want != 0) == want, "%s: expected exit %d", args, want);
    free(text);
    free(args);
    return last_err();
}

// prep never writes over its input (the same file however it is spelled: another path, a symlink, a hard link),
// nor over a file it did not write unless --force.
static void test_out_paths(void) {
    char *in = tmp_path("in.json"), *orig = xasprintf("%sdata.json", PREP_DIR);
    size_t n;
    char *json = read_file(orig, 1 << 20, &n);
    write_file_atomic(in, json, n);
    free(json);
    char *sub = tmp_path("sub"), *spelled = tmp_path("sub/../in.json"), *sym = tmp_path("link.h5"),
         *hard = tmp_path("hard.h5");
    mkdir_p(sub);
    CHECK(symlink(in, sym) == 0 && link(in, hard) == 0, "cannot link");
    const char *outs[] = {in, spelled, sym, hard};
    for (int i = 0; i < 4; i++) {
        for (int force = 0; force < 2; force++) {
            if (!same_bytes(in, orig)) {  // put it back in place (same inode: the links still point at it)
                FILE *f = fopen(in, "wb");
                char *j = read_file(orig, 1 << 20, &n);
                if (f && j) fwrite(j, 1, n, f);
                if (f) fclose(f);
                free(j);
            }
            char *err = prep_into(in, outs[i], force ? "--force" : "", 1);
            char *want = xasprintf("llava prep: %s is the input %s: refusing to write over it\n", outs[i], in);
            CHECK(strcmp(err, want) == 0, "stderr: %s\nexpected: %s", err, want);
            free(want);
            free(err);
            CHECK(same_bytes(in, orig), "the input was changed (out %s, force %d)", outs[i], force);
        }
    }
    // The report, too, is never the input.
    char *out = tmp_path("ok.h5"), *rep = xasprintf("--report '%s'", in);
    char *err = prep_into(in, out, rep, 1);
    char *want = xasprintf("llava prep: the report %s is the input %s: refusing to write over it\n", in, in);
    CHECK(strcmp(err, want) == 0, "stderr: %s", err);
    CHECK(same_bytes(in, orig), "the input was changed by the report");
    free(want);
    free(err);
    free(rep);
    // An existing file prep did not write: refused, unless --force.
    char *notes = tmp_path("notes.txt");
    write_file_atomic(notes, "my notes\n", 9);
    err = prep_into(in, notes, "", 1);
    want = xasprintf(
        "llava prep: %s exists and is not a dataset written by llava prep: refusing to write over it "
        "(--force does)\n",
        notes);
    CHECK(strcmp(err, want) == 0, "stderr: %s\nexpected: %s", err, want);
    char *txt = read_file(notes, 1 << 10, NULL);
    CHECK(txt && strcmp(txt, "my notes\n") == 0, "notes.txt was changed");
    free(txt);
    free(want);
    free(err);
    free(prep_into(in, notes, "--force", 0));
    llava_dataset d;
    CHECK(dataset_open(&d, notes) == 0, "--force did not write a dataset: %s", llava_errmsg());
    if (d.n) dataset_close(&d);
    // A dataset prep wrote is overwritten as before (a re-run).
    free(prep_into(in, out, "", 0));
    free(prep_into(in, out, "", 0));
    free(notes);
    free(out);
    free(sub);
    free(spelled);
    free(sym);
    free(hard);
    free(orig);
    free(in);
}

// Whether a folder holds a file whose name contains `part`.
static int dir_has(const char *path, const char *part) {
    DIR *d = opendir(path);
    int found = 0;
    for (struct dirent *e; d && (e = readdir(d));) found |= strstr(e->d_name, part) != NULL;
    if (d) closedir(d);
    return found;
}

// SIGTERM while prep runs: the temporary file is removed, no output or report appears, and the exit status is
// 128 + SIGTERM (the handler only sets a flag; the main thread stops the workers and cleans up).
static void test_sigterm(void) {
    char *json = tmp_path("big.json"), *sig = tmp_path("sig"), *out = tmp_path("sig/out.h5");
    char *log = tmp_path("sig.log"), *report = tmp_path("sig/out.report.json");
    mkdir_p(sig);
    FILE *f = fopen(json, "wb");
    const int N = 150000;  // seconds of work on one thread
    fputs("[\n", f);
    for (int i = 0; i < N; i++)
        fprintf(f,
                "{\"id\": \"s%d\", \"image\": \"coco/000000000001.png\", \"conversations\": [{\"from\": \"human\", "
                "\"value\": \"<image>\\nWhat is in picture %d?\"}, {\"from\": \"gpt\", \"value\": \"It shows %d "
                "things.\"}]}%s\n",
                i, i, i, i + 1 < N ? "," : "");
    fputs("]\n", f);
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(bin(), "llava", "prep", "--data", json, "--image-folder", PREP_DIR "images", "--tokenizer", TOK,
              "--template", "vicuna_v1", "--threads", "1", "--out", out, "--quiet", (char *)NULL);
        _exit(127);
    }
    CHECK(pid > 0, "fork failed");
    if (pid <= 0) return;
    // Wait until prep is writing (its temporary file exists), then ask it to stop.
    int st = 0, done = 0;
    for (int t = 0; t < 30000 && !dir_has(sig, ".tmp") && !done; t += 5) {
        usleep(5000);
        done = waitpid(pid, &st, WNOHANG) == pid;
    }
    CHECK(!done, "prep ended before the signal (status %d)", st);
    CHECK(dir_has(sig, ".tmp"), "no temporary file appeared");
    kill(pid, SIGTERM);
    for (int t = 0; t < 30000 && !done; t += 10) {
        done = waitpid(pid, &st, WNOHANG) == pid;
        if (!done) usleep(10000);
    }
    if (!done) {
        kill(pid, SIGKILL);
        waitpid(pid, &st, 0);
        CHECK(0, "prep did not stop within 30 s of SIGTERM");
    }
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM, "status: exited %d (%d), signalled %d (%d)", WIFEXITED(st),
          WIFEXITED(st) ? WEXITSTATUS(st) : -1, WIFSIGNALED(st), WIFSIGNALED(st) ? WTERMSIG(st) : -1);
    CHECK(!dir_has(sig, ".tmp"), "a temporary file was left in %s", sig);
    CHECK(!file_exists(out) && !file_exists(report), "an output appeared");
    printf("SIGTERM during prep: exit %d, no temporary file left, no output written\n",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    char *text = read_file(log, 1 << 20, NULL);
    char *want = xasprintf("llava prep: interrupted by signal %d (Terminated): nothing written (%s.tmp.%d removed)\n",
                           SIGTERM, out, (int)pid);
    CHECK(text && strcmp(text, want) == 0, "prep said: %s\nexpected: %s", text ? text : "", want);
    free(want);
    free(text);
    unlink(json);
    free(json);
    free(sig);
    free(out);
    free(log);
    free(report);
}

// `llava show` of several images and of a video: the paths in order on one line, JSON's "image" their list, and a
// video flagged "video".
static void test_show_lists(void) {
    char *json = tmp_path("lists.json"), *out = tmp_path("lists.h5"), *text;
    static const char data[] =
        "[{\"id\": \"two\", \"image\": [\"coco/000000000001.png\", \"coco/000000000002.jpg\"], \"conversations\": "
        "[{\"from\": \"human\", \"value\": \"<image>\\n<image>\\nSame?\"}, {\"from\": \"gpt\", \"value\": \"No.\"}]},\n"
        " {\"id\": \"clip\", \"video\": [\"coco/000000000002.jpg\", \"ocr_vqa/images/0001.jpg\", "
        "\"coco/000000000001.png\"], \"conversations\": [{\"from\": \"human\", \"value\": \"<image>\\nWhat "
        "changed?\"}, "
        "{\"from\": \"gpt\", \"value\": \"The colour.\"}]}]\n";
    write_file_atomic(json, data, sizeof data - 1);
    free(prep_into(json, out, "", 0));
    char *args = xasprintf("show '%s' --id clip --color never", out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    CHECK(strstr(text,
                 "  video (3 frames behind its one <image>): coco/000000000002.jpg, ocr_vqa/images/0001.jpg, "
                 "coco/000000000001.png\n") != NULL,
          "show: %s", text);
    free(text), free(args);
    args = xasprintf("show '%s' --id two --color never", out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    CHECK(strstr(text, "  images (2): coco/000000000001.png, coco/000000000002.jpg\n") != NULL, "show: %s", text);
    free(text), free(args);
    args = xasprintf("show '%s' --id clip --json", out);
    CHECK_EQ_INT(run_cmd(args, &text, 0), 0);
    cJSON *o = cJSON_Parse(text);
    const cJSON *im = cJSON_GetObjectItemCaseSensitive(o, "image"), *fl = cJSON_GetObjectItemCaseSensitive(o, "flags");
    CHECK(cJSON_GetArraySize(im) == 3 && !strcmp(cJSON_GetArrayItem(im, 1)->valuestring, "ocr_vqa/images/0001.jpg") &&
              cJSON_GetArraySize(fl) == 1 && !strcmp(cJSON_GetArrayItem(fl, 0)->valuestring, "video"),
          "show --json: %s", text);
    cJSON_Delete(o);
    free(text), free(args);
    printf("show: two images and a video of three frames listed in order; the video flagged\n");
    free(json), free(out);
}

int main(void) {
    dir = check_tmpdir();
    char *data = read_file(PREP_DIR "data.json", 1 << 20, NULL);
    cJSON *arr = data ? cJSON_Parse(data) : NULL;
    free(data);
    if (!arr) {
        fprintf(stderr, "cannot read %sdata.json (run from the repository root)\n", PREP_DIR);
        return 1;
    }
    test_cli(arr);
    test_template_required();
    test_out_paths();
    test_sigterm();
    test_show_lists();
    cJSON_Delete(arr);
    check_rm_rf(dir);
    free(dir);
    return check_done();
}
