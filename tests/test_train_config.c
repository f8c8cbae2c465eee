// Training presets: every LLaVA-1.5 preset resolves with the recipe's hyperparameters
// (spec/llava15-recipe.md §1.1), overrides work by type, and mistakes are errors.
#include <math.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "train/config.h"

static int load(train_config *c, const char *path) {
    cfg_init_defaults(c);
    int rc = cfg_load(c, path);
    if (rc == 0) rc = cfg_validate(c);
    return rc;
}

static void test_presets(void) {
    train_config c;
    // Stage 1 (pretrain.sh).
    CHECK(load(&c, "configs/llava15-7b-stage1.json") == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "train.stage"), 1);
    CHECK_EQ_STR(cfg_str(&c, "data.template"), "plain");
    CHECK_EQ_STR(cfg_str(&c, "data.image_aspect_ratio"), "square");
    CHECK_EQ_INT(cfg_int(&c, "train.per_device_train_batch_size"), 32);
    CHECK_EQ_INT(cfg_int(&c, "train.global_batch_size"), 256);
    CHECK(cfg_float(&c, "train.learning_rate") == 1e-3, "stage-1 lr");
    CHECK(cfg_float(&c, "train.warmup_ratio") == 0.03, "warmup");
    CHECK(cfg_float(&c, "train.weight_decay") == 0.0, "wd");
    CHECK(cfg_float(&c, "train.max_grad_norm") == 0.0, "no clipping in the official runs");
    CHECK(cfg_float(&c, "train.adam_epsilon") == 1e-8, "eps");
    CHECK_EQ_STR(cfg_str(&c, "train.lr_scheduler_type"), "cosine");
    CHECK(cfg_list_len(&c, "train.trainable") == 1 && cfg_list_has(&c, "train.trainable", "projector"),
          "projector only");
    CHECK_EQ_INT(cfg_int(&c, "data.model_max_length"), 2048);
    CHECK_EQ_INT(cfg_int(&c, "model.mm_vision_select_layer"), -2);
    CHECK_EQ_INT(cfg_int(&c, "train.seed"), 42);
    CHECK(cfg_bool(&c, "train.gradient_checkpointing") && cfg_bool(&c, "train.bf16") && cfg_bool(&c, "train.tf32"),
          "flags");
    CHECK(!cfg_bool(&c, "data.group_by_modality_length"), "no grouping in stage 1");
    CHECK(cfg_str(&c, "model.pretrain_mm_mlp_adapter") == NULL, "no adapter in stage 1");
    CHECK(isnan(cfg_float(&c, "train.mm_projector_lr")), "no projector lr");
    cfg_free(&c);
    // Stage 2 (finetune.sh) inherits stage 1 and changes what the script changes.
    CHECK(load(&c, "configs/llava15-7b-stage2.json") == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "train.stage"), 2);
    CHECK_EQ_STR(cfg_str(&c, "data.template"), "vicuna_v1");
    CHECK_EQ_STR(cfg_str(&c, "data.image_aspect_ratio"), "pad");
    CHECK_EQ_INT(cfg_int(&c, "train.per_device_train_batch_size"), 16);
    CHECK_EQ_INT(cfg_int(&c, "train.global_batch_size"), 128);
    CHECK(cfg_float(&c, "train.learning_rate") == 2e-5, "stage-2 lr");
    CHECK(cfg_bool(&c, "data.group_by_modality_length"), "grouping");
    CHECK(cfg_list_has(&c, "train.trainable", "lm") && cfg_list_has(&c, "train.trainable", "projector"),
          "projector+lm");
    CHECK_EQ_STR(cfg_str(&c, "model.pretrain_mm_mlp_adapter"),
                 "./checkpoints/llava-v1.5-7b-pretrain/mm_projector.safetensors");
    CHECK_EQ_STR(cfg_str(&c, "model.llm"), "./models/vicuna-7b-v1.5");  // inherited
    cfg_free(&c);
    // LoRA (finetune_lora.sh).
    CHECK(load(&c, "configs/llava15-7b-stage2-lora.json") == 0, "%s", llava_errmsg());
    CHECK(cfg_bool(&c, "lora.enabled"), "lora on");
    CHECK_EQ_INT(cfg_int(&c, "lora.r"), 128);
    CHECK(cfg_float(&c, "lora.alpha") == 256.0, "alpha");
    CHECK(cfg_float(&c, "lora.dropout") == 0.05, "dropout");
    CHECK(cfg_float(&c, "train.learning_rate") == 2e-4, "lora lr");
    CHECK(cfg_float(&c, "train.mm_projector_lr") == 2e-5, "projector lr");
    CHECK_EQ_INT(cfg_list_len(&c, "lora.target_modules"), 7);
    CHECK(!cfg_list_has(&c, "train.trainable", "lm") && cfg_list_has(&c, "train.trainable", "lora"), "lora trainable");
    cfg_free(&c);
    // 13B presets: same hyperparameters, 13B folders.
    const char *names13[] = {"stage1", "stage2", "stage2-lora", "task", "task-lora"};
    for (int i = 0; i < 5; i++) {
        char p7[128], p13[128];
        snprintf(p7, sizeof p7, "configs/llava15-7b-%s.json", names13[i]);
        snprintf(p13, sizeof p13, "configs/llava15-13b-%s.json", names13[i]);
        train_config a, b;
        CHECK(load(&a, p7) == 0, "%s: %s", p7, llava_errmsg());
        CHECK(load(&b, p13) == 0, "%s: %s", p13, llava_errmsg());
        const char *same[] = {"train.learning_rate", "train.warmup_ratio", "train.weight_decay",
                              "train.num_train_epochs"};
        for (int k = 0; k < 4; k++) CHECK(cfg_float(&a, same[k]) == cfg_float(&b, same[k]), "%s %s", p13, same[k]);
        CHECK_EQ_INT(cfg_int(&a, "train.per_device_train_batch_size"),
                     cfg_int(&b, "train.per_device_train_batch_size"));
        const char *m13 = cfg_str(&b, "model.init") ? cfg_str(&b, "model.init") : cfg_str(&b, "model.llm");
        CHECK(strstr(m13, "13b") != NULL, "%s model %s", p13, m13);
        CHECK(strstr(cfg_str(&b, "checkpoint.output_dir"), "13b") != NULL, "%s output", p13);
        cfg_free(&a);
        cfg_free(&b);
    }
    // Task presets start from a whole LLaVA model.
    CHECK(load(&c, "configs/llava15-7b-task.json") == 0, "%s", llava_errmsg());
    CHECK_EQ_STR(cfg_str(&c, "model.init"), "./models/llava-v1.5-7b");
    CHECK(cfg_str(&c, "model.pretrain_mm_mlp_adapter") == NULL, "task: no separate adapter");
    cfg_free(&c);
}

static void test_overrides_and_errors(void) {
    train_config c;
    CHECK(load(&c, "configs/llava15-7b-stage1.json") == 0, "%s", llava_errmsg());
    CHECK(cfg_set(&c, "train.learning_rate=2e-4") == 0, "%s", llava_errmsg());
    CHECK(cfg_float(&c, "train.learning_rate") == 2e-4, "lr override");
    CHECK(cfg_set(&c, "data.image_folder=/data/my images") == 0, "string without quotes");
    CHECK_EQ_STR(cfg_str(&c, "data.image_folder"), "/data/my images");
    CHECK(cfg_set(&c, "train.trainable=projector,lm") == 0, "comma list");
    CHECK(cfg_list_len(&c, "train.trainable") == 2 && cfg_list_has(&c, "train.trainable", "lm"), "list override");
    CHECK(cfg_set(&c, "train.trainable=[\"projector\"]") == 0, "JSON list");
    CHECK_EQ_INT(cfg_list_len(&c, "train.trainable"), 1);
    CHECK(cfg_set(&c, "model.pretrain_mm_mlp_adapter=null") == 0 && !cfg_str(&c, "model.pretrain_mm_mlp_adapter"),
          "null");
    CHECK(cfg_set(&c, "train.gradient_checkpointing=false") == 0 && !cfg_bool(&c, "train.gradient_checkpointing"),
          "bool");
    // Mistakes.
    CHECK(cfg_set(&c, "train.lerning_rate=1") != 0, "typo accepted");
    CHECK_ERR_HAS("did you mean \"train.learning_rate\"");
    CHECK(cfg_set(&c, "data.learning_rate=1") != 0, "wrong section accepted");
    CHECK_ERR_HAS("train.learning_rate");
    CHECK(cfg_set(&c, "train.per_device_train_batch_size=1.5") != 0, "fractional batch accepted");
    CHECK_ERR_HAS("integer");
    CHECK(cfg_set(&c, "train.bf16=yes") != 0, "yes accepted as bool");
    CHECK(cfg_set(&c, "data.template=llama2") != 0, "unknown template accepted");
    CHECK_ERR_HAS("plain|vicuna_v1");
    CHECK(cfg_set(&c, "train.trainable=projector,everything") != 0, "unknown module accepted");
    CHECK_ERR_HAS("everything");
    CHECK(cfg_set(&c, "novalue") != 0, "no '=' accepted");
    CHECK(cfg_set(&c, "train.zero_stage=3") == 0 && cfg_validate(&c) != 0, "ZeRO-3 validated");
    CHECK_ERR_HAS("ZeRO-3");
    cfg_set(&c, "train.zero_stage=2");
    CHECK(cfg_set(&c, "train.per_device_train_batch_size=0") == 0 && cfg_validate(&c) != 0, "batch 0 validated");
    cfg_set(&c, "train.per_device_train_batch_size=4");
    CHECK(cfg_set(&c, "lora.enabled=true") == 0 && cfg_validate(&c) != 0, "lora flag without lora module");
    CHECK_ERR_HAS("lora");
    cfg_set(&c, "lora.enabled=false");
    CHECK(cfg_validate(&c) == 0, "valid again: %s", llava_errmsg());
    // The resolved config serialises and reloads to the same values.
    char *json = cfg_to_json(&c);
    char *dir = check_tmpdir();
    char *p = path_join(dir, "resolved.json");
    write_file_atomic(p, json, strlen(json));
    train_config d;
    CHECK(load(&d, p) == 0, "%s", llava_errmsg());
    char *json2 = cfg_to_json(&d);
    CHECK(strcmp(json, json2) == 0, "resolved config reloads identically");
    free(json);
    free(json2);
    cfg_free(&d);
    cfg_free(&c);
    // Preset files with mistakes.
    const char *bad[][2] = {
        {"{\"train\":{\"learning_rat\":1}}", "train.learning_rat"},
        {"{\"trian\":{\"learning_rate\":1}}", "trian"},
        {"{\"train\":{\"learning_rate\":\"fast\"}}", "must be a number"},
        {"{\"base\":\"does-not-exist.json\"}", "does-not-exist.json"},
        {"{\"train\": [1]}", "train"},
        {"not json", "not valid JSON"},
    };
    for (int i = 0; i < 6; i++) {
        write_file_atomic(p, bad[i][0], strlen(bad[i][0]));
        cfg_init_defaults(&c);
        CHECK(cfg_load(&c, p) != 0, "bad preset %d accepted", i);
        CHECK(strstr(llava_errmsg(), bad[i][1]) != NULL, "preset %d: \"%s\" lacks \"%s\"", i, llava_errmsg(),
              bad[i][1]);
        CHECK(strstr(llava_errmsg(), "resolved.json") != NULL || i == 3, "preset %d error names the file", i);
        cfg_free(&c);
    }
    // A base cycle ends with an error instead of recursing forever.
    write_file_atomic(p, "{\"base\":\"resolved.json\"}", 24);
    cfg_init_defaults(&c);
    CHECK(cfg_load(&c, p) != 0, "cycle accepted");
    CHECK_ERR_HAS("deeper than 8");
    cfg_free(&c);
    free(p);
    check_rm_rf(dir);
    free(dir);
}

int main(void) {
    test_presets();
    test_overrides_and_errors();
    return check_done();
}
