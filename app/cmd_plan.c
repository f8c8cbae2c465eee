// llava plan CONFIG.json [--world N] [--gpu-gib G] [--acts] [--set key=value ...]
// The memory plan of a training run per rank (train/memplan.h) without loading any weights: the
// model's config.json files are all it reads.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "train/config.h"
#include "train/memplan.h"
#include "train/trainer.h"

static const char USAGE[] =
    "usage: llava plan CONFIG.json [--world N] [--gpu-gib G] [--acts] [--set key=value ...]\n"
    "\n"
    "The memory of a training run per rank (parameters, gradients, optimizer state, activations), bytes per kind,\n"
    "from the preset and the models' config.json files alone (no weights are read).\n"
    "\n"
    "  CONFIG.json      the preset (required; paths resolve as `llava config --help` says)\n"
    "  --world N        ranks the run is spread over: ZeRO shards by it (default 8)\n"
    "  --gpu-gib G      each GPU's memory in GiB, to check the plan against when train.device is cuda\n"
    "                   (default 80)\n"
    "  --acts           also print the activation arenas, buffer by buffer (default: off)\n"
    "  --set key=value  override one key after the preset (repeatable; default: none)\n";

int cmd_plan(int argc, char **argv) {
    static const char *const FLAGS[] = {"--world", "--gpu-gib", "--acts", "--set", "--help"};
    const char *preset = NULL;
    const char **sets = xcalloc((size_t)argc, sizeof *sets);
    int world = 8, rc = 0, acts = 0, n_sets = 0;
    double gib = 80;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            free(sets);
            return 0;
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
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
        } else if (argv[i][0] != '-') {
            rc = llava_fail("%s: one preset only (%s is the first)", argv[i], preset);
        } else {
            free(sets);
            return args_unknown("plan", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    if (rc == 0 && !preset) {
        fprintf(stderr, "llava plan: no preset\n%s", USAGE);
        free(sets);
        return 2;
    }
    train_config c;
    cfg_init_defaults(&c);
    if (rc == 0) rc = cfg_load(&c, preset);
    for (int k = 0; k < n_sets && rc == 0; k++) rc = cfg_set(&c, sets[k]);
    free(sets);
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
        act_shape shape = mem_plan_act_shape(&s, &mc);
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
