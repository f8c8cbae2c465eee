// What the training tests share: a run of a preset with overrides, and its loss curve without the
// timing fields (what must be bit-identical between a run and its resumed twin).
#ifndef LLAVA_TESTS_TRAIN_RUN_H
#define LLAVA_TESTS_TRAIN_RUN_H

#include <stdio.h>
#include <string.h>

#include "common/util.h"
#include "train/config.h"
#include "train/trainer.h"

// Trains `preset` into `out` with the overrides of `base` (n_base) then `sets` (n); returns train_run's
// result (or the first config error's).
static inline int test_train_preset(const char *preset, const char *out, const char *const *base, int n_base,
                                    const char *const *sets, int n, int resume, int stop_after) {
    train_config c;
    cfg_init_defaults(&c);
    int rc = cfg_load(&c, preset);
    char *o = xasprintf("checkpoint.output_dir=%s", out);
    if (rc == 0) rc = cfg_set(&c, o);
    for (int i = 0; i < n_base && rc == 0; i++) rc = cfg_set(&c, base[i]);
    for (int i = 0; i < n && rc == 0; i++) rc = cfg_set(&c, sets[i]);
    if (rc == 0) rc = cfg_validate(&c);
    train_options opt = {.resume = resume, .quiet = 1, .stop_after = stop_after};
    if (rc == 0) rc = train_run(&c, &opt);
    free(o);
    cfg_free(&c);
    return rc;
}

// out/metrics.jsonl without the timing fields: step, loss, lr, grad_norm per line ("" when absent).
static inline char *test_curve(const char *out) {
    char *p = path_join(out, "metrics.jsonl");
    size_t len;
    char *text = read_file(p, 1 << 24, &len);
    free(p);
    if (!text) return xstrdup("");
    char *res = xcalloc(len + 1, 1);
    size_t k = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *cut = strstr(line, ",\"tokens\"");
        if (cut) *cut = 0;
        k += (size_t)sprintf(res + k, "%s\n", line);
    }
    free(text);
    return res;
}

#endif
