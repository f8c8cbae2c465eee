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
    if (strchr(path, '\n') || strchr(path, '\r')) {
        *why = "a line break in the image path";
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

// Strings that hold a NUL character. cJSON decodes "\u0000" (and copies a raw 0 byte) into its C strings, which
// then end there: "ok.png\u0000evil" would read as "ok.png". The raw bytes are scanned for every string token
// holding one, numbered in document order; cJSON's tree visits keys and string values in the same order, so the
// numbers name the nodes whose key or value was cut.
typedef struct {
    const cJSON **node;  // the member whose key (is_key) or string value holds a NUL
    int *is_key;
    size_t n;
} nul_set;

// The ordinals of the string tokens of `s` (a text cJSON accepted) that hold a NUL; their count in *n_strings.
static size_t *nul_ordinals(const char *s, size_t len, size_t *n_found, size_t *n_strings) {
    size_t *out = NULL, n = 0, ord = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '"') continue;
        int nul = 0;
        size_t j = i + 1;
        for (; j < len && s[j] != '"'; j++) {
            if (s[j] == 0) nul = 1;
            if (s[j] != '\\') continue;
            if (j + 5 < len && s[j + 1] == 'u' && memcmp(s + j + 2, "0000", 4) == 0) nul = 1;
            j++;  // the escaped character (for \uXXXX the hex digits are plain characters)
        }
        if (nul) {
            out = xrealloc(out, (n + 1) * sizeof *out);
            out[n++] = ord;
        }
        ord++;
        i = j;
    }
    *n_found = n;
    *n_strings = ord;
    return out;
}

// Walks the tree in document order, numbering keys and string values as nul_ordinals numbers their tokens.
static void nul_mark(const cJSON *node, size_t *ord, const size_t *want, size_t n_want, size_t *k, nul_set *set) {
    for (const cJSON *e = node->child; e; e = e->next) {
        for (int key = cJSON_IsObject(node); key >= 0; key--) {  // an object member: its key, then its value
            if (!key && !cJSON_IsString(e)) break;
            if (*k < n_want && want[*k] == *ord) {
                set->node = xrealloc(set->node, (set->n + 1) * sizeof *set->node);
                set->is_key = xrealloc(set->is_key, (set->n + 1) * sizeof *set->is_key);
                set->node[set->n] = e;
                set->is_key[set->n++] = key;
                (*k)++;
            }
            (*ord)++;
        }
        if (cJSON_IsObject(e) || cJSON_IsArray(e)) nul_mark(e, ord, want, n_want, k, set);
    }
}

static int has_nul(const nul_set *set, const cJSON *node, int key) {
    for (size_t i = 0; i < set->n; i++)
        if (set->node[i] == node && set->is_key[i] == key) return 1;
    return 0;
}

// Python's json keeps the last of repeated keys; a key holding a NUL is another key.
static const cJSON *get_last(const cJSON *obj, const char *key, const nul_set *nuls) {
    const cJSON *found = NULL;
    for (const cJSON *e = obj->child; e; e = e->next)
        if (e->string && strcmp(e->string, key) == 0 && !has_nul(nuls, e, 1)) found = e;
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

static int parse_object(const cJSON *rec, const nul_set *nuls, prep_record *r);

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
    nul_set nuls = {0};
    size_t n_nul, n_strings;
    size_t *want = nul_ordinals(json, len, &n_nul, &n_strings);
    if (n_nul) {
        size_t ord = 0, k = 0;
        nul_mark(rec, &ord, want, n_nul, &k, &nuls);
        if (k != n_nul || ord != n_strings) {  // cannot happen for a text cJSON accepted; refuse rather than guess
            free(want);
            free(nuls.node);
            free(nuls.is_key);
            r->id = xstrdup("");
            return refuse(r, PREP_KIND_MALFORMED, "holds a NUL character (\\u0000) that cannot be located");
        }
    }
    free(want);
    int rc = parse_object(rec, &nuls, r);
    free(nuls.node);
    free(nuls.is_key);
    return rc;
}

// The NUL-holding value of a member, as the reason a sample is refused.
static int refuse_nul(prep_record *r, int kind, const char *where, const char *prefix) {
    char msg[320];
    snprintf(msg, sizeof msg, "a NUL character (\\u0000) in %s, after \"%.200s\"", where, prefix);
    return refuse(r, kind, msg);
}

static int parse_object(const cJSON *rec, const nul_set *nuls, prep_record *r) {
    const cJSON *idv = get_last(rec, "id", nuls);
    r->id = id_text(idv);
    if (idv && has_nul(nuls, idv, 0)) return refuse_nul(r, PREP_KIND_MALFORMED, "the id", r->id);
    const cJSON *conv = get_last(rec, "conversations", nuls);
    if (!cJSON_IsArray(conv)) return refuse(r, PREP_KIND_MALFORMED, "no \"conversations\" list");
    size_t n = (size_t)cJSON_GetArraySize(conv), k = 0;
    r->turns = xcalloc(n + 1, sizeof *r->turns);
    r->turn_image = xcalloc(n + 1, sizeof *r->turn_image);
    for (const cJSON *e = conv->child; e; e = e->next, k++) {
        const cJSON *f = cJSON_IsObject(e) ? get_last(e, "from", nuls) : NULL,
                    *v = cJSON_IsObject(e) ? get_last(e, "value", nuls) : NULL;
        if (!cJSON_IsString(f) || !cJSON_IsString(v)) {
            char msg[96];
            snprintf(msg, sizeof msg, "turn %zu is not an object with string \"from\" and \"value\"", k);
            return refuse(r, PREP_KIND_MALFORMED, msg);
        }
        for (int which = 0; which < 2; which++) {
            const cJSON *x = which ? v : f;
            if (has_nul(nuls, x, 0)) {
                char where[64];
                snprintf(where, sizeof where, "turn %zu's \"%s\"", k, which ? "value" : "from");
                return refuse_nul(r, PREP_KIND_MALFORMED, where, x->valuestring);
            }
        }
        r->turns[k] = (conv_turn){f->valuestring, v->valuestring, strlen(v->valuestring)};
        r->turn_image[k] = strstr(v->valuestring, DEFAULT_IMAGE_TOKEN) != NULL;
        r->words += prep_word_count(r->turns[k].value, r->turns[k].value_len);
    }
    r->n_turns = k;
    // LLaVA decides modality by the key alone ('image' in sample). LLaVA-NeXT / OneVision's multi-image samples give
    // a list of paths, one per <image> in order; a video sample gives "video", here the list of its frames' paths
    // (video files are not decoded), all of them behind its one <image>.
    const cJSON *img = get_last(rec, "image", nuls), *vid = get_last(rec, "video", nuls);
    if (img && vid) return refuse(r, PREP_KIND_MALFORMED, "both \"image\" and \"video\": one or the other");
    if (vid && !cJSON_IsArray(vid))
        return refuse(r, PREP_KIND_MALFORMED,
                      "\"video\" is not a list: give its frames as a list of image paths (video files are not decoded; "
                      "extract the frames first)");
    if (vid) {
        img = vid;
        r->video = 1;
    }
    const char *key = r->video ? "video" : "image";
    char why_list[96];
    if (img && !cJSON_IsString(img) && !cJSON_IsArray(img))
        return refuse(r, PREP_KIND_MALFORMED, "\"image\" is neither a string nor a list of strings");
    if (img && cJSON_IsArray(img)) {
        int n_list = cJSON_GetArraySize(img);
        snprintf(why_list, sizeof why_list, "\"%s\" is an empty list", key);
        if (n_list == 0) return refuse(r, PREP_KIND_MALFORMED, why_list);
        snprintf(why_list, sizeof why_list, "an \"%s\" list entry is not a string", key);
        for (const cJSON *e = img->child; e; e = e->next) {
            if (!cJSON_IsString(e)) return refuse(r, PREP_KIND_MALFORMED, why_list);
            if (has_nul(nuls, e, 0)) return refuse_nul(r, PREP_KIND_PATH_REFUSED, "an image path", e->valuestring);
        }
    }
    // Python would keep the whole string (and open() refuse it); cJSON's copy ends at the NUL.
    if (img && cJSON_IsString(img) && has_nul(nuls, img, 0))
        return refuse_nul(r, PREP_KIND_PATH_REFUSED, "the image path", img->valuestring);
    if (r->words == 0)
        return refuse(r, PREP_KIND_MALFORMED,
                      "no words in the conversation (LLaVA's length-grouped sampler asserts a non-zero length)");
    if (img) {
        size_t len = 0;
        int n_img = cJSON_IsString(img) ? 1 : cJSON_GetArraySize(img);
        const cJSON *e = cJSON_IsString(img) ? img : img->child;
        for (int j = 0; j < n_img; j++, e = e->next) {
            const char *why;
            if (prep_check_image_path(e->valuestring, &why)) {
                char msg[200];
                snprintf(msg, sizeof msg, "%s%s%s%s", why, n_img > 1 || r->video ? " (in the \"" : "",
                         n_img > 1 || r->video ? key : "", n_img > 1 || r->video ? "\" list)" : "");
                return refuse(r, PREP_KIND_PATH_REFUSED, msg);
            }
            len += strlen(e->valuestring) + 1;
        }
        r->image = xmalloc(len);
        r->image[0] = 0;
        e = cJSON_IsString(img) ? img : img->child;
        for (int j = 0; j < n_img; j++, e = e->next) {
            if (j) strcat(r->image, "\n");
            strcat(r->image, e->valuestring);
        }
        r->n_images = n_img;
    }
    return 0;
}

int prep_image_count(const char *image) {
    if (!image) return 0;
    int n = 1;
    for (const char *p = image; *p; p++) n += *p == '\n';
    return n;
}

char *prep_image_path(const char *image, int k) {
    if (!image || k < 0) return NULL;
    const char *p = image;
    for (int i = 0; i < k; i++) {
        p = strchr(p, '\n');
        if (!p) return NULL;
        p++;
    }
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    char *out = xmalloc(n + 1);
    memcpy(out, p, n);
    out[n] = 0;
    return out;
}

int prep_video_frame(int F, int n, int k) {
    if (n >= F || n < 1) return k;
    double step = n == 1 ? 0 : (double)(F - 1) / (double)(n - 1);  // numpy: arange(n) * (delta / div)
    return k == n - 1 && n > 1 ? F - 1 : (int)((double)k * step);  // endpoint: stop exactly
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
