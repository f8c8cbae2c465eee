// libFuzzer target: any byte string as a whole PyTorch checkpoint (torch.save's zip with its
// pickle). The reader must return an error or a valid table, never crash, leak, loop or read out
// of bounds (ASan and UBSan watch), and never run anything the pickle names.
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "model/io/torchbin.h"
#include "touch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    if (tb_parse_buffer("fuzz.bin", data, size, &f) == 0) {
        fuzz_touch_tensors(&f);
        st_close(&f);
    }
    llava_clear_error();
    return 0;
}
