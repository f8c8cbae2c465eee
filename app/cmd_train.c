// llava train CONFIG.json [--set key=value ...] [--resume]
// Exit status: 0 done; 1 failed; 75 stopped by SIGTERM / SIGINT after a step and its checkpoint
// (continue with --resume); 128 + signal when a second signal ended it at once.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "train/config.h"
#include "train/dist/dist.h"
#include "train/trainer.h"

static const char USAGE[] =
    "usage: llava train CONFIG.json [--set key=value ...] [--resume] [--quiet] [--stop-after N]\n"
    "\n"
    "Trains as the preset says: stage 1 (projector), stage 2 (projector + LM), LoRA or your own freezing policy,\n"
    "with checkpoints, resume and metrics.jsonl in checkpoint.output_dir. `llava config --keys` lists every key\n"
    "with its default; `llava config CONFIG.json` prints the preset resolved.\n"
    "\n"
    "  CONFIG.json      the preset (required). Relative paths in it resolve against the working folder, as\n"
    "                   LLaVA's command-line flags do; \"base\" alone against the folder of the preset naming it\n"
    "                   (docs/config.md)\n"
    "  --set key=value  override one key after the preset and its bases (repeatable; default: none)\n"
    "  --resume         continue from the newest complete checkpoint in checkpoint.output_dir (default: off; a\n"
    "                   fresh run refuses an output_dir that holds checkpoints)\n"
    "  --quiet          no progress line (default: off)\n"
    "  --stop-after N   return after N steps of this invocation, with a checkpoint as a signal would (testing;\n"
    "                   default 0: run to the end)\n"
    "\n"
    "Exit status: 0 done; 1 failed; 2 usage error; 75 stopped by SIGTERM or SIGINT after a step and its\n"
    "checkpoint (continue with --resume); 128 + signal when a second signal ended it at once.\n";

int cmd_train(int argc, char **argv) {
    static const char *const FLAGS[] = {"--set", "--resume", "--quiet", "--stop-after", "--help"};
    train_options opt = {0};
    const char *preset = NULL;
    const char **sets = xcalloc((size_t)argc, sizeof *sets);
    int n_sets = 0;
    // The arguments first (a misspelled flag is named before any file is read), then the preset and
    // the overrides in the order given.
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            free(sets);
            return 0;
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            sets[n_sets++] = argv[++i];
        } else if (strcmp(argv[i], "--resume") == 0) {
            opt.resume = 1;
        } else if (strcmp(argv[i], "--quiet") == 0) {
            opt.quiet = 1;
        } else if (strcmp(argv[i], "--stop-after") == 0 && i + 1 < argc) {
            opt.stop_after = atoi(argv[++i]);
        } else if (argv[i][0] != '-' && !preset) {
            preset = argv[i];
        } else if (argv[i][0] != '-') {
            fprintf(stderr, "llava train: %s: one preset only (%s is the first)\n", argv[i], preset);
            free(sets);
            return 2;
        } else {
            free(sets);
            return args_unknown("train", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        }
    }
    if (!preset) {
        fprintf(stderr, "llava train: no preset\n%s", USAGE);
        free(sets);
        return 2;
    }
    train_config c;
    cfg_init_defaults(&c);
    int rc = cfg_load(&c, preset);
    for (int k = 0; k < n_sets && rc == 0; k++) rc = cfg_set(&c, sets[k]);
    free(sets);
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
