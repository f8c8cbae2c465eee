// llava sweep SWEEP.json [--dry-run] [--keep-going] [--quiet]
//
// Research ablations: one preset (or a chain of stages), several variants of it that differ in
// `--set` overrides, each trained one after another in this process, optionally evaluated, and one
// table of the results (docs/sweep.md).
//
//   1. The sweep file is read and every variant's configuration resolved for every stage exactly as
//      `llava train PRESET --set k=v ...` resolves it (settings_load: the preset and its bases, each
//      override, the schema's checks), with checkpoint.output_dir set to OUT/<variant> (and
//      OUT/<variant>/<stage> with "stages"). Any unknown key or bad value in any variant stops the
//      sweep here, naming the variant and the key, before anything trains.
//   2. Each variant whose OUT/<variant>/result.json is complete is skipped ("done"). Every other one
//      trains through train_run_settings with resume on: an interrupted variant continues from the
//      newest complete checkpoint in its output folder, a finished stage trains nothing. Then, when
//      the sweep names one, `llava eval` (cmd_eval, in-process) on the last stage's exported model.
//   3. After each variant OUT/sweep.json (every row, machine-readable) and OUT/sweep.md (the same rows
//      as a markdown table) are written again.
//
// Under mpirun (MPI's launchers) with W ranks, each rank is a group of one process: rank r trains the variants
// i with i % W == r, each on its own process as above, and rank 0 alone writes the tables (re-reading the other
// ranks' finished variants from their folders) and, once every rank is through, the final ones.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "eval/eval.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/dist/dist.h"
#include "train/memplan.h"
#include "train/runlock.h"
#include "train/settings.h"
#include "train/trainer.h"

static const char USAGE[] =
    "usage: llava sweep SWEEP.json [--dry-run] [--keep-going] [--quiet]\n"
    "\n"
    "Trains the variants of a preset one after another (each exactly as `llava train PRESET --set k=v ...`\n"
    "would), evaluates each when the sweep names a benchmark, and writes OUT/sweep.json and OUT/sweep.md: per\n"
    "variant its overrides, final training loss, tokens/s, memory plan per device, wall time and scores.\n"
    "Every variant's configuration is checked before anything trains (an unknown key or a bad value names the\n"
    "variant and the key). A rerun skips the variants whose OUT/<variant>/result.json is complete (\"done\") and\n"
    "resumes an interrupted one from its newest checkpoint. docs/sweep.md describes the file:\n"
    "\n"
    "  {\"base\": \"PRESET.json\", \"out\": \"DIR\", \"set\": {...},\n"
    "   \"variants\": [{\"name\": \"lr1e-4\", \"set\": {\"train.learning_rate\": 1e-4}}, ...],\n"
    "   \"grid\": {\"train.learning_rate\": [1e-4, 2e-5], \"train.num_train_epochs\": [1, 2]},\n"
    "   \"stages\": [{\"name\": \"stage1\", \"preset\": \"s1.json\"}, {\"name\": \"stage2\", \"preset\": \"s2.json\",\n"
    "               \"set\": {\"model.pretrain_mm_mlp_adapter\": \"{prev}/mm_projector.safetensors\"}}],\n"
    "   \"eval\": {\"benchmark\": \"demo\", \"data\": \"DIR\", \"tokenizer\": \"PATH\", \"limit\": 100}}\n"
    "\n"
    "  SWEEP.json    the sweep (required). \"base\", stage presets, \"out\" and eval paths resolve against its\n"
    "                folder; paths inside \"set\" values are preset values and resolve as presets' do (the\n"
    "                working folder). \"out\" defaults to <its folder>/sweep-<name>, name: the file's name\n"
    "  --dry-run     resolve and check every variant, print each one's overrides and memory plan, train\n"
    "                nothing (default: off)\n"
    "  --keep-going  after a variant fails, go on with the next (default: off, the sweep stops there)\n"
    "  --quiet       no training progress lines (default: off)\n"
    "\n"
    "Under mpirun (or srun with MPI) with N ranks the variants are dealt out: rank r trains variants r, r + N,\n"
    "r + 2N, ... each on its own process, and rank 0 writes the tables, the last once every rank is through\n"
    "(--keep-going then applies per rank). One variant is not spread over several ranks: run its preset with\n"
    "`mpirun llava train` for that. torchrun-style variables without MPI are refused (the CPU needs MPI).\n"
    "\n"
    "Exit status: 0 every variant complete (or --dry-run checked); 1 a variant failed or the sweep is invalid;\n"
    "2 usage error; 75 a signal stopped a variant after its checkpoint (run the sweep again to continue).\n";

// ---------------------------------------------------------------------------------------------
// Small pieces

typedef struct {
    char **v;
    int n, cap;
} strlist;

static void sl_add(strlist *l, char *s) {  // takes s
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = xrealloc(l->v, sizeof(char *) * (size_t)l->cap);
    }
    l->v[l->n++] = s;
}

static void sl_free(strlist *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// A path the sweep file names: absolute as it is, else against the sweep file's folder; made
// absolute (the variants' output folders go into presets, whose paths resolve against the working
// folder).
static char *sweep_path(const char *dir, const char *p) {
    char *j = p[0] == '/' ? xstrdup(p) : path_join(dir, p);
    char *abs = cfg_abs_path(j);
    free(j);
    return abs;
}

// A variant's or a stage's name becomes a folder name: letters, digits and . _ = + , : - only, not
// starting with a dot.
static int name_char_ok(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._=+,:-", c);
}

static int name_ok(const char *n) {
    if (!n[0] || n[0] == '.' || strlen(n) > 200) return 0;
    for (const char *c = n; *c; c++)
        if (!name_char_ok(*c)) return 0;
    return 1;
}

// A JSON value as the text of a `--set key=value`: a string as it is (cfg_set reads strings, enums
// and comma-separated lists unquoted), anything else as JSON.
static char *value_text(const cJSON *v) {
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    char *j = cJSON_PrintUnformatted(v);
    char *out = xstrdup(j ? j : "null");
    free(j);
    return out;
}

// The key of an assignment "KEY=VALUE" (or "STAGE:KEY=VALUE"): [*k, *k + *klen); the stage prefix
// [*st, *st + *stlen) (length 0: none).
static void split_assign(const char *a, const char **st, size_t *stlen, const char **k, size_t *klen) {
    const char *eq = strchr(a, '=');
    size_t n = eq ? (size_t)(eq - a) : strlen(a);
    const char *colon = memchr(a, ':', n);
    *st = a, *stlen = colon ? (size_t)(colon - a) : 0;
    *k = colon ? colon + 1 : a;
    *klen = (size_t)(a + n - *k);
}

// ---------------------------------------------------------------------------------------------
// The sweep file

typedef struct {
    char *name;
    char *preset;  // absolute
    strlist sets;
} stage_def;

typedef struct {
    char *name;
    strlist sets;  // the variant's own overrides, as given ("KEY=VALUE" or "STAGE:KEY=VALUE")
    char *dir;     // OUT/<name>
    char **out;    // per stage: checkpoint.output_dir
    run_settings *s;
    int *have_s;
    uint64_t *plan;  // per stage: `llava plan --world 1`'s total (0: known once the stages before it ran)
    cJSON *row;      // the row of sweep.json
    int rerecord;    // variant.json records another configuration that left nothing behind: rewrite it
} variant;

typedef struct {
    char *file, *dir, *name, *out;
    int staged;  // "stages" given: OUT/<variant>/<stage>/ per stage
    stage_def *st;
    int n_st;
    strlist sets;  // "set" of the whole sweep
    variant *v;
    int n_v;
    // "eval"
    const eval_bench *bench;
    char *eval_data;
    strlist eval_args;                                          // further flags of `llava eval`, with their values
    int eval_tokenizer, eval_template, eval_device, eval_mode;  // given in the file
} sweep;

// "set": {"key": value, "section": {"key": value}} or ["key=value", ...], appended to *out.
static int read_sets(const cJSON *set, const char *prefix, const char *where, strlist *out) {
    if (!set || cJSON_IsNull(set)) return 0;
    if (cJSON_IsArray(set) && !prefix[0]) {
        for (const cJSON *e = set->child; e; e = e->next) {
            if (!cJSON_IsString(e) || !strchr(e->valuestring, '=') || e->valuestring[0] == '=')
                return llava_fail("%s: \"set\" items must be \"key=value\" strings", where);
            sl_add(out, xstrdup(e->valuestring));
        }
        return 0;
    }
    if (!cJSON_IsObject(set))
        return llava_fail("%s: \"set\" must be an object {\"key\": value} or a list [\"key=value\", ...]", where);
    for (const cJSON *e = set->child; e; e = e->next) {
        char *key = prefix[0] ? xasprintf("%s.%s", prefix, e->string) : xstrdup(e->string);
        int rc = 0;
        if (cJSON_IsObject(e)) rc = read_sets(e, key, where, out);
        else {
            char *t = value_text(e);
            sl_add(out, xasprintf("%s=%s", key, t));
            free(t);
        }
        free(key);
        if (rc) return rc;
    }
    return 0;
}

static void variant_init(variant *v, int n_st, char *name) {
    memset(v, 0, sizeof *v);
    v->name = name;
    v->out = xcalloc((size_t)n_st, sizeof *v->out);
    v->s = xcalloc((size_t)n_st, sizeof *v->s);
    v->have_s = xcalloc((size_t)n_st, sizeof *v->have_s);
    v->plan = xcalloc((size_t)n_st, sizeof *v->plan);
}

static variant *add_variant(sweep *sw, char *name) {
    sw->v = xrealloc(sw->v, sizeof *sw->v * (size_t)(sw->n_v + 1));
    variant *v = &sw->v[sw->n_v++];
    variant_init(v, sw->n_st, name);
    return v;
}

// "grid": {"key": [v1, v2], ...}: the product, the first key varying slowest, each combination a
// variant named key=value_key=value (characters a folder name cannot hold become '-').
static int expand_grid(sweep *sw, const cJSON *grid) {
    if (!cJSON_IsObject(grid)) return llava_fail("%s: \"grid\" must be an object {\"key\": [values]}", sw->file);
    int nk = cJSON_GetArraySize(grid);
    if (nk == 0) return 0;
    const cJSON **keys = xcalloc((size_t)nk, sizeof *keys);
    int *idx = xcalloc((size_t)nk, sizeof *idx), k = 0;
    long total = 1;
    int rc = 0;
    for (const cJSON *e = grid->child; e; e = e->next, k++) {
        keys[k] = e;
        if (!cJSON_IsArray(e) || cJSON_GetArraySize(e) == 0)
            rc = llava_fail("%s: grid \"%s\" must be a non-empty list of values", sw->file, e->string);
        for (const cJSON *x = rc ? NULL : e->child; x; x = x->next)
            if (cJSON_IsObject(x) || cJSON_IsArray(x))
                rc = llava_fail("%s: grid \"%s\": values must be numbers, strings, booleans or null", sw->file,
                                e->string);
        if (rc) break;
        total *= cJSON_GetArraySize(e);
        if (total > 10000) rc = llava_fail("%s: the grid makes more than 10000 variants", sw->file);
        if (rc) break;
    }
    for (long c = 0; c < total && rc == 0; c++) {
        size_t cap = 256, len = 0;
        char *name = xcalloc(cap, 1);
        strlist sets = {0};
        for (k = 0; k < nk; k++) {
            char *t = value_text(cJSON_GetArrayItem(keys[k], idx[k]));
            char *a = xasprintf("%s=%s", keys[k]->string, t);
            size_t n = strlen(a);
            while (len + n + 2 > cap) name = xrealloc(name, cap *= 2);
            if (k) name[len++] = '_';
            for (size_t i = 0; i < n; i++) name[len++] = name_char_ok(a[i]) ? a[i] : '-';
            name[len] = 0;
            sl_add(&sets, a);
            free(t);
        }
        variant *v = add_variant(sw, name);
        v->sets = sets;
        for (k = nk - 1; k >= 0; k--) {  // the next combination
            if (++idx[k] < cJSON_GetArraySize(keys[k])) break;
            idx[k] = 0;
        }
    }
    free(keys);
    free(idx);
    return rc;
}

// The flags of `llava eval` a sweep's "eval" may give (besides benchmark and data), and which of them
// name files (resolved against the sweep file's folder).
static const char *const EVAL_KEYS[] = {"tokenizer",   "template",         "device",  "limit",     "max-batch",
                                        "threads",     "aspect",           "mode",    "model-id",  "kv-tokens",
                                        "max-context", "window",           "adapter", "judge-url", "judge-model",
                                        "judge-rule",  "ignore-unexpected"};
static int eval_key_is_path(const char *k) {
    return !strcmp(k, "tokenizer") || !strcmp(k, "adapter") || !strcmp(k, "judge-rule");
}

static int read_eval(sweep *sw, const cJSON *ev) {
    if (!cJSON_IsObject(ev)) return llava_fail("%s: \"eval\" must be an object", sw->file);
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(ev, "benchmark"),
                *d = cJSON_GetObjectItemCaseSensitive(ev, "data");
    if (!cJSON_IsString(b) || !cJSON_IsString(d))
        return llava_fail("%s: \"eval\" needs \"benchmark\" and \"data\" (strings: `llava eval list` names them)",
                          sw->file);
    sw->bench = eval_find(b->valuestring);
    if (!sw->bench) return llava_fail("%s: eval: no benchmark \"%s\" (`llava eval list`)", sw->file, b->valuestring);
    sw->eval_data = sweep_path(sw->dir, d->valuestring);
    if (!dir_exists(sw->eval_data))
        return llava_fail("%s: eval \"data\" %s: no such folder (it resolves against the sweep file's folder)",
                          sw->file, sw->eval_data);
    for (const cJSON *e = ev->child; e; e = e->next) {
        if (!strcmp(e->string, "benchmark") || !strcmp(e->string, "data") || e->string[0] == '_') continue;
        int known = 0;
        for (int i = 0; i < ARGS_COUNT(EVAL_KEYS) && !known; i++) known = !strcmp(e->string, EVAL_KEYS[i]);
        if (!known) {
            const char *s = args_suggest(e->string, EVAL_KEYS, ARGS_COUNT(EVAL_KEYS));
            return llava_fail("%s: eval: unknown key \"%s\"%s%s%s (the flags of `llava eval`, without --)", sw->file,
                              e->string, s ? " (did you mean \"" : "", s ? s : "", s ? "\"?)" : "");
        }
        if (!strcmp(e->string, "ignore-unexpected")) {
            if (!cJSON_IsBool(e)) return llava_fail("%s: eval \"ignore-unexpected\" must be true or false", sw->file);
            if (cJSON_IsTrue(e)) sl_add(&sw->eval_args, xstrdup("--ignore-unexpected"));
            continue;
        }
        if (!cJSON_IsString(e) && !cJSON_IsNumber(e))
            return llava_fail("%s: eval \"%s\" must be a string or a number", sw->file, e->string);
        sl_add(&sw->eval_args, xasprintf("--%s", e->string));
        char *t = value_text(e);
        if (eval_key_is_path(e->string)) {
            char *p = sweep_path(sw->dir, t);
            free(t);
            t = p;
        }
        sl_add(&sw->eval_args, t);
        sw->eval_tokenizer |= !strcmp(e->string, "tokenizer");
        sw->eval_template |= !strcmp(e->string, "template");
        sw->eval_device |= !strcmp(e->string, "device");
        sw->eval_mode |= !strcmp(e->string, "mode");
    }
    return 0;
}

static int sweep_read(sweep *sw, const char *file) {
    memset(sw, 0, sizeof *sw);
    sw->file = xstrdup(file);
    sw->dir = path_dirname(file);
    size_t len;
    if (!file_exists(file)) return cfg_fail_missing("sweep file", file);
    char *text = read_file(file, 4u << 20, &len);
    if (!text) return -1;
    cJSON *j = cJSON_ParseWithLength(text, len);
    free(text);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return llava_fail("%s: not a JSON object", file);
    }
    static const char *const TOP[] = {"name", "base", "out", "set", "variants", "grid", "eval", "stages"};
    int rc = 0;
    for (const cJSON *e = j->child; e && rc == 0; e = e->next) {
        int known = e->string[0] == '_';  // a comment
        for (int i = 0; i < ARGS_COUNT(TOP) && !known; i++) known = !strcmp(e->string, TOP[i]);
        if (!known)
            rc = llava_fail("%s: unknown key \"%s\" (a sweep has %s)", file, e->string,
                            "name, base, out, set, variants, grid, eval, stages");
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name"),
                *base = cJSON_GetObjectItemCaseSensitive(j, "base"), *out = cJSON_GetObjectItemCaseSensitive(j, "out"),
                *stages = cJSON_GetObjectItemCaseSensitive(j, "stages");
    // The name: given, else the file's name without ".json".
    if (rc == 0 && name && (!cJSON_IsString(name) || !name_ok(name->valuestring)))
        rc = llava_fail("%s: \"name\" must be a string of letters, digits and . _ = + , : -", file);
    if (rc == 0) {
        if (name) sw->name = xstrdup(name->valuestring);
        else {
            const char *b = strrchr(file, '/');
            sw->name = xstrdup(b ? b + 1 : file);
            size_t n = strlen(sw->name);
            if (n > 5 && !strcmp(sw->name + n - 5, ".json")) sw->name[n - 5] = 0;
        }
    }
    if (rc == 0 && out && !cJSON_IsString(out)) rc = llava_fail("%s: \"out\" must be a folder name", file);
    if (rc == 0) {
        char *dflt = xasprintf("sweep-%s", sw->name);
        sw->out = sweep_path(sw->dir, out ? out->valuestring : dflt);
        free(dflt);
    }
    // The stages: "stages", or the one preset "base".
    if (rc == 0 && base && !cJSON_IsString(base)) rc = llava_fail("%s: \"base\" must be a preset file name", file);
    if (rc == 0 && stages) {
        if (!cJSON_IsArray(stages) || cJSON_GetArraySize(stages) == 0)
            rc = llava_fail("%s: \"stages\" must be a non-empty list", file);
        sw->staged = 1;
        sw->n_st = rc ? 0 : cJSON_GetArraySize(stages);
        sw->st = xcalloc((size_t)(sw->n_st ? sw->n_st : 1), sizeof *sw->st);
        int k = 0;
        for (const cJSON *e = rc ? NULL : stages->child; e && rc == 0; e = e->next, k++) {
            stage_def *st = &sw->st[k];
            char where[64];
            snprintf(where, sizeof where, "%s: stage %d", file, k + 1);
            const cJSON *sn = cJSON_GetObjectItemCaseSensitive(e, "name"),
                        *sp = cJSON_GetObjectItemCaseSensitive(e, "preset");
            if (!cJSON_IsObject(e)) {
                rc = llava_fail("%s: must be an object {\"name\", \"preset\", \"set\"}", where);
                break;
            }
            for (const cJSON *x = e->child; x && rc == 0; x = x->next)
                if (x->string[0] != '_' && strcmp(x->string, "name") && strcmp(x->string, "preset") &&
                    strcmp(x->string, "set"))
                    rc = llava_fail("%s: unknown key \"%s\" (a stage has name, preset, set)", where, x->string);
            if (rc == 0 && sn && (!cJSON_IsString(sn) || !name_ok(sn->valuestring) || strchr(sn->valuestring, ':')))
                rc = llava_fail("%s: \"name\" must be a string of letters, digits and . _ = + , -", where);
            if (rc == 0 && sp && !cJSON_IsString(sp)) rc = llava_fail("%s: \"preset\" must be a file name", where);
            if (rc == 0 && !sp && !base) rc = llava_fail("%s: no \"preset\" (and the sweep has no \"base\")", where);
            if (rc) break;
            st->name = sn ? xstrdup(sn->valuestring) : xasprintf("stage%d", k + 1);
            st->preset = sweep_path(sw->dir, sp ? sp->valuestring : base->valuestring);
            rc = read_sets(cJSON_GetObjectItemCaseSensitive(e, "set"), "", where, &st->sets);
            for (int i = 0; i < k && rc == 0; i++)
                if (!strcmp(sw->st[i].name, st->name))
                    rc = llava_fail("%s: a second stage named \"%s\"", where, st->name);
        }
    } else if (rc == 0) {
        if (!base) rc = llava_fail("%s: no \"base\" preset (nor \"stages\")", file);
        sw->n_st = 1;
        sw->st = xcalloc(1, sizeof *sw->st);
        if (rc == 0) {
            sw->st[0].name = xstrdup("train");
            sw->st[0].preset = sweep_path(sw->dir, base->valuestring);
        }
    }
    for (int k = 0; k < sw->n_st && rc == 0; k++)
        if (!file_exists(sw->st[k].preset))
            rc = llava_fail("%s: preset %s: no such file (presets resolve against the sweep file's folder)", file,
                            sw->st[k].preset);
    if (rc == 0) rc = read_sets(cJSON_GetObjectItemCaseSensitive(j, "set"), "", file, &sw->sets);
    // The variants, then the grid's.
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(j, "variants"),
                *grid = cJSON_GetObjectItemCaseSensitive(j, "grid");
    if (rc == 0 && vs && !cJSON_IsArray(vs)) rc = llava_fail("%s: \"variants\" must be a list", file);
    int k = 0;
    for (const cJSON *e = rc == 0 && vs ? vs->child : NULL; e && rc == 0; e = e->next, k++) {
        const cJSON *vn = cJSON_GetObjectItemCaseSensitive(e, "name");
        if (!cJSON_IsObject(e) || !cJSON_IsString(vn)) {
            rc = llava_fail("%s: variant %d: must be an object with a \"name\" and a \"set\"", file, k + 1);
            break;
        }
        for (const cJSON *x = e->child; x && rc == 0; x = x->next)
            if (x->string[0] != '_' && strcmp(x->string, "name") && strcmp(x->string, "set"))
                rc = llava_fail("%s: variant \"%s\": unknown key \"%s\" (a variant has name, set)", file,
                                vn->valuestring, x->string);
        if (rc) break;
        variant *v = add_variant(sw, xstrdup(vn->valuestring));
        char where[256];
        snprintf(where, sizeof where, "%s: variant \"%.200s\"", file, v->name);
        rc = read_sets(cJSON_GetObjectItemCaseSensitive(e, "set"), "", where, &v->sets);
    }
    if (rc == 0 && grid) rc = expand_grid(sw, grid);
    if (rc == 0 && sw->n_v == 0) rc = llava_fail("%s: no variants (give \"variants\" or \"grid\")", file);
    for (int i = 0; i < sw->n_v && rc == 0; i++) {
        variant *v = &sw->v[i];
        if (!name_ok(v->name))
            rc = llava_fail(
                "%s: variant \"%s\": a name is a folder name: letters, digits and . _ = + , : - only, "
                "not starting with a dot",
                file, v->name);
        for (int p = 0; p < i && rc == 0; p++)
            if (!strcmp(sw->v[p].name, v->name)) rc = llava_fail("%s: two variants named \"%s\"", file, v->name);
        if (rc) break;
        v->dir = path_join(sw->out, v->name);
        for (int s = 0; s < sw->n_st; s++) v->out[s] = sw->staged ? path_join(v->dir, sw->st[s].name) : xstrdup(v->dir);
    }
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "eval");
    if (rc == 0 && ev) rc = read_eval(sw, ev);
    cJSON_Delete(j);
    return rc;
}

static void sweep_free(sweep *sw) {
    for (int i = 0; i < sw->n_v; i++) {
        variant *v = &sw->v[i];
        for (int s = 0; s < sw->n_st; s++) {
            if (v->have_s && v->have_s[s]) settings_free(&v->s[s]);
            if (v->out) free(v->out[s]);
        }
        free(v->name), free(v->dir), free(v->out), free(v->s), free(v->have_s), free(v->plan);
        sl_free(&v->sets);
        cJSON_Delete(v->row);
    }
    free(sw->v);
    for (int s = 0; s < sw->n_st; s++) {
        free(sw->st[s].name), free(sw->st[s].preset);
        sl_free(&sw->st[s].sets);
    }
    free(sw->st);
    sl_free(&sw->sets);
    sl_free(&sw->eval_args);
    free(sw->file), free(sw->dir), free(sw->name), free(sw->out), free(sw->eval_data);
}

// ---------------------------------------------------------------------------------------------
// Resolving a variant

// The assignment with its placeholders replaced: {variant} the variant's folder, {prev} the output
// folder of the stage before, {stage:NAME} that of stage NAME (an earlier one). *used: whether any
// was there.
static char *expand(const sweep *sw, const variant *v, int stage, const char *a, int *used) {
    size_t cap = strlen(a) + 64, n = 0;
    char *out = xmalloc(cap);
    for (const char *p = a; *p;) {
        const char *rep = NULL;
        size_t skip = 0;
        if (!strncmp(p, "{prev}", 6)) {
            if (stage == 0) {
                free(out);
                llava_fail("%s: {prev} in the first stage (there is no stage before it)", a);
                return NULL;
            }
            rep = v->out[stage - 1], skip = 6;
        } else if (!strncmp(p, "{variant}", 9)) {
            rep = v->dir, skip = 9;
        } else if (!strncmp(p, "{stage:", 7)) {
            const char *end = strchr(p, '}');
            int found = -1;
            for (int s = 0; end && s < sw->n_st; s++)
                if (strlen(sw->st[s].name) == (size_t)(end - p - 7) &&
                    !strncmp(p + 7, sw->st[s].name, (size_t)(end - p - 7)))
                    found = s;
            if (found < 0 || found >= stage) {
                free(out);
                llava_fail("%s: %.*s names no earlier stage", a, end ? (int)(end - p + 1) : 7, p);
                return NULL;
            }
            rep = v->out[found], skip = (size_t)(end - p + 1);
        }
        const char *src = rep ? rep : p;
        size_t m = rep ? strlen(rep) : 1;
        while (n + m + 1 > cap) out = xrealloc(out, cap *= 2);
        memcpy(out + n, src, m);
        n += m;
        p += rep ? skip : 1;
        if (rep) *used = 1;
    }
    out[n] = 0;
    return out;
}

// The overrides of stage k of variant v, in order: the sweep's "set", the stage's, the variant's
// (each entry without a stage prefix, or with this stage's), then checkpoint.output_dir.
static int stage_sets(const sweep *sw, const variant *v, int k, strlist *out, int *used) {
    const strlist *lists[3] = {&sw->sets, &sw->st[k].sets, &v->sets};
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < lists[l]->n; i++) {
            const char *a = lists[l]->v[i], *st, *key;
            size_t stlen, klen;
            split_assign(a, &st, &stlen, &key, &klen);
            if (stlen) {
                int found = 0;
                for (int s = 0; s < sw->n_st; s++)
                    found |= sw->staged && strlen(sw->st[s].name) == stlen && !strncmp(sw->st[s].name, st, stlen);
                if (!found)
                    return llava_fail("\"%s\": %s \"%.*s\"", a,
                                      sw->staged ? "no stage named" : "a stage prefix needs \"stages\"; no stage",
                                      (int)stlen, st);
                if (l == 1) return llava_fail("\"%s\": a stage's own \"set\" takes no stage prefix", a);
                if (strlen(sw->st[k].name) != stlen || strncmp(sw->st[k].name, st, stlen)) continue;
            }
            if (klen == strlen("checkpoint.output_dir") && !strncmp(key, "checkpoint.output_dir", klen))
                return llava_fail("\"%s\": the sweep sets checkpoint.output_dir (OUT/<variant>%s)", a,
                                  sw->staged ? "/<stage>" : "");
            char *e = expand(sw, v, k, key, used);
            if (!e) return -1;
            sl_add(out, e);
        }
    sl_add(out, xasprintf("checkpoint.output_dir=%s", v->out[k]));
    return 0;
}

// A dotted key's value in a resolved configuration's JSON.
static const cJSON *dotted(const cJSON *root, const char *key) {
    char buf[160];
    snprintf(buf, sizeof buf, "%s", key);
    const cJSON *o = root;
    for (char *save = NULL, *t = strtok_r(buf, ".", &save); t && o; t = strtok_r(NULL, ".", &save))
        o = cJSON_GetObjectItemCaseSensitive(o, t);
    return o;
}

// The first key (of the schema) whose value differs between a recorded configuration and the
// current one, or NULL; a key the recorded one lacks (a newer build's) compares as its default.
static const char *config_diff(const cJSON *was, const cJSON *now, char **was_text, char **now_text) {
    for (int i = 0; i < CFG_SCHEMA_LEN; i++) {
        const char *key = CFG_SCHEMA[i].key;
        if (!strcmp(key, "checkpoint.output_dir")) continue;  // the folder's place, not the run
        const cJSON *a = dotted(was, key), *b = dotted(now, key);
        cJSON *dflt = a ? NULL : cJSON_Parse(CFG_SCHEMA[i].def);
        if (!a) a = dflt;
        int same = (!a && !b) || (a && b && cJSON_Compare(a, b, 1));
        if (!same) {
            *was_text = a ? cJSON_PrintUnformatted(a) : xstrdup("(none)");
            *now_text = b ? cJSON_PrintUnformatted(b) : xstrdup("(none)");
        }
        cJSON_Delete(dflt);
        if (!same) return key;
    }
    return NULL;
}

// Whether a variant's folder holds anything a run would continue from or report: a result or a checkpoint.
static int trained_before(const sweep *sw, const variant *v) {
    char *p = path_join(v->dir, "result.json");
    int found = file_exists(p);
    free(p);
    for (int k = 0; k < sw->n_st && !found; k++) {
        char *c = ckpt_latest(v->out[k]);
        found = c != NULL;
        free(c);
    }
    return found;
}

// OUT/<variant>/variant.json, written before a variant first trains, records what it trains; a
// variant whose configuration has changed since is refused (its checkpoints and results are another
// run's).
static int check_recorded(const sweep *sw, variant *v) {
    char *p = path_join(v->dir, "variant.json");
    int rc = 0;
    if (file_exists(p)) {
        size_t len;
        char *text = read_file(p, 64u << 20, &len);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        const cJSON *stages = cJSON_GetObjectItemCaseSensitive(j, "stages");
        if (!cJSON_IsArray(stages)) {
            rc = llava_fail("variant \"%s\": %s is not a sweep's record (delete it, or the folder, to run again)",
                            v->name, p);
        } else if (cJSON_GetArraySize(stages) != sw->n_st) {
            rc = llava_fail("variant \"%s\": %s records %d stage(s), the sweep now has %d: delete %s to run it again",
                            v->name, p, cJSON_GetArraySize(stages), sw->n_st, v->dir);
        }
        for (int k = 0; k < sw->n_st && rc == 0; k++) {
            const cJSON *was = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(stages, k), "config");
            cJSON *now = cJSON_Parse(v->s[k].config_json);
            char *a = NULL, *b = NULL;
            const char *key = config_diff(was, now, &a, &b);
            if (key && !trained_before(sw, v)) {  // a run that failed before its first checkpoint: start over
                v->rerecord = 1;
                key = NULL;
            }
            if (key)
                rc = llava_fail(
                    "variant \"%s\"%s%s: %s was run with %s = %.100s, the sweep now gives %.100s: delete %s to run it "
                    "again with the new settings (or restore the sweep file)",
                    v->name, sw->staged ? ", stage " : "", sw->staged ? sw->st[k].name : "", v->dir, key, a, b, v->dir);
            free(a), free(b);
            cJSON_Delete(now);
        }
        cJSON_Delete(j);
        free(text);
    }
    free(p);
    return rc;
}

static int write_json(const char *path, const cJSON *j) {
    char *t = cJSON_Print(j);
    size_t n = strlen(t);
    char *buf = xmalloc(n + 2);
    memcpy(buf, t, n);
    buf[n] = '\n';
    int rc = write_file_atomic(path, buf, n + 1);
    free(buf);
    free(t);
    return rc;
}

static int write_recorded(const sweep *sw, const variant *v) {
    char *p = path_join(v->dir, "variant.json");
    int rc = 0;
    if (!file_exists(p) || v->rerecord) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "name", v->name);
        cJSON_AddStringToObject(j, "sweep", sw->file);
        cJSON *o = cJSON_AddArrayToObject(j, "overrides");
        for (int i = 0; i < v->sets.n; i++) cJSON_AddItemToArray(o, cJSON_CreateString(v->sets.v[i]));
        cJSON *st = cJSON_AddArrayToObject(j, "stages");
        for (int k = 0; k < sw->n_st; k++) {
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", sw->st[k].name);
            cJSON_AddStringToObject(e, "preset", sw->st[k].preset);
            cJSON_AddStringToObject(e, "output_dir", v->out[k]);
            cJSON_AddItemToObject(e, "config", cJSON_Parse(v->s[k].config_json));
            cJSON_AddItemToArray(st, e);
        }
        rc = write_json(p, j);
        cJSON_Delete(j);
    }
    free(p);
    return rc;
}

// The memory plan's total per device of a stage on one process: what `llava plan --world 1` prints.
static int stage_plan(const run_settings *s, uint64_t *total) {
    model_config mc;
    mem_plan p;
    if (train_model_config(s, &mc) != 0 || mem_plan_make(s, &mc, 1, &p) != 0) return -1;
    *total = p.total;
    return 0;
}

// Resolves every stage of a variant and checks it (before anything trains).
static int resolve_variant(const sweep *sw, variant *v) {
    for (int k = 0; k < sw->n_st; k++) {
        strlist sets = {0};
        int used = 0, rc = stage_sets(sw, v, k, &sets, &used);
        if (rc == 0) rc = settings_load(sw->st[k].preset, (const char *const *)sets.v, sets.n, &v->s[k]);
        sl_free(&sets);
        if (rc == 0) v->have_s[k] = 1;
        const run_settings *s = &v->s[k];
        if (rc == 0 && !s->log.jsonl)
            rc = llava_fail("log.report_to must include jsonl: the sweep reads the run's metrics.jsonl");
        // A missing training file is found now rather than when its variant's turn comes (one that a
        // stage before writes is checked then).
        if (rc == 0 && s->data.data_path && !used && access(s->data.data_path, F_OK) != 0)
            rc = cfg_fail_missing("data.data_path", s->data.data_path);
        // The memory plan reads the models' config.json: a stage whose models an earlier stage writes
        // is planned when its turn comes.
        if (rc == 0 && stage_plan(s, &v->plan[k]) != 0) {
            if (used) llava_clear_error(), v->plan[k] = 0;
            else rc = llava_fail_ctx("the memory plan");
        }
        if (rc == 0 && k == sw->n_st - 1 && sw->bench && !s->train.lm)
            rc = llava_fail(
                "\"eval\" needs the last stage to train the language model (train.trainable with lm): only then is "
                "there an exported model (%s/model) to evaluate",
                v->out[k]);
        if (rc) {
            if (sw->staged) return llava_fail_ctx("variant \"%s\", stage %s", v->name, sw->st[k].name);
            return llava_fail_ctx("variant \"%s\"", v->name);
        }
    }
    return check_recorded(sw, v);
}

// ---------------------------------------------------------------------------------------------
// Results

typedef struct {
    double loss;             // the last logged loss (NaN: none)
    double tokens, seconds;  // over the logged steps: tokens / (tokens / tokens_per_s)
    int step, lines;
} metrics_sum;

static int read_metrics(const char *dir, metrics_sum *m) {
    memset(m, 0, sizeof *m);
    m->loss = NAN;
    char *p = path_join(dir, "metrics.jsonl");
    size_t len;
    char *text = read_file(p, (size_t)1 << 30, &len);
    if (!text) {
        int rc = llava_fail("%s: cannot read it (the run logged nothing?)", p);
        free(p);
        return rc;
    }
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;  // a line cut by a crash: the resumed run truncates it away anyway
        const cJSON *loss = cJSON_GetObjectItemCaseSensitive(j, "loss"),
                    *tok = cJSON_GetObjectItemCaseSensitive(j, "tokens"),
                    *tps = cJSON_GetObjectItemCaseSensitive(j, "tokens_per_s"),
                    *step = cJSON_GetObjectItemCaseSensitive(j, "step");
        if (cJSON_IsNumber(loss)) m->loss = loss->valuedouble;
        if (cJSON_IsNumber(tok) && cJSON_IsNumber(tps) && tok->valuedouble > 0 && tps->valuedouble > 0) {
            m->tokens += tok->valuedouble;
            m->seconds += tok->valuedouble / tps->valuedouble;
        }
        if (cJSON_IsNumber(step)) m->step = step->valueint;
        m->lines++;
        cJSON_Delete(j);
    }
    free(text);
    free(p);
    return 0;
}

static void add_num(cJSON *o, const char *k, double x) {
    if (isfinite(x)) cJSON_AddNumberToObject(o, k, x);
    else cJSON_AddNullToObject(o, k);
}

static double num_of(const cJSON *o, const char *k) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(x) ? x->valuedouble : NAN;
}

// A row's first part: name, status, overrides.
static cJSON *new_row(const variant *v, const char *status) {
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "name", v->name);
    cJSON_AddStringToObject(r, "status", status);
    cJSON *o = cJSON_AddArrayToObject(r, "overrides");
    for (int i = 0; i < v->sets.n; i++) cJSON_AddItemToArray(o, cJSON_CreateString(v->sets.v[i]));
    return r;
}

static void set_row(variant *v, cJSON *row) {
    cJSON_Delete(v->row);
    v->row = row;
}

// The scores worth a column: the benchmark's primary number first (a dotted key may reach into an
// object), then every other top-level number but the counts.
static cJSON *pick_scores(const eval_bench *b, const cJSON *scores) {
    cJSON *out = cJSON_CreateObject();
    const cJSON *prim = b->primary ? dotted(scores, b->primary) : NULL;
    if (cJSON_IsNumber(prim)) cJSON_AddNumberToObject(out, b->primary, prim->valuedouble);
    for (const cJSON *e = scores ? scores->child : NULL; e; e = e->next) {
        if (!cJSON_IsNumber(e) || (b->primary && !strcmp(e->string, b->primary))) continue;
        if (!strcmp(e->string, "questions") || !strcmp(e->string, "missing") || !strcmp(e->string, "total")) continue;
        cJSON_AddNumberToObject(out, e->string, e->valuedouble);
    }
    return out;
}

// A variant whose OUT/<variant>/result.json is complete: its row.
static cJSON *read_done(const variant *v) {
    char *p = path_join(v->dir, "result.json");
    size_t len;
    char *text = file_exists(p) ? read_file(p, 64u << 20, &len) : NULL;
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "complete"), *n = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (!cJSON_IsTrue(c) || !cJSON_IsString(n) || strcmp(n->valuestring, v->name) != 0) {
        cJSON_Delete(j);
        j = NULL;
    }
    free(text);
    free(p);
    return j;
}

// ---------------------------------------------------------------------------------------------
// The table

static void fmt_bytes(double b, char *buf, size_t n) {
    if (!isfinite(b) || b <= 0) snprintf(buf, n, "-");
    else if (b < (double)(1ull << 30)) snprintf(buf, n, "%.1f MiB", b / (double)(1 << 20));
    else snprintf(buf, n, "%.2f GiB", b / (double)(1ull << 30));
}

// Seconds to a tenth under a minute, then fmt_duration's "3m05s", "1h02m".
static void fmt_wall(double s, char *buf, size_t n) {
    char d[32];
    if (!isfinite(s) || s < 0) snprintf(buf, n, "-");
    else if (s < 60) snprintf(buf, n, "%.1f s", s);
    else snprintf(buf, n, "%s", fmt_duration(s, d));
}

static void md_cell(FILE *f, const char *s) {
    fputc(' ', f);
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fputs(" |", f);
}

static int write_tables(const sweep *sw) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", sw->name);
    cJSON_AddStringToObject(j, "sweep", sw->file);
    cJSON_AddStringToObject(j, "out", sw->out);
    cJSON_AddNumberToObject(j, "world", 1);
    cJSON *st = cJSON_AddArrayToObject(j, "stages");
    for (int k = 0; k < sw->n_st; k++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", sw->st[k].name);
        cJSON_AddStringToObject(e, "preset", sw->st[k].preset);
        cJSON_AddItemToArray(st, e);
    }
    if (sw->bench) cJSON_AddStringToObject(j, "benchmark", sw->bench->name);
    cJSON *rows = cJSON_AddArrayToObject(j, "variants");
    // The score columns: every score key of any row, in the order first seen.
    strlist cols = {0};
    for (int i = 0; i < sw->n_v; i++) {
        cJSON_AddItemToArray(rows, cJSON_Duplicate(sw->v[i].row, 1));
        const cJSON *sc = dotted(sw->v[i].row, "eval.scores");
        for (const cJSON *e = sc ? sc->child : NULL; e; e = e->next) {
            int seen = 0;
            for (int c = 0; c < cols.n && !seen; c++) seen = !strcmp(cols.v[c], e->string);
            if (!seen) sl_add(&cols, xstrdup(e->string));
        }
    }
    char *jp = path_join(sw->out, "sweep.json"), *mp = path_join(sw->out, "sweep.md");
    int rc = write_json(jp, j);
    char *md = NULL;
    size_t md_len = 0;
    FILE *f = rc == 0 ? open_memstream(&md, &md_len) : NULL;
    if (f) {
        fprintf(f, "# Sweep %s\n\n", sw->name);
        fprintf(f,
                "From `%s`: %d variant(s), %d stage(s) each. loss: the last logged training loss (of the last "
                "stage); tokens/s: the tokens over the seconds of every logged step (every stage); plan/device: "
                "`llava plan --world 1`'s total (the largest stage's); wall: the invocation that completed the "
                "variant",
                sw->file, sw->n_v, sw->n_st);
        if (sw->bench) fprintf(f, "; scores: `llava eval --benchmark %s`'s scores.json", sw->bench->name);
        fputs(".", f);
        fputs("\n\n| variant | status | overrides | loss | tokens/s | plan/device | wall |", f);
        for (int c = 0; c < cols.n; c++) md_cell(f, cols.v[c]);
        fputs("\n|---|---|---|---|---|---|---|", f);
        for (int c = 0; c < cols.n; c++) fputs("---|", f);
        fputc('\n', f);
        for (int i = 0; i < sw->n_v; i++) {
            const cJSON *r = sw->v[i].row;
            char buf[512];
            fputc('|', f);
            md_cell(f, sw->v[i].name);
            const cJSON *status = cJSON_GetObjectItemCaseSensitive(r, "status");
            md_cell(f, cJSON_IsString(status) ? status->valuestring : "-");
            // The overrides, each in backquotes.
            const cJSON *ov = cJSON_GetObjectItemCaseSensitive(r, "overrides");
            size_t on = 0, ocap = 64;
            char *o = xcalloc(ocap, 1);
            for (const cJSON *e = ov ? ov->child : NULL; e; e = e->next) {
                size_t m = strlen(e->valuestring) + 5;
                while (on + m + 1 > ocap) o = xrealloc(o, ocap *= 2);
                on += (size_t)sprintf(o + on, "%s`%s`", on ? ", " : "", e->valuestring);
            }
            md_cell(f, on ? o : "-");
            free(o);
            double loss = num_of(r, "loss"), tps = num_of(r, "tokens_per_s"), wall = num_of(r, "wall_s");
            snprintf(buf, sizeof buf, isfinite(loss) ? "%.4f" : "-", loss);
            md_cell(f, buf);
            snprintf(buf, sizeof buf, isfinite(tps) ? "%.0f" : "-", tps);
            md_cell(f, buf);
            fmt_bytes(num_of(r, "plan_bytes"), buf, sizeof buf);
            md_cell(f, buf);
            fmt_wall(wall, buf, sizeof buf);
            md_cell(f, buf);
            const cJSON *sc = dotted(r, "eval.scores");
            for (int c = 0; c < cols.n; c++) {
                double x = num_of(sc, cols.v[c]);
                snprintf(buf, sizeof buf, isfinite(x) ? "%.4g" : "-", x);
                md_cell(f, buf);
            }
            fputc('\n', f);
        }
        fclose(f);
        rc = write_file_atomic(mp, md, md_len);
    }
    free(md);
    sl_free(&cols);
    free(jp), free(mp);
    cJSON_Delete(j);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Running

typedef struct {
    int dry_run, keep_going, quiet;
} sweep_options;

// `llava eval` on the variant's exported model, as demo.c calls it: OUT/<variant>/eval.
static int run_eval(const sweep *sw, const variant *v, cJSON *row) {
    const run_settings *s = &v->s[sw->n_st - 1];
    char *model = path_join(v->out[sw->n_st - 1], "model"), *res = path_join(v->dir, "eval");
    char *tok = sw->eval_tokenizer ? NULL : train_tokenizer_path(s);
    const char **argv = xcalloc((size_t)sw->eval_args.n + 24, sizeof *argv);
    int c = 0;
    argv[c++] = "eval", argv[c++] = "--model", argv[c++] = model, argv[c++] = "--benchmark",
    argv[c++] = sw->bench->name;
    argv[c++] = "--data", argv[c++] = sw->eval_data, argv[c++] = "--out", argv[c++] = res;
    // What the training used, unless the sweep says otherwise.
    if (tok) argv[c++] = "--tokenizer", argv[c++] = tok;
    if (!sw->eval_template) argv[c++] = "--template", argv[c++] = s->data.template_name;
    if (!sw->eval_device) argv[c++] = "--device", argv[c++] = s->train.device;
    if (!sw->eval_mode) argv[c++] = "--mode", argv[c++] = s->data.tokenizer_mode_name;
    for (int i = 0; i < sw->eval_args.n; i++) argv[c++] = sw->eval_args.v[i];
    argv[c] = NULL;
    fflush(stdout);
    llava_clear_error();
    int rc = cmd_eval(c, (char **)argv);
    char *sp = path_join(res, "scores.json");
    if (rc != 0 && rc != 3)
        rc = llava_fail("llava eval --benchmark %s failed (status %d; see above)", sw->bench->name, rc);
    else rc = 0;
    size_t len;
    char *text = rc == 0 ? read_file(sp, 64u << 20, &len) : NULL;
    cJSON *scores = text ? cJSON_Parse(text) : NULL;
    if (rc == 0 && !cJSON_IsObject(scores)) rc = llava_fail("%s: no scores", sp);
    if (rc == 0) {
        cJSON *e = cJSON_AddObjectToObject(row, "eval");
        cJSON_AddStringToObject(e, "benchmark", sw->bench->name);
        cJSON_AddStringToObject(e, "out", res);
        cJSON_AddItemToObject(e, "scores", pick_scores(sw->bench, scores));
    }
    cJSON_Delete(scores);
    free(text), free(sp), free(argv), free(tok), free(model), free(res);
    return rc;
}

// Trains (or resumes) every stage of a variant, evaluates it, and writes its result.json. Returns 0,
// TRAIN_STOPPED, or -1 with llava_errmsg().
static int run_variant(const sweep *sw, variant *v, const sweep_options *o) {
    double t0 = now_s();
    int rc = mkdir_p(v->dir);
    if (rc == 0) rc = write_recorded(sw, v);
    cJSON *row = new_row(v, "complete");
    cJSON *stages = cJSON_CreateArray();
    double tokens = 0, seconds = 0, loss = NAN;
    uint64_t plan_max = 0;
    int steps = 0, steps_run = 0;
    for (int k = 0; k < sw->n_st && rc == 0; k++) {
        const run_settings *s = &v->s[k];
        if (sw->staged) printf("sweep: %s: stage %s (%s)\n", v->name, sw->st[k].name, sw->st[k].preset);
        fflush(stdout);
        // Planned now when its models came from an earlier stage.
        if (v->plan[k] == 0 && stage_plan(s, &v->plan[k]) != 0) {
            rc = llava_fail_ctx("the memory plan");
            break;
        }
        train_stats stats;
        train_options opt = {.resume = 1, .quiet = o->quiet, .stats = &stats};
        rc = train_run_settings(s, &opt);
        if (rc != 0) break;
        metrics_sum m;
        rc = read_metrics(v->out[k], &m);
        if (rc != 0) break;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddStringToObject(e, "name", sw->st[k].name);
        cJSON_AddStringToObject(e, "output_dir", v->out[k]);
        add_num(e, "loss", m.loss);
        add_num(e, "tokens_per_s", m.seconds > 0 ? m.tokens / m.seconds : NAN);
        cJSON_AddNumberToObject(e, "plan_bytes", (double)v->plan[k]);
        cJSON_AddNumberToObject(e, "steps", m.step);
        cJSON_AddNumberToObject(e, "steps_run", stats.steps);
        cJSON_AddItemToArray(stages, e);
        tokens += m.tokens, seconds += m.seconds, loss = m.loss;
        if (v->plan[k] > plan_max) plan_max = v->plan[k];
        steps += m.step, steps_run += stats.steps;
    }
    if (rc == 0) {
        add_num(row, "loss", loss);
        add_num(row, "tokens_per_s", seconds > 0 ? tokens / seconds : NAN);
        cJSON_AddNumberToObject(row, "plan_bytes", (double)plan_max);
        cJSON_AddNumberToObject(row, "steps", steps);
        cJSON_AddNumberToObject(row, "steps_run", steps_run);
    }
    if (rc == 0 && sw->bench) rc = run_eval(sw, v, row);
    if (rc == 0) {
        cJSON_AddNumberToObject(row, "wall_s", now_s() - t0);
        cJSON_AddItemToObject(row, "stages", stages);
        stages = NULL;
        cJSON *res = cJSON_Duplicate(row, 1);
        cJSON_AddTrueToObject(res, "complete");
        char *p = path_join(v->dir, "result.json");
        rc = write_json(p, res);
        free(p);
        cJSON_Delete(res);
    }
    cJSON_Delete(stages);
    if (rc == 0) {
        set_row(v, row);
        return 0;
    }
    cJSON_Delete(row);
    int stopped = rc == TRAIN_STOPPED;
    row = new_row(v, stopped ? "stopped" : "failed");
    if (!stopped) cJSON_AddStringToObject(row, "error", llava_errmsg());
    set_row(v, row);
    return stopped ? TRAIN_STOPPED : -1;
}

// The number of processes a launcher started, from its variables (1: none).
static int launcher_world(void) {
    static const char *const VARS[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "WORLD_SIZE"};
    int world = 1;
    for (int i = 0; i < ARGS_COUNT(VARS); i++) {
        const char *v = getenv(VARS[i]);
        if (v && atoi(v) > world) world = atoi(v);
    }
    const char *st = getenv("SLURM_NTASKS");  // srun without MPI counts only with MASTER_ADDR (dist.h)
    if (st && getenv("MASTER_ADDR") && getenv("SLURM_PROCID") && atoi(st) > world) world = atoi(st);
    return world;
}

// Rank 0's view of the variants other ranks train: their rows as their folders say (complete, or still pending).
static void refresh_others(sweep *sw, int rank, int world) {
    for (int i = 0; i < sw->n_v; i++) {
        if (i % world == rank) continue;
        cJSON *done = read_done(&sw->v[i]);
        if (done) {
            cJSON_ReplaceItemInObjectCaseSensitive(done, "status", cJSON_CreateString("complete"));
            cJSON_DeleteItemFromObjectCaseSensitive(done, "complete");
            set_row(&sw->v[i], done);
        } else {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(sw->v[i].row, "status");
            if (!cJSON_IsString(st) || strcmp(st->valuestring, "failed") != 0)
                set_row(&sw->v[i], new_row(&sw->v[i], "pending"));
        }
    }
}

// `who`: "rank R: " under several ranks, else "".
static void print_row_line(const sweep *sw, int i, const char *who, const char *what) {
    const cJSON *r = sw->v[i].row;
    double loss = num_of(r, "loss"), tps = num_of(r, "tokens_per_s");
    printf("sweep: %s[%d/%d] %s: %s (loss %.4f, %.0f tokens/s", who, i + 1, sw->n_v, sw->v[i].name, what, loss, tps);
    const cJSON *sc = dotted(r, "eval.scores");
    for (const cJSON *e = sc ? sc->child : NULL; e; e = e->next) printf(", %s %.4g", e->string, e->valuedouble);
    printf(")\n");
}

int cmd_sweep(int argc, char **argv) {
    static const char *const FLAGS[] = {"--dry-run", "--keep-going", "--quiet", "--help"};
    sweep_options o = {0};
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "--dry-run") == 0) o.dry_run = 1;
        else if (strcmp(argv[i], "--keep-going") == 0) o.keep_going = 1;
        else if (strcmp(argv[i], "--quiet") == 0) o.quiet = 1;
        else if (argv[i][0] != '-' && !file) file = argv[i];
        else if (argv[i][0] != '-') {
            fprintf(stderr, "llava sweep: %s: one sweep file only (%s is the first)\n", argv[i], file);
            return 2;
        } else return args_unknown("sweep", argv[i], FLAGS, ARGS_COUNT(FLAGS));
    }
    if (!file) {
        fprintf(stderr, "llava sweep: no sweep file\n%s", USAGE);
        return 2;
    }
    // Under a launcher of several ranks, each rank takes its share of the variants (MPI: the CPU's collectives).
    int launched = launcher_world();
    dist_options dopt = {.cuda = 0, .timeout_s = 60};
    dist *d = dist_init(&dopt);
    if (!d) {
        fprintf(stderr, "llava sweep: launched as %d processes: %s\n", launched, llava_errmsg());
        return 1;
    }
    int world = dist_world(d), rank = dist_rank(d), lead = rank == 0;
    if (!lead) o.quiet = 1;  // one set of progress lines: rank 0's
    sweep sw;
    int rc = sweep_read(&sw, file);
    // Every variant resolved and checked before anything trains.
    for (int i = 0; i < sw.n_v && rc == 0; i++)
        if (resolve_variant(&sw, &sw.v[i]) != 0) rc = llava_fail_ctx("%s", file);
    if (rc != 0) {
        if (lead) fprintf(stderr, "llava sweep: %s\nllava sweep: nothing was trained\n", llava_errmsg());
        sweep_free(&sw);
        dist_finalize(d);
        return 1;
    }
    int n_done = 0;
    for (int i = 0; i < sw.n_v; i++) {
        variant *v = &sw.v[i];
        cJSON *done = read_done(v);
        if (done) {
            cJSON_ReplaceItemInObjectCaseSensitive(done, "status", cJSON_CreateString("complete"));
            cJSON_DeleteItemFromObjectCaseSensitive(done, "complete");
            n_done++;
        }
        set_row(v, done ? done : new_row(v, "pending"));
    }
    if (lead) {
        printf("sweep: %s: %d variant(s) (%d done), %d stage(s) each, results in %s\n", sw.name, sw.n_v, n_done,
               sw.n_st, sw.out);
        if (world > 1)
            printf("sweep: %d ranks, each a group of one process: rank r trains variants r, r + %d, ...\n", world,
                   world);
    }
    if (o.dry_run) {
        for (int i = 0; i < sw.n_v && lead; i++) {
            variant *v = &sw.v[i];
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(v->row, "status");
            printf("  %s [%s]: %s", v->name, st->valuestring, v->sets.n ? "" : "(no overrides)");
            for (int k = 0; k < v->sets.n; k++) printf("%s%s", k ? " " : "", v->sets.v[k]);
            if (world > 1) printf(" (rank %d)", i % world);
            printf("\n");
            for (int k = 0; k < sw.n_st; k++) {
                char b[32];
                fmt_bytes((double)v->plan[k], b, sizeof b);
                printf("    %s%splan/device %s, output %s\n", sw.staged ? sw.st[k].name : "", sw.staged ? ": " : "",
                       v->plan[k] ? b : "(planned after the stage before)", v->out[k]);
            }
        }
        sweep_free(&sw);
        dist_finalize(d);
        return 0;
    }
    // One sweep per output folder at a time: rank 0 holds the folder's lock for all ranks, and writes the tables.
    run_lock lock = {.fd = -1};
    if (lead) {
        rc = run_lock_take(&lock, sw.out);
        if (rc == 0) rc = write_tables(&sw);
        if (rc != 0) fprintf(stderr, "llava sweep: %s\n", llava_errmsg());
    }
    if (world > 1) {
        double ok = rc == 0;
        if (dist_broadcast_host(d, &ok, sizeof ok, 0, "sweep start") != 0) ok = 0;
        rc = ok ? 0 : -1;
    }
    if (rc != 0) {
        run_lock_release(&lock);
        sweep_free(&sw);
        dist_finalize(d);
        return 1;
    }
    char who[32] = "";
    if (world > 1) snprintf(who, sizeof who, "rank %d: ", rank);
    int failed = 0, stopped = 0;
    for (int i = rank; i < sw.n_v && !stopped; i += world) {
        variant *v = &sw.v[i];
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(v->row, "status");
        if (cJSON_IsString(st) && !strcmp(st->valuestring, "complete")) {
            print_row_line(&sw, i, who, "done");
            continue;
        }
        if (failed && !o.keep_going) break;
        printf("sweep: %s[%d/%d] %s: training", who, i + 1, sw.n_v, v->name);
        for (int k = 0; k < v->sets.n; k++) printf(" %s", v->sets.v[k]);
        printf("\n");
        fflush(stdout);
        int r = run_variant(&sw, v, &o);
        if (r == 0) {
            print_row_line(&sw, i, who, "complete");
        } else if (r == TRAIN_STOPPED) {
            stopped = 1;
            printf("sweep: %s[%d/%d] %s: stopped by a signal after a checkpoint; run the sweep again to continue\n",
                   who, i + 1, sw.n_v, v->name);
        } else {
            failed++;
            fprintf(stderr, "llava sweep: %svariant \"%s\": %s\n", who, v->name, llava_errmsg());
        }
        fflush(stdout);
        if (lead && world > 1) refresh_others(&sw, rank, world);
        if (lead && write_tables(&sw) != 0) fprintf(stderr, "llava sweep: %s\n", llava_errmsg());
    }
    if (world > 1) {
        // Every rank through its share, then the last table. Variants take as long as they take: a deadline of
        // years (a rank that dies ends the job through mpirun, which aborts the others).
        dist_set_timeout(d, 1e9);
        double counts[2] = {failed, stopped};
        if (dist_allreduce_host_f64(d, counts, 2, "sweep end") != 0) counts[0] += 1;
        failed = (int)counts[0], stopped = counts[1] > 0;
        if (lead) {
            refresh_others(&sw, rank, world);
            if (write_tables(&sw) != 0) fprintf(stderr, "llava sweep: %s\n", llava_errmsg());
        }
    }
    if (lead) {
        char *mdp = path_join(sw.out, "sweep.md");
        printf("sweep: %s%s\n", mdp, failed ? " (some variants failed)" : "");
        free(mdp);
    }
    run_lock_release(&lock);
    sweep_free(&sw);
    dist_finalize(d);
    return stopped ? TRAIN_STOPPED : failed ? 1 : 0;
}
