// Must not compile: nothing uses app/.
#include "app/demo.h"
