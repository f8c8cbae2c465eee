#include "json.h"

#include <math.h>
#include <string.h>

#include "util.h"

static const cJSON *present(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return (v && !cJSON_IsNull(v)) ? v : NULL;
}

int json_int(const cJSON *obj, const char *key, int *out, const char *where) {
    const cJSON *v = present(obj, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v) || floor(v->valuedouble) != v->valuedouble || fabs(v->valuedouble) > 2147483647.0)
        return llava_fail("%s: \"%s\" must be an integer", where, key);
    *out = (int)v->valuedouble;
    return 1;
}

int json_double(const cJSON *obj, const char *key, double *out, const char *where) {
    const cJSON *v = present(obj, key);
    if (!v) return 0;
    if (!cJSON_IsNumber(v)) return llava_fail("%s: \"%s\" must be a number", where, key);
    *out = v->valuedouble;
    return 1;
}

int json_float(const cJSON *obj, const char *key, float *out, const char *where) {
    double d = *out;
    int rc = json_double(obj, key, &d, where);
    if (rc == 1) *out = (float)d;
    return rc;
}

int json_bool(const cJSON *obj, const char *key, int *out, const char *where) {
    const cJSON *v = present(obj, key);
    if (!v) return 0;
    if (!cJSON_IsBool(v)) return llava_fail("%s: \"%s\" must be true or false", where, key);
    *out = cJSON_IsTrue(v);
    return 1;
}

int json_str(const cJSON *obj, const char *key, char *out, size_t cap, const char *where) {
    const cJSON *v = present(obj, key);
    if (!v) return 0;
    if (!cJSON_IsString(v)) return llava_fail("%s: \"%s\" must be a string", where, key);
    if (strlen(v->valuestring) >= cap)
        return llava_fail("%s: \"%s\" is longer than %zu characters", where, key, cap - 1);
    memcpy(out, v->valuestring, strlen(v->valuestring) + 1);
    return 1;
}
