// One run per output folder: `llava train` holds an exclusive lock (flock) on
// <output_dir>/.llava.lock for the whole run, so a second run into the same folder (fresh or
// --resume) fails at once naming the holder, instead of interleaving checkpoints with the first.
// The file records "pid <pid> host <host> since <time>". The kernel releases a flock when its
// process dies, so a run killed without cleaning up leaves only that text: the next run takes the
// lock over and says whose it was.
#ifndef LLAVA_TRAIN_RUNLOCK_H
#define LLAVA_TRAIN_RUNLOCK_H

typedef struct {
    int fd;  // -1: not held
    char *path;
} run_lock;

// Takes the lock of folder `dir` (created if missing). 0, or -1 with llava_errmsg() naming the
// process that holds it.
int run_lock_take(run_lock *l, const char *dir);
// Releases it (the file stays, emptied: removing it would let two runs lock two different files).
void run_lock_release(run_lock *l);

#endif
