// libFuzzer target: any byte string as a whole PyTorch checkpoint (torch.save's zip with its
// pickle). The reader must return an error or a valid table, never crash, leak, loop or read out
// of bounds (ASan and UBSan watch), and never run anything the pickle names.
#include <stddef.h>
#include <stdint.h>

#include "../../common/util.h"
#include "../../train/io/torchbin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    if (tb_parse_buffer("fuzz.bin", data, size, &f) == 0) {
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
    llava_clear_error();
    return 0;
}
