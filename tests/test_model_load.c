// What the model loader refuses, with an error naming the file, the tensor and the reason, instead
// of running a model that is not the one in the files:
// - tensors the config has no place for (a config.json that declares fewer layers than the weights
//   hold would run a smaller model and give other answers), unless asked to ignore them
//   (llava_load_options, `--ignore-unexpected`, model.ignore_unexpected_weights);
// - weights that are NaN or infinite (named by their file and their name in it), and pixel values
//   that are (named by the input), where `llava forward` / `llava generate` said "unknown error" or
//   "no logits";
// while every model folder the repository ships still loads as it is.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "check.h"
#include "common/util.h"
#include "infer/generate.h"
#include "model/batch_hf.h"
#include "model/io/safetensors.h"
#include "model/llava.h"
#include "train/settings.h"
#include "train/trainer.h"

#define GOLDEN "tests/data/golden/model/tiny64/"

static char *tmp;

static const char *bin(void) {
    const char *b = getenv("LLAVA_BIN");
    return b && *b ? b : "build/llava";
}

// Runs `llava ARGS`; *err receives what it printed on stderr. Returns the exit status.
static int run_llava(const char *args, char **err) {
    char *e = xasprintf("%s/cmd.err", tmp);
    char *cmd = xasprintf("'%s' %s > /dev/null 2> '%s'", bin(), args, e);
    int st = system(cmd);
    *err = read_file(e, 1 << 20, NULL);
    if (!*err) *err = xstrdup("");
    free(cmd);
    free(e);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// A copy of the golden tiny64 model folder in tmp/name, its config.json's `section`.`key` set to
// `value` (section NULL: nothing changed). Returns the folder.
static char *golden_copy(const char *name, const char *section, const char *key, int value) {
    char *dir = xasprintf("%s/%s", tmp, name);
    char *cmd = xasprintf("cp -r '" GOLDEN "model' '%s'", dir);
    CHECK(system(cmd) == 0, "%s", cmd);
    free(cmd);
    if (section) {
        char *p = path_join(dir, "config.json");
        size_t len;
        char *text = read_file(p, 1 << 20, &len);
        cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
        cJSON *sec = cJSON_GetObjectItemCaseSensitive(root, section);
        CHECK(sec && cJSON_GetObjectItemCaseSensitive(sec, key), "%s has no %s.%s", p, section, key);
        cJSON_ReplaceItemInObjectCaseSensitive(sec, key, cJSON_CreateNumber(value));
        char *out = cJSON_Print(root);
        CHECK(write_file_atomic(p, out, strlen(out)) == 0, "%s", llava_errmsg());
        free(out);
        cJSON_Delete(root);
        free(text);
        free(p);
    }
    return dir;
}

// Every model folder the repository ships loads with the strict default: nothing unexpected.
static void test_shipped_models_load(void) {
    const char *dirs[] = {"tests/data/golden/model/tiny64/model", "tests/data/golden/model/tiny128/model",
                          "tests/data/torchbin/tiny64", "tests/data/export/model"};
    for (int i = 0; i < 4; i++) {
        llava_model m;
        int ok = llava_model_load(&m, dirs[i], test_cpu()) == 0;
        CHECK(ok, "%s: %s", dirs[i], llava_errmsg());
        if (!ok) continue;
        CHECK(m.n_unexpected_ignored == 0, "%s: %d ignored", dirs[i], m.n_unexpected_ignored);
        llava_model_free(&m);
    }
}

// config.json declares one LM layer; the weights hold two. The second layer's 9 tensors are named.
static void test_fewer_lm_layers(void) {
    char *dir = golden_copy("lm1", "text_config", "num_hidden_layers", 1);
    llava_model m;
    CHECK(llava_model_load(&m, dir, test_cpu()) != 0, "a model with fewer layers than its weights loaded");
    CHECK_ERR_HAS(dir);
    CHECK_ERR_HAS("9 tensors");
    CHECK_ERR_HAS("language_model.model.layers.1.input_layernorm.weight");
    CHECK_ERR_HAS("language_model.model.layers.1.mlp.down_proj.weight");  // the names sort; the first 3 are shown
    CHECK_ERR_HAS("and 6 more");
    CHECK_ERR_HAS("ignore");
    // Asked for, the rest loads: one layer, the 9 tensors counted.
    llava_load_options o = {.ignore_unexpected = 1};
    int ok = llava_model_load_opts(&m, dir, test_cpu(), &o) == 0;
    CHECK(ok, "%s", llava_errmsg());
    if (ok) {
        CHECK_EQ_INT(m.cfg.text.num_hidden_layers, 1);
        CHECK_EQ_INT(m.n_unexpected_ignored, 9);
        llava_model_free(&m);
    }

    // The same through a training config: model.ignore_unexpected_weights.
    char *init = xasprintf("model.init=%s", dir);
    const char *sets[] = {init, "data.data_path=unused.json", "train.device=cpu",
                          "model.ignore_unexpected_weights=true"};
    run_settings s;
    CHECK(settings_load(NULL, sets, 3, &s) == 0, "%s", llava_errmsg());
    CHECK(s.model.ignore_unexpected_weights == 0, "the default is strict");
    CHECK(train_build_model(&s, test_cpu(), &m) != 0, "training built a model with fewer layers than its weights");
    CHECK_ERR_HAS("language_model.model.layers.1.input_layernorm.weight");
    settings_free(&s);
    CHECK(settings_load(NULL, sets, 4, &s) == 0, "%s", llava_errmsg());
    CHECK(s.model.ignore_unexpected_weights == 1, "model.ignore_unexpected_weights");
    ok = train_build_model(&s, test_cpu(), &m) == 0;
    CHECK(ok, "%s", llava_errmsg());
    if (ok) {
        CHECK_EQ_INT(m.n_unexpected_ignored, 9);
        llava_model_free(&m);
    }
    settings_free(&s);
    free(init);

    // And through the command line: llava forward fails, naming the tensors, unless --ignore-unexpected.
    char *err = NULL;
    char *args =
        xasprintf("forward --model '%s' --inputs " GOLDEN "inputs.safetensors --out '%s/out.safetensors'", dir, tmp);
    CHECK(run_llava(args, &err) == 1, "llava forward on fewer layers: %s", err);
    CHECK(strstr(err, "language_model.model.layers.1.input_layernorm.weight") && strstr(err, "9 tensors"),
          "llava forward: \"%s\"", err);
    free(err);
    char *args2 = xasprintf("%s --ignore-unexpected", args);
    CHECK(run_llava(args2, &err) == 0, "llava forward --ignore-unexpected: %s", err);
    CHECK(strstr(err, "9 tensors of the weights are not in the model's config (ignored)") != NULL,
          "llava forward --ignore-unexpected says what it skipped: \"%s\"", err);
    free(err);
    free(args2);
    free(args);
    // llava generate the same. The repository has no tokenizer for the golden model's 300 ids, so
    // with --ignore-unexpected the model loads and the prompt's first id past 300 is what stops it.
    args = xasprintf("generate --model '%s' --tokenizer tests/data/tokenizer/tiny.model --prompt hi --max-new-tokens 2",
                     dir);
    CHECK(run_llava(args, &err) == 1, "llava generate on fewer layers: %s", err);
    CHECK(strstr(err, "language_model.model.layers.1.input_layernorm.weight") != NULL, "llava generate: \"%s\"", err);
    free(err);
    args2 = xasprintf("%s --ignore-unexpected", args);
    CHECK(run_llava(args2, &err) == 1 &&
              strstr(err, "9 tensors of the weights are not in the model's config (ignored)") &&
              strstr(err, "outside the vocabulary of 300") && !strstr(err, "no place"),
          "llava generate --ignore-unexpected: %s", err);
    free(err);
    // The model it loaded generates.
    ok = llava_model_load_opts(&m, dir, test_cpu(), &o) == 0;
    CHECK(ok, "%s", llava_errmsg());
    if (ok) {
        int64_t prompt[3] = {1, 5, 7}, out[2];
        CHECK(llava_generate_greedy(&m, prompt, 3, NULL, 0, 0, 0, 2, -1, out) == 2, "%s", llava_errmsg());
        llava_model_free(&m);
    }
    free(args2);
    free(args);
    free(dir);
}

// config.json declares two vision layers; the weights hold three. The third is not one of the
// layers past the feature layer that the format keeps and LLaVA never runs: the config has no
// place for it at all.
static void test_fewer_vision_layers(void) {
    char *dir = golden_copy("vision2", "vision_config", "num_hidden_layers", 2);
    llava_model m;
    CHECK(llava_model_load(&m, dir, test_cpu()) != 0, "a tower with fewer layers than its weights loaded");
    CHECK_ERR_HAS("16 tensors");
    CHECK_ERR_HAS("vision_tower.vision_model.encoder.layers.2.");
    free(dir);
}

// Writes `value` over element `elem` of the F32 tensor `name` in the safetensors file `path`.
static void plant(const char *path, const char *name, size_t elem, float value) {
    st_file f;
    CHECK(st_open(&f, path) == 0, "%s", llava_errmsg());
    const st_tensor *t = st_find(&f, name);
    CHECK(t && t->dtype == DT_F32 && elem < t->numel, "%s: no F32 tensor %s with element %zu", path, name, elem);
    long at = t ? (long)(8 + f.header_len + t->begin + 4 * elem) : 0;
    st_close(&f);
    FILE *w = fopen(path, "r+b");
    CHECK(w && fseek(w, at, SEEK_SET) == 0 && fwrite(&value, 4, 1, w) == 1, "writing %s", path);
    if (w) fclose(w);
}

// One NaN in a named tensor: loading fails, naming the file, the tensor as the file names it, the
// value and where it is. Training refuses the model too, and so do llava forward and generate.
static void test_nonfinite_weights(void) {
    const char *up = "language_model.model.layers.0.mlp.up_proj.weight";
    char *dir = golden_copy("nan", NULL, NULL, 0);
    char *file = path_join(dir, "model.safetensors");
    plant(file, up, 17, NAN);
    llava_model m;
    CHECK(llava_model_load(&m, dir, test_cpu()) != 0, "a model with a NaN weight loaded");
    CHECK_ERR_HAS(file);
    CHECK_ERR_HAS("\"language_model.model.layers.0.mlp.up_proj.weight\"");
    CHECK_ERR_HAS("1 value that is not finite (NaN at element 17 of 12800)");
    char *init = xasprintf("model.init=%s", dir);
    const char *sets[] = {init, "data.data_path=unused.json", "train.device=cpu"};
    run_settings s;
    CHECK(settings_load(NULL, sets, 3, &s) == 0, "%s", llava_errmsg());
    CHECK(train_build_model(&s, test_cpu(), &m) != 0, "training built a model with a NaN weight");
    CHECK_ERR_HAS("\"language_model.model.layers.0.mlp.up_proj.weight\"");
    settings_free(&s);
    free(init);
    char *err = NULL;
    char *args =
        xasprintf("forward --model '%s' --inputs " GOLDEN "inputs.safetensors --out '%s/out.safetensors'", dir, tmp);
    CHECK(run_llava(args, &err) == 1, "llava forward on a NaN weight: %s", err);
    CHECK(strstr(err, up) && strstr(err, "NaN at element 17") && strstr(err, file) && !strstr(err, "unknown error"),
          "llava forward: \"%s\"", err);
    free(err);
    free(args);
    args = xasprintf("generate --model '%s' --tokenizer tests/data/tokenizer/tiny.model --prompt hi", dir);
    CHECK(run_llava(args, &err) == 1, "llava generate on a NaN weight: %s", err);
    CHECK(strstr(err, up) && strstr(err, "NaN at element 17") && !strstr(err, "no logits"), "llava generate: \"%s\"",
          err);
    free(err);
    free(args);
    // Infinities, several, in the vision tower: the count and the first.
    const char *q = "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight";
    plant(file, up, 17, 0.5f);
    plant(file, q, 3, -INFINITY);
    plant(file, q, 200, INFINITY);
    CHECK(llava_model_load(&m, dir, test_cpu()) != 0, "a model with infinite weights loaded");
    CHECK_ERR_HAS("\"vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight\"");
    CHECK_ERR_HAS("2 values that are not finite (-inf at element 3 of 16384)");
    // A vision layer past the feature layer is never computed nor copied: it does not matter.
    plant(file, q, 3, 0.0f);
    plant(file, q, 200, 0.0f);
    plant(file, "vision_tower.vision_model.encoder.layers.2.self_attn.q_proj.weight", 0, NAN);
    int ok = llava_model_load(&m, dir, test_cpu()) == 0;
    CHECK(ok, "a NaN in a layer the model never runs: %s", llava_errmsg());
    if (ok) llava_model_free(&m);
    free(file);
    free(dir);
}

// An infinite pixel value in the inputs: llava forward names the input and where the value is;
// the batch builder and generation refuse such pixels too.
static void test_nonfinite_pixels(void) {
    char *in = xasprintf("%s/inputs_inf.safetensors", tmp);
    char *cmd = xasprintf("cp " GOLDEN "inputs.safetensors '%s'", in);
    CHECK(system(cmd) == 0, "%s", cmd);
    free(cmd);
    // Image 1, channel 2, row 5, column 7 of (2, 3, 16, 16).
    plant(in, "pixel_values", ((size_t)(1 * 3 + 2) * 16 + 5) * 16 + 7, INFINITY);
    char *err = NULL;
    char *args = xasprintf("forward --model " GOLDEN "model --inputs '%s' --out '%s/out.safetensors'", in, tmp);
    CHECK(run_llava(args, &err) == 1, "llava forward on an inf pixel: %s", err);
    CHECK(strstr(err, in) && strstr(err, "pixel_values") && strstr(err, "inf at image 1, channel 2, row 5, column 7") &&
              !strstr(err, "unknown error"),
          "llava forward: \"%s\"", err);
    free(err);
    free(args);
    free(in);

    llava_model m;
    if (llava_model_load(&m, GOLDEN "model", test_cpu()) != 0) {
        CHECK(0, "%s", llava_errmsg());
        return;
    }
    int n = m.tokens_per_image + 2, S = m.cfg.vision.image_size;
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)n), out[2];
    ids[0] = 1;
    for (int i = 1; i < n - 1; i++) ids[i] = m.cfg.glue.image_token_index;
    ids[n - 1] = 5;
    float *pix = xcalloc((size_t)3 * S * S, sizeof(float));
    pix[(size_t)S * S + 3] = NAN;  // channel 1, row 0, column 3
    llava_batch b;
    CHECK(llava_batch_from_hf(&b, &m, ids, NULL, NULL, 1, n, pix, 1, S, S) != 0, "a NaN pixel made a batch");
    CHECK_ERR_HAS("pixel_values");
    CHECK_ERR_HAS("NaN at image 0, channel 1, row 0, column 3");
    CHECK(llava_generate_greedy(&m, ids, n, pix, 1, S, S, 2, -1, out) < 0, "generation on a NaN pixel");
    CHECK_ERR_HAS("NaN at image 0, channel 1, row 0, column 3");
    pix[(size_t)S * S + 3] = 0.25f;
    CHECK(llava_generate_greedy(&m, ids, n, pix, 1, S, S, 2, -1, out) == 2, "%s", llava_errmsg());
    free(pix);
    free(ids);
    llava_model_free(&m);
}

int main(void) {
    tmp = check_tmpdir();
    test_shipped_models_load();
    test_fewer_lm_layers();
    test_fewer_vision_layers();
    test_nonfinite_weights();
    test_nonfinite_pixels();
    check_rm_rf(tmp);
    free(tmp);
    return check_done();
}
