// LLAVA_DEBUG_FAULT, the tests' planted faults (train/fault.h).
#include "train/fault.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *debug_fault_mode(int rank, int step) {
    static char mode[16];
    const char *f = getenv("LLAVA_DEBUG_FAULT");
    int r, s;
    if (!f || sscanf(f, "%d:%d:%15s", &r, &s, mode) != 3 || r != rank || s != step) return NULL;
    return mode;
}

void debug_fault_pause(const char *point, int rank, int step) {
    const char *mode = debug_fault_mode(rank, step);
    if (!mode || strcmp(mode, point) != 0) return;
    fprintf(stderr, "\nllava: rank %d: LLAVA_DEBUG_FAULT: paused at %s (step %d)\n", rank, point, step);
    fflush(stderr);
    for (;;) pause();
}
