#include "args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int args_is_help(const char *arg) { return arg && (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0); }

// Levenshtein distance with a swap of two neighbouring characters counted as one edit (the optimal
// string alignment distance): "--reusme" is one edit from "--resume", "--modle" one from "--model".
static int distance_n(const char *a, size_t la, const char *b, size_t lb) {
    int *rows = malloc(sizeof(int) * 3 * (lb + 1));
    if (!rows) return (int)(la > lb ? la : lb);
    int *prev2 = rows, *prev = rows + (lb + 1), *cur = rows + 2 * (lb + 1);
    for (size_t j = 0; j <= lb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int best = prev[j - 1] + (a[i - 1] != b[j - 1]);   // substitution (or match)
            if (prev[j] + 1 < best) best = prev[j] + 1;        // deletion
            if (cur[j - 1] + 1 < best) best = cur[j - 1] + 1;  // insertion
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;  // neighbours swapped
            cur[j] = best;
        }
        int *t = prev2;
        prev2 = prev, prev = cur, cur = t;
    }
    int d = prev[lb];
    free(rows);
    return d;
}

int args_distance(const char *a, const char *b) { return distance_n(a, strlen(a), b, strlen(b)); }

const char *args_suggest(const char *got, const char *const *known, int n) {
    if (!got) return NULL;
    const char *eq = strchr(got, '=');
    size_t len = eq ? (size_t)(eq - got) : strlen(got);
    const char *best = NULL;
    int best_d = 3;
    for (int i = 0; i < n; i++) {
        int d = distance_n(got, len, known[i], strlen(known[i]));
        if (d < best_d) best_d = d, best = known[i];
    }
    // An exact match (distance 0) is a known flag given where it does not fit (a missing value):
    // suggesting it back would not help.
    return best_d == 0 ? NULL : best;
}

int args_unknown(const char *cmd, const char *arg, const char *const *known, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(arg, known[i]) == 0) {  // known, but its value is missing (the last argument)
            fprintf(stderr, "llava %s: %s needs a value (llava %s --help)\n", cmd, arg, cmd);
            return 2;
        }
    const char *s = args_suggest(arg, known, n);
    if (s) fprintf(stderr, "llava %s: %s: unknown argument; did you mean %s?\n", cmd, arg, s);
    else fprintf(stderr, "llava %s: %s: unknown argument (llava %s --help lists them)\n", cmd, arg, cmd);
    return 2;
}
