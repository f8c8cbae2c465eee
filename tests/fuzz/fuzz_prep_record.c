// libFuzzer target for the parser of one LLaVA record (data/prep_record.c), which `llava prep` runs on every
// element of the JSON array: any bytes must give a usable record or one refusal (malformed or path refused)
// with a reason, never a crash, a leak or a read out of bounds. A usable record has at least one turn, words,
// every "from" and "value" whole (no NUL cut them: value_len is the string's length), the "<image>" flags and
// the word count it reports, and an image path that passes prep_check_image_path.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/prep.h"
#include "data/prep_record.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = 0;
    prep_record r;
    int rc = prep_record_parse(json, size, &r);
    if (!r.id) __builtin_trap();
    if (rc == 0) {
        if (r.kind != -1 || r.reason || r.n_turns == 0 || r.words <= 0) __builtin_trap();
        int64_t words = 0;
        for (size_t k = 0; k < r.n_turns; k++) {
            const conv_turn *t = &r.turns[k];
            if (!t->from || !t->value || strlen(t->value) != t->value_len) __builtin_trap();
            if (r.turn_image[k] != (strstr(t->value, DEFAULT_IMAGE_TOKEN) != NULL)) __builtin_trap();
            words += prep_word_count(t->value, t->value_len);
        }
        if (words != r.words) __builtin_trap();
        const char *why;
        if (r.image && prep_check_image_path(r.image, &why) != 0) __builtin_trap();
    } else {
        if (rc != -1 || (r.kind != PREP_KIND_MALFORMED && r.kind != PREP_KIND_PATH_REFUSED)) __builtin_trap();
        // The one refusal that would mean the NUL scan and cJSON disagree on where the strings are.
        static const char lost[] = "holds a NUL character (\\u0000) that cannot be located";
        if (!r.reason || !r.reason[0] || strncmp(r.reason, lost, sizeof lost - 1) == 0) __builtin_trap();
    }
    prep_record_free(&r);
    free(json);
    return 0;
}
