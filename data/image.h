// Images: decoding (JPEG, PNG, GIF by content, not by file name) to 8-bit RGB exactly as
// Pillow 11.0's Image.open(path).convert('RGB') makes it, and LLaVA-1.5's preprocessing: the
// `square` mode of stage 1 (CLIPImageProcessor: resize the shortest side to S with Pillow's bicubic,
// centre crop S x S) and the `pad` mode of stage 2 (llava/mm_utils.py expand2square with the mean
// colour (122,116,104), then the same processor), then rescale by 1/255 and CLIP normalisation.
//
// Every input is untrusted bytes: truncated, corrupt, zero-size or oversized images (more pixels than
// Pillow's decompression-bomb limit) give one error naming the file, never a crash or a hang.
// The resampler reproduces Pillow's ImagingResample (src/libImaging/Resample.c) bit for bit:
// separable, horizontal pass first, bicubic a = -0.5 with the support widened by the downscale factor,
// coefficients normalised in double then rounded to 22-bit fixed point, 8-bit intermediate.
#ifndef LLAVA_DATA_IMAGE_H
#define LLAVA_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

// 8-bit RGB, rows top to bottom, HWC (w*h*3 bytes).
typedef struct {
    int w, h;
    uint8_t *rgb;
} image_u8;

typedef enum { IMAGE_ASPECT_SQUARE = 0, IMAGE_ASPECT_PAD = 1 } image_aspect;
// Which image processor prepares pixels for the tower: CLIPImageProcessor (resize the shortest side to S, centre
// crop S x S, CLIP's mean and std; pad colour (122,116,104)), or SiglipImageProcessor as google/siglip-so400m-
// patch14-384 configures it (resize both sides to S, no crop, mean and std 0.5; LLaVA-NeXT's pad colour
// int(0.5 * 255) = 127). Both resize with Pillow's bicubic and rescale by 1/255 the same way.
typedef enum { IMAGE_PROC_CLIP = 0, IMAGE_PROC_SIGLIP = 1 } image_processor;
typedef enum { IMAGE_FMT_UNKNOWN = 0, IMAGE_FMT_JPEG, IMAGE_FMT_PNG, IMAGE_FMT_GIF } image_format;

// Pillow's Image.MAX_IMAGE_PIXELS is 89,478,485; Image.open raises DecompressionBombError above twice
// that, and LLaVA keeps the default. We refuse exactly what Pillow refuses.
#define IMAGE_MAX_PIXELS_DEFAULT 178956970ull
// image_load_file reads at most this many bytes.
#define IMAGE_MAX_FILE_BYTES (512ull << 20)
// Progressive JPEGs with more scans than this are refused (a few dozen is normal; thousands are a
// known way to make libjpeg spin). Pillow has no such limit.
#define IMAGE_MAX_JPEG_SCANS 1000

// LLaVA-1.5's CLIP (openai/clip-vit-large-patch14-336) constants, as transformers holds them.
#define IMAGE_CLIP_SIZE 336
extern const double IMAGE_CLIP_MEAN[3];
extern const double IMAGE_CLIP_STD[3];
// tuple(int(x * 255) for x in image_mean): the pad colour of expand2square.
extern const uint8_t IMAGE_PAD_RGB[3];

typedef struct {
    uint64_t max_pixels;  // 0: IMAGE_MAX_PIXELS_DEFAULT
} image_limits;

// What the bytes are, by their magic numbers.
image_format image_sniff(const uint8_t *bytes, size_t len);
const char *image_format_name(image_format f);

// Decodes any supported format into RGB. `name` only names the input in error messages.
// On failure returns -1 with llava_errmsg() naming `name` and the reason; *out is left empty.
int image_decode(const uint8_t *bytes, size_t len, const char *name, image_u8 *out);
int image_decode_ex(const uint8_t *bytes, size_t len, const char *name, const image_limits *lim, image_u8 *out);
int image_load_file(const char *path, image_u8 *out);
void image_free(image_u8 *im);
// Writes 8-bit RGB as PNG (the demo's synthetic images).
int image_write_png(const char *path, const image_u8 *im);

// The single decoders (image_decode dispatches on image_sniff). max_pixels is already resolved.
int image_decode_jpeg(const uint8_t *bytes, size_t len, const char *name, uint64_t max_pixels, image_u8 *out);
int image_decode_png(const uint8_t *bytes, size_t len, const char *name, uint64_t max_pixels, image_u8 *out);
int image_decode_gif(const uint8_t *bytes, size_t len, const char *name, uint64_t max_pixels, image_u8 *out);

// Allocates w*h*3 bytes for an untrusted size: -1 (with a message) instead of exiting when it fails.
int image_alloc(image_u8 *im, int w, int h, const char *name);

// LLaVA's expand2square: a max(w,h) square of IMAGE_PAD_RGB with the image pasted centred
// ((w-h)//2 rows down, or (h-w)//2 columns across). A square input is copied.
int image_expand2square(const image_u8 *in, image_u8 *out);

// Pillow's im.resize((full_w, full_h), BICUBIC) followed by the crop [x0, x0+out->w) x [y0, y0+out->h),
// computing only the cropped pixels (each is exactly what Pillow computes for it). out->w, out->h
// and out->rgb must be set by the caller; the crop must lie inside the full size.
int image_resize_bicubic_crop(const image_u8 *in, int full_w, int full_h, int x0, int y0, image_u8 *out);

// transformers' get_resize_output_image_size(size=S, default_to_square=False): the short side becomes
// S and the long side int(S * long / short).
int image_shortest_edge_size(int w, int h, int size, int *out_w, int *out_h);

// The whole LLaVA preprocessing of a decoded RGB image for a given aspect mode and side S:
// out_u8 receives S*S*3 bytes (HWC, after resize and crop), out_chw (may be NULL) 3*S*S floats
// normalised as CLIPImageProcessor does in float32.
int image_preprocess(const image_u8 *in, int size, image_aspect mode, uint8_t *out_u8, float *out_chw);
// The same with another processor (image_preprocess is IMAGE_PROC_CLIP's).
int image_preprocess_proc(const image_u8 *in, int size, image_aspect mode, image_processor proc, uint8_t *out_u8,
                          float *out_chw);
// Rescale and normalise S x S pixels_u8 (HWC) into CHW floats as the processor does.
void image_normalize_proc(const uint8_t *u8, int w, int h, image_processor proc, float *out_chw);

// rescale (u8 * (1/255) in double, cast to float32) then (x - mean) / std in float32, HWC u8 -> CHW.
void image_normalize(const uint8_t *u8, int w, int h, float *out_chw);

#endif
