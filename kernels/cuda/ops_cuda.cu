// The CUDA op table. The kernels behind it land with the CUDA backend issue; until then this
// build reports that no CUDA op table exists, and `--device cuda` says so.
#include "../ops.h"

extern "C" const llava_ops *ops_cuda(void) { return 0; }
