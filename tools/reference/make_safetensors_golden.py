"""Writes tests/data/safetensors/reference.safetensors with the official safetensors library.

The C reader must read it, and the C writer must reproduce it byte for byte from the same tensors
(same ordering, header padding and JSON form). Values are chosen so that every dtype's conversion
is visible: fractions that round in F16/BF16, negatives, large integers.
Pinned versions: tools/reference/requirements-safetensors.txt. Run from the repository root:
    python tools/reference/make_safetensors_golden.py
"""
import json
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

OUT = pathlib.Path("tests/data/safetensors")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    base = torch.tensor([[0.1, -2.5, 3.0], [1e-3, 65504.0, -0.0]], dtype=torch.float64)
    tensors = {
        "a.f32": base.to(torch.float32),
        "b.f16": base.to(torch.float16),
        "c.bf16": base.to(torch.bfloat16),
        "d.i64": torch.tensor([[-3, 0, 1 << 40]], dtype=torch.int64),
        "e.u8": torch.arange(7, dtype=torch.uint8),
        "f.scalar": torch.tensor(1.5, dtype=torch.float32),
        "g.empty": torch.zeros((0, 4), dtype=torch.float32),
        "h.i32": torch.tensor([7, -8], dtype=torch.int32),
    }
    path = OUT / "reference.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    # What each tensor holds, as float64 after the library's own dtype conversion.
    expect = {k: {"dtype": str(v.dtype), "shape": list(v.shape), "values": v.to(torch.float64).flatten().tolist()}
              for k, v in tensors.items()}
    (OUT / "reference.json").write_text(json.dumps(expect, indent=1) + "\n")
    print(path, path.stat().st_size, "bytes")


if __name__ == "__main__":
    main()
