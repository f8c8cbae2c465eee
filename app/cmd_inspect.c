// llava inspect PATH...
#include <stdio.h>

#include "args.h"
#include "commands.h"
#include "common/util.h"
#include "model/io/inspect.h"

static const char USAGE[] =
    "usage: llava inspect PATH...\n"
    "\n"
    "Describes each PATH: a model folder, a config.json, a .safetensors file or a sharded checkpoint's\n"
    "*.index.json. Prints the architecture, parameter counts per part (vision, projector, lm), dtypes and the\n"
    "tensors that are missing from or unexpected by the config. No flags but --help; a path that begins with '-'\n"
    "is given as ./-NAME. Exit status 1 when a path could not be read.\n";

int cmd_inspect(int argc, char **argv) {
    static const char *const FLAGS[] = {"--help"};
    for (int i = 1; i < argc; i++) {
        if (args_is_help(argv[i])) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (argv[i][0] == '-' && argv[i][1]) return args_unknown("inspect", argv[i], FLAGS, ARGS_COUNT(FLAGS));
    }
    if (argc < 2) {
        fprintf(stderr, "%s", USAGE);
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
