// Opening backends by name, and the functions of backend.h and device.h that every backend shares
// (each dispatches to the context's iface; a capability a backend lacks is a no-op or NULL).
#include "backend.h"

#include <stdio.h>
#include <string.h>

#include "backend_impl.h"
#include "common/util.h"
#include "device.h"

const char *const LLAVA_OP_NAMES[LLAVA_OP_COUNT] = {
    "linear",    "patch_unfold", "clip_embed",    "layernorm", "rmsnorm",          "elementwise", "rope",   "attention",
    "embedding", "rows",         "cross_entropy", "adamw",     "attention_decode", "grid_pool",   "resize",
};

llava_backend *llava_backend_open(const char *name, const llava_backend_options *o) {
    if (strcmp(name, "cpu") == 0) return llava_backend_open_cpu(o);
    if (strcmp(name, "cuda") == 0) return llava_backend_open_cuda(o);
    llava_fail("unknown backend \"%s\" (cpu or cuda)", name);
    return NULL;
}

void llava_backend_close(llava_backend *be) {
    if (be) be->iface->close(be);
}

void llava_backend_describe(const llava_backend *be, llava_backend_info *info) { be->iface->describe(be, info); }

int llava_backend_available(const char *name, char *why, size_t cap) {
    if (cap) why[0] = 0;
    if (strcmp(name, "cpu") == 0) return 1;
    if (strcmp(name, "cuda") == 0) return llava_backend_cuda_available(why, cap);
    snprintf(why, cap, "unknown backend \"%s\" (cpu or cuda)", name);
    return 0;
}

int llava_backend_supports(const llava_backend *be, const llava_op_shape *s, char *why, size_t cap) {
    char dummy[8];
    if (!why || !cap) {
        why = dummy;
        cap = sizeof dummy;
    }
    why[0] = 0;
    for (int i = 0; i < 6; i++)
        if (s->n[i] < 0) {
            snprintf(why, cap, "%s: negative size", s->op >= 0 && s->op < LLAVA_OP_COUNT ? LLAVA_OP_NAMES[s->op] : "?");
            return 0;
        }
    return be->iface->supports(be, s, why, cap);
}

void llava_backend_reset_peak(llava_backend *be) { be->bytes_peak = be->bytes_in_use; }

void llava_backend_set_batch_invariant(llava_backend *be, int on) { be->batch_invariant = on != 0; }

void *llava_device_stream(llava_backend *be) { return be->iface->stream ? be->iface->stream(be) : NULL; }

void llava_device_record(llava_backend *be, void *event) {
    if (be->iface->record) be->iface->record(be, event);
}

void llava_device_wait(llava_backend *be, void *event) {
    if (be->iface->wait) be->iface->wait(be, event);
}
