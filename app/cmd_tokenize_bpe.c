// llava tokenize --tokenizer tokenizer.json: the byte-level BPE of data/bpe.h from the command line
// (docs/tokenizer.md). cmd_tokenize.c hands over here when the tokenizer path ends in ".json".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "common/util.h"
#include "data/bpe.h"
#include "data/jsonl.h"

int tokenize_is_bpe(int argc, char **argv);
int cmd_tokenize_bpe(int argc, char **argv);
// cmd_tokenize.c
int tokenize_parse_ids(const char *line, size_t lineno, tok_ids *ids);
int tokenize_is_blank(const char *s, size_t n);
int tokenize_read_corpus(const char *path, int (*keep)(const char *s, size_t n), char ***lines, size_t **lens,
                         size_t *n);

static const char USAGE[] =
    "usage: llava tokenize --tokenizer PATH/tokenizer.json [--no-special] [--pieces]\n"
    "       llava tokenize --tokenizer PATH/tokenizer.json --decode [--skip-special]\n"
    "       llava tokenize --tokenizer PATH/tokenizer.json --bench FILE [--seconds S] [--no-special]\n"
    "\n"
    "Reads JSON Lines on stdin, one JSON string per line, and prints one line per input: the ids Hugging Face's\n"
    "tokenizers library gives for Tokenizer.from_file(PATH).encode(text) (byte-level BPE: Llama-3, Qwen2, GPT-2).\n"
    "tokenizer_config.json beside the file gives bos/eos.\n"
    "\n"
    "  --tokenizer PATH  a tokenizer.json (required)\n"
    "  --no-special      encode(text, add_special_tokens=False): no template tokens such as Llama-3's BOS\n"
    "                    (default: off)\n"
    "  --pieces          the tokens instead of the ids, as tokenizer.json spells them (default: off)\n"
    "  --decode          input lines are space-separated ids; prints the decoded text as a JSON string (default:\n"
    "                    off)\n"
    "  --skip-special    with --decode: drop special tokens (default: off)\n"
    "  --bench FILE      encode every line of FILE (JSON strings, or raw text lines) on one core and print the\n"
    "                    speed (default: off)\n"
    "  --seconds S       with --bench: run for at least S seconds of CPU time (default: 1)\n";

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

int tokenize_is_bpe(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--tokenizer") == 0) return ends_with(argv[i + 1], ".json");
    return 0;
}

static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Lines the library could not take (not UTF-8) are left out of the bench, so both measure the same text.
static int is_utf8(const char *s, size_t n) { return utf8_valid((const uint8_t *)s, n); }

static int run_bench(const bpe_tokenizer *t, const char *path, double min_seconds, int add_special) {
    char **line;
    size_t *len, n_lines, bytes = 0;
    if (tokenize_read_corpus(path, is_utf8, &line, &len, &n_lines) != 0) return -1;
    for (size_t i = 0; i < n_lines; i++) bytes += len[i];
    int rc = 0;
    tok_ids ids = {0};
    size_t tokens = 0, passes = 0;
    double c0 = cpu_seconds(), cpu = 0;
    while (rc == 0) {
        for (size_t i = 0; i < n_lines && rc == 0; i++) {
            ids.n = 0;
            rc = bpe_encode(t, line[i], len[i], add_special, &ids);
            tokens += ids.n;
        }
        passes++;
        cpu = cpu_seconds() - c0;
        if (cpu >= min_seconds) break;
    }
    if (rc == 0)
        printf(
            "tokenizer bench: tokenizer.json (byte-level BPE), %zu lines, %zu bytes, %zu passes\n"
            "  %.3f s of CPU, %.0f tokens/pass: %.3g MB/s, %.3g tokens/s on one core\n",
            n_lines, bytes, passes, cpu, (double)tokens / (double)passes, (double)bytes * (double)passes / cpu / 1e6,
            (double)tokens / cpu);
    for (size_t i = 0; i < n_lines; i++) free(line[i]);
    free(line);
    free(len);
    tok_ids_free(&ids);
    return rc;
}

// A token as --pieces prints it: bytes that would break the line or the separation become <0xNN>.
static void put_piece(strbuf *o, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c == 0x7f) {
            char b[8];
            snprintf(b, sizeof b, "<0x%02X>", c);
            sb_put(o, b, 6);
        } else {
            sb_put(o, p + i, 1);
        }
    }
}

int cmd_tokenize_bpe(int argc, char **argv) {
    const char *path = NULL, *bench = NULL;
    int pieces = 0, decode = 0, no_special = 0, skip_special = 0;
    double seconds = 1.0;
    static const char *const FLAGS[] = {"--tokenizer",    "--no-special", "--pieces",  "--decode",
                                        "--skip-special", "--bench",      "--seconds", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (args_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--tokenizer") == 0 && has_value) path = argv[++i];
        else if (strcmp(a, "--no-special") == 0) no_special = 1;
        else if (strcmp(a, "--pieces") == 0) pieces = 1;
        else if (strcmp(a, "--decode") == 0) decode = 1;
        else if (strcmp(a, "--skip-special") == 0) skip_special = 1;
        else if (strcmp(a, "--bench") == 0 && has_value) bench = argv[++i];
        else if (strcmp(a, "--seconds") == 0 && has_value) seconds = atof(argv[++i]);
        else if (strcmp(a, "--mode") == 0 || strcmp(a, "--sp") == 0 || strcmp(a, "--data") == 0) {
            fprintf(stderr, "llava tokenize: %s is for SentencePiece tokenizer.model files, not tokenizer.json\n", a);
            return 2;
        } else {
            return args_unknown("tokenize", a, FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    bpe_tokenizer *t = bpe_load(path);
    if (!t) {
        fprintf(stderr, "llava tokenize: %s\n", llava_errmsg());
        return 1;
    }
    int rc = 0;
    if (bench) {
        rc = run_bench(t, bench, seconds, !no_special);
        if (rc) fprintf(stderr, "llava tokenize: %s\n", llava_errmsg());
        bpe_free(t);
        return rc ? 1 : 0;
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t got;
    strbuf o = {0};
    tok_ids ids = {0};
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t n = (size_t)got;
        if (tokenize_is_blank(line, n)) continue;
        o.n = 0;
        ids.n = 0;
        if (decode) {
            if ((rc = tokenize_parse_ids(line, lineno, &ids)) != 0) break;
            char *text;
            size_t tl;
            bpe_decode(t, ids.v, ids.n, skip_special, &text, &tl);
            json_string_encode(text, tl, &o);
            free(text);
        } else {
            char *text;
            size_t tl;
            if (json_string_decode(line, n, &text, &tl)) {
                rc = llava_fail_ctx("stdin:%zu", lineno);
                break;
            }
            rc = bpe_encode(t, text, tl, !no_special, &ids);
            free(text);
            if (rc) {
                llava_fail_ctx("stdin:%zu", lineno);
                break;
            }
            for (size_t k = 0; k < ids.n; k++) {
                if (k) sb_put(&o, " ", 1);
                if (pieces) {
                    size_t pl = 0;
                    const char *ps = bpe_id_to_token(t, ids.v[k], &pl);
                    put_piece(&o, ps ? ps : "", ps ? pl : 0);
                } else {
                    char b[16];
                    int bl = snprintf(b, sizeof b, "%d", ids.v[k]);
                    sb_put(&o, b, (size_t)bl);
                }
            }
        }
        sb_put(&o, "\n", 1);
        fwrite(o.p, 1, o.n, stdout);
    }
    fflush(stdout);
    if (rc) fprintf(stderr, "llava tokenize: %s\n", llava_errmsg());
    free(line);
    free(o.p);
    tok_ids_free(&ids);
    bpe_free(t);
    return rc ? 1 : 0;
}
