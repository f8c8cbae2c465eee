// llava tokenize: the tokenizer and the conversation templates from the command line (docs/tokenizer.md).
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "data/jsonl.h"
#include "data/template.h"
#include "data/tokenizer.h"

// tokenizer.json (byte-level BPE: Llama-3, Qwen2, GPT-2) is handled by cmd_tokenize_bpe.c.
int tokenize_is_bpe(int argc, char **argv);
int cmd_tokenize_bpe(int argc, char **argv);

// A --decode input line: token ids separated by blanks, appended to *ids. 0, or -1 with an error
// naming stdin's line. Both tokenizer paths read their lines with it.
int tokenize_parse_ids(const char *line, size_t lineno, tok_ids *ids) {
    const char *p = line;
    for (;;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        tok_ids_push(ids, (int32_t)v);
        p = end;
    }
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    return *p ? llava_fail("stdin:%zu: expected space-separated ids", lineno) : 0;
}

static const char USAGE[] =
    "usage: llava tokenize --tokenizer PATH [--mode legacy|hf431|hf437] [--sp] [--pieces]\n"
    "       llava tokenize --tokenizer PATH --decode\n"
    "       llava tokenize --tokenizer PATH --template NAME|FILE.json [--data FILE.json] [--strict] [--max-length N] "
    "[--quiet]\n"
    "       llava tokenize --tokenizer PATH --bench FILE [--mode M | --sp] [--seconds S]\n"
    "\n"
    "Reads JSON Lines on stdin, one JSON string per line, and prints one line per input: the input ids of Hugging\n"
    "Face's slow LlamaTokenizer, BOS first, in the given mode.\n"
    "\n"
    "  --tokenizer PATH  a SentencePiece tokenizer.model (required); a tokenizer.json (byte-level BPE) has its own\n"
    "                    options (llava tokenize --tokenizer tokenizer.json --help) but takes --template too\n"
    "  --mode M          tokenizer rules: hf431 = transformers 4.31, the released LLaVA-1.5 checkpoints; hf437 =\n"
    "                    LLaVA HEAD; legacy = legacy=True (default: hf431)\n"
    "  --sp              the ids of plain SentencePiece instead (sp.encode: no BOS, no special tokens; default: off)\n"
    "  --pieces          the pieces instead of the ids (default: off)\n"
    "  --decode          input lines are space-separated ids; prints the decoded text as a JSON string (default:\n"
    "                    off)\n"
    "  --template T      plain, vicuna_v1, llava_llama_2, mistral_instruct, llava_llama_3, qwen_1_5 or a template\n"
    "                    JSON file (docs/tokenizer.md; default: none). Input lines\n"
    "                    are LLaVA samples ({\"id\", \"image\"?, \"conversations\"}); prints {\"id\", \"input_ids\",\n"
    "                    \"labels\"} per sample (image = -200, ignored label = -100) and a summary on stderr with the\n"
    "                    id of every sample LLaVA would mask for a length mismatch\n"
    "  --data FILE       with --template: read LLaVA's JSON array from FILE instead of stdin (default: stdin)\n"
    "  --strict          with --template: stop at the first masked sample instead (default: off)\n"
    "  --max-length N    with --template: model_max_length, LLaVA's truncation (default: 2048)\n"
    "  --quiet           with --template: the summary only, no line per sample (default: off)\n"
    "  --bench FILE      encode every line of FILE (JSON strings, or raw text lines) on one core and print the\n"
    "                    speed (default: off)\n"
    "  --seconds S       with --bench: run for at least S seconds of CPU time (default: 1)\n";

static void sb_int(strbuf *o, long v) {
    char b[24];
    int n = snprintf(b, sizeof b, "%ld", v);
    sb_put(o, b, (size_t)n);
}

// A piece as printed by --pieces: bytes that would break the line or the separation become <0xNN>.
static void sb_piece(strbuf *o, const char *p, size_t n) {
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

int tokenize_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

// A --bench corpus: one text per non-blank line, a JSON string when the line starts with a quote,
// raw text otherwise. keep (may be NULL) decides which texts stay. *lines and *lens (malloc'd; each
// text NUL-terminated) get *n of them. 0, or -1 with an error naming the file and line.
int tokenize_read_corpus(const char *path, int (*keep)(const char *s, size_t n), char ***lines, size_t **lens,
                         size_t *n) {
    size_t size;
    char *data = read_file(path, (size_t)4 << 30, &size);
    *lines = NULL, *lens = NULL, *n = 0;
    if (!data) return -1;
    size_t cap = 0, i = 0;
    int rc = 0;
    while (i < size && rc == 0) {
        size_t j = i;
        while (j < size && data[j] != '\n') j++;
        if (!tokenize_is_blank(data + i, j - i)) {
            if (*n == cap) {
                cap = cap ? cap * 2 : 1024;
                *lines = xrealloc(*lines, cap * sizeof **lines);
                *lens = xrealloc(*lens, cap * sizeof **lens);
            }
            char **l = &(*lines)[*n];
            size_t *ln = &(*lens)[*n], k = i;
            while (k < j && (data[k] == ' ' || data[k] == '\t')) k++;
            if (data[k] == '"') {
                if (json_string_decode(data + i, j - i, l, ln)) rc = llava_fail_ctx("%s:%zu", path, *n + 1);
            } else {
                *l = xmalloc(j - i + 1);
                memcpy(*l, data + i, j - i);
                (*l)[j - i] = 0;
                *ln = j - i;
            }
            if (rc == 0 && (!keep || keep(*l, *ln))) (*n)++;
            else if (rc == 0) free(*l);
        }
        i = j + 1;
    }
    free(data);
    if (rc != 0) {
        for (size_t k = 0; k < *n; k++) free((*lines)[k]);
        free(*lines), free(*lens);
        *lines = NULL, *lens = NULL, *n = 0;
    }
    return rc;
}

static size_t count_chars(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xc0) != 0x80;
    return c;
}

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int encode_one(const tokenizer *t, int sp, tok_mode mode, const char *s, size_t n, tok_ids *ids) {
    return sp ? tok_sp_encode(t, s, n, ids) : tok_encode(t, mode, s, n, ids);
}

static int run_bench(const tokenizer *t, int sp, tok_mode mode, const char *path, double min_seconds) {
    char **line;
    size_t *len, n_lines, bytes = 0, chars = 0;
    if (tokenize_read_corpus(path, NULL, &line, &len, &n_lines) != 0) return -1;
    for (size_t i = 0; i < n_lines; i++) {
        bytes += len[i];
        chars += count_chars(line[i], len[i]);
    }
    tok_ids ids = {0};
    size_t tokens = 0, passes = 0;
    // CPU time of this (single-threaded) process measures one core even on a busy machine; wall time is shown too.
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID), el = 0, cpu = 0;
    int rc = 0;
    do {
        for (size_t i = 0; i < n_lines && rc == 0; i++) {
            ids.n = 0;
            rc = encode_one(t, sp, mode, line[i], len[i], &ids);
            tokens += ids.n;
        }
        passes++;
        el = clock_s(CLOCK_MONOTONIC) - t0;
        cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    } while (rc == 0 && cpu < min_seconds);
    if (rc == 0) {
        double c = (double)chars * (double)passes, b = (double)bytes * (double)passes;
        printf("tokenizer bench: %s, %zu lines, %zu characters, %zu bytes, %zu passes\n",
               sp ? "sentencepiece" : tok_mode_name(mode), n_lines, chars, bytes, passes);
        printf(
            "  %.3f s of CPU (%.3f s wall), %.0f tokens/pass: %.3g characters/s, %.3g MB/s, %.3g tokens/s on one "
            "core\n",
            cpu, el, (double)tokens / (double)passes, c / cpu, b / cpu / 1e6, (double)tokens / cpu);
    }
    for (size_t i = 0; i < n_lines; i++) free(line[i]);
    free(line);
    free(len);
    tok_ids_free(&ids);
    return rc;
}

// One LLaVA sample (a cJSON object) through a template; prints its line unless quiet.
static int run_sample(const prep_config *cfg, const cJSON *s, size_t index, int quiet, prep_stats *stats, strbuf *o) {
    char idbuf[32];
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(s, "id");
    const char *id = cJSON_IsString(jid) ? jid->valuestring : NULL;
    if (!id && cJSON_IsNumber(jid)) {
        snprintf(idbuf, sizeof idbuf, "%.0f", jid->valuedouble);
        id = idbuf;
    }
    if (!id) {
        snprintf(idbuf, sizeof idbuf, "#%zu", index);
        id = idbuf;
    }
    const cJSON *conv = cJSON_GetObjectItemCaseSensitive(s, "conversations");
    if (!cJSON_IsArray(conv)) return llava_fail("sample %s: no \"conversations\" array", id);
    size_t n = (size_t)cJSON_GetArraySize(conv);
    conv_turn *turns = xcalloc(n + 1, sizeof *turns);
    size_t k = 0;
    for (const cJSON *e = conv->child; e; e = e->next, k++) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(e, "from"), *v = cJSON_GetObjectItemCaseSensitive(e, "value");
        if (!cJSON_IsString(f) || !cJSON_IsString(v)) {
            free(turns);
            return llava_fail("sample %s: turn %zu needs string \"from\" and \"value\"", id, k);
        }
        turns[k].from = f->valuestring;
        turns[k].value = v->valuestring;
        turns[k].value_len = strlen(v->valuestring);
    }
    prep_result r;
    int rc = prep_sample(cfg, id, turns, n, cJSON_GetObjectItemCaseSensitive(s, "image") != NULL, &r);
    free(turns);
    if (rc) return -1;
    prep_stats_add(stats, id, &r);
    if (!quiet) {
        o->n = 0;
        sb_puts(o, "{\"id\": ");
        json_string_encode(id, strlen(id), o);
        sb_puts(o, ", \"input_ids\": [");
        for (size_t i = 0; i < r.ids.n; i++) {
            if (i) sb_put(o, ", ", 2);
            sb_int(o, r.ids.v[i]);
        }
        sb_puts(o, "], \"labels\": [");
        for (size_t i = 0; i < r.labels.n; i++) {
            if (i) sb_put(o, ", ", 2);
            sb_int(o, r.labels.v[i]);
        }
        sb_put(o, "]", 1);
        if (r.flags & PREP_TRUNCATED) sb_puts(o, ", \"truncated\": true");
        if (r.flags & PREP_MISMATCH) {
            char b[96];
            int m = snprintf(b, sizeof b, ", \"mismatch\": [%d, %d]", r.cur_len, r.total_len);
            sb_put(o, b, (size_t)m);
        }
        sb_put(o, "}\n", 2);
        fwrite(o->p, 1, o->n, stdout);
    }
    prep_result_free(&r);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    int with_template = 0;
    for (int i = 1; i < argc; i++) with_template |= strcmp(argv[i], "--template") == 0;
    // A tokenizer.json has its own options, but templates and masks are the same for both kinds.
    if (!with_template && tokenize_is_bpe(argc, argv)) return cmd_tokenize_bpe(argc, argv);
    const char *tok_path = NULL, *bench = NULL, *template_name = NULL, *data_path = NULL;
    tok_mode mode = TOK_MODE_DEFAULT;
    int sp = 0, pieces = 0, decode = 0, strict = 0, quiet = 0, max_length = 2048;
    double seconds = 1.0;
    int rc = 0;
    static const char *const FLAGS[] = {"--tokenizer", "--mode",       "--sp",    "--pieces",  "--decode",
                                        "--strict",    "--quiet",      "--bench", "--seconds", "--template",
                                        "--data",      "--max-length", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has_value = i + 1 < argc;
        if (args_is_help(a)) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(a, "--tokenizer") == 0 && has_value) tok_path = argv[++i];
        else if (strcmp(a, "--mode") == 0 && has_value) {
            if (tok_mode_parse(argv[++i], &mode)) {
                fprintf(stderr, "llava tokenize: %s\n", llava_errmsg());
                return 2;
            }
        } else if (strcmp(a, "--sp") == 0) sp = 1;
        else if (strcmp(a, "--pieces") == 0) pieces = 1;
        else if (strcmp(a, "--decode") == 0) decode = 1;
        else if (strcmp(a, "--strict") == 0) strict = 1;
        else if (strcmp(a, "--quiet") == 0) quiet = 1;
        else if (strcmp(a, "--bench") == 0 && has_value) bench = argv[++i];
        else if (strcmp(a, "--seconds") == 0 && has_value) seconds = atof(argv[++i]);
        else if (strcmp(a, "--template") == 0 && has_value) template_name = argv[++i];
        else if (strcmp(a, "--data") == 0 && has_value) data_path = argv[++i];
        else if (strcmp(a, "--max-length") == 0 && has_value) max_length = atoi(argv[++i]);
        else {
            return args_unknown("tokenize", a, FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    if (!tok_path) {
        fprintf(stderr, "llava tokenize: --tokenizer PATH is required\n\n%s", USAGE);
        return 2;
    }
    tokenizer *t = tok_load(tok_path);
    if (!t) {
        fprintf(stderr, "llava tokenize: %s\n", llava_errmsg());
        return 1;
    }
    static char outbuf[1 << 16];
    setvbuf(stdout, outbuf, _IOFBF, sizeof outbuf);
    if (bench) {
        rc = run_bench(t, sp, mode, bench, seconds);
        if (rc) fprintf(stderr, "llava tokenize: %s\n", llava_errmsg());
        tok_free(t);
        return rc ? 1 : 0;
    }
    conv_template *loaded = NULL;
    const conv_template *tmpl = NULL;
    if (template_name) {
        tmpl = conv_template_builtin(template_name);
        if (!tmpl) {
            tmpl = loaded = conv_template_load(template_name);
            if (!tmpl) {
                fprintf(stderr,
                        "llava tokenize: no template \"%s\" (built in: " CONV_TEMPLATE_BUILTINS
                        "; or a JSON file): %s\n",
                        template_name, llava_errmsg());
                tok_free(t);
                return 2;
            }
        }
    }
    prep_config cfg = {.tok = t, .mode = mode, .tmpl = tmpl, .model_max_length = max_length, .strict = strict};
    prep_stats stats = {0};
    strbuf o = {0};
    tok_ids ids = {0};
    if (tmpl && data_path) {
        // LLaVA's own format: one JSON array of samples.
        size_t n;
        char *s = read_file(data_path, (size_t)8 << 30, &n);
        if (!s) {
            rc = -1;
        } else {
            cJSON *arr = cJSON_ParseWithLength(s, n);
            free(s);
            if (!arr || !cJSON_IsArray(arr)) {
                rc = llava_fail("%s: not a JSON array", data_path);
            } else {
                size_t index = 0;
                for (const cJSON *e = arr->child; e && rc == 0; e = e->next, index++)
                    rc = run_sample(&cfg, e, index, quiet, &stats, &o);
            }
            cJSON_Delete(arr);
        }
    } else {
        char *line = NULL;
        size_t cap = 0, lineno = 0;
        ssize_t got;
        while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            size_t n = (size_t)got;
            if (tokenize_is_blank(line, n)) continue;
            if (tmpl) {
                cJSON *s = cJSON_ParseWithLength(line, n);
                if (!s || !cJSON_IsObject(s)) rc = llava_fail("stdin:%zu: not a JSON object", lineno);
                else rc = run_sample(&cfg, s, lineno - 1, quiet, &stats, &o);
                cJSON_Delete(s);
                continue;
            }
            o.n = 0;
            ids.n = 0;
            if (decode) {
                if ((rc = tokenize_parse_ids(line, lineno, &ids)) != 0) break;
                char *text;
                size_t tl;
                if (tok_decode(t, ids.v, ids.n, &text, &tl)) {
                    rc = llava_fail_ctx("stdin:%zu", lineno);
                    break;
                }
                json_string_encode(text, tl, &o);
                free(text);
            } else {
                char *text;
                size_t tl;
                if (json_string_decode(line, n, &text, &tl)) {
                    rc = llava_fail_ctx("stdin:%zu", lineno);
                    break;
                }
                rc = encode_one(t, sp, mode, text, tl, &ids);
                free(text);
                if (rc) {
                    llava_fail_ctx("stdin:%zu", lineno);
                    break;
                }
                for (size_t k = 0; k < ids.n; k++) {
                    if (k) sb_put(&o, " ", 1);
                    if (pieces) {
                        size_t pl;
                        const char *ps = tok_id_to_piece(t, ids.v[k], &pl);
                        sb_piece(&o, ps, pl);
                    } else {
                        sb_int(&o, ids.v[k]);
                    }
                }
            }
            sb_put(&o, "\n", 1);
            fwrite(o.p, 1, o.n, stdout);
        }
        free(line);
    }
    fflush(stdout);
    if (tmpl) {
        fprintf(stderr,
                "llava tokenize: %zu samples, template %s, mode %s: %zu truncated at %d, %zu masked for a tokenization "
                "mismatch",
                stats.samples, tmpl->name, tok_mode_name(mode), stats.truncated, max_length, stats.mismatched);
        for (size_t i = 0; i < stats.n_ids; i++) fprintf(stderr, "%s%s", i ? ", " : ": ", stats.mismatch_ids[i]);
        fprintf(stderr, "\n");
    }
    if (rc) fprintf(stderr, "llava tokenize: %s\n", llava_errmsg());
    prep_stats_free(&stats);
    conv_template_free(loaded);
    tok_ids_free(&ids);
    free(o.p);
    tok_free(t);
    return rc ? 1 : 0;
}
