"""Goldens for data/image.c: Pillow decoding and CLIPImageProcessor preprocessing, as LLaVA-1.5 runs them,
and SiglipImageProcessor preprocessing, as LLaVA-NeXT runs it for a SigLIP tower.

LLaVA-1.5 (llava/train/train.py) does, per image:
    image = Image.open(path).convert('RGB')
    if image_aspect_ratio == 'pad':                      # stage 2
        image = expand2square(image, tuple(int(x * 255) for x in processor.image_mean))
    pixel_values = processor.preprocess(image, return_tensors='pt')['pixel_values'][0]
with the CLIPImageProcessor of openai/clip-vit-large-patch14-336 (PREPROCESSOR_CONFIG below). This script
runs exactly that with pinned versions (tools/reference/requirements-image.txt) and records:

  tests/data/images/src/           the fixtures: real photographs (scikit-image, scikit-learn, matplotlib
                                   and Pillow sample images, some re-encoded into other formats and sizes),
                                   synthetic edge cases (1xN, Nx1, tiny, odd sizes, every PNG colour type and
                                   bit depth, GIF corner cases) and broken files (truncated, zero-size,
                                   decompression bombs, unsupported formats)
  tests/data/images/manifest.tsv   per fixture: CRC-32 of Pillow's decoded RGB, of pixels_u8 (S=336) in
                                   square and pad mode, or the error Pillow raises
  tests/data/images/golden/32/     pixels_u8 at S=32 of every fixture, both modes (PNG)
  tests/data/images/golden/336/    pixels_u8 at S=336 of a subset, both modes (PNG)
  tests/data/images/golden/pixel_values.safetensors
                                   CLIPImageProcessor's pixel_values (F32) at sampled positions, S=336
  tests/fuzz/corpus/image/         small seeds for the fuzz target
  tests/data/images/golden/siglip/ the same for SiglipImageProcessor (below): 32/ (every fixture, both modes),
                                   384/ (a subset), manifest.tsv (CRC-32 of pixels_u8 at S=384 of every
                                   decodable fixture and of the two procedural images, both modes) and
                                   pixel_values.safetensors (sampled pixel_values at S=384 for the CLIP
                                   samples' fixtures, same draws; rescale_normalize.lut: the F32 value of each
                                   u8, by the processor's own rescale and normalize)

pixels_u8 is the uint8 image the processor holds after its resize and center_crop (the same calls with the
same arguments that preprocess makes); the script checks that rescale + normalize of it reproduces the
processor's pixel_values bit for bit.

SigLIP (LLaVA-NeXT / LLaVA-OneVision with a SigLIP tower; --siglip writes only these, from the committed
fixtures and manifest, nothing fetched): the same three lines with transformers' SiglipImageProcessor configured
as google/siglip-so400m-patch14-384's published preprocessor_config.json (SIGLIP_PREPROCESSOR_CONFIG): do_resize
true, size {"height": 384, "width": 384}, resample 3 (BICUBIC), do_rescale true, rescale_factor 1/255
(0.00392156862745098), do_normalize true, image_mean [0.5, 0.5, 0.5], image_std [0.5, 0.5, 0.5]; S is the size
(32 or 384). So pad fills with int(0.5 * 255) = (127, 127, 127). In 4.46.3 preprocess is:
  - resize: image_transforms.resize to (S, S): the array goes back to a PIL image and Pillow's
    Image.resize((S, S), BICUBIC, reducing_gap=None) runs once on the whole image; both sides go to S, the
    aspect is not kept and nothing is cropped (the script checks it equals img.resize((S, S), BICUBIC));
  - rescale: (u8 as float64 * rescale_factor) cast to float32;
  - normalize: (x - float32(0.5)) / float32(0.5) in float32 (the division by 0.5 is exact).
That is the CLIP sequence; with mean = std = 0.5 it is float32(2 * float32(u8 / 255) - 1) (u8 * (1/255) and
u8 / 255 differ in float64 for 24 values of u8, never once rounded to float32), which is not the double
(u8/255 - 0.5)/0.5 rounded once: the two are 1 ulp apart for the 128 values u8 = 64..191. pixels_u8 is the
image after that resize; the same bit-for-bit check is made, and every pixel_values also equals the LUT
indexed by pixels_u8.

Where transformers would misread an image it is given: infer_channel_dimension_format takes an HxWx3 array
with H == 1 or H == 3 for channels-first. LLaVA would then produce a wrong tensor (H == 3) or crash (H == 1);
we pass input_data_format='channels_last' so that the goldens are the intended preprocessing. The same holds
for SiglipImageProcessor (geom_200x3.png comes out scrambled, geom_500x1.png raises in normalize).

Source images come from PyPI packages (pip download, nothing else is fetched). Run from the repository root:
    python tools/reference/make_image_goldens.py                  # writes the goldens above
    python tools/reference/make_image_goldens.py --siglip         # only golden/siglip/, from the committed src/
    python tools/reference/make_image_goldens.py --verify BUILD/llava [--all]
        compares `llava image` with Pillow + transformers live on the fixtures (with --all also on every
        JPEG/PNG/GIF of the source packages) and prints the agreement.
"""
import argparse
import io
import json
import os
import pathlib
import struct
import subprocess
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib

import numpy as np
import PIL
from PIL import Image

import transformers
from transformers import CLIPImageProcessor, SiglipImageProcessor
from transformers.image_transforms import resize
from transformers.image_utils import ChannelDimension, to_numpy_array

warnings.simplefilter("ignore")  # Pillow's DecompressionBombWarning, transformers' notices

ROOT = pathlib.Path("tests/data/images")
FUZZ = pathlib.Path("tests/fuzz/corpus/image")
SIZE = 336
SMALL = 32
SIGLIP_SIZE = 384

# openai/clip-vit-large-patch14-336 preprocessor_config.json
PREPROCESSOR_CONFIG = {
    "crop_size": 336,
    "do_center_crop": True,
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "CLIPFeatureExtractor",
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "size": 336,
}

# google/siglip-so400m-patch14-384 preprocessor_config.json (LLaVA-NeXT's / LLaVA-OneVision's SigLIP tower)
SIGLIP_PREPROCESSOR_CONFIG = {
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.5, 0.5, 0.5],
    "image_processor_type": "SiglipImageProcessor",
    "image_std": [0.5, 0.5, 0.5],
    "processor_class": "SiglipProcessor",
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"height": 384, "width": 384},
}

PACKAGES = {
    "skimage": ["scikit-image==0.24.0", "--only-binary", ":all:", "--python-version", "3.11", "--platform",
                "manylinux2014_x86_64"],
    "sklearn": ["scikit-learn==1.5.2", "--only-binary", ":all:", "--python-version", "3.11", "--platform",
                "manylinux2014_x86_64"],
    "matplotlib": ["matplotlib==3.9.2", "--only-binary", ":all:", "--python-version", "3.11", "--platform",
                   "manylinux2014_x86_64"],
    "pillow": ["pillow==11.0.0", "--no-binary", ":all:"],
}


# ---------------------------------------------------------------------------------------------------
# The reference pipeline

def processor(size):
    cfg = dict(PREPROCESSOR_CONFIG, size=size, crop_size=size)
    return CLIPImageProcessor.from_dict(cfg)


def expand2square(pil_img, background_color):  # llava/mm_utils.py
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result


def llava_aspect(rgb, proc, mode):
    """LLaVA's image_aspect_ratio: 'pad' pastes the image centred on a square of the processor's mean, each
    channel int(mean * 255) (truncated); 'square' leaves it to the processor."""
    if mode == "pad":
        return expand2square(rgb, tuple(int(x * 255) for x in proc.image_mean))
    return rgb


def reference(rgb, size, mode):
    """rgb: a PIL RGB image. Returns (pixels_u8 HWC uint8, pixel_values CHW float32)."""
    proc = processor(size)
    img = llava_aspect(rgb, proc, mode)
    pv = proc.preprocess(img, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
    # The processor's own resize and center_crop, as preprocess calls them, stopping before rescale.
    arr = to_numpy_array(img)
    arr = proc.resize(arr, size=proc.size, resample=proc.resample, input_data_format=ChannelDimension.LAST)
    arr = proc.center_crop(arr, size=proc.crop_size, input_data_format=ChannelDimension.LAST)
    assert arr.dtype == np.uint8 and arr.shape == (size, size, 3), arr.shape
    check_rescale_normalize(arr, pv, proc)
    return arr, pv


def check_rescale_normalize(arr, pv, proc):
    """rescale + normalize of pixels_u8 (HWC uint8) must be the processor's pixel_values (CHW), bit for bit:
    transformers' rescale is (u8 as float64 * rescale_factor) cast to float32, its normalize
    (x - float32(mean)) / float32(std) in float32."""
    mean = np.array(proc.image_mean, dtype=np.float32)
    std = np.array(proc.image_std, dtype=np.float32)
    again = ((arr.astype(np.float64) * proc.rescale_factor).astype(np.float32) - mean) / std
    assert again.dtype == np.float32 and pv.dtype == np.float32
    assert np.array_equal(again.transpose(2, 0, 1), pv), "pixels_u8 does not explain pixel_values"


def decode(path):
    with Image.open(path) as im:
        return im.convert("RGB")


def crc(a):
    return "%08x" % (zlib.crc32(np.ascontiguousarray(a).tobytes()) & 0xFFFFFFFF)


# ---------------------------------------------------------------------------------------------------
# Writers for what Pillow cannot write: every PNG colour type / bit depth, Adam7, GIF corner cases

def png_chunk(kind, data):
    c = struct.pack(">I", len(data)) + kind + data
    return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_pack_rows(a, depth):
    """a: (h, w, ch) integer samples -> filtered scanlines (filter 0)."""
    h, w, ch = a.shape
    out = bytearray()
    for y in range(h):
        out.append(0)
        row = a[y].reshape(-1)
        if depth == 16:
            out += row.astype(">u2").tobytes()
        elif depth == 8:
            out += row.astype(np.uint8).tobytes()
        else:
            per = 8 // depth
            vals = list(row.astype(int)) + [0] * ((-len(row)) % per)
            for i in range(0, len(vals), per):
                b = 0
                for v in vals[i:i + per]:
                    b = (b << depth) | v
                out.append(b)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(a, color_type, depth, palette=None, trns=None, interlace=False, idat_chunks=1):
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, _ = a.shape
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = a[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += png_pack_rows(sub, depth)
    else:
        raw = png_pack_rows(a, depth)
    z = zlib.compress(raw, 9)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0,
                                                                  1 if interlace else 0))
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    step = max(1, -(-len(z) // idat_chunks))
    for i in range(0, len(z), step):
        out += png_chunk(b"IDAT", z[i:i + step])
    return out + png_chunk(b"IEND", b"")


def lzw_literal(indices, min_code):
    """A valid GIF LZW stream that never grows its code size: literals with a clear code every
    clear-2 codes (the table never reaches the size where a decoder widens codes)."""
    clear = 1 << min_code
    size = min_code + 1
    codes = [clear]
    run = 0
    for v in indices:
        if run == clear - 2:
            codes.append(clear)
            run = 0
        codes.append(int(v))
        run += 1
    codes.append(clear + 1)
    bits = 0
    nbits = 0
    out = bytearray()
    for c in codes:
        bits |= c << nbits
        nbits += size
        while nbits >= 8:
            out.append(bits & 255)
            bits >>= 8
            nbits -= 8
    if nbits:
        out.append(bits & 255)
    return bytes(out)


def gif_sub_blocks(data, zero_block_after=None):
    out = bytearray()
    for i in range(0, len(data), 255):
        blk = data[i:i + 255]
        out.append(len(blk))
        out += blk
        if zero_block_after is not None and i == 0:
            out.append(0)  # a zero-length sub-block inside the image data (Pillow reads on)
    out.append(0)
    return bytes(out)


def gif_bytes(screen, frame, gct=None, lct=None, transparency=None, interlace=False, min_code=None,
              zero_block=False, junk_before_frame=b"", desc_wh=None, raw_data=None):
    """One-frame GIF: screen (w, h), frame = (x, y, indices[h][w]). desc_wh overrides the size the image
    descriptor states; raw_data replaces the LZW stream."""
    sw, sh = screen
    x0, y0, idx = frame
    idx = np.asarray(idx, dtype=np.uint8)
    fh, fw = idx.shape
    dw, dh = desc_wh if desc_wh is not None else (fw, fh)
    out = bytearray(b"GIF89a" + struct.pack("<HH", sw, sh))
    flags = 0
    if gct is not None:
        n = len(gct) // 3
        bits = max(1, (n - 1).bit_length())
        flags = 0x80 | (bits - 1)
        gct = bytes(gct) + b"\0" * (3 * (1 << bits) - len(gct))
    out += bytes([flags, 0, 0])
    if gct is not None:
        out += gct
    if transparency is not None:
        out += b"!\xf9\x04" + bytes([1]) + b"\0\0" + bytes([transparency]) + b"\0"
    out += b"!\xfe" + gif_sub_blocks(b"llava.c test image")  # a comment extension
    out += junk_before_frame
    lflags = 0x40 if interlace else 0
    if lct is not None:
        n = len(lct) // 3
        bits = max(1, (n - 1).bit_length())
        lflags |= 0x80 | (bits - 1)
        lct = bytes(lct) + b"\0" * (3 * (1 << bits) - len(lct))
    out += b"," + struct.pack("<HHHH", x0, y0, dw, dh) + bytes([lflags])
    if lct is not None:
        out += lct
    rows = list(range(fh))
    if interlace:
        rows = list(range(0, fh, 8)) + list(range(4, fh, 8)) + list(range(2, fh, 4)) + list(range(1, fh, 2))
    flat = idx[rows].reshape(-1)
    if min_code is None:
        min_code = max(2, int(flat.max()).bit_length() if flat.size else 2)
    out.append(min_code)
    data = raw_data if raw_data is not None else lzw_literal(flat, min_code)
    out += gif_sub_blocks(data, zero_block_after=0 if zero_block else None)
    out += b";"
    return bytes(out)


def jpeg_sof_offset(b):
    """Offset of the frame header (SOFn marker), walking the marker segments."""
    i = 2
    while i + 4 <= len(b):
        assert b[i] == 0xFF, i
        m = b[i + 1]
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            return i
        i += 2 + struct.unpack(">H", b[i + 2:i + 4])[0]
    raise ValueError("no SOF")


def pil_bytes(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


# ---------------------------------------------------------------------------------------------------
# Sources

def fetch_sources(cache):
    cache.mkdir(parents=True, exist_ok=True)
    got = {}
    for key, spec in PACKAGES.items():
        d = cache / key
        if not d.exists() or not any(d.iterdir()):
            d.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(d)] + spec,
                           check=True)
        got[key] = next(d.iterdir())
    members = {}

    def from_zip(path, prefix):
        with zipfile.ZipFile(path) as z:
            for n in z.namelist():
                if n.startswith(prefix) and not n.endswith("/"):
                    members[n] = z.read(n)

    from_zip(got["skimage"], "skimage/data/")
    from_zip(got["sklearn"], "sklearn/datasets/images/")
    from_zip(got["matplotlib"], "matplotlib/mpl-data/sample_data/")
    with tarfile.open(got["pillow"]) as t:
        for m in t.getmembers():
            if "/Tests/images/" in m.name and m.isfile() and m.name.count("/") == 3:
                members["pillow/" + m.name.split("/")[-1]] = t.extractfile(m).read()
    return members


def open_bytes(b):
    return Image.open(io.BytesIO(b)).convert("RGB")


def pattern(w, h, seed=0, noise=0):
    """A smooth pattern with sharp edges (compresses well), optionally with noise."""
    y, x = np.mgrid[0:h, 0:w]
    a = np.zeros((h, w, 3), dtype=np.int64)
    a[..., 0] = (x * 255) // max(1, w - 1)
    a[..., 1] = (y * 255) // max(1, h - 1)
    a[..., 2] = np.where(((x // 7) + (y // 5) + seed) % 2 == 0, 230, 20)
    if noise:
        rng = np.random.default_rng(1234 + seed)
        a = a + rng.integers(-noise, noise + 1, size=a.shape)
    return np.clip(a, 0, 255).astype(np.uint8)


def procedural(w, h):
    """The large image test_image.c builds in memory (same formula there)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    a = np.zeros((h, w, 3), dtype=np.uint8)
    for c in range(3):
        a[..., c] = ((x * (3 + c) + y * (5 + 2 * c) + (((x ^ y) & 255) * (c + 1) >> 2)) & 255).astype(np.uint8)
    return a


def build_fixtures(members):
    """name -> (bytes, kind, note, expect_error_word or None)."""
    fx = {}

    def add(name, data, kind, note, err=None):
        assert name not in fx, name
        fx[name] = (data, kind, note, err)

    # Real photographs, as shipped.
    originals = [
        ("sk_rocket.jpg", "skimage/data/rocket.jpg", "JPEG 640x427"),
        ("sk_moon.png", "skimage/data/moon.png", "gray PNG 512x512"),
        ("sk_coins.png", "skimage/data/coins.png", "gray PNG 384x303"),
        ("sk_page.png", "skimage/data/page.png", "gray PNG 384x191, photo of a page"),
        ("sk_text.png", "skimage/data/text.png", "gray PNG 448x172"),
        ("sk_clock_motion.png", "skimage/data/clock_motion.png", "gray PNG 400x300"),
        ("sk_microaneurysms.png", "skimage/data/microaneurysms.png", "gray PNG 102x102"),
        ("sk_no_time_for_that_tiny.gif", "skimage/data/no_time_for_that_tiny.gif", "animated GIF 14x25"),
        ("skl_china.jpg", "sklearn/datasets/images/china.jpg", "JPEG 640x427"),
        ("skl_flower.jpg", "sklearn/datasets/images/flower.jpg", "JPEG 640x427"),
        ("mpl_grace_hopper.jpg", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "JPEG 512x600"),
        ("pil_hopper.jpg", "pillow/hopper.jpg", "JPEG 128x128"),
        ("pil_hopper.png", "pillow/hopper.png", "PNG 128x128"),
        ("pil_hopper.gif", "pillow/hopper.gif", "GIF 128x128"),
        ("pil_hopper_gray.jpg", "pillow/hopper_gray.jpg", "grayscale JPEG"),
        ("pil_hopper_16bit_qtables.jpg", "pillow/hopper_16bit_qtables.jpg", "JPEG with 16-bit quantisation tables"),
        ("pil_hopper_orientation_6.jpg", "pillow/hopper_orientation_6.jpg", "EXIF orientation 6 (not applied)"),
        ("pil_flower.jpg", "pillow/flower.jpg", "JPEG 480x360"),
        ("pil_flower2.jpg", "pillow/flower2.jpg", "JPEG 300x225"),
        ("pil_exif_gps_typeerror.jpg", "pillow/exif_gps_typeerror.jpg", "JPEG 800x531"),
        ("pil_iptc.jpg", "pillow/iptc.jpg", "JPEG 640x480"),
        ("pil_sugarshack.mpo", "pillow/sugarshack.mpo", "MPO (two JPEGs) 640x480"),
        ("pil_app13-multiple.jpg", "pillow/app13-multiple.jpg", "progressive JPEG 256x160"),
        ("pil_exif-72dpi-int.jpg", "pillow/exif-72dpi-int.jpg", "JPEG 500x450"),
        ("pil_sample_cmyk.jpg", "pillow/pil_sample_cmyk.jpg", "CMYK JPEG (Adobe)"),
        ("pil_sample_rgb.jpg", "pillow/pil_sample_rgb.jpg", "JPEG 100x100"),
        ("pil_junk_jpeg_header.jpg", "pillow/junk_jpeg_header.jpg", "JPEG 1024x768 with junk before SOI"),
        ("pil_photoshop-200dpi.jpg", "pillow/photoshop-200dpi.jpg", "JPEG 200x200"),
        ("pil_tiff_adobe_deflate.png", "pillow/tiff_adobe_deflate.png", "PNG 278x374"),
    ]
    for name, key, note in originals:
        add(name, members[key], "photo", note)

    sk = {k: open_bytes(members["skimage/data/" + k]) for k in
          ["astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png", "motorcycle_right.png",
           "camera.png", "hubble_deep_field.jpg", "retina.jpg", "grass.png", "gravel.png", "brick.png",
           "ihc.png", "cell.png"]}
    big = open_bytes(members["pillow/fujifilm.mpo"])

    # Real photographs re-encoded: other formats, subsamplings, sizes.
    a, ch, co = sk["astronaut.png"], sk["chelsea.png"], sk["coffee.png"]
    ml, mr, cam = sk["motorcycle_left.png"], sk["motorcycle_right.png"], sk["camera.png"]
    add("astronaut_prog420.jpg", pil_bytes(a, "JPEG", quality=85, progressive=True, subsampling=2), "photo",
        "progressive JPEG 4:2:0 512x512")
    add("astronaut_p256.png", pil_bytes(a.resize((256, 256), Image.LANCZOS).quantize(256), "PNG"), "photo",
        "palette PNG 256 colours")
    rgba = a.crop((100, 40, 300, 190)).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    add("astronaut_rgba.png", pil_bytes(rgba, "PNG"), "photo", "RGBA PNG 200x150 (alpha dropped)")
    a16 = np.asarray(a.resize((96, 96), Image.LANCZOS)).astype(np.uint16) * 257
    a16 = a16 ^ (np.random.default_rng(1).integers(0, 256, a16.shape).astype(np.uint16))
    add("astronaut_rgb16.png", png_bytes(a16, 2, 16), "photo", "16-bit RGB PNG 96x96")
    add("astronaut_tiny40x30.png", pil_bytes(a.crop((180, 60, 260, 120)).resize((40, 30), Image.LANCZOS), "PNG"),
        "photo", "upscaled 40x30")
    add("chelsea_444.jpg", pil_bytes(ch, "JPEG", quality=90, subsampling=0), "photo", "JPEG 4:4:4 451x300")
    add("chelsea.gif", pil_bytes(ch.resize((225, 150), Image.LANCZOS), "GIF"), "photo", "GIF 225x150")
    add("chelsea_gray.png", pil_bytes(ch.convert("L").crop((0, 0, 300, 200)), "PNG"), "photo", "gray PNG 300x200")
    add("chelsea_adam7.png", png_bytes(np.asarray(ch.resize((150, 100), Image.LANCZOS)), 2, 8, interlace=True),
        "photo", "interlaced (Adam7) RGB PNG 150x100")
    add("coffee_422_odd.jpg", pil_bytes(co.crop((0, 0, 601, 399)).resize((301, 199), Image.LANCZOS), "JPEG",
                                        quality=88, subsampling=1), "photo", "JPEG 4:2:2 301x199")
    add("coffee_cmyk.jpg", pil_bytes(co.resize((300, 200), Image.LANCZOS).convert("CMYK"), "JPEG", quality=90),
        "photo", "CMYK JPEG 300x200")
    add("coffee_gray_prog.jpg", pil_bytes(co.convert("L"), "JPEG", quality=80, progressive=True), "photo",
        "grayscale progressive JPEG 600x400")
    add("coffee_strip600x40.jpg", pil_bytes(co.crop((0, 180, 600, 220)), "JPEG", quality=90), "photo",
        "wide strip 600x40")
    add("motorcycle_left.jpg", pil_bytes(ml, "JPEG", quality=80), "photo", "JPEG 741x500")
    add("motorcycle_strip30x500.png", pil_bytes(ml.crop((355, 0, 385, 500)), "PNG"), "photo",
        "tall strip 30x500")
    mg = np.asarray(mr.convert("L").resize((185, 125), Image.LANCZOS)).astype(np.uint16)
    add("motorcycle_gray16.png", png_bytes(mg * 257, 0, 16), "photo",
        "16-bit gray PNG (Pillow: I;16 -> RGB clips to 255)")
    add("motorcycle_gray16_low.png", png_bytes(mg, 0, 16), "photo", "16-bit gray PNG with values < 256")
    la = np.stack([np.asarray(cam.convert("L").resize((120, 80))).astype(np.uint16) * 257,
                   np.tile(np.arange(120, dtype=np.uint16) * 500, (80, 1))], axis=-1)
    add("camera_la16.png", png_bytes(la, 4, 16), "photo", "16-bit gray+alpha PNG")
    la8 = np.stack([np.asarray(cam.convert("L").resize((128, 128))), np.full((128, 128), 77, np.uint8)], axis=-1)
    add("camera_la8.png", png_bytes(la8, 4, 8), "photo", "8-bit gray+alpha PNG")
    cg = np.asarray(cam.convert("L").resize((128, 128), Image.LANCZOS)).astype(np.int64)
    add("camera_gray4.png", png_bytes(cg >> 4, 0, 4), "photo", "4-bit gray PNG")
    add("camera_gray2_adam7.png", png_bytes(cg >> 6, 0, 2, interlace=True), "photo", "2-bit gray interlaced PNG")
    add("camera_gray1.png", pil_bytes(cam.convert("L").resize((128, 128)).convert("1"), "PNG"), "photo",
        "1-bit PNG (dithered)")
    add("camera_graygif.gif", gif_bytes((128, 128), (0, 0, cg.astype(np.uint8)),
                                        gct=bytes(np.repeat(np.arange(256, dtype=np.uint8), 3))),
        "photo", "GIF with the identity grey palette (Pillow mode L)")
    add("hubble_crop.jpg", pil_bytes(sk["hubble_deep_field.jpg"].crop((0, 0, 640, 558)), "JPEG", quality=85),
        "photo", "JPEG 640x558")
    add("retina_705.jpg", pil_bytes(sk["retina.jpg"].resize((705, 705), Image.LANCZOS), "JPEG", quality=85),
        "photo", "JPEG 705x705")
    add("grass_q75.jpg", pil_bytes(sk["grass.png"].crop((0, 0, 256, 256)), "JPEG", quality=75), "photo",
        "texture JPEG 256x256")
    add("gravel_q75.jpg", pil_bytes(sk["gravel.png"].crop((100, 100, 357, 355)), "JPEG", quality=75), "photo",
        "texture JPEG 257x255")
    add("brick_q75.jpg", pil_bytes(sk["brick.png"].crop((0, 0, 200, 300)), "JPEG", quality=75), "photo",
        "texture JPEG 200x300")
    add("ihc_crop.jpg", pil_bytes(sk["ihc.png"].crop((0, 0, 512, 384)), "JPEG", quality=80), "photo",
        "microscopy JPEG 512x384")
    add("cell_crop.png", pil_bytes(sk["cell.png"].convert("L").crop((100, 100, 340, 300)), "PNG"), "photo",
        "gray PNG 240x200")
    add("fujifilm_1280x960.jpg", pil_bytes(big.resize((1280, 960), Image.LANCZOS), "JPEG", quality=60), "photo",
        "large JPEG 1280x960")
    add("fujifilm_tall_600x1400.jpg", pil_bytes(big.crop((1500, 0, 2100, 1400)), "JPEG", quality=60), "photo",
        "tall JPEG 600x1400")
    # OCR-VQA: GIF and PNG content under .jpg names.
    add("ocrvqa_gif_named.jpg", pil_bytes(ch.resize((180, 120), Image.LANCZOS), "GIF"), "photo",
        "GIF content, .jpg name")
    add("ocrvqa_png_named.jpg", pil_bytes(co.resize((150, 100), Image.LANCZOS), "PNG"), "photo",
        "PNG content, .jpg name")

    # Synthetic geometry: any size, any aspect ratio, up and down.
    for w, h in [(1, 1), (1, 2), (2, 1), (2, 3), (5, 7), (17, 9), (1, 500), (500, 1), (3, 200), (200, 3),
                 (1, 1000), (335, 336), (336, 335), (336, 336), (337, 337), (336, 1000), (1000, 336), (671, 335),
                 (1500, 7), (64, 64)]:
        noise = 40 if w * h <= 64 * 64 else 0
        add("geom_%dx%d.png" % (w, h), pil_bytes(Image.fromarray(pattern(w, h, seed=w + h, noise=noise)), "PNG"),
            "synthetic", "%dx%d pattern" % (w, h))
    noise = Image.fromarray(pattern(48, 40, seed=3, noise=120))
    add("noise_48x40_q95_420.jpg", pil_bytes(noise, "JPEG", quality=95), "synthetic", "noise JPEG 4:2:0")
    add("noise_17x9_444.jpg", pil_bytes(noise.crop((0, 0, 17, 9)), "JPEG", quality=95, subsampling=0), "synthetic",
        "tiny JPEG 4:4:4")
    add("noise_1x1.jpg", pil_bytes(noise.crop((0, 0, 1, 1)), "JPEG"), "synthetic", "1x1 JPEG")
    add("noise_33x1_prog.jpg", pil_bytes(noise.crop((0, 0, 33, 1)), "JPEG", progressive=True), "synthetic",
        "33x1 progressive JPEG")

    # PNG colour types and bit depths Pillow maps in its own way.
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 16, (20, 23))
    add("png_p4_short_plte.png", png_bytes(idx, 3, 4, palette=rng.integers(0, 256, (10, 3))), "synthetic",
        "4-bit palette with 10 entries: indices 10..15 are black")
    add("png_p1.png", png_bytes(idx & 1, 3, 1, palette=[[255, 0, 0], [0, 0, 255]]), "synthetic", "1-bit palette")
    add("png_p2_trns_adam7.png", png_bytes(idx & 3, 3, 2, palette=rng.integers(0, 256, (4, 3)), trns=b"\x00\x80",
                                           interlace=True), "synthetic", "2-bit palette, tRNS, interlaced")
    add("png_p8_trns.png", png_bytes(rng.integers(0, 256, (31, 29)), 3, 8, palette=rng.integers(0, 256, (256, 3)),
                                     trns=bytes(range(0, 256, 2))), "synthetic", "8-bit palette with tRNS")
    add("png_rgba16_adam7.png", png_bytes(rng.integers(0, 65536, (13, 11, 4)), 6, 16, interlace=True), "synthetic",
        "16-bit RGBA interlaced")
    add("png_rgb_trns.png", png_bytes(rng.integers(0, 256, (9, 9, 3)), 2, 8, trns=b"\0\1\0\2\0\3"), "synthetic",
        "RGB with tRNS")
    add("png_gray8_trns.png", png_bytes(rng.integers(0, 256, (9, 9)), 0, 8, trns=b"\0\7"), "synthetic",
        "gray with tRNS")
    add("png_gray16_mixed.png", png_bytes(rng.integers(0, 600, (16, 16)), 0, 16), "synthetic",
        "16-bit gray around 255 (I;16 -> RGB)")
    add("png_rgb_many_idat.png", png_bytes(pattern(40, 30, noise=30), 2, 8, idat_chunks=7), "synthetic",
        "RGB split over 7 IDAT chunks")

    # GIF corner cases (Pillow's first-frame rules).
    pal = bytes(rng.integers(0, 256, 16 * 3, dtype=np.uint8))
    gidx = rng.integers(0, 16, (21, 30)).astype(np.uint8)
    add("gif_offset_frame.gif", gif_bytes((50, 40), (7, 5, gidx), gct=pal), "synthetic",
        "frame at (7,5) inside a 50x40 screen: the rest is index 0")
    add("gif_offset_transparent.gif", gif_bytes((50, 40), (7, 5, gidx), gct=pal, transparency=3), "synthetic",
        "frame inside the screen, transparent index 3 fills the rest")
    add("gif_frame_outgrows_screen.gif", gif_bytes((20, 10), (5, 4, gidx), gct=pal), "synthetic",
        "frame larger than the logical screen: the canvas grows")
    add("gif_local_palette_interlaced.gif", gif_bytes((30, 21), (0, 0, gidx), gct=pal[:6],
                                                     lct=bytes(rng.integers(0, 256, 48, dtype=np.uint8)),
                                                     interlace=True), "synthetic",
        "local colour table, interlaced")
    add("gif_small_palette_big_indices.gif", gif_bytes((30, 21), (0, 0, gidx), gct=pal[:6], min_code=8),
        "synthetic", "2-colour palette, indices up to 15 (black), LZW code size 8")
    add("gif_no_palette.gif", gif_bytes((30, 21), (0, 0, gidx * 13)), "synthetic", "no colour table: mode L")
    add("gif_zero_subblock.gif", gif_bytes((30, 21), (0, 0, gidx), gct=pal, zero_block=True), "synthetic",
        "a zero-length sub-block inside the image data (Pillow reads on)")
    add("gif_junk_between_blocks.gif", gif_bytes((30, 21), (0, 0, gidx), gct=pal, junk_before_frame=b"\x01\x02xyz"),
        "synthetic", "stray bytes between blocks (Pillow skips them)")
    add("gif_zero_width_at_origin.gif",
        gif_bytes((6, 4), (0, 1, (np.arange(24) % 16).reshape(4, 6)), gct=pal, desc_wh=(0, 2)), "synthetic",
        "frame of width 0 at x=0: Pillow decodes into the whole screen")

    # Broken files: each must be an error (Pillow raises), never a crash.
    jpg = members["pillow/flower.jpg"]
    add("bad_truncated_half.jpg", jpg[:len(jpg) // 2], "error", "baseline JPEG cut in half", "truncated")
    add("bad_truncated_no_eoi.jpg", jpg[:-2], "error", "baseline JPEG without its EOI (Pillow: truncated)",
        "truncated")
    add("bad_truncated_prog.jpg", members["pillow/truncated_jpeg.jpg"], "error", "Pillow's truncated progressive",
        "truncated")
    add("bad_header_only.jpg", jpg[:200], "error", "JPEG header only", "truncated")
    png = fx["pil_hopper.png"][0]
    add("bad_truncated.png", png[:len(png) // 2], "error", "PNG cut inside IDAT", "truncated")
    add("bad_crc_ihdr.png", png[:29] + bytes([png[29] ^ 1]) + png[30:], "error", "bad IHDR CRC", "corrupt")
    add("bad_zero_width.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 1, 8, 0, 0, 0, 0)) +
        png_chunk(b"IDAT", zlib.compress(b"\0")) + png_chunk(b"IEND", b""), "error", "IHDR width 0", "zero")
    bomb = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0))
    add("bad_bomb_20000x20000.png", bomb + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""),
        "error", "400M pixels: decompression bomb", "limit")
    add("bad_bomb.gif", members["pillow/decompression_bomb.gif"], "error", "Pillow's GIF bomb", "limit")
    add("bad_zero_width.gif", members["pillow/zero_width.gif"], "error", "Pillow's zero-width GIF", "zero-size")
    gif = fx["pil_hopper.gif"][0]
    add("bad_truncated.gif", gif[:len(gif) // 2], "error", "GIF cut in its image data", "truncated")
    # codes clear, 1, 7 with 3-bit codes: 7 is past the next free table entry (6)
    add("bad_broken_lzw.gif", gif_bytes((4, 4), (0, 0, np.zeros((4, 4), np.uint8)), gct=pal, min_code=2,
                                        raw_data=bytes([0xCC, 0x01, 0x00, 0x00])), "error",
        "LZW code past the table", "corrupt")
    add("bad_empty.jpg", b"", "error", "empty file", "empty")
    add("bad_random.jpg", bytes(np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8)), "error",
        "random bytes", "not an image")
    # Formats Pillow reads and we do not: a clear per-sample error instead.
    add("unsupported_bmp_named.jpg", pil_bytes(Image.fromarray(pattern(8, 8)), "BMP"), "unsupported",
        "BMP content under a .jpg name", "unsupported")
    add("unsupported_webp_named.jpg", pil_bytes(Image.fromarray(pattern(8, 8)), "WEBP", lossless=True),
        "unsupported", "WebP content under a .jpg name", "unsupported")
    sof = jpeg_sof_offset(jpg)
    add("bad_12bit.jpg", jpg[:sof + 4] + b"\x0c" + jpg[sof + 5:], "error",
        "12-bit JPEG samples", "precision")
    return fx


# Fixtures whose full S=336 pixels_u8 and sampled pixel_values are committed.
FULL_336 = ["sk_rocket.jpg", "coffee_cmyk.jpg", "motorcycle_gray16.png", "geom_1x500.png", "geom_17x9.png",
            "geom_1000x336.png", "geom_335x336.png", "gif_offset_transparent.gif", "noise_1x1.jpg"]
PV_SAMPLES = ["sk_rocket.jpg", "coffee_cmyk.jpg", "geom_17x9.png", "noise_1x1.jpg", "chelsea.gif",
              "geom_1000x336.png"]
PROCEDURAL = [(4000, 3000), (3001, 4003)]
# Fixtures whose full S=384 SigLIP pixels_u8 are committed, small PNGs that still cover each axis scaled up or
# down independently: 1x1, 1x500 (x up, y down), 1500x7 (x down, y up), 336x335 (both up, by different
# factors), a colour and a grey photo scaled up; pad mode scales both down for the strips. Every fixture's
# S=384 CRC is in golden/siglip/manifest.tsv, and the photos' sampled pixel_values in its safetensors.
SIGLIP_FULL = ["noise_1x1.jpg", "geom_1x500.png", "geom_1500x7.png", "geom_336x335.png", "motorcycle_gray16.png",
               "pil_sample_rgb.jpg"]


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs = []
    off = 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32", np.dtype(np.uint8): "U8"}[a.dtype]
        b = a.tobytes()
        header[k] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def generate(args):
    members = fetch_sources(pathlib.Path(args.cache))
    fx = build_fixtures(members)
    for d in [ROOT / "src", ROOT / "golden" / str(SMALL), ROOT / "golden" / str(SIZE), FUZZ]:
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            f.unlink()
    rows = []
    pv_t = {}
    rng = np.random.default_rng(2024)
    for name, (data, kind, note, err) in fx.items():
        path = ROOT / "src" / name
        path.write_bytes(data)
        try:
            rgb = decode(path)
        except Exception as e:  # Pillow refuses it: so must we
            assert kind == "error", (name, e)
            msg = str(e).replace(str(path.resolve()), name).replace(str(path), name)
            rows.append([name, "error", "-", "-", "-", "-", "-", "-", err, "%s; Pillow: %s" % (note, msg[:80])])
            continue
        assert kind != "error", "%s: Pillow decodes it" % name
        if kind == "unsupported":
            rows.append([name, "unsupported", str(rgb.size[0]), str(rgb.size[1]), "-", "-", "-", "-", err,
                         "%s; Pillow decodes it" % note])
            continue
        dec = np.asarray(rgb)
        cells = [name, kind, str(rgb.size[0]), str(rgb.size[1]), crc(dec)]
        flags = []
        for mode in ("square", "pad"):
            u8, pv = reference(rgb, SIZE, mode)
            cells.append(crc(u8))
            if name in FULL_336:
                Image.fromarray(u8).save(ROOT / "golden" / str(SIZE) / ("%s.%s.png" % (name, mode)))
            if name in PV_SAMPLES:
                flat = pv.reshape(-1)
                pos = np.sort(rng.choice(flat.size, 2048, replace=False)).astype(np.int32)
                pv_t["%s.%s.index" % (name, mode)] = pos
                pv_t["%s.%s.value" % (name, mode)] = flat[pos].astype(np.float32)
            u8s, _ = reference(rgb, SMALL, mode)
            Image.fromarray(u8s).save(ROOT / "golden" / str(SMALL) / ("%s.%s.png" % (name, mode)), optimize=True)
        if name in FULL_336:
            flags.append("full336")
        if name in PV_SAMPLES:
            flags.append("pv")
        cells += [",".join(flags) or "-", "-", note]
        rows.append(cells)
        print("%-40s %5dx%-5d %s" % (name, rgb.size[0], rgb.size[1], note))
    for w, h in PROCEDURAL:
        rgb = Image.fromarray(procedural(w, h))
        cells = ["procedural_%dx%d" % (w, h), "procedural", str(w), str(h), crc(np.asarray(rgb))]
        for mode in ("square", "pad"):
            u8, _ = reference(rgb, SIZE, mode)
            cells.append(crc(u8))
        cells += ["-", "-", "built by test_image.c"]
        rows.append(cells)
        print("procedural %dx%d" % (w, h))
    write_safetensors(ROOT / "golden" / "pixel_values.safetensors", pv_t,
                      {"size": str(SIZE), "transformers": transformers.__version__, "pillow": PIL.__version__})
    head = ("# Written by tools/reference/make_image_goldens.py with Pillow %s, transformers %s, numpy %s.\n"
            "# CRC-32 (zlib) of: Pillow's decoded RGB (HxWx3), pixels_u8 at S=%d in square and pad mode (SxSx3).\n"
            "# name\tkind\twidth\theight\tdecoded_crc\tsquare_crc\tpad_crc\tflags\terror\tnote\n"
            % (PIL.__version__, transformers.__version__, np.__version__, SIZE))
    (ROOT / "manifest.tsv").write_text(head + "".join("\t".join(r) + "\n" for r in rows))

    # Fuzz seeds: small valid files of every kind, and a few broken ones.
    pal = bytes(rng.integers(0, 256, 48, dtype=np.uint8))
    seeds = {
        "baseline.jpg": pil_bytes(Image.fromarray(pattern(16, 12, noise=50)), "JPEG", quality=70),
        "progressive.jpg": pil_bytes(Image.fromarray(pattern(16, 16, noise=50)), "JPEG", progressive=True),
        "gray.jpg": pil_bytes(Image.fromarray(pattern(9, 7, noise=50)).convert("L"), "JPEG"),
        "cmyk.jpg": pil_bytes(Image.fromarray(pattern(8, 8, noise=50)).convert("CMYK"), "JPEG"),
        "rgb.png": png_bytes(pattern(7, 5, noise=50), 2, 8),
        "rgb16_adam7.png": png_bytes(rng.integers(0, 65536, (6, 5, 3)), 2, 16, interlace=True),
        "p2.png": png_bytes(rng.integers(0, 4, (5, 6)), 3, 2, palette=rng.integers(0, 256, (3, 3)), trns=b"\0"),
        "gray1.png": png_bytes(rng.integers(0, 2, (9, 9)), 0, 1),
        "la16.png": png_bytes(rng.integers(0, 65536, (4, 4, 2)), 4, 16),
        "rgba.png": png_bytes(rng.integers(0, 256, (4, 5, 4)), 6, 8),
        "frame.gif": gif_bytes((12, 10), (2, 3, rng.integers(0, 8, (5, 6))), gct=pal[:24], transparency=1),
        "interlaced.gif": gif_bytes((9, 11), (0, 0, rng.integers(0, 4, (11, 9))), lct=pal[:12], interlace=True),
        "pillow.gif": pil_bytes(Image.fromarray(pattern(10, 10, noise=60)), "GIF"),
    }
    for k, v in seeds.items():
        (FUZZ / k).write_bytes(v)
    for k in ["bad_truncated.gif", "bad_broken_lzw.gif", "bad_zero_width.png", "bad_bomb.gif",
              "gif_zero_width_at_origin.gif", "png_p4_short_plte.png", "noise_33x1_prog.jpg"]:
        data = fx[k][0]
        if len(data) <= 4096:
            (FUZZ / k).write_bytes(data)
    total = sum(f.stat().st_size for f in ROOT.rglob("*") if f.is_file())
    print("%d fixtures, %d bytes under %s" % (len(fx), total, ROOT))


# ---------------------------------------------------------------------------------------------------
# --siglip: SiglipImageProcessor (LLaVA-NeXT's SigLIP towers) on the committed fixtures

def siglip_processor(size):
    return SiglipImageProcessor.from_dict(dict(SIGLIP_PREPROCESSOR_CONFIG, size={"height": size, "width": size}))


def siglip_reference(rgb, size, mode):
    """rgb: a PIL RGB image. Returns (pixels_u8 HWC uint8, pixel_values CHW float32) of SiglipImageProcessor."""
    proc = siglip_processor(size)
    img = llava_aspect(rgb, proc, mode)
    pv = proc.preprocess(img, return_tensors="np", input_data_format="channels_last")["pixel_values"][0]
    # preprocess's own resize call (image_transforms.resize: to PIL, Image.resize, back), stopping before rescale.
    arr = to_numpy_array(img)
    arr = resize(arr, size=(proc.size["height"], proc.size["width"]), resample=proc.resample,
                 input_data_format=ChannelDimension.LAST)
    assert arr.dtype == np.uint8 and arr.shape == (size, size, 3), arr.shape
    # That is Pillow's one-pass resize of the whole image to SxS (reducing_gap None): no aspect kept, no crop.
    assert np.array_equal(arr, np.asarray(img.resize((size, size), Image.BICUBIC))), "not Pillow's resize"
    check_rescale_normalize(arr, pv, proc)
    return arr, pv


def siglip_lut(proc):
    """pixel_values of every u8 value, by the processor's own rescale and normalize (one 16x16x3 image)."""
    u8 = np.repeat(np.arange(256, dtype=np.uint8).reshape(16, 16, 1), 3, axis=2)
    x = proc.rescale(u8, scale=proc.rescale_factor, input_data_format=ChannelDimension.LAST)
    x = proc.normalize(x, mean=proc.image_mean, std=proc.image_std, input_data_format=ChannelDimension.LAST)
    lut = x[..., 0].reshape(256)
    assert x.dtype == np.float32 and all(np.array_equal(x[..., c].reshape(256), lut) for c in range(3))
    # With mean = std = 0.5 this is float32(2 * float32(u8 * (1/255 in float64)) - 1): dividing by 0.5 is exact.
    f = (np.arange(256, dtype=np.float64) * proc.rescale_factor).astype(np.float32)
    assert np.array_equal(lut, (f - np.float32(0.5)) / np.float32(0.5))
    assert np.array_equal(lut, np.float32(2) * f - np.float32(1))
    return lut


def committed_fixtures():
    """The fixtures as the manifest lists them (tests/data/images/src/): [(name, kind, width, height)]."""
    rows = []
    for line in (ROOT / "manifest.tsv").read_text().splitlines():
        if line and not line.startswith("#"):
            f = line.split("\t")
            rows.append((f[0], f[1], f[2], f[3]))
    return rows


def generate_siglip(args):
    out = ROOT / "golden" / "siglip"
    for d in [out / str(SMALL), out / str(SIGLIP_SIZE)]:
        d.mkdir(parents=True, exist_ok=True)
        for f in d.iterdir():
            f.unlink()
    lut = siglip_lut(siglip_processor(SIGLIP_SIZE))
    pv_t = {"rescale_normalize.lut": lut}
    rng = np.random.default_rng(2024)  # as the CLIP samples: same fixtures, same draws in manifest order
    rows = []
    n = {SMALL: 0, SIGLIP_SIZE: 0}
    for name, kind, w, h in committed_fixtures():
        if kind in ("error", "unsupported"):
            continue
        if kind == "procedural":
            rgb = Image.fromarray(procedural(int(w), int(h)))
        else:
            rgb = decode(ROOT / "src" / name)
        assert rgb.size == (int(w), int(h)), name
        cells = [name, w, h]
        for mode in ("square", "pad"):
            u8, pv = siglip_reference(rgb, SIGLIP_SIZE, mode)
            assert np.array_equal(lut[u8].transpose(2, 0, 1), pv), name
            cells.append(crc(u8))
            if name in SIGLIP_FULL:
                Image.fromarray(u8).save(out / str(SIGLIP_SIZE) / ("%s.%s.png" % (name, mode)), optimize=True)
                n[SIGLIP_SIZE] += 1
            if name in PV_SAMPLES:
                flat = pv.reshape(-1)
                pos = np.sort(rng.choice(flat.size, 2048, replace=False)).astype(np.int32)
                pv_t["%s.%s.index" % (name, mode)] = pos
                pv_t["%s.%s.value" % (name, mode)] = flat[pos].astype(np.float32)
            if kind != "procedural":
                u8s, _ = siglip_reference(rgb, SMALL, mode)
                Image.fromarray(u8s).save(out / str(SMALL) / ("%s.%s.png" % (name, mode)), optimize=True)
                n[SMALL] += 1
        flags = [f for f, on in (("full384", name in SIGLIP_FULL), ("pv", name in PV_SAMPLES)) if on]
        rows.append(cells + [",".join(flags) or "-"])
    assert all("%s.square.index" % k in pv_t for k in PV_SAMPLES) and n[SIGLIP_SIZE] == 2 * len(SIGLIP_FULL)
    write_safetensors(out / "pixel_values.safetensors", pv_t,
                      {"size": str(SIGLIP_SIZE), "processor": "SiglipImageProcessor",
                       "transformers": transformers.__version__, "pillow": PIL.__version__})
    head = ("# Written by tools/reference/make_image_goldens.py --siglip with Pillow %s, transformers %s, numpy %s.\n"
            "# SiglipImageProcessor as google/siglip-so400m-patch14-384 (pad colour %s). CRC-32 (zlib) of pixels_u8\n"
            "# at S=%d (SxSx3) in square and pad mode; kinds and decoded CRCs are in ../../manifest.tsv.\n"
            "# name\twidth\theight\tsquare_crc\tpad_crc\tflags\n"
            % (PIL.__version__, transformers.__version__, np.__version__,
               tuple(int(x * 255) for x in SIGLIP_PREPROCESSOR_CONFIG["image_mean"]), SIGLIP_SIZE))
    (out / "manifest.tsv").write_text(head + "".join("\t".join(r) + "\n" for r in rows))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print("SigLIP: %d images (%d procedural); PNGs: %d at S=%d, %d at S=%d; %d bytes under %s"
          % (len(rows), sum(r[0].startswith("procedural_") for r in rows), n[SMALL], SMALL, n[SIGLIP_SIZE],
             SIGLIP_SIZE, total, out))


# ---------------------------------------------------------------------------------------------------
# --verify: `llava image` against Pillow + transformers, live

def read_st(path):
    b = pathlib.Path(path).read_bytes()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        dt = {"U8": np.uint8, "F32": np.float32}[v["dtype"]]
        s, e = v["data_offsets"]
        out[k] = np.frombuffer(b[8 + n + s:8 + n + e], dtype=dt).reshape(v["shape"])
    return out


def verify(args):
    files = sorted((ROOT / "src").iterdir())
    if args.all:
        members = fetch_sources(pathlib.Path(args.cache))
        tmp = pathlib.Path(tempfile.mkdtemp(prefix="llava_image_verify_"))
        for k, v in members.items():
            if v[:3] == b"\xff\xd8\xff" or v[:8] == b"\x89PNG\r\n\x1a\n" or v[:4] == b"GIF8":
                p = tmp / k.replace("/", "__")
                p.write_bytes(v)
                files.append(p)
    stats = {}
    worst = []
    agree_err = disagree = 0
    out = pathlib.Path(tempfile.mkdtemp(prefix="llava_image_out_")) / "o.safetensors"
    for path in files:
        try:
            rgb = decode(path)
            ref_err = None
        except Exception as e:
            ref_err = str(e)
        for mode in ("square", "pad"):
            r = subprocess.run([args.verify, "image", "--aspect", mode, "--size", str(SIZE), str(path), "--out",
                                str(out), "--with-decoded"], capture_output=True, text=True)
            if ref_err or r.returncode:
                if ref_err and r.returncode:
                    agree_err += 1
                else:
                    disagree += 1
                    print("DISAGREE %s: Pillow %s, llava %s" % (path.name, "error: " + ref_err[:60] if ref_err
                                                               else "ok", r.stderr.strip()[:100] or "ok"))
                break
            o = read_st(out)
            u8, pv = reference(rgb, SIZE, mode)
            fmt = Image.open(path).format
            s = stats.setdefault(fmt, dict(n=0, values=0, same=0, maxd=0, pvmax=0.0, dec_same=0, dec_n=0))
            d = np.abs(o["pixels_u8"].astype(int) - u8.astype(int))
            s["n"] += 1
            s["values"] += d.size
            s["same"] += int((d == 0).sum())
            s["maxd"] = max(s["maxd"], int(d.max()))
            s["pvmax"] = max(s["pvmax"], float(np.abs(o["pixel_values"] - pv).max()))
            dec = np.asarray(rgb)
            s["dec_n"] += dec.size
            s["dec_same"] += int((o["decoded_u8"] == dec).sum()) if o["decoded_u8"].shape == dec.shape else 0
            if d.max():
                worst.append((int(d.max()), path.name, mode))
    tot = dict(n=0, values=0, same=0, maxd=0, pvmax=0.0, dec_same=0, dec_n=0)
    print("%-6s %6s %14s %10s %8s %10s %12s" % ("format", "runs", "u8 values", "identical", "max diff",
                                                 "pv max", "decoded same"))
    for fmt, s in sorted(stats.items()) + [("all", tot)]:
        if fmt != "all":
            for k in tot:
                tot[k] = max(tot[k], s[k]) if k in ("maxd", "pvmax") else tot[k] + s[k]
        print("%-6s %6d %14d %9.5f%% %8d %10.3g %11.5f%%" % (fmt, s["n"], s["values"], 100.0 * s["same"] / s["values"],
                                                           s["maxd"], s["pvmax"], 100.0 * s["dec_same"] / s["dec_n"]))
    print("files: %d; both refuse: %d; disagreements: %d" % (len(files), agree_err, disagree))
    for w in sorted(worst, reverse=True)[:10]:
        print("differs:", w)
    ok = tot["same"] >= 0.999 * tot["values"] and tot["maxd"] <= 1 and tot["pvmax"] <= 1e-6
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "llava_image_sources"),
                    help="where the downloaded source packages are kept")
    ap.add_argument("--verify", metavar="LLAVA_BIN", help="compare this llava executable with the reference")
    ap.add_argument("--all", action="store_true", help="with --verify: every image of the source packages too")
    ap.add_argument("--siglip", action="store_true",
                    help="only the SigLIP goldens (golden/siglip/), from the committed fixtures: nothing is fetched")
    args = ap.parse_args()
    print("Pillow %s, transformers %s, numpy %s" % (PIL.__version__, transformers.__version__, np.__version__))
    if args.verify:
        sys.exit(verify(args))
    if not args.siglip:
        generate(args)
    generate_siglip(args)


if __name__ == "__main__":
    main()
