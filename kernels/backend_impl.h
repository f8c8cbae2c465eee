// Private to kernels/: the constructors behind llava_backend_open() (backend.c), one per backend.
#ifndef LLAVA_KERNELS_BACKEND_IMPL_H
#define LLAVA_KERNELS_BACKEND_IMPL_H

#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

llava_backend *llava_backend_open_cpu(const llava_backend_options *o);   // kernels/cpu/backend_cpu.c
llava_backend *llava_backend_open_cuda(const llava_backend_options *o);  // kernels/cuda/backend_cuda.cu or stub.c
int llava_backend_cuda_available(char *why, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
