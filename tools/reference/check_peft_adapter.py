"""Checks that a LoRA adapter written by `llava train` loads in Hugging Face PEFT and gives the model llava.c runs.

The base is a llava-hf folder (LlavaForConditionalGeneration, config.json + model.safetensors + the tokenizer and
processor files, as llava.c's exporter writes it); the adapter a PEFT folder (adapter_config.json +
adapter_model.safetensors, as `llava train` writes under OUTPUT/adapter: LoRA on the language model's linears, the
projector in modules_to_save). The script
  1. builds a small batch with the base folder's own AutoProcessor and chat template (three rows: two with one of the
     demo's images, one text only; the "<image>" expanded by LlavaProcessor to image_seq_length tokens; right padding;
     labels on the answer and its </s> only) and writes it as WORK/inputs.safetensors;
  2. runs `llava forward --model BASE --adapter ADAPTER` on it (the adapter unmerged) -> WORK/llava_out.safetensors;
  3. loads LlavaForConditionalGeneration.from_pretrained(BASE, float32, eager attention) (no missing, unexpected or
     mismatched keys), records the base's logits, then PeftModel.from_pretrained(model, ADAPTER), eval(), and checks
       - that every tensor of adapter_model.safetensors landed in the PeftModel bit for bit (each key mapped by hand:
         lora_A/lora_B -> <module>.lora_A.default.weight, a modules_to_save key -> <module>.modules_to_save.default.*),
         and that every lora_A/lora_B/modules_to_save tensor of the PeftModel came from the file: PEFT 0.13.2's
         from_pretrained discards its load result, so a key it cannot place is dropped silently;
       - what PEFT's own set_peft_model_state_dict reports on the same file (unexpected keys; missing adapter keys);
       - max |logits(llava forward --adapter) - logits(PEFT)| over the real (attention_mask 1) positions <= 1e-5
         (the bound this project uses for fp32 parity) and |loss - loss| <= 1e-5;
       - max |logits(PEFT) - logits(base)| > 1e-3: the adapter changes the model (a dropped adapter would give 0), and
         the same with only the projector from the adapter (LoRA disabled), to show modules_to_save was applied;
  4. runs `llava merge --base BASE --adapter ADAPTER --out WORK/merged`, loads that folder with plain transformers
     and compares its logits with PEFT's merge_and_unload() (<= 1e-5), and `llava forward --model WORK/merged` with
     both. merge_and_unload against the unmerged PeftModel is printed too (fp32 rounding of W + s B A, no bound).
Prints every number and PASS/FAIL per check; exits 1 if any check fails.

Run from the repository root (CPU only, a few seconds on the demo model), e.g. on a demo's task adapter:
    python tools/reference/check_peft_adapter.py --base /tmp/lt/s2e1/model --adapter /tmp/lt/task/adapter \
        --llava build/llava [--image /tmp/demo1/data/images/eval_00000.png] [--work DIR]
--image is the first row's image (default /tmp/demo1/data/images/eval_00000.png, a demo's held-out image 0), --image2
the second's (default eval_00001.png in --image's folder); the third row has none. --work keeps the files (default: a
temporary folder).
At 2c7a6a4, on the demo's task adapter, every check passes but one: `llava merge`'s model.safetensors lacks the vision
tower's layers past the feature layer and post_layernorm (18 of 64 tensors; unused with vision_feature_layer -2, so the
logits agree, but transformers reports them missing and initialises them at random). export_llava_hf copies them from
m->vision_source, and llava_model_add_weights (model/llava.c) sets vision_source to any file that loads a tensor under
a group mask that includes GROUP_VISION: llava_model_add_adapter passes all groups, so the adapter's file (no vision
tensors) replaces the base folder as the source.
Pinned versions: tools/reference/requirements-lora.txt (torch 2.5.1, transformers 4.46.3, safetensors 0.4.5,
numpy 2.1.3, peft 0.13.2) with sentencepiece, protobuf and pillow from requirements-model.txt (the processor).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU only
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # base_model_name_or_path is a local folder

import torch  # noqa: E402
import transformers  # noqa: E402
import peft  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoProcessor, LlavaForConditionalGeneration  # noqa: E402
from peft import PeftModel  # noqa: E402
from peft.utils import load_peft_weights, set_peft_model_state_dict  # noqa: E402

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2"}
TOL = 1e-5          # fp32 parity bound (logits and loss)
MIN_EFFECT = 1e-3   # the adapter must move the logits at least this much

# (image or None, question, answer): the demo's questions and answers (data/eval_questions.jsonl)
ROWS = [("image", "What color is the shape?", "yellow"),
        ("image2", "What is the shape?", "square"),
        (None, "How many shapes are there?", "one")]

checks = []


def check(name, ok, detail):
    checks.append((name, bool(ok)))
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}")


def run(cmd):
    print("$", " ".join(str(c) for c in cmd))
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        raise SystemExit(f"{cmd[0]} {cmd[1]} failed with exit status {r.returncode}")
    return r


def build_batch(base, images):
    """input_ids, attention_mask, labels, pixel_values as LlavaProcessor makes them (right padding)."""
    proc = AutoProcessor.from_pretrained(base)
    tok = proc.tokenizer
    tok.padding_side = "right"  # llava forward takes right padding only (the folder says left, for generation)
    prompts, fulls, pics = [], [], []
    for img, q, a in ROWS:
        content = ([{"type": "image"}] if img else []) + [{"type": "text", "text": q}]
        p = proc.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        prompts.append(p)
        fulls.append(p + " " + a + tok.eos_token)
        if img:
            pics.append(Image.open(images[img]).convert("RGB"))
    enc = proc(images=pics, text=fulls, return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = torch.full_like(ids, -100)
    for i, p in enumerate(prompts):
        pre = proc(images=pics[:1] if ROWS[i][0] else None, text=p, return_tensors="pt")["input_ids"][0]
        n, m = len(pre), int(mask[i].sum())
        if ids[i, :n].tolist() != pre.tolist():
            raise SystemExit(f"row {i}: the prompt's tokens are not a prefix of prompt + answer's")
        labels[i, n:m] = ids[i, n:m]  # the answer and </s>
    return {"input_ids": ids, "attention_mask": mask, "labels": labels,
            "pixel_values": enc["pixel_values"].float().contiguous()}


def short(names):
    """A list of tensor names in a line: the first four and how many more."""
    names = list(names)
    return f"{names[:4]}{f' and {len(names) - 4} more' if len(names) > 4 else ''}" if names else "none"


def hf_forward(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.logits.float(), float(out.loss)


def masked_max(a, b, mask):
    return float((a - b).abs()[mask.bool()].max())


def adapter_key_to_model(key, modules_to_save):
    """Where PEFT 0.13.2 puts a key of adapter_model.safetensors in PeftModel.state_dict() (adapter 'default')."""
    for m in modules_to_save:
        if f".{m}." in key:
            return key.replace(f".{m}.", f".{m}.modules_to_save.default.", 1)
    for ab in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector"):
        if f".{ab}." in key:
            return key.replace(f".{ab}.", f".{ab}.default.", 1)
    return key


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the base llava-hf folder")
    ap.add_argument("--adapter", required=True, help="the PEFT adapter folder")
    ap.add_argument("--llava", required=True, help="the llava executable")
    ap.add_argument("--image", default="/tmp/demo1/data/images/eval_00000.png", help="the first row's image")
    ap.add_argument("--image2", help="the second row's image (default: eval_00001.png beside --image)")
    ap.add_argument("--work", help="where the inputs, outputs and merged folder go (default: a temporary folder)")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}
    print("versions", json.dumps(versions), "" if all(versions[k].startswith(v) for k, v in PINNED.items())
          else f"(pinned: {json.dumps(PINNED)})")
    base, adapter = pathlib.Path(a.base), pathlib.Path(a.adapter)
    images = {"image": a.image, "image2": a.image2 or str(pathlib.Path(a.image).parent / "eval_00001.png")}
    work = pathlib.Path(a.work) if a.work else pathlib.Path(tempfile.mkdtemp(prefix="check_peft_"))
    work.mkdir(parents=True, exist_ok=True)
    acfg = json.loads((adapter / "adapter_config.json").read_text())
    print("adapter_config", json.dumps({k: acfg.get(k) for k in ("peft_type", "r", "lora_alpha", "use_rslora",
                                                                "use_dora", "target_modules", "modules_to_save",
                                                                "bias", "fan_in_fan_out")}))

    # 1. inputs
    batch = build_batch(base, images)
    inputs = work / "inputs.safetensors"
    save_file({k: v.contiguous() for k, v in batch.items()}, str(inputs), metadata={"format": "pt"})
    mask = batch["attention_mask"]
    img_id = json.loads((base / "config.json").read_text())["image_token_index"]
    print(f"batch input_ids {tuple(batch['input_ids'].shape)} tokens/row {mask.sum(1).tolist()} "
          f"image tokens/row {(batch['input_ids'] == img_id).sum(1).tolist()} "
          f"pixel_values {tuple(batch['pixel_values'].shape)} scored/row {(batch['labels'] != -100).sum(1).tolist()}")

    # 2. llava forward --adapter (unmerged)
    llava_out = work / "llava_out.safetensors"
    run([a.llava, "forward", "--model", base, "--adapter", adapter, "--inputs", inputs, "--out", llava_out])
    lo = load_file(str(llava_out))
    l_logits, l_loss = lo["logits"], float(lo["loss"])

    # 3. transformers + PEFT
    model, info = LlavaForConditionalGeneration.from_pretrained(base, torch_dtype=torch.float32,
                                                                attn_implementation="eager", output_loading_info=True)
    model.eval()
    bad = {k: v for k, v in info.items() if v}
    check("base loads cleanly in transformers", not bad, bad or "no missing, unexpected or mismatched keys")
    b_logits, b_loss = hf_forward(model, batch)
    base_proj = {k: v.clone() for k, v in model.multi_modal_projector.state_dict().items()}

    pm = PeftModel.from_pretrained(model, adapter)
    pm.eval()
    file_sd = load_file(str(adapter / "adapter_model.safetensors"))
    msd = pm.state_dict()
    mts = list(acfg.get("modules_to_save") or [])
    placed, absent, differ = 0, [], []
    for k, v in file_sd.items():
        mk = adapter_key_to_model(k, mts)
        if mk not in msd:
            absent.append(k)
        elif msd[mk].dtype != v.dtype or msd[mk].shape != v.shape or not torch.equal(msd[mk], v):
            differ.append(k)
        else:
            placed += 1
    adapted = {k for k in msd if ".lora_" in k or ".modules_to_save." in k}
    from_file = {adapter_key_to_model(k, mts) for k in file_sd}
    not_in_file = sorted(adapted - from_file)
    n_lora_mod = sum(1 for _, m in pm.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A)
    n_lora_file = len({k.rsplit(".lora_", 1)[0] for k in file_sd if ".lora_" in k})
    print(f"adapter file: {len(file_sd)} tensors ({sum(1 for k in file_sd if '.lora_' in k)} lora, "
          f"{sum(1 for k in file_sd if '.lora_' not in k)} modules_to_save); PeftModel: {n_lora_mod} LoRA modules "
          f"(file: {n_lora_file}), {len(adapted)} adapter tensors")
    check("every adapter tensor loaded into PEFT bit for bit", not absent and not differ,
          f"{placed}/{len(file_sd)} placed and equal; not placed {absent}; different {differ}")
    check("every PEFT adapter tensor came from the file", not not_in_file and n_lora_mod == n_lora_file,
          f"{len(adapted)} in the model, {len(not_in_file)} not in the file {not_in_file[:6]}")
    res = set_peft_model_state_dict(pm, load_peft_weights(str(adapter)))  # PEFT's own report, same values again
    unexpected = list(res.unexpected_keys)
    missing = [k for k in res.missing_keys if ".lora_" in k or ".modules_to_save." in k]
    check("PEFT's set_peft_model_state_dict reports no unexpected or missing adapter keys",
          not unexpected and not missing, f"unexpected {unexpected[:6]}, missing adapter keys {missing[:6]}")
    proj_diff = max(float((pm.base_model.model.multi_modal_projector.modules_to_save["default"].state_dict()[k]
                           - v).abs().max()) for k, v in base_proj.items())
    print(f"projector: max |adapter's - base's| weight {proj_diff:.6g}")

    p_logits, p_loss = hf_forward(pm, batch)
    d = masked_max(l_logits, p_logits, mask)
    pad_zero = bool((l_logits[~mask.bool()] == 0).all())
    check("llava forward --adapter logits == PEFT's (real positions)", d <= TOL,
          f"max abs diff {d:.3g} (bound {TOL:g}; llava's padding positions all zero: {pad_zero})")
    check("llava forward --adapter loss == PEFT's", abs(l_loss - p_loss) <= TOL,
          f"llava {l_loss:.8f} PEFT {p_loss:.8f} diff {abs(l_loss - p_loss):.3g} (base's loss {b_loss:.8f})")
    e = masked_max(p_logits, b_logits, mask)
    check("the adapter changes the model (PEFT vs base)", e > MIN_EFFECT, f"max |peft - base| logits {e:.6g}")
    with pm.disable_adapter():  # LoRA off AND modules_to_save off: must equal the base
        off_logits, _ = hf_forward(pm, batch)
    check("PEFT with the adapter disabled == base", masked_max(off_logits, b_logits, mask) == 0.0,
          f"max abs diff {masked_max(off_logits, b_logits, mask):.3g}")
    # only the projector from the adapter: scale every LoRA layer's contribution to zero
    for _, m in pm.named_modules():
        if hasattr(m, "scaling") and isinstance(m.scaling, dict) and "default" in m.scaling:
            m._keep, m.scaling["default"] = m.scaling["default"], 0.0
    proj_logits, _ = hf_forward(pm, batch)
    for _, m in pm.named_modules():
        if hasattr(m, "_keep"):
            m.scaling["default"] = m._keep
            del m._keep
    ep = masked_max(proj_logits, b_logits, mask)
    el = masked_max(p_logits, proj_logits, mask)
    check("modules_to_save (projector) applied", ep > MIN_EFFECT,
          f"max |projector-only - base| {ep:.6g}; LoRA's own part max |peft - projector-only| {el:.6g}")

    # 4. merged
    merged = work / "merged"
    if merged.exists():
        for f in merged.iterdir():
            f.unlink()
        merged.rmdir()
    run([a.llava, "merge", "--base", base, "--adapter", adapter, "--out", merged])
    mm = pm.merge_and_unload()
    mm.eval()
    pmg_logits, pmg_loss = hf_forward(mm, batch)
    print(f"PEFT merge_and_unload vs unmerged PEFT: max abs logits diff {masked_max(pmg_logits, p_logits, mask):.3g}"
          f" (fp32 rounding of W + s B A), loss {pmg_loss:.8f}")
    lm, linfo = LlavaForConditionalGeneration.from_pretrained(merged, torch_dtype=torch.float32,
                                                             attn_implementation="eager", output_loading_info=True)
    lm.eval()
    bad = {k: v for k, v in linfo.items() if v}
    check("llava merge's folder loads cleanly in transformers", not bad,
          "; ".join(f"{len(v)} {k}: {short(v)}" for k, v in bad.items()) or "no missing, unexpected or mismatched")
    lmg_logits, lmg_loss = hf_forward(lm, batch)
    d = masked_max(lmg_logits, pmg_logits, mask)
    check("llava merge (transformers) == PEFT merge_and_unload", d <= TOL,
          f"max abs logits diff {d:.3g}, loss {lmg_loss:.8f} vs {pmg_loss:.8f} (diff {abs(lmg_loss - pmg_loss):.3g})")
    # the weights llava merge wrote (transformers made up the missing ones, if any) against merge_and_unload's
    written = load_file(str(merged / "model.safetensors"))
    psd2 = mm.state_dict()
    wd = max(float((v.float() - psd2[k]).abs().max()) for k, v in written.items())
    check("llava merge's weights == merge_and_unload's", wd <= TOL,
          f"max abs diff {wd:.3g} over the {len(written)} tensors written ({len(psd2)} in the model; "
          f"not written: {short(sorted(set(psd2) - set(written)))})")
    merged_out = work / "llava_merged_out.safetensors"
    run([a.llava, "forward", "--model", merged, "--inputs", inputs, "--out", merged_out])
    lmo = load_file(str(merged_out))
    d1 = masked_max(lmo["logits"], lmg_logits, mask)
    d2 = masked_max(lmo["logits"], l_logits, mask)
    check("llava forward on the merged folder == transformers on it", d1 <= TOL,
          f"max abs logits diff {d1:.3g}; vs llava forward --adapter (unmerged) {d2:.3g}; "
          f"loss {float(lmo['loss']):.8f}")

    failed = [n for n, ok in checks if not ok]
    print(f"{len(checks) - len(failed)}/{len(checks)} checks passed; files in {work}")
    if failed:
        print("FAILED:", "; ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
