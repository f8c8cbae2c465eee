// The eval room's string-keyed hash map (open addressing, FNV-1a; eval/common.c): Python's dict
// built in file order, where assigning a repeated key replaces its value. Keys are copied.
#pragma once

#include <stddef.h>

typedef struct {
    char **keys;
    void **vals;
    size_t cap, n;
} strmap;

// Pointer values: put replaces; get is NULL for a key that is not there.
void strmap_put(strmap *m, const char *key, void *val);
void *strmap_get(const strmap *m, const char *key);
// Integer values (>= 0: indices, flags) in the same map: get_int is -1 for a key that is not there.
void strmap_set_int(strmap *m, const char *key, int val);
int strmap_get_int(const strmap *m, const char *key);
void strmap_free(strmap *m);
