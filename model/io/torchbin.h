// PyTorch checkpoints: the zip files torch.save writes (pytorch_model.bin and its shards, what the
// original LLaVA release and vicuna ship), read into the same st_file table as safetensors.
//
// The pickle inside is never run. A small interpreter understands the opcodes that torch.save
// emits for a dict of tensors (protocols 2-4) and builds values itself; the only callables it
// accepts are the few a tensor checkpoint needs (collections.OrderedDict, torch._utils.
// _rebuild_tensor_v2, _rebuild_parameter) and the torch.*Storage classes as storage types. Anything
// else (os.system, builtins.eval, any other class) is an error naming the file and the callable.
// Checked before any tensor is used: the zip structure (stored entries only, ZIP64 for files over
// 4 GiB), every storage's size against its element count, every tensor inside its storage, shapes
// without overflow, contiguous strides (a transposed view is refused), unique names, and a
// little-endian byte order. Tensor data stay in the file mapping (tensors sharing a storage point
// into it at their offsets).
#ifndef LLAVA_TORCHBIN_H
#define LLAVA_TORCHBIN_H

#include <stddef.h>
#include <stdint.h>

#include "safetensors.h"

// 1 when the bytes start like a zip file (what torch.save writes since PyTorch 1.6).
int tb_is_zip(const uint8_t *buf, size_t len);
// Parses a whole checkpoint held in memory; tensors point into `buf`. `path` names it in messages.
// Files go through st_open, which maps them and takes a zip for a checkpoint.
int tb_parse_buffer(const char *path, const uint8_t *buf, size_t len, st_file *out);

#endif
