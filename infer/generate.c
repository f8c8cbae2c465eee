#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "common/util.h"
#include "model/batch_hf.h"

int llava_generate_greedy(llava_model *m, const int64_t *prompt, int n_prompt, const float *pixels, int n_img, int H,
                          int W, int max_new, int eos, int64_t *out) {
    if (n_prompt < 1 || max_new < 0) return llava_fail("generate: an empty prompt");
    const int V = m->cfg.text.vocab_size;
    int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)(n_prompt + max_new));
    memcpy(ids, prompt, sizeof(int64_t) * (size_t)n_prompt);
    float *logits = xmalloc(sizeof(float) * (size_t)(n_prompt + max_new) * (size_t)V);
    int n = 0, rc = 0;
    // One video's frames (engine_chat_inputs lays them out so): under video_pool_mode the prompt holds their pooled
    // features, tokens_per_video_frame each, and the images are marked as frames.
    int marks = 0;
    for (int t = 0; t < n_prompt; t++) marks += prompt[t] == m->cfg.glue.image_token_index;
    uint8_t *frames = NULL;
    if (n_img && m->cfg.glue.video_pool_mode != POOL_NONE && marks != n_img * m->tokens_per_image &&
        marks == n_img * m->tokens_per_video_frame) {
        frames = xmalloc((size_t)n_img);
        memset(frames, 1, (size_t)n_img);
    }
    while (n < max_new) {
        llava_batch b;
        if (llava_batch_from_hf_frames(&b, m, ids, NULL, NULL, 1, n_prompt + n, pixels, n_img, H, W, frames) != 0) {
            rc = -1;
            break;
        }
        int T = b.T;
        float *row = logits + (size_t)(T - 1) * (size_t)V;
        llava_model_losses_reset(m);
        int e = llava_pass(m, &b, 0, 1.0f, logits);
        llava_batch_free(&b);
        if (e != 0) {
            rc = llava_fail_ctx("generate: step %d", n + 1);
            break;
        }
        // The weights and pixels are finite (the loader and the batch check them): a NaN here is the
        // forward pass's own (an overflow), and argmax over it would answer anything.
        size_t bad = 0, at = f32_first_nonfinite(row, (size_t)V, &bad);
        if (bad) {
            rc = llava_fail(
                "generate: step %d: %zu of the %d logits are not finite (%s for token %zu): the forward "
                "pass overflowed",
                n + 1, bad, V, f32_nonfinite_name(row[at]), at);
            break;
        }
        int best = 0;
        for (int v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;  // the first of equal maxima, as torch.argmax
        ids[n_prompt + n] = best;
        out[n++] = best;
        if (best == eos) break;
    }
    free(frames);
    free(ids);
    free(logits);
    return rc ? -1 : n;
}
