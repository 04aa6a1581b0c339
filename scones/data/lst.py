"""The one reader and writer of the .lst format (the built-in image-classification algorithm's):
`index<TAB>label<TAB>path`, the path relative to the split's image folder.

training/train.py keeps a private copy of the reader because it runs alone in SageMaker's container;
tests/unit/data/test_lst.py checks that both read the same staged split identically.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scones.data.images import open_image

IMAGE_SIZE = 32


@dataclass(frozen=True)
class Row:
    index: int
    label: int
    path: str


class LstError(ValueError):
    """A line that is not index<TAB>label<TAB>path with numeric index and label."""


def dumps(rows: list[Row]) -> bytes:
    return ("\n".join(f"{r.index}\t{r.label}\t{r.path}" for r in rows) + "\n").encode()


def parse(text: str, name: str = ".lst") -> list[Row]:
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise LstError(f"{name}:{number}: expected index<TAB>label<TAB>path, got {line!r}")
        try:
            rows.append(Row(int(fields[0]), int(float(fields[1])), fields[2]))
        except ValueError:
            raise LstError(f"{name}:{number}: index and label must be numbers, got {line!r}") from None
    return rows


def read(path: Path) -> list[Row]:
    return parse(path.read_text(), path.name)


def load_images(images_dir: Path, lst_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N×32×32×3 uint8 RGB images, N labels) of a split, resized as training and serving resize."""
    images, labels = [], []
    for row in read(lst_path):
        with open_image(images_dir / row.path) as image:
            image = image.convert("RGB")
            if image.size != (IMAGE_SIZE, IMAGE_SIZE):
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            images.append(np.asarray(image, dtype=np.uint8))
        labels.append(row.label)
    return np.stack(images), np.array(labels, dtype=np.int64)
