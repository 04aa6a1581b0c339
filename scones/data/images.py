"""Opening an image scones did not draw itself (staged files, traffic it replays): only the formats a camera or a
browser sends are parsed. Pillow otherwise tries every plugin it has, EPS (Ghostscript) and other complex formats
included; services/endpoint/inference.py accepts the same list (it imports nothing of ours, so it repeats it)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from scones.core.errors import UsageError

FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF")


class UnsupportedImageError(UsageError):
    """Not an image of an accepted format; nothing else was parsed."""

    next_default = "replace or remove that file (PNG or JPEG), then rerun"


def open_image(source: Path | bytes, name: str | None = None) -> Image.Image:
    """Pillow's Image.open limited to FORMATS (lazy, as Image.open is); anything else refused in one line."""
    what = name or (str(source) if isinstance(source, Path) else "the image")
    try:
        return Image.open(source if isinstance(source, Path) else io.BytesIO(source), formats=list(FORMATS))
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"{what} is not an image of an accepted format ({', '.join(FORMATS)})") from None
