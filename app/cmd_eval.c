// llava eval: LLaVA-1.5's benchmarks (eval/eval.h), answered and scored as LLaVA's scripts do.
//
//   llava eval --model DIR --benchmark B --data DIR --out RESULTS [--limit N] [generation flags]
//     1. the question file: the benchmark's own (data/<question_file>), or the one its prepare()
//        writes (RESULTS/questions.jsonl), cut to the first N questions with --limit;
//     2. the answers: `llava generate --questions` with the benchmark's image folder and token budget
//        (greedy, vicuna_v1, the model's aspect), written to RESULTS/answers.jsonl in LLaVA's answers
//        format, resumable (a rerun keeps what is answered), with progress and ETA;
//     3. the scores: the benchmark's scorer on those answers, RESULTS/scores.json, and a table with
//        LLaVA-1.5-7B's and -13B's published numbers beside ours.
//   Under mpirun or srun (or with --chunks K --chunk-idx I) each rank answers its contiguous chunk of
//   the questions, as LLaVA's scripts split them (CHUNKS), into RESULTS/answers-K_I.jsonl; the rank
//   with index 0 waits for every chunk, joins them in order into answers.jsonl and scores.
//
//   llava eval score --benchmark B --answers A.jsonl --data DIR [--questions Q.jsonl] [--out DIR]
//     scores any answers file (one from PyTorch LLaVA included) and prints the scores as one JSON
//     object on stdout.
//
//   llava eval list   the benchmarks, their files and published numbers.
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "eval/eval.h"

static const char *KIND_NAMES[] = {"exact", "approximate (the official number comes from a server)",
                                   "submission file only", "judged (answers only without --judge-url)"};

static const char USAGE[] =
    "usage: llava eval --model DIR --benchmark B --data DIR --out RESULTS [--limit N]\n"
    "                  [--chunks K --chunk-idx I] [generation flags]\n"
    "       llava eval score --benchmark B --answers A.jsonl --data DIR [--questions Q.jsonl] [--out DIR]\n"
    "                        [--judge-url URL --judge-model M --judge-rule rule.json]\n"
    "       llava eval list\n"
    "\n"
    "LLaVA-1.5's benchmarks: answers and scores as LLaVA's scripts make them, beside the published numbers.\n"
    "\n"
    "  --model DIR  the model folder (required; as `llava generate --model`)\n"
    "  --benchmark  the benchmark's name (required; `llava eval list` names them and their files)\n"
    "  --data       the benchmark's folder in LLaVA's layout (required; playground/data/eval/<bench>, see\n"
    "               LLaVA's docs/Evaluation.md)\n"
    "  --out        RESULTS/answers.jsonl (LLaVA's answers format: LLaVA's own scripts score it too),\n"
    "               RESULTS/scores.json, and what the scorer writes (submission files) (required)\n"
    "  --limit N    the first N questions only, a quick look; scores of a subset (default 0: all)\n"
    "  --chunks K --chunk-idx I   answer chunk I of K (default: one chunk; automatic under mpirun and srun)\n"
    "  --judge-url URL --judge-model M --judge-rule rule.json   the judged benchmarks (llavabench):\n"
    "               an OpenAI-compatible endpoint (.../v1), never called unless given (default: none, answers\n"
    "               only); the key from LLAVA_JUDGE_API_KEY or OPENAI_API_KEY; the rule file is LLaVA's\n"
    "               llava/eval/table/rule.json\n"
    "  generation flags are `llava generate`'s, with its defaults: --device --max-batch --threads --tokenizer\n"
    "               --template --aspect --mode --model-id --kv-tokens --max-context --window --adapter\n"
    "               --video-frames --ignore-unexpected (greedy always)\n"
    "  score:       --answers A.jsonl (required) scores answers already made; --questions Q.jsonl (default: the\n"
    "               benchmark's own file in --data); --out DIR (default: none, scores printed only)\n";

static int usage(void) {
    fputs(USAGE, stderr);
    return 2;
}

static int list(void) {
    int n;
    const eval_bench *const *b = eval_benches(&n);
    printf("%-12s %-28s %-34s %9s %9s  %s\n", "benchmark", "title", "question file", "7B", "13B", "scoring");
    for (int i = 0; i < n; i++) {
        char p7[16] = "-", p13[16] = "-";
        if (!isnan(b[i]->published_7b)) snprintf(p7, sizeof p7, "%.1f", b[i]->published_7b);
        if (!isnan(b[i]->published_13b)) snprintf(p13, sizeof p13, "%.1f", b[i]->published_13b);
        printf("%-12s %-28s %-34s %9s %9s  %s\n", b[i]->name, b[i]->title,
               b[i]->question_file ? b[i]->question_file : "(built by llava eval)", p7, p13, KIND_NAMES[b[i]->kind]);
    }
    return 0;
}

// The judge's key: LLAVA_JUDGE_API_KEY, else OPENAI_API_KEY (never a flag: it would show in ps).
static const char *judge_key(void) {
    const char *k = getenv("LLAVA_JUDGE_API_KEY");
    return k && *k ? k : getenv("OPENAI_API_KEY");
}

static const eval_bench *find_bench(const char *name) {
    const eval_bench *b = name ? eval_find(name) : NULL;
    if (!b) {
        int n;
        const eval_bench *const *all = eval_benches(&n);
        fprintf(stderr, "llava eval: %s%s%s; the benchmarks are:", name ? "no benchmark \"" : "--benchmark is required",
                name ? name : "", name ? "\"" : "");
        for (int i = 0; i < n; i++) fprintf(stderr, " %s", all[i]->name);
        fprintf(stderr, "\n");
    }
    return b;
}

// A number of the scores object, found by its key anywhere in it (the primary metric may sit in a
// nested object: "all.accuracy"-style keys name the path with dots).
static const cJSON *score_item(const cJSON *s, const char *key) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", key);
    const cJSON *o = s;
    for (char *tok = strtok(buf, "."); tok && o; tok = strtok(NULL, ".")) o = cJSON_GetObjectItemCaseSensitive(o, tok);
    return o;
}

static void print_table(const eval_bench *b, const cJSON *scores, int limited) {
    const cJSON *v = b->primary ? score_item(scores, b->primary) : NULL;
    char ours[32] = "-", p7[16] = "-", p13[16] = "-";
    if (cJSON_IsNumber(v)) snprintf(ours, sizeof ours, "%.2f", v->valuedouble);
    if (!isnan(b->published_7b)) snprintf(p7, sizeof p7, "%.1f", b->published_7b);
    if (!isnan(b->published_13b)) snprintf(p13, sizeof p13, "%.1f", b->published_13b);
    printf("\n%-28s %-24s %10s %14s %15s\n", "benchmark", "metric", "this model", "LLaVA-1.5-7B", "LLaVA-1.5-13B");
    printf("%-28s %-24s %10s %14s %15s\n", b->title, b->primary ? b->primary : "-", ours, p7, p13);
    const cJSON *missing = cJSON_GetObjectItemCaseSensitive(scores, "missing");
    if (cJSON_IsNumber(missing) && missing->valueint > 0)
        printf("  %d question(s) had no answer: counted as wrong (see the errors above)\n", missing->valueint);
    if (limited) printf("  a --limit subset: not comparable with the published numbers\n");
    if (b->kind != EVAL_EXACT) printf("  scoring: %s\n", KIND_NAMES[b->kind]);
}

// The rank and world of a launcher (mpirun, srun), or 0 and 1.
static void launcher_rank(int *rank, int *world) {
    static const char *pairs[][2] = {
        {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"}, {"PMI_RANK", "PMI_SIZE"}, {"SLURM_PROCID", "SLURM_NTASKS"}};
    *rank = 0, *world = 1;
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        const char *r = getenv(pairs[i][0]), *w = getenv(pairs[i][1]);
        if (r && w && atoi(w) > 1) {
            *rank = atoi(r), *world = atoi(w);
            return;
        }
    }
}

// Lines [from, to) of a JSON Lines file (blank lines not counted) into `out`. Returns the number of
// questions in the file, or -1 with an error.
static long copy_lines(const char *in, const char *out, long from, long to) {
    size_t len;
    char *text = read_file(in, (size_t)1 << 34, &len);
    if (!text) return -1;
    size_t cap = len + 1, n = 0;
    char *buf = xmalloc(cap);
    long q = 0;
    for (char *p = text; p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        size_t L = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        size_t k = 0;
        while (k < L && (p[k] == ' ' || p[k] == '\t' || p[k] == '\r')) k++;
        if (k < L) {
            if (q >= from && q < to) {
                memcpy(buf + n, p, L);
                n += L;
                buf[n++] = '\n';
            }
            q++;
        }
        p += L + (nl ? 1 : 0);
    }
    int rc = out ? write_file_atomic(out, buf, n) : 0;
    free(buf);
    free(text);
    return rc == 0 ? q : -1;
}

static int score_and_report(const eval_bench *b, const eval_inputs *in, const char *scores_path, int limited,
                            int json_only) {
    cJSON *s = b->score(in);
    if (!s) {
        fprintf(stderr, "llava eval: %s: %s\n", b->name, llava_errmsg());
        return 1;
    }
    if (limited) cJSON_AddTrueToObject(s, "subset");
    char *text = cJSON_Print(s);
    int rc = 0;
    if (scores_path) {
        size_t n = strlen(text);
        char *t = xmalloc(n + 2);
        memcpy(t, text, n);
        t[n] = '\n';
        rc = write_file_atomic(scores_path, t, n + 1);
        free(t);
        if (rc) fprintf(stderr, "llava eval: %s\n", llava_errmsg());
    }
    if (json_only) {
        char *one = cJSON_PrintUnformatted(s);
        printf("%s\n", one);
        free(one);
    } else {
        print_table(b, s, limited);
        if (scores_path) printf("scores: %s\n", scores_path);
    }
    free(text);
    cJSON_Delete(s);
    return rc ? 1 : 0;
}

static int cmd_score(int argc, char **argv) {
    const char *name = NULL;
    eval_inputs in = {0};
    static const char *const FLAGS[] = {"--benchmark", "--answers",     "--data",       "--questions", "--out",
                                        "--judge-url", "--judge-model", "--judge-rule", "--help"};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (args_is_help(s)) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (i + 1 >= argc) return args_unknown("eval score", s, FLAGS, ARGS_COUNT(FLAGS));
        if (!strcmp(s, "--benchmark")) name = argv[++i];
        else if (!strcmp(s, "--answers")) in.answers = argv[++i];
        else if (!strcmp(s, "--data")) in.data = argv[++i];
        else if (!strcmp(s, "--questions")) in.questions = argv[++i];
        else if (!strcmp(s, "--out")) in.out = argv[++i];
        else if (!strcmp(s, "--judge-url")) in.judge_url = argv[++i];
        else if (!strcmp(s, "--judge-model")) in.judge_model = argv[++i];
        else if (!strcmp(s, "--judge-rule")) in.judge_rule = argv[++i];
        else return args_unknown("eval score", s, FLAGS, ARGS_COUNT(FLAGS));
    }
    const eval_bench *b = find_bench(name);
    if (!b) return 2;
    if (!in.answers || !in.data) {
        fprintf(stderr, "llava eval score: --answers and --data are required\n");
        return 2;
    }
    in.judge_key = judge_key();
    if (in.out && mkdir_p(in.out) != 0) {
        fprintf(stderr, "llava eval score: cannot make %s\n", in.out);
        return 1;
    }
    return score_and_report(b, &in, NULL, 0, 1);
}

int cmd_eval(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "score")) return cmd_score(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "list")) return list();
    const char *name = NULL, *model = NULL, *data = NULL, *out = NULL;
    const char *judge_url = NULL, *judge_model = NULL, *judge_rule = NULL;
    long limit = 0;
    int chunks = 0, chunk_idx = -1;
    // Generation flags pass through to `llava generate`.
    const char *pass[64];
    int n_pass = 0;
    static const char *const FLAGS[] = {"--benchmark",  "--model",
                                        "--data",       "--out",
                                        "--judge-url",  "--judge-model",
                                        "--judge-rule", "--limit",
                                        "--chunks",     "--chunk-idx",
                                        "--device",     "--max-batch",
                                        "--threads",    "--tokenizer",
                                        "--template",   "--aspect",
                                        "--mode",       "--model-id",
                                        "--kv-tokens",  "--max-context",
                                        "--window",     "--ignore-unexpected",
                                        "--adapter",    "--video-frames",
                                        "--help"};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (args_is_help(s)) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (!strcmp(s, "--ignore-unexpected")) {
            pass[n_pass++] = s;
            continue;
        }
        int known = 0;
        for (int k = 0; k < ARGS_COUNT(FLAGS); k++) known |= !strcmp(s, FLAGS[k]);
        if (!known || i + 1 >= argc) return args_unknown("eval", s, FLAGS, ARGS_COUNT(FLAGS));
        const char *v = argv[++i];
        if (!strcmp(s, "--benchmark")) name = v;
        else if (!strcmp(s, "--model")) model = v;
        else if (!strcmp(s, "--data")) data = v;
        else if (!strcmp(s, "--out")) out = v;
        else if (!strcmp(s, "--judge-url")) judge_url = v;
        else if (!strcmp(s, "--judge-model")) judge_model = v;
        else if (!strcmp(s, "--judge-rule")) judge_rule = v;
        else if (!strcmp(s, "--limit") || !strcmp(s, "--chunks") || !strcmp(s, "--chunk-idx")) {
            char *end;
            errno = 0;
            long x = strtol(v, &end, 10);
            if (errno || end == v || *end || x < 0) {
                fprintf(stderr, "llava eval: %s: cannot read \"%s\" as a count\n", s, v);
                return 2;
            }
            if (!strcmp(s, "--limit")) limit = x;
            else if (!strcmp(s, "--chunks")) chunks = (int)x;
            else chunk_idx = (int)x;
        } else if (!strcmp(s, "--device") || !strcmp(s, "--max-batch") || !strcmp(s, "--threads") ||
                   !strcmp(s, "--tokenizer") || !strcmp(s, "--template") || !strcmp(s, "--aspect") ||
                   !strcmp(s, "--mode") || !strcmp(s, "--model-id") || !strcmp(s, "--kv-tokens") ||
                   !strcmp(s, "--max-context") || !strcmp(s, "--window") || !strcmp(s, "--adapter") ||
                   !strcmp(s, "--video-frames")) {
            if (n_pass + 2 > 60) return usage();
            pass[n_pass++] = s;
            pass[n_pass++] = v;
        } else {
            return args_unknown("eval", s, FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    const eval_bench *b = find_bench(name);
    if (!b) return 2;
    if (!model || !data || !out) {
        fprintf(stderr, "llava eval: --model, --data and --out are required\n");
        return usage();
    }
    int rank = 0, world = 1;
    if (chunks > 0) {
        if (chunk_idx < 0 || chunk_idx >= chunks) {
            fprintf(stderr, "llava eval: --chunk-idx must be in [0, %d)\n", chunks);
            return 2;
        }
        rank = chunk_idx, world = chunks;
    } else {
        launcher_rank(&rank, &world);
    }
    if (mkdir_p(out) != 0) {
        fprintf(stderr, "llava eval: cannot make %s: %s\n", out, llava_errmsg());
        return 1;
    }
    eval_inputs in = {.data = data,
                      .out = out,
                      .judge_url = judge_url,
                      .judge_model = judge_model,
                      .judge_rule = judge_rule,
                      .judge_key = judge_key()};
    int rc = 0;
    // 1. The question file.
    char *qfile = NULL, *own = path_join(out, "questions.jsonl");
    // Every rank writes the same file (atomically: a rename), so none waits for another.
    if (b->prepare) {
        if (b->prepare(&in, own, limit) != 0) {
            fprintf(stderr, "llava eval: %s: %s\n", b->name, llava_errmsg());
            rc = 1;
        }
        qfile = xstrdup(own);
    } else {
        char *src = eval_data_file(b, &in, b->question_file);
        if (!src) {
            fprintf(stderr, "llava eval: %s\n", llava_errmsg());
            rc = 1;
        } else if (limit > 0) {
            if (copy_lines(src, own, 0, limit) < 0) {
                fprintf(stderr, "llava eval: %s\n", llava_errmsg());
                rc = 1;
            }
            qfile = xstrdup(own);
        } else {
            qfile = xstrdup(src);
        }
        free(src);
    }
    free(own);
    char *image_folder = b->image_folder ? path_join(data, b->image_folder) : xstrdup(out);
    char *answers = path_join(out, "answers.jsonl"), *scores = path_join(out, "scores.json");
    // 2. The answers: this rank's chunk.
    char *mine = answers;
    char *chunk_q = NULL;
    if (rc == 0 && world > 1) {
        long nq = copy_lines(qfile, NULL, 0, 0);
        long size = (nq + world - 1) / world;  // LLaVA's get_chunk: ceil(n / K) per chunk, in order
        char name_q[64], name_a[64];
        snprintf(name_q, sizeof name_q, "questions-%d_%d.jsonl", world, rank);
        snprintf(name_a, sizeof name_a, "answers-%d_%d.jsonl", world, rank);
        chunk_q = path_join(out, name_q);
        mine = path_join(out, name_a);
        char done_name[64];  // this chunk's "answered" mark, from an earlier run, is not this run's
        snprintf(done_name, sizeof done_name, ".answers-%d_%d.done", world, rank);
        char *done = path_join(out, done_name);
        unlink(done);
        free(done);
        if (nq < 0 || copy_lines(qfile, chunk_q, size * rank, size * (rank + 1)) < 0) {
            fprintf(stderr, "llava eval: %s\n", llava_errmsg());
            rc = 1;
        }
    }
    int gen_rc = 0;
    if (rc == 0) {
        char budget[16];
        snprintf(budget, sizeof budget, "%d", b->max_new_tokens);
        const char *gv[96];
        int gc = 0;
        gv[gc++] = "generate";
        gv[gc++] = "--model", gv[gc++] = model;
        gv[gc++] = "--questions", gv[gc++] = chunk_q ? chunk_q : qfile;
        gv[gc++] = "--image-folder", gv[gc++] = image_folder;
        gv[gc++] = "--answers", gv[gc++] = mine;
        gv[gc++] = "--max-new-tokens", gv[gc++] = budget;
        gv[gc++] = "--temperature", gv[gc++] = "0";
        for (int i = 0; i < n_pass; i++) gv[gc++] = pass[i];
        gv[gc] = NULL;
        fprintf(stderr, "llava eval: %s (%s): answering %s\n", b->title, b->name, chunk_q ? chunk_q : qfile);
        gen_rc = cmd_generate(gc, (char **)gv);
        // 3: some questions failed (a missing image): answered the rest; the scorer counts them.
        if (gen_rc != 0 && gen_rc != 3) rc = gen_rc;
    }
    if (rc == 0 && world > 1) {
        char done_name[64];
        snprintf(done_name, sizeof done_name, ".answers-%d_%d.done", world, rank);
        char *done = path_join(out, done_name);
        rc = write_file_atomic(done, "", 0);
        free(done);
        if (rank == 0) {  // every chunk, in order, into answers.jsonl
            for (int k = 0; k < world && rc == 0; k++) {
                snprintf(done_name, sizeof done_name, ".answers-%d_%d.done", world, k);
                done = path_join(out, done_name);
                for (int waited = 0; !file_exists(done); waited++) {  // as long as the chunk takes
                    if (waited % 600 == 0)
                        fprintf(stderr, "llava eval: waiting for chunk %d of %d (%s)\n", k, world, done);
                    sleep(1);
                }
                free(done);
            }
            size_t cap = 1 << 20, n = 0;
            char *all = xmalloc(cap);
            for (int k = 0; k < world && rc == 0; k++) {
                char name_a[64];
                snprintf(name_a, sizeof name_a, "answers-%d_%d.jsonl", world, k);
                char *p = path_join(out, name_a);
                size_t len = 0;
                char *t = read_file(p, (size_t)1 << 34, &len);
                if (!t) rc = 1;
                while (t && n + len + 1 > cap) all = xrealloc(all, cap *= 2);
                if (t) memcpy(all + n, t, len), n += len;
                free(t);
                free(p);
            }
            if (rc == 0) rc = write_file_atomic(answers, all, n);
            free(all);
            if (rc) fprintf(stderr, "llava eval: %s\n", llava_errmsg());
        }
    }
    // 3. The scores (rank 0).
    if (rc == 0 && rank == 0) {
        in.answers = answers;
        in.questions = qfile;
        rc = score_and_report(b, &in, scores, limit > 0, 0);
        if (rc == 0) printf("answers: %s\n", answers);
    }
    if (mine != answers) free(mine);
    free(chunk_q);
    free(qfile);
    free(image_folder);
    free(answers);
    free(scores);
    return rc ? rc : (gen_rc == 3 ? 3 : 0);
}
