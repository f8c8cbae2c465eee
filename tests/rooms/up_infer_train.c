// Must not compile: infer/ sits below train/.
#include "train/trainer.h"
