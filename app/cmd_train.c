// llava train CONFIG.json [--set key=value ...] [--resume]
// Exit status: 0 done; 1 failed; 75 stopped by SIGTERM / SIGINT after a step and its checkpoint
// (continue with --resume); 128 + signal when a second signal ended it at once.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common/util.h"
#include "train/config.h"
#include "train/dist/dist.h"
#include "train/trainer.h"

int cmd_train(int argc, char **argv) {
    train_config c;
    cfg_init_defaults(&c);
    train_options opt = {0};
    const char *preset = NULL;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            if (!preset) rc = llava_fail("give the preset before --set");
            else rc = cfg_set(&c, argv[++i]);
        } else if (strcmp(argv[i], "--resume") == 0) {
            opt.resume = 1;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            opt.quiet = 1;
        } else if (strcmp(argv[i], "--stop-after") == 0 && i + 1 < argc) {
            opt.stop_after = atoi(argv[++i]);
        } else if (argv[i][0] != '-' && !preset) {
            preset = argv[i];
            rc = cfg_load(&c, preset);
        } else {
            rc = llava_fail("unknown argument %s (usage: llava train CONFIG.json [--set key=value ...] [--resume])",
                            argv[i]);
        }
    }
    if (rc == 0 && !preset) rc = llava_fail("usage: llava train CONFIG.json [--set key=value ...] [--resume]");
    if (rc == 0) rc = cfg_validate(&c);
    run_settings s;
    int have_s = rc == 0 && settings_from_config(&c, &s) == 0;
    if (rc == 0 && !have_s) rc = -1;
    // The process group from how this process was launched (mpirun, srun, torchrun-style
    // variables, or nothing: one process). See docs/distributed.md.
    dist *d = NULL;
    if (rc == 0) {
        dist_options o = {.cuda = strcmp(s.train.device, "cuda") == 0, .timeout_s = s.train.init_timeout_s};
        d = dist_init(&o);
        if (!d) rc = -1;
    }
    opt.dist = d;
    if (rc == 0) rc = train_run_settings(&s, &opt);
    if (rc == TRAIN_STOPPED) {  // a signal: every rank stopped after the same step, with its checkpoint
        dist_finalize(d);
        settings_free(&s);
        cfg_free(&c);
        return TRAIN_STOPPED;
    }
    if (rc != 0) {
        if (dist_world(d) > 1) {
            // The other ranks would wait for this one in their next collective: end them all now.
            fprintf(stderr, "llava train: rank %d of %d: %s\n", dist_rank(d), dist_world(d), llava_errmsg());
            dist_abort(d, 1);
        }
        fprintf(stderr, "llava train: %s\n", llava_errmsg());
    }
    dist_finalize(d);
    if (have_s) settings_free(&s);
    cfg_free(&c);
    return rc == 0 ? 0 : 1;
}
