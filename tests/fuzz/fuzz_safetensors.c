// libFuzzer target: any byte string as a whole safetensors file. The parser must return an error
// or a valid table, never crash, leak or read out of bounds (ASan and UBSan watch).
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "model/io/safetensors.h"
#include "touch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    if (st_parse_buffer("fuzz.safetensors", data, size, &f) == 0) {
        fuzz_touch_tensors(&f);
        st_close(&f);
    }
    return 0;
}
