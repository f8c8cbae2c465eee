// libFuzzer target: any byte string as an image file (JPEG, PNG, GIF by content, or anything else),
// decoded and, when it decodes, preprocessed in both aspect modes. The decoders must return an error
// or an image, never crash, hang, leak or read out of bounds (ASan and UBSan watch). The pixel limit
// is lowered so that a few kilobytes cannot ask for gigabytes.
#include <stddef.h>
#include <stdint.h>

#include "common/util.h"
#include "data/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image_limits lim = {1u << 22};
    image_u8 im;
    if (image_decode_ex(data, size, "fuzz", &lim, &im) != 0) return 0;
    if (im.w <= 0 || im.h <= 0 || !im.rgb) __builtin_trap();
    volatile uint8_t sink = im.rgb[0] ^ im.rgb[(size_t)im.w * (size_t)im.h * 3 - 1];
    (void)sink;
    uint8_t u8[16 * 16 * 3];
    float chw[3 * 16 * 16];
    image_preprocess(&im, 16, IMAGE_ASPECT_SQUARE, u8, chw);
    image_preprocess(&im, 16, IMAGE_ASPECT_PAD, u8, NULL);
    image_free(&im);
    return 0;
}
