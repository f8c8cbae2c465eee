// llava plot OUT_DIR [OUT_DIR...] [--out FILE.svg]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "plot.h"

static const char USAGE[] =
    "usage: llava plot OUT_DIR [OUT_DIR...] [--out FILE.svg]\n"
    "\n"
    "Draws a run's OUT_DIR/metrics.jsonl (checkpoint.output_dir of `llava train`) as an SVG picture: the loss\n"
    "(and the eval loss, when the run evaluated) and the learning rate over the steps. Several run folders\n"
    "are overlaid, one colour per run named by its folder: loss (eval loss dashed), learning rate, tokens/s.\n"
    "\n"
    "  OUT_DIR       a run's output folder (at least one; up to 64)\n"
    "  --out FILE    where the picture goes (default: OUT_DIR/loss.svg for one run, runs.svg for several);\n"
    "                a name ending in .png writes a PNG\n";

int cmd_plot(int argc, char **argv) {
    static const char *const FLAGS[] = {"--out", "--help"};
    const char *dirs[64], *out = NULL;
    int n_dirs = 0;
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return args_unknown("plot", argv[i], FLAGS, ARGS_COUNT(FLAGS));
        } else if (n_dirs < 64) {
            dirs[n_dirs++] = argv[i];
        } else {
            fprintf(stderr, "llava plot: at most 64 run folders\n");
            return 2;
        }
    }
    if (n_dirs == 0) {
        fprintf(stderr, "%s", USAGE);
        return 2;
    }
    size_t ol = out ? strlen(out) : 0;
    int png = ol > 4 && strcasecmp(out + ol - 4, ".png") == 0;
    if (n_dirs > 1 || png) {
        const char *labels[64];
        for (int r = 0; r < n_dirs; r++) {  // the folder's last component names the run
            const char *d = dirs[r], *e = d + strlen(d);
            while (e > d && e[-1] == '/') e--;
            const char *b = e;
            while (b > d && b[-1] != '/') b--;
            labels[r] = strndup(b, (size_t)(e - b));
        }
        const char *svg = out ? out : "runs.svg";
        int rc = plot_runs(dirs, labels, n_dirs, svg);
        if (rc == 0) printf("plot: %d runs -> %s\n", n_dirs, svg);
        else fprintf(stderr, "llava plot: %s\n", llava_errmsg());
        for (int r = 0; r < n_dirs; r++) free((char *)labels[r]);
        return rc == 0 ? 0 : 1;
    }
    const char *dir = dirs[0];
    char *svg = out ? xstrdup(out) : path_join(dir, "loss.svg");
    int n = 0;
    int rc = plot_metrics(dir, svg, &n);
    if (rc == 0) printf("plot: %d steps -> %s\n", n, svg);
    else fprintf(stderr, "llava plot: %s\n", llava_errmsg());
    free(svg);
    return rc == 0 ? 0 : 1;
}
