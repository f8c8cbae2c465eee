// Must compile: train/ may use every room below it (the control for the probes that must fail).
#include "common/util.h"
#include "data/loader.h"
#include "infer/generate.h"
#include "kernels/backend.h"
#include "kernels/device.h"
#include "model/llava.h"
#include "train/trainer.h"

int rooms_probe_down_train(void) { return (int)sizeof(llava_model) + (int)sizeof(llava_backend_info); }
