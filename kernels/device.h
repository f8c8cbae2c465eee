// The backend's work queue, for code outside kernels/ that runs device work of its own beside the
// ops and must order it against them: the NCCL collectives (train/dist/nccl.c) and the kernel
// benchmark's timers. Not for the model, which only ever calls ops.
//
// Events and streams are the device runtime's own handles (cudaEvent_t, cudaStream_t) passed as
// void *, so this header needs no CUDA include. On the CPU every op has finished when it returns:
// there is no stream (NULL), and recording or waiting does nothing.
#ifndef LLAVA_KERNELS_DEVICE_H
#define LLAVA_KERNELS_DEVICE_H

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The stream every op of `be` is enqueued on (cudaStream_t), or NULL.
void *llava_device_stream(llava_backend *be);
// cudaEventRecord(event, stream): the event completes when the ops enqueued so far have.
void llava_device_record(llava_backend *be, void *event);
// cudaStreamWaitEvent(stream, event): ops enqueued after this start once the event has completed
// (the host does not wait).
void llava_device_wait(llava_backend *be, void *event);

#ifdef __cplusplus
}
#endif

#endif
