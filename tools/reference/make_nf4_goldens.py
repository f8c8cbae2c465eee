"""Writes tests/data/nf4/: NF4 goldens for model/nf4.c, the storage QLoRA gives its frozen language model.

What is reproduced: bitsandbytes.functional.quantize_4bit(A, blocksize=64, compress_statistics=True,
quant_type="nf4", quant_storage=torch.uint8) and dequantize_4bit of its result, i.e. what transformers'
BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True) and
LLaVA's --bits 4 (double_quant and nf4 are its defaults) store for every nn.Linear of the language model.
Real QLoRA runs do this on a GPU, through bitsandbytes' CUDA kernels (kQuantizeBlockwise with
dQuantizeNF4 for the 4-bit codes, kQuantizeBlockwise with dQuantize and create_dynamic_map(signed=True)
for the 8-bit statistics, kDequantizeBlockwise back). This machine has no GPU, so the goldens are
computed by `cuda_*` below: a numpy re-statement of those kernels' decisions (written from the rules,
not from their code), which this script cross-checks against bitsandbytes' own CPU implementation
(pinned version in requirements-nf4.txt) and fails if the two disagree anywhere that is not one of the
differences listed here.

The CUDA rule, as re-stated (all arithmetic fp32; the library is built with --use_fast_math, so
subnormal inputs and results of the kernels' float operations are flushed to zero):
  1. The tensor is flattened row-major into n values and cut into blocks of 64; the last block may be
     shorter. absmax[b] = max |x| over the block's values (subnormals count as 0).
  2. scale = 1/absmax (fp32; 0 when absmax > 2^126, whose reciprocal is subnormal; inf when absmax
     is 0). Each value becomes y = x * scale and its code is the number of the 15 thresholds below that
     y exceeds (strictly): the thresholds are the midpoints of adjacent NF4 levels, hard-coded in the
     kernel's decision tree. A NaN y (0 * inf in an all-zero block) exceeds none: code 0.
  3. Two codes per byte, the first value in the HIGH nibble. An odd n gets one more nibble, the low one
     of the last byte: the code of a 0 in the last block (7, or 0 when that block is all zero).
  4. Double quantisation: offset = mean(absmax) (torch.mean on the device: a float sum times the
     float 1/nblocks; the sum is taken here exactly, rounded once to fp32). Then absmax - offset is
     quantised in blocks of 256 with the 8-bit signed dynamic map: absmax2 = max |.| per 256-block,
     the code by the kernel's binary search (pivot 127, steps 64..1) and the fp32 midpoint test
     between the final pivot and its neighbour on the value's side (a value exactly on the midpoint
     keeps the final pivot), with the map as create_dynamic_map builds it (its lowest entry is
     -0.99296875, its highest 1.0).
  5. Dequantisation: absmax' = code8[q] * absmax2 (one rounding), + offset (another); each weight is
     nf4[code] * absmax' in fp32, then rounded to nearest even to the dtype the weight had (bf16,
     fp16 or fp32): dequantize_4bit returns that dtype.

Where bitsandbytes-CPU (0.49.2, the version pinned; its quantize_4bit is the pure-torch "default"
kernel, its 8-bit quantize_blockwise the C++ one) differs from that rule, found by this script:
  a. Exact ties in the 4-bit code. The kernel's thresholds are fp32 literals, so each is the fp64
     midpoint of two levels rounded once to fp32 (read in Python as np.float32(float(s)) it would round
     twice and be one ulp off for 0|1, 8|9, 12|13 and 14|15: this script rounds them as a compiler
     does). For exactly four fp32 values of y the kernel and the CPU's argmin over fp32 distances
     disagree: y = -0.6106328964233398 (kernel code 1, CPU 2), -0.33967941999435425 (3, 4),
     -0.23460739850997925 (4, 5) and 0.1202552542090416 (8, 9): y equals the threshold, the kernel's
     y > T is false and it keeps the lower code, the CPU's rounded distances favour the upper one.
     Every other fp32 y gets the same code from both (checked over +-200 ulps around each threshold,
     and on every golden value). The `f32_ties` golden holds these values.
  b. The last, partial block of a bf16 or fp16 tensor: the CPU multiplies by 1/absmax in the input's
     own dtype (a 0-dim fp32 tensor times a bf16 tensor stays bf16), so y is rounded to bf16/fp16
     before the codes are chosen; the kernel keeps y in fp32. Codes differ where that rounding crosses
     a threshold.
  c. Odd n: the CPU cannot pack it (n = 1 gives an empty result, other odd n raise a shape error).
  d. The offset: the CPU's torch.mean is its float cascade sum divided by n; the GPU's is its float
     tree sum times fp32(1/n). They can differ in the last bit (see cpu_vs_cuda.json for the goldens).
  e. The 8-bit statistics: the CPU's C++ quantize_blockwise overwrites code[0] of the map with -1.0
     before using it (and the state keeps that copy), the GPU uses the map as built (-0.99296875).
     The lowest statistic of a 256-block (y = -1) gets code 0 both ways, but dequantises to
     -1.0 * absmax2 on the CPU and -0.99296875 * absmax2 on the GPU; and y in (-0.98945, -0.98594]
     (between the two versions of the 0|1 midpoint) gets code 1 on the CPU, 0 on the GPU. Its
     nearest-neighbour test is on fp32 distances rather than the kernel's fp32 midpoint: they can
     differ at exact midpoints (none in these goldens).
  f. Subnormals: the CPU does not flush them (an all-subnormal block gets absmax > 0 and codes 0/15
     where the kernel sees absmax 0 and codes 0), and a block with absmax > 2^126 keeps its
     subnormal reciprocal (the kernel's is 0, so every code is 7); likewise a 256-block of statistics
     whose absmax2 exceeds 2^126 (the kernel codes them all as the map's 0).
  g. dequantize_4bit of a shape whose last dimension is odd goes to the CPU's torch fallback, which
     rounds the 16 NF4 levels to the output dtype before multiplying (the C++ path and the GPU do not).
The goldens assert the CUDA rule everywhere; where (a)-(g) apply they differ from bitsandbytes-CPU,
and cpu_vs_cuda.json lists, per golden, what the CPU gave and which of (a)-(g) explains each difference.
Not reproduced (and stated in model/nf4.h): under --use_fast_math the GPU computes 1/absmax with the
approximate reciprocal (within 1 ulp); the fp32 reciprocal here is correctly rounded. That can matter
only where x * scale lands within an ulp of a threshold. rcp_sensitivity() tries every (value, absmax)
mantissa pair of bf16 and fp16 with the reciprocal one ulp off either way: no bf16 pair changes code
(so for bf16 weights, what QLoRA loads, the 4-bit codes do not depend on it); one fp16 pair does
(absmax 1.9287109, value -1.1777344: y = -0.6106329 against the 1|2 threshold). For fp32 weights and
for the 8-bit statistics (arbitrary fp32 values) a flip is possible but needs a value within an ulp of
a threshold or midpoint. None of this could be run on a GPU here.

Pinned versions: tools/reference/requirements-nf4.txt. Run from the repository root:
    python3 -m venv /tmp/bnbvenv && /tmp/bnbvenv/bin/pip install -r tools/reference/requirements-nf4.txt
    /tmp/bnbvenv/bin/python tools/reference/make_nf4_goldens.py
"""
import json
import math
import pathlib
from fractions import Fraction

import numpy as np
import torch
from safetensors.torch import save_file

import bitsandbytes
import bitsandbytes.functional as bnbf

OUT = pathlib.Path("tests/data/nf4")
f32 = np.float32
FLT_MIN = f32(1.1754943508222875e-38)

# The 16 NF4 levels (QLoRA's normal-float quantiles, as bitsandbytes lists them).
NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
                -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
                0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], dtype=f32)


def f32_of_literal(s):
    """The fp32 nearest to a decimal literal, as a C/CUDA compiler reads `s f` (np.float32(float(s)) rounds
    twice, through fp64, and is one ulp off for four of the thresholds below)."""
    x = Fraction(s)
    v = f32(float(s))
    cand = [v, np.nextafter(v, f32(-2)), np.nextafter(v, f32(2))]
    dist = [abs(Fraction(float(c)) - x) for c in cand]
    best = min(dist)
    ties = [c for c, d in zip(cand, dist) if d == best]
    return ties[0] if len(ties) == 1 else [c for c in ties if int(c.view(np.uint32)) % 2 == 0][0]


# The kernel's decision thresholds (fp32 literals in its dQuantizeNF4 tree), ascending: THRESH[k] lies
# between levels k and k+1 (each literal is the fp64 midpoint of the two levels).
THRESH_LITERALS = ("-0.8480964004993439", "-0.6106329262256622", "-0.4599952697753906", "-0.33967943489551544",
                   "-0.23460740596055984", "-0.13791173323988914", "-0.045525018125772476", "0.03979014977812767",
                   "0.1202552504837513", "0.2035212516784668", "0.2920137718319893", "0.3893125355243683",
                   "0.5016634166240692", "0.6427869200706482", "0.8614784181118011")
THRESH = np.array([f32_of_literal(s) for s in THRESH_LITERALS], dtype=f32)


def ftz(a):
    """Flushes subnormals to a zero of the same sign, as the kernels' fast-math operations do."""
    a = np.asarray(a, dtype=f32).copy()
    sub = np.abs(a) < FLT_MIN
    a[sub] = np.copysign(f32(0), a[sub])
    return a


def nf4_codes(y):
    """Code of each fp32 y: how many thresholds it exceeds (NaN exceeds none)."""
    with np.errstate(invalid="ignore"):
        return (y[:, None] > THRESH[None, :]).sum(axis=1).astype(np.uint8)


def recip(a):
    """1/a in fp32 as the fast-math kernel gets it (subnormal results flushed)."""
    with np.errstate(divide="ignore"):
        r = (f32(1) / a.astype(f32)).astype(f32)
    return ftz(r)


def dquantize8(code, y):
    """The 8-bit kernel's search: binary search over the sorted 256-entry map, then the midpoint test."""
    out = np.zeros(len(y), dtype=np.uint8)
    for j, x in enumerate(y.astype(f32)):
        pivot, upper_pivot, lower_pivot = 127, 255, 0
        lower, upper = f32(-1.0), f32(1.0)
        val = code[pivot]
        i = 64
        while i > 0:
            if x > val:
                lower_pivot, lower = pivot, val
                pivot += i
            else:
                upper_pivot, upper = pivot, val
                pivot -= i
            val = code[pivot]
            i >>= 1
        if upper_pivot == 255:
            upper = code[upper_pivot]
        if lower_pivot == 0:
            lower = code[lower_pivot]
        if x > val:
            out[j] = upper_pivot if x > f32((upper + val) * f32(0.5)) else pivot
        else:
            out[j] = lower_pivot if x < f32((lower + val) * f32(0.5)) else pivot
    return out


def cuda_offset(absmax):
    s = f32(math.fsum(float(v) for v in absmax))
    return f32(s * (f32(1) / f32(len(absmax))))


def cuda_quantize(x, code8):
    """x: fp32 values (the weight widened exactly). Returns the quantised state as the GPU writes it."""
    n = len(x)
    nb = -(-n // 64)
    xp = np.zeros(nb * 64, dtype=f32)
    xp[:n] = ftz(x)
    blocks = xp.reshape(nb, 64)
    absmax = np.zeros(nb, dtype=f32)
    for b in range(nb):
        valid = blocks[b, : min(64, n - 64 * b)]
        absmax[b] = np.fmax.reduce(np.abs(valid), initial=f32(0))
    scale = recip(absmax)
    with np.errstate(invalid="ignore", over="ignore"):
        y = (blocks * scale[:, None]).astype(f32).reshape(-1)
    codes = nf4_codes(y)
    packed = ((codes[0::2] << 4) | codes[1::2]).astype(np.uint8)[: (n + 1) // 2]
    offset = cuda_offset(absmax)
    st = ftz((absmax - offset).astype(f32))
    nb2 = -(-nb // 256)
    absmax2 = np.zeros(nb2, dtype=f32)
    q2 = np.zeros(nb, dtype=np.uint8)
    for b in range(nb2):
        seg = st[256 * b: 256 * (b + 1)]
        absmax2[b] = np.fmax.reduce(np.abs(seg), initial=f32(0))
        s2 = recip(absmax2[b: b + 1])[0]
        with np.errstate(invalid="ignore", over="ignore"):
            q2[256 * b: 256 * (b + 1)] = dquantize8(code8, (seg * s2).astype(f32))
    return dict(packed=packed, codes=codes[:n], absmax=absmax, offset=offset, absmax_q=q2, absmax2=absmax2)


def cuda_dequantize(packed, q2, absmax2, offset, code8, n):
    """Returns the fp32 products (before the output dtype's rounding)."""
    nb = len(q2)
    a = ftz((code8[q2] * absmax2[np.arange(nb) // 256]).astype(f32))
    a = (a + offset).astype(f32)
    codes = np.empty(2 * len(packed), dtype=np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 15
    return ftz((NF4[codes[:n]] * a[np.arange(n) // 64]).astype(f32))


def to_dtype(v32, dtype):
    return torch.from_numpy(v32.copy()).to(dtype)


def make_cases():
    g = torch.Generator().manual_seed(1234)

    def randn(n, std=0.02):
        return torch.randn(n, generator=g, dtype=torch.float32) * std

    cases = []
    for dt, tag in ((torch.bfloat16, "bf16"), (torch.float32, "f32")):
        for n in (1, 63, 64, 65, 130, 1022, 4096 + 17):
            cases.append((f"{tag}_n{n}", randn(n).to(dt)))
        zeros = torch.cat([randn(64), torch.zeros(64), randn(64)])
        cases.append((f"{tag}_zero_block", zeros.to(dt)))
        # An all-zero last block of odd length: its padding nibble is 0, not 7.
        cases.append((f"{tag}_zero_tail", torch.cat([randn(64), torch.zeros(33)]).to(dt)))
        cases.append((f"{tag}_huge_block", torch.cat([randn(64), randn(64, 1e30), randn(2)]).to(dt)))
        cases.append((f"{tag}_tiny_block", torch.cat([randn(64), randn(64, 1e-30), randn(2)]).to(dt)))
        signs = torch.tensor([(1 if i % 2 == 0 else -1) * (i + 1) / 128 for i in range(128)])
        cases.append((f"{tag}_mixed_signs", signs.to(dt)))
        # Every block with the same absmax: the statistics minus their mean are all 0 (absmax2 = 0).
        cases.append((f"{tag}_equal_absmax", (randn(256).sign() * 0.5).to(dt)))
    cases.append(("bf16_realistic_64x400", randn(64 * 400).to(torch.bfloat16)))  # 400 blocks: 2 stat blocks
    cases.append(("f16_n4113", randn(4096 + 17).to(torch.float16)))
    cases.append(("f16_n130", randn(130).to(torch.float16)))
    # Ties: absmax 1, every fp32 threshold and its two neighbours (rule a).
    vals = [1.0]
    for t in THRESH:
        vals += [float(t), float(np.nextafter(t, f32(-2))), float(np.nextafter(t, f32(2)))]
    vals += [float(v) for v in NF4]  # 62 values: one partial block with absmax 1
    cases.append(("f32_ties", torch.tensor(vals, dtype=torch.float32)))
    # Fast-math edges (rule f): an all-subnormal block, and a block whose absmax exceeds 2^126.
    sub = torch.tensor([(i % 7 - 3) * 1e-40 for i in range(64)], dtype=torch.float32)
    cases.append(("f32_subnormal_block", torch.cat([randn(64), sub])))
    cases.append(("f32_absmax_over_2p126", torch.cat([randn(64), randn(64, 1e38).clamp(-3e38, 3e38)])))
    return cases


def cpu_quantize(t):
    """bitsandbytes-CPU's own result, or the error it raises."""
    try:
        q, st = bnbf.quantize_4bit(t, blocksize=64, compress_statistics=True, quant_type="nf4",
                                   quant_storage=torch.uint8)
        raw, absmax = torch.ops.bitsandbytes.quantize_4bit.default(t, 64, "nf4", torch.uint8)
        return dict(packed=q.reshape(-1).numpy(), raw=raw.reshape(-1).numpy(), absmax=absmax.numpy(),
                    offset=f32(st.offset.item()), absmax_q=st.absmax.numpy(), absmax2=st.state2.absmax.numpy(),
                    code2=st.state2.code.numpy(), dequant=bnbf.dequantize_4bit(q, st).reshape(-1)), None
    except Exception as e:  # noqa: BLE001 - recorded, not hidden
        return None, f"{type(e).__name__}: {str(e).splitlines()[0]}"


def unpack(packed, n):
    c = np.empty(2 * len(packed), dtype=np.uint8)
    c[0::2] = packed >> 4
    c[1::2] = packed & 15
    return c[:n]


def explain_codes(name_of_case, x, dtype, ref, cpu, n):
    """Each 4-bit code where the CPU differs from the CUDA rule, with the rule (a, b, f) that explains it."""
    mine, theirs = ref["codes"], unpack(cpu["packed"], n)
    nb = -(-n // 64)
    scale = recip(ref["absmax"])
    notes = {}
    for i in np.nonzero(mine != theirs)[0]:
        b = i // 64
        y = f32(f32(x[i]) * scale[b])
        if y in TIE_VALUES:
            why = "a"
        elif dtype != torch.float32 and b == nb - 1 and n % 64:
            # The CPU's y: x times 1/absmax rounded to the input dtype, the product rounded again.
            s = torch.tensor([scale[b]]).to(dtype).float()
            yr = (torch.tensor([x[i]]) * s).to(dtype).float().clamp(-1, 1).numpy()
            assert nf4_codes(yr)[0] == theirs[i], (name_of_case, i, y, yr)
            why = "b"
        elif ref["absmax"][b] == 0 or ref["absmax"][b] > f32(2.0 ** 126):
            why = "f"
        else:
            raise AssertionError(f"unexplained 4-bit code difference at {i}: x={x[i]!r} y={y!r} "
                                 f"cuda={mine[i]} cpu={theirs[i]}")
        notes[why] = notes.get(why, 0) + 1
    return notes


def crosscheck(name, t, ref, code8):
    """Compares bitsandbytes-CPU with the CUDA rule; every difference must be one the docstring lists."""
    x = t.float().numpy()
    n = len(x)
    cpu, err = cpu_quantize(t)
    rep = {"n": n, "dtype": str(t.dtype)}
    if cpu is None or len(cpu["packed"]) != (n + 1) // 2:
        rep["cpu"] = err or f"{len(cpu['packed'])} packed bytes for {n} values"
        assert n % 2 == 1, (name, rep["cpu"])  # rule c is the only failure expected
        rep["differs_by"] = ["c"]
        return rep
    sub = np.abs(x[x != 0]).min(initial=np.inf) < FLT_MIN
    huge = bool((ref["absmax"] > f32(2.0 ** 126)).any())
    # First-level absmax: identical unless subnormals are involved (rule f).
    same_absmax = np.array_equal(cpu["absmax"], ref["absmax"])
    assert same_absmax or sub, name
    rep["codes_differ"] = explain_codes(name, x, t.dtype, ref, cpu, n)
    rep["offset_cpu"], rep["offset_cuda"] = float(cpu["offset"]), float(ref["offset"])
    # The 8-bit statistics, re-stated with the CPU's own inputs (its absmax, offset and map with
    # code[0] = -1): must reproduce the CPU's codes and absmax2 except at exact distance ties.
    code_cpu = code8.copy()
    code_cpu[0] = f32(-1.0)
    assert np.array_equal(cpu["code2"], code_cpu), name
    st = ftz((cpu["absmax"] - cpu["offset"]).astype(f32))
    nb = len(st)
    q2_diff = 0
    for b in range(-(-nb // 256)):
        seg = st[256 * b: 256 * (b + 1)]
        a2 = np.fmax.reduce(np.abs(seg), initial=f32(0))
        assert a2 == cpu["absmax2"][b], name
        with np.errstate(invalid="ignore", divide="ignore"):
            y = (seg * (f32(1) / a2)).astype(f32)
        mine = dquantize8(code_cpu, y)
        theirs = cpu["absmax_q"][256 * b: 256 * (b + 1)]
        for j in np.nonzero(mine != theirs)[0]:
            lo, hi = code_cpu[min(mine[j], theirs[j])], code_cpu[max(mine[j], theirs[j])]
            mid = f32((lo + hi) * f32(0.5))
            assert a2 == 0 or y[j] == mid or abs(y[j] - lo) == abs(hi - y[j]), (name, j, y[j])
            q2_diff += 1
    rep["stat_codes_differ_at_ties"] = q2_diff
    # Dequantisation, re-stated on the CPU's own state: must equal the CPU's output bit for bit
    # (the CPU's C++ dequantiser for an even last dimension; rule g otherwise).
    mine = cuda_dequantize(cpu["packed"], cpu["absmax_q"], cpu["absmax2"], cpu["offset"], code_cpu, n)
    mine = to_dtype(mine, t.dtype)
    assert torch.equal(mine.view(torch.int16 if t.dtype != torch.float32 else torch.int32),
                       cpu["dequant"].view(torch.int16 if t.dtype != torch.float32 else torch.int32)), name
    # So the CPU's result is the re-statement run on the CPU's own choices, and every difference from the
    # goldens comes from those choices: the codes (a, b, f), the offset (d), the map's code[0] (e).
    rep["packed_equal"] = bool(np.array_equal(cpu["packed"], ref["packed"]))
    rep["absmax_q_equal"] = bool(np.array_equal(cpu["absmax_q"], ref["absmax_q"]))
    rep["absmax2_equal"] = bool(np.array_equal(cpu["absmax2"], ref["absmax2"]))
    rep["offset_equal"] = bool(cpu["offset"] == ref["offset"])
    cuda_deq = to_dtype(cuda_dequantize(ref["packed"], ref["absmax_q"], ref["absmax2"], ref["offset"], code8, n),
                        t.dtype)
    rep["dequant_equal"] = bool(torch.equal(cuda_deq.float(), cpu["dequant"].float()))
    why = set(rep["codes_differ"])
    if not rep["offset_equal"]:
        why.add("d")
    if (cpu["absmax2"] != 0).any() and (cpu["absmax_q"] == 0).any() or not rep["absmax_q_equal"]:
        why.add("e")  # a statistic coded 0 dequantises differently, or the shifted 0|1 midpoint moved one
    if sub or huge:
        why.add("f")
    same = rep["packed_equal"] and rep["absmax_q_equal"] and rep["offset_equal"] and rep["dequant_equal"]
    assert same or why, name
    rep["differs_by"] = sorted(why) if not same else []
    return rep


def offset_at_scale():
    """Rule d on a 7B-sized matrix (4096 x 4096 bf16, N(0, 0.02)): torch's CPU mean against the GPU formula
    with an exact sum."""
    g = torch.Generator().manual_seed(7)
    w = (torch.randn(4096 * 4096, generator=g) * 0.02).to(torch.bfloat16)
    absmax = w.float().reshape(-1, 64).abs().max(dim=1).values
    cpu = f32(absmax.mean().item())
    cuda = cuda_offset(absmax.numpy())
    return {"blocks": len(absmax), "cpu_mean": float(cpu), "cuda_formula": float(cuda),
            "ulps_apart": int(abs(np.array([cpu]).view(np.int32)[0] - np.array([cuda]).view(np.int32)[0]))}


def threshold_sweep():
    """Rule a, checked: around every threshold, CPU argmin and kernel comparison differ only at T."""
    out = {}
    for k, t in enumerate(THRESH):
        v = [t]
        lo = hi = t
        for _ in range(200):
            lo, hi = np.nextafter(lo, f32(-2)), np.nextafter(hi, f32(2))
            v += [lo, hi]
        v = np.array(v, dtype=f32)
        cpu = np.argmin(np.abs(v[:, None] - NF4[None, :]), axis=1)
        d = np.sort(v[cpu != nf4_codes(v)])
        assert len(d) <= 2, k
        if len(d):
            out[f"{k}|{k + 1}"] = [float(x) for x in d]
    return out


TIE_VALUES = set()


def rcp_sensitivity():
    """For bf16 and fp16 weights: (value, absmax) pairs whose code could change if 1/absmax were off by an
    ulp either way (the GPU's reciprocal is approximate). Scale-free, so absmax in [1, 2) covers all."""
    res = {}
    for dt, mant in ((torch.bfloat16, 7), (torch.float16, 10)):
        a = (1 + np.arange(2 ** mant, dtype=np.float64) / 2 ** mant).astype(f32)
        # every |x| <= a with x of the same format, down to 2^-8 * a (below that the code is 7 regardless)
        xs = np.concatenate([(1 + np.arange(2 ** mant) / 2 ** mant) * 2.0 ** e for e in range(-9, 1)]).astype(f32)
        xs = np.concatenate([xs, -xs])
        flips = 0
        for av in a:
            s = f32(1) / av
            sel = xs[np.abs(xs) <= av]
            c0 = nf4_codes((sel * s).astype(f32))
            for s2 in (np.nextafter(s, f32(0)), np.nextafter(s, f32(2))):
                flips += int((nf4_codes((sel * s2).astype(f32)) != c0).sum())
        res[str(dt).replace("torch.", "")] = flips
    return res


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for vals in threshold_sweep().values():
        TIE_VALUES.update(f32(v) for v in vals)
    code8 = bnbf.create_dynamic_map(signed=True).numpy().astype(f32)
    assert code8[0] == f32(-0.99296875) and code8[255] == 1.0 and np.all(np.diff(code8) > 0)
    tensors = {"nf4_code": torch.from_numpy(NF4.copy()), "dynamic_code": torch.from_numpy(code8.copy())}
    report = {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__,
              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
              "rule_a_ties": threshold_sweep(), "rcp_ulp_sensitive_pairs": rcp_sensitivity(),
              "offset_7b_matrix": offset_at_scale(), "cases": {}}
    names = []
    for name, t in make_cases():
        x = t.float().numpy()
        ref = cuda_quantize(x, code8)
        deq32 = cuda_dequantize(ref["packed"], ref["absmax_q"], ref["absmax2"], ref["offset"], code8, len(x))
        report["cases"][name] = crosscheck(name, t, ref, code8)
        names.append(name)
        tensors[f"{name}.input"] = t.contiguous()
        tensors[f"{name}.packed"] = torch.from_numpy(ref["packed"].copy())
        tensors[f"{name}.absmax"] = torch.from_numpy(ref["absmax"].copy())
        tensors[f"{name}.absmax_q"] = torch.from_numpy(ref["absmax_q"].copy())
        tensors[f"{name}.absmax2"] = torch.from_numpy(ref["absmax2"].copy())
        tensors[f"{name}.offset"] = torch.tensor([ref["offset"]], dtype=torch.float32)
        tensors[f"{name}.dequant_f32"] = torch.from_numpy(deq32.copy())
        tensors[f"{name}.dequant"] = to_dtype(deq32, t.dtype)
    meta = {"format": "pt", "cases": ",".join(names), "bitsandbytes": bitsandbytes.__version__,
            "rule": "CUDA kernel (see tools/reference/make_nf4_goldens.py)"}
    save_file(tensors, str(OUT / "nf4_goldens.safetensors"), metadata=meta)
    # The dynamic map as C hex-float literals, for model/nf4.c's table (printed, checked by the test).
    print("dynamic map:", ", ".join(float(v).hex() for v in code8[:4]), "...")
    (OUT / "cpu_vs_cuda.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k != "cases"}, indent=1))
    for k, v in report["cases"].items():
        print(k, v)


if __name__ == "__main__":
    main()
