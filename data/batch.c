#include "batch.h"

#include <stdlib.h>
#include <string.h>

void llava_batch_free(llava_batch *b) {
    free(b->cu_seqlens);
    free(b->ids);
    free(b->targets);
    free(b->pos);
    free(b->pixels);
    free(b->img_rows);
    free(b->feat_rows);
    free(b->resize_dims);
    free(b->resize_rows);
    free(b->video_frame);
    memset(b, 0, sizeof *b);
}
