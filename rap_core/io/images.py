"""Opening pool images the way the model needs them: 8-bit RGB, never larger than needed.

Pools carry CMYK, palette, transparent, 16-bit and very large images; each is converted
(transparency onto white, 16-bit scaled to 8-bit) and shrunk to at most max_pixels before
the processor sees it, so a 50-megapixel scan never reaches the model whole.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") else max(float(values.max()), 1.0)
        img = Image.fromarray(np.clip(values / top * 255.0, 0, 255).astype(np.uint8), "L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def image_format(data: bytes) -> str:
    """The format of encoded image bytes ('png', 'jpeg', ...), checked without decoding the
    pixels; raises Pillow's error when they are not a whole, readable image."""
    with Image.open(io.BytesIO(data)) as img:
        img.verify()
        return (img.format or "png").lower()


def load_rgb(path: str, max_pixels: int | None = None) -> Image.Image:
    """The image at path as RGB, downscaled (aspect kept) to at most max_pixels."""
    with Image.open(path) as img:
        if max_pixels and img.width * img.height > max_pixels:
            scale = math.sqrt(max_pixels / (img.width * img.height))
            size = (max(1, int(img.width * scale)), max(1, int(img.height * scale)))
            img.draft("RGB", size)  # JPEG: decode at reduced size
            img = img.copy()
            img.thumbnail(size, Image.Resampling.BICUBIC)
        return _to_rgb(img)
