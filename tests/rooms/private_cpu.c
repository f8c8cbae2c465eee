// Must not compile: kernels/cpu/ is private to kernels/.
#include "kernels/cpu/cpu.h"
