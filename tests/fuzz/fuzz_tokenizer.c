// libFuzzer target for the tokenizer's untrusted inputs. An input starting with byte 0 is a tokenizer file: a
// tokenizer.model (the protobuf parser) or, starting with '{', a tokenizer.json (data/bpe.c's JSON reader; seed
// json_bytelevel is the Qwen2-shaped demo's); anything else is text encoded in every mode with the small committed
// model, then decoded back. Neither may crash, leak or read out of bounds.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/tokenizer.h"

static tokenizer *small_model(void) {
    static tokenizer *t;
    if (!t) t = tok_load("tests/data/tokenizer/tiny.model");
    if (!t) __builtin_trap();  // run from the repository root
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 0 && data[0] == 0) {
        tokenizer *t = tok_load_mem(data + 1, size - 1);
        if (t) {
            tok_ids ids = {0};
            if (tok_encode(t, TOK_HF437, "Hello <s> world</s>", 19, &ids) == 0) {
                char *text = NULL;
                size_t len = 0;
                if (tok_decode(t, ids.v, ids.n, &text, &len) == 0) free(text);
            }
            tok_ids_free(&ids);
            tok_free(t);
        }
        return 0;
    }
    const tokenizer *t = small_model();
    for (int mode = TOK_LEGACY; mode <= TOK_HF437; mode++) {
        tok_ids ids = {0};
        if (tok_encode(t, (tok_mode)mode, (const char *)data, size, &ids) == 0) {
            char *text = NULL;
            size_t len = 0;
            if (tok_decode(t, ids.v, ids.n, &text, &len) == 0) free(text);
        }
        tok_ids_free(&ids);
    }
    return 0;
}
