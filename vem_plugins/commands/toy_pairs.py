"""A small built-in paired dataset (edges -> shapes), so ``vem-plugins try`` needs no download.

Each pair is an "edges2shoes"-like example: B is a picture of one to three filled, outlined shapes
(ellipses, boxes, polygons) in random colours on a pale background, and A is B's edge map (dark
lines on white), found by PIL's edge filter. Pairs are written the way pix2pix-lineage code
reads "aligned" data: one PNG per pair, A on the left and B on the right, under
``<root>/train`` and ``<root>/val`` (the held-out split). Everything is drawn from one seeded
NumPy generator, so the same arguments give byte-identical files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps


def _shape(rng: np.random.Generator, size: int):
    """Picture B of one pair."""
    background = tuple(int(v) for v in rng.integers(215, 256, 3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        fill = tuple(int(v) for v in rng.integers(0, 200, 3))
        outline = tuple(c // 3 for c in fill)
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 4, size // 2 + 1, 2)
        box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
        kind = int(rng.integers(0, 3))
        if kind == 0:
            draw.ellipse(box, fill=fill, outline=outline, width=2)
        elif kind == 1:
            draw.rectangle(box, fill=fill, outline=outline, width=2)
        else:
            corners = int(rng.integers(3, 7))
            angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
            cx, cy, rx, ry = x0 + w / 2, y0 + h / 2, w / 2, h / 2
            points = [(float(cx + rx * np.cos(a)), float(cy + ry * np.sin(a))) for a in angles]
            draw.polygon(points, fill=fill, outline=outline, width=2)
    return image


def edges(picture: Image.Image) -> Image.Image:
    """Input A for picture B: its edges as dark lines on white, in RGB like edges2shoes."""
    found = picture.convert("L").filter(ImageFilter.FIND_EDGES)
    found = found.point(lambda v: 255 if v > 24 else 0)
    found.paste(0, (0, 0, found.width, 1))  # FIND_EDGES leaves the border as it was: clear it
    found.paste(0, (0, found.height - 1, found.width, found.height))
    found.paste(0, (0, 0, 1, found.height))
    found.paste(0, (found.width - 1, 0, found.width, found.height))
    return ImageOps.invert(found).convert("RGB")


def write(root: str | Path, train: int = 320, val: int = 32, size: int = 64,
          seed: int = 0) -> Path:
    """Write ``train`` + ``val`` aligned pairs of ``size`` px under ``root``; return ``root``.

    An existing complete dataset made with the same arguments is kept as it is.
    """
    if train < 1 or val < 1 or size < 16:
        raise ValueError(f"need at least one train and one val pair of >= 16 px, got "
                         f"train={train} val={val} size={size}")
    root = Path(root)
    stamp = root / "toy_pairs.txt"
    settings = f"train={train} val={val} size={size} seed={seed}\n"
    if stamp.exists() and stamp.read_text() == settings:
        return root
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("val", val)):
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        for i in range(count):
            b = _shape(rng, size)
            pair = Image.new("RGB", (2 * size, size))
            pair.paste(edges(b), (0, 0))
            pair.paste(b, (size, 0))
            pair.save(folder / f"{i:04d}.png")
    stamp.write_text(settings)
    return root
