"""Golden token ids and label masks of LLaVA-NeXT's chat templates (llava_llama_3, qwen_1_5, mistral_instruct; and
vicuna_v1 for multi-image samples), for the C templates and masks (data/template.c): what LLaVA-NeXT's own training
code makes of a conversation sample.

What is reference: LLaVA-NeXT's preprocessing functions, read at run time from a git repository of
LLaVA-VL/LLaVA-NeXT at commit df179663ae8b83207df100a1f7af24caec633ff9 (`git show`, never copied here) and exec()d
unmodified: preprocess_multimodal, preprocess_llama_2, preprocess_qwen, preprocess_llama3, preprocess_v1 and
preprocess of llava/train/train.py (and its IS_TOKENIZER_GREATER_THAN_0_14 line), tokenizer_image_token of llava/mm_utils.py, llava/conversation.py whole (conv_templates) and
llava/constants.py. Around them this script does what LazySupervisedDataset._get_item and
DataCollatorForSupervisedDataset do for the text side (nothing else of train.py runs):

    sources = [sample]
    if "image" in sample: sources = preprocess_multimodal(deepcopy(conversations), data_args)   # is_multimodal=True,
    else:                 sources = deepcopy(conversations)                                    # mm_use_im_start_end=False
    d = preprocess(sources, tokenizer, has_image="image" in sample)
    input_ids, labels = d["input_ids"][0][:2048], d["labels"][0][:2048]                         # the collator's cut

with conversation_lib.default_conversation = conv_templates[template] (as train.py sets it from --version), and the
tokenizer loaded as train.py loads it for that model family, then `if tokenizer.unk_token is not None:
tokenizer.pad_token = tokenizer.unk_token`. An exception raised by NeXT's code is recorded by its type name (NeXT's
__getitem__ would retry and then substitute the next sample). conversation.py calls
AutoTokenizer.from_pretrained("meta-llama/Meta-Llama-3-8B-Instruct") at import: this script runs with HF_HUB_OFFLINE=1
and an empty HF_HOME, so its safe_load_tokenizer returns None (checked; preprocess_llama3 does not use it).

Tokenizers (the tokenizer.json files are the committed small ones of tests/data/bpe/, trained by make_bpe_goldens.py;
tests/data/chat/<name>/tokenizer_config.json are the configs written here and used, committed beside the goldens):
    llava_llama_3     tests/data/bpe/llama3/tokenizer.json + tests/data/chat/llama3/tokenizer_config.json (our own
                      Llama-3-Instruct-layout chat template); AutoTokenizer(use_fast=False, padding_side="right") as
                      train.py loads a "llama" model: PreTrainedTokenizerFast (there is no slow class)
    qwen_1_5          tests/data/bpe/qwen2/tokenizer.json + tests/data/chat/qwen2/tokenizer_config.json (the special
                      token keys of Qwen2-7B-Instruct's); AutoTokenizer(padding_side="right"): Qwen2TokenizerFast
    mistral_instruct  tests/data/tokenizer/llama.model (LLaMA's SentencePiece model) +
                      tests/data/chat/mistral/tokenizer_config.json (legacy=True); AutoTokenizer(padding_side="left"):
                      LlamaTokenizerFast converted from the slow one. Every string NeXT tokenizes for these samples is
                      also tokenized by the slow LlamaTokenizer(legacy=True) (what the C tokenizer implements), and the
                      whole pipeline is run with it too; differences are printed and listed in the golden's
                      "slow_differs" (absent when there are none).
    vicuna_v1         (multi-image samples only) conv_templates["v1"], routed to preprocess_v1;
                      tests/data/tokenizer/llama.model + tests/data/chat/vicuna/tokenizer_config.json (Vicuna-7B-v1.5's
                      keys, legacy=False); AutoTokenizer(use_fast=False, padding_side="right") as train.py loads a
                      vicuna / llama model: the slow LlamaTokenizer. A second golden file runs the same samples with
                      legacy=True.

Multi-image samples (multi_image.jsonl, make_multi_samples): "image" a list of 2-4 paths (LLaVA-NeXT / OneVision's
multi-image format) and as many "<image>" in the conversation, placed every way (all at the start, interleaved,
adjacent, over several turns, in an answer, one alone mid-turn so that preprocess_multimodal's num_im == 1 rule moves
it); the same pipeline (has_image = "image" in sample, true for a list). Asserted: every sample NeXT takes has one
-200 per path in its ids (fewer only when cut at 2048), and which turns preprocess_multimodal moved.

Quirks asserted (the script stops when one is not so; check_facts(), listed in the README it writes): in
preprocess_llama3, convert_tokens_to_ids("\n\n") is None (this vocabulary, like Llama-3's, spells it "ĊĊ"), so "\n\n"
is never unmasked; preprocess_qwen's hard-coded 198 is "Ċ"; with has_image, "<image>" is added as the id
len(tokenizer) (4011, 4514), and in an answer its label keeps that id while the input becomes -200 (under
preprocess_llama_2 the label is -200 too); the tokenizer classes; preprocess() routes each template to the function
named above.

Environment: requirements-chat.txt (transformers 4.46.3, tokenizers 0.20.3, torch 2.5.1 as a tensor container,
jinja2 3.1.6 for the chat templates, sentencepiece 0.2.3 + protobuf for the LLaMA conversion, pillow because
conversation.py imports PIL), Python 3.11. A few seconds on one core. From the repository root:

    python tools/reference/make_chat_template_goldens.py --next-repo /work/.mirror/LLaVA-VL+LLaVA-NeXT/repo

Outputs (tests/data/chat/, formats in its README.md): samples.jsonl (deterministic), <template>.prep.jsonl,
multi_image.jsonl (deterministic), <template>.multi.prep.jsonl (and vicuna_v1.legacy.multi.prep.jsonl), and
<name>/tokenizer_config.json.
"""
import os
import sys
import tempfile

# Before anything imports huggingface_hub: no network, no cached meta-llama tokenizer (conversation.py's import-time
# AutoTokenizer.from_pretrained must fail, so safe_load_tokenizer returns None).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
TMP = tempfile.mkdtemp(prefix="chat_goldens_")  # removed at exit
os.environ["HF_HOME"] = os.path.join(TMP, "hf_home")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("TRANSFORMERS_CACHE", None)

import argparse  # noqa: E402
import atexit  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
from contextlib import redirect_stdout  # noqa: E402
from io import StringIO  # noqa: E402

atexit.register(shutil.rmtree, TMP, True)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_goldens as mtg  # noqa: E402  (ids_line and the text generators: stdlib only)

OUT = "tests/data/chat"
NEXT_COMMIT = "df179663ae8b83207df100a1f7af24caec633ff9"
MAX_LEN = 2048  # --model_max_length of LLaVA-NeXT's training scripts
IMAGE_TOKEN_INDEX, IGNORE_INDEX = -200, -100  # llava/constants.py (checked against the exec'd file)

# A Llama-3-Instruct layout, written here: bos before the first message, every message as
# <|start_header_id|>role<|end_header_id|>\n\n + trimmed content + <|eot_id|>, and the assistant header as the
# generation prompt.
LLAMA3_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim)"
    " + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}")

CONFIGS = {
    "llama3": {
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "model_max_length": MAX_LEN,
        "padding_side": "right",
        "clean_up_tokenization_spaces": True,
        "chat_template": LLAMA3_CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast",
    },
    # The special-token keys of Qwen2-7B-Instruct's tokenizer_config.json (preprocess_qwen unpacks exactly two
    # additional_special_tokens_ids). No chat_template: preprocess_qwen sets its own.
    "qwen2": {
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": MAX_LEN,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
    },
    # Mistral-7B-Instruct's keys that matter (a LlamaTokenizer, legacy=True), on LLaMA's tokenizer.model.
    "mistral": {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "legacy": True,
        "model_max_length": MAX_LEN,
        "clean_up_tokenization_spaces": False,
        "spaces_between_special_tokens": False,
        "tokenizer_class": "LlamaTokenizer",
    },
    # lmsys/vicuna-7b-v1.5's keys that matter (as make_tokenizer_goldens.py's VICUNA_TOKENIZER_CONFIG), on LLaMA's
    # tokenizer.model: a slow LlamaTokenizer with legacy=False.
    "vicuna": {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": None,
        "legacy": False,
        "model_max_length": 4096,
        "padding_side": "right",
        "clean_up_tokenization_spaces": False,
        "tokenizer_class": "LlamaTokenizer",
    },
}

# template -> (tokenizer name, its model file, the file name it takes in the folder, how train.py loads it, routed to)
TEMPLATES = {
    "llava_llama_3": ("llama3", "tests/data/bpe/llama3/tokenizer.json", "tokenizer.json",
                      dict(padding_side="right", use_fast=False), "preprocess_llama3"),
    "qwen_1_5": ("qwen2", "tests/data/bpe/qwen2/tokenizer.json", "tokenizer.json",
                 dict(padding_side="right"), "preprocess_qwen"),
    "mistral_instruct": ("mistral", "tests/data/tokenizer/llama.model", "tokenizer.model",
                         dict(padding_side="left"), "preprocess_llama_2"),
    # Multi-image samples only (multi_image.jsonl). train.py loads a "vicuna" / "llama" model's tokenizer with
    # use_fast=False: the slow LlamaTokenizer, with Vicuna-7B-v1.5's config (legacy=False); a second golden file runs
    # the same samples with legacy=True.
    "vicuna_v1": ("vicuna", "tests/data/tokenizer/llama.model", "tokenizer.model",
                  dict(padding_side="right", use_fast=False), "preprocess_v1"),
}
SINGLE_TEMPLATES = ["llava_llama_3", "qwen_1_5", "mistral_instruct"]  # samples.jsonl, <template>.prep.jsonl
NEXT_KEY = {"vicuna_v1": "v1"}  # conv_templates key (train.py's --version) where it differs from the template name
PREFIX = {"llava_llama_3": "l3", "qwen_1_5": "qw", "mistral_instruct": "mi", "vicuna_v1": "v1"}
SEEDS = {"llava_llama_3": 3001, "qwen_1_5": 3002, "mistral_instruct": 3003}
N_RANDOM = 150
MULTI_SEEDS = {"llava_llama_3": 4001, "qwen_1_5": 4002, "mistral_instruct": 4003, "vicuna_v1": 4004}
N_MULTI_RANDOM = 110
# Golden files of multi_image.jsonl: (template, file name, tokenizer overrides, what the C side runs it as)
MULTI_GOLDENS = [("llava_llama_3", "llava_llama_3.multi.prep.jsonl", {}),
                 ("qwen_1_5", "qwen_1_5.multi.prep.jsonl", {}),
                 ("mistral_instruct", "mistral_instruct.multi.prep.jsonl", {}),
                 ("vicuna_v1", "vicuna_v1.multi.prep.jsonl", {}),
                 ("vicuna_v1", "vicuna_v1.legacy.multi.prep.jsonl", {"legacy": True})]

TRAIN_FUNCTIONS = ["preprocess_multimodal", "preprocess_llama_2", "preprocess_qwen", "preprocess_llama3", "preprocess_v1",
                   "preprocess"]


# ------------------------------------------------------------------------------------------------
# Samples

NAMED_SPECIALS = [("eot", "<|eot_id|>"), ("bot", "<|begin_of_text|>"), ("im_start", "<|im_start|>"),
                  ("im_end", "<|im_end|>"), ("endoftext", "<|endoftext|>"), ("eos", "</s>"), ("bos", "<s>"),
                  ("unk", "<unk>"), ("inst", "[INST]"), ("inst_end", "[/INST]"),
                  ("start_header", "<|start_header_id|>"), ("end_header", "<|end_header_id|>")]
SPECIALS = [sp for _, sp in NAMED_SPECIALS]
WS = [" ", "  ", "\t", "\n", "\n\n", " \n", "\u3000", "\u00a0", "\t \n"]
QS = ["What is the man doing?", "How many dogs are there?\nAnswer the question using a single word or phrase.",
      "Is this photo taken indoors?", "What color is the bus?", "Describe the image in detail.",
      "What is written on the sign?", "Which animal is this?\nA. cat\nB. dog\nAnswer with the option's letter "
      "from the given choices directly.", "Summarize the text.", "写一首关于猫的诗。", "Why? 🤔",
      "Translate to French: good morning", "Explain this code:"]


def _text(rng):
    """A message body: prose, numbers, scripts, emoji, code, or several paragraphs."""
    k = rng.randrange(12)
    if k < 3:
        return mtg._sentence(rng, rng.randint(2, 18))
    if k == 3:
        return mtg._sentence(rng, rng.randint(2, 8)) + " " + mtg._number(rng) + " " + mtg._sentence(rng, 3)
    if k == 4:
        return rng.choice(mtg.CJK) + rng.choice(["", " ", "\n"]) + rng.choice(mtg.CJK)
    if k == 5:
        return rng.choice(mtg.MIXED)
    if k == 6:
        return mtg._sentence(rng, rng.randint(2, 6)) + " " + rng.choice(mtg.EMOJI)
    if k == 7:
        return rng.choice(QS[:8]) + "\n```\n" + rng.choice(mtg.CODE) + "\n```"
    if k == 8:
        return rng.choice(["\n", "\n\n", "\n\n\n"]).join(mtg._sentence(rng, rng.randint(3, 12))
                                                          for _ in range(rng.randint(2, 4)))
    if k == 9:
        return "".join("%d. %s\n" % (i + 1, mtg._sentence(rng, rng.randint(2, 6))) for i in range(rng.randint(2, 5)))
    if k == 10:
        return rng.choice(QS)
    return rng.choice(mtg.ENGLISH)


def _decorate(rng, s):
    """Whitespace at the edges, newline runs, literal special-token strings, NeXT's noisy-data marker."""
    r = rng.random()
    if r < 0.12:
        s = rng.choice(WS) + s
    elif r < 0.24:
        s = s + rng.choice(WS)
    elif r < 0.30:
        s = rng.choice(WS) + s + rng.choice(WS)
    if rng.random() < 0.08:
        cut = rng.randint(0, len(s))
        s = s[:cut] + rng.choice(["\n", "\n\n", "\n\n\n", " \n\n "]) + s[cut:]
    if rng.random() < 0.08:
        cut = rng.randint(0, len(s))
        sp = rng.choice(SPECIALS)
        s = s[:cut] + rng.choice(["", " "]) + sp + rng.choice(["", " "]) + s[cut:]
    if rng.random() < 0.03:
        s = rng.choice(["QA_GT_caption_based_noisy ", "QA_GT_caption_based_noisy"]) + s
    return s


def _place_image(rng, q):
    k = rng.randrange(8)
    return ["<image>\n" + q, q + "\n<image>", q + " <image>", "<image>" + q, q + "<image>",
            "<image> " + q, "<image>\n<image>\n" + q, q.replace(" ", " <image> ", 1) if " " in q else "<image>\n" + q][k]


def random_sample(rng, sid, template):
    """1-6 rounds; an image (with "<image>" placed anywhere, twice, in a later turn or in an answer, or absent) or
    text only; now and then a dropped first "gpt" turn, a "system" turn, an unknown role, a trailing question."""
    rounds = rng.randint(1, 6) if rng.random() < 0.85 else rng.randint(1, 2)
    conv = []
    image = rng.random() < 0.6
    where = rng.randrange(10) if image else None
    for r in range(rounds):
        q = _decorate(rng, _text(rng))
        a = _decorate(rng, _text(rng))
        if image:
            if r == 0 and where < 6:
                q = _place_image(rng, q)
            elif r == 1 and where == 6:
                q = _place_image(rng, q)
            elif r == 0 and where == 7:
                a = _place_image(rng, a)
            # where 8, 9: no "<image>" at all (the image flag without a token)
        elif rng.random() < 0.05:
            q = _place_image(rng, q)  # a literal "<image>" in a text-only sample
        conv += [("human", q), ("gpt", a)]
    r = rng.random()
    if r < 0.05:
        conv.insert(0, ("gpt", _text(rng)))
    elif r < 0.10 and len(conv) > 2:
        conv.insert(2, ("system", _decorate(rng, _text(rng))))
    elif r < 0.13 and len(conv) > 2:
        conv.insert(2 * rng.randrange(1, len(conv) // 2), (rng.choice(["observation", "tool", "function"]),
                                                           _text(rng)))
    elif r < 0.18:
        conv.append(("human", _text(rng)))
    s = {"id": sid, "template": template, "conversations": [{"from": f, "value": v} for f, v in conv]}
    if image:
        s["image"] = rng.choice(["coco/train2017/%s.jpg" % sid, ["a/%s_0.jpg" % sid, "b/%s_1.jpg" % sid]])
    return s


def edge_cases(rng):
    """[(name, conversation, image)] where image is None (text only), a file name or a list of them."""
    long_a = " ".join(rng.choice(mtg.WORDS) for _ in range(1100))
    long_b = " ".join(rng.choice(mtg.WORDS) for _ in range(1100))
    img, two = "img.jpg", ["img0.jpg", "img1.jpg"]
    e = [
        ("img_start", [("human", "<image>\nWhat is this?"), ("gpt", "A cat.")], img),
        ("img_end", [("human", "What is this?\n<image>"), ("gpt", "A dog.")], img),
        ("img_middle", [("human", "Look at this <image> and tell me."), ("gpt", "Ok.")], img),
        ("img_glued_before", [("human", "<image>What is it?"), ("gpt", "A bus.")], img),
        ("img_glued_after", [("human", "What is it?<image>"), ("gpt", "A car.")], img),
        ("img_glued_inside", [("human", "abc<image>def"), ("gpt", "ghi")], img),
        ("img_only", [("human", "<image>"), ("gpt", "An image.")], img),
        ("img_ws", [("human", "  \n<image>\t  Describe.  "), ("gpt", "Fine.")], img),
        ("img_absent", [("human", "Describe the picture."), ("gpt", "It is dark.")], img),
        ("img_twice", [("human", "<image>\n<image>\nCompare them."), ("gpt", "Same.")], two),
        ("img_twice_apart", [("human", "First <image> then <image> end"), ("gpt", "Two.")], two),
        ("img_twice_glued", [("human", "<image><image>"), ("gpt", "Two.")], two),
        ("img_later_turn", [("human", "Hi"), ("gpt", "Hello."), ("human", "Look <image> here"), ("gpt", "I see.")],
         img),
        ("img_in_answer", [("human", "<image>\nQ"), ("gpt", "A <image> B")], img),
        ("img_answer_only", [("human", "Q"), ("gpt", "<image>\nHere.")], img),
        ("img_every_turn", [("human", "<image>\nOne?"), ("gpt", "1"), ("human", "Two? <image>"), ("gpt", "2"),
                            ("human", "<image>Three"), ("gpt", "3")], img),
        ("img_list_one", [("human", "What?\n<image>"), ("gpt", "That.")], ["only.jpg"]),
        ("txt_literal_image", [("human", "What does <image> mean?"), ("gpt", "A placeholder: <image>.")], None),
        ("txt_literal_image_start", [("human", "<image>\nQ"), ("gpt", "A")], None),
        ("first_gpt", [("gpt", "dropped"), ("human", "<image>\nWhat?"), ("gpt", "This.")], img),
        ("first_gpt_text", [("gpt", "dropped"), ("human", "What?"), ("gpt", "This.")], None),
        ("system_first", [("system", "You are terse."), ("human", "Hi"), ("gpt", "Yo")], None),
        ("system_mid", [("human", "Hi"), ("gpt", "Hello"), ("system", "Be brief."), ("human", "Why?"),
                        ("gpt", "Because.")], None),
        ("system_mid_img", [("human", "<image>\nHi"), ("gpt", "Hello"), ("system", "Be brief."), ("human", "Why?"),
                            ("gpt", "Because.")], img),
        ("system_last", [("human", "Q"), ("gpt", "A"), ("system", "the end")], None),
        ("unknown_first", [("user", "Q"), ("gpt", "A")], None),
        ("unknown_first_img", [("user", "<image>\nQ"), ("assistant", "A")], img),
        ("unknown_later", [("human", "Q"), ("gpt", "Calling a tool."), ("observation", "tool output 42"),
                           ("gpt", "Final.")], None),
        ("unknown_later_capital", [("human", "Q"), ("GPT", "A"), ("Human", "Q2"), ("gpt", "A2")], None),
        ("role_names_later", [("human", "Q"), ("assistant", "A"), ("user", "Q2"), ("gpt", "A2")], None),
        ("two_humans", [("human", "Q1"), ("human", "Q2"), ("gpt", "A")], None),
        ("two_gpts", [("human", "Q"), ("gpt", "A1"), ("gpt", "A2")], None),
        ("ends_human", [("human", "Q1"), ("gpt", "A1"), ("human", "Q2")], None),
        ("only_human", [("human", "<image>\nQ")], img),
        ("only_gpt", [("gpt", "lonely")], None),
        ("only_gpt_img", [("gpt", "lonely <image>")], img),
        ("empty_conv", [], None),
        ("empty_conv_img", [], img),
        ("empty_messages", [("human", ""), ("gpt", "")], None),
        ("empty_answer", [("human", "Q1"), ("gpt", ""), ("human", "Q2"), ("gpt", "A2")], None),
        ("empty_answer_img", [("human", "<image>\nQ1"), ("gpt", ""), ("human", "Q2"), ("gpt", "A2")], img),
        ("empty_question_later", [("human", "Q1"), ("gpt", "A1"), ("human", ""), ("gpt", "A2")], None),
        ("ws_only_messages", [("human", "   "), ("gpt", "\n\n")], None),
        ("ws_edges", [("human", "  lead and trail  "), ("gpt", "\tTabbed answer\t")], None),
        ("ws_newlines", [("human", "\nQ\n"), ("gpt", "\n\nA\n\n")], None),
        ("ws_unicode", [("human", "\u3000Q\u3000"), ("gpt", "\u00a0A\u00a0")], None),
        ("ws_unicode_img", [("human", "\u3000<image>\u3000\n question \u00a0"), ("gpt", "\u3000ok\u3000")], img),
        # Python's str.strip (Jinja's trim) takes \x1c-\x1f, \x85 and U+2028 as whitespace, not U+200B or U+FEFF.
        ("ws_python_strip", [("human", "\x1fQ\x1c"), ("gpt", "\x85A\u2028")], None),
        ("ws_not_stripped", [("human", "\u200bQ\ufeff"), ("gpt", "\ufeffA\u200b")], None),
        ("nl_runs", [("human", "a\nb\n\nc\n\n\nd"), ("gpt", "1\n2\n\n3\n\n\n4")], None),
        ("nl_only", [("human", "\n"), ("gpt", "\n\n")], None),
        ("nl_three", [("human", "\n\n\n"), ("gpt", "x\n\n\n")], None),
        ("nl_crlf", [("human", "a\r\nb\r\n\r\nc"), ("gpt", "d\r\n")], None),
        ("nl_runs_img", [("human", "<image>\n\n\nQ\n\n"), ("gpt", "\n\nA")], img),
    ]
    for name, sp in NAMED_SPECIALS:  # each literal special-token string alone, in a question and in an answer
        e.append(("special_%s_user" % name, [("human", "What is %s here?" % sp), ("gpt", "A string.")], None))
        e.append(("special_%s_gpt" % name, [("human", "Say it."), ("gpt", "It is %s.%s" % (sp, sp))], None))
    e += [
        ("special_all_user", [("human", " ".join(SPECIALS)), ("gpt", "ok")], None),
        ("special_all_gpt", [("human", "Say them."), ("gpt", "".join(SPECIALS))], None),
        ("special_all_img", [("human", "<image>\n" + "".join(SPECIALS)), ("gpt", " ".join(SPECIALS))], img),
        ("special_fake_turn", [("human", "x<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\ny"),
                               ("gpt", "<|im_end|>\n<|im_start|>user\nfake")], None),
        ("special_fake_inst", [("human", "[/INST] fake [INST]"), ("gpt", "a </s><s>[INST] b [/INST] c")], None),
        ("special_sys_tags", [("human", "<<SYS>>\nfake\n<</SYS>>\n\nQ"), ("gpt", "A")], None),
        ("noisy_img", [("human", "<image>\nQA_GT_caption_based_noisy What?"), ("gpt", "QA_GT_caption_based_noisyYes")],
         img),
        ("noisy_txt", [("human", "QA_GT_caption_based_noisy What?"), ("gpt", "QA_GT_caption_based_noisyYes")], None),
        ("unicode_cjk", [("human", mtg.CJK[0]), ("gpt", mtg.CJK[2] + mtg.CJK[4])], None),
        ("unicode_emoji", [("human", mtg.EMOJI[1]), ("gpt", mtg.EMOJI[0] + mtg.EMOJI[4])], None),
        ("unicode_accents", [("human", mtg.MIXED[6]), ("gpt", mtg.MIXED[7] + " " + mtg.MIXED[9])], None),
        ("unicode_arabic", [("human", mtg.MIXED[2]), ("gpt", mtg.MIXED[3] + " " + mtg.MIXED[4])], None),
        ("unicode_img", [("human", "<image>\n" + mtg.CJK[3]), ("gpt", mtg.MIXED[8])], img),
        ("digits", [("human", "12345678901234567890 3.14159 1,000,000"), ("gpt", "0.5e-10 -42 2024-05-12 007")],
         None),
        ("code", [("human", mtg.CODE[0]), ("gpt", mtg.CODE[2] + "\n" + mtg.CODE[10])], None),
        # Longer than model_max_length: the collator's cut (and, text-only under LLAMA_2, the tokenizer's).
        ("long_text", [("human", "Write a lot."), ("gpt", long_a), ("human", "More."), ("gpt", long_b)], None),
        ("long_image", [("human", "<image>\nWrite a lot."), ("gpt", long_a), ("human", "More."), ("gpt", long_b)],
         img),
        ("long_user", [("human", "Read this: " + long_a + " " + long_b), ("gpt", "Done.")], None),
        ("long_user_img", [("human", long_a + " <image> " + long_b), ("gpt", "Done.")], img),
    ]
    return e


def make_samples():
    samples = []
    for template in SINGLE_TEMPLATES:
        rng = random.Random(SEEDS[template])
        p = PREFIX[template]
        for name, conv, image in edge_cases(rng):
            s = {"id": "%s_%s" % (p, name), "template": template,
                 "conversations": [{"from": f, "value": v} for f, v in conv]}
            if image is not None:
                s["image"] = image
            samples.append(s)
        for i in range(N_RANDOM):
            samples.append(random_sample(rng, "%s_rand%03d" % (p, i), template))
    return samples


# ------------------------------------------------------------------------------------------------
# Multi-image samples (LLaVA-NeXT / OneVision's format: "image" a list of paths, one "<image>" per path)

IMG = "<image>"


def multi_edge_cases(rng):
    """[(name, conversation, number of images)]: every "<image>" placement by hand."""
    long_a = " ".join(rng.choice(mtg.WORDS) for _ in range(2000))
    long_b = " ".join(rng.choice(mtg.WORDS) for _ in range(400))
    return [
        ("start_two", [("human", "<image>\n<image>\nCompare the two pictures."), ("gpt", "The first is darker.")], 2),
        ("start_three", [("human", "<image>\n<image>\n<image>\nWhat do these have in common?"), ("gpt", "Cats.")],
         3),
        ("start_four_glued", [("human", "<image><image><image><image>Describe each."), ("gpt", "A, B, C and D.")], 4),
        ("start_spaces", [("human", "<image> <image> Which one is larger?"), ("gpt", "The second.")], 2),
        ("start_no_nl", [("human", "<image><image>What changed?"), ("gpt", "The light.")], 2),
        ("interleaved", [("human", "Compare <image> and <image>: which is brighter?"), ("gpt", "The first one.")], 2),
        ("interleaved_labels", [("human", "Image 1: <image>\nImage 2: <image>\nImage 3: <image>\nWhich is the odd "
                                 "one out?"), ("gpt", "Image 2.")], 3),
        ("start_and_mid", [("human", "<image>\nThis one, and this <image> one: are they the same?"), ("gpt", "No.")],
         2),
        ("adjacent_mid", [("human", "Look: <image><image> now tell me."), ("gpt", "Two dogs.")], 2),
        ("adjacent_nl", [("human", "Look:\n<image>\n<image>\nnow tell me."), ("gpt", "Two dogs.")], 2),
        ("end_two", [("human", "Which is bigger?\n<image>\n<image>"), ("gpt", "The left one.")], 2),
        ("end_glued", [("human", "Which is bigger?<image><image>"), ("gpt", "The right one.")], 2),
        ("only_tokens", [("human", "<image><image><image>"), ("gpt", "Three images.")], 3),
        ("only_tokens_nl", [("human", "<image>\n<image>\n"), ("gpt", "Two.")], 2),
        ("spread_start", [("human", "<image>\nWhat is this?"), ("gpt", "A cat."), ("human", "<image>\nAnd this?"),
                          ("gpt", "A dog."), ("human", "<image>\nAnd this one?"), ("gpt", "A bird.")], 3),
        ("spread_mid", [("human", "What is in <image> this one?"), ("gpt", "A cat."), ("human", "And in <image> that "
                        "one?"), ("gpt", "A dog.")], 2),
        ("spread_end", [("human", "What is this? <image>"), ("gpt", "A cat."), ("human", "And this?\n<image>"),
                        ("gpt", "A dog.")], 2),
        ("spread_glued", [("human", "<image>What?"), ("gpt", "A."), ("human", "Then?<image>"), ("gpt", "B."),
                          ("human", "x<image>y"), ("gpt", "C."), ("human", "<image>"), ("gpt", "D.")], 4),
        ("one_moved_then_two", [("human", "Look at this <image> first."), ("gpt", "Ok."),
                                ("human", "Now <image> and <image>: same?"), ("gpt", "Yes.")], 3),
        ("two_then_one_moved", [("human", "<image>\n<image>\nCompare."), ("gpt", "Similar."),
                                ("human", "And versus this one <image>?"), ("gpt", "Different.")], 3),
        ("start_then_mid", [("human", "<image>\nFirst."), ("gpt", "Seen."), ("human", "Second: <image>, noted?"),
                            ("gpt", "Noted.")], 2),
        ("mid_then_start", [("human", "First one is <image> here."), ("gpt", "Seen."), ("human", "<image>Second."),
                            ("gpt", "Noted.")], 2),
        ("gpt_has_image", [("human", "<image>\nWhat matches?"), ("gpt", "It matches <image> exactly.")], 2),
        ("gpt_starts_image", [("human", "<image>\nShow me another."), ("gpt", "<image>\nHere it is.")], 2),
        ("gpt_two_images", [("human", "Pick two."), ("gpt", "These: <image> and <image>.")], 2),
        ("gpt_later_image", [("human", "<image> <image> Which?"), ("gpt", "Left."), ("human", "Why?"),
                             ("gpt", "Because of <image>, see.")], 3),
        ("gpt_mentions_text", [("human", "<image>\n<image>\nDescribe both."),
                               ("gpt", "The first image shows a cat; the second image shows a dog.")], 2),
        ("noisy_multi", [("human", "QA_GT_caption_based_noisy<image>\n<image>\nWhat?"),
                         ("gpt", "QA_GT_caption_based_noisy Both.")], 2),
        ("noisy_one_moved", [("human", "<image>\n<image>\nQ"), ("gpt", "A"),
                             ("human", "QA_GT_caption_based_noisy look <image> here"), ("gpt", "B")], 3),
        ("ws_multi", [("human", "  <image>\n  <image>\t Compare.  "), ("gpt", "\tOk. ")], 2),
        ("ws_one_moved", [("human", " \n What <image> is it? \n"), ("gpt", "X"), ("human", "<image> <image>"),
                          ("gpt", "Y")], 3),
        ("unicode_multi", [("human", "<image>\n" + mtg.CJK[0] + "<image>"), ("gpt", mtg.CJK[1])], 2),
        ("unicode_moved", [("human", mtg.CJK[3] + "<image>"), ("gpt", mtg.EMOJI[0]), ("human", "<image>\n\u3000Q"),
                           ("gpt", mtg.MIXED[6])], 2),
        ("empty_answer", [("human", "<image>\n<image>\nQ1"), ("gpt", ""), ("human", "Q2"), ("gpt", "A2")], 2),
        ("ends_human", [("human", "<image>\nQ1"), ("gpt", "A1"), ("human", "<image>\nQ2")], 2),
        ("first_gpt", [("gpt", "dropped"), ("human", "<image>\n<image>\nWhat?"), ("gpt", "This.")], 2),
        ("system_mid", [("human", "<image>\n<image>\nHi"), ("gpt", "Hello"), ("system", "Be brief."),
                        ("human", "Why?"), ("gpt", "Because.")], 2),
        ("special_seps", [("human", "<image>\n<image>\nSay </s>"), ("gpt", "</s> ASSISTANT: x [/INST] y")], 2),
        ("long_multi", [("human", "<image>\n<image>\nWrite a lot."), ("gpt", long_a), ("human", "More. <image>"),
                        ("gpt", long_b)], 3),
    ]


def _place_images(rng, q, k):
    """q with k "<image>" in it, in one of several places."""
    if k == 0:
        return q
    if k == 1:
        j = rng.randrange(8)
        if j == 6 and " " in q:  # mid-sentence (moved to the front by NeXT's num_im == 1 rule)
            w = q.split(" ")
            c = rng.randrange(1, len(w))
            return " ".join(w[:c]) + rng.choice([" <image> ", " <image>", "<image> "]) + " ".join(w[c:])
        return ["<image>\n" + q, "<image>" + q, "<image> " + q, q + "\n<image>", q + " <image>", q + "<image>",
                "<image>\n" + q, "<image>\n\n" + q][j]
    sep = rng.choice(["\n", "\n", "", " ", "\n\n"])
    j = rng.randrange(8)
    if j == 0:  # all at the start
        return sep.join([IMG] * k) + (sep or rng.choice(["\n", ""])) + q
    if j == 1:  # all at the end
        return q + rng.choice(["\n", " ", ""]) + sep.join([IMG] * k)
    if j == 2:  # labelled, one a line
        return "".join("%s %d: <image>\n" % (rng.choice(["Image", "Picture", "Frame"]), i + 1) for i in range(k)) + q
    if j == 3:  # "Compare <image>, <image> and <image>: ..."
        return (rng.choice(["Compare ", "Between ", "Look at "]) + ", ".join([IMG] * (k - 1)) + " and <image>: " + q)
    if j == 4:  # one at the very start, the others mid-sentence
        w = q.split(" ")
        for _ in range(k - 1):
            c = rng.randrange(0, len(w) + 1)
            w.insert(c, IMG)
        return "<image>" + rng.choice(["\n", " ", ""]) + " ".join(w)
    if j == 5:  # adjacent, glued, somewhere inside
        c = rng.randrange(0, len(q) + 1)
        return q[:c] + IMG * k + q[c:]
    if j == 6:  # scattered between the words
        w = q.split(" ")
        for _ in range(k):
            w.insert(rng.randrange(0, len(w) + 1), IMG)
        return " ".join(w)
    return "".join(IMG + rng.choice(["\n", " ", ""]) for _ in range(k)) + q  # at the start, mixed separators


def multi_random_sample(rng, sid, template):
    """2-4 images over 1-5 rounds: all in the first question (half the samples), spread over several questions, or
    one of them in an answer; text as random_sample's, decorated now and then; a few with a trailing question, a
    dropped first "gpt" turn or a "system" turn in the middle."""
    n = rng.randint(2, 4)
    rounds = rng.randint(1, 5)
    mode = rng.random()
    per_q = [0] * rounds
    per_a = [0] * rounds
    if mode < 0.5 or rounds == 1:
        per_q[0] = n
    elif mode < 0.85:
        for _ in range(n):
            per_q[rng.randrange(rounds)] += 1
    else:
        per_a[rng.randrange(rounds)] = 1
        for _ in range(n - 1):
            per_q[rng.randrange(rounds)] += 1
    conv = []
    for r in range(rounds):
        q, a = _text(rng), _text(rng)
        if rng.random() < 0.3:
            q = _decorate(rng, q)
        if rng.random() < 0.3:
            a = _decorate(rng, a)
        if rng.random() < 0.15 and per_q[0] >= 2:
            a = rng.choice(["The first image", "In the second picture,", "Image 2"]) + " " + a
        conv += [("human", _place_images(rng, q, per_q[r])), ("gpt", _place_images(rng, a, per_a[r]))]
    r = rng.random()
    if r < 0.04:
        conv.insert(0, ("gpt", _text(rng)))
    elif r < 0.07 and len(conv) > 2:
        conv.insert(2, ("system", _text(rng)))
    elif r < 0.15:
        conv.append(("human", _text(rng)))
    return {"id": sid, "template": template, "conversations": [{"from": f, "value": v} for f, v in conv],
            "image": ["multi/%s_%d.jpg" % (sid, k) for k in range(n)]}


def make_multi_samples():
    samples = []
    for template in MULTI_SEEDS:
        rng = random.Random(MULTI_SEEDS[template])
        p = PREFIX[template]
        for name, conv, n in multi_edge_cases(rng):
            sid = "%s_multi_%s" % (p, name)
            samples.append({"id": sid, "template": template,
                            "conversations": [{"from": f, "value": v} for f, v in conv],
                            "image": ["multi/%s_%d.jpg" % (sid, k) for k in range(n)]})
        for i in range(N_MULTI_RANDOM):
            samples.append(multi_random_sample(rng, "%s_multi_rand%03d" % (p, i), template))
    for s in samples:  # one "<image>" per path, 2 to 4 of them
        assert 2 <= len(s["image"]) <= 4 and sum(t["value"].count(IMG) for t in s["conversations"]) == len(
            s["image"]), s
    return samples


# ------------------------------------------------------------------------------------------------
# Tokenizers

def tokenizer_folder(name, model_file, model_name):
    d = tempfile.mkdtemp(prefix="tok_%s_" % name, dir=TMP)
    shutil.copy(model_file, os.path.join(d, model_name))
    shutil.copy(os.path.join(OUT, name, "tokenizer_config.json"), os.path.join(d, "tokenizer_config.json"))
    return d


def load_tokenizer(template, **override):
    """As llava/train/train.py (df17966) loads it for the model family, then its pad-token rule."""
    import transformers
    name, model_file, model_name, kw, _ = TEMPLATES[template]
    kw = dict(kw, **override)
    tok = transformers.AutoTokenizer.from_pretrained(tokenizer_folder(name, model_file, model_name),
                                                     model_max_length=MAX_LEN, **kw)
    if tok.unk_token is not None:
        tok.pad_token = tok.unk_token
    return tok


class Recording:
    """A tokenizer that notes every text it is called on (the strings NeXT's code tokenizes)."""

    def __init__(self, tok):
        self.__dict__["_tok"] = tok
        self.__dict__["texts"] = []

    def __call__(self, text, *a, **k):
        self.texts.extend([text] if isinstance(text, str) else list(text))
        return self._tok(text, *a, **k)

    def __getattr__(self, name):
        return getattr(self._tok, name)


# ------------------------------------------------------------------------------------------------
# LLaVA-NeXT's code

class NeXTSource:
    """LLaVA-NeXT's preprocessing functions, read from its git repository at NEXT_COMMIT and run unmodified."""

    def __init__(self, repo):
        import typing
        import torch
        import transformers

        def src(path):
            return mtg.git_show(repo, NEXT_COMMIT, path)

        functions = mtg.source_functions

        consts = {}
        exec(src("llava/constants.py"), consts)
        assert (consts["IMAGE_TOKEN_INDEX"], consts["IGNORE_INDEX"]) == (IMAGE_TOKEN_INDEX, IGNORE_INDEX)
        conv_mod = type(sys)("llava_conversation")
        sys.modules["llava_conversation"] = conv_mod  # dataclasses looks the module up
        exec(src("llava/conversation.py"), conv_mod.__dict__)
        # The import-time AutoTokenizer.from_pretrained("meta-llama/...") found nothing offline.
        assert conv_mod.conv_llava_llama_3.tokenizer is None, "conversation.py loaded a Llama-3 tokenizer"
        ns = {"torch": torch, "transformers": transformers, "copy": copy, "re": re, "conversation_lib": conv_mod,
              "Dict": typing.Dict, "Sequence": typing.Sequence, "List": typing.List, "Optional": typing.Optional,
              "DataArguments": object}
        ns.update({k: v for k, v in consts.items() if k.isupper()})
        exec(functions(src("llava/mm_utils.py"), ["tokenizer_image_token"]), ns)
        train_py = src("llava/train/train.py")
        # preprocess_v1's module-level flag, as train.py computes it (its own line, exec'd)
        import ast
        import packaging.version
        import tokenizers
        flag = [n for n in ast.parse(train_py).body if isinstance(n, ast.Assign) and
                [t.id for t in n.targets if isinstance(t, ast.Name)] == ["IS_TOKENIZER_GREATER_THAN_0_14"]]
        assert len(flag) == 1
        ns.update(version=packaging.version, tokenizers=tokenizers)
        exec(ast.unparse(flag[0]), ns)
        assert ns["IS_TOKENIZER_GREATER_THAN_0_14"] is True
        exec(functions(train_py, TRAIN_FUNCTIONS), ns)
        # Which preprocess_* preprocess() routes to: wrappers in the namespace its global lookups use.
        self.called = []
        for fn in ["preprocess_llama_2", "preprocess_qwen", "preprocess_llama3", "preprocess_v1"]:
            def wrap(*a, _fn=ns[fn], _name=fn, **k):
                self.called.append(_name)
                return _fn(*a, **k)
            ns[fn] = wrap
        self.ns, self.conv = ns, conv_mod

    def run(self, sample, tok):
        """LazySupervisedDataset._get_item (text side), then the collator's truncation."""
        template = sample["template"]
        # train.py, from --version ("v1" for vicuna_v1: the same Conversation object)
        self.conv.default_conversation = self.conv.conv_templates[NEXT_KEY.get(template, template)]
        data_args = type("DataArguments", (), {"is_multimodal": True, "mm_use_im_start_end": False})()
        sources = [sample]
        out = StringIO()
        self.called.clear()
        turns = None  # the messages as preprocess_multimodal left them
        try:
            with redirect_stdout(out):
                if "image" in sources[0]:
                    srcs = self.ns["preprocess_multimodal"](copy.deepcopy([e["conversations"] for e in sources]),
                                                            data_args)
                else:
                    srcs = copy.deepcopy([e["conversations"] for e in sources])
                turns = [t["value"] for t in srcs[0]]
                has_image = "image" in sample
                d = self.ns["preprocess"](srcs, tok, has_image=has_image)
        except NameError:
            raise  # a name this script's namespace lacks, not NeXT's behaviour
        except Exception as e:  # KeyError, IndexError, AssertionError: NeXT's _get_item raises
            assert self.called == [TEMPLATES[template][4]], (sample["id"], self.called)
            return {"id": sample["id"], "error": type(e).__name__}, {"message": str(e), "turns": turns}
        assert self.called == [TEMPLATES[template][4]], (sample["id"], self.called)
        d = dict(input_ids=d["input_ids"][0], labels=d["labels"][0])
        full = len(d["input_ids"])
        ids = d["input_ids"][:MAX_LEN].tolist()
        labels = d["labels"][:MAX_LEN].tolist()
        assert len(ids) == len(labels)
        printed = [l for l in out.getvalue().splitlines() if l.strip()]
        mismatch = None
        for line in printed:
            m = re.fullmatch(r"WARNING: tokenization mismatch: (\d+) vs\. (\d+)\. \(ignored\)", line)
            assert m and mismatch is None, (sample["id"], printed)
            mismatch = [int(m.group(1)), int(m.group(2))]
        rec = {"id": sample["id"], "ids": mtg.ids_line(ids), "labels": mtg.ids_line(labels), "mismatch": mismatch}
        return rec, {"full_len": full, "ids": ids, "labels": labels, "turns": turns}


# ------------------------------------------------------------------------------------------------
# Facts

def check_facts(template, tok, results):
    """The quirks the C side must reproduce; stops the script when one is not so. Returns lines for the summary."""
    facts = []
    ok = [(r, x) for r, x in results if "error" not in r]
    name = TEMPLATES[template][0]
    if name == "llama3":
        assert type(tok).__name__ == "PreTrainedTokenizerFast", type(tok)
        assert tok.unk_token is None and tok.pad_token is None  # train.py's pad rule leaves pad unset
        ids = {t: tok.convert_tokens_to_ids(t) for t in
               ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
        assert list(ids.values()) == [4000, 4006, 4007, 4009], ids
        assert len(tok) == 4011
        c = copy.deepcopy(tok)
        c.add_tokens(["<image>"], special_tokens=True)
        assert c.convert_tokens_to_ids("<image>") == 4011
        nn = tok.convert_tokens_to_ids("\n\n")
        assert nn is None and c.convert_tokens_to_ids("\n\n") is None, nn
        assert tok.convert_tokens_to_ids("\u010a\u010a") == 960 and tok("\n\n", add_special_tokens=False).input_ids == [960]
        assert tok.convert_tokens_to_ids("<image>") is None  # text-only: image_token_index is None
        facts.append('convert_tokens_to_ids("\\n\\n") -> %r (the vocabulary spells "\\n\\n" "ĊĊ" = 960): '
                     'unmask_tokens_idx = [4000, 4006, 4007, 4009, None]; "\\n\\n" is never unmasked' % (nn,))
        for r, x in ok:  # the system turn: bos, headers and eot unmasked, "system", "ĊĊ" and its text masked
            assert x["ids"][:5] == [4000, 4006, x["ids"][2], 4007, 960] and x["labels"][:5] == [4000, 4006, -100,
                                                                                                  4007, -100], r["id"]
        facts.append("every sample starts [4000, 4006, system, 4007, 960 ...] with labels [4000, 4006, -100, 4007, "
                     "-100 ...]")
        facts.append('has_image: "<image>" is added as id 4011 (= len(tokenizer) 4011); no unk, so pad stays None '
                     "(the collator would pad with 0)")
        added = 4011
    elif name == "qwen2":
        assert type(tok).__name__ == "Qwen2TokenizerFast", type(tok)
        assert tok.unk_token is None and tok.pad_token == "<|endoftext|>" and tok.pad_token_id == 4500
        assert tok.additional_special_tokens_ids == [4501, 4502]
        assert tok.convert_ids_to_tokens(198) == "\u010a" and tok("\n").input_ids == [198]
        assert len(tok) == 4514
        c = copy.deepcopy(tok)
        c.add_tokens(["<image>"], special_tokens=True)
        assert c.convert_tokens_to_ids("<image>") == 4514
        assert tok.convert_tokens_to_ids("<image>") is None
        facts.append('the hard-coded 198 of unmask_tokens_idx is "Ċ" ("\\n") here as in Qwen2; im_start, im_end = '
                     "4501, 4502; every 198, 4501, 4502 is unmasked, in system and user turns too")
        for r, x in ok:
            assert x["ids"][0] == 4501 and x["labels"][0] == 4501, r["id"]
        facts.append('has_image: "<image>" is added as id 4514 (= len(tokenizer) 4514); unk None, pad <|endoftext|> '
                     "4500")
        added = 4514
    else:
        assert type(tok).__name__ == "LlamaTokenizerFast" and tok.legacy is True, (type(tok), tok.legacy)
        assert "Prepend" in str(tok.backend_tokenizer.normalizer), tok.backend_tokenizer.normalizer
        assert tok.pad_token == "<unk>" and tok.pad_token_id == 0 and tok.padding_side == "left"
        facts.append("LlamaTokenizerFast (legacy=True, normalizer Prepend(▁) + Replace(' ', ▁)), pad = unk = 0, "
                     "padding_side left")
        added = None
    # "<image>" in an assistant turn: the input id becomes -200, the label keeps what the turn tokenized to.
    found = []
    for r, x in ok:
        for i, l in zip(x["ids"], x["labels"]):
            if i == IMAGE_TOKEN_INDEX and l != IGNORE_INDEX:
                assert l == (added if added is not None else IMAGE_TOKEN_INDEX), (r["id"], l)
                found.append(r["id"])
                break
    assert "%s_img_in_answer" % PREFIX[template] in found, found
    facts.append('"<image>" in an answer: input -200, label %s (%d samples)' %
                 (added if added is not None else "-200 too (labels are a clone of the ids)", len(found)))
    return facts


def check_multi_facts(template, tok, mine, results):
    """The multi-image samples: one -200 per path, NeXT's num_im == 1 rule, the vicuna tokenizer. Lines for the
    summary."""
    facts = []
    if template == "vicuna_v1":
        assert type(tok).__name__ == "LlamaTokenizer", type(tok)
        assert tok.pad_token == "<unk>" and tok.pad_token_id == 0 and tok.padding_side == "right"
        facts.append("slow LlamaTokenizer (use_fast=False, as train.py loads a vicuna / llama model), legacy=%s, pad = "
                     "unk = 0; preprocess_v1 %s" % (tok.legacy, "takes 1 off both lengths of every round after the "
                                                    "first (not tokenizer.legacy and tokenizers >= 0.14)"
                                                    if not tok.legacy else "counts every round as it tokenizes"))
    ok = [(s, r, x) for s, (r, x) in zip(mine, results) if "error" not in r]
    cut = 0
    for s, r, x in ok:
        n = sum(1 for i in x["ids"] if i == IMAGE_TOKEN_INDEX)
        if x["full_len"] > MAX_LEN:
            assert n <= len(s["image"]), (r["id"], n)
            cut += 1
        else:
            assert n == len(s["image"]), (r["id"], n, len(s["image"]))
    facts.append("the ids of every sample NeXT takes hold one -200 per path of its \"image\" list (%d samples; %d cut at "
                 "2048 hold at most as many)" % (len(ok), cut))
    moved_turns, moved_samples = 0, 0
    for s, (r, x) in zip(mine, results):
        m = 0
        for t, after in zip(s["conversations"], x["turns"]):
            v = t["value"]
            if v.count(IMG) == 1 and not v.startswith(IMG):
                v = (IMG + "\n" + v.replace(IMG, "").strip()).strip()
                m += 1
            assert after == v.replace("QA_GT_caption_based_noisy", ""), (r["id"], after, v)
        moved_turns += m
        moved_samples += m > 0
    facts.append('preprocess_multimodal moved the "<image>" of %d turns in %d samples to their front (a turn with '
                 "exactly one that does not start with it); turns with two or more kept theirs in place" %
                 (moved_turns, moved_samples))
    ans = [r["id"] for s, r, x in ok if any(i == IMAGE_TOKEN_INDEX and l != IGNORE_INDEX
                                             for i, l in zip(x["ids"], x["labels"]))]
    facts.append('"<image>" in a supervised answer: %d samples' % len(ans))
    return facts


# ------------------------------------------------------------------------------------------------

def write_readme(summary, multi_summary, versions, tf_version, slow_report):
    lines = []
    lines.append("""# LLaVA-NeXT chat templates: golden ids and label masks

Made by `tools/reference/make_chat_template_goldens.py` (its docstring says what is reference), which runs
LLaVA-NeXT's own preprocessing code unmodified, read from its git repository at commit
`%s`: `preprocess_multimodal`, `preprocess` and the `preprocess_llama3` / `preprocess_qwen` / `preprocess_llama_2`
it routes to (llava/train/train.py), `tokenizer_image_token` (llava/mm_utils.py), `conv_templates`
(llava/conversation.py). Around them, what `LazySupervisedDataset._get_item` and `DataCollatorForSupervisedDataset`
do for the text side: `preprocess_multimodal` (is_multimodal=True, mm_use_im_start_end=False) on a deep copy when the
sample has an `"image"` key, `preprocess(sources, tokenizer, has_image="image" in sample)`, then ids and labels cut
to model_max_length = %d.

Regenerate (a few seconds):

```sh
python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install -r tools/reference/requirements-chat.txt
/tmp/refvenv/bin/python tools/reference/make_chat_template_goldens.py --next-repo /path/to/LLaVA-NeXT  # a clone or bare mirror
```

Versions: %s.

## Files

- `samples.jsonl`: one sample per line, `{"id", "template", "conversations": [{"from", "value"}...]}` and, for image
  samples, `"image"` (a file name or a list of them; only its presence matters). Deterministic (fixed seeds); every
  template has the same edge cases (ids `<p>_<name>`, p = l3 / qw / mi) and %d random samples (`<p>_randNNN`).
- `<template>.prep.jsonl` (llava_llama_3, qwen_1_5, mistral_instruct): one line per sample of that template, in the
  order of samples.jsonl: `{"id", "ids": "<ints separated by spaces, -200 for an image>", "labels": "<ints, -100 where
  masked>", "mismatch": null or [cur_len, total_len]}` (mismatch: preprocess_llama_2's "tokenization mismatch" print,
  after which NeXT has set every label to -100), or `{"id", "error": "<exception type>"}` when NeXT's code raises
  (NeXT's `__getitem__` would then retry and fall back to the next sample). Labels are stored whole: they are not
  always -100 or the id (see below).
- `<name>/tokenizer_config.json` (llama3, qwen2, mistral): the configs used. The tokenizers are
  `tests/data/bpe/llama3/tokenizer.json`, `tests/data/bpe/qwen2/tokenizer.json` and
  `tests/data/tokenizer/llama.model` (not copied here): a loader that wants the model beside the config needs a
  folder holding both, as the script makes in a temporary folder.

| template | routed to | tokenizer | class (transformers %s) | loaded as train.py does |
|---|---|---|---|---|
| llava_llama_3 | preprocess_llama3 | bpe/llama3/tokenizer.json + chat/llama3 | PreTrainedTokenizerFast | AutoTokenizer, use_fast=False (no slow class: the fast one), padding_side right |
| qwen_1_5 | preprocess_qwen | bpe/qwen2/tokenizer.json + chat/qwen2 | Qwen2TokenizerFast | AutoTokenizer, padding_side right |
| mistral_instruct | preprocess_llama_2 (sep_style LLAMA_2) | tokenizer/llama.model + chat/mistral | LlamaTokenizerFast (legacy=True, converted from the slow one) | AutoTokenizer, padding_side left |

then train.py's `if tokenizer.unk_token is not None: tokenizer.pad_token = tokenizer.unk_token` (only the Llama
tokenizer has an unk). The llama3 config's chat_template is our own Llama-3-Instruct layout: bos before the first
message, each message `<|start_header_id|>` + role + `<|end_header_id|>\\n\\n` + (content | trim) + `<|eot_id|>`,
generation prompt `<|start_header_id|>assistant<|end_header_id|>\\n\\n`. Jinja's `trim` is Python's `str.strip()`:
it strips every `str.isspace()` character (U+3000, U+00A0, U+0085, U+001C..U+001F, U+2028 too; not U+200B or U+FEFF).
preprocess_qwen replaces the tokenizer's chat_template with its own (no system default, no trim).
Note: `LlamaTokenizerFast(vocab_file=..., legacy=True)` built directly in transformers 4.46.3 has no Prepend("▁")
normalizer (its add_prefix_space stays None) and gives other ids ("Hello" -> 10994 instead of 15043); loaded with
AutoTokenizer from a folder, as NeXT does, it has it.

## Summary

| template | samples | errors | mismatches | cut at 2048 |
|---|---|---|---|---|""" % (NEXT_COMMIT, MAX_LEN, versions, N_RANDOM, tf_version))
    for t, s in summary.items():
        errs = ", ".join("%s %d" % (k, v) for k, v in sorted(s["errors"].items())) or "0"
        lines.append("| %s | %d | %s | %d | %d |" % (t, s["samples"], errs, s["mismatch"], s["truncated"]))
    lines.append("""
"cut at 2048": samples whose ids reach model_max_length (the collator's cut; text-only mistral_instruct samples are
already cut by the `tokenizer(..., truncation=True)` call inside preprocess_llama_2, which then skips its mismatch
check because cur_len >= model_max_length). Errors and mismatches by sample:
""")
    for t, s in summary.items():
        for k, v in sorted(s["error_ids"].items()):
            lines.append("- %s %s: %s" % (t, k, ", ".join("`%s` (%s)" % (i, m) for i, m in v)))
        if s["mismatch_ids"]:
            lines.append("- %s mismatch: %s" % (t, ", ".join("`%s`" % i for i in s["mismatch_ids"])))
    lines.append("\n## Facts the script asserts\n")
    for t, s in summary.items():
        for f in s["facts"]:
            lines.append("- %s: %s" % (t, f))
    lines.append("""
## What NeXT does with roles (all templates)

- First turn: `roles[source[0]["from"]]` with roles = {"human", "gpt"}: any other first "from" ("system", "user",
  ...) raises KeyError; a first "gpt" turn is dropped. An empty conversation raises IndexError.
- preprocess_llama3 / preprocess_qwen, later turns: `roles.get(from, from)`, so "human" -> user, "gpt" -> assistant,
  any other name passes through as the role string itself. Turns whose role is "user" or "system" are masked; every
  other role ("assistant", and also "observation", "tool", "GPT", "Human", ...) is supervised like an answer. No
  alternation check: two user or two assistant turns in a row pass. Then the unmask ids are unmasked wherever they
  occur (llama3: 4000, 4006, 4007, 4009; qwen: 198, 4501, 4502), and the added `<image>` id becomes -200 in the ids
  only.
- preprocess_llama_2 (mistral_instruct): every turn goes through `roles[from]` (KeyError for anything but human /
  gpt) and must alternate (AssertionError); Conversation.get_prompt asserts a non-empty first message
  (AssertionError). An empty later message is left out of the prompt. Rounds are found by splitting the prompt on
  "</s>" and "[/INST] ", so those strings inside messages shift the masks or give a mismatch; a literal "<unk>"
  tokenizes to the pad id 0 and shortens total_len (a mismatch).
- preprocess_multimodal (image samples): a message with exactly one "<image>" that does not start with it has it
  removed, stripped, and put in front as "<image>\\n" (answers too); two or more are left in place; it deletes
  "QA_GT_caption_based_noisy" from every message.
""")
    lines.append("""## Multi-image samples

`multi_image.jsonl`: LLaVA-NeXT / OneVision's multi-image format, `"image"` a list of 2-4 paths and as many
`"<image>"` in the conversation, for llava_llama_3, qwen_1_5, mistral_instruct and vicuna_v1 (ids `<p>_multi_<name>`
for the edge cases every template shares and `<p>_multi_randNNN` for %d random ones, p = l3 / qw / mi / v1;
deterministic). Placements: all at the start of the first question, at its end, one a line with a label,
"Compare <image> and <image>: ...", one at the very start and the others mid-sentence, adjacent `<image><image>`
(glued or inside the text), with and without "\\n" after, spread over several questions, one in an answer, and
turns with exactly one `"<image>"` not at their start (NeXT's `preprocess_multimodal` moves it to the front: its
num_im == 1 rule) beside turns with two or more (left in place).

Golden files, one line per sample in the order of multi_image.jsonl, in the format of `<template>.prep.jsonl`:

- `llava_llama_3.multi.prep.jsonl`, `qwen_1_5.multi.prep.jsonl`, `mistral_instruct.multi.prep.jsonl`: the
  tokenizers and loading above.
- `vicuna_v1.multi.prep.jsonl`: `conv_templates["v1"]` (conv_vicuna_v1, the object `"vicuna_v1"` names too), which
  `preprocess` routes to `preprocess_v1`; tokenizer `tests/data/tokenizer/llama.model` + `vicuna/tokenizer_config.json`
  (lmsys/vicuna-7b-v1.5's keys: legacy=False), loaded as train.py loads a vicuna / llama model:
  `AutoTokenizer(use_fast=False, padding_side="right")`, the slow `LlamaTokenizer`, then pad = unk. Under tokenizers
  >= 0.14 and legacy=False preprocess_v1 takes 1 off both lengths of every round after the first.
- `vicuna_v1.legacy.multi.prep.jsonl`: the same samples with `legacy=True` passed to `from_pretrained` (no such
  correction).

| golden | samples | errors | mismatches | cut at 2048 |
|---|---|---|---|---|""" % N_MULTI_RANDOM)
    for t, s in multi_summary.items():
        errs = ", ".join("%s %d" % (k, v) for k, v in sorted(s["errors"].items())) or "0"
        lines.append("| %s | %d | %s | %d | %d |" % (t, s["samples"], errs, s["mismatch"], s["truncated"]))
    lines.append("")
    for t, s in multi_summary.items():
        for k, v in sorted(s["error_ids"].items()):
            lines.append("- %s %s: %s" % (t, k, ", ".join("`%s` (%s)" % (i, m) for i, m in v)))
        if s["mismatch_ids"]:
            lines.append("- %s mismatch: %s" % (t, ", ".join("`%s`" % i for i in s["mismatch_ids"])))
    lines.append("\nAsserted:\n")
    for t, s in multi_summary.items():
        for f in s["facts"]:
            lines.append("- %s: %s" % (t, f))
    lines.append("")
    if slow_report:
        lines.append("## Fast and slow LLaMA tokenizers (mistral_instruct)\n")
        lines.append("\n\n".join(slow_report))
    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def run_goldens(src, template, mine, tok, path, kind="samples"):
    """NeXT's pipeline on each sample; for mistral_instruct the slow tokenizer beside the fast one. Writes the golden
    file; returns [(record, extra)] and the fast/slow comparison's line (or None)."""
    results = [src.run(s, tok) for s in mine]
    slow_differs, line = {}, None
    if template == "mistral_instruct":
        slow = Recording(load_tokenizer(template, use_fast=False))
        assert type(slow._tok).__name__ == "LlamaTokenizer" and slow._tok.legacy is True
        texts_by_sample = {}
        for s, (r, _) in zip(mine, results):
            slow.texts.clear()
            rs, _ = src.run(s, slow)
            texts_by_sample[s["id"]] = list(slow.texts)
            if rs != r:
                slow_differs.setdefault(s["id"], []).append("pipeline output")
        n_texts = 0
        for sid, texts in texts_by_sample.items():
            for t in texts:
                n_texts += 1
                a_ids, b_ids = tok(t).input_ids, slow._tok(t).input_ids
                if a_ids != b_ids:
                    slow_differs.setdefault(sid, []).append(t)
        line = ("The fast LlamaTokenizerFast and the slow LlamaTokenizer (both legacy=True) were compared on "
                "every string NeXT's code tokenized for the %d mistral_instruct %s (%d strings) and on the "
                "pipeline's output: %s." % (len(mine), kind, n_texts, "identical" if not slow_differs else
                                             "they differ on %d samples (listed in the goldens' "
                                             "\"slow_differs\")" % len(slow_differs)))
        print(line)
        for sid, what in slow_differs.items():
            print("  slow differs:", sid, [w[:80] for w in what])
    with open(path, "w", encoding="utf-8") as f:
        for r, _ in results:
            if r["id"] in slow_differs:
                r = dict(r, slow_differs=True)
            f.write(json.dumps(r, separators=(",", ":")) + "\n")
    return results, line


def summarize(name, results, facts):
    errors, err_ids = {}, {}
    for r, x in results:
        if "error" in r:
            errors[r["error"]] = errors.get(r["error"], 0) + 1
            err_ids.setdefault(r["error"], []).append((r["id"], x["message"][:60].replace("\n", " ")))
    s = {"samples": len(results), "errors": errors,
         "mismatch": sum(1 for r, _ in results if r.get("mismatch")),
         "truncated": sum(1 for r, x in results if "error" not in r and x["full_len"] >= MAX_LEN),
         "facts": facts, "error_ids": err_ids,
         "mismatch_ids": [r["id"] for r, _ in results if r.get("mismatch")]}
    print("%s: %d samples, errors %s, mismatches %d, cut at 2048 %d" % (name, s["samples"], errors or 0,
                                                                      s["mismatch"], s["truncated"]))
    for k, v in err_ids.items():
        print("   ", k, v)
    print("    mismatch:", s["mismatch_ids"])
    for f_ in facts:
        print("    fact:", f_)
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--next-repo", required=True, help="a git repository (clone or bare mirror) of LLaVA-NeXT that "
                    "has commit " + NEXT_COMMIT)
    a = ap.parse_args()
    got = subprocess.run(["git", "-C", a.next_repo, "rev-parse", NEXT_COMMIT + "^{commit}"], check=True,
                         capture_output=True, text=True).stdout.strip()
    assert got == NEXT_COMMIT, got
    import jinja2
    import tokenizers
    import torch
    import transformers
    versions = "Python %d.%d.%d, transformers %s, tokenizers %s, torch %s, jinja2 %s" % (
        sys.version_info[:3] + (transformers.__version__, tokenizers.__version__, torch.__version__,
                                jinja2.__version__))
    try:
        import sentencepiece
        versions += ", sentencepiece %s" % sentencepiece.__version__
    except ImportError:
        pass
    print(versions)

    for name, cfg in CONFIGS.items():
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        with open(os.path.join(OUT, name, "tokenizer_config.json"), "w") as f:
            json.dump(cfg, f, indent=2, ensure_ascii=False)
            f.write("\n")
    samples = make_samples()
    with open(os.path.join(OUT, "samples.jsonl"), "w", encoding="utf-8") as f:
        for s in samples:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")

    import logging
    transformers.logging.set_verbosity_error()  # "Token indices sequence length is longer than ..." on long samples
    logging.getLogger("transformers").setLevel(logging.ERROR)
    src = NeXTSource(a.next_repo)
    summary, slow_report = {}, []
    for template in SINGLE_TEMPLATES:
        tok = load_tokenizer(template)
        mine = [s for s in samples if s["template"] == template]
        results, line = run_goldens(src, template, mine, tok, os.path.join(OUT, "%s.prep.jsonl" % template))
        if line:
            slow_report.append(line)
        facts = check_facts(template, tok, results)
        summary[template] = summarize(template, results, facts)

    multi = make_multi_samples()
    with open(os.path.join(OUT, "multi_image.jsonl"), "w", encoding="utf-8") as f:
        for s in multi:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    multi_summary = {}
    for template, name, override in MULTI_GOLDENS:
        tok = load_tokenizer(template, **override)
        mine = [s for s in multi if s["template"] == template]
        results, line = run_goldens(src, template, mine, tok, os.path.join(OUT, name), "multi-image samples")
        if line:
            slow_report.append(line)
        facts = check_multi_facts(template, tok, mine, results)
        multi_summary[name] = summarize(name, results, facts)
    write_readme(summary, multi_summary, versions, transformers.__version__, slow_report)


if __name__ == "__main__":
    main()
