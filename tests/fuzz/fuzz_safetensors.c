// libFuzzer target: any byte string as a whole safetensors file. The parser must return an error
// or a valid table, never crash, leak or read out of bounds (ASan and UBSan watch).
#include <stddef.h>
#include <stdint.h>

#include "../../common/util.h"
#include "../../train/io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    if (st_parse_buffer("fuzz.safetensors", data, size, &f) == 0) {
        // Touch every tensor's bytes and look each name up: offsets must be inside the buffer.
        volatile uint8_t sink = 0;
        for (int i = 0; i < f.n_tensors; i++) {
            const st_tensor *t = &f.tensors[i];
            uint64_t n = t->end - t->begin;
            if (n) sink ^= t->data[0] ^ t->data[n - 1];
            if (st_find(&f, t->name) != t) __builtin_trap();
        }
        (void)sink;
        st_close(&f);
    }
    return 0;
}
