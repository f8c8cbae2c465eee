// A packed batch: samples concatenated into one stream of T tokens (ARCHITECTURE.md decision 2),
// what data/ hands to train/. Every array is on the host; the model uploads what it needs.
#ifndef LLAVA_DATA_BATCH_H
#define LLAVA_DATA_BATCH_H

#include <stdint.h>

typedef struct {
    int T;  // tokens over all sequences, image features included
    int n_seq;
    int32_t *cu_seqlens;  // (n_seq + 1) sequence s spans [cu[s], cu[s+1])
    int32_t *ids;         // (T) token ids; -1 at image-feature positions
    int32_t *targets;     // (T) the token each position predicts (labels shifted by one inside its
                          //     sequence), -100 where nothing is predicted
    int32_t *pos;         // (T) position ids, restarting at 0 for each sequence
    int n_img;
    int img_h, img_w;
    float *pixels;      // (n_img, 3, img_h, img_w) normalised pixel values
    int32_t *img_rows;  // (n_img * tokens_per_image) stream positions of the image features,
                        //     in (image, feature) order
    int n_targets;      // positions with targets >= 0
    // AnyRes (LLaVA-NeXT): the n_img images above are the tiles through the tower; the stream's image positions
    // (n_feat of them, img_rows) take, in order, the projected tile feature of row feat_rows[k] (tile * tokens
    // per image + feature) or, where -1, the image_newline. NULL / 0 without AnyRes (n_img * tokens_per_image
    // positions, each tile's features in order).
    int32_t *feat_rows;
    int n_feat;
    // anyres_max_N (image_anyres_resize_plan): n_resize images whose unpadded features the model resizes
    // (bilinear) before the newlines; their resized features sit where feat_rows holds -2, in order, image after
    // image, each row-major. resize_dims (n_resize, 4): kept h, w and resized oh, ow; resize_rows: each such
    // image's h * w kept features as rows of the projected tile features (numbered as feat_rows), row-major,
    // concatenated. 0 / NULL otherwise.
    int n_resize;
    int32_t *resize_dims, *resize_rows;
    // (n_img) 1 where the image is a video frame, 0 for an image; NULL: no video frame. Under the model's
    // video_pool_mode a frame's features are pooled to tokens_per_video_frame rows (img_rows then holds, image after
    // image in order, each image's tokens_per_image or each frame's tokens_per_video_frame positions); without it a
    // frame is an image.
    uint8_t *video_frame;
} llava_batch;

void llava_batch_free(llava_batch *b);

#endif
