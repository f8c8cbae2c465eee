// llava plan CONFIG.json [--world N] [--gpu-gib G] [--acts] [--set key=value ...]
// The memory plan of a training run per rank (train/memplan.h) without loading any weights: the
// model's config.json files are all it reads.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common/util.h"
#include "train/config.h"
#include "train/memplan.h"
#include "train/trainer.h"

#define PLAN_USAGE "usage: llava plan CONFIG.json [--world N] [--gpu-gib G] [--acts] [--set key=value ...]"

int cmd_plan(int argc, char **argv) {
    train_config c;
    cfg_init_defaults(&c);
    const char *preset = NULL;
    int world = 8, rc = 0, acts = 0;
    double gib = 80;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            if (!preset) rc = llava_fail("give the preset before --set");
            else rc = cfg_set(&c, argv[++i]);
        } else if (strcmp(argv[i], "--world") == 0 && i + 1 < argc) {
            world = atoi(argv[++i]);
            if (world < 1 || world > 1 << 20) rc = llava_fail("--world %s: need a positive rank count", argv[i]);
        } else if (strcmp(argv[i], "--gpu-gib") == 0 && i + 1 < argc) {
            gib = atof(argv[++i]);
            if (!(gib > 0)) rc = llava_fail("--gpu-gib %s: need a positive size", argv[i]);
        } else if (strcmp(argv[i], "--acts") == 0) {
            acts = 1;
        } else if (argv[i][0] != '-' && !preset) {
            preset = argv[i];
            rc = cfg_load(&c, preset);
        } else {
            rc = llava_fail("unknown argument %s (%s)", argv[i], PLAN_USAGE);
        }
    }
    if (rc == 0 && !preset) rc = llava_fail(PLAN_USAGE);
    model_config mc;
    mem_plan p;
    run_settings s;
    int have_s = 0;
    if (rc == 0) rc = settings_from_config(&c, &s);
    if (rc == 0) have_s = 1;
    if (rc == 0) rc = train_model_config(&s, &mc);
    if (rc == 0) rc = mem_plan_make(&s, &mc, world, &p);
    if (rc == 0) {
        int cuda = strcmp(s.train.device, "cuda") == 0;
        mem_plan_print(&p, cuda ? (uint64_t)(gib * (double)(1ull << 30)) : 0, stdout);
        act_plan ap;
        act_shape shape = mem_plan_act_shape(&s);
        if (acts && act_plan_make(&mc, &shape, p.act_bytes, &ap) == 0) {
            act_plan_print(&ap, stdout);
            act_plan_free(&ap);
        }
    } else {
        fprintf(stderr, "llava plan: %s\n", llava_errmsg());
        if (strstr(llava_errmsg(), "model.llm") || strstr(llava_errmsg(), "vision_tower"))
            fprintf(stderr,
                    "  (the plan reads the models' config.json: --set model.llm=DIR --set model.vision_tower=DIR)\n");
    }
    if (have_s) settings_free(&s);
    cfg_free(&c);
    return rc == 0 ? 0 : 1;
}
