// The OpenAI chat API of `llava serve` without the network (serve_api.h).
#include "serve_api.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/base64.h"
#include "common/util.h"

// ---------------------------------------------------------------------------------------------
// Errors

void serve_error_set(serve_error *e, int status, const char *type, const char *param, const char *code, const char *fmt,
                     ...) {
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

char *serve_error_json(const serve_error *e) {
    cJSON *root = cJSON_CreateObject(), *o = cJSON_CreateObject();
    cJSON_AddItemToObject(root, "error", o);
    cJSON_AddStringToObject(o, "message", e->message);
    cJSON_AddStringToObject(o, "type", e->type ? e->type : "server_error");
    if (e->param[0]) cJSON_AddStringToObject(o, "param", e->param);
    else cJSON_AddNullToObject(o, "param");
    if (e->code[0]) cJSON_AddStringToObject(o, "code", e->code);
    else cJSON_AddNullToObject(o, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return s;
}

void serve_error_from_engine(serve_error *e, int status, const char *msg) {
    if (status == ENGINE_BAD_REQUEST)
        serve_error_set(e, 400, "invalid_request_error", NULL, NULL, "%s", msg && *msg ? msg : "bad request");
    else if (status == ENGINE_CLOSED)
        serve_error_set(e, 503, "server_error", NULL, "shutting_down", "the server is shutting down%s%s",
                        msg && *msg ? ": " : "", msg ? msg : "");
    else serve_error_set(e, 500, "server_error", NULL, NULL, "%s", msg && *msg ? msg : "the engine failed");
}

#define INVALID "invalid_request_error"

static const char *json_type_name(const cJSON *v) {
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    if (cJSON_IsNull(v)) return "null";
    return "a value of unknown type";
}

static int bad_type(serve_error *err, const char *param, const char *expected, const cJSON *v) {
    serve_error_set(err, 400, INVALID, param, "invalid_type", "Invalid type for '%s': expected %s, but got %s.", param,
                    expected, json_type_name(v));
    return -1;
}

// The member `key` unless it is absent or null.
static const cJSON *member(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return v && !cJSON_IsNull(v) ? v : NULL;
}

// 0: absent or null; 1: read; -1: *err.
static int get_number(const cJSON *o, const char *key, double lo, double hi, double *out, serve_error *err) {
    const cJSON *v = member(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return bad_type(err, key, "a number", v);
    double d = v->valuedouble;
    if (!isfinite(d) || d < lo || d > hi) {
        serve_error_set(err, 400, INVALID, key, "invalid_value", "Invalid value for '%s': %g is not between %g and %g.",
                        key, d, lo, hi);
        return -1;
    }
    *out = d;
    return 1;
}

static int get_integer(const cJSON *o, const char *key, double lo, double hi, double *out, serve_error *err) {
    const cJSON *v = member(o, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || floor(v->valuedouble) != v->valuedouble)
        return bad_type(err, key, "an integer", v);
    double d = v->valuedouble;
    if (d < lo || d > hi) {
        serve_error_set(err, 400, INVALID, key, "invalid_value",
                        "Invalid value for '%s': %.0f is not between %.0f and %.0f.", key, d, lo, hi);
        return -1;
    }
    *out = d;
    return 1;
}

static int get_bool(const cJSON *o, const char *key, int *out, serve_error *err) {
    const cJSON *v = member(o, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return bad_type(err, key, "a boolean", v);
    *out = cJSON_IsTrue(v);
    return 1;
}

static int unsupported(serve_error *err, const char *param, const char *what) {
    serve_error_set(err, 400, INVALID, param, "unsupported_parameter", "Unsupported parameter '%s': %s.", param, what);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Images

int serve_parse_data_url(const char *url, size_t len, const char **media, size_t *media_len, const char **data,
                         size_t *data_len, const char **why) {
    if (len < 5 || strncasecmp(url, "data:", 5) != 0) {
        *why = "not a data: URL";
        return -1;
    }
    const char *comma = memchr(url + 5, ',', len - 5);
    if (!comma) {
        *why = "a data: URL needs a ',' before its data";
        return -1;
    }
    const char *head = url + 5;
    size_t head_len = (size_t)(comma - head);
    // The media type ends at the first ';'; ";base64" must be the header's last parameter.
    const char *semi = memchr(head, ';', head_len);
    size_t mlen = semi ? (size_t)(semi - head) : head_len;
    if (head_len < 7 || strncasecmp(comma - 7, ";base64", 7) != 0 || !semi) {
        *why = "only base64 data: URLs are read (data:image/png;base64,...)";
        return -1;
    }
    *media = head;
    *media_len = mlen;
    *data = comma + 1;
    *data_len = len - (size_t)(comma + 1 - url);
    *why = NULL;
    return 0;
}

static int image_from_bytes(const uint8_t *bytes, size_t n, const serve_limits *lim, const char *param, image_u8 *out,
                            serve_error *err) {
    image_limits il = {.max_pixels = lim->max_image_pixels};
    if (image_decode_ex(bytes, n, param, &il, out) != 0) {
        serve_error_set(err, 400, INVALID, param, "invalid_image", "The image could not be read: %s", llava_errmsg());
        return -1;
    }
    return 0;
}

static int too_large(serve_error *err, const char *param, size_t n, size_t max) {
    serve_error_set(err, 413, INVALID, param, "image_too_large",
                    "The image is %zu bytes; this server takes images of at most %zu bytes (--max-image-bytes).", n,
                    max);
    return -1;
}

static int load_data_url(const char *url, const serve_limits *lim, const char *param, image_u8 *out, serve_error *err) {
    const char *media, *data, *why;
    size_t media_len, data_len;
    if (serve_parse_data_url(url, strlen(url), &media, &media_len, &data, &data_len, &why) != 0) {
        serve_error_set(err, 400, INVALID, param, "invalid_image_url", "Invalid image URL: %s.", why);
        return -1;
    }
    size_t cap = base64_decoded_max(data_len);
    // Whitespace could make the text longer than its bytes: the exact count is checked after decoding.
    if (cap > lim->max_image_bytes && cap - lim->max_image_bytes > data_len / 8 + 3)
        return too_large(err, param, cap, lim->max_image_bytes);
    uint8_t *bytes = xmalloc(cap ? cap : 1);
    size_t n = 0;
    if (base64_decode(data, data_len, bytes, &n) != 0) {
        serve_error_set(err, 400, INVALID, param, "invalid_image_url", "The data: URL is not valid base64: %s",
                        llava_errmsg());
        free(bytes);
        return -1;
    }
    if (n > lim->max_image_bytes) {
        free(bytes);
        return too_large(err, param, n, lim->max_image_bytes);
    }
    int rc = image_from_bytes(bytes, n, lim, param, out, err);
    free(bytes);
    return rc;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// A file:// URL's path, percent-decoded; NULL when it names another host or decodes to a NUL.
static char *file_url_path(const char *url) {
    const char *p = url + 7;  // after "file://"
    if (strncasecmp(p, "localhost/", 10) == 0) p += 9;
    if (*p != '/') return NULL;
    char *out = xmalloc(strlen(p) + 1);
    size_t n = 0;
    for (; *p; p++) {
        if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
            int c = hexval(p[1]) * 16 + hexval(p[2]);
            if (c == 0) {
                free(out);
                return NULL;
            }
            out[n++] = (char)c;
            p += 2;
        } else out[n++] = *p;
    }
    out[n] = 0;
    return out;
}

// The URL's scheme when it starts with one (RFC 3986: a letter, then letters, digits, "+-.", then
// ':'); its length, else 0.
static size_t url_scheme_len(const char *url) {
    size_t i = 0;
    if (!((url[0] >= 'a' && url[0] <= 'z') || (url[0] >= 'A' && url[0] <= 'Z'))) return 0;
    for (i = 1; url[i]; i++) {
        char c = url[i];
        if (c == ':') return i;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
              c == '.'))
            return 0;
    }
    return 0;
}

static int load_local_file(const char *path, const serve_limits *lim, const char *param, image_u8 *out,
                           serve_error *err) {
    if (!lim->allow_dir) {
        serve_error_set(err, 400, INVALID, param, "local_files_disabled",
                        "This server reads no local files (it was not started with --allow-local-files DIR): send "
                        "the image as a data: URL (data:image/png;base64,...).");
        return -1;
    }
    char *joined = path[0] == '/' ? xstrdup(path) : path_join(lim->allow_dir, path);
    char *real = realpath(joined, NULL);
    free(joined);
    if (!real) {
        serve_error_set(err, 400, INVALID, param, "invalid_image_url", "Cannot open the image file \"%s\": %s.", path,
                        strerror(errno));
        return -1;
    }
    size_t dl = strlen(lim->allow_dir);
    int inside = strncmp(real, lim->allow_dir, dl) == 0 && (real[dl] == '/' || (dl == 1 && lim->allow_dir[0] == '/'));
    if (!inside) {
        free(real);
        serve_error_set(err, 400, INVALID, param, "local_file_outside",
                        "The image file \"%s\" lies outside the directory this server reads images from "
                        "(--allow-local-files).",
                        path);
        return -1;
    }
    int fd = open(real, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    int rc = -1;
    if (fd < 0 || fstat(fd, &st) != 0) {
        serve_error_set(err, 400, INVALID, param, "invalid_image_url", "Cannot open the image file \"%s\": %s.", path,
                        strerror(errno));
        goto out;
    }
    // What was opened is what was checked (a path component swapped for a link in between would show).
    char link[64], opened[PATH_MAX + 1];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t ln = readlink(link, opened, sizeof opened - 1);
    if (ln >= 0) {
        opened[ln] = 0;
        if (strcmp(opened, real) != 0) {
            serve_error_set(err, 400, INVALID, param, "local_file_outside",
                            "The image file \"%s\" changed while it was opened.", path);
            goto out;
        }
    }
    if (!S_ISREG(st.st_mode)) {
        serve_error_set(err, 400, INVALID, param, "invalid_image_url", "The image file \"%s\" is not a regular file.",
                        path);
        goto out;
    }
    if ((uint64_t)st.st_size > lim->max_image_bytes) {
        too_large(err, param, (size_t)st.st_size, lim->max_image_bytes);
        goto out;
    }
    size_t size = (size_t)st.st_size, got = 0;
    uint8_t *bytes = xmalloc(size ? size : 1);
    while (got < size) {
        ssize_t r = read(fd, bytes + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    rc = image_from_bytes(bytes, got, lim, param, out, err);
    free(bytes);
out:
    if (fd >= 0) close(fd);
    free(real);
    return rc;
}

int serve_load_image(const char *url, const serve_limits *lim, const char *param, image_u8 *out, serve_error *err) {
    memset(out, 0, sizeof *out);
    size_t sl = url_scheme_len(url);
    if (sl == 4 && strncasecmp(url, "data", 4) == 0) return load_data_url(url, lim, param, out, err);
    if ((sl == 4 && strncasecmp(url, "http", 4) == 0) || (sl == 5 && strncasecmp(url, "https", 5) == 0)) {
        serve_error_set(err, 400, INVALID, param, "remote_url_refused",
                        "Remote image URLs are refused: the server fetches nothing: send the image as a data: URL "
                        "(data:image/png;base64,...).");
        return -1;
    }
    if (sl == 4 && strncasecmp(url, "file", 4) == 0) {
        if (strncmp(url + 4, "://", 3) != 0) {
            serve_error_set(err, 400, INVALID, param, "invalid_image_url",
                            "Invalid image URL: a file URL is file:///absolute/path.");
            return -1;
        }
        char *path = file_url_path(url);
        if (!path) {
            serve_error_set(err, 400, INVALID, param, "invalid_image_url",
                            "Invalid image URL: a file URL names a path on this machine (file:///absolute/path).");
            return -1;
        }
        int rc = load_local_file(path, lim, param, out, err);
        free(path);
        return rc;
    }
    if (sl > 0) {
        serve_error_set(err, 400, INVALID, param, "invalid_image_url",
                        "Invalid image URL: the scheme \"%.*s\" is not read (send the image as a data: URL).", (int)sl,
                        url);
        return -1;
    }
    if (!url[0]) {
        serve_error_set(err, 400, INVALID, param, "invalid_image_url", "Invalid image URL: it is empty.");
        return -1;
    }
    return load_local_file(url, lim, param, out, err);
}

// ---------------------------------------------------------------------------------------------
// Requests

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT } role_kind;
static const char *const ROLE_NAMES[] = {"system", "user", "assistant"};

typedef struct {
    const char *url;
    char param[160];
} image_ref;

void serve_chat_request_free(serve_chat_request *r) {
    for (int i = 0; i < r->n_messages; i++) free(r->texts ? r->texts[i] : NULL);
    free(r->texts);
    free(r->messages);
    for (int i = 0; i < r->n_images; i++) image_free(&r->images[i]);
    free(r->images);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->model);
    memset(r, 0, sizeof *r);
}

// One message's content: its text (joined text parts) and image URLs appended to *refs.
static int read_content(const cJSON *m, int i, role_kind role, char **text, image_ref **refs, int *n_refs,
                        int *cap_refs, serve_error *err) {
    char param[96];
    snprintf(param, sizeof param, "messages[%d].content", i);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "content");
    if (!c || cJSON_IsNull(c)) {
        if (role == ROLE_ASSISTANT) {  // OpenAI allows an assistant turn without content
            *text = xstrdup("");
            return 0;
        }
        serve_error_set(err, 400, INVALID, param, "missing_required_parameter", "Missing required parameter: '%s'.",
                        param);
        return -1;
    }
    if (cJSON_IsString(c)) {
        *text = xstrdup(c->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(c)) return bad_type(err, param, "a string or an array of content parts", c);
    strbuf sb = {0};
    sb_puts(&sb, "");
    int n_text = 0, j = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, c) {
        char pp[128];
        snprintf(pp, sizeof pp, "%s[%d]", param, j);
        if (!cJSON_IsObject(part)) {
            bad_type(err, pp, "an object (a content part)", part);
            goto fail;
        }
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        char tp[160];
        snprintf(tp, sizeof tp, "%s.type", pp);
        if (!type || cJSON_IsNull(type)) {
            serve_error_set(err, 400, INVALID, tp, "missing_required_parameter", "Missing required parameter: '%s'.",
                            tp);
            goto fail;
        }
        if (!cJSON_IsString(type)) {
            bad_type(err, tp, "a string", type);
            goto fail;
        }
        if (!strcmp(type->valuestring, "text")) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(part, "text");
            snprintf(tp, sizeof tp, "%s.text", pp);
            if (!t || cJSON_IsNull(t)) {
                serve_error_set(err, 400, INVALID, tp, "missing_required_parameter",
                                "Missing required parameter: '%s'.", tp);
                goto fail;
            }
            if (!cJSON_IsString(t)) {
                bad_type(err, tp, "a string", t);
                goto fail;
            }
            if (n_text++) sb_puts(&sb, "\n");
            sb_puts(&sb, t->valuestring);
        } else if (!strcmp(type->valuestring, "image_url")) {
            const cJSON *iu = cJSON_GetObjectItemCaseSensitive(part, "image_url"), *url = iu;
            snprintf(tp, sizeof tp, "%s.image_url", pp);
            if (!iu || cJSON_IsNull(iu)) {
                serve_error_set(err, 400, INVALID, tp, "missing_required_parameter",
                                "Missing required parameter: '%s'.", tp);
                goto fail;
            }
            if (cJSON_IsObject(iu)) {
                url = cJSON_GetObjectItemCaseSensitive(iu, "url");
                snprintf(tp, sizeof tp, "%s.image_url.url", pp);
                if (!url || cJSON_IsNull(url)) {
                    serve_error_set(err, 400, INVALID, tp, "missing_required_parameter",
                                    "Missing required parameter: '%s'.", tp);
                    goto fail;
                }
                const cJSON *detail = member(iu, "detail");
                if (detail && !cJSON_IsString(detail)) {
                    snprintf(tp, sizeof tp, "%s.image_url.detail", pp);
                    bad_type(err, tp, "a string", detail);
                    goto fail;
                }
            }
            if (!cJSON_IsString(url)) {
                bad_type(err, tp, cJSON_IsObject(iu) ? "a string" : "an object or a string", url);
                goto fail;
            }
            if (role != ROLE_USER) {
                serve_error_set(err, 400, INVALID, pp, "invalid_value",
                                "Images can only be sent in user messages (messages[%d] is a %s message).", i,
                                ROLE_NAMES[role]);
                goto fail;
            }
            if (*n_refs == *cap_refs) {
                *cap_refs = *cap_refs ? 2 * *cap_refs : 4;
                *refs = xrealloc(*refs, sizeof **refs * (size_t)*cap_refs);
            }
            (*refs)[*n_refs].url = url->valuestring;
            snprintf((*refs)[*n_refs].param, sizeof(*refs)[*n_refs].param, "%s", tp);
            (*n_refs)++;
        } else {
            serve_error_set(err, 400, INVALID, tp, "invalid_value",
                            "Content parts of type \"%s\" are not supported (\"text\" and \"image_url\" are).",
                            type->valuestring);
            goto fail;
        }
        j++;
    }
    *text = sb.p;
    return 0;
fail:
    free(sb.p);
    return -1;
}

static int read_messages(const cJSON *root, const serve_limits *lim, serve_chat_request *r, serve_error *err) {
    const cJSON *msgs = member(root, "messages");
    if (!msgs) {
        serve_error_set(err, 400, INVALID, "messages", "missing_required_parameter",
                        "Missing required parameter: 'messages'.");
        return -1;
    }
    if (!cJSON_IsArray(msgs)) return bad_type(err, "messages", "an array", msgs);
    int n = cJSON_GetArraySize(msgs);
    if (n == 0) {
        serve_error_set(err, 400, INVALID, "messages", "empty_array",
                        "Invalid 'messages': empty array. Expected an array with at least one message.");
        return -1;
    }
    r->messages = xcalloc((size_t)n, sizeof *r->messages);
    r->texts = xcalloc((size_t)n, sizeof *r->texts);
    r->n_messages = n;
    role_kind *roles = xcalloc((size_t)n, sizeof *roles);
    image_ref *refs = NULL;
    int n_refs = 0, cap_refs = 0, rc = -1, i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", i);
        if (!cJSON_IsObject(m)) {
            bad_type(err, param, "an object", m);
            goto out;
        }
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        snprintf(param, sizeof param, "messages[%d].role", i);
        if (!role || cJSON_IsNull(role)) {
            serve_error_set(err, 400, INVALID, param, "missing_required_parameter", "Missing required parameter: '%s'.",
                            param);
            goto out;
        }
        if (!cJSON_IsString(role)) {
            bad_type(err, param, "a string", role);
            goto out;
        }
        const char *rs = role->valuestring;
        if (!strcmp(rs, "system") || !strcmp(rs, "developer")) roles[i] = ROLE_SYSTEM;
        else if (!strcmp(rs, "user")) roles[i] = ROLE_USER;
        else if (!strcmp(rs, "assistant")) roles[i] = ROLE_ASSISTANT;
        else if (!strcmp(rs, "tool") || !strcmp(rs, "function")) {
            serve_error_set(err, 400, INVALID, param, "invalid_value",
                            "Messages with role '%s' are not supported (this server has no tools).", rs);
            goto out;
        } else {
            serve_error_set(err, 400, INVALID, param, "invalid_value",
                            "Invalid value for '%s': \"%s\" is not one of system, developer, user, assistant.", param,
                            rs);
            goto out;
        }
        int before = n_refs;
        if (read_content(m, i, roles[i], &r->texts[i], &refs, &n_refs, &cap_refs, err) != 0) goto out;
        r->messages[i].role = ROLE_NAMES[roles[i]];
        r->messages[i].text = r->texts[i];
        r->messages[i].text_len = strlen(r->texts[i]);
        r->messages[i].n_images = n_refs - before;
        i++;
    }
    // LLaVA's conversations: an optional system prompt, then user and assistant turns alternating from
    // the user, and the answer replies to a user turn.
    int start = roles[0] == ROLE_SYSTEM;
    if (start == n) {
        serve_error_set(err, 400, INVALID, "messages", "invalid_value",
                        "Invalid 'messages': there is no user message to answer.");
        goto out;
    }
    for (int k = start; k < n; k++) {
        role_kind want = (k - start) % 2 == 0 ? ROLE_USER : ROLE_ASSISTANT;
        if (roles[k] != want) {
            char param[64];
            snprintf(param, sizeof param, "messages[%d].role", k);
            serve_error_set(err, 400, INVALID, param, "invalid_value",
                            "Invalid order of 'messages': messages[%d] is a %s message where a %s message must come "
                            "(a system message may come first only; then user and assistant messages alternate, "
                            "starting and ending with user).",
                            k, ROLE_NAMES[roles[k]], ROLE_NAMES[want]);
            goto out;
        }
    }
    if (roles[n - 1] != ROLE_USER) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d].role", n - 1);
        serve_error_set(err, 400, INVALID, param, "invalid_value",
                        "Invalid 'messages': the last message must be a user message (the answer replies to it).");
        goto out;
    }
    if (n_refs > lim->max_images) {
        serve_error_set(err, 400, INVALID, "messages", "too_many_images",
                        "The request holds %d images; this model takes at most %d per request.", n_refs,
                        lim->max_images);
        goto out;
    }
    if (n_refs) r->images = xcalloc((size_t)n_refs, sizeof *r->images);
    for (int k = 0; k < n_refs; k++) {
        if (serve_load_image(refs[k].url, lim, refs[k].param, &r->images[k], err) != 0) goto out;
        r->n_images++;
    }
    rc = 0;
out:
    free(roles);
    free(refs);
    return rc;
}

static int read_stop(const cJSON *root, serve_chat_request *r, serve_error *err) {
    const cJSON *s = member(root, "stop");
    if (!s) return 0;
    if (cJSON_IsString(s)) {
        if (!s->valuestring[0]) {
            serve_error_set(err, 400, INVALID, "stop", "invalid_value", "Invalid value for 'stop': an empty string.");
            return -1;
        }
        r->stop[r->n_stop++] = xstrdup(s->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(s)) return bad_type(err, "stop", "a string or an array of strings", s);
    int n = cJSON_GetArraySize(s);
    if (n > SERVE_MAX_STOP) {
        serve_error_set(err, 400, INVALID, "stop", "invalid_value",
                        "Invalid 'stop': %d stop strings; at most %d are taken.", n, SERVE_MAX_STOP);
        return -1;
    }
    int j = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, s) {
        char param[32];
        snprintf(param, sizeof param, "stop[%d]", j++);
        if (!cJSON_IsString(e)) return bad_type(err, param, "a string", e);
        if (!e->valuestring[0]) {
            serve_error_set(err, 400, INVALID, param, "invalid_value", "Invalid value for '%s': an empty string.",
                            param);
            return -1;
        }
        r->stop[r->n_stop++] = xstrdup(e->valuestring);
    }
    return 0;
}

static int read_params(const cJSON *root, serve_chat_request *r, serve_error *err) {
    gen_params *p = &r->params;
    memset(p, 0, sizeof *p);
    p->max_new_tokens = 0;  // up to the context
    p->sample.temperature = 1.0f;
    p->sample.top_k = 0;
    p->sample.top_p = 1.0f;
    double d;
    int rc;

    const cJSON *model = member(root, "model");
    if (model) {
        if (!cJSON_IsString(model)) return bad_type(err, "model", "a string", model);
        r->model = xstrdup(model->valuestring);
    }
    if ((rc = get_integer(root, "n", -1e300, 1e300, &d, err)) < 0) return -1;
    if (rc && d != 1) {
        serve_error_set(err, 400, INVALID, "n", "invalid_value",
                        "Invalid value for 'n': %.0f; this server makes one choice per request (n=1).", d);
        return -1;
    }
    if ((rc = get_integer(root, "max_tokens", 1, INT_MAX, &d, err)) < 0) return -1;
    if (rc) p->max_new_tokens = (int)d;
    if ((rc = get_integer(root, "max_completion_tokens", 1, INT_MAX, &d, err)) < 0) return -1;
    if (rc) p->max_new_tokens = (int)d;
    if ((rc = get_number(root, "temperature", 0, 2, &d, err)) < 0) return -1;
    if (rc) p->sample.temperature = (float)d;
    if ((rc = get_number(root, "top_p", 0, 1, &d, err)) < 0) return -1;
    if (rc) p->sample.top_p = (float)d;
    if ((rc = get_integer(root, "top_k", -1, INT_MAX, &d, err)) < 0) return -1;
    if (rc) p->sample.top_k = d < 0 ? 0 : (int)d;  // -1 is "off" in other servers
    // top_p 0 keeps the most likely token only: greedy.
    if (p->sample.top_p == 0.0f) {
        p->sample.temperature = 0.0f;
        p->sample.top_p = 1.0f;
    }
    if ((rc = get_integer(root, "seed", -9223372036854775808.0, 18446744073709551615.0, &d, err)) < 0) return -1;
    if (rc) {
        p->has_seed = 1;
        p->seed = d < 0 ? (uint64_t)(int64_t)d : d >= 18446744073709551615.0 ? UINT64_MAX : (uint64_t)d;
    }
    if (read_stop(root, r, err) != 0) return -1;
    p->stop = (const char *const *)r->stop;
    p->n_stop = r->n_stop;
    int ignore_eos = 0;
    if (get_bool(root, "ignore_eos", &ignore_eos, err) < 0) return -1;
    p->ignore_eos = ignore_eos;
    r->stream = 0;
    if (get_bool(root, "stream", &r->stream, err) < 0) return -1;
    const cJSON *so = member(root, "stream_options");
    if (so) {
        if (!cJSON_IsObject(so)) return bad_type(err, "stream_options", "an object", so);
        const cJSON *iu = member(so, "include_usage");
        if (iu && !cJSON_IsBool(iu)) return bad_type(err, "stream_options.include_usage", "a boolean", iu);
        r->include_usage = cJSON_IsTrue(iu);
    }

    // What the server does not do: refused when asked for, ignored at the neutral value.
    int lp = 0;
    if (get_bool(root, "logprobs", &lp, err) < 0) return -1;
    if (lp) return unsupported(err, "logprobs", "this server returns no log probabilities");
    if ((rc = get_integer(root, "top_logprobs", 0, 20, &d, err)) < 0) return -1;
    if (rc && d > 0) return unsupported(err, "top_logprobs", "this server returns no log probabilities");
    const char *pens[] = {"frequency_penalty", "presence_penalty"};
    for (int k = 0; k < 2; k++) {
        if ((rc = get_number(root, pens[k], -2, 2, &d, err)) < 0) return -1;
        if (rc && d != 0) return unsupported(err, pens[k], "this server applies no penalties (0 is accepted)");
    }
    const cJSON *tools = member(root, "tools");
    if (tools && !cJSON_IsArray(tools)) return bad_type(err, "tools", "an array", tools);
    if (tools && cJSON_GetArraySize(tools) > 0) return unsupported(err, "tools", "this server has no tool calls");
    const cJSON *lb = member(root, "logit_bias");
    if (lb && !cJSON_IsObject(lb)) return bad_type(err, "logit_bias", "an object", lb);
    if (lb && cJSON_GetArraySize(lb) > 0) return unsupported(err, "logit_bias", "this server applies no logit bias");
    const cJSON *rf = member(root, "response_format");
    if (rf) {
        if (!cJSON_IsObject(rf)) return bad_type(err, "response_format", "an object", rf);
        const cJSON *t = member(rf, "type");
        if (t && !cJSON_IsString(t)) return bad_type(err, "response_format.type", "a string", t);
        if (t && strcmp(t->valuestring, "text") != 0)
            return unsupported(err, "response_format", "this server answers in plain text only ({\"type\": \"text\"})");
    }
    return 0;
}

int serve_parse_chat(const char *body, size_t len, const serve_limits *lim, serve_chat_request *out, serve_error *err) {
    memset(out, 0, sizeof *out);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!root) {
        size_t at = end && end >= body ? (size_t)(end - body) : 0;
        serve_error_set(err, 400, INVALID, NULL, "invalid_json",
                        "We could not parse the JSON body of your request (at byte %zu). The body must be a JSON "
                        "object.",
                        at);
        return -1;
    }
    // Nothing but whitespace after the object.
    for (const char *p = end; p && p < body + len; p++)
        if (!(*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')) {
            serve_error_set(err, 400, INVALID, NULL, "invalid_json",
                            "We could not parse the JSON body of your request: text follows the JSON value (at byte "
                            "%zu).",
                            (size_t)(p - body));
            cJSON_Delete(root);
            return -1;
        }
    int rc = -1;
    if (!cJSON_IsObject(root)) {
        serve_error_set(err, 400, INVALID, NULL, "invalid_json",
                        "The body of your request must be a JSON object (it is %s).", json_type_name(root));
        goto out;
    }
    // Parameters first: they are cheap to check, images are not.
    if (read_params(root, out, err) != 0) goto out;
    if (read_messages(root, lim, out, err) != 0) goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc) serve_chat_request_free(out);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Answers

const char *serve_finish_name(finish_reason f) { return f == FINISH_LENGTH ? "length" : "stop"; }

// A JSON string (quotes included) of [s, s+n): UTF-8 passes through, quotes, backslashes and control
// characters are escaped (a NUL too).
static void put_json_string(strbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        sb_put(b, s + run, i - run);
        run = i + 1;
        char esc[8];
        switch (c) {
        case '"': sb_put(b, "\\\"", 2); break;
        case '\\': sb_put(b, "\\\\", 2); break;
        case '\n': sb_put(b, "\\n", 2); break;
        case '\r': sb_put(b, "\\r", 2); break;
        case '\t': sb_put(b, "\\t", 2); break;
        case '\b': sb_put(b, "\\b", 2); break;
        case '\f': sb_put(b, "\\f", 2); break;
        default: snprintf(esc, sizeof esc, "\\u%04x", c); sb_put(b, esc, 6);
        }
    }
    sb_put(b, s + run, n - run);
    sb_put(b, "\"", 1);
}

static void put_str(strbuf *b, const char *s) { put_json_string(b, s, strlen(s)); }

static void put_int(strbuf *b, long long v) {
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%lld", v);
    sb_put(b, tmp, (size_t)n);
}

static void put_head(strbuf *b, const serve_answer_meta *m, const char *object) {
    sb_puts(b, "{\"id\":");
    put_str(b, m->id);
    sb_puts(b, ",\"object\":\"");
    sb_puts(b, object);
    sb_puts(b, "\",\"created\":");
    put_int(b, m->created);
    sb_puts(b, ",\"model\":");
    put_str(b, m->model);
}

static void put_usage(strbuf *b, int prompt_tokens, int completion_tokens) {
    sb_puts(b, "{\"prompt_tokens\":");
    put_int(b, prompt_tokens);
    sb_puts(b, ",\"completion_tokens\":");
    put_int(b, completion_tokens);
    sb_puts(b, ",\"total_tokens\":");
    put_int(b, (long long)prompt_tokens + completion_tokens);
    sb_puts(b, "}");
}

char *serve_completion_json(const serve_answer_meta *m, const char *text, size_t text_len, finish_reason finish,
                            int prompt_tokens, int completion_tokens) {
    strbuf b = {0};
    put_head(&b, m, "chat.completion");
    sb_puts(&b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    put_json_string(&b, text ? text : "", text ? text_len : 0);
    sb_puts(&b, "},\"logprobs\":null,\"finish_reason\":\"");
    sb_puts(&b, serve_finish_name(finish));
    sb_puts(&b, "\"}],\"usage\":");
    put_usage(&b, prompt_tokens, completion_tokens);
    sb_puts(&b, "}");
    return b.p;
}

// One chunk: delta_json is the delta object's inside; finish NULL is null.
static void sse_chunk(strbuf *out, const serve_answer_meta *m, int include_usage, const char *delta_pre,
                      const char *text, size_t len, const char *finish) {
    sb_puts(out, "data: ");
    put_head(out, m, "chat.completion.chunk");
    sb_puts(out, ",\"choices\":[{\"index\":0,\"delta\":{");
    sb_puts(out, delta_pre);
    if (text) {
        sb_puts(out, "\"content\":");
        put_json_string(out, text, len);
    }
    sb_puts(out, "},\"logprobs\":null,\"finish_reason\":");
    if (finish) {
        sb_puts(out, "\"");
        sb_puts(out, finish);
        sb_puts(out, "\"");
    } else sb_puts(out, "null");
    sb_puts(out, "}]");
    if (include_usage) sb_puts(out, ",\"usage\":null");
    sb_puts(out, "}\n\n");
}

void serve_sse_role(strbuf *out, const serve_answer_meta *m, int include_usage) {
    sse_chunk(out, m, include_usage, "\"role\":\"assistant\",", "", 0, NULL);
}

void serve_sse_text(strbuf *out, const serve_answer_meta *m, int include_usage, const char *text, size_t len) {
    sse_chunk(out, m, include_usage, "", text, len, NULL);
}

void serve_sse_finish(strbuf *out, const serve_answer_meta *m, int include_usage, finish_reason finish) {
    sse_chunk(out, m, include_usage, "", NULL, 0, serve_finish_name(finish));
}

void serve_sse_usage(strbuf *out, const serve_answer_meta *m, int prompt_tokens, int completion_tokens) {
    sb_puts(out, "data: ");
    put_head(out, m, "chat.completion.chunk");
    sb_puts(out, ",\"choices\":[],\"usage\":");
    put_usage(out, prompt_tokens, completion_tokens);
    sb_puts(out, "}\n\n");
}

void serve_sse_error(strbuf *out, const serve_error *e) {
    char *j = serve_error_json(e);
    sb_puts(out, "data: ");
    sb_puts(out, j);
    sb_puts(out, "\n\n");
    free(j);
}

void serve_sse_done(strbuf *out) { sb_puts(out, "data: [DONE]\n\n"); }

static void put_model(strbuf *b, const char *model_id, long long created) {
    sb_puts(b, "{\"id\":");
    put_str(b, model_id);
    sb_puts(b, ",\"object\":\"model\",\"created\":");
    put_int(b, created);
    sb_puts(b, ",\"owned_by\":\"llava.c\"}");
}

char *serve_models_json(const char *model_id, long long created) {
    strbuf b = {0};
    sb_puts(&b, "{\"object\":\"list\",\"data\":[");
    put_model(&b, model_id, created);
    sb_puts(&b, "]}");
    return b.p;
}

char *serve_model_json(const char *model_id, long long created) {
    strbuf b = {0};
    put_model(&b, model_id, created);
    return b.p;
}
