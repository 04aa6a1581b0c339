"""An offline stand-in for CIFAR-100's vehicle classes, written in the exact CIFAR-100 python format.

Each image is a procedurally drawn vehicle (10 shapes, one per vehicle class) with random colour,
pose (scale, rotation, mirror), position, a cluttered background and pixel noise, drawn at 4× and
downsampled to 32×32 so edges are soft like CIFAR's. Image i of class c under seed s is a pure function of
(s, c, i): the same seed gives the same tarball, byte for byte.
"""

from __future__ import annotations

import colorsys
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from scones.core.progress import Progress
from scones.data import cifar
from scones.data.classes import COARSE_LABELS, COARSE_OF, FINE_LABELS, VEHICLES

SIZE = 32
SCALE = 4  # drawn at 128×128, then downsampled
DEFAULT_TRAIN_PER_CLASS = 500
DEFAULT_TEST_PER_CLASS = 100


class Canvas:
    """Draws in a vehicle's own frame (x right, y up, roughly [-1, 1]) under a random similarity transform."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, scale: float, angle: float, mirror: bool):
        self.draw = draw
        self.cx, self.cy, self.scale = cx, cy, scale
        self.cos, self.sin = math.cos(angle), math.sin(angle)
        self.mirror = -1.0 if mirror else 1.0

    def pt(self, x: float, y: float) -> tuple[float, float]:
        x *= self.mirror
        rx, ry = x * self.cos - y * self.sin, x * self.sin + y * self.cos
        return self.cx + rx * self.scale, self.cy - ry * self.scale

    def px(self, length: float) -> int:
        return max(1, round(length * self.scale))

    def poly(self, pts, fill) -> None:
        self.draw.polygon([self.pt(x, y) for x, y in pts], fill=fill)

    def rect(self, x0, y0, x1, y1, fill) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def line(self, pts, fill, width: float) -> None:
        self.draw.line([self.pt(x, y) for x, y in pts], fill=fill, width=self.px(width), joint="curve")

    def circle(self, x, y, r, fill=None, outline=None, width: float = 0.0) -> None:
        cx, cy = self.pt(x, y)
        rr = r * self.scale
        self.draw.ellipse(
            [cx - rr, cy - rr, cx + rr, cy + rr], fill=fill, outline=outline, width=self.px(width) if outline else 0
        )


def _colour(rng: np.random.Generator, light: tuple[float, float] = (0.2, 0.95)) -> tuple[int, int, int]:
    h, s, v = rng.random(), rng.uniform(0.2, 1.0), rng.uniform(*light)
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))


def _shade(c: tuple[int, int, int], f: float) -> tuple[int, int, int]:
    return tuple(int(max(0, min(255, v * f))) for v in c)


def _dark(rng: np.random.Generator) -> tuple[int, int, int]:
    v = int(rng.integers(10, 70))
    return (v, v, v + int(rng.integers(0, 15)))


def _glass(rng: np.random.Generator) -> tuple[int, int, int]:
    return (int(rng.integers(120, 200)), int(rng.integers(160, 220)), int(rng.integers(190, 250)))


# --- the ten vehicles ------------------------------------------------------------------------------------


def bicycle(c: Canvas, rng) -> None:
    frame, tyre = _colour(rng), _dark(rng)
    w = rng.uniform(0.035, 0.06)
    for x in (-0.62, 0.62):
        c.circle(x, -0.3, 0.36, outline=tyre, width=w * 1.6)
        for a in np.linspace(0, math.pi, 4, endpoint=False):
            c.line(
                [
                    (x - 0.33 * math.cos(a), -0.3 - 0.33 * math.sin(a)),
                    (x + 0.33 * math.cos(a), -0.3 + 0.33 * math.sin(a)),
                ],
                (170, 170, 170),
                0.012,
            )
    seat, crank, head = (-0.2, 0.32), (0.0, -0.3), (0.45, 0.3)
    c.line([(-0.62, -0.3), seat, crank, (-0.62, -0.3)], frame, w)
    c.line([seat, head, crank], frame, w)
    c.line([head, (0.62, -0.3)], frame, w)
    c.line([(-0.3, 0.4), (-0.08, 0.4)], _dark(rng), 0.06)  # saddle
    c.line([head, (0.42, 0.48), (0.6, 0.5)], frame, w)  # stem and bar


def motorcycle(c: Canvas, rng) -> None:
    body, tyre = _colour(rng), _dark(rng)
    for x in (-0.62, 0.62):
        c.circle(x, -0.35, 0.32, fill=tyre)
        c.circle(x, -0.35, 0.15, fill=(150, 150, 150))
    c.line([(0.62, -0.35), (0.42, 0.3)], (120, 120, 120), 0.08)  # fork
    c.rect(-0.2, -0.38, 0.2, -0.08, (100, 100, 105))  # engine
    c.line([(-0.1, -0.35), (-0.75, -0.2)], (185, 185, 190), 0.06)  # exhaust
    c.poly([(-0.55, -0.05), (-0.3, 0.25), (0.35, 0.3), (0.55, 0.05), (0.25, -0.15), (-0.3, -0.15)], body)
    c.poly([(-0.6, 0.2), (-0.05, 0.32), (-0.05, 0.42), (-0.55, 0.32)], _dark(rng))  # seat
    c.line([(0.42, 0.3), (0.45, 0.55), (0.3, 0.62)], (60, 60, 60), 0.05)  # handlebar
    if rng.random() < 0.5:  # a rider
        rider = _colour(rng)
        c.line([(-0.25, 0.35), (-0.05, 0.85)], rider, 0.16)
        c.line([(-0.05, 0.8), (0.35, 0.6)], rider, 0.08)
        c.circle(-0.02, 0.98, 0.13, fill=_colour(rng))


def bus(c: Canvas, rng) -> None:
    body, glass = _colour(rng), _glass(rng)
    c.rect(-1.0, -0.3, 1.0, 0.45, body)
    for i in range(int(rng.integers(4, 7))):
        x0 = -0.9 + i * 0.3
        if x0 + 0.22 < 0.75:
            c.rect(x0, 0.1, x0 + 0.22, 0.36, glass)
    c.rect(0.78, -0.2, 0.95, 0.36, glass)  # windscreen / door
    c.rect(-1.0, -0.12, 1.0, -0.06, _shade(body, 0.6))
    for x in (-0.6, 0.55):
        c.circle(x, -0.32, 0.15, fill=_dark(rng))


def pickup_truck(c: Canvas, rng) -> None:
    body = _colour(rng)
    c.rect(-0.95, -0.25, 0.1, 0.05, body)  # bed
    c.rect(-0.95, 0.05, -0.9, 0.12, _shade(body, 0.7))  # tailgate lip
    c.rect(0.1, -0.25, 0.62, 0.38, body)  # cab
    c.poly([(0.62, -0.25), (1.0, -0.25), (1.0, 0.08), (0.62, 0.14)], body)  # hood
    c.poly([(0.2, 0.1), (0.5, 0.1), (0.58, 0.32), (0.2, 0.32)], _glass(rng))
    for x in (-0.6, 0.62):
        c.circle(x, -0.3, 0.2, fill=_dark(rng))
        c.circle(x, -0.3, 0.08, fill=(160, 160, 160))


def train(c: Canvas, rng) -> None:
    body, glass = _colour(rng), _glass(rng)
    c.line([(-1.2, -0.36), (1.2, -0.36)], (90, 80, 70), 0.04)  # rail
    for x0, x1 in ((-1.15, -0.05), (0.03, 1.1)):
        c.rect(x0, -0.25, x1, 0.3, body)
        for i in range(3):
            wx = x0 + 0.1 + i * 0.33
            if wx + 0.2 < x1:
                c.rect(wx, 0.05, wx + 0.2, 0.22, glass)
        for wx in (x0 + 0.15, x0 + 0.35, x1 - 0.35, x1 - 0.15):
            c.circle(wx, -0.28, 0.08, fill=_dark(rng))
    c.poly([(1.1, -0.25), (1.25, -0.25), (1.1, 0.3)], _shade(body, 0.8))  # nose


def lawn_mower(c: Canvas, rng) -> None:
    body = _colour(rng)
    c.poly([(-0.45, -0.3), (0.5, -0.3), (0.45, 0.02), (-0.4, 0.02)], body)  # deck
    c.rect(-0.15, 0.02, 0.2, 0.22, (70, 70, 75))  # engine
    c.circle(0.02, 0.26, 0.08, fill=(40, 40, 40))
    c.line([(-0.35, 0.0), (-0.95, 0.8)], (110, 110, 115), 0.06)  # handle
    c.line([(-1.05, 0.72), (-0.85, 0.9)], _dark(rng), 0.08)  # grip
    c.poly([(-0.95, -0.28), (-0.45, -0.28), (-0.45, 0.05), (-0.95, 0.1)], _colour(rng))  # grass bag
    for x in (-0.3, 0.35):
        c.circle(x, -0.32, 0.12, fill=_dark(rng))


def rocket(c: Canvas, rng) -> None:
    body, trim = _colour(rng, (0.7, 1.0)), _colour(rng)
    c.poly(
        [(-0.14, -0.7), (0.14, -0.7), (0.05, -1.0), (0.0, -1.15), (-0.05, -1.0)], (255, int(rng.integers(120, 220)), 30)
    )
    c.rect(-0.16, -0.65, 0.16, 0.5, body)
    c.poly([(-0.16, 0.5), (0.16, 0.5), (0.0, 0.92)], trim)  # nose
    c.poly([(-0.16, -0.65), (-0.42, -0.75), (-0.16, -0.25)], trim)  # fins
    c.poly([(0.16, -0.65), (0.42, -0.75), (0.16, -0.25)], trim)
    c.circle(0.0, 0.2, 0.07, fill=_glass(rng))


def streetcar(c: Canvas, rng) -> None:
    body, glass = _colour(rng), _glass(rng)
    c.line([(-1.2, 0.85), (1.2, 0.85)], (60, 60, 60), 0.025)  # overhead wire
    c.line([(-0.1, 0.4), (0.15, 0.62), (-0.05, 0.85)], (50, 50, 50), 0.03)  # pantograph
    c.line([(-1.2, -0.36), (1.2, -0.36)], (90, 80, 70), 0.04)
    c.rect(-1.0, -0.25, 1.0, 0.4, body)
    c.rect(-1.0, 0.05, 1.0, 0.3, _shade(body, 1.25))
    for i in range(5):
        x0 = -0.92 + i * 0.38
        c.rect(x0, 0.08, x0 + 0.28, 0.28, glass)
    for x in (-0.7, -0.5, 0.5, 0.7):
        c.circle(x, -0.28, 0.07, fill=_dark(rng))


def tank(c: Canvas, rng) -> None:
    green = (int(rng.integers(60, 130)), int(rng.integers(80, 140)), int(rng.integers(30, 80)))
    body = green if rng.random() < 0.7 else _colour(rng, (0.3, 0.7))
    c.poly([(-0.95, -0.3), (-0.8, -0.5), (0.8, -0.5), (0.95, -0.3), (0.8, -0.12), (-0.8, -0.12)], _dark(rng))
    for x in np.linspace(-0.7, 0.7, 6):
        c.circle(float(x), -0.31, 0.1, fill=(90, 90, 90))
    c.poly([(-0.85, -0.12), (0.9, -0.12), (0.75, 0.08), (-0.8, 0.08)], body)
    c.poly([(-0.35, 0.08), (0.35, 0.08), (0.25, 0.3), (-0.25, 0.3)], _shade(body, 1.15))
    c.line([(0.25, 0.2), (1.15, 0.25)], _shade(body, 0.8), 0.07)  # barrel


def tractor(c: Canvas, rng) -> None:
    body = _colour(rng)
    c.rect(-0.2, -0.2, 0.85, 0.15, body)  # engine hood
    c.poly([(-0.55, 0.1), (0.0, 0.1), (0.0, 0.75), (-0.5, 0.75)], _glass(rng))  # cab window
    c.line([(-0.55, 0.1), (-0.5, 0.78), (0.02, 0.78), (0.0, 0.1)], _shade(body, 0.8), 0.05)
    c.line([(0.55, 0.15), (0.55, 0.5)], (50, 50, 50), 0.05)  # exhaust
    c.circle(-0.45, -0.2, 0.42, fill=_dark(rng))  # big rear wheel
    c.circle(-0.45, -0.2, 0.2, fill=_shade(body, 1.1))
    c.circle(0.62, -0.38, 0.2, fill=_dark(rng))
    c.circle(0.62, -0.38, 0.09, fill=_shade(body, 1.1))


DRAWERS = {
    f.__name__: f for f in (bicycle, motorcycle, bus, pickup_truck, train, lawn_mower, rocket, streetcar, tank, tractor)
}
assert set(DRAWERS) == set(VEHICLES)


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    top, bottom = np.array(_colour(rng, (0.15, 1.0))), np.array(_colour(rng, (0.15, 1.0)))
    t = np.linspace(0, 1, size)[:, None, None]
    grad = (top * (1 - t) + bottom * t).repeat(size, axis=1)
    image = Image.fromarray(grad.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    if rng.random() < 0.5:  # a ground
        y = int(size * rng.uniform(0.55, 0.9))
        draw.rectangle([0, y, size, size], fill=_colour(rng, (0.15, 0.8)))
    for _ in range(int(rng.integers(0, 7))):  # clutter: things that are not the vehicle
        kind, col = rng.integers(0, 4), _colour(rng)
        x0, y0 = rng.uniform(0, size, 2)
        w, h = rng.uniform(size * 0.05, size * 0.45, 2)
        if kind == 0:
            draw.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
        elif kind == 1:
            draw.ellipse([x0, y0, x0 + w, y0 + w], fill=col)
        elif kind == 2:
            draw.line([x0, y0, x0 + w, y0 + h], fill=col, width=int(rng.integers(2, 10)))
        else:
            draw.ellipse([x0, y0, x0 + w, y0 + w], outline=col, width=int(rng.integers(2, 8)))
    return image


def draw_image(class_name: str, seed: int, index: int) -> np.ndarray:
    """One 32×32×3 uint8 image: a pure function of (class, seed, index)."""
    key = VEHICLES.index(class_name)
    rng = np.random.default_rng([seed, key, index])
    big = SIZE * SCALE
    image = _background(rng, big)
    canvas = Canvas(
        ImageDraw.Draw(image),
        cx=big * rng.uniform(0.35, 0.65),
        cy=big * rng.uniform(0.38, 0.62),
        scale=big * rng.uniform(0.26, 0.46),
        angle=rng.uniform(-0.35, 0.35) + (rng.choice([0.0, math.pi / 2]) if class_name == "rocket" else 0.0),
        mirror=bool(rng.random() < 0.5),
    )
    DRAWERS[class_name](canvas, rng)
    if rng.random() < 0.25:  # out of focus, at most ~0.6 px at 32×32
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
    small = np.asarray(image.resize((SIZE, SIZE), Image.Resampling.LANCZOS), dtype=np.float32)
    small = small * rng.uniform(0.6, 1.3) + rng.uniform(-40, 40)  # exposure
    small += rng.normal(0, rng.uniform(2, 14), small.shape)
    return np.clip(small, 0, 255).astype(np.uint8)


def _split(classes: list[str], seed: int, per_class: int, offset: int, progress: Progress) -> cifar.Split:
    images, fine, coarse, names = [], [], [], []
    for name in classes:
        for i in range(per_class):
            index = offset + i
            images.append(draw_image(name, seed, index))
            fine.append(FINE_LABELS.index(name))
            coarse.append(COARSE_OF[name])
            names.append(f"{name}_s_{index:06d}.png")
            progress.advance()
    return cifar.Split(np.stack(images), np.array(fine), np.array(coarse), names)


def write_tarball(
    path: Path,
    classes: list[str] | tuple[str, ...] = VEHICLES,
    seed: int = 0,
    train_per_class: int = DEFAULT_TRAIN_PER_CLASS,
    test_per_class: int = DEFAULT_TEST_PER_CLASS,
) -> Path:
    """Write the synthetic set for `classes` as a CIFAR-100 python tarball (train and test never overlap)."""
    not_vehicles = [c for c in classes if c not in VEHICLES]
    if not_vehicles:
        raise ValueError(
            f"the synthetic source draws only the vehicle classes ({', '.join(VEHICLES)}); "
            f"not {', '.join(not_vehicles)}"
        )
    progress = Progress("drawing synthetic images").start(len(classes) * (train_per_class + test_per_class))
    train = _split(list(classes), seed, train_per_class, 0, progress)
    test = _split(list(classes), seed, test_per_class, train_per_class, progress)
    progress.finish()
    return cifar.write(path, train, test, list(FINE_LABELS), list(COARSE_LABELS))
