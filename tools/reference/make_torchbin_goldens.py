"""Writes PyTorch checkpoint files (torch.save's zip format, the pytorch_model.bin that the original
LLaVA release and vicuna ship) for the C reader's tests, each beside a safetensors file holding the
same tensors (written by the safetensors library), so that the test compares the two readers.

    tests/data/torchbin/small.bin (+ small.safetensors)   a plain dict: every dtype the reader
        takes, a 0-d tensor, an empty one, two views of one storage (one at an offset), and
        an nn.Parameter
    tests/data/torchbin/state_dict.bin                     a module's state_dict (an OrderedDict
        with _metadata, set by BUILD), the form torch.save(model.state_dict()) writes
    tests/data/torchbin/transposed.bin                     a non-contiguous tensor (must be refused)
    tests/data/torchbin/evil.bin                           a data.pkl that names os.system (must be
        refused without running anything)
    tests/data/torchbin/compressed.bin                     a deflated entry (must be refused)
    tests/data/torchbin/small_zip64.bin                    small.bin's entries re-zipped with ZIP64
        records forced (Info-ZIP zip 3.0, `zip -0 -fz`)
    tests/data/torchbin/tiny64/                            the golden tiny64 model in fp16 as two
        shards and a pytorch_model.bin.index.json, as transformers' save_pretrained wrote them
    tests/data/torchbin/mm_projector.bin                   its projector in bf16 under LLaVA's
        original names, as LLaVA's stage 1 saves it

Pinned versions: tools/reference/requirements-safetensors.txt (torch 2.5.1, safetensors 0.4.5).
Run from the repository root:
    python tools/reference/make_torchbin_goldens.py
"""
import io
import json
import pathlib
import pickle
import shutil
import subprocess
import tempfile
import zipfile

import torch
from safetensors.torch import load_file, save_file

OUT = pathlib.Path("tests/data/torchbin")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(3)
    base = torch.randn((4, 6), generator=g)
    big = torch.randn((5, 8), generator=g)
    tensors = {
        "a.f32": base.clone(),
        "b.f16": base.to(torch.float16),
        "c.bf16": (base * 3).to(torch.bfloat16),
        "d.f64": base.to(torch.float64)[:2].clone(),
        "e.i64": torch.tensor([-3, 0, 1 << 40], dtype=torch.int64),
        "f.scalar": torch.tensor(1.5),
        "g.empty": torch.zeros((0, 4)),
        "h.i32": torch.tensor([7, -8], dtype=torch.int32),
        "i.u8": torch.arange(5, dtype=torch.uint8),
        "j.bool": torch.tensor([True, False, True]),
    }
    shared = big.clone()
    tensors_bin = dict(tensors)
    tensors_bin["k.view_whole"] = shared  # two tensors on one storage
    tensors_bin["l.view_row3"] = shared[3]  # offset 24 into it, contiguous
    tensors_bin["m.param"] = torch.nn.Parameter(base[1].clone(), requires_grad=True)
    torch.save(tensors_bin, OUT / "small.bin")
    ref = {k: v.detach().clone().contiguous() for k, v in tensors_bin.items()}
    save_file(ref, OUT / "small.safetensors")

    lin = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.LayerNorm(2))
    torch.manual_seed(0)
    for p in lin.parameters():
        torch.nn.init.normal_(p)
    torch.save(lin.state_dict(), OUT / "state_dict.bin")
    save_file({k: v.contiguous() for k, v in lin.state_dict().items()}, OUT / "state_dict.safetensors")

    torch.save({"w": base.t()}, OUT / "transposed.bin")

    # A checkpoint whose pickle calls os.system: a loader that ran pickles would run it.
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned > /tmp/llava-torchbin-pwned",))

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
        z.writestr("archive/version", "3\n")
    (OUT / "evil.bin").write_bytes(buf.getvalue())

    # The small checkpoint again with its entries deflated (torch never writes this).
    src = zipfile.ZipFile(OUT / "small.bin")
    with zipfile.ZipFile(OUT / "compressed.bin", "w", zipfile.ZIP_DEFLATED) as z:
        for info in src.infolist():
            z.writestr(info.filename, src.read(info.filename))

    # The small checkpoint's entries re-zipped by Info-ZIP's zip 3.0 with ZIP64 records forced
    # (-fz): the structures a checkpoint over 4 GiB has, in a small file.
    tmp = pathlib.Path(tempfile.mkdtemp())
    src.extractall(tmp)
    subprocess.run(["zip", "-q", "-0", "-fz", "-X", "-r", str((OUT / "small_zip64.bin").resolve()), "small"], cwd=tmp,
                   check=True)
    shutil.rmtree(tmp)

    # The golden tiny64 model, fp16, in two shards with the index transformers writes.
    model = load_file("tests/data/golden/model/tiny64/model/model.safetensors")
    names = sorted(model)
    half = len(names) // 2
    d = OUT / "tiny64"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    shards = {"pytorch_model-00001-of-00002.bin": names[:half], "pytorch_model-00002-of-00002.bin": names[half:]}
    weight_map, total = {}, 0
    for fname, keys in shards.items():
        torch.save({k: model[k].to(torch.float16) for k in keys}, d / fname)
        for k in keys:
            weight_map[k] = fname
            total += model[k].numel() * 2
    (d / "pytorch_model.bin.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2, sort_keys=True) + "\n")
    shutil.copy("tests/data/golden/model/tiny64/model/config.json", d / "config.json")

    # Its projector as LLaVA's stage 1 saves it (mm_projector.bin: original names, bf16).
    proj = {k.replace("multi_modal_projector.linear_1.", "model.mm_projector.0.")
             .replace("multi_modal_projector.linear_2.", "model.mm_projector.2."): v.to(torch.bfloat16)
            for k, v in model.items() if k.startswith("multi_modal_projector.")}
    assert len(proj) == 4, sorted(proj)
    torch.save(proj, OUT / "mm_projector.bin")
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
