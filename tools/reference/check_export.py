"""Loads a llava-hf folder written by llava.c's exporter with transformers and records its outputs.

Builds inputs for the folder's config (two rows, each with one image's tokens at a different
place, right padding, labels), runs LlavaForConditionalGeneration.from_pretrained (fp32, eager
attention) and writes tests/data/export/inputs.safetensors and hf_outputs.safetensors (logits,
loss). tests/test_export.c checks that llava.c's export is byte-identical to the folder checked here
and that its own forward gives these numbers. loading_info.json records what from_pretrained(...,
output_loading_info=True) reported: no missing, unexpected or mismatched keys.
Pinned versions: tools/reference/requirements-model.txt. Run from the repository root:
    LLAVA_UPDATE_GOLDEN=1 build/test_export && python tools/reference/check_export.py
"""
import json
import pathlib

import torch
import transformers
from safetensors.torch import save_file
from transformers import LlavaForConditionalGeneration

DIR = pathlib.Path("tests/data/export")


def main():
    torch.manual_seed(0)
    torch.backends.cudnn.allow_tf32 = False
    cfg = json.loads((DIR / "model" / "config.json").read_text())
    model, info = LlavaForConditionalGeneration.from_pretrained(DIR / "model", torch_dtype=torch.float32,
                                                                attn_implementation="eager",
                                                                output_loading_info=True)
    model.eval()
    # Every tensor of the folder is one the model expects, and every weight the model has came from the
    # folder (none initialised at random): the four lists transformers reports are empty. Recorded for
    # tests/test_export.c, which asserts it, with the number of tensors the model holds.
    info = {k: sorted(str(x) for x in v) for k, v in info.items()}
    info["n_model_tensors"] = len(model.state_dict())
    info["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    (DIR / "loading_info.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    bad = {k: v for k, v in info.items() if isinstance(v, list) and v}
    if bad:
        raise SystemExit(f"transformers did not load the export cleanly: {bad}")
    image_id, n_img = cfg["image_token_index"], cfg["image_seq_length"]
    vocab_real = image_id  # ids past the original vocabulary are the added <image>, <pad> and padding rows
    S = cfg["vision_config"]["image_size"]
    g = torch.Generator().manual_seed(1)
    rows = []
    for prefix, suffix in ((3, 9), (11, 4)):
        ids = [1] + torch.randint(3, vocab_real, (prefix,), generator=g).tolist() + [image_id] * n_img + \
              torch.randint(3, vocab_real, (suffix,), generator=g).tolist()
        rows.append(ids)
    T = max(len(r) for r in rows)
    input_ids = torch.zeros((2, T), dtype=torch.long)
    mask = torch.zeros((2, T), dtype=torch.long)
    labels = torch.full((2, T), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
        for t, tok in enumerate(r):
            if tok != image_id and t >= len(r) - 6:
                labels[i, t] = tok
    pixel_values = torch.randn((2, 3, S, S), generator=g)
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, pixel_values=pixel_values, labels=labels)
    save_file({"input_ids": input_ids, "attention_mask": mask, "labels": labels, "pixel_values": pixel_values},
              str(DIR / "inputs.safetensors"), metadata={"format": "pt"})
    save_file({"logits": out.logits.contiguous(), "loss": out.loss.reshape(())}, str(DIR / "hf_outputs.safetensors"),
              metadata={"format": "pt"})
    print("loss", float(out.loss), "logits", tuple(out.logits.shape))


if __name__ == "__main__":
    main()
