// `llava tokenize` end to end on the small tokenizer: ids, pieces, plain SentencePiece, decoding, templates with
// the mismatch report, --strict, the benchmark, and bad input. Runs the executable named by $LLAVA_BIN (set by
// CMake), else build/llava.
#include <sys/wait.h>

#include "tokenizer_golden.h"

static const char *bin(void) {
    const char *b = getenv("LLAVA_BIN");
    return b && *b ? b : "build/llava";
}

static char *dir;

// Runs `llava tokenize ARGS < input`; returns the exit code, stdout in *out and stderr in *err.
static int tokenize(const char *args, const char *input, char **out, char **err) {
    char in_path[512], out_path[512], err_path[512], cmd[2048];
    snprintf(in_path, sizeof in_path, "%s/in", dir);
    snprintf(out_path, sizeof out_path, "%s/out", dir);
    snprintf(err_path, sizeof err_path, "%s/err", dir);
    FILE *f = fopen(in_path, "wb");
    fputs(input, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' tokenize %s < '%s' > '%s' 2> '%s'", bin(), args, in_path, out_path, err_path);
    int st = system(cmd);
    *out = read_file(out_path, 1 << 26, NULL);
    *err = read_file(err_path, 1 << 26, NULL);
    if (!*out) *out = xstrdup("");
    if (!*err) *err = xstrdup("");
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void ids_text(const tokenizer *t, tok_mode m, const char *s, char *buf, size_t cap) {
    tok_ids ids = {0};
    tok_encode(t, m, s, strlen(s), &ids);
    size_t n = 0;
    buf[0] = 0;
    for (size_t k = 0; k < ids.n; k++) n += (size_t)snprintf(buf + n, cap - n, "%s%d", k ? " " : "", ids.v[k]);
    tok_ids_free(&ids);
}

int main(void) {
    dir = check_tmpdir();
    tokenizer *t = tok_load(GOLDEN_DIR "tiny.model");
    CHECK(t != NULL, "%s", llava_errmsg());
    if (!t) return check_done();
    char *out, *err, want[4096], line[2048];
    const char *model = "--tokenizer " GOLDEN_DIR "tiny.model";
    char args[1024];

    // Ids, one line per input, in each mode; blank lines are skipped.
    static const char input[] = "\"Hello world\"\n\n\"A cat.</s>USER: x\"\n\"\\u00e9t\\u00e9 \\ud83d\\ude00\"\n";
    static const char *texts[] = {"Hello world", "A cat.</s>USER: x", "\xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80"};
    for (int m = 0; m < 3; m++) {
        snprintf(args, sizeof args, "%s --mode %s", model, tok_mode_name((tok_mode)m));
        CHECK_EQ_INT(tokenize(args, input, &out, &err), 0);
        want[0] = 0;
        for (int k = 0; k < 3; k++) {
            ids_text(t, (tok_mode)m, texts[k], line, sizeof line);
            strcat(want, line);
            strcat(want, "\n");
        }
        CHECK(strcmp(out, want) == 0, "mode %s: \"%s\" vs \"%s\" (%s)", tok_mode_name((tok_mode)m), out, want, err);
        free(out);
        free(err);
    }
    // The default mode is hf431.
    CHECK_EQ_INT(tokenize(model, "\"A cat.</s>USER: x\"\n", &out, &err), 0);
    ids_text(t, TOK_HF431, "A cat.</s>USER: x", line, sizeof line);
    strcat(line, "\n");
    CHECK_EQ_STR(out, line);
    free(out);
    free(err);
    // Pieces.
    snprintf(args, sizeof args, "%s --pieces --mode legacy", model);
    CHECK_EQ_INT(tokenize(args, "\"a </s>\\n\"\n", &out, &err), 0);
    CHECK(strncmp(out, "<s> ", 4) == 0 && strstr(out, "</s>") && strstr(out, "<0x0A>"), "pieces \"%s\"", out);
    free(out);
    free(err);
    // Plain SentencePiece: no BOS, no special tokens.
    snprintf(args, sizeof args, "%s --sp", model);
    CHECK_EQ_INT(tokenize(args, "\"<s>\"\n", &out, &err), 0);
    tok_ids ids = {0};
    tok_sp_encode(t, "<s>", 3, &ids);
    line[0] = 0;
    for (size_t k = 0; k < ids.n; k++)
        snprintf(line + strlen(line), sizeof line - strlen(line), "%s%d", k ? " " : "", ids.v[k]);
    tok_ids_free(&ids);
    strcat(line, "\n");
    CHECK_EQ_STR(out, line);
    free(out);
    free(err);
    // Decoding, with invalid UTF-8 as U+FFFD in the JSON output.
    snprintf(args, sizeof args, "%s --decode", model);
    snprintf(want, sizeof want, "%s\n%d %d\n", line, tok_piece_to_id(t, "<0xFF>", 6), tok_piece_to_id(t, "<0x41>", 6));
    CHECK_EQ_INT(tokenize(args, want, &out, &err), 0);
    CHECK(strcmp(out,
                 "\"<s>\"\n\"\xef\xbf\xbd"
                 "A\"\n") == 0,
          "decode \"%s\" (%s)", out, err);
    free(out);
    free(err);

    // Templates: one JSON object per line; the summary names the mismatched sample.
    static const char samples[] =
        "{\"id\": \"s1\", \"image\": \"x.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": "
        "\"Q?\\n<image>\"}, "
        "{\"from\": \"gpt\", \"value\": \"A.\"}]}\n"
        "{\"id\": \"s2\", \"conversations\": [{\"from\": \"human\", \"value\": \"Q\"}, {\"from\": \"gpt\", \"value\": "
        "\"it is <unk>\"}]}\n";
    snprintf(args, sizeof args, "%s --template vicuna_v1", model);
    CHECK_EQ_INT(tokenize(args, samples, &out, &err), 0);
    CHECK(strstr(out, "{\"id\": \"s1\", \"input_ids\": [1, ") != NULL && strstr(out, "-200") != NULL,
          "template output \"%s\"", out);
    CHECK(strstr(out, "\"mismatch\": [") != NULL, "mismatch reported in the output");
    CHECK(strstr(err, "2 samples") && strstr(err, "1 masked for a tokenization mismatch: s2"), "summary \"%s\"", err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "%s --template vicuna_v1 --strict", model);
    CHECK_EQ_INT(tokenize(args, samples, &out, &err), 1);
    CHECK(strstr(err, "sample s2") && strstr(err, "mismatch"), "strict error \"%s\"", err);
    free(out);
    free(err);
    // LLaVA's JSON array through --data.
    char data_path[512];
    snprintf(data_path, sizeof data_path, "%s/data.json", dir);
    FILE *f = fopen(data_path, "w");
    fprintf(f,
            "[{\"id\": \"p1\", \"image\": \"a.jpg\", \"conversations\": [{\"from\": \"human\", \"value\": "
            "\"<image>\\nDescribe.\"}, "
            "{\"from\": \"gpt\", \"value\": \"a dog\"}]}]\n");
    fclose(f);
    snprintf(args, sizeof args, "%s --template plain --data '%s' --quiet", model, data_path);
    CHECK_EQ_INT(tokenize(args, "", &out, &err), 0);
    CHECK(out[0] == 0 && strstr(err, "1 samples, template plain"), "quiet plain \"%s\" \"%s\"", out, err);
    free(out);
    free(err);
    snprintf(args, sizeof args, "%s --template data/templates/llava_llama_2.json", model);
    CHECK_EQ_INT(tokenize(args, samples, &out, &err), 0);
    CHECK(strstr(err, "template llava_llama_2"), "a template from a file: \"%s\"", err);
    free(out);
    free(err);

    // Benchmark.
    snprintf(args, sizeof args, "%s --bench " GOLDEN_DIR "prompts.jsonl --seconds 0.05", model);
    CHECK_EQ_INT(tokenize(args, "", &out, &err), 0);
    CHECK(strstr(out, "characters/s") != NULL, "bench \"%s\"", out);
    free(out);
    free(err);

    // Errors.
    CHECK_EQ_INT(tokenize(model, "not json\n", &out, &err), 1);
    CHECK(strstr(err, "stdin:1") != NULL, "bad input names its line: \"%s\"", err);
    free(out);
    free(err);
    CHECK_EQ_INT(tokenize("", "\"x\"\n", &out, &err), 2);
    free(out);
    free(err);
    snprintf(args, sizeof args, "%s --mode nope", model);
    CHECK_EQ_INT(tokenize(args, "\"x\"\n", &out, &err), 2);
    free(out);
    free(err);
    CHECK_EQ_INT(tokenize("--tokenizer tests/data/tokenizer/corpus.jsonl", "\"x\"\n", &out, &err), 1);
    free(out);
    free(err);

    tok_free(t);
    check_rm_rf(dir);
    free(dir);
    return check_done();
}
