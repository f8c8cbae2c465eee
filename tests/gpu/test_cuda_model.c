// The whole model on the CUDA backend against the CPU backend, on the transformers goldens'
// models and inputs: logits and every trainable gradient ||diff||/||ref|| <= 2e-2 (bf16 storage of
// weights and activations against fp32: a few 2^-9 roundings per layer), loss within 1e-2.
// The same model code runs on both backends; only the op table differs.
#include <math.h>
#include <string.h>

#include "../check.h"
#include "common/util.h"
#include "model/batch_hf.h"
#include "model/llava.h"

typedef struct {
    float loss;
    float *logits;
    float *grads[N_GROUPS];
    size_t T, V;
} result;

// One pass on backend `be`; with `adapter`, the LoRA adapter (PEFT's golden) at dropout `p`, its
// masks drawn from the same seed on both backends (ops.h: the same elements are dropped).
static void run_lora(const char *cfg, llava_backend *be, trainable_set ts, const char *adapter, double p, result *r) {
    const llava_ops *ops = be->ops;
    char dir[256], inputs[256];
    snprintf(dir, sizeof dir, "tests/data/golden/model/%s/model", cfg);
    snprintf(inputs, sizeof inputs, "tests/data/golden/model/%s/inputs.safetensors", cfg);
    memset(r, 0, sizeof *r);
    llava_model m;
    llava_load_options lo = {.adapter = adapter};
    CHECK(llava_model_load_opts(&m, dir, be, &lo) == 0, "%s", llava_errmsg());
    m.cfg.lora.dropout = p;
    m.lora_pass_seed = 7;
    llava_model_set_trainable(&m, ts);
    llava_model_zero_grads(&m);
    llava_batch b;
    CHECK(llava_batch_from_file(&b, &m, inputs, NULL, NULL) == 0, "%s", llava_errmsg());
    r->T = (size_t)b.T;
    r->V = (size_t)m.cfg.text.vocab_size;
    r->logits = xmalloc(sizeof(float) * r->T * r->V);
    r->loss = llava_forward_backward(&m, &b, 1, 1.0f, r->logits);
    for (int g = 0; g < N_GROUPS; g++) {
        if (!m.grads[g]) continue;
        r->grads[g] = xmalloc(sizeof(float) * m.pt.group_numel[g]);
        ops->download(be, BUF_GRAD, r->grads[g], m.grads[g], m.pt.group_numel[g]);
    }
    llava_batch_free(&b);
    llava_model_free(&m);
}

static void run(const char *cfg, llava_backend *be, trainable_set ts, result *r) { run_lora(cfg, be, ts, NULL, 0, r); }

// LoRA (the r4 PEFT adapter on tiny64): the adapters' and projector's gradients, without and with
// dropout, within the same bounds.
static void lora(void) {
    for (int k = 0; k < 2; k++) {
        double p = k ? 0.3 : 0.0;
        result cpu, gpu;
        const char *ad = "tests/data/golden/lora/r4/adapter";
        run_lora("tiny64", test_cpu(), TRAIN_PROJECTOR_LORA, ad, p, &cpu);
        run_lora("tiny64", test_cuda(), TRAIN_PROJECTOR_LORA, ad, p, &gpu);
        double el = check_rel_l2(gpu.logits, cpu.logits, cpu.T * cpu.V);
        CHECK(el <= 2e-2 && fabs(gpu.loss - cpu.loss) <= 1e-2, "LoRA dropout %.1f: logits %.3g, loss %.5f vs %.5f", p,
              el, (double)gpu.loss, (double)cpu.loss);
        printf("tiny64 LoRA r4 dropout %.1f: logits %.2e, loss %.5f vs %.5f", p, el, (double)gpu.loss,
               (double)cpu.loss);
        const int groups[2] = {GROUP_PROJECTOR, GROUP_LORA};
        llava_model m;  // the group sizes
        llava_load_options lo = {.adapter = ad};
        CHECK(llava_model_load_opts(&m, "tests/data/golden/model/tiny64/model", test_cpu(), &lo) == 0, "%s",
              llava_errmsg());
        for (int i = 0; i < 2; i++) {
            int g = groups[i];
            CHECK(cpu.grads[g] && gpu.grads[g], "%s gradients missing", GROUP_NAMES[g]);
            if (!cpu.grads[g] || !gpu.grads[g]) continue;
            double eg = check_rel_l2(gpu.grads[g], cpu.grads[g], m.pt.group_numel[g]);
            CHECK(eg <= 2e-2, "LoRA dropout %.1f: %s gradients %.3g", p, GROUP_NAMES[g], eg);
            printf(", %s grads %.2e", GROUP_NAMES[g], eg);
        }
        printf("\n");
        llava_model_free(&m);
        for (int g = 0; g < N_GROUPS; g++) free(cpu.grads[g]), free(gpu.grads[g]);
        free(cpu.logits);
        free(gpu.logits);
    }
}

int main(void) {
    test_cuda();
    const char *cfgs[2] = {"tiny64", "tiny128"};
    trainable_set sets[2] = {TRAIN_PROJECTOR, TRAIN_PROJECTOR_LM};
    for (int c = 0; c < 2; c++)
        for (int s = 0; s < 2; s++) {
            result cpu, gpu;
            run(cfgs[c], test_cpu(), sets[s], &cpu);
            run(cfgs[c], test_cuda(), sets[s], &gpu);
            double el = check_rel_l2(gpu.logits, cpu.logits, cpu.T * cpu.V);
            CHECK(el <= 2e-2, "%s set %d: logits ||diff||/||ref|| %.3g", cfgs[c], s, el);
            CHECK(fabs(gpu.loss - cpu.loss) <= 1e-2, "%s set %d: loss %.5f vs %.5f", cfgs[c], s, (double)gpu.loss,
                  (double)cpu.loss);
            printf("%s %s: logits %.2e, loss %.5f vs %.5f", cfgs[c], s ? "projector+lm" : "projector", el,
                   (double)gpu.loss, (double)cpu.loss);
            // Group-level gradient agreement (every trainable group).
            model_config mc;
            char dir[256];
            snprintf(dir, sizeof dir, "tests/data/golden/model/%s/model", cfgs[c]);
            model_config_load(dir, &mc);
            param_table pt;
            param_table_build(&mc, &pt);
            for (int g = 0; g < N_GROUPS; g++) {
                if (!cpu.grads[g]) continue;
                CHECK(gpu.grads[g] != NULL, "GPU lacks %s gradients", GROUP_NAMES[g]);
                if (!gpu.grads[g]) continue;
                double eg = check_rel_l2(gpu.grads[g], cpu.grads[g], pt.group_numel[g]);
                CHECK(eg <= 2e-2, "%s set %d: %s gradients ||diff||/||ref|| %.3g", cfgs[c], s, GROUP_NAMES[g], eg);
                printf(", %s grads %.2e", GROUP_NAMES[g], eg);
                free(cpu.grads[g]);
                free(gpu.grads[g]);
            }
            printf("\n");
            param_table_free(&pt);
            free(cpu.logits);
            free(gpu.logits);
        }
    lora();
    return check_done();
}
