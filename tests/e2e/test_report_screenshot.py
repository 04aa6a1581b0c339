"""The HTML report renders in headless Chromium, verdict banner first (skipped only where no chromium exists)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_brightness_model
from monitoring_fixtures import held_out_images, traffic_records, write_capture
from PIL import Image

from scones.monitoring import baseline, capture, monitor, report

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BANNER = {"OK": (0x1A, 0x7F, 0x37), "DRIFT": (0xCF, 0x22, 0x2E)}


@pytest.mark.skipif(report.chromium() is None, reason="no chromium binary (apt-get install chromium; .ci/run does)")
@pytest.mark.parametrize("kind", [None, "noise"])
def test_the_report_renders_with_its_verdict_on_top(tmp_path, kind):
    model = make_brightness_model(tmp_path / "model")
    images = held_out_images(40)
    base = baseline.build(model, images, 0.93)
    write_capture(tmp_path / "capture", traffic_records(model, images, 120, kind, seed=5))
    result = monitor.analyse(capture.Location.parse(str(tmp_path / "capture")), base, "test", 0.93)
    monitor.write_outputs(result, tmp_path / "out")
    shot = report.screenshot(result.files["report"], tmp_path / "report.png")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1750)
    assert result.verdict == ("DRIFT" if kind else "OK")
    assert image.getpixel((60, 40)) == BANNER[result.verdict]  # the banner is drawn in the verdict's colour
    # the plots rendered: the lower half of the page is not blank
    lower = image.crop((0, 800, 1200, 1400))
    assert len(np.unique(np.asarray(lower).reshape(-1, 3), axis=0)) > 50
