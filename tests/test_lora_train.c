// LoRA training end to end on the demo (the demo_model fixture; LLAVA_DEMO_DIR names its folder), the way
// finetune_task_lora.sh fine-tunes a released LLaVA on a user's task:
//   - the base: the demo's stage 2 cut to 1 epoch (a model that has learned the language but answers only
//     ~0.6 of the held-out questions); then LoRA (r 16, alpha 32, dropout 0.05, all seven LM linears) and
//     the projector for 3 epochs on a frozen LM, the adapter written as a PEFT folder;
//   - the adapter, run unmerged (`llava eval --adapter`), answers >= 0.90 of the held-out questions with
//     their images and no more than chance + 0.10 without (the demo's own targets; chance 0.29), and at
//     least 0.2 more than its base: it learned;
//   - `llava merge --base` and `llava merge --config` write the same merged model byte for byte, and the
//     merged model scores what the unmerged adapter scores;
//   - QLoRA (lora.bits 4: the frozen LM's linears through bitsandbytes' NF4, emulated) on the same base for 4
//     epochs reaches the same targets;
//   - a LoRA run killed (SIGKILL, LLAVA_DEBUG_FAULT) and resumed gives its uninterrupted twin's loss curve
//     and adapter bit for bit.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "model/io/safetensors.h"
#include "train_run.h"

static const char *demo, *bin;
static char *tmp;

static int run(const char *args) {
    char *err = NULL;
    int rc = check_run(bin, tmp, args, NULL, &err);
    if (rc != 0) fprintf(stderr, "llava %s: exit %d\n%s\n", args, rc, err);
    free(err);
    return rc;
}

// accuracy_with_image and accuracy_blind of `llava eval --benchmark demo` on a model (and adapter).
static void evaluate(const char *model, const char *adapter, const char *out, double *acc, double *blind) {
    char *args =
        xasprintf("eval --model %s%s%s --benchmark demo --data %s/data --tokenizer %s/tokenizer.model --out %s", model,
                  adapter ? " --adapter " : "", adapter ? adapter : "", demo, demo, out);
    CHECK(run(args) == 0, "llava %s", args);
    free(args);
    char *sp = path_join(out, "scores.json");
    char *js = read_file(sp, 1 << 20, NULL);
    const char *a = js ? strstr(js, "\"accuracy_with_image\"") : NULL,
               *b = js ? strstr(js, "\"accuracy_blind\"") : NULL;
    *acc = a ? atof(strchr(a, ':') + 1) : -1;
    *blind = b ? atof(strchr(b, ':') + 1) : -1;
    CHECK(a && b, "%s holds no accuracies", sp);
    free(js);
    free(sp);
}

static char *write_preset(const char *name, const char *json) {
    char *p = path_join(tmp, name);
    CHECK(write_file_atomic(p, json, strlen(json)) == 0, "%s", llava_errmsg());
    return p;
}

// The tensor names of a weight file, sorted and joined (for comparing two folders' key sets).
static char *tensor_names(const char *path) {
    st_set s;
    if (st_set_open(&s, path) != 0) return xstrdup(llava_errmsg());
    size_t cap = 1, k = 0;
    for (int i = 0; i < s.n_entries; i++) cap += strlen(s.entries[i]->name) + 1;
    char *out = xcalloc(cap, 1);
    for (int i = 0; i < s.n_entries; i++) k += (size_t)sprintf(out + k, "%s\n", s.entries[i]->name);
    st_set_close(&s);
    return out;
}

static int same_file(const char *a, const char *b) {
    size_t la = 0, lb = 0;
    char *x = read_file(a, 1 << 26, &la), *y = read_file(b, 1 << 26, &lb);
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

int main(void) {
    demo = getenv("LLAVA_DEMO_DIR");
    bin = getenv("LLAVA_BIN");
    CHECK(demo && bin, "LLAVA_DEMO_DIR and LLAVA_BIN must be set (run through ctest)");
    if (!demo || !bin) return check_done();
    tmp = check_tmpdir();

    // The base: stage 2 for one epoch.
    char *j = xasprintf(
        "{\"base\": \"%s/stage2.json\", \"train\": {\"num_train_epochs\": 1}, "
        "\"checkpoint\": {\"output_dir\": \"%s/base\"}}",
        demo, tmp);
    char *base_preset = write_preset("base.json", j);
    free(j);
    char *args = xasprintf("train %s --quiet", base_preset);
    CHECK(run(args) == 0, "the base run");
    free(args);
    char *base = path_join(tmp, "base/model");

    // LoRA on it, as finetune_task_lora.sh: model.init the whole model, the projector beside the adapters.
    j = xasprintf(
        "{\"base\": \"%s/stage2.json\", \"model\": {\"init\": \"%s\", \"pretrain_mm_mlp_adapter\": null, "
        "\"llm\": null, \"vision_tower\": null}, \"train\": {\"trainable\": [\"projector\", \"lora\"], "
        "\"learning_rate\": 2e-3, \"mm_projector_lr\": 2e-4, \"num_train_epochs\": 3}, \"lora\": "
        "{\"enabled\": true, \"r\": 16, \"alpha\": 32, \"dropout\": 0.05}, \"checkpoint\": {\"output_dir\": "
        "\"%s/lora\"}}",
        demo, base, tmp);
    char *lora_preset = write_preset("lora.json", j);
    free(j);
    args = xasprintf("train %s --quiet", lora_preset);
    CHECK(run(args) == 0, "the LoRA run");
    free(args);
    char *adapter = path_join(tmp, "lora/adapter");
    char *cfgp = path_join(adapter, "adapter_config.json"), *wp = path_join(adapter, "adapter_model.safetensors");
    CHECK(file_exists(cfgp) && file_exists(wp), "the run wrote no PEFT folder in %s", adapter);

    double a0, b0, a1, b1, a2, b2;
    char *e0 = path_join(tmp, "eval-base"), *e1 = path_join(tmp, "eval-lora"), *e2 = path_join(tmp, "eval-merged");
    evaluate(base, NULL, e0, &a0, &b0);
    evaluate(base, adapter, e1, &a1, &b1);
    CHECK(a1 >= 0.90, "LoRA: accuracy with image %.3f (>= 0.90 wanted)", a1);
    CHECK(b1 <= 0.2917 + 0.10, "LoRA: accuracy blind %.3f (chance 0.29 + 0.10 at most)", b1);
    CHECK(a1 >= a0 + 0.2, "LoRA %.3f against its base %.3f: it did not learn", a1, a0);

    // Merged two ways: the same bytes; the merged model scores as the adapter does.
    char *m1 = path_join(tmp, "merged-base"), *m2 = path_join(tmp, "merged-config");
    args = xasprintf("merge --base %s --adapter %s --out %s", base, adapter, m1);
    CHECK(run(args) == 0, "llava %s", args);
    free(args);
    args = xasprintf("merge --config %s --adapter %s --out %s", lora_preset, adapter, m2);
    CHECK(run(args) == 0, "llava %s", args);
    free(args);
    char *w1 = path_join(m1, "model.safetensors"), *w2 = path_join(m2, "model.safetensors");
    CHECK(same_file(w1, w2), "merge --base and merge --config differ");
    // The merged folder holds every tensor the base's does (the tower's unused layers too), no adapter.
    char *bw = path_join(base, "model.safetensors"), *n0 = tensor_names(bw), *n1 = tensor_names(w1);
    CHECK(strcmp(n0, n1) == 0, "the merged folder's tensors are not the base's:\n%s---\n%s", n0, n1);
    free(bw);
    free(n0);
    free(n1);
    evaluate(m1, NULL, e2, &a2, &b2);
    CHECK(fabs(a2 - a1) <= 0.02 && fabs(b2 - b1) <= 0.02, "merged %.3f / %.3f against unmerged %.3f / %.3f", a2, b2, a1,
          b1);
    printf("  base %.3f / %.3f blind; LoRA unmerged %.3f / %.3f; merged %.3f / %.3f\n", a0, b0, a1, b1, a2, b2);

    // QLoRA: the same recipe with the LM's linears through NF4, one more epoch.
    {
        char *qout = path_join(tmp, "qlora"), *qe = path_join(tmp, "eval-qlora"), *qa = path_join(qout, "adapter");
        args = xasprintf(
            "train %s --quiet --set lora.bits=4 --set train.num_train_epochs=4 --set "
            "checkpoint.output_dir=%s",
            lora_preset, qout);
        CHECK(run(args) == 0, "the QLoRA run");
        free(args);
        double aq, bq;
        evaluate(base, qa, qe, &aq, &bq);
        CHECK(aq >= 0.90 && bq <= 0.2917 + 0.10, "QLoRA: %.3f with image, %.3f blind", aq, bq);
        printf("  QLoRA (NF4 base, 4 epochs): %.3f / %.3f blind\n", aq, bq);
        free(qout);
        free(qe);
        free(qa);
    }

    // Killed at step 25 (checkpoints every 10) and resumed, against 30 steps without a stop.
    const char *sets[] = {"train.max_steps=30", "checkpoint.save_steps=10"};
    char *twin = path_join(tmp, "twin"), *killed = path_join(tmp, "killed");
    CHECK(test_train_preset(lora_preset, twin, NULL, 0, sets, 2, 0, 0) == 0, "%s", llava_errmsg());
    args = xasprintf(
        "train %s --quiet --set checkpoint.output_dir=%s --set train.max_steps=30 --set "
        "checkpoint.save_steps=10",
        lora_preset, killed);
    setenv("LLAVA_DEBUG_FAULT", "0:25:kill", 1);
    char *err = NULL;
    int st = check_run(bin, tmp, args, NULL, &err);
    unsetenv("LLAVA_DEBUG_FAULT");
    CHECK(st != 0, "the run meant to be killed at step 25 exited %d", st);
    free(err);
    free(args);
    CHECK(test_train_preset(lora_preset, killed, NULL, 0, sets, 2, 1, 0) == 0, "resume: %s", llava_errmsg());
    char *c1 = test_curve(twin), *c2 = test_curve(killed);
    CHECK(strlen(c1) > 0 && strcmp(c1, c2) == 0, "the resumed curve differs:\n%s---\n%s", c1, c2);
    char *a_twin = path_join(twin, "adapter/adapter_model.safetensors"),
         *a_killed = path_join(killed, "adapter/adapter_model.safetensors");
    CHECK(same_file(a_twin, a_killed), "the resumed run's adapter differs from its twin's");
    printf("  killed at step 25 and resumed: curve and adapter equal to the uninterrupted run's\n");

    check_rm_rf(tmp);
    free(c1);
    free(c2);
    free(a_twin);
    free(a_killed);
    free(twin);
    free(killed);
    free(w1);
    free(w2);
    free(m1);
    free(m2);
    free(e0);
    free(e1);
    free(e2);
    free(cfgp);
    free(wp);
    free(adapter);
    free(lora_preset);
    free(base_preset);
    free(base);
    free(tmp);
    return check_done();
}
