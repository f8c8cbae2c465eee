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

// ---------------------------------------------------------------------------------------------
// AnyRes: LLaVA-NeXT's high-resolution preprocessing of one image (data/image_anyres.c)
//
// Two references, told apart by image_anyres_flavor, both with CLIP's processor at tile side S:
//  - IMAGE_ANYRES_HF: transformers 4.46.3 LlavaNextImageProcessor.preprocess (llava-hf checkpoints). Sizes are
//    (height, width) and so is each pinpoint. select_best_resolution picks (H, W); the image is resized with
//    Pillow's bicubic to (h, w) = _get_patch_output_size (the side that fills its target exactly, the other
//    min(ceil(side * scale), target)); _pad_for_patching pads (H - h) // 2 zero rows on BOTH sides (and so for
//    columns), so an odd difference leaves the padded image one short of the target; divide_to_patches cuts S x S
//    tiles row-major, a short last row or column giving smaller tiles; tile 0 is the whole image squashed to
//    S x S (Pillow bicubic, aspect not kept); then every tile goes through CLIPImageProcessor's steps (shortest
//    edge to S, centre crop S x S, rescale 1/255, normalise), which leave S x S tiles as they are and stretch
//    the short ones.
//  - IMAGE_ANYRES_LLAVA_NEXT: LLaVA-NeXT's llava/mm_utils.py process_anyres_image (commit df17966). Sizes and
//    pinpoints are read as (width, height) (PIL's image.size); the same resize rule, but the resized image is
//    pasted at ((W - w) // 2, (H - h) // 2) on a full W x H black canvas, tiles are S x S crops (outside the
//    canvas Pillow fills 0), tile 0 is image.resize((S, S)) (bicubic).
// Pixels are zero-padded (0 in uint8, before normalisation: the padding normalises to -mean/std) in both.
// For a symmetric pinpoint list (llava-v1.6's) the flavours select mirrored resolutions, but ties between a
// pinpoint and its transpose (small images, where every candidate holds the whole image) go to the one listed
// first, which the two flavours read differently: a 20x30 image gets a 672-wide canvas in hf and a 672-high one
// in llava-next. Not reproduced from transformers: its pad infers the channel axis from the array's shape and
// misreads a resized image 1 or 3 pixels high (extreme strips; it then pads the wrong axes); we pad as intended.

#define IMAGE_ANYRES_MAX_PINPOINTS 256
#define IMAGE_ANYRES_MAX_SIDE 16384  // a pinpoint side above this is refused

typedef enum { IMAGE_ANYRES_HF = 0, IMAGE_ANYRES_LLAVA_NEXT = 1 } image_anyres_flavor;

// A grid-pinpoint list as written in a config (image_grid_pinpoints): pairs in list order. Which side is the
// height is the flavour's business (hf: [height, width]; llava-next: [width, height]).
typedef struct {
    int n;
    int res[IMAGE_ANYRES_MAX_PINPOINTS][2];
    // LLaVA-NeXT's anyres_max_N (image_aspect_ratio "anyres_max_9"; LlavaOnevision's vision_aspect_ratio): N, the
    // most tiles' worth of unpadded features an image keeps (image_anyres_max_shape); 0: no cap. Not part of the
    // list's text: the parsers below leave it 0, the model's config sets it. It travels with the list so that
    // every count of an image's features (image_anyres_num_features, _feature_rows) applies it.
    int max_num_patches;
} image_pinpoints;

// Parses a pinpoint list: JSON "[[336,672],[672,336],...]" (every entry two positive integers), or LLaVA-NeXT's
// range form "(1x1),...,(6x6)" (any text with an 'x': the first and last "(AxB)" give [(i*p, j*p) for i in A0..A1
// for j in B0..B1], p = patch_size, as its get_anyres_image_grid_shape / process_anyres_image expand it).
// -1 with a message on anything else.
int image_parse_pinpoints(const char *text, int patch_size, image_pinpoints *out);
const char *image_anyres_flavor_name(image_anyres_flavor f);

// select_best_resolution (transformers image_processing_utils and LLaVA-NeXT mm_utils, the same loop): for each
// pinpoint (a, b) in order, scale = min(b / orig_b, a / orig_a) in double, effective = min(int(orig_a * scale) *
// int(orig_b * scale), orig_a * orig_b), wasted = a * b - effective; the first pinpoint with the largest
// effective and, among those, the smallest wasted wins (strict comparisons: ties go to the earlier one).
// The original size and the pinpoints are read in the same order (a, b): pass (height, width) for transformers,
// (width, height) for LLaVA-NeXT. The running minimum of wasted starts at infinity, so the first pinpoint is taken
// even when it keeps no pixel (effective 0: a strip too thin for any pinpoint), and a later one only beats it
// on the rule above. Returns the index of the winner, or -1 (with a message) for no pinpoint or a zero-size image.
int image_select_best_resolution(int orig_a, int orig_b, const image_pinpoints *pp);
// The same under a flavour's reading, as (height, width) of the selected pinpoint.
int image_anyres_best_resolution(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int *best_h,
                                 int *best_w);
// get_anyres_image_grid_shape: the tile grid (rows = best_h // patch, cols = best_w // patch) the model views the
// features of tiles 1.. as. transformers returns (rows, cols) from image_sizes (h, w); LLaVA-NeXT returns
// (cols, rows) from image.size (w, h); both are given here as rows and cols. patch: the tower's image size.
int image_anyres_grid_shape(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int patch,
                            int *rows, int *cols);
// transformers' image_size_to_num_patches: ceil(best_h / patch) * ceil(best_w / patch) + 1 (the base image).
// -1 on error.
int image_anyres_num_patches(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int patch);
// unpad_image on a cur_h x cur_w feature grid (rows x cols) of an image of orig_h x orig_w pixels: which rows
// and columns are kept. transformers' (modeling_llava_next, original_size (h, w)) and LLaVA-NeXT's (llava_arch.py,
// original_size = image.size (w, h), unpacked as width, height) compute the same: if orig_w / orig_h >
// cur_w / cur_h (doubles) then new = int(orig_h * (cur_w / orig_w)), pad = (cur_h - new) // 2 and rows
// [pad, cur_h - pad) are kept (Python slice semantics), all columns; else the same for columns with
// int(orig_w * (cur_h / orig_h)). Writes the first kept row/column and the kept counts; -1 on a zero size.
int image_unpad_shape(int orig_h, int orig_w, int cur_h, int cur_w, int *top, int *left, int *new_h, int *new_w);
// transformers' LlavaNextProcessor._get_unpadded_features, which counts the <image> tokens to expand: the same rule
// in exact integers, new = orig_h * cur_w // orig_w (or orig_w * cur_h // orig_h). Where orig_h * (cur_w / orig_w)
// rounds just below the integer it equals, the model's int() is one less, and when cur - new is then odd the model
// keeps two rows (columns) fewer than the processor counted: transformers 4.46.3 then fails on the image ("image
// features and image tokens do not match"): an 88x55 (h x w) image under llava-v1.6's pinpoints has a 24x48 grid,
// the model keeps 24x14 features (936 with the base tile and the newlines), the processor counts 24x16 (984
// tokens). Rare (36 of the 2M sizes up to 1400x1400). LLaVA-NeXT itself counts nothing ahead and follows the
// model.
// Writes the kept counts; -1 on a zero size.
int image_unpad_shape_int(int orig_h, int orig_w, int cur_h, int cur_w, int *new_h, int *new_w);
// The features of one AnyRes image as the unpad merge lays them out (transformers' pack_image_features with
// image_newline, LLaVA-NeXT's "spatial_unpad" / anyres): grid * grid for the base tile (strategy "default": no
// CLS), then the tiles' rows * grid x cols * grid features unpadded (image_unpad_shape) with one newline after
// each kept row: kept_h * (kept_w + 1). tile: the tower's image size (the grid shape's patch), grid: features per
// tile side (24 for CLIP-L/14 at 336). processor != 0 counts the kept block with image_unpad_shape_int instead:
// the number of <image> tokens transformers' LlavaNextProcessor expands. -1 on error.
int image_anyres_num_features(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int tile,
                              int grid, int processor);
// With pp->max_num_patches (anyres_max_N) the kept block counts as its resized h x w (image_anyres_max_shape on
// the kept rows and columns, unit = grid): grid^2 + h * (w + 1).
// The order of those features, as source rows: rows[k] (k < the count image_anyres_num_features returns with
// processor 0) is t * grid^2 + y * grid + x for feature (y, x) of tile t (t = 0 the base tile, tiles 1.. the grid's
// row-major), or -1 for the image_newline, or -2 for a resized feature (anyres_max_N when it resizes: each
// resized row's -2s, then its newline; image_anyres_resize_plan says from what). The base tile's features first, in order; then for each kept row Y of the
// tiles' (rows * grid) x (cols * grid) grid (after unpadding) its kept columns X, each from tile 1 + (Y / grid) * cols +
// X / grid at (Y % grid, X % grid), then a newline (transformers' permute(4, 0, 2, 1, 3) + unpad_image + newline
// concat). A model splices an image's projected features into the LM in this order. rows: room for the count
// (NULL: count only). Returns the count, or -1.
int image_anyres_feature_rows(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int tile,
                              int grid, int32_t *rows);
// LLaVA-NeXT's anyres_max_N (llava_arch.py, image_aspect_ratio "anyres_max_N" with an unpad merge): after
// unpadding to h x w features of a tower with unit x unit features per tile, times = sqrt(h * w / (N * unit^2));
// when times > 1.1 the features are resized (bilinear, not done here) to int(h // times) x int(w // times)
// (Python's float floor division). Writes the size after; returns 1 if they are resized, 0 if not, -1 on error.
int image_anyres_max_shape(int h, int w, int unit, int max_num_patches, int *out_h, int *out_w);
// anyres_max_N on one image (pp->max_num_patches > 0): whether its unpadded features are resized and from what.
// dims = kept rows h, kept columns w, resized oh, ow; grid_rows (room for h * w; NULL: shape only) the kept
// features' source rows as image_anyres_feature_rows numbers them, row-major: the (h, w) map the model resizes
// to (oh, ow) and lays out where feature_rows holds -2. Returns 1 when resized, 0 when not (dims h, w, h, w),
// -1 on error.
int image_anyres_resize_plan(int orig_h, int orig_w, const image_pinpoints *pp, image_anyres_flavor f, int tile,
                             int grid, int dims[4], int32_t *grid_rows);

typedef struct {
    int size;  // S: the tile side, the processor's shortest_edge and crop size (336 for CLIP-L/336)
    image_pinpoints pinpoints;
    image_anyres_flavor flavor;
} image_anyres_config;

// What the preprocessing does to one image (all sizes height, width; in pixels).
typedef struct {
    int orig_h, orig_w;
    int best_h, best_w;  // the selected pinpoint
    int resized_h, resized_w;
    int top, left;           // where the resized image lies in the padded one
    int padded_h, padded_w;  // hf: resized + both paddings (best, or one short); llava-next: best
    int rows, cols;          // the tile grid over the padded image: ceil(padded / S)
    int n_tiles;             // 1 + rows * cols: the whole image first, then the grid row-major
} image_anyres_plan;

// Fills the plan for an orig_h x orig_w image; -1 with a message on a bad config or when no pinpoint fits.
int image_anyres_plan_for(int orig_h, int orig_w, const image_anyres_config *cfg, image_anyres_plan *plan);
// The most tiles any image can give under cfg (for buffers): 1 + max over pinpoints of ceil(a/S) * ceil(b/S).
int image_anyres_max_tiles(const image_anyres_config *cfg);
// The whole AnyRes preprocessing of a decoded image. out_u8 (may be NULL) receives n_tiles * S * S * 3 bytes
// (each tile HWC after the processor's resize and crop, before rescale), out_chw (may be NULL) n_tiles * 3 * S * S
// floats normalised as CLIPImageProcessor does; both must hold image_anyres_plan_for(...).n_tiles tiles (or
// image_anyres_max_tiles). plan (may be NULL) receives the plan. Bit for bit the reference's pixel_values.
int image_anyres_preprocess(const image_u8 *in, const image_anyres_config *cfg, image_anyres_plan *plan,
                            uint8_t *out_u8, float *out_chw);

#endif
