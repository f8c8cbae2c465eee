// Must not compile: kernels/ knows nothing of data/.
#include "data/batch.h"
