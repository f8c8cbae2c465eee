// Typed reads from cJSON objects. Each returns 1 when the key was present and read, 0 when it is
// absent or null (the output keeps its default), and -1 with an error naming `where` and the key
// when the value has the wrong type.
#ifndef LLAVA_COMMON_JSON_H
#define LLAVA_COMMON_JSON_H

#include <cjson/cJSON.h>
#include <stddef.h>

int json_int(const cJSON *obj, const char *key, int *out, const char *where);
int json_double(const cJSON *obj, const char *key, double *out, const char *where);
int json_float(const cJSON *obj, const char *key, float *out, const char *where);
int json_bool(const cJSON *obj, const char *key, int *out, const char *where);
int json_str(const cJSON *obj, const char *key, char *out, size_t cap, const char *where);

#endif
