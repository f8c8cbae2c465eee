// llava demo [--out DIR] [--fast] [--check]
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "common/util.h"
#include "demo.h"
#include "kernels/backend.h"

int cmd_demo(int argc, char **argv) {
    demo_options o = {.out_dir = "demo-run"};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) o.out_dir = argv[++i];
        else if (strcmp(argv[i], "--fast") == 0) o.fast = 1;
        else if (strcmp(argv[i], "--check") == 0) o.check = 1;
        else if (strcmp(argv[i], "--device") == 0 && i + 1 < argc) o.device = argv[++i];
        else {
            fprintf(stderr, "usage: llava demo [--out DIR] [--fast] [--check] [--device cpu|cuda]\n");
            return 2;
        }
    }
    char why[256];
    if (o.device && strcmp(o.device, "cuda") == 0 && !llava_backend_available("cuda", why, sizeof why)) {
        printf("skipped: %s\n", why);
        return 77;  // what ctest reports as skipped
    }
    if (demo_run(&o) != 0) {
        fprintf(stderr, "llava demo: %s\n", llava_errmsg());
        return 1;
    }
    return 0;
}
