"""Reads the GGUF files llava.c's exporter wrote (tests/data/gguf/) with the gguf package and records what it
reads in tests/data/gguf/gguf_reader.json, for tests/test_gguf.c to compare with llava.c's own reader.

For each file: its sha256, version, alignment and data offset; every key in file order (name, value type; a
scalar's or string's value; an array's element type, count and the sha256 of its elements' bytes as stored);
every tensor in file order (name, dimensions innermost first, ggml type, byte count, absolute data offset,
sha256 of its bytes). For Q8_0 tensors also: the sha256 of gguf.quants.dequantize's float32 values (little-
endian), whether gguf.quants.quantize of the weights gives the same bytes, and the largest |dequantised -
weight| in units of half the block's scale max|x|/127. The weights are those of the F16 file: the test model's
weights are float16 numbers (tests/test_gguf.c makes them so), so model-f16.gguf holds them exactly.

Pinned versions: tools/reference/requirements-gguf.txt. Run from the repository root, after
`LLAVA_UPDATE_GOLDEN=1 build/test_gguf` has written the three files:
    python tools/reference/check_gguf.py
"""
import hashlib
import importlib.metadata
import json
import pathlib
import platform

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType
from gguf import quants

DIR = pathlib.Path("tests/data/gguf")
FILES = ["model-f16.gguf", "model-q8_0.gguf", "mmproj-model-f16.gguf"]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def key_entry(name, field):
    t = field.types[0]
    e = {"name": name, "type": t.name}
    if t == GGUFValueType.ARRAY:
        # parts: key length, key, value type, element type, count, then the elements as stored
        e["element_type"] = field.types[-1].name
        e["count"] = len(field.data)
        e["sha256"] = sha(b"".join(p.tobytes() for p in field.parts[5:]))
    else:
        v = field.contents()
        e["value"] = float(v) if t == GGUFValueType.FLOAT32 else v
    return e


def read(path: pathlib.Path, weights: dict | None):
    r = GGUFReader(path)
    raw = path.read_bytes()
    out = {
        "sha256": sha(raw),
        "size": len(raw),
        "version": int(r.fields["GGUF.version"].contents()),
        "alignment": int(r.alignment),
        "data_offset": int(r.data_offset),
        "keys": [key_entry(n, f) for n, f in r.fields.items() if not n.startswith("GGUF.")],
        "tensors": [],
    }
    for t in r.tensors:
        e = {
            "name": t.name,
            "ne": [int(x) for x in t.shape],
            "type": t.tensor_type.name,
            "n_bytes": int(t.n_bytes),
            "data_offset": int(t.data_offset),
            "sha256": sha(t.data.tobytes()),
        }
        if t.tensor_type == GGMLQuantizationType.Q8_0:
            deq = quants.dequantize(t.data, t.tensor_type).astype("<f4")
            e["dequantized_sha256"] = sha(deq.tobytes())
            w = weights[t.name]
            e["requantized_equal"] = bool(quants.quantize(w, GGMLQuantizationType.Q8_0).tobytes() == t.data.tobytes())
            blocks = w.reshape(-1, 32)
            d = np.abs(blocks).max(axis=1, keepdims=True) / np.float32(127)
            err = np.abs(deq.reshape(-1, 32).astype(np.float64) - blocks.astype(np.float64))
            ok = d[:, 0] > 0
            e["max_abs_error"] = float(err.max())
            e["max_error_over_half_scale"] = float((err[ok] / (d[ok] / 2)).max())
        out["tensors"].append(e)
    return out


def main():
    # the weights: the F16 file's values (exact: the test model's weights are float16 numbers)
    f16 = GGUFReader(DIR / "model-f16.gguf")
    weights = {t.name: np.asarray(t.data, dtype=np.float32) for t in f16.tensors}
    result = {
        "generator": "tools/reference/check_gguf.py",
        "versions": {
            "gguf": importlib.metadata.version("gguf"),
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
        "files": {name: read(DIR / name, weights) for name in FILES},
    }
    for name, f in result["files"].items():
        q8 = [t for t in f["tensors"] if t["type"] == "Q8_0"]
        print(f"{name}: {len(f['keys'])} keys, {len(f['tensors'])} tensors"
              + (f", {len(q8)} Q8_0: requantized equal {all(t['requantized_equal'] for t in q8)}, "
                 f"max |err|/(scale/2) {max(t['max_error_over_half_scale'] for t in q8):.4f}" if q8 else ""))
    (DIR / "gguf_reader.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
