"""Outlier images for outlier exposure: things that are neither selected class, split into disjoint kinds.

Two sources of outliers, each split once by a fixed rule into kinds seen in training and kinds held out
for evaluation (never both), so the false-pass rate measured on the held-out kinds is honest:
- the fine classes that are not selected (real CIFAR-100: already in the tarball; the synthetic source:
  the other vehicles, drawn): alternate classes in CIFAR's label order go to training and to evaluation;
- procedurally generated non-vehicle images: `TRAIN_KINDS` are used in training, `TEST_KINDS` (noise, flat
  colours, tiny images upscaled: what a confused user sends) only in evaluation.
Every image is a pure function of (seed, kind, index), like the synthetic vehicles.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from scones.data import cifar, synthetic
from scones.data.classes import FINE_LABELS

SIZE = synthetic.SIZE
MODES = ("auto", "none")
TRAIN_KINDS = ("scene", "shapes", "gradient", "texture", "blobs")  # generated, used in training
TEST_KINDS = ("noise", "flat", "tiny")  # generated, held out for evaluation only
GENERATED_PER_KIND = {"train": 500, "test": 100}
CLASS_IMAGES_CAP = {"train": 5000, "test": 1000}  # all unselected classes together, per split
CLASS_PER_KIND = {"train": 500, "test": 100}  # at most, per unselected class
RULE = (
    "unselected fine classes in CIFAR label order alternate train/test (1st, 3rd, … train); generated kinds "
    f"{', '.join(TRAIN_KINDS)} train, {', '.join(TEST_KINDS)} test"
)


@dataclass
class OutlierSet:
    kinds: list[str]  # the .lst label indexes this list
    images: np.ndarray  # N×32×32×3 uint8
    labels: np.ndarray  # N int, index into kinds
    names: list[str]  # file names


def split_classes(unselected: list[str]) -> tuple[list[str], list[str]]:
    """The fixed train/test split of the unselected fine classes: alternate in CIFAR label order."""
    ordered = sorted(unselected, key=FINE_LABELS.index)
    return ordered[0::2], ordered[1::2]


# --- generated kinds ---------------------------------------------------------------------------------


def _rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    h, s, v = rng.random(), rng.uniform(0.0, 1.0), rng.uniform(0.05, 1.0)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def _finish(image: Image.Image, rng: np.random.Generator, noise: bool = True) -> np.ndarray:
    small = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float32)
    if noise:  # mostly mild sensor noise; a third of the images heavily degraded (a noisy photo is no vehicle)
        sigma = rng.uniform(0, 10) if rng.random() < 0.67 else rng.uniform(10, 80)
        grain = (SIZE, SIZE, 3) if rng.random() < 0.5 else (SIZE, SIZE, 1)  # colour or luminance grain
        small = small + rng.normal(0, sigma, grain)
    return np.clip(small, 0, 255).astype(np.uint8)


def _scene(rng: np.random.Generator) -> np.ndarray:
    """The synthetic set's own backgrounds and clutter, with no vehicle in them: the hardest negatives."""
    big = SIZE * synthetic.SCALE
    image = synthetic._background(rng, big)
    small = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.float32)
    small = small * rng.uniform(0.6, 1.3) + rng.uniform(-40, 40)
    small += rng.normal(0, rng.uniform(2, 14), small.shape)
    return np.clip(small, 0, 255).astype(np.uint8)


def _shapes(rng: np.random.Generator) -> np.ndarray:
    big = SIZE * 4
    image = Image.new("RGB", (big, big), _rgb(rng))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 12))):
        n = int(rng.integers(3, 7))
        centre, radius = rng.uniform(0, big, 2), rng.uniform(big * 0.05, big * 0.6)
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        points = [(centre[0] + radius * math.cos(a), centre[1] + radius * math.sin(a)) for a in angles]
        if rng.random() < 0.3:
            draw.line(points, fill=_rgb(rng), width=int(rng.integers(2, 16)))
        else:
            draw.polygon(points, fill=_rgb(rng))
    return _finish(image, rng)


def _gradient(rng: np.random.Generator) -> np.ndarray:
    a, b = np.array(_rgb(rng), np.float32), np.array(_rgb(rng), np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    if rng.random() < 0.5:  # linear, any direction
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
    else:  # radial
        cx, cy = rng.uniform(-0.2, 1.2, 2)
        t = np.hypot(xx - cx, yy - cy)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = a * (1 - t[..., None]) + b * t[..., None]
    return np.clip(image + rng.normal(0, rng.uniform(0, 8), image.shape), 0, 255).astype(np.uint8)


def _texture(rng: np.random.Generator) -> np.ndarray:
    """Stripes, checkers or dots at a random period and angle."""
    big = SIZE * 2
    yy, xx = np.mgrid[0:big, 0:big].astype(np.float32)
    angle, period = rng.uniform(0, math.pi), rng.uniform(3, 24)
    u = xx * math.cos(angle) + yy * math.sin(angle)
    v = -xx * math.sin(angle) + yy * math.cos(angle)
    pattern = int(rng.integers(0, 3))
    if pattern == 0:
        mask = np.sin(2 * math.pi * u / period) > rng.uniform(-0.5, 0.5)
    elif pattern == 1:
        mask = (np.floor(u / period) + np.floor(v / period)) % 2 == 0
    else:
        mask = np.hypot((u % period) - period / 2, (v % period) - period / 2) < period * rng.uniform(0.15, 0.45)
    a, b = np.array(_rgb(rng), np.float32), np.array(_rgb(rng), np.float32)
    image = np.where(mask[..., None], a, b).astype(np.uint8)
    return _finish(Image.fromarray(image), rng)


def _blobs(rng: np.random.Generator) -> np.ndarray:
    """Low-frequency colour noise: a few random pixels blown up with bicubic and blurred."""
    cells = int(rng.integers(3, 12))
    grid = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
    image = Image.fromarray(grid).resize((SIZE * 2, SIZE * 2), Image.Resampling.BICUBIC)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 3)))
    return _finish(image, rng)


def _noise(rng: np.random.Generator) -> np.ndarray:
    """Uniform noise, colour or grey, drawn at 32 to 256 px and resized as the endpoint resizes."""
    side = int(rng.choice([32, 32, 64, 128, 256]))
    shape = (side, side, 3) if rng.random() < 0.5 else (side, side, 1)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8).repeat(3 // shape[2], axis=2)
    image = Image.fromarray(pixels)
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR) if side != SIZE else image)


def _flat(rng: np.random.Generator) -> np.ndarray:
    return np.full((SIZE, SIZE, 3), _rgb(rng), dtype=np.uint8)


def _tiny(rng: np.random.Generator) -> np.ndarray:
    """A 1×1 to 4×4 image upscaled to 32×32 as the endpoint upscales it."""
    side = int(rng.integers(1, 5))
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BILINEAR))


GENERATORS = {
    "scene": _scene,
    "shapes": _shapes,
    "gradient": _gradient,
    "texture": _texture,
    "blobs": _blobs,
    "noise": _noise,
    "flat": _flat,
    "tiny": _tiny,
}
assert set(GENERATORS) == set(TRAIN_KINDS) | set(TEST_KINDS) and not set(TRAIN_KINDS) & set(TEST_KINDS)


def draw(kind: str, seed: int, index: int) -> np.ndarray:
    """One 32×32×3 uint8 image of a generated kind: a pure function of (kind, seed, index)."""
    rng = np.random.default_rng([seed, 1000 + list(GENERATORS).index(kind), index])
    return GENERATORS[kind](rng)


# --- assembling the two outlier splits ----------------------------------------------------------------


def _class_images(
    data: cifar.Cifar | None, split: str, name: str, n: int, seed: int
) -> tuple[list[np.ndarray], list[str]]:
    """Up to n images of an unselected fine class: from the tarball's split, or drawn (synthetic source)."""
    if data is None:
        offset = 0 if split == "train" else 1_000_000  # never the images a staging of this class would hold
        images = [synthetic.draw_image(name, seed, offset + i) for i in range(n)]
        return images, [f"{name}_s_{offset + i:07d}.png" for i in range(n)]
    part = getattr(data, split)
    rows = np.flatnonzero(part.fine_labels == data.fine_label_names.index(name))[:n]
    return [part.images[r] for r in rows], [f"{name}_{part.filenames[r].removesuffix('.png')}_{r}.png" for r in rows]


def build(
    classes: list[str], data: cifar.Cifar | None, seed: int = 0, limit: dict[str, int] | None = None
) -> dict[str, OutlierSet]:
    """The training and the held-out outlier sets for a selection of `classes`.

    `data` is the parsed tarball whose unselected fine classes become outliers; None for the synthetic source,
    whose unselected vehicles are drawn. `limit` caps images per kind for each split ("train", "test"); staging
    passes the fewest images of a selected class, so a small staging gets small outlier sets.
    """
    limit = limit or {}
    if data is None:
        available = [c for c in synthetic.VEHICLES if c not in classes]
    else:
        present = {data.fine_label_names[i] for i in np.unique(data.train.fine_labels)}
        present &= {data.fine_label_names[i] for i in np.unique(data.test.fine_labels)}
        available = [c for c in data.fine_label_names if c in present and c not in classes and c in FINE_LABELS]
    class_split = dict(zip(("train", "test"), split_classes(available), strict=True))
    sets = {}
    for split, generated in (("train", TRAIN_KINDS), ("test", TEST_KINDS)):
        kinds, images, labels, names = [], [], [], []
        chosen = class_split[split]
        cap = limit.get(split, CLASS_IMAGES_CAP[split])
        per_class = min(CLASS_PER_KIND[split], CLASS_IMAGES_CAP[split] // max(1, len(chosen)), cap)
        for name in chosen:
            found, files = _class_images(data, split, name, per_class, seed)
            if found:
                labels += [len(kinds)] * len(found)
                kinds.append(name)
                images += found
                names += files
        for kind in generated:
            n = min(GENERATED_PER_KIND[split], cap)
            offset = 0 if split == "train" else 1_000_000
            labels += [len(kinds)] * n
            kinds.append(kind)
            images += [draw(kind, seed, offset + i) for i in range(n)]
            names += [f"{kind}_{offset + i:07d}.png" for i in range(n)]
        sets[split] = OutlierSet(kinds, np.stack(images), np.array(labels, dtype=np.int64), names)
    return sets
