"""Loads a llava-hf export of llava.c with transformers' AutoProcessor and LlavaForConditionalGeneration
and answers one question about one image with it, recording what transformers made of the folder.

The folder is what `llava train` writes at the end of a stage that trains the LM (model/io/export.h:
config.json and model.safetensors, plus tokenizer.model, tokenizer_config.json, special_tokens_map.json,
preprocessor_config.json, processor_config.json and chat_template.json). The demo's trained model is one:
    build/llava demo --fast --out /tmp/demo
    python tools/reference/check_export_processor.py --model /tmp/demo/checkpoints/stage2/model \
        --image tests/data/export/eval_00000.png --llava build/llava
(tests/data/export/eval_00000.png is the demo's held-out image 0, a yellow shape, copied.) The Qwen2-shaped demo's
export (a tokenizer.json run, template qwen_1_5) is recorded the same way:
    build/llava demo --fast --lm qwen2 --out /tmp/demo-qwen2
    python tools/reference/check_export_processor.py --model /tmp/demo-qwen2/checkpoints/stage2/model \
        --image tests/data/export/eval_00000.png --llava build/llava --out tests/data/export/processor_check_qwen2.json
It records (tests/data/export/processor_check.json, which tests/test_export.c reads):
  - the classes AutoProcessor built and the settings it read (patch size, feature strategy, crop, ...);
  - the prompt the folder's chat template makes for one user turn with an image, and the input ids and
    pixel values the processor makes of it (test_export compares them with llava.c's own tokenizer,
    template and image preprocessing);
  - the greedy answer of LlavaForConditionalGeneration.generate on them, of the pipeline, and of
    `llava generate --model FOLDER` (no --tokenizer or --template: it takes the folder's tokenizer and the
    template the export records).
transformers 4.46.3 (tools/reference/requirements-model.txt, with sentencepiece, protobuf and pillow for
the tokenizer and the images) has no "image-text-to-text" pipeline (transformers 4.47 added it): the script
asks for it, records that it is absent, and runs the "image-to-text" pipeline with the chat template's
prompt, which 4.46.3 routes to the same model and processor parts.
"""
import argparse
import hashlib
import json
import pathlib
import re
import subprocess

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoProcessor, LlavaForConditionalGeneration, pipeline


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="the export folder")
    ap.add_argument("--image", required=True)
    ap.add_argument("--prompt", default="What color is the shape?")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--llava", help="the llava executable, to record `llava generate --model FOLDER` as well")
    ap.add_argument("--out", default="tests/data/export/processor_check.json")
    a = ap.parse_args()
    torch.manual_seed(0)
    folder = pathlib.Path(a.model)
    rec = {"versions": {"torch": torch.__version__, "transformers": transformers.__version__},
           "image": pathlib.Path(a.image).name, "question": a.prompt,
           "files": sorted(p.name for p in folder.iterdir()),
           "tokenizer_md5": hashlib.md5((folder / ("tokenizer.model" if (folder / "tokenizer.model").exists()
                                                   else "tokenizer.json")).read_bytes()).hexdigest()}

    proc = AutoProcessor.from_pretrained(folder)
    tok, ip = proc.tokenizer, proc.image_processor
    rec["processor"] = {
        "class": type(proc).__name__, "tokenizer_class": type(tok).__name__, "image_processor_class": type(ip).__name__,
        "patch_size": proc.patch_size, "vision_feature_select_strategy": proc.vision_feature_select_strategy,
        "image_token": proc.image_token, "chat_template": proc.chat_template is not None,
        "crop_size": dict(ip.crop_size), "size": dict(ip.size), "resample": int(ip.resample),
        "do_center_crop": ip.do_center_crop, "image_mean": list(ip.image_mean), "image_std": list(ip.image_std),
        "bos_token": tok.bos_token, "eos_token": tok.eos_token, "unk_token": tok.unk_token, "pad_token": tok.pad_token,
        "image_token_id": tok.convert_tokens_to_ids("<image>"), "pad_token_id": tok.pad_token_id,
        "model_max_length": tok.model_max_length, "padding_side": tok.padding_side,
    }
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": a.prompt}]}]
    prompt = proc.apply_chat_template(messages, add_generation_prompt=True)
    rec["prompt"] = prompt
    image = Image.open(a.image).convert("RGB")
    inputs = proc(images=image, text=prompt, return_tensors="pt")
    ids = inputs["input_ids"][0].tolist()
    px = inputs["pixel_values"][0].double().numpy()
    rec["input_ids"] = ids
    rec["image_tokens"] = sum(1 for i in ids if i == rec["processor"]["image_token_id"])
    rec["pixel_values"] = {"shape": list(inputs["pixel_values"].shape), "sum": float(px.sum()),
                           "sum_sq": float((px * px).sum()), "first": [float(x) for x in px.reshape(-1)[:8]]}

    model = LlavaForConditionalGeneration.from_pretrained(folder, torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=a.max_new_tokens, do_sample=False)
    new = out[0][len(ids):]
    rec["generate"] = {"ids": new.tolist(), "text": proc.decode(new, skip_special_tokens=True).strip()}

    # The pipeline: "image-text-to-text" where this transformers has it, else "image-to-text" with the prompt.
    try:
        pipe = pipeline("image-text-to-text", model=str(folder), torch_dtype=torch.float32)
        res = pipe(images=image, text=messages, max_new_tokens=a.max_new_tokens,
                   generate_kwargs={"do_sample": False}, return_full_text=False)
        rec["pipeline"] = {"task": "image-text-to-text", "text": res[0]["generated_text"].strip()}
    except KeyError as e:  # "Unknown task image-text-to-text" in 4.46
        rec["pipeline_image_text_to_text"] = f"absent in transformers {transformers.__version__}: {e}"
        pipe = pipeline("image-to-text", model=str(folder), torch_dtype=torch.float32)
        res = pipe(image, prompt=prompt, generate_kwargs={"max_new_tokens": a.max_new_tokens, "do_sample": False})
        text = res[0]["generated_text"]
        # image-to-text returns the prompt with the answer: the answer is what follows the prompt's last line
        # ("ASSISTANT:" in vicuna_v1, "<|im_start|>assistant" in ChatML, ...).
        # The decode skips special tokens: so does the marker.
        marker = re.sub(r"<\|[^|]*\|>", "", prompt.rstrip().split("\n")[-1])
        rec["pipeline"] = {"task": "image-to-text", "text": text.split(marker)[-1].strip()}

    if a.llava:
        cmd = [a.llava, "generate", "--model", str(folder), "--image", a.image, "--prompt", a.prompt,
               "--max-new-tokens", str(a.max_new_tokens), "--json", "--ids"]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
        j = json.loads(lines[-1])
        rec["llava_generate"] = {"command": "llava generate --model FOLDER --image IMAGE --prompt QUESTION --json",
                                 "text": j["text"], "prompt_tokens": j["prompt_tokens"]}

    pathlib.Path(a.out).write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    print(json.dumps({k: rec[k] for k in ("prompt", "generate", "pipeline") if k in rec}, indent=1))
    if "llava_generate" in rec:
        print("llava generate:", rec["llava_generate"]["text"])


if __name__ == "__main__":
    main()
