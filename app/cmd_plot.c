// llava plot OUT_DIR [--out FILE.svg]
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common/util.h"
#include "plot.h"

int cmd_plot(int argc, char **argv) {
    const char *dir = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (!dir) dir = argv[i];
        else dir = NULL, i = argc;
    }
    if (!dir) {
        fprintf(stderr, "usage: llava plot OUT_DIR [--out FILE.svg]\n");
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
