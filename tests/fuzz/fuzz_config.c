// libFuzzer target for the training configuration (train/config.c), over the two ways a user's text
// reaches it. An input starting with byte 0 is a preset's text (cfg_load_text); anything else is
// `--set key=value` assignments, one per line after the first byte, applied to the defaults in order
// and then validated. Nothing may crash, leak or read out of bounds, and:
// - a --set that fails leaves the configuration exactly as it was;
// - whatever was accepted holds the schema's types: every key answers its accessor (an integer in
//   range, a known choice, a list of strings);
// - the resolved configuration survives the round trip checkpoints make: its JSON, loaded as a
//   preset over the defaults, gives the same JSON again.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "train/config.h"

// "base" is resolved in a folder that does not exist, so a fuzzed preset reads no file through a
// relative base (an absolute one may name a file: read_file takes regular files of 4 MiB at most).
#define PRESET "/nonexistent-llava-fuzz/preset.json"

static void check_types(const train_config *c) {
    volatile size_t sink = 0;
    for (int i = 0; i < CFG_SCHEMA_LEN; i++) {
        const cfg_key *k = &CFG_SCHEMA[i];
        switch (k->type) {
        case CFG_INT: sink += (size_t)cfg_int(c, k->key); break;  // UBSan: a value outside int traps
        case CFG_FLOAT: sink += cfg_float(c, k->key) == 0.0; break;
        case CFG_BOOL: sink += (size_t)cfg_bool(c, k->key); break;
        case CFG_STR: {
            const char *s = cfg_str(c, k->key);
            if (s) sink += strlen(s);
            break;
        }
        case CFG_ENUM: {
            const char *s = cfg_str(c, k->key);
            if (!s) __builtin_trap();
            size_t n = strlen(s);
            const char *at = strstr(k->choices, s);  // one of "a|b|c"
            if (!n || !at || (at != k->choices && at[-1] != '|') || (at[n] != 0 && at[n] != '|')) __builtin_trap();
            break;
        }
        case CFG_STRLIST:
            for (int j = 0; j < cfg_list_len(c, k->key); j++) {
                const char *s = cfg_list_item(c, k->key, j);
                if (!s) __builtin_trap();
                sink += strlen(s);
            }
            break;
        }
    }
    (void)sink;
}

static void check_round_trip(const train_config *c) {
    char *json = cfg_to_json(c);
    train_config d;
    cfg_init_defaults(&d);
    if (cfg_load_text(&d, json, strlen(json), PRESET) != 0) __builtin_trap();
    char *again = cfg_to_json(&d);
    if (strcmp(json, again) != 0) __builtin_trap();
    free(again);
    free(json);
    cfg_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    train_config c;
    cfg_init_defaults(&c);
    if (data[0] == 0) {
        if (cfg_load_text(&c, (const char *)data + 1, size - 1, PRESET) == 0) {
            check_types(&c);
            check_round_trip(&c);
            (void)cfg_validate(&c);
        }
        cfg_free(&c);
        return 0;
    }
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = xmalloc(n + 1);
        memcpy(line, p, n);
        line[n] = 0;
        char *before = cfg_to_json(&c);
        if (cfg_set(&c, line) != 0) {
            char *after = cfg_to_json(&c);
            if (strcmp(before, after) != 0) __builtin_trap();
            free(after);
        }
        free(before);
        free(line);
        p += n + 1;
    }
    check_types(&c);
    check_round_trip(&c);
    (void)cfg_validate(&c);
    cfg_free(&c);
    return 0;
}
