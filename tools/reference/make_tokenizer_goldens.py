"""Golden data for the C tokenizer, conversation templates and label masks (data/tokenizer.c, data/template.c).

Everything here comes from code no one in this project wrote: sentencepiece's Python package, Hugging Face
transformers' slow LlamaTokenizer under the two pinned environments of the LLaVA-1.5 recipe, and LLaVA's own
preprocessing functions (read from a haotian-liu/LLaVA checkout at the two commits that matter, never copied here).
Outputs go to tests/data/tokenizer/ and are committed, so tests and CI need no Python.

Steps (each runs in the environment that has the pinned library; tools/reference/make_tokenizer_goldens.sh runs all):
    corpus   any Python 3        tests/data/tokenizer/corpus.jsonl (deterministic; lines as JSON strings)
    tiny     sentencepiece       tests/data/tokenizer/tiny.model (a small BPE model trained like LLaMA's)
    sp       sentencepiece       <model>.sp.ids and <model>.decode.tsv for the LLaMA model and the tiny one
    hf       transformers        <model>.<mode>.ids for the modes of this environment, and <model>.<mode>.prep.jsonl
                                 (LLaVA's preprocess_plain / preprocess_v1 results for tests/data/tokenizer/samples.jsonl)
    samples  any Python 3        tests/data/tokenizer/samples.jsonl (conversation samples for the masks)
    mistral  transformers 4.46.3 tests/data/tokenizer/mistral_v1/ for Mistral-7B's tokenizer.model (--mistral or
             + sentencepiece     $LLAVA_TEST_MISTRAL_TOKENIZER; not committed, meta.json records its sha256 and where
             (requirements-chat) it comes from): sp.ids, decode.tsv, and legacy.ids from LlamaTokenizerFast
                                 (legacy=True; AutoTokenizer from a folder with tests/data/chat/mistral/
                                 tokenizer_config.json, as LLaVA-NeXT loads Mistral-7B-Instruct's); the slow
                                 LlamaTokenizer is compared with it on every line

Modes: "legacy" (LlamaTokenizer legacy=True), "hf431" (transformers 4.31.0, legacy=False: the environment the
released LLaVA-1.5 checkpoints were trained in), "hf437" (transformers 4.37.2 + tokenizers 0.15.1, legacy=False:
LLaVA HEAD). The HF tokenizer is loaded the way LLaVA loads it (AutoTokenizer.from_pretrained(folder, use_fast=False,
model_max_length=2048, padding_side="right"), then pad_token = unk_token) from a folder holding the tokenizer.model
and the tokenizer_config.json / special_tokens_map.json of lmsys/vicuna-7b-v1.5 (written below; see docs/tokenizer.md).
Constructing LlamaTokenizer(vocab_file=...) directly is not equivalent under 4.31: it does not split "<s>", "</s>",
"<unk>" out of the text.

Id files: one line per corpus line, ids separated by spaces, then (HF files only) one line per prompt of
prompts.jsonl. In <model>.legacy.ids a line "=" means "the same as [BOS] + the sentencepiece ids of that line"; in
<model>.hf431.ids and <model>.hf437.ids it means "the same as the legacy line" (true for most lines; it keeps the
files small). "-" means "not applicable" (lines with invalid UTF-8, which a Python str cannot carry) and "." means
"not covered" (the tiny model covers a subset of the corpus, see checked()).
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from contextlib import redirect_stdout
from io import StringIO

OUT = "tests/data/tokenizer"
LLAMA_DEFAULT = "tests/data/tokenizer/llama.model"
TINY = os.path.join(OUT, "tiny.model")

# The release and HEAD commits of haotian-liu/LLaVA (spec llava15-recipe.md §0).
LLAVA_RELEASE = "44e0562"
LLAVA_HEAD = "c121f04"

# tokenizer_config.json and special_tokens_map.json of lmsys/vicuna-7b-v1.5 (the keys that matter to the slow
# tokenizer). See docs/tokenizer.md for where the values come from.
VICUNA_TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False},
    "clean_up_tokenization_spaces": False,
    "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False},
    "legacy": False,
    "model_max_length": 4096,
    "pad_token": None,
    "padding_side": "right",
    "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer",
    "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False,
                  "single_word": False},
}
VICUNA_SPECIAL_TOKENS_MAP = {
    "bos_token": {"content": "<s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "eos_token": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
    "pad_token": "<unk>",
    "unk_token": {"content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
}


# ------------------------------------------------------------------------------------------------
# Corpus

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "A chat between a curious user and an artificial intelligence assistant.",
    "What is shown in the image? Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "select luxury furniture 3 - inch gel memory foam mattress topper",
    "Render a clear and concise summary of the photo.",
    "The man in the red jacket is holding an umbrella while crossing the street.",
    "It's a sunny day; the children aren't at school, they're at the beach!",
    "Dr. Smith's lab (room 4B) opens at 9:30 a.m. on weekdays.",
    "\"Quoted text,\" she said, 'and single quotes too.'",
    "Hello world",
    "hello",
    "Hello",
    "HELLO WORLD",
    "USER: What color is it? ASSISTANT: Black.",
]

WORDS = ("the of and to in is you that it he was for on are as with his they at be this have from or one had by "
         "word but not what all were we when your can said there use an each which she do how their if will up other "
         "about out many then them these so some her would make like him into time has look two more write go see "
         "number no way could people my than first water been call who oil its now find long down day did get come "
         "made may part image photo picture describe caption person people street car dog cat table chair window sky "
         "building tree grass water boat train bus plane kitchen bathroom bedroom umbrella pizza sandwich giraffe "
         "zebra elephant horse sheep cow bird kite surfboard skateboard tennis baseball frisbee laptop keyboard "
         "unbelievable internationalization antidisestablishmentarianism supercalifragilistic pneumonia "
         "Wednesday February Tokyo London NASA COVID-19 iPhone JavaScript PyTorch LLaVA Vicuna").split()

CODE = [
    "def forward(self, x):\n    return self.proj(self.act(self.fc(x)))",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "SELECT id, name FROM users WHERE age > 21 ORDER BY name;",
    "if __name__ == \"__main__\":\n    main()",
    "const f = (a, b) => a ?? b;  // nullish",
    "x = [i ** 2 for i in range(10) if i % 2 == 0]",
    "$ ls -la /usr/local/bin | grep -v '^d' && echo done",
    "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
    "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
    "    \t  indented\tline\twith\ttabs  ",
    "fn main() -> Result<(), Box<dyn Error>> { Ok(()) }",
    "template <typename T> T max(T a, T b) { return a > b ? a : b; }",
    "@@ -1,3 +1,4 @@\n-old line\n+new line\n context",
]

CJK = [
    "我们今天去公园散步，天气很好。",
    "这是一张照片，照片里有一只猫。",
    "これは日本語の文章です。カタカナもひらがなも使います。",
    "東京タワーの写真を説明してください。",
    "안녕하세요, 만나서 반갑습니다.",
    "한국어 문장도 토큰화합니다.",
    "中文English混合Mixed文本123",
    "「引用」と『二重引用』、全角スペース\u3000も。",
]

MIXED = [
    "Привет, как дела? Всё хорошо.",
    "Γειά σου Κόσμε! αβγδε ΑΒΓΔΕ",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีชาวโลก",
    "Ça va? Où est la bibliothèque? Naïve café, résumé, Zürich, Ångström, Łódź.",
    "e\u0301 vs \u00e9 (combining acute vs precomposed)",
    "ﬁ ligature, ℌ fraktur, ① circled, Ｆｕｌｌｗｉｄｔｈ",
    "Tiếng Việt có dấu: Trường học, người, đường.",
    "Ελληνικά και English και Русский 混在 テキスト",
]

EMOJI = [
    "I love pizza 🍕🍕 and cats 🐱!",
    "👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 🇯🇵 🇺🇸",
    "😀😃😄😁😆😅😂🤣",
    "rocket 🚀 to the moon 🌕 ✨",
    "❤️ ♥ ☺ ✓ ✗ ☃ ⚡",
]

SPECIAL_CASES = [
    "<s>", "</s>", "<unk>", "<s></s>", "</s><s>", "<unk><unk>", "<s><s><s>",
    "Hello <s>.", "Hello</s>world", "a<unk>b", " <s> ", "<s> hi", "</s> hi", "hi </s>", "hi</s>",
    "<s", "s>", "</s", "<unk", "unk>", "<<s>>", "<</s>>", "<<unk>>", "<S>", "< s>", "</ s>", "<UNK>",
    "A cat.</s>USER: What color is it?", "lux</s>luxury", "</s>lux", "</s> lux", "</s>\nlux", "</s>\tlux",
    "</s>123", "</s>.", "</s>▁x", "▁", "▁▁", "▁hello", "hello▁world", " ▁ ", "<s>▁", "▁<s>",
    "<image>", "<image>\nWhat is this?", "text <image> text", "<im_start><im_end>",
    "</s>USER", "</s> USER", "</s>ASSISTANT: ok</s>", "<unk>USER", "<s>USER: hi</s>",
]

WHITESPACE = [
    "", " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n\n", " \n ", "\t\t\tx", "x\t\t\t", "a  b", "a   b",
    "a    b", "a" + " " * 17 + "b", "  leading", "trailing  ", "  both  ", "tab\there", "new\nline",
    "mixed \t \n \r\n whitespace", "\u00a0nbsp\u00a0", "\u2003em space\u2003", "\u200bzero\u200bwidth",
    "line1\nline2\nline3\n", "\n\nstarts with newlines", "ends with newlines\n\n", "\x0b\x0c vertical tab form feed",
    "\x00", "a\x00b", "\x01\x02\x03\x1b[0m", "\x7f del",
]

INVALID_BYTES = [
    b"\xff", b"\xfe\xff", b"abc\x80def", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(", b"\xf0\x9f\x98",
    b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80", b"\xf8\x88\x80\x80\x80", b"\x80\x80\x80", b"caf\xe9", b"\xef\xbf\xbd",
    b"Hello \xff world \xfe!", b"<s>\xff</s>",
]


def _vocab_text(rng, pieces, n):
    """Concatenation of random LLaMA vocabulary pieces (realistic sub-words, in-vocab CJK, bytes)."""
    out = []
    for _ in range(n):
        p = rng.choice(pieces)
        out.append(p.replace("\u2581", " "))
    return "".join(out)


def _random_codepoints(rng, ranges, n):
    s = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        cp = rng.randint(lo, hi)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0xFFFD
        s.append(chr(cp))
    return "".join(s)


def _sentence(rng, k):
    ws = [rng.choice(WORDS) for _ in range(k)]
    s = " ".join(ws)
    s = s[0].upper() + s[1:]
    return s + rng.choice([".", "?", "!", ",", ";", ":", "", "...", " -"])


def _number(rng):
    kind = rng.randrange(9)
    if kind == 0:
        return str(rng.randint(0, 10 ** rng.randint(1, 15)))
    if kind == 1:
        return f"{rng.uniform(-1e6, 1e6):.{rng.randint(0, 6)}f}"
    if kind == 2:
        return f"{rng.uniform(0, 1):.3e}"
    if kind == 3:
        return f"{rng.randint(0, 9999999):,}"
    if kind == 4:
        return f"{rng.randint(1900, 2100)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == 5:
        return hex(rng.randint(0, 2 ** 32))
    if kind == 6:
        return f"+1 ({rng.randint(200, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    if kind == 7:
        return f"{rng.randint(0, 100)}%"
    return f"[{rng.uniform(0, 1):.2f}, {rng.uniform(0, 1):.2f}, {rng.uniform(0, 1):.2f}, {rng.uniform(0, 1):.2f}]"


def _stdlib_prose(limit):
    """Docstring paragraphs of a few standard-library modules: real English prose with code fragments."""
    import argparse as m1, json as m2, textwrap as m3, string as m4, collections as m5, functools as m6
    import inspect
    out = []
    for mod in (m1, m2, m3, m4, m5, m6):
        for name, obj in sorted(vars(mod).items()):
            doc = inspect.getdoc(obj) if callable(obj) or inspect.ismodule(obj) else None
            if not doc:
                continue
            for para in doc.split("\n\n"):
                para = para.strip()
                if 20 <= len(para) <= 400:
                    out.append(para)
    seen, uniq = set(), []
    for p in out:
        if p not in seen:
            seen.add(p)
            uniq.append(p)
    return uniq[:limit]


def make_corpus(llama_model):
    """Returns the corpus as a list of bytes objects (most valid UTF-8, some not)."""
    rng = random.Random(20240512)
    lines = []
    add = lambda s: lines.append(s.encode("utf-8") if isinstance(s, str) else s)
    for group in (ENGLISH, CODE, CJK, MIXED, EMOJI, SPECIAL_CASES, WHITESPACE):
        for s in group:
            add(s)
    for b in INVALID_BYTES:
        add(b)
    for p in _stdlib_prose(400):
        add(p)
    pieces = None
    if llama_model and os.path.exists(llama_model):
        import sentencepiece as spm
        sp = spm.SentencePieceProcessor(model_file=llama_model)
        pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())
                  if not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i))]
    ranges_cjk = [(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0x3400, 0x4DBF), (0x20000, 0x2A6DF)]
    ranges_emoji = [(0x1F300, 0x1F5FF), (0x1F600, 0x1F64F), (0x1F680, 0x1F6FF), (0x1F900, 0x1F9FF), (0x2600, 0x27BF)]
    ranges_mixed = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF), (0x900, 0x97F),
                    (0xE00, 0xE7F), (0x1E00, 0x1EFF), (0x2000, 0x206F), (0x2190, 0x22FF), (0xFF00, 0xFFEF),
                    (0x0300, 0x036F), (0xE000, 0xE0FF), (0x10000, 0x1007F), (0xF0000, 0xF00FF)]
    specials = ["<s>", "</s>", "<unk>"]
    gens = []
    gens.append(lambda: _sentence(rng, rng.randint(3, 20)))
    gens.append(lambda: " ".join(_sentence(rng, rng.randint(3, 10)) for _ in range(rng.randint(2, 3))))
    gens.append(lambda: _sentence(rng, rng.randint(2, 8)) + " " + _number(rng) + " " + _sentence(rng, 3))
    gens.append(lambda: " ".join(_number(rng) for _ in range(rng.randint(1, 8))))
    gens.append(lambda: _random_codepoints(rng, ranges_cjk, rng.randint(1, 20)))
    gens.append(lambda: rng.choice(CJK) + _random_codepoints(rng, ranges_cjk, rng.randint(0, 5)) + rng.choice(ENGLISH))
    gens.append(lambda: _random_codepoints(rng, ranges_emoji, rng.randint(1, 12)) + " " + _sentence(rng, 4))
    gens.append(lambda: _random_codepoints(rng, ranges_mixed, rng.randint(1, 30)))
    gens.append(lambda: rng.choice(MIXED) + " " + rng.choice(CJK) + " " + rng.choice(EMOJI))
    gens.append(lambda: rng.choice(CODE).replace("    ", rng.choice(["    ", "\t", "  ", "        "])))
    gens.append(lambda: "".join(rng.choice([" ", "\t", "\n", "  ", "\r\n", "x", "ab", "\u3000", "\u2581"])
                                for _ in range(rng.randint(1, 25))))
    gens.append(lambda: (" " * rng.randint(0, 6)) + _sentence(rng, rng.randint(1, 6)) + (" " * rng.randint(0, 6)))

    def with_specials():
        parts = []
        for _ in range(rng.randint(1, 6)):
            parts.append(rng.choice([_sentence(rng, rng.randint(1, 5)), rng.choice(WORDS), "", " ", "\n",
                                     rng.choice(CJK)[:3], _number(rng), " " + rng.choice(WORDS)]))
            parts.append(rng.choice(specials + ["<", ">", "</", "s", "unk"]))
        return "".join(parts)
    gens.append(with_specials)
    if pieces:
        gens.append(lambda: _vocab_text(rng, pieces, rng.randint(1, 20)))
        gens.append(lambda: _vocab_text(rng, pieces, rng.randint(1, 8)))

    def conversation():
        turns = []
        for r in range(rng.randint(1, 4)):
            q = _sentence(rng, rng.randint(2, 10))
            if r == 0 and rng.random() < 0.5:
                q = "<image>\n" + q
            turns.append((q, _sentence(rng, rng.randint(1, 20))))
        return v1_prompt(turns)
    gens.append(conversation)

    while len(lines) < CORPUS_TARGET:
        add(rng.choice(gens)())
    for _ in range(120):  # random bytes: mostly invalid UTF-8
        add(bytes(rng.randrange(256) for _ in range(rng.randint(1, 24))))
    for _ in range(80):  # valid text with one corrupted byte
        s = bytearray(rng.choice(CJK + MIXED + EMOJI).encode("utf-8"))
        s[rng.randrange(len(s))] = rng.randrange(128, 256)
        add(bytes(s))
    # Very long lines.
    add(" ".join(_sentence(rng, 12) for _ in range(150)))                       # ~10K chars of English
    add(_random_codepoints(rng, ranges_cjk, 2000))                             # 2K CJK characters
    add("".join(rng.choice(CODE) + "\n" for _ in range(80)))                   # code with many newlines
    add(" " * 5000 + "x" + "\t" * 3000 + "\n" * 2000)                          # whitespace runs
    add("</s>".join(_sentence(rng, 6) for _ in range(60)))                     # many specials
    add("a" * 10000)                                                           # one repeated letter
    add("".join(chr(rng.randint(0x20, 0x7E)) for _ in range(5000)))            # random ASCII
    return lines


def v1_prompt(turns):
    system = ("A chat between a curious user and an artificial intelligence assistant. "
              "The assistant gives helpful, detailed, and polite answers to the user's questions.")
    s = system + " "
    for q, a in turns:
        s += "USER: " + q + " " + "ASSISTANT: " + a + "</s>"
    return s


def write_corpus(lines, path):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for b in lines:
            s = b.decode("utf-8", "surrogateescape")
            try:
                text = json.dumps(s, ensure_ascii=False)
                text.encode("utf-8")
            except UnicodeEncodeError:
                text = json.dumps(s, ensure_ascii=True)  # lone surrogates \udc80-\udcff stand for raw bytes
            f.write(text + "\n")


def read_corpus(path):
    """Returns [(bytes, str or None)]: str is None when the line is not valid UTF-8."""
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            b = s.encode("utf-8", "surrogateescape")
            try:
                out.append((b, b.decode("utf-8")))
            except UnicodeDecodeError:
                out.append((b, None))
    return out


# ------------------------------------------------------------------------------------------------
# Conversation samples for the templates and masks

def make_samples():
    rng = random.Random(665298)
    samples = []

    def add(sid, conv, image=True, template="vicuna_v1"):
        s = {"id": sid, "template": template, "conversations": [{"from": f, "value": v} for f, v in conv]}
        if image:
            s["image"] = "coco/train2017/%s.jpg" % sid
        samples.append(s)

    # Spec appendix A.
    add("A1", [("human", "Render a clear and concise summary of the photo.\n<image>"),
               ("gpt", "select luxury furniture 3 - inch gel memory foam mattress topper")], template="plain")
    add("A2", [("human", "<image>\nWhat is shown?"), ("gpt", "A cat."), ("human", "What color is it?"),
               ("gpt", "Black.")])
    add("A3", [("human", "Hello"), ("gpt", "Hi there!"), ("human", "How are you?"), ("gpt", "I am good.")],
        image=False)
    # Stage 1 (plain).
    caps = ["a dog on a beach", " leading space caption", "trailing space ", "numbers 1 2 3 and 4.5",
            "caption with </s> inside", "caption with <unk> inside", "two\nlines", "", "日本語のキャプション",
            "emoji 🐶", "<image> inside the caption too", "ends with newline\n", "\ttab first"]
    for i, c in enumerate(caps):
        q = rng.choice(["<image>\nDescribe the image concisely.", "Give a brief description of the image.\n<image>",
                        "<image>", "Share a concise interpretation of the image provided. <image>"])
        add("plain%02d" % i, [("human", q), ("gpt", c)], template="plain")
    add("plain_err_noimage", [("human", "no image token here"), ("gpt", "caption")], template="plain")
    add("plain_err_3turns", [("human", "<image>"), ("gpt", "a"), ("human", "b")], template="plain")
    add("plain_textonly", [("human", "<image>\nDescribe."), ("gpt", "a caption")], image=False, template="plain")
    # Stage 2 (vicuna_v1), image samples.
    qs = ["What is the man doing?", "How many dogs are there?\nAnswer the question using a single word or phrase.",
          "Is this photo taken indoors?", "What color is the bus?", "Describe the image in detail.",
          "What is written on the sign?", "Which animal is this?\nA. cat\nB. dog\nAnswer with the option's letter "
          "from the given choices directly.", "  spaced question  ", "日本語の質問は何ですか？", "Why? 🤔"]
    ans = ["He is surfing.", "2", "Yes", "The bus is red and white.", "B", "STOP", "  spaced answer  ",
           "A long answer. " * 12, "これは答えです。", "Because 😀", "Line one.\nLine two.", "Yes</s>No",
           "answer with <unk> token", "x"]
    for i in range(60):
        nr = rng.randint(1, 5)
        conv = []
        for r in range(nr):
            q = rng.choice(qs)
            if r == 0:
                q = rng.choice(["<image>\n" + q, q + "\n<image>", q + " <image>", "<image>" + q, q])
            conv.append(("human", q))
            conv.append(("gpt", rng.choice(ans)))
        add("img%03d" % i, conv, image=("<image>" in conv[0][1]) or rng.random() < 0.1)
    for i in range(40):
        nr = rng.randint(1, 4)
        conv = []
        for r in range(nr):
            conv.append(("human", rng.choice(qs).replace("<image>", "")))
            conv.append(("gpt", rng.choice(ans)))
        add("txt%03d" % i, conv, image=False)
    # Edge cases.
    add("first_gpt", [("gpt", "dropped"), ("human", "<image>\nWhat?"), ("gpt", "This.")])
    add("empty_answer", [("human", "<image>\nSay nothing."), ("gpt", ""), ("human", "Now?"), ("gpt", "Ok.")])
    add("empty_question", [("human", ""), ("gpt", "Hmm.")], image=False)
    add("image_later_turn", [("human", "Hi"), ("gpt", "Hello."), ("human", "Look <image> here"), ("gpt", "I see.")])
    add("two_images", [("human", "<image> and <image>"), ("gpt", "Two.")])
    add("image_in_answer", [("human", "<image>\nQ"), ("gpt", "A <image> B")])
    add("literal_eos", [("human", "<image>\nEnd with </s> please"), ("gpt", "Sure</s>")])
    add("literal_assistant", [("human", "<image>\nSay ' ASSISTANT: ' now"), ("gpt", "ASSISTANT: ok")])
    add("literal_bos", [("human", "<s>Hello"), ("gpt", "<s>Hi")], image=False)
    add("literal_unk", [("human", "What is <unk>?"), ("gpt", "<unk> is unknown.")], image=False)
    add("unicode_ws", [("human", "\u3000<image>\u3000\n question \u00a0"), ("gpt", "ok")])
    add("only_image", [("human", "<image>"), ("gpt", "An image.")])
    add("trailing_ws", [("human", "<image>\nQ?  \n\t"), ("gpt", "A.")])
    add("err_from", [("human", "<image>\nQ"), ("system", "bad role")])
    add("err_alternation", [("human", "<image>\nQ"), ("human", "again"), ("gpt", "A")])
    add("err_first_unknown", [("user", "Q"), ("gpt", "A")], image=False)
    add("err_empty", [], image=False)
    add("only_gpt", [("gpt", "lonely")], image=False)
    # Truncation at model_max_length (2048): long text-only and image samples.
    long_answer = " ".join(rng.choice(WORDS) for _ in range(1100))
    add("long_text", [("human", "Write a lot."), ("gpt", long_answer), ("human", "More."), ("gpt", long_answer)],
        image=False)
    add("long_image", [("human", "<image>\nWrite a lot."), ("gpt", long_answer), ("human", "More."),
                       ("gpt", long_answer)])
    add("long_exact", [("human", "Q"), ("gpt", " ".join(["word"] * 2030))], image=False)
    add("long_plain", [("human", "<image>"), ("gpt", long_answer + " " + long_answer)], template="plain")
    # A template given as data (tests/data/tokenizer/llava_llama_2.json): LLaVA's preprocess_llama_2.
    for i in range(16):
        conv = []
        for r in range(rng.randint(1, 3)):
            q = rng.choice(qs)
            if r == 0 and i % 2 == 0:
                q = "<image>\n" + q
            conv.append(("human", q))
            conv.append(("gpt", rng.choice(ans[:6] + ["Sure, here it is.", "No."])))
        add("llama2_%02d" % i, conv, image=i % 2 == 0, template="llava_llama_2")
    add("llama2_empty_first", [("human", ""), ("gpt", "x")], image=False, template="llava_llama_2")
    add("llama2_empty_answer", [("human", "Q1"), ("gpt", ""), ("human", "Q2"), ("gpt", "A2")], image=False,
        template="llava_llama_2")
    return samples


# ------------------------------------------------------------------------------------------------
# sentencepiece goldens

def ids_line(ids):
    return " ".join(str(i) for i in ids)


CORPUS_TARGET = 5150  # lines from the generators; the long and byte-level lines follow


def checked(name, i):
    """Which corpus lines a model's id files cover. The tiny model (mostly single characters and bytes) covers a
    subset to keep the files small: the hand-written lines, every sixth generated one and the tail."""
    return name != "tiny" or i < 700 or i % 6 == 0 or i >= CORPUS_TARGET


def write_sp_goldens(sp, corpus, ids_path, decode_path, covered=lambda i: True):
    """sentencepiece's ids of every covered corpus line (one line each, "." for the others) and its decoding of
    random id sequences (byte pieces that form invalid UTF-8, control and unknown ids, pieces with a leading "▁" at
    the start) and of the ids of some corpus lines (a TSV: ids, then the text as a JSON string)."""
    with open(ids_path, "w") as f:
        for i, (b, _) in enumerate(corpus):
            f.write((ids_line(sp.encode(b)) if covered(i) else ".") + "\n")
    rng = random.Random(7)
    n = sp.get_piece_size()
    byte_ids = [i for i in range(n) if sp.is_byte(i)]
    rows = []
    for k in range(400):
        ids = []
        for _ in range(rng.randint(0, 20)):
            r = rng.random()
            if r < 0.35 and byte_ids:
                ids.append(rng.choice(byte_ids))
            elif r < 0.45:
                ids.append(rng.choice([0, 1, 2]))
            else:
                ids.append(rng.randrange(n))
        rows.append(ids)
    for b, _ in corpus[:150]:
        rows.append(sp.encode(b))
    with open(decode_path, "w", encoding="utf-8") as f:
        for ids in rows:
            f.write(ids_line(ids) + "\t" + json.dumps(sp.decode(ids), ensure_ascii=False) + "\n")
    return len(rows)


def step_sp(models):
    import sentencepiece as spm
    corpus = read_corpus(os.path.join(OUT, "corpus.jsonl"))
    for name, path in models.items():
        sp = spm.SentencePieceProcessor(model_file=path)
        write_sp_goldens(sp, corpus, os.path.join(OUT, f"{name}.sp.ids"), os.path.join(OUT, f"{name}.decode.tsv"),
                         lambda i: checked(name, i))
        print(name, "sentencepiece", spm.__version__, "lines", len(corpus))


def step_tiny():
    """Trains the small tokenizer that tests use when the LLaMA model is absent (spec model-and-formats §5.7)."""
    import io
    import sentencepiece as spm
    rng = random.Random(5)
    text = []
    for _ in range(3000):
        text.append(_sentence(rng, rng.randint(3, 20)))
    text += ENGLISH * 20 + CODE * 10 + CJK * 3 + MIXED * 2 + EMOJI
    text += [v1_prompt([("<image>\n" + _sentence(rng, 5), _sentence(rng, 8))]) for _ in range(300)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(text), model_writer=model, model_type="bpe", vocab_size=700,
        byte_fallback=True, normalization_rule_name="identity", add_dummy_prefix=True,
        remove_extra_whitespaces=False, split_digits=True, allow_whitespace_only_pieces=True,
        character_coverage=0.9995, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, user_defined_symbols=["<sep>"],
        max_sentencepiece_length=16, num_threads=1, minloglevel=2)
    with open(TINY, "wb") as f:
        f.write(model.getvalue())
    print(TINY, len(model.getvalue()), "bytes")


# ------------------------------------------------------------------------------------------------
# transformers goldens (one environment at a time)

def hf_folder(model_path):
    d = tempfile.mkdtemp(prefix="vicuna_tok_")
    shutil.copy(model_path, os.path.join(d, "tokenizer.model"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump(VICUNA_TOKENIZER_CONFIG, f, indent=2)
    with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
        json.dump(VICUNA_SPECIAL_TOKENS_MAP, f, indent=2)
    return d


def load_hf(model_path, legacy):
    import transformers
    d = hf_folder(model_path)
    # As llava/train/train.py loads it (model_max_length 2048 from the training scripts).
    tok = transformers.AutoTokenizer.from_pretrained(d, model_max_length=2048, padding_side="right", use_fast=False,
                                                     legacy=legacy)
    tok.pad_token = tok.unk_token
    assert type(tok).__name__ == "LlamaTokenizer" and tok.legacy == legacy
    return tok


def git_show(repo, commit, path):
    """A file of a git repository (a clone or a bare mirror) at a commit, as text."""
    return subprocess.run(["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def source_functions(code, names):
    """The top-level functions `names` of a Python source, as source text to exec (unmodified)."""
    import ast
    tree = ast.parse(code)
    keep = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    assert sorted(n.name for n in keep) == sorted(names), (names, [n.name for n in keep])
    return ast.unparse(ast.Module(body=keep, type_ignores=[]))


class LLaVASource:
    """LLaVA's preprocessing functions, read from a git checkout at one commit and run unmodified."""

    def __init__(self, repo, commit, tokenizer):
        import copy
        import tokenizers
        import torch
        import transformers
        from packaging import version

        def src(path):
            return git_show(repo, commit, path)

        functions = source_functions

        consts = {}
        exec(src("llava/constants.py"), consts)
        conv_mod = type(sys)("llava_conversation")
        exec(src("llava/conversation.py"), conv_mod.__dict__)
        ns = {"torch": torch, "transformers": transformers, "copy": copy, "conversation_lib": conv_mod,
              "Dict": dict, "Sequence": list, "List": list, "Optional": None, "DataArguments": object}
        ns.update({k: v for k, v in consts.items() if k.isupper()})
        ns["IS_TOKENIZER_GREATER_THAN_0_14"] = version.parse(tokenizers.__version__) >= version.parse("0.14")
        exec(functions(src("llava/mm_utils.py"), ["tokenizer_image_token"]), ns)
        exec(functions(src("llava/train/train.py"),
                       ["preprocess_multimodal", "preprocess_plain", "preprocess_llama_2", "preprocess_v1",
                        "preprocess"]), ns)
        self.ns, self.conv, self.tok, self.commit = ns, conv_mod, tokenizer, commit

    def run(self, sample):
        """LazySupervisedDataset.__getitem__ without the image, then the collator's truncation."""
        import copy
        self.conv.default_conversation = self.conv.conv_templates[sample["template"]]
        data_args = type("DataArguments", (), {"is_multimodal": True, "mm_use_im_start_end": False})()
        sources = [sample]
        out = StringIO()
        try:
            with redirect_stdout(out):
                if "image" in sources[0]:
                    srcs = self.ns["preprocess_multimodal"](copy.deepcopy([e["conversations"] for e in sources]),
                                                            data_args)
                else:
                    srcs = copy.deepcopy([e["conversations"] for e in sources])
                d = self.ns["preprocess"](srcs, self.tok, has_image=("image" in sample))
        except Exception as e:  # AssertionError, KeyError, IndexError: LLaVA's data loader would crash
            return {"id": sample["id"], "error": type(e).__name__}
        ids = d["input_ids"][0][: self.tok.model_max_length].tolist()
        labels = d["labels"][0][: self.tok.model_max_length].tolist()
        # Labels are -100 or the id itself: store the supervised ranges [start, end).
        assert all(l == -100 or l == i for l, i in zip(labels, ids)) and len(labels) == len(ids)
        ranges, start = [], None
        for k, l in enumerate(labels + [-100]):
            if l != -100 and start is None:
                start = k
            elif l == -100 and start is not None:
                ranges.append([start, k])
                start = None
        warn = [l for l in out.getvalue().splitlines() if "tokenization mismatch" in l]
        mismatch = None
        if warn:
            a, b = warn[0].split("mismatch: ")[1].split(" (")[0].rstrip(".").split(" vs. ")
            mismatch = [int(a), int(b)]
        return {"id": sample["id"], "ids": ids_line(ids), "supervised": ranges, "mismatch": mismatch}


def step_hf(models, llava_repo):
    import transformers
    v = transformers.__version__
    if v == "4.31.0":
        plan = [("legacy", True, LLAVA_RELEASE), ("hf431", False, LLAVA_RELEASE)]
    elif v == "4.37.2":
        plan = [("legacy", True, LLAVA_HEAD), ("hf437", False, LLAVA_HEAD)]
    else:
        sys.exit(f"transformers {v}: use the pinned environments (requirements-tokenizer-*.txt)")
    corpus = read_corpus(os.path.join(OUT, "corpus.jsonl"))
    with open(os.path.join(OUT, "samples.jsonl")) as f:
        samples = [json.loads(l) for l in f]
    prompts = []
    for s in samples:  # the conversation strings (but the longest) go into the corpus of this check
        if s["template"] == "vicuna_v1" and s["conversations"] and not s["id"].startswith("long"):
            prompts.append(v1_prompt([(s["conversations"][i]["value"], s["conversations"][i + 1]["value"])
                                      for i in range(0, len(s["conversations"]) - 1, 2)]))
    import sentencepiece as spm
    for name, path in models.items():
        sp = spm.SentencePieceProcessor(model_file=path)
        for mode, legacy, commit in plan:
            tok = load_hf(path, legacy)
            outp = os.path.join(OUT, f"{name}.{mode}.ids")
            lines, same = [], 0
            if mode == "legacy":
                legacy_ids = {}
            for i, (b, s) in enumerate(corpus):
                if not checked(name, i):
                    lines.append(".")
                    continue
                if s is None:
                    lines.append("-")
                    continue
                ids = tok(s).input_ids
                ref = [tok.bos_token_id] + sp.encode(b) if mode == "legacy" else legacy_ids[i]
                if ids == ref:
                    lines.append("=")
                    same += 1
                else:
                    lines.append(ids_line(ids))
                if mode == "legacy":
                    legacy_ids[i] = ids
            for p in prompts:
                lines.append(ids_line(tok(p).input_ids))
            text = "\n".join(lines) + "\n"
            if mode == "legacy" and os.path.exists(outp):
                with open(outp) as f:  # the other environment wrote it: both must agree
                    assert f.read() == text, f"{outp}: legacy differs between transformers versions"
            with open(outp, "w") as f:
                f.write(text)
            print(name, mode, "transformers", v, "lines", len(lines), "same as the reference", same)
            if llava_repo:
                src = LLaVASource(llava_repo, commit, tok)
                outp = os.path.join(OUT, f"{name}.{mode}.prep.jsonl")
                text = "".join(json.dumps(src.run(s), separators=(",", ":")) + "\n" for s in samples)
                if mode == "legacy" and os.path.exists(outp):
                    with open(outp) as f:
                        assert f.read() == text, f"{outp}: legacy differs between LLaVA commits"
                with open(outp, "w") as f:
                    f.write(text)
    with open(os.path.join(OUT, "prompts.jsonl"), "w", encoding="utf-8") as f:
        for p in prompts:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------------
# Mistral-7B's tokenizer.model (not committed: named by $LLAVA_TEST_MISTRAL_TOKENIZER, checked by its sha256)

MISTRAL_OUT = os.path.join(OUT, "mistral_v1")
MISTRAL_SOURCE = {
    "package": "mistral_common",
    "version": "1.13.1",
    "license": "Apache-2.0",
    "path_in_package": "mistral_common/data/tokenizer.model.v1",
    "how_to_get": "pip download --no-deps mistral_common==1.13.1 && "
                  "unzip mistral_common-1.13.1-py3-none-any.whl mistral_common/data/tokenizer.model.v1",
    "what": "the SentencePiece model of Mistral-7B v0.1 / v0.2 (and their -Instruct), 32000 pieces",
}
# Mistral-7B-Instruct's tokenizer config (legacy=True), as LLaVA-NeXT's mistral_instruct goldens use it.
MISTRAL_CONFIG = "tests/data/chat/mistral/tokenizer_config.json"


def load_mistral_hf(model_path, use_fast):
    """AutoTokenizer from a folder holding the model and Mistral-Instruct's config, as LLaVA-NeXT loads it. (Built
    directly, LlamaTokenizerFast(vocab_file=..., legacy=True) in 4.46.3 lacks the Prepend("▁") normalizer; see
    tests/data/chat/README.md.)"""
    import transformers
    d = tempfile.mkdtemp(prefix="mistral_tok_")
    shutil.copy(model_path, os.path.join(d, "tokenizer.model"))
    shutil.copy(MISTRAL_CONFIG, os.path.join(d, "tokenizer_config.json"))
    tok = transformers.AutoTokenizer.from_pretrained(d, use_fast=use_fast)
    want = "LlamaTokenizerFast" if use_fast else "LlamaTokenizer"
    assert type(tok).__name__ == want and tok.legacy and tok.bos_token_id == 1, (type(tok).__name__, tok.legacy)
    shutil.rmtree(d)
    return tok


def step_mistral(model_path):
    """tests/data/tokenizer/mistral_v1/: meta.json (the file, its sha256 and where it comes from), sp.ids and
    decode.tsv (sentencepiece, as for the other models), legacy.ids (the fast LlamaTokenizerFast's input_ids, "=" when
    they are [BOS] + the sentencepiece ids, "-" for lines that are not UTF-8). The slow LlamaTokenizer(legacy=True) is
    compared with the fast one on every line; meta.json lists the lines where they differ."""
    import hashlib
    import sentencepiece as spm
    import tokenizers
    import transformers
    transformers.logging.set_verbosity_error()  # "sequence length is longer than the specified maximum"
    if not model_path or not os.path.exists(model_path):
        sys.exit("mistral: --mistral (or $LLAVA_TEST_MISTRAL_TOKENIZER) must name " + MISTRAL_SOURCE["path_in_package"]
                 + " (" + MISTRAL_SOURCE["how_to_get"] + ")")
    data = open(model_path, "rb").read()
    corpus = read_corpus(os.path.join(OUT, "corpus.jsonl"))
    os.makedirs(MISTRAL_OUT, exist_ok=True)
    sp = spm.SentencePieceProcessor(model_file=model_path)
    assert sp.get_piece_size() == 32000 and (sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2)
    n_decode = write_sp_goldens(sp, corpus, os.path.join(MISTRAL_OUT, "sp.ids"),
                                os.path.join(MISTRAL_OUT, "decode.tsv"))
    fast, slow = load_mistral_hf(model_path, True), load_mistral_hf(model_path, False)
    lines, same, na, differ = [], 0, 0, []
    for i, (b, s) in enumerate(corpus):
        if s is None:
            lines.append("-")
            na += 1
            continue
        ids = fast(s).input_ids
        slow_ids = slow(s).input_ids
        if slow_ids != ids:
            differ.append({"line": i + 1, "fast": ids_line(ids), "slow": ids_line(slow_ids)})
        if ids == [fast.bos_token_id] + sp.encode(b):
            lines.append("=")
            same += 1
        else:
            lines.append(ids_line(ids))
    with open(os.path.join(MISTRAL_OUT, "legacy.ids"), "w") as f:
        f.write("\n".join(lines) + "\n")
    meta = {
        "file": os.path.basename(MISTRAL_SOURCE["path_in_package"]),
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        **MISTRAL_SOURCE,
        "env": "LLAVA_TEST_MISTRAL_TOKENIZER",
        "pieces": sp.get_piece_size(),
        "corpus_lines": len(corpus),
        "legacy_same_as_bos_plus_sp": same,
        "legacy_not_utf8": na,
        "decode_rows": n_decode,
        "fast_slow_differ": differ,
        "hf_config": MISTRAL_CONFIG,
        "versions": {"sentencepiece": spm.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "python": sys.version.split()[0]},
    }
    with open(os.path.join(MISTRAL_OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    print("mistral", meta["sha256"], "lines", len(corpus), "legacy = [BOS] + sentencepiece", same, "not UTF-8", na,
          "fast != slow", len(differ))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["corpus", "tiny", "sp", "hf", "samples", "mistral"])
    ap.add_argument("--llama", default=os.environ.get("LLAVA_TEST_TOKENIZER", LLAMA_DEFAULT))
    ap.add_argument("--mistral", default=os.environ.get("LLAVA_TEST_MISTRAL_TOKENIZER"),
                    help="Mistral-7B's tokenizer.model (`mistral`; see MISTRAL_SOURCE for where to get it)")
    ap.add_argument("--llava", help="a git checkout of haotian-liu/LLaVA (needed by `hf` for the masks)")
    ap.add_argument("--torch-site", help="a site-packages folder to take torch from when this environment lacks it "
                    "(LLaVA's preprocess functions use torch tensors only as containers)")
    a = ap.parse_args()
    if a.torch_site:
        sys.path.append(a.torch_site)
    os.makedirs(OUT, exist_ok=True)
    models = {"tiny": TINY}
    if os.path.exists(a.llama):
        models = {"llama": a.llama, "tiny": TINY}
    if a.step == "corpus":
        write_corpus(make_corpus(a.llama), os.path.join(OUT, "corpus.jsonl"))
    elif a.step == "samples":
        with open(os.path.join(OUT, "samples.jsonl"), "w", encoding="utf-8") as f:
            for s in make_samples():
                f.write(json.dumps(s, ensure_ascii=False) + "\n")
    elif a.step == "tiny":
        step_tiny()
    elif a.step == "sp":
        step_sp(models)
    elif a.step == "hf":
        step_hf(models, a.llava)
    elif a.step == "mistral":
        step_mistral(a.mistral)


if __name__ == "__main__":
    main()
