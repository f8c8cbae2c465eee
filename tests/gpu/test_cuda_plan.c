// `llava plan` against a run on the GPU: the CUDA backend's allocator counts every block it hands
// out (parameters, gradients, fp32 masters, AdamW's moments, the activation arenas, the loss
// ledger), and its peak over a run must agree within 5% with the plan's total less its fixed 2 GiB
// reserve (the CUDA context, cuBLAS's workspace, staging and NCCL buffers, which the allocator does
// not hand out). The device's own count (cudaMemGetInfo, through llava_backend_describe) is
// printed beside them: it includes the context and libraries, so it is information, not a check.
// Stage 2 of the demo world, with and without activation checkpointing, two steps each.
#include <math.h>
#include <string.h>

#include "../check.h"
#include "app/demo.h"
#include "common/util.h"
#include "train/config.h"
#include "train/trainer.h"

int main(void) {
    llava_backend *be = test_cuda();  // skips without a device
    llava_backend_info before;
    llava_backend_describe(be, &before);
    char *world = check_tmpdir();
    CHECK(demo_make_world_on(world, 64, 0, 1, NULL, "cuda") == 0, "%s", llava_errmsg());
    const char *ckpt[2] = {"train.gradient_checkpointing=true", "train.gradient_checkpointing=false"};
    for (int i = 0; i < 2; i++) {
        char *out = xasprintf("%s/plan%d", world, i);
        char *p = path_join(world, "stage2.json");
        char *o = xasprintf("checkpoint.output_dir=%s", out);
        const char *sets[] = {o, ckpt[i], "train.max_steps=2", "model.pretrain_mm_mlp_adapter=null"};
        run_settings c;
        int rc = settings_load(p, sets, 4, &c), loaded = rc == 0;
        train_stats st;
        train_options opt = {.quiet = 1, .stats = &st};
        if (rc == 0) rc = train_run_settings(&c, &opt);
        CHECK(rc == 0, "%s: %s", ckpt[i], llava_errmsg());
        if (rc == 0) {
            double want = (double)st.plan_total_bytes - 2.0 * (1u << 30);
            double rel = fabs((double)st.backend_peak_bytes - want) / want;
            CHECK(st.steps == 2 && want > 0 && rel <= 0.05,
                  "%s: plan less reserve %.0f bytes, allocator peak %llu (%.2f%%)", ckpt[i], want,
                  (unsigned long long)st.backend_peak_bytes, 100 * rel);
            printf(
                "%s: plan less reserve %.0f bytes, allocator peak %llu: %.3f%% apart; device memory in use %llu "
                "before the run, %llu after its first step (cudaMemGetInfo)\n",
                ckpt[i], want, (unsigned long long)st.backend_peak_bytes, 100 * rel,
                (unsigned long long)(before.memory_total - before.memory_free),
                (unsigned long long)st.device_used_bytes);
        }
        if (loaded) settings_free(&c);
        free(o);
        free(p);
        free(out);
    }
    check_rm_rf(world);
    free(world);
    return check_done();
}
