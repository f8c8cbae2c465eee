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

static void run(const char *cfg, llava_backend *be, trainable_set ts, result *r) {
    const llava_ops *ops = be->ops;
    char dir[256], inputs[256];
    snprintf(dir, sizeof dir, "tests/data/golden/model/%s/model", cfg);
    snprintf(inputs, sizeof inputs, "tests/data/golden/model/%s/inputs.safetensors", cfg);
    memset(r, 0, sizeof *r);
    llava_model m;
    CHECK(llava_model_load(&m, dir, be) == 0, "%s", llava_errmsg());
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
    return check_done();
}
