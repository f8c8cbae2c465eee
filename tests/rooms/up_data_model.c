// Must not compile: data/ sits below model/ (the build's rooms test expects "No such file").
#include "model/llava.h"
