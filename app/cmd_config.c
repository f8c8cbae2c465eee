#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "common/util.h"
#include "train/config.h"

static const char *type_name(cfg_type t) {
    switch (t) {
    case CFG_INT: return "int";
    case CFG_FLOAT: return "float";
    case CFG_BOOL: return "bool";
    case CFG_STR: return "string";
    case CFG_ENUM: return "choice";
    case CFG_STRLIST: return "list";
    }
    return "?";
}

int cmd_config(int argc, char **argv) {
    train_config c;
    cfg_init_defaults(&c);
    int rc = 0, validate = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        if (strcmp(argv[i], "--keys") == 0) {
            for (int k = 0; k < CFG_SCHEMA_LEN; k++) {
                const cfg_key *e = &CFG_SCHEMA[k];
                printf("%-34s %-6s default %-12s %s%s%s\n", e->key, type_name(e->type), e->def, e->help,
                       e->choices ? "; one of " : "", e->choices ? e->choices : "");
            }
            cfg_free(&c);
            return 0;
        } else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            rc = cfg_set(&c, argv[++i]);
        } else if (argv[i][0] != '-') {
            rc = cfg_load(&c, argv[i]);
            validate = 1;
        } else {
            rc = llava_fail("unknown argument %s", argv[i]);
        }
    }
    if (rc == 0 && validate) rc = cfg_validate(&c);
    if (rc != 0) {
        fprintf(stderr, "llava config: %s\n", llava_errmsg());
        cfg_free(&c);
        return 1;
    }
    char *json = cfg_to_json(&c);
    printf("%s\n", json);
    free(json);
    cfg_free(&c);
    return 0;
}
