// Greedy generation (infer/generate.h) against transformers 4.46.3's generate(do_sample=False) on
// the golden tiny64 model (tools/reference/make_generate_golden.py): the same new token ids, to
// the last one, for a prompt with an image in front, one with the image inside the text, and a
// text-only one. The reference's smallest gap between the two best logits is 0.011, far above our
// logits' distance from transformers' (3.9e-6), so an exact match is the expectation.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "common/util.h"
#include "infer/generate.h"
#include "kernels/ops.h"
#include "model/io/safetensors.h"
#include "model/llava.h"

#define DIR "tests/data/golden/model/tiny64"

int main(void) {
    llava_model m;
    if (llava_model_load(&m, DIR "/model", test_cpu()) != 0) {
        CHECK(0, "%s", llava_errmsg());
        return check_done();
    }
    size_t len;
    char *text = read_file(DIR "/generate.json", 1 << 20, &len);
    cJSON *root = text ? cJSON_ParseWithLength(text, len) : NULL;
    CHECK(root != NULL, "generate.json");
    st_file in;
    CHECK(st_open(&in, DIR "/inputs.safetensors") == 0, "%s", llava_errmsg());
    const st_tensor *pt = st_find(&in, "pixel_values");
    float *pix = xmalloc(sizeof(float) * pt->numel);
    st_tensor_to_f32(&in, pt, pix);
    int H = (int)pt->shape[2], W = (int)pt->shape[3];
    size_t per_image = (size_t)3 * H * W;
    int max_new = cJSON_GetObjectItem(root, "max_new_tokens")->valueint,
        eos = cJSON_GetObjectItem(root, "eos")->valueint;
    const cJSON *rows = cJSON_GetObjectItem(root, "rows"), *row;
    int r = 0, all = 0, same = 0;
    cJSON_ArrayForEach(row, rows) {
        const cJSON *p = cJSON_GetObjectItem(row, "prompt"), *nw = cJSON_GetObjectItem(row, "new");
        int n = cJSON_GetArraySize(p), want = cJSON_GetArraySize(nw), img = cJSON_GetObjectItem(row, "image")->valueint;
        int64_t *ids = xmalloc(sizeof(int64_t) * (size_t)n), *out = xmalloc(sizeof(int64_t) * (size_t)max_new);
        for (int i = 0; i < n; i++) ids[i] = (int64_t)cJSON_GetArrayItem(p, i)->valuedouble;
        int got = llava_generate_greedy(&m, ids, n, img >= 0 ? pix + per_image * (size_t)img : NULL, img >= 0, H, W,
                                        max_new, eos, out);
        int match = got == want;
        for (int i = 0; match && i < got; i++) match = out[i] == (int64_t)cJSON_GetArrayItem(nw, i)->valuedouble;
        CHECK(match, "row %d: %d tokens generated (%s), transformers made %d", r, got, got < 0 ? llava_errmsg() : "",
              want);
        printf("row %d (%d prompt tokens, %s): %d new tokens, %s transformers'\n", r, n,
               img >= 0 ? "image" : "text only", got, match ? "identical to" : "DIFFERENT from");
        all++;
        same += match;
        free(ids);
        free(out);
        r++;
    }
    CHECK(all == 3 && same == 3, "%d of %d rows identical", same, all);
    free(pix);
    st_close(&in);
    cJSON_Delete(root);
    free(text);
    llava_model_free(&m);
    return check_done();
}
