"""Writes eval/pyunicode_tables.h: the character tables behind eval/pyunicode.c, which re-states the
few Python str operations the official VQA-family scorers use (lower(), split()/strip() whitespace,
re's \\d), for the two interpreters those scorers run on:

  - Python 3.10 (Unicode 13.0.0): LLaVA's environment (its README: conda create -n llava python=3.10),
    where m4c_evaluator.py's EvalAIAnswerProcessor and convert_gqa_for_eval.py run;
  - Python 2.7 (Unicode 5.2.0, a UCS-4 build): the only interpreter GT-Vision-Lab/VQA's vqaEval.py
    runs on (print statements).

Every table is read off the interpreter's own behaviour, not off CPython's internals:
  lower        chr(c).lower() for every code point but U+03A3 (Python 3 lowers capital sigma by
               context, Final_Sigma; Python 2 by its simple mapping, kept in the Python 2 table);
  sigma        for Python 3's Final_Sigma rule, each code point's class as the rule sees it, found
               by lowering probes: 'A'+c+'Σ' and c+'Σ' (case-ignorable characters are skipped; the
               first other one decides by being cased or not);
  space        str.isspace() (what split() and strip() without arguments use);
  decimal      str.isdecimal() (what Python 3's re \\d matches in a str pattern; Python 2's \\d in a
               pattern compiled without re.UNICODE is [0-9], checked here too).

Run from the repository root with Python 3.10 (no packages needed):
    python3.10 tools/reference/eval/make_pyunicode_tables.py --python2 python2.7   # writes eval/pyunicode_tables.h
"""
import argparse
import json
import re
import subprocess
import sys
import unicodedata

OUT = "eval/pyunicode_tables.h"
SIGMA = 0x3A3

PY2_DUMP = r"""
import json, re, sys, unicodedata
assert sys.maxunicode == 0x10FFFF, 'a UCS-4 build of Python 2.7 is needed'
low = {}
for c in range(0x110000):
    if 0xD800 <= c < 0xE000:
        continue
    l = unichr(c).lower()
    if l != unichr(c):
        low[c] = [ord(x) for x in l]
space = [c for c in range(0x110000) if unichr(c).isspace()]
digit = [c for c in range(0x110000) if not (0xD800 <= c < 0xE000) and re.match('\\d', unichr(c))]
print(json.dumps({'version': sys.version.split()[0], 'unidata': unicodedata.unidata_version,
                  'lower': low, 'space': space, 're_digit': digit}))
"""


def runs_of_map(m):
    """[(lo, hi, stride, delta)] covering a {cp: cp'} map: c in lo..hi step stride maps to c + delta."""
    cps = sorted(m)
    out = []
    i = 0
    while i < len(cps):
        lo = cps[i]
        d = m[lo] - lo
        stride = 1
        j = i
        if i + 1 < len(cps) and cps[i + 1] - lo in (1, 2) and m[cps[i + 1]] - cps[i + 1] == d:
            stride = cps[i + 1] - lo
            while j + 1 < len(cps) and cps[j + 1] - cps[j] == stride and m[cps[j + 1]] - cps[j + 1] == d:
                j += 1
        out.append((lo, cps[j], stride, d))
        i = j + 1
    return out


def ranges(cps):
    cps = sorted(cps)
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def fmt_runs(name, runs):
    lines = ["static const py_case_run %s[] = {" % name]
    for lo, hi, stride, d in runs:
        lines.append("    {0x%X, 0x%X, %d, %d}," % (lo, hi, stride, d))
    lines.append("};")
    return "\n".join(lines)


def fmt_ranges(name, rs, ctype="py_range"):
    lines = ["static const %s %s[] = {" % (ctype, name)]
    row = []
    for lo, hi in rs:
        row.append("{0x%X, 0x%X}," % (lo, hi))
        if len(row) == 6:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines.append("};")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--python2", default="python2.7")
    args = ap.parse_args()
    assert sys.version_info[:2] == (3, 10), "run with Python 3.10 (LLaVA's interpreter)"
    assert unicodedata.unidata_version == "13.0.0"
    cps = [c for c in range(0x110000) if not (0xD800 <= c < 0xE000)]
    # Python 3: lower
    single, multi = {}, {}
    for c in cps:
        if c == SIGMA:
            continue
        l = chr(c).lower()
        if l != chr(c):
            if len(l) == 1:
                single[c] = ord(l)
            else:
                multi[c] = [ord(x) for x in l]
    assert list(multi) == [0x130], multi  # U+0130 -> i + U+0307, the one unconditional full mapping
    # Python 3: Final_Sigma classes
    assert "A\u03a3".lower() == "a\u03c2" and "\u03a3".lower() == "\u03c3"
    ign, cased = [], []
    for c in cps:
        x = ("A" + chr(c) + "\u03a3").lower()[-1] == "\u03c2"  # ignorable or cased
        y = (chr(c) + "\u03a3").lower()[-1] == "\u03c2"  # cased and not ignorable
        if x and not y:
            ign.append(c)
        elif y:
            cased.append(c)
    # the forward half of the rule agrees: 'AΣ'+c is final when c is ignorable or not cased
    for c in cps[:0x3000]:
        z = ("A\u03a3" + chr(c)).lower()[1] == "\u03c2"
        assert z == (c in set(ign) or c not in set(cased)) or c == SIGMA, hex(c)
    space3 = [c for c in cps if chr(c).isspace()]
    dec3 = [c for c in cps if chr(c).isdecimal()]
    assert dec3 == [c for c in cps if re.match(r"\d", chr(c))]
    # Python 2
    p2 = json.loads(subprocess.check_output([args.python2, "-c", PY2_DUMP]))
    assert p2["unidata"] == "5.2.0", p2["unidata"]
    low2 = {int(k): v for k, v in p2["lower"].items()}
    assert all(len(v) == 1 for v in low2.values())
    low2 = {k: v[0] for k, v in low2.items()}
    assert p2["re_digit"] == list(range(0x30, 0x3A))

    text = [
        "// Generated by tools/reference/eval/make_pyunicode_tables.py: do not edit. Read off Python %s"
        % sys.version.split()[0],
        "// (Unicode %s) and Python %s (Unicode %s) by their own str methods; eval/pyunicode.c uses them."
        % (unicodedata.unidata_version, p2["version"], p2["unidata"]),
        "// py_case_run {lo, hi, stride, delta}: every stride-th code point of lo..hi lowers to itself + delta.",
        "// clang-format off",
        "",
        "// Python 3.10 str.lower(), one code point to one (U+0130 and U+03A3 are handled in pyunicode.c).",
        fmt_runs("PY3_LOWER", runs_of_map(single)),
        "",
        "// Python 2.7 unicode.lower() (simple mappings only).",
        fmt_runs("PY2_LOWER", runs_of_map(low2)),
        "",
        "// Python 3.10's Final_Sigma rule: code points it skips (case-ignorable) ...",
        fmt_ranges("PY3_CASE_IGNORABLE", ranges(ign)),
        "// ... and the other code points that count as cased.",
        fmt_ranges("PY3_CASED", ranges(cased)),
        "",
        "// str.isspace(): Python 3.10, then Python 2.7 (which still has U+180E).",
        fmt_ranges("PY3_SPACE", ranges(space3)),
        fmt_ranges("PY2_SPACE", ranges(p2["space"])),
        "",
        "// Python 3.10 str.isdecimal(): re's \\d in a str pattern. (Python 2.7's \\d without re.UNICODE: 0-9.)",
        fmt_ranges("PY3_DECIMAL", ranges(dec3)),
        "// clang-format on",
        "",
    ]
    with open(OUT, "w") as f:
        f.write("\n".join(text))
    print("wrote %s: %d+%d lower runs, %d+%d sigma ranges, %d decimal ranges" % (
        OUT, len(runs_of_map(single)), len(runs_of_map(low2)), len(ranges(ign)), len(ranges(cased)),
        len(ranges(dec3))))


if __name__ == "__main__":
    main()
