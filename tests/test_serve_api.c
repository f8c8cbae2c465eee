// app/serve_api.c, the OpenAI chat API of `llava serve` without the network: request JSON to the
// engine's messages, images and parameters; every class of bad request to its status, error type,
// param and code; images from data: URLs and (with --allow-local-files) local files, and the ones
// refused; the error, completion and SSE chunk JSON, byte for byte.
#include "app/serve_api.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>

#include "check.h"
#include "serve_client.h"

static serve_limits LIM = {NULL, 1 << 20, 0, 1};
static char *PNG_URL;  // a 4x3 PNG as a data: URL
static char *TMP;      // allow_dir/ holds img.png, "sp ace.png", a directory, a link out; out.png lies outside

static int parse(const char *body, serve_chat_request *r, serve_error *e) {
    memset(e, 0, sizeof *e);
    return serve_parse_chat(body, strlen(body), &LIM, r, e);
}

// The body must be refused with this status, type, param ("" for null) and code.
static void bad(const char *body, int status, const char *type, const char *param, const char *code) {
    serve_chat_request r;
    serve_error e;
    int rc = parse(body, &r, &e);
    CHECK(rc == -1, "accepted: %s", body);
    if (rc != -1) {
        serve_chat_request_free(&r);
        return;
    }
    CHECK(e.status == status, "%s: status %d, want %d (%s)", body, e.status, status, e.message);
    CHECK(e.type && !strcmp(e.type, type), "%s: type %s, want %s", body, e.type, type);
    CHECK(!strcmp(e.param, param), "%s: param \"%s\", want \"%s\" (%s)", body, e.param, param, e.message);
    CHECK(!strcmp(e.code, code), "%s: code \"%s\", want \"%s\" (%s)", body, e.code, code, e.message);
    CHECK(e.message[0], "%s: no message", body);
    CHECK(r.messages == NULL && r.images == NULL && r.n_stop == 0, "%s: the request is not left empty", body);
}

static void bad_msg(const char *body, int status, const char *param, const char *code, const char *needle) {
    bad(body, status, "invalid_request_error", param, code);
    serve_chat_request r;
    serve_error e;
    if (parse(body, &r, &e) == 0) {
        serve_chat_request_free(&r);
        return;
    }
    CHECK(strstr(e.message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", body, e.message, needle);
}

// A body with one user message whose content is `content` (JSON) and extra top-level fields.
static char *user_body(const char *content, const char *extra) {
    return xasprintf("{\"messages\":[{\"role\":\"user\",\"content\":%s}]%s%s}", content, extra ? "," : "",
                     extra ? extra : "");
}

static char *image_body(const char *url) {
    char *c =
        xasprintf("[{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\"}},{\"type\":\"text\",\"text\":\"q\"}]", url);
    char *b = user_body(c, NULL);
    free(c);
    return b;
}

static void bad_image(const char *url, int status, const char *code) {
    char *b = image_body(url);
    bad(b, status, "invalid_request_error", "messages[0].content[0].image_url.url", code);
    free(b);
}

static void good_image(const char *url, int w, int h) {
    char *b = image_body(url);
    serve_chat_request r;
    serve_error e;
    int rc = parse(b, &r, &e);
    CHECK(rc == 0, "%s refused: %s", url, e.message);
    if (rc == 0) {
        CHECK(r.n_images == 1 && r.images[0].w == w && r.images[0].h == h, "%s: %d images", url, r.n_images);
        CHECK(r.messages[0].n_images == 1, "%s: the message takes %d images", url, r.messages[0].n_images);
        serve_chat_request_free(&r);
    }
    free(b);
}

static void test_mapping(void) {
    char *body = xasprintf(
        "{\"model\":\"whatever\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"Be brief.\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"first\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"%s\",\"detail\":\"high\"}},{\"type\":\"text\",\"text\":"
        "\"second\"}]},"
        "{\"role\":\"assistant\",\"content\":\"an answer\",\"name\":\"bot\"},"
        "{\"role\":\"user\",\"content\":\"and \\\"now\\\"?\\n\"}],"
        "\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"top_k\":5,\"seed\":42,\"stop\":[\"END\",\"\\n\\n\"],"
        "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,\"user\":\"u1\",\"frequency_penalty\":0,"
        "\"presence_penalty\":0.0,\"logprobs\":false,\"tools\":[],\"response_format\":{\"type\":\"text\"},"
        "\"unknown_field\":{\"deep\":[1,2,3]},\"ignore_eos\":true}",
        PNG_URL);
    serve_chat_request r;
    serve_error e;
    int rc = parse(body, &r, &e);
    CHECK(rc == 0, "refused: %s (%s)", e.message, e.param);
    free(body);
    if (rc) return;
    CHECK_EQ_INT(r.n_messages, 4);
    CHECK_EQ_STR(r.messages[0].role, "system");
    CHECK_EQ_STR(r.messages[0].text, "Be brief.");
    CHECK_EQ_STR(r.messages[1].role, "user");
    CHECK_EQ_STR(r.messages[1].text, "first\nsecond");  // text parts joined with a newline
    CHECK_EQ_INT(r.messages[1].text_len, 12);
    CHECK_EQ_INT(r.messages[1].n_images, 1);
    CHECK_EQ_STR(r.messages[2].role, "assistant");
    CHECK_EQ_STR(r.messages[2].text, "an answer");
    CHECK_EQ_INT(r.messages[2].n_images, 0);
    CHECK_EQ_STR(r.messages[3].text, "and \"now\"?\n");
    CHECK_EQ_INT(r.n_images, 1);
    CHECK(r.images[0].w == 4 && r.images[0].h == 3, "image %dx%d", r.images[0].w, r.images[0].h);
    CHECK(r.images[0].rgb[0] == 10 && r.images[0].rgb[1] == 20 && r.images[0].rgb[2] == 30, "pixel 0 %d %d %d",
          r.images[0].rgb[0], r.images[0].rgb[1], r.images[0].rgb[2]);
    CHECK_EQ_INT(r.params.max_new_tokens, 7);
    CHECK_NEAR(r.params.sample.temperature, 0.5, 0);
    CHECK_NEAR(r.params.sample.top_p, 0.9f, 0);
    CHECK_EQ_INT(r.params.sample.top_k, 5);
    CHECK(r.params.has_seed && r.params.seed == 42, "seed %llu", (unsigned long long)r.params.seed);
    CHECK_EQ_INT(r.params.n_stop, 2);
    CHECK_EQ_STR(r.params.stop[0], "END");
    CHECK_EQ_STR(r.params.stop[1], "\n\n");
    CHECK_EQ_INT(r.params.ignore_eos, 1);
    CHECK_EQ_INT(r.stream, 1);
    CHECK_EQ_INT(r.include_usage, 1);
    CHECK_EQ_STR(r.model, "whatever");
    serve_chat_request_free(&r);

    // OpenAI's defaults: temperature 1, top_p 1, the whole context, no stream.
    rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", &r, &e);
    CHECK(rc == 0, "refused: %s", e.message);
    if (rc == 0) {
        CHECK_NEAR(r.params.sample.temperature, 1.0, 0);
        CHECK_NEAR(r.params.sample.top_p, 1.0, 0);
        CHECK_EQ_INT(r.params.sample.top_k, 0);
        CHECK_EQ_INT(r.params.max_new_tokens, 0);
        CHECK_EQ_INT(r.params.has_seed, 0);
        CHECK_EQ_INT(r.params.n_stop, 0);
        CHECK_EQ_INT(r.params.ignore_eos, 0);
        CHECK_EQ_INT(r.stream, 0);
        CHECK_EQ_INT(r.include_usage, 0);
        CHECK(r.model == NULL, "model");
        CHECK_EQ_INT(r.n_images, 0);
        CHECK_EQ_INT(r.messages[0].n_images, 0);
        serve_chat_request_free(&r);
    }
    // max_completion_tokens wins over max_tokens; a stop string; temperature 0 is greedy; nulls are absent;
    // "developer" is the system role; a null assistant content is empty; the string form of image_url.
    char *b2 = xasprintf(
        "{\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"sys\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"%s\"}]},"
        "{\"role\":\"assistant\",\"content\":null},{\"role\":\"user\",\"content\":[]}],"
        "\"max_tokens\":9,\"max_completion_tokens\":3,\"stop\":\"x\",\"temperature\":0,\"top_p\":null,"
        "\"seed\":-1,\"stream\":false,\"stream_options\":null,\"top_k\":-1}",
        PNG_URL);
    rc = parse(b2, &r, &e);
    free(b2);
    CHECK(rc == 0, "refused: %s", e.message);
    if (rc == 0) {
        CHECK_EQ_STR(r.messages[0].role, "system");
        CHECK_EQ_STR(r.messages[0].text, "sys");
        CHECK_EQ_INT(r.messages[1].n_images, 1);
        CHECK_EQ_STR(r.messages[1].text, "");
        CHECK_EQ_STR(r.messages[2].text, "");
        CHECK_EQ_STR(r.messages[3].text, "");
        CHECK_EQ_INT(r.params.max_new_tokens, 3);
        CHECK_EQ_INT(r.params.n_stop, 1);
        CHECK_EQ_STR(r.params.stop[0], "x");
        CHECK_NEAR(r.params.sample.temperature, 0, 0);
        CHECK_EQ_INT(r.params.sample.top_k, 0);
        CHECK(r.params.has_seed && r.params.seed == UINT64_MAX, "seed -1 -> %llu", (unsigned long long)r.params.seed);
        serve_chat_request_free(&r);
    }
    // top_p 0 keeps only the most likely token: greedy.
    rc = parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"top_p\":0,\"temperature\":0.7}", &r, &e);
    CHECK(rc == 0, "refused: %s", e.message);
    if (rc == 0) {
        CHECK_NEAR(r.params.sample.temperature, 0, 0);
        serve_chat_request_free(&r);
    }
    // Whitespace around the object is fine.
    rc = parse(" \n{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\r\n ", &r, &e);
    CHECK(rc == 0, "refused: %s", e.message);
    if (rc == 0) serve_chat_request_free(&r);
}

static void test_bad_requests(void) {
    const char *I = "invalid_request_error";
    // The body.
    bad("", 400, I, "", "invalid_json");
    bad("not json", 400, I, "", "invalid_json");
    bad("{\"messages\":[", 400, I, "", "invalid_json");
    bad("[1,2]", 400, I, "", "invalid_json");
    bad("\"text\"", 400, I, "", "invalid_json");
    bad("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]} {}", 400, I, "", "invalid_json");
    // messages.
    bad("{}", 400, I, "messages", "missing_required_parameter");
    bad("{\"messages\":null}", 400, I, "messages", "missing_required_parameter");
    bad_msg("{\"messages\":5}", 400, "messages", "invalid_type", "expected an array, but got a number");
    bad("{\"messages\":{}}", 400, I, "messages", "invalid_type");
    bad("{\"messages\":[]}", 400, I, "messages", "empty_array");
    bad("{\"messages\":[5]}", 400, I, "messages[0]", "invalid_type");
    bad("{\"messages\":[{\"content\":\"x\"}]}", 400, I, "messages[0].role", "missing_required_parameter");
    bad("{\"messages\":[{\"role\":7,\"content\":\"x\"}]}", 400, I, "messages[0].role", "invalid_type");
    bad_msg("{\"messages\":[{\"role\":\"robot\",\"content\":\"x\"}]}", 400, "messages[0].role", "invalid_value",
            "\"robot\" is not one of");
    bad_msg("{\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}", 400, "messages[0].role", "invalid_value",
            "tools");
    bad("{\"messages\":[{\"role\":\"user\"}]}", 400, I, "messages[0].content", "missing_required_parameter");
    bad("{\"messages\":[{\"role\":\"user\",\"content\":5}]}", 400, I, "messages[0].content", "invalid_type");
    bad("{\"messages\":[{\"role\":\"user\",\"content\":{}}]}", 400, I, "messages[0].content", "invalid_type");
    // Content parts.
    char *b;
    const char *parts[][3] = {
        {"[5]", "messages[0].content[0]", "invalid_type"},
        {"[{\"text\":\"x\"}]", "messages[0].content[0].type", "missing_required_parameter"},
        {"[{\"type\":1}]", "messages[0].content[0].type", "invalid_type"},
        {"[{\"type\":\"input_audio\"}]", "messages[0].content[0].type", "invalid_value"},
        {"[{\"type\":\"text\"}]", "messages[0].content[0].text", "missing_required_parameter"},
        {"[{\"type\":\"text\",\"text\":[]}]", "messages[0].content[0].text", "invalid_type"},
        {"[{\"type\":\"text\",\"text\":\"a\"},{\"type\":\"image_url\"}]", "messages[0].content[1].image_url",
         "missing_required_parameter"},
        {"[{\"type\":\"image_url\",\"image_url\":5}]", "messages[0].content[0].image_url", "invalid_type"},
        {"[{\"type\":\"image_url\",\"image_url\":{}}]", "messages[0].content[0].image_url.url",
         "missing_required_parameter"},
        {"[{\"type\":\"image_url\",\"image_url\":{\"url\":5}}]", "messages[0].content[0].image_url.url",
         "invalid_type"},
        {"[{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\",\"detail\":1}}]",
         "messages[0].content[0].image_url.detail", "invalid_type"},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        b = user_body(parts[i][0], NULL);
        bad(b, 400, I, parts[i][1], parts[i][2]);
        free(b);
    }
    // Roles and their order.
    const char *U = "{\"role\":\"user\",\"content\":\"u\"}", *A = "{\"role\":\"assistant\",\"content\":\"a\"}",
               *S = "{\"role\":\"system\",\"content\":\"s\"}";
    struct {
        const char *a, *b, *c, *param;
    } orders[] = {
        {A, U, NULL, "messages[0].role"}, {U, U, NULL, "messages[1].role"}, {U, A, NULL, "messages[1].role"},
        {S, NULL, NULL, "messages"},      {U, S, U, "messages[1].role"},    {S, S, U, "messages[1].role"},
        {S, U, U, "messages[2].role"},    {S, A, U, "messages[1].role"},
    };
    for (size_t i = 0; i < sizeof orders / sizeof orders[0]; i++) {
        b = xasprintf("{\"messages\":[%s%s%s%s%s]}", orders[i].a, orders[i].b ? "," : "",
                      orders[i].b ? orders[i].b : "", orders[i].c ? "," : "", orders[i].c ? orders[i].c : "");
        bad(b, 400, I, orders[i].param, "invalid_value");
        free(b);
    }
    // Images only from users, and no more than the engine takes.
    b = xasprintf(
        "{\"messages\":[%s,{\"role\":\"assistant\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"%s\"}]},%s]}",
        U, PNG_URL, U);
    bad(b, 400, I, "messages[1].content[0]", "invalid_value");
    free(b);
    b = xasprintf(
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":\"%s\"},"
        "{\"type\":\"image_url\",\"image_url\":\"%s\"}]}]}",
        PNG_URL, PNG_URL);
    bad_msg(b, 400, "messages", "too_many_images", "at most 1");
    LIM.max_images = 2;
    serve_chat_request r;
    serve_error e;
    CHECK(parse(b, &r, &e) == 0, "two images with max_images 2: %s", e.message);
    if (r.messages) {
        CHECK_EQ_INT(r.n_images, 2);
        CHECK_EQ_INT(r.messages[0].n_images, 2);
        serve_chat_request_free(&r);
    }
    LIM.max_images = 1;
    free(b);

    // Parameters: wrong types and ranges name the field.
    struct {
        const char *field, *param, *code;
    } params[] = {
        {"\"temperature\":\"hot\"", "temperature", "invalid_type"},
        {"\"temperature\":2.5", "temperature", "invalid_value"},
        {"\"temperature\":-0.1", "temperature", "invalid_value"},
        {"\"top_p\":1.5", "top_p", "invalid_value"},
        {"\"top_p\":true", "top_p", "invalid_type"},
        {"\"top_k\":-2", "top_k", "invalid_value"},
        {"\"top_k\":1.5", "top_k", "invalid_type"},
        {"\"max_tokens\":0", "max_tokens", "invalid_value"},
        {"\"max_tokens\":\"5\"", "max_tokens", "invalid_type"},
        {"\"max_tokens\":2.5", "max_tokens", "invalid_type"},
        {"\"max_tokens\":1e12", "max_tokens", "invalid_value"},
        {"\"max_completion_tokens\":-1", "max_completion_tokens", "invalid_value"},
        {"\"n\":2", "n", "invalid_value"},
        {"\"n\":\"1\"", "n", "invalid_type"},
        {"\"stop\":5", "stop", "invalid_type"},
        {"\"stop\":\"\"", "stop", "invalid_value"},
        {"\"stop\":[\"a\",5]", "stop[1]", "invalid_type"},
        {"\"stop\":[\"a\",\"\"]", "stop[1]", "invalid_value"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop", "invalid_value"},
        {"\"stream\":\"yes\"", "stream", "invalid_type"},
        {"\"stream\":1", "stream", "invalid_type"},
        {"\"stream_options\":5", "stream_options", "invalid_type"},
        {"\"stream_options\":{\"include_usage\":\"y\"}", "stream_options.include_usage", "invalid_type"},
        {"\"seed\":\"x\"", "seed", "invalid_type"},
        {"\"seed\":1.5", "seed", "invalid_type"},
        {"\"model\":5", "model", "invalid_type"},
        {"\"ignore_eos\":\"y\"", "ignore_eos", "invalid_type"},
        {"\"logprobs\":true", "logprobs", "unsupported_parameter"},
        {"\"logprobs\":1", "logprobs", "invalid_type"},
        {"\"top_logprobs\":2", "top_logprobs", "unsupported_parameter"},
        {"\"frequency_penalty\":0.5", "frequency_penalty", "unsupported_parameter"},
        {"\"presence_penalty\":\"x\"", "presence_penalty", "invalid_type"},
        {"\"tools\":[{\"type\":\"function\"}]", "tools", "unsupported_parameter"},
        {"\"tools\":{}", "tools", "invalid_type"},
        {"\"logit_bias\":{\"1\":2}", "logit_bias", "unsupported_parameter"},
        {"\"response_format\":{\"type\":\"json_object\"}", "response_format", "unsupported_parameter"},
        {"\"response_format\":\"json\"", "response_format", "invalid_type"},
    };
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        b = user_body("\"x\"", params[i].field);
        bad(b, 400, I, params[i].param, params[i].code);
        free(b);
    }
    b = user_body("\"x\"", "\"temperature\":\"hot\"");
    bad_msg(b, 400, "temperature", "invalid_type",
            "Invalid type for 'temperature': expected a number, but got a string");
    free(b);
}

static void test_images(void) {
    good_image(PNG_URL, 4, 3);
    // Remote URLs: the server fetches nothing.
    bad_image("http://example.com/a.png", 400, "remote_url_refused");
    bad_image("HTTPS://example.com/a.png", 400, "remote_url_refused");
    char *b = image_body("https://example.com/a.png");
    serve_chat_request r;
    serve_error e;
    if (parse(b, &r, &e) != 0)
        CHECK(strstr(e.message, "the server fetches nothing: send the image as a data: URL") != NULL, "%s", e.message);
    free(b);
    bad_image("ftp://example.com/a.png", 400, "invalid_image_url");
    bad_image("", 400, "invalid_image_url");
    // data: URLs that are not base64, not valid base64, too large, or not an image.
    bad_image("data:image/png,abcd", 400, "invalid_image_url");
    bad_image("data:image/png;base64", 400, "invalid_image_url");
    bad_image("data:image/png;base64,@@@@", 400, "invalid_image_url");
    bad_image("data:image/png;base64,aGVsbG8gd29ybGQ=", 400, "invalid_image");  // "hello world"
    char *trunc = xstrdup(PNG_URL);
    trunc[strlen("data:image/png;base64,") + 64] = 0;  // the PNG's first 48 bytes
    bad_image(trunc, 400, "invalid_image");
    free(trunc);
    LIM.max_image_bytes = 20;
    bad_image(PNG_URL, 413, "image_too_large");
    LIM.max_image_bytes = 1 << 20;
    LIM.max_image_pixels = 11;
    bad_image(PNG_URL, 400, "invalid_image");
    LIM.max_image_pixels = 12;
    good_image(PNG_URL, 4, 3);
    LIM.max_image_pixels = 0;
    bad_image("DATA:image/png;charset=x;BASE64,", 400, "invalid_image");  // read as a data: URL; no bytes
}

static void test_local_files(void) {
    char *allow = path_join(TMP, "allow");
    char *img = path_join(allow, "img.png");
    char *out = path_join(TMP, "out.png");
    char *file_url = xasprintf("file://%s", img);
    // Without --allow-local-files: no path, no file:// URL.
    bad_image(img, 400, "local_files_disabled");
    bad_image(file_url, 400, "local_files_disabled");
    bad_image("img.png", 400, "local_files_disabled");
    char *allow_real = realpath(allow, NULL);
    LIM.allow_dir = allow_real;
    good_image(img, 4, 3);
    good_image("img.png", 4, 3);  // relative to the directory
    good_image(file_url, 4, 3);
    char *u = xasprintf("file://localhost%s", img);
    good_image(u, 4, 3);
    free(u);
    u = xasprintf("file://%s/sp%%20ace.png", allow);
    good_image(u, 4, 3);
    free(u);
    // Outside the directory: absolute, climbing, through a link.
    bad_image(out, 400, "local_file_outside");
    bad_image("../out.png", 400, "local_file_outside");
    bad_image("link.png", 400, "local_file_outside");
    bad_image("/etc/hostname", 400, "local_file_outside");
    u = xasprintf("file://%s", out);
    bad_image(u, 400, "local_file_outside");
    free(u);
    bad_image("file://otherhost/x.png", 400, "invalid_image_url");
    bad_image("file:x.png", 400, "invalid_image_url");
    bad_image("missing.png", 400, "invalid_image_url");
    bad_image("dir", 400, "invalid_image_url");
    LIM.max_image_bytes = 20;
    bad_image("img.png", 413, "image_too_large");
    LIM.max_image_bytes = 1 << 20;
    LIM.allow_dir = NULL;
    free(allow_real);
    free(allow);
    free(img);
    free(out);
    free(file_url);
}

static void test_data_url(void) {
    const char *media, *data, *why;
    size_t ml, dl;
    const char *u = "data:image/png;base64,AAAA";
    CHECK(serve_parse_data_url(u, strlen(u), &media, &ml, &data, &dl, &why) == 0, "%s", why);
    CHECK(ml == 9 && !strncmp(media, "image/png", 9), "media %.*s", (int)ml, media);
    CHECK(dl == 4 && !strncmp(data, "AAAA", 4), "data %.*s", (int)dl, data);
    u = "data:;base64,QQ==";
    CHECK(serve_parse_data_url(u, strlen(u), &media, &ml, &data, &dl, &why) == 0, "%s", why);
    CHECK(ml == 0 && dl == 4, "%zu %zu", ml, dl);
    u = "DATA:image/jpeg;charset=utf-8;Base64,QQ";
    CHECK(serve_parse_data_url(u, strlen(u), &media, &ml, &data, &dl, &why) == 0, "%s", why);
    CHECK(ml == 10 && !strncmp(media, "image/jpeg", 10) && dl == 2, "%.*s %zu", (int)ml, media, dl);
    u = "data:image/png;base64,";
    CHECK(serve_parse_data_url(u, strlen(u), &media, &ml, &data, &dl, &why) == 0 && dl == 0, "empty data");
    const char *bads[] = {"data:image/png,abc", "data:image/png;base64", "http://x", "data:base64,QQ==", "dat"};
    for (int i = 0; i < 5; i++)
        CHECK(serve_parse_data_url(bads[i], strlen(bads[i]), &media, &ml, &data, &dl, &why) == -1 && why, "%s accepted",
              bads[i]);
}

static void test_json_out(void) {
    serve_error e;
    serve_error_set(&e, 400, "invalid_request_error", "temperature", "invalid_type", "Bad \"%s\"", "x");
    char *j = serve_error_json(&e);
    CHECK_EQ_STR(j,
                 "{\"error\":{\"message\":\"Bad \\\"x\\\"\",\"type\":\"invalid_request_error\",\"param\":"
                 "\"temperature\",\"code\":\"invalid_type\"}}");
    free(j);
    serve_error_set(&e, 500, "server_error", NULL, NULL, "boom");
    j = serve_error_json(&e);
    CHECK_EQ_STR(j, "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\",\"param\":null,\"code\":null}}");
    free(j);
    serve_error_from_engine(&e, ENGINE_BAD_REQUEST, "the prompt is 300 tokens; the context holds 256");
    CHECK(e.status == 400 && !strcmp(e.type, "invalid_request_error") && strstr(e.message, "300 tokens"), "%d %s",
          e.status, e.message);
    serve_error_from_engine(&e, ENGINE_CLOSED, "");
    CHECK(e.status == 503 && !strcmp(e.code, "shutting_down"), "%d", e.status);
    serve_error_from_engine(&e, ENGINE_FAILED, "tokenizer");
    CHECK(e.status == 500 && !strcmp(e.type, "server_error"), "%d", e.status);

    serve_answer_meta m = {"chatcmpl-abc", 1700000000, "demo \"m\""};
    const char *text = "a \"q\"\n\t\\ \x01 caf\xc3\xa9";
    j = serve_completion_json(&m, text, strlen(text), FINISH_STOP, 12, 3);
    CHECK_EQ_STR(j,
                 "{\"id\":\"chatcmpl-abc\",\"object\":\"chat.completion\",\"created\":1700000000,\"model\":\"demo "
                 "\\\"m\\\"\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"a "
                 "\\\"q\\\"\\n\\t\\\\ \\u0001 caf\xc3\xa9\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                 "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3,\"total_tokens\":15}}");
    cJSON *p = cJSON_Parse(j);
    CHECK(p != NULL, "not JSON: %s", j);
    const cJSON *content = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "choices"), 0), "message"), "content");
    CHECK(cJSON_IsString(content) && !strcmp(content->valuestring, text), "content round trip");
    cJSON_Delete(p);
    free(j);
    j = serve_completion_json(&m, "x", 1, FINISH_LENGTH, 1, 1);
    CHECK(strstr(j, "\"finish_reason\":\"length\"") != NULL, "%s", j);
    free(j);
    // A NUL inside the text is escaped, not an end.
    j = serve_completion_json(&m, "a\0b", 3, FINISH_STOP, 1, 1);
    CHECK(strstr(j, "\"content\":\"a\\u0000b\"") != NULL, "%s", j);
    free(j);

    // The stream's events.
    strbuf sb = {0};
    serve_answer_meta s = {"chatcmpl-x", 5, "m"};
    serve_sse_role(&sb, &s, 0);
    CHECK_EQ_STR(sb.p,
                 "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
                 "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,"
                 "\"finish_reason\":null}]}\n\n");
    sb.n = 0;
    serve_sse_text(&sb, &s, 0, "he said \"hi\"\n", 13);
    CHECK_EQ_STR(sb.p,
                 "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
                 "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"he said \\\"hi\\\"\\n\"},\"logprobs\":null,"
                 "\"finish_reason\":null}]}\n\n");
    sb.n = 0;
    serve_sse_finish(&sb, &s, 0, FINISH_LENGTH);
    CHECK_EQ_STR(sb.p,
                 "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
                 "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}]}\n\n");
    sb.n = 0;
    serve_sse_text(&sb, &s, 1, "x", 1);  // with include_usage every chunk carries "usage": null
    CHECK(strstr(sb.p, "\"finish_reason\":null}],\"usage\":null}\n\n") != NULL, "%s", sb.p);
    sb.n = 0;
    serve_sse_usage(&sb, &s, 10, 2);
    CHECK_EQ_STR(sb.p,
                 "data: {\"id\":\"chatcmpl-x\",\"object\":\"chat.completion.chunk\",\"created\":5,\"model\":\"m\","
                 "\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,\"total_tokens\":12}}\n\n");
    sb.n = 0;
    serve_sse_error(&sb, &e);
    CHECK(!strncmp(sb.p, "data: {\"error\":{", 16) && strstr(sb.p, "}}\n\n"), "%s", sb.p);
    sb.n = 0;
    serve_sse_done(&sb);
    CHECK_EQ_STR(sb.p, "data: [DONE]\n\n");
    // A whole stream reads back as the text.
    sb.n = 0;
    serve_sse_role(&sb, &s, 1);
    serve_sse_text(&sb, &s, 1, "caf\xc3\xa9 ", 6);
    serve_sse_text(&sb, &s, 1, "\"ok\"", 4);
    serve_sse_finish(&sb, &s, 1, FINISH_STOP);
    serve_sse_usage(&sb, &s, 3, 2);
    serve_sse_done(&sb);
    char got[64], finish[16];
    int n_ev = 0, usage = 0;
    CHECK(sc_sse_content(sb.p, got, sizeof got, &n_ev, finish, sizeof finish, &usage) == 0, "stream: %s", sb.p);
    CHECK_EQ_STR(got, "caf\xc3\xa9 \"ok\"");
    CHECK_EQ_INT(n_ev, 6);
    CHECK_EQ_STR(finish, "stop");
    CHECK_EQ_INT(usage, 1);
    free(sb.p);

    j = serve_models_json("demo", 7);
    CHECK_EQ_STR(j,
                 "{\"object\":\"list\",\"data\":[{\"id\":\"demo\",\"object\":\"model\",\"created\":7,\"owned_by\":"
                 "\"llava.c\"}]}");
    free(j);
    j = serve_model_json("demo", 7);
    CHECK_EQ_STR(j, "{\"id\":\"demo\",\"object\":\"model\",\"created\":7,\"owned_by\":\"llava.c\"}");
    free(j);
    CHECK_EQ_STR(serve_finish_name(FINISH_STOP), "stop");
    CHECK_EQ_STR(serve_finish_name(FINISH_LENGTH), "length");
}

int main(void) {
    TMP = check_tmpdir();
    // A 4x3 PNG, pixel 0 = (10, 20, 30); allow/ with it (twice), a directory and a link out.
    image_u8 im = {4, 3, malloc(36)};
    for (int i = 0; i < 36; i++) im.rgb[i] = (uint8_t)(10 * (i % 3 + 1) + i / 3);
    char *allow = path_join(TMP, "allow"), *img = path_join(allow, "img.png"), *out = path_join(TMP, "out.png");
    char *sp = path_join(allow, "sp ace.png"), *dir = path_join(allow, "dir"), *link = path_join(allow, "link.png");
    mkdir_p(dir);
    CHECK(image_write_png(img, &im) == 0 && image_write_png(out, &im) == 0 && image_write_png(sp, &im) == 0, "png: %s",
          llava_errmsg());
    CHECK(symlink(out, link) == 0, "symlink");
    PNG_URL = sc_data_url(img);

    test_mapping();
    test_bad_requests();
    test_images();
    test_local_files();
    test_data_url();
    test_json_out();

    free(PNG_URL);
    free(im.rgb);
    free(allow);
    free(img);
    free(out);
    free(sp);
    free(dir);
    free(link);
    check_rm_rf(TMP);
    free(TMP);
    return check_done();
}
