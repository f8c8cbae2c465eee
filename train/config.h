// Training configuration: JSON presets in configs/, checked against one schema, with
// `--set key=value` overrides. Unknown keys are errors (with a suggestion), never ignored.
//
// A preset may name another preset in "base" (resolved relative to its own folder); its keys
// override the base's. Keys starting with "_" are comments.
#ifndef LLAVA_TRAIN_CONFIG_H
#define LLAVA_TRAIN_CONFIG_H

#include <cjson/cJSON.h>
#include <stddef.h>

typedef enum { CFG_INT, CFG_FLOAT, CFG_BOOL, CFG_STR, CFG_ENUM, CFG_STRLIST } cfg_type;

typedef struct {
    const char *key;  // dotted path, e.g. "train.learning_rate"
    cfg_type type;
    const char *def;      // default as JSON text ("null" allowed for CFG_STR, CFG_FLOAT)
    const char *choices;  // CFG_ENUM: "a|b|c"; CFG_STRLIST: allowed items or NULL for any
    const char *help;     // what it means, and the LLaVA flag it mirrors
} cfg_key;

extern const cfg_key CFG_SCHEMA[];
extern const int CFG_SCHEMA_LEN;

typedef struct {
    cJSON *root;   // resolved tree: every schema key present
    char *source;  // the preset file, or "(defaults)"
} train_config;

void cfg_init_defaults(train_config *c);
// Loads a preset (following "base") over the defaults. The file is one JSON object, with nothing
// but whitespace after it, and no key given twice.
int cfg_load(train_config *c, const char *path);
// The same from a preset's text in memory (what the fuzz target calls): `path` names it in
// messages, and its folder is where a "base" is looked for.
int cfg_load_text(train_config *c, const char *text, size_t len, const char *path);
// Applies one "key=value" override. The value is parsed by the key's type: numbers, true/false,
// null, strings as-is (or JSON-quoted), lists as a JSON array or comma-separated. A value is read
// whole: "1,000", "16abc" or "true1" are errors naming the key and the text, never a prefix of it.
// On an error the config is unchanged.
int cfg_set(train_config *c, const char *assignment);
// Cross-key checks (positive sizes, known stage, ...), run after all overrides.
int cfg_validate(const train_config *c);
void cfg_free(train_config *c);

// Accessors by dotted key. Asking for a key the schema lacks is a programming error and aborts.
int cfg_int(const train_config *c, const char *key);
double cfg_float(const train_config *c, const char *key);  // NaN when null
int cfg_bool(const train_config *c, const char *key);
const char *cfg_str(const train_config *c, const char *key);  // NULL when null
int cfg_list_len(const train_config *c, const char *key);
const char *cfg_list_item(const train_config *c, const char *key, int i);
int cfg_list_has(const train_config *c, const char *key, const char *item);

// The resolved configuration as JSON text (malloc'd): what checkpoints store.
char *cfg_to_json(const train_config *c);

// Paths in a preset (docs/config.md): a relative path resolves against the working folder of the
// process that reads it, as LLaVA's command-line flags do; "base" alone resolves against the folder
// of the preset that names it. cfg_abs_path is the absolute path a path names now (against the
// working folder, "." and ".." removed by their text; the file need not exist), malloc'd.
char *cfg_abs_path(const char *path);
// The error for a path a preset names that is not there, naming what it resolved to:
// "KEY PATH: no such file or directory (relative paths resolve against the working folder: ABS)".
// Returns -1.
int cfg_fail_missing(const char *key, const char *path);

#endif
