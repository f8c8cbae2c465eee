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
    CHECK_EQ_INT(cfg_int(&c, "lora.bits"), 16);
    cfg_free(&c);
    // QLoRA: the LoRA recipe with the frozen LM in NF4, 4 samples per micro-batch, the global batch kept.
    CHECK(load(&c, "configs/llava15-7b-stage2-qlora.json") == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "lora.bits"), 4);
    CHECK_EQ_INT(cfg_int(&c, "lora.r"), 128);
    CHECK_EQ_INT(cfg_int(&c, "train.per_device_train_batch_size"), 4);
    CHECK_EQ_INT(cfg_int(&c, "train.global_batch_size"), 128);
    CHECK(cfg_set(&c, "lora.bits=8") == 0 && cfg_validate(&c) != 0, "lora.bits 8 accepted");
    CHECK_ERR_HAS("lora.bits");
    cfg_free(&c);
    // 13B presets: same hyperparameters, 13B folders.
    const char *names13[] = {"stage1", "stage2", "stage2-lora", "task", "task-lora", "stage2-qlora"};
    for (int i = 0; i < 6; i++) {
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

// The presets of the other language models: LLaVA-1.5's recipe (the 7B presets' hyperparameters) with their LM,
// template and tokenizer rules.
static void test_family_presets(void) {
    static const struct {
        const char *name, *llm, *tmpl, *mode;
    } fam[] = {
        {"llama3-8b", "./models/Meta-Llama-3-8B-Instruct", "llava_llama_3", "hf431"},
        {"qwen2-7b", "./models/Qwen2-7B-Instruct", "qwen_1_5", "hf431"},
        {"mistral-7b", "./models/Mistral-7B-Instruct-v0.2", "mistral_instruct", "legacy"},
    };
    for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++)
        for (int st = 1; st <= 2; st++) {
            char p[128], ref[64];
            snprintf(p, sizeof p, "configs/llava15-%s-stage%d.json", fam[i].name, st);
            snprintf(ref, sizeof ref, "configs/llava15-7b-stage%d.json", st);
            train_config c, r;
            CHECK(load(&c, p) == 0, "%s: %s", p, llava_errmsg());
            CHECK(load(&r, ref) == 0, "%s: %s", ref, llava_errmsg());
            CHECK_EQ_STR(cfg_str(&c, "model.llm"), fam[i].llm);
            CHECK_EQ_STR(cfg_str(&c, "data.template"), st == 1 ? "plain" : fam[i].tmpl);
            CHECK_EQ_STR(cfg_str(&c, "data.tokenizer_mode"), fam[i].mode);
            CHECK_EQ_INT(cfg_int(&c, "train.stage"), st);
            const char *same[] = {"train.learning_rate", "train.warmup_ratio", "train.weight_decay",
                                  "train.num_train_epochs"};
            for (int k = 0; k < 4; k++) CHECK(cfg_float(&c, same[k]) == cfg_float(&r, same[k]), "%s %s", p, same[k]);
            CHECK_EQ_INT(cfg_int(&c, "train.global_batch_size"), cfg_int(&r, "train.global_batch_size"));
            CHECK(strstr(cfg_str(&c, "checkpoint.output_dir"), fam[i].name) != NULL, "%s: its own output", p);
            if (st == 2)
                CHECK(strstr(cfg_str(&c, "model.pretrain_mm_mlp_adapter"), fam[i].name) != NULL,
                      "%s: its own stage 1's projector", p);
            cfg_free(&c);
            cfg_free(&r);
        }
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
    // The research variants' keys: a projector name outside LLaVA's, a stride of 0, two reductions at once.
    CHECK(cfg_set(&c, "model.mm_projector_type=mlp0x_gelu") == 0 && cfg_validate(&c) != 0, "mlp0x_gelu validated");
    CHECK_ERR_HAS("mlp{N}x_gelu");
    cfg_set(&c, "model.mm_projector_type=mlp3x_gelu");
    CHECK(cfg_validate(&c) == 0, "mlp3x_gelu refused: %s", llava_errmsg());
    CHECK(cfg_set(&c, "model.mm_spatial_pool_stride=0") == 0 && cfg_validate(&c) != 0, "stride 0 validated");
    CHECK_ERR_HAS("mm_spatial_pool_stride");
    cfg_set(&c, "model.mm_spatial_pool_stride=2");
    CHECK(cfg_set(&c, "model.mm_spatial_pool_mode=average") == 0 && cfg_set(&c, "model.mm_vision_keep_tokens=9") == 0 &&
              cfg_validate(&c) != 0,
          "pooling and pruning at once validated");
    CHECK_ERR_HAS("choose one");
    CHECK(cfg_set(&c, "model.mm_spatial_pool_mode=ring") != 0, "pool mode ring accepted");
    CHECK(cfg_set(&c, "model.mm_vision_image_size=-8") == 0 && cfg_validate(&c) != 0, "negative image size validated");
    CHECK_ERR_HAS("mm_vision_image_size");
    cfg_set(&c, "model.mm_vision_image_size=0");
    cfg_set(&c, "model.mm_vision_keep_tokens=0");
    cfg_set(&c, "model.mm_spatial_pool_mode=none");
    cfg_set(&c, "model.mm_projector_type=mlp2x_gelu");
    // The tower's knobs: a layer count without the tower trainable, a negative one, a tower rate of 0.
    CHECK(cfg_set(&c, "train.vision_unfreeze_last=2") == 0 && cfg_validate(&c) != 0, "unfreeze_last without vision");
    CHECK_ERR_HAS("lacks \"vision\"");
    CHECK(cfg_set(&c, "train.trainable=vision,projector,lm") == 0 && cfg_validate(&c) == 0, "vision refused: %s",
          llava_errmsg());
    CHECK(cfg_set(&c, "train.vision_unfreeze_last=-1") == 0 && cfg_validate(&c) != 0, "negative layer count");
    CHECK_ERR_HAS("vision_unfreeze_last");
    cfg_set(&c, "train.vision_unfreeze_last=0");
    CHECK(cfg_set(&c, "train.mm_vision_tower_lr=0") == 0 && cfg_validate(&c) != 0, "tower lr 0 validated");
    CHECK_ERR_HAS("mm_vision_tower_lr");
    CHECK(cfg_set(&c, "train.mm_vision_tower_lr=2e-6") == 0 && cfg_validate(&c) == 0, "tower lr refused");
    cfg_set(&c, "train.mm_vision_tower_lr=null");
    cfg_set(&c, "train.trainable=projector,lm");
    CHECK(cfg_set(&c, "train.trainable=projector,everything") != 0, "unknown module accepted");
    CHECK_ERR_HAS("everything");
    CHECK(cfg_set(&c, "novalue") != 0, "no '=' accepted");
    CHECK(cfg_set(&c, "train.zero_stage=4") == 0 && cfg_validate(&c) != 0, "ZeRO-4 validated");
    CHECK_ERR_HAS("0, 1, 2 or 3");
    CHECK(cfg_set(&c, "train.zero_stage=3") == 0 && cfg_validate(&c) == 0, "ZeRO-3 refused: %s", llava_errmsg());
    // ZeRO-3's gathers must be the same on every rank: one pass per micro-batch.
    CHECK(cfg_set(&c, "data.token_budget=4096") == 0 && cfg_validate(&c) != 0, "ZeRO-3 with a token budget validated");
    CHECK_ERR_HAS("token_budget");
    cfg_set(&c, "data.token_budget=0");
    CHECK(cfg_set(&c, "train.offload_optimizer=gpu") != 0, "offload_optimizer gpu accepted");
    CHECK(cfg_set(&c, "train.offload_optimizer=cpu") == 0 && cfg_validate(&c) == 0, "offload refused");
    cfg_set(&c, "train.offload_optimizer=none");
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

// A --set that fails must name the key and the text, and leave the config as it was.
static void expect_set_fails(train_config *c, const char *assignment, const char *key, const char *text) {
    char *before = cfg_to_json(c);
    CHECK(cfg_set(c, assignment) != 0, "\"%s\" accepted", assignment);
    CHECK(strstr(llava_errmsg(), key) != NULL, "\"%s\": error \"%s\" lacks the key \"%s\"", assignment, llava_errmsg(),
          key);
    CHECK(strstr(llava_errmsg(), text) != NULL, "\"%s\": error \"%s\" lacks the text \"%s\"", assignment,
          llava_errmsg(), text);
    char *after = cfg_to_json(c);
    CHECK(strcmp(before, after) == 0, "\"%s\" changed the config although it failed", assignment);
    free(before);
    free(after);
}

// Values are read whole: a value followed by anything but whitespace is an error, never its prefix.
static void test_strict_values(void) {
    train_config c;
    cfg_init_defaults(&c);
    // Numbers with something after them.
    expect_set_fails(&c, "train.max_steps=1,000", "train.max_steps", "\"1,000\"");
    CHECK_ERR_HAS("integer");
    expect_set_fails(&c, "train.learning_rate=1/1000", "train.learning_rate", "\"1/1000\"");
    CHECK_ERR_HAS("number");
    expect_set_fails(&c, "train.max_steps=0x10", "train.max_steps", "\"0x10\"");
    expect_set_fails(&c, "train.max_steps=16abc", "train.max_steps", "\"16abc\"");
    expect_set_fails(&c, "train.max_steps=1.5.3", "train.max_steps", "\"1.5.3\"");
    expect_set_fails(&c, "train.learning_rate=2e-5x", "train.learning_rate", "\"2e-5x\"");
    expect_set_fails(&c, "train.learning_rate=", "train.learning_rate", "\"\"");
    expect_set_fails(&c, "train.max_steps=1 2", "train.max_steps", "\"1 2\"");
    // Numbers out of range or not finite.
    expect_set_fails(&c, "train.learning_rate=1e999", "train.learning_rate", "finite");
    expect_set_fails(&c, "train.max_steps=1e10", "train.max_steps", "integer");
    expect_set_fails(&c, "train.max_steps=1.5", "train.max_steps", "1.5");
    // Booleans, null, strings and lists with something after them.
    expect_set_fails(&c, "train.bf16=true1", "train.bf16", "\"true1\"");
    expect_set_fails(&c, "train.bf16=falsey", "train.bf16", "\"falsey\"");
    expect_set_fails(&c, "train.bf16=1", "train.bf16", "true or false");
    expect_set_fails(&c, "train.bf16=null", "train.bf16", "true or false");
    expect_set_fails(&c, "train.mm_projector_lr=nullx", "train.mm_projector_lr", "\"nullx\"");
    expect_set_fails(&c, "train.max_steps=null", "train.max_steps", "integer");  // null is not an integer
    expect_set_fails(&c, "model.llm=\"a\"b", "model.llm", "\"a\"b");
    expect_set_fails(&c, "train.trainable=[\"projector\"]x", "train.trainable", "[\"projector\"]x");
    expect_set_fails(&c, "train.trainable=[\"projector\",]", "train.trainable", "[\"projector\",]");
    expect_set_fails(&c, "train.trainable=[\"projector\"][\"lm\"]", "train.trainable", "[\"projector\"][\"lm\"]");
    expect_set_fails(&c, "train.trainable=[1]", "train.trainable", "list of strings");
    expect_set_fails(&c, "train.trainable=projector,,lm", "train.trainable", "projector,,lm");
    CHECK_ERR_HAS("empty item");
    expect_set_fails(&c, "train.trainable=projector,", "train.trainable", "projector,");

    // Valid values, read exactly.
    CHECK(cfg_set(&c, "train.learning_rate=1e-5") == 0, "%s", llava_errmsg());
    CHECK(cfg_float(&c, "train.learning_rate") == 1e-5, "1e-5 read as %.17g", cfg_float(&c, "train.learning_rate"));
    CHECK(cfg_set(&c, "train.learning_rate=0.001") == 0 && cfg_float(&c, "train.learning_rate") == 0.001, "0.001");
    CHECK(cfg_set(&c, "model.mm_vision_select_layer=-2") == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "model.mm_vision_select_layer"), -2);
    CHECK(cfg_set(&c, "data.model_max_length=2048") == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "data.model_max_length"), 2048);
    CHECK(cfg_set(&c, "train.max_steps= 7 ") == 0, "surrounding whitespace: %s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "train.max_steps"), 7);
    CHECK(cfg_set(&c, "train.max_steps=1e3") == 0, "%s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "train.max_steps"), 1000);
    CHECK(cfg_set(&c, "train.bf16=false") == 0 && !cfg_bool(&c, "train.bf16"), "false");
    CHECK(cfg_set(&c, "train.bf16=true") == 0 && cfg_bool(&c, "train.bf16"), "true");
    CHECK(cfg_set(&c, "train.mm_projector_lr=3e-5") == 0 && cfg_float(&c, "train.mm_projector_lr") == 3e-5, "lr");
    CHECK(cfg_set(&c, "train.mm_projector_lr=null") == 0 && isnan(cfg_float(&c, "train.mm_projector_lr")), "null");
    CHECK(cfg_set(&c, "model.llm=null") == 0 && cfg_str(&c, "model.llm") == NULL, "null string");
    CHECK(cfg_set(&c, "model.llm=\"a b\"") == 0, "%s", llava_errmsg());
    CHECK_EQ_STR(cfg_str(&c, "model.llm"), "a b");
    CHECK(cfg_set(&c, "model.llm=1,000") == 0, "a string takes any text: %s", llava_errmsg());
    CHECK_EQ_STR(cfg_str(&c, "model.llm"), "1,000");
    CHECK(cfg_set(&c, "train.trainable=[\"projector\", \"lm\"] ") == 0, "%s", llava_errmsg());
    CHECK(cfg_list_len(&c, "train.trainable") == 2 && cfg_list_has(&c, "train.trainable", "lm"), "JSON list");
    CHECK(cfg_set(&c, "train.trainable=vision,projector") == 0, "%s", llava_errmsg());
    CHECK(cfg_list_len(&c, "train.trainable") == 2 && cfg_list_has(&c, "train.trainable", "vision"), "comma list");
    CHECK(cfg_set(&c, "train.freeze=") == 0 && cfg_list_len(&c, "train.freeze") == 0, "empty list");
    CHECK(cfg_set(&c, "train.freeze=[]") == 0 && cfg_list_len(&c, "train.freeze") == 0, "[]");
    cfg_free(&c);

    // Preset files: the JSON object and nothing after it but whitespace; each key once.
    char *dir = check_tmpdir();
    char *p = path_join(dir, "preset.json");
    const char *ok = "{\"train\": {\"max_steps\": 5}}\n \t\r\n";
    write_file_atomic(p, ok, strlen(ok));
    cfg_init_defaults(&c);
    CHECK(cfg_load(&c, p) == 0, "trailing whitespace: %s", llava_errmsg());
    CHECK_EQ_INT(cfg_int(&c, "train.max_steps"), 5);
    cfg_free(&c);
    const char *bad[][2] = {
        {"{\"train\": {\"max_steps\": 5}} junk", "junk"},
        {"{\"train\": {\"max_steps\": 5}}}", "}"},
        {"{\"train\": {\"max_steps\": 5}}{\"train\": {\"max_steps\": 6}}", "{\"train\""},
        {"{\"train\": {\"max_steps\": 5}}\n,", ","},
        {"{\"train\": {\"max_steps\": 5, \"max_steps\": 6}}", "train.max_steps"},
        {"{\"train\": {\"max_steps\": 5}, \"train\": {\"seed\": 1}}", "\"train\""},
    };
    for (int i = 0; i < 6; i++) {
        write_file_atomic(p, bad[i][0], strlen(bad[i][0]));
        cfg_init_defaults(&c);
        CHECK(cfg_load(&c, p) != 0, "preset %d accepted: %s", i, bad[i][0]);
        CHECK(strstr(llava_errmsg(), "preset.json") != NULL, "preset %d: error \"%s\" does not name the file", i,
              llava_errmsg());
        CHECK(strstr(llava_errmsg(), bad[i][1]) != NULL, "preset %d: error \"%s\" lacks \"%s\"", i, llava_errmsg(),
              bad[i][1]);
        cfg_free(&c);
    }
    free(p);
    check_rm_rf(dir);
    free(dir);
}

int main(void) {
    test_presets();
    test_family_presets();
    test_overrides_and_errors();
    test_strict_values();
    return check_done();
}
