"""By hand: llama.cpp answering the demo's questions from `llava export --format gguf` files.

llama-cpp-python (0.3.36, built from source: `pip install llama-cpp-python==0.3.36`, about 7 minutes on 2
cores) with LLaVA-1.5's vicuna_v1 prompt, greedy; compare with `llava generate` on the same images and
questions (docs/gguf.md records the result). Not in CI.

    llava export --format gguf --model DEMO/checkpoints/stage2/model --tokenizer DEMO/tokenizer.model --out G --type f32
    python tools/reference/llamacpp_demo_check.py G/mmproj-model-f32.gguf G/model-f32.gguf IMG QUESTION [IMG QUESTION ...]
"""
import sys, base64
from llama_cpp import Llama
from llama_cpp.llama_chat_format import Llava15ChatHandler
SYSTEM = "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions."
class Vicuna(Llava15ChatHandler):  # LLaVA-1.5's vicuna_v1: "SYSTEM USER: <image>\nQ ASSISTANT:"
    CHAT_FORMAT = (SYSTEM + "{% for message in messages %}{% if message.role == 'user' %} USER: "
                   "{% for content in message.content %}{% if content.type == 'image_url' %}{{ content.image_url.url }}\n{% endif %}{% endfor %}"
                   "{% for content in message.content %}{% if content.type == 'text' %}{{ content.text }}{% endif %}{% endfor %}"
                   "{% endif %}{% endfor %} ASSISTANT:")
handler = Vicuna(clip_model_path=sys.argv[1], verbose=False)
llm = Llama(model_path=sys.argv[2], chat_handler=handler, n_ctx=256, verbose=False)
for img, q in zip(sys.argv[3::2], sys.argv[4::2]):
    uri = "data:image/png;base64," + base64.b64encode(open(img, "rb").read()).decode()
    out = llm.create_chat_completion(messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": q}]}], temperature=0, max_tokens=8)
    print(img.split('/')[-1], q, "->", repr(out["choices"][0]["message"]["content"]))
