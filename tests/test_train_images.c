// The memory plan of runs whose samples bring several images into the tower (LLaVA-NeXT's multi-image lists, a
// video's frames): the trainer plans and reserves per_device_batch x the dataset's most images per sample, so the
// activation arenas never grow during the run and the plan holds what the run holds.
//
//   - on the demo's video world (four-frame videos, stage 2 taking 2 frames: data.video_frames 2), two steps: the
//     run's plan equals `llava plan`'s with data.max_images_per_sample 2 to the byte, its activations exceed the
//     one-image plan's, and the CPU backend's measured peak is within 5% of the plan (test_train's bound for
//     plan vs peak); the arenas were reserved once (the peak is not above the plan by the image rows of a regrowth);
//   - data.max_images_per_sample given by the run is what the plan holds; llava plan with data.video_frames N
//     plans N images per sample.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "app/demo.h"
#include "check.h"
#include "common/util.h"
#include "kernels/backend.h"
#include "train/config.h"
#include "train/memplan.h"
#include "train/settings.h"
#include "train/trainer.h"

static char *world;

// The plan `llava plan` prints for stage2.json with `sets`, on one rank.
static uint64_t plan_of(const char *const *sets, int n, uint64_t *acts) {
    char *p = path_join(world, "stage2.json");
    run_settings s;
    model_config mc;
    mem_plan mp = {0};
    int rc = settings_load(p, sets, n, &s);
    int loaded = rc == 0;
    if (rc == 0) rc = train_model_config(&s, &mc);
    if (rc == 0) rc = mem_plan_make(&s, &mc, 1, &mp);
    CHECK(rc == 0, "plan: %s", llava_errmsg());
    if (loaded) settings_free(&s);
    free(p);
    if (acts) *acts = mp.activations;
    return mp.total;
}

static void test_video_plan(void) {
    char *out = path_join(world, "video_run"), *o = xasprintf("checkpoint.output_dir=%s", out);
    const char *sets[] = {o,
                          "train.max_steps=2",
                          "train.device=cpu",
                          "model.pretrain_mm_mlp_adapter=null",
                          "train.gradient_checkpointing=false",
                          "data.video_frames=2"};
    char *p = path_join(world, "stage2.json");
    run_settings s;
    int rc = settings_load(p, sets, 6, &s), loaded = rc == 0;
    train_stats st;
    train_options opt = {.quiet = 1, .stats = &st};
    if (rc == 0) rc = train_run_settings(&s, &opt);
    CHECK(rc == 0, "video run: %s", llava_errmsg());
    if (rc == 0) {
        // What the plan says for two images per sample, and for one.
        const char *two[] = {"train.gradient_checkpointing=false", "data.max_images_per_sample=2"};
        const char *one[] = {"train.gradient_checkpointing=false", "data.max_images_per_sample=1"};
        uint64_t a2 = 0, a1 = 0, p2 = plan_of(two, 2, &a2), p1 = plan_of(one, 2, &a1);
        double rel = fabs((double)st.backend_peak_bytes - (double)st.plan_total_bytes) / (double)st.plan_total_bytes;
        CHECK(st.steps == 2 && st.plan_total_bytes == p2 && st.plan_activation_bytes == a2,
              "the run planned %llu bytes (activations %llu); two images per sample plan %llu (%llu)",
              (unsigned long long)st.plan_total_bytes, (unsigned long long)st.plan_activation_bytes,
              (unsigned long long)p2, (unsigned long long)a2);
        CHECK(a2 > a1 && p2 > p1, "two frames per sample plan no more than one: %llu vs %llu", (unsigned long long)a2,
              (unsigned long long)a1);
        CHECK(rel <= 0.05 && st.backend_peak_bytes <= st.plan_total_bytes + (a2 - a1) / 2,
              "plan %llu bytes, measured peak %llu (%.2f%% apart)", (unsigned long long)st.plan_total_bytes,
              (unsigned long long)st.backend_peak_bytes, 100 * rel);
        printf(
            "video world, 2 frames per sample: plan %llu bytes (activations %llu; one image per sample %llu), "
            "measured peak %llu: %.3f%% apart\n",
            (unsigned long long)st.plan_total_bytes, (unsigned long long)a2, (unsigned long long)a1,
            (unsigned long long)st.backend_peak_bytes, 100 * rel);
    }
    // data.video_frames N plans N images per sample in `llava plan`; data.max_images_per_sample wins over it.
    const char *vf[] = {"data.video_frames=3"}, *three[] = {"data.max_images_per_sample=3"},
               *both[] = {"data.video_frames=3", "data.max_images_per_sample=5"},
               *five[] = {"data.max_images_per_sample=5"};
    CHECK(plan_of(vf, 1, NULL) == plan_of(three, 1, NULL), "data.video_frames 3 plans 3 images per sample");
    CHECK(plan_of(both, 2, NULL) == plan_of(five, 1, NULL), "data.max_images_per_sample wins over video_frames");
    if (loaded) settings_free(&s);
    free(p), free(o), free(out);
}

int main(void) {
    llava_cpu_set_threads(1);
    world = check_tmpdir();
    CHECK(demo_make_world_ex(world, 48, 0, 1, NULL, "cpu", NULL, NULL, 0, DEMO_VIDEO) == 0, "%s", llava_errmsg());
    test_video_plan();
    check_rm_rf(world);
    free(world);
    return check_done();
}
