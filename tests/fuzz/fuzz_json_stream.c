// libFuzzer target for the streaming JSON array reader (data/json_stream.c) that `llava prep` runs over
// LLaVA's JSON: any bytes must give elements or one clean error, never a crash, a hang or a read out of
// bounds. Each element must be NUL-terminated at its length, trimmed, no larger than the limit, and is then
// parsed as prep parses it (cJSON, whole element). A small element limit makes the size check reachable, and
// the first byte picks a small read size so that elements and strings straddle refills everywhere.
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "data/json_stream.h"

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    size_t read_size = 1 + data[0] % 64;
    data++;
    size--;
    json_stream *s = json_stream_open_mem(data, size);
    json_stream_set_max_element(s, 1024);
    json_stream_set_read_size(s, read_size);
    const char *e;
    size_t len;
    uint64_t n = 0;
    int r;
    while ((r = json_stream_next(s, &e, &len)) == 1) {
        if (len == 0 || len > 1024 || e[len] != 0 || is_ws(e[0]) || is_ws(e[len - 1])) __builtin_trap();
        if (json_stream_count(s) != ++n || json_stream_offset(s) > size) __builtin_trap();
        cJSON *j = cJSON_ParseWithLengthOpts(e, len + 1, NULL, 1);
        cJSON_Delete(j);
    }
    if (json_stream_next(s, &e, &len) != r) __builtin_trap();  // the end is sticky
    json_stream_close(s);
    return 0;
}
