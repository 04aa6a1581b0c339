"""Only PNG, JPEG, GIF, BMP, WebP and TIFF are parsed where scones decodes images (issue #21): an EPS file is
refused in one line before Pillow's EPS plugin (and Ghostscript behind it) sees it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from scones import load
from scones.data import images, lst, staging

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n%%EndComments\nshowpage\n%%EOF\n"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def test_the_eps_sample_is_one_pillow_would_parse_unasked():
    assert Image.open(io.BytesIO(EPS)).format == "EPS"  # so the refusals below are the formats list at work


def test_an_eps_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "trap.png").write_bytes(EPS)
    with pytest.raises(images.UnsupportedImageError) as raised:
        images.open_image(tmp_path / "trap.png")
    line = raised.value.line()
    assert "trap.png is not an image of an accepted format" in line and "next: " in line and "\n" not in line


def test_a_staged_split_with_an_eps_file_is_refused(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "a.png").write_bytes(png())
    (tmp_path / "test" / "b.png").write_bytes(EPS)
    (tmp_path / "test.lst").write_bytes(lst.dumps([lst.Row(0, 0, "a.png"), lst.Row(1, 1, "b.png")]))
    with pytest.raises(images.UnsupportedImageError, match=r"b\.png"):
        lst.load_images(tmp_path / "test", tmp_path / "test.lst")


def test_the_contact_sheet_refuses_an_eps_file(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.png").write_bytes(EPS)
    (tmp_path / "train.lst").write_bytes(lst.dumps([lst.Row(0, 0, "a.png")]))
    with pytest.raises(images.UnsupportedImageError):
        staging.contact_sheet(tmp_path, {"classes": ["bicycle", "motorcycle"]})


def test_load_drift_refuses_eps_bytes_and_still_reads_png():
    with pytest.raises(images.UnsupportedImageError):
        load.transform(EPS, "dark", np.random.default_rng(0))
    assert Image.open(io.BytesIO(load.transform(png(), "dark", np.random.default_rng(0)))).format == "PNG"
