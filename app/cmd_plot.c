// llava plot OUT_DIR [--out FILE.svg]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "plot.h"

static const char USAGE[] =
    "usage: llava plot OUT_DIR [--out FILE.svg]\n"
    "\n"
    "Draws a run's OUT_DIR/metrics.jsonl (checkpoint.output_dir of `llava train`) as an SVG picture: the loss\n"
    "(and the eval loss, when the run evaluated) and the learning rate over the steps.\n"
    "\n"
    "  OUT_DIR       the run's output folder (required)\n"
    "  --out FILE    where the picture goes (default: OUT_DIR/loss.svg)\n";

int cmd_plot(int argc, char **argv) {
    static const char *const FLAGS[] = {"--out", "--help"};
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return args_unknown("plot", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        } else if (!dir) {
            dir = argv[i];
        } else {
            fprintf(stderr, "llava plot: %s: one OUT_DIR only (%s is the first)\n", argv[i], dir);
            return 2;
        }
    }
    if (!dir) {
        fprintf(stderr, "%s", USAGE);
        return 2;
    }
    char *svg = out ? xstrdup(out) : path_join(dir, "loss.svg");
    int n = 0;
    int rc = plot_metrics(dir, svg, &n);
    if (rc == 0) printf("plot: %d steps -> %s\n", n, svg);
    else fprintf(stderr, "llava plot: %s\n", llava_errmsg());
    free(svg);
    return rc == 0 ? 0 : 1;
}
