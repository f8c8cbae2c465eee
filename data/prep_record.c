// One record of LLaVA's JSON (see prep_record.h), and the word count and path check prep.h declares.
#include "prep_record.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "prep.h"

// Python's str.isspace() for one code point (Py_UNICODE_ISSPACE, which str.split() uses).
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

int64_t prep_word_count(const char *s, size_t n) {
    const uint8_t *u = (const uint8_t *)s;
    int64_t words = 0;
    int in_word = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = u[i];
        size_t l = 1;
        if (c >= 0x80) {
            l = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 1;
            if (l > 1 && i + l <= n && utf8_valid(u + i, l)) {
                c &= 0xff >> (l + 1);
                for (size_t k = 1; k < l; k++) c = (c << 6) | (u[i + k] & 0x3f);
            } else {
                l = 1;
                c = 0xffffffffu;  // a stray byte: never whitespace
            }
        }
        int sp = py_isspace(c);
        if (!sp && !in_word) words++;
        in_word = !sp;
        i += l;
    }
    return words;
}

int prep_check_image_path(const char *path, const char **why) {
    if (!path[0]) {
        *why = "an empty image path";
        return -1;
    }
    if (path[0] == '/') {
        *why = "an absolute image path (image paths are relative to the image folder)";
        return -1;
    }
    for (const char *p = path; *p;) {
        const char *e = strchr(p, '/');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == 2 && p[0] == '.' && p[1] == '.') {
            *why = "a \"..\" component in the image path (it would leave the image folder)";
            return -1;
        }
        p += l;
        while (*p == '/') p++;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// The record

// Python's json keeps the last of repeated keys.
static const cJSON *get_last(const cJSON *obj, const char *key) {
    const cJSON *found = NULL;
    for (const cJSON *e = obj->child; e; e = e->next)
        if (e->string && strcmp(e->string, key) == 0) found = e;
    return found;
}

static char *id_text(const cJSON *v) {
    if (!v || cJSON_IsNull(v)) return xstrdup("");
    if (cJSON_IsString(v)) return xstrdup(v->valuestring);
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) return xasprintf("%.0f", d);
        return xasprintf("%.17g", d);
    }
    char *s = cJSON_PrintUnformatted(v);
    char *r = xstrdup(s ? s : "");
    free(s);
    return r;
}

static int refuse(prep_record *r, int kind, const char *reason) {
    r->kind = kind;
    r->reason = xstrdup(reason);
    return -1;
}

int prep_record_parse(const char *json, size_t len, prep_record *r) {
    memset(r, 0, sizeof *r);
    r->kind = -1;
    cJSON *rec = cJSON_ParseWithLengthOpts(json, len + 1, NULL, 1);
    r->json = rec;
    if (!rec) {
        r->id = xstrdup("");
        return refuse(r, PREP_KIND_MALFORMED, "not valid JSON");
    }
    if (!cJSON_IsObject(rec)) {
        r->id = xstrdup("");
        return refuse(r, PREP_KIND_MALFORMED, "not a JSON object");
    }
    r->id = id_text(get_last(rec, "id"));
    const cJSON *conv = get_last(rec, "conversations");
    if (!cJSON_IsArray(conv)) return refuse(r, PREP_KIND_MALFORMED, "no \"conversations\" list");
    size_t n = (size_t)cJSON_GetArraySize(conv), k = 0;
    r->turns = xcalloc(n + 1, sizeof *r->turns);
    r->turn_image = xcalloc(n + 1, sizeof *r->turn_image);
    for (const cJSON *e = conv->child; e; e = e->next, k++) {
        const cJSON *f = cJSON_IsObject(e) ? get_last(e, "from") : NULL,
                    *v = cJSON_IsObject(e) ? get_last(e, "value") : NULL;
        if (!cJSON_IsString(f) || !cJSON_IsString(v)) {
            char msg[96];
            snprintf(msg, sizeof msg, "turn %zu is not an object with string \"from\" and \"value\"", k);
            return refuse(r, PREP_KIND_MALFORMED, msg);
        }
        r->turns[k] = (conv_turn){f->valuestring, v->valuestring, strlen(v->valuestring)};
        r->turn_image[k] = strstr(v->valuestring, DEFAULT_IMAGE_TOKEN) != NULL;
        r->words += prep_word_count(r->turns[k].value, r->turns[k].value_len);
    }
    r->n_turns = k;
    // LLaVA decides modality by the key alone ('image' in sample).
    const cJSON *img = get_last(rec, "image");
    if (img && !cJSON_IsString(img)) return refuse(r, PREP_KIND_MALFORMED, "\"image\" is not a string");
    if (r->words == 0)
        return refuse(r, PREP_KIND_MALFORMED,
                      "no words in the conversation (LLaVA's length-grouped sampler asserts a non-zero length)");
    if (img) {
        r->image = xstrdup(img->valuestring);
        const char *why;
        if (prep_check_image_path(r->image, &why)) return refuse(r, PREP_KIND_PATH_REFUSED, why);
    }
    return 0;
}

void prep_record_free(prep_record *r) {
    free(r->id);
    free(r->image);
    free(r->turns);
    free(r->turn_image);
    free(r->reason);
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}
