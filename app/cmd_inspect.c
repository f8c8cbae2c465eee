#include <stdio.h>

#include "commands.h"
#include "common/util.h"
#include "model/io/inspect.h"

int cmd_inspect(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: llava inspect PATH...\n");
        return 2;
    }
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        inspect_result r;
        if (inspect_path(argv[i], stdout, &r) != 0) {
            fprintf(stderr, "llava inspect: %s\n", llava_errmsg());
            failed = 1;
        }
        if (i + 1 < argc) printf("\n");
    }
    return failed;
}
