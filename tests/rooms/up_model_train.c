// Must not compile: model/ sits below train/.
#include "train/optim.h"
