// Command-line helpers every command shares: `--help` anywhere in the arguments, and the nearest
// known flag for a misspelled one ("--reusme: unknown argument; did you mean --resume?").
#ifndef LLAVA_APP_ARGS_H
#define LLAVA_APP_ARGS_H

// Whether an argument asks for the usage: --help or -h.
int args_is_help(const char *arg);

// Levenshtein distance between a and b (insertions, deletions, substitutions: one edit each), with a
// swap of two neighbouring characters also one edit (the optimal string alignment distance).
int args_distance(const char *a, const char *b);

// The known flag nearest to `got` when it lies within distance 2 (the first of equals, in the order
// of `known`), else NULL. A value given inline (--lr=3) is compared without its "=...".
const char *args_suggest(const char *got, const char *const *known, int n);

// Prints "llava CMD: ARG: unknown argument; did you mean --X?" (the question only when args_suggest
// finds a flag) to stderr and returns 2, the exit status of a usage error. An argument that is a
// known flag (its value missing at the end of the line) gets "ARG needs a value" instead.
int args_unknown(const char *cmd, const char *arg, const char *const *known, int n);

#define ARGS_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

#endif
