// llava plan CONFIG.json [--world N] [--gpu-gib G] [--set key=value ...]
// The memory plan of a training run per rank (train/memplan.h) without loading any weights: the
// model's config.json files are all it reads.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "train/config.h"
#include "train/memplan.h"
#include "train/trainer.h"
#include "commands.h"

#define PLAN_USAGE "usage: llava plan CONFIG.json [--world N] [--gpu-gib G] [--set key=value ...]"

int cmd_plan(int argc, char **argv) {
    train_config c;
    cfg_init_defaults(&c);
    const char *preset = NULL;
    int world = 8, rc = 0;
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
    if (rc == 0) rc = train_model_config(&c, &mc);
    if (rc == 0) rc = mem_plan_make(&c, &mc, world, &p);
    if (rc == 0) {
        int cuda = strcmp(cfg_str(&c, "train.device"), "cuda") == 0;
        mem_plan_print(&p, cuda ? (uint64_t)(gib * (double)(1ull << 30)) : 0, stdout);
    } else {
        fprintf(stderr, "llava plan: %s\n", llava_errmsg());
        if (strstr(llava_errmsg(), "model.llm") || strstr(llava_errmsg(), "vision_tower"))
            fprintf(stderr, "  (the plan reads the models' config.json: --set model.llm=DIR --set model.vision_tower=DIR)\n");
    }
    cfg_free(&c);
    return rc == 0 ? 0 : 1;
}
