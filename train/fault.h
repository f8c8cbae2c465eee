// Test hooks: faults planted on purpose, at a named moment of a run, so the tests that check how a
// run survives them do not depend on timing.
//
// LLAVA_DEBUG_FAULT=RANK:STEP:MODE acts on rank RANK at step STEP (a step is numbered as the metrics
// number it: the first is 1). The modes, and where they act:
//   exit, kill, hang, term   at the start of the step: _exit(3), SIGKILL, wait forever, SIGTERM;
//   nangrad                  after the step's gradients are reduced: one gradient value becomes NaN
//                            (the step must be skipped and the run go on);
//   ckpt-tmp                 writing checkpoint STEP: after weights.safetensors is in the temporary
//                            folder, before the optimizer state (a torn temporary folder);
//   ckpt-nomarker            writing checkpoint STEP: after the folder is renamed into place, before
//                            its COMPLETE manifest (a checkpoint-STEP folder that never finished).
// The two ckpt- modes stop there and wait forever, saying so on stderr, for the test to kill them.
#pragma once

// The mode the variable names for this rank and step, or NULL.
const char *debug_fault_mode(int rank, int step);

// If the variable names this rank, step and `point`: says so on stderr and waits forever.
void debug_fault_pause(const char *point, int rank, int step);
