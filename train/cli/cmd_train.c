// llava train CONFIG.json [--set key=value ...] [--resume]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/util.h"
#include "../config.h"
#include "../trainer.h"
#include "commands.h"

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
            rc = llava_fail("unknown argument %s (usage: llava train CONFIG.json [--set key=value ...] [--resume])", argv[i]);
        }
    }
    if (rc == 0 && !preset) rc = llava_fail("usage: llava train CONFIG.json [--set key=value ...] [--resume]");
    if (rc == 0) rc = cfg_validate(&c);
    if (rc == 0) rc = train_run(&c, &opt);
    if (rc != 0) fprintf(stderr, "llava train: %s\n", llava_errmsg());
    cfg_free(&c);
    return rc == 0 ? 0 : 1;
}
