"""Reading capture files: every record of every file, AWS's own format, and bad input counted by reason."""

from __future__ import annotations

import base64
import io
import json
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from conftest import EVENTS
from helpers import solid_png
from PIL import Image

from scones.monitoring import capture
from services.endpoint import inference
from services.endpoint.capture import record

LABELS = ["bicycle", "motorcycle"]


def line(rec: dict) -> str:
    return json.dumps(rec, separators=(",", ":"))


def good(value: int = 200, output: bytes = b"[0.97, 0.03]") -> str:
    return line(record(solid_png(value), "image/png", output))


def test_every_line_of_a_multi_record_aws_file_is_read():
    table = capture.CaptureTable(labels=LABELS)
    capture.read_text((EVENTS / "capture_aws.jsonl").read_text(), "aws.jsonl", table)
    assert (table.files, table.lines, table.parsed, table.unparseable) == (1, 3, 3, 0)
    rgba, jpeg, grey = table.rows
    # RGBA: a dark square on a transparent background, composited on white as the endpoint does
    assert rgba["predicted"] == "bicycle" and rgba["confidence"] == pytest.approx(0.998)
    assert rgba["margin"] == pytest.approx(0.998 - 0.0013)
    assert 0.7 < rgba["brightness"] < 0.8  # 3/4 white, 1/4 near black
    assert (jpeg["predicted"], jpeg["width"], jpeg["height"]) == ("motorcycle", 64, 48)  # output BASE64
    assert grey["predicted"] == "motorcycle" and grey["confidence"] == pytest.approx(0.6)  # output CSV
    assert rgba["time"] == "2024-11-25T23:21:43Z"


def test_bad_lines_are_counted_by_reason_and_good_ones_kept():
    rec = record(solid_png(10), "image/png", b"[0.2, 0.8]")
    unknown_in = json.loads(line(rec))
    unknown_in["captureData"]["endpointInput"]["encoding"] = "UTF-16"
    unknown_out = json.loads(line(rec))
    unknown_out["captureData"]["endpointOutput"]["encoding"] = "PROTOBUF"
    not_image = json.loads(line(rec))
    not_image["captureData"]["endpointInput"]["data"] = base64.b64encode(b"not an image").decode()
    three = record(solid_png(10), "image/png", b"[0.2, 0.7, 0.1]")
    text = "\n".join(
        [
            good(),
            good()[:-40],  # truncated
            "{not json",
            '{"some": "json"}',
            line(unknown_in),
            line(unknown_out),
            line(not_image),
            line(record(solid_png(10), "image/png", b'"oops"')),
            line(three),
            "",
            good(30, b"[0.1, 0.9]"),
        ]
    )
    table = capture.CaptureTable(labels=LABELS)
    capture.read_text(text, "mixed.jsonl", table)
    assert table.lines == 10 and table.parsed == 2 and table.unparseable == 8
    assert table.lines == table.parsed + table.unparseable
    assert table.bad == {
        capture.MALFORMED: 2,
        capture.NOT_A_RECORD: 1,
        capture.INPUT_ENCODING: 1,
        capture.OUTPUT_ENCODING: 1,
        capture.BAD_IMAGE: 1,
        capture.BAD_OUTPUT: 1,
        capture.CLASS_COUNT: 1,
    }
    assert [r["predicted"] for r in table.rows] == ["bicycle", "motorcycle"]
    printed = table.summary()
    assert "10 record(s): 2 parsed, 8 not parseable" in printed
    assert all(f"{n} {reason}" in printed for reason, n in table.bad.items())


def test_a_binary_file_under_the_prefix_is_counted_not_fatal(tmp_path):
    (tmp_path / "a.jsonl").write_text(good() + "\n" + good() + "\n")
    (tmp_path / "core.bin").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "notes.txt").write_text("hello\n")
    table = capture.read(capture.Location.parse(str(tmp_path)), LABELS)
    assert (table.files, table.parsed) == (3, 2)
    assert table.bad == {capture.NOT_TEXT: 1, capture.MALFORMED: 1}
    assert sorted(p.rsplit("/", 1)[-1] for p in table.bad_files) == ["core.bin", "notes.txt"]


def test_an_empty_or_missing_prefix_is_a_clear_error(tmp_path):
    with pytest.raises(capture.CaptureNotFoundError, match="no capture file"):
        capture.read(capture.Location.parse(str(tmp_path)))
    with pytest.raises(capture.CaptureNotFoundError, match="no such folder"):
        capture.read(capture.Location.parse(str(tmp_path / "nope")))


def test_the_frame_has_the_design_cards_columns_sorted_by_time():
    table = capture.CaptureTable(labels=LABELS)
    capture.read_text((EVENTS / "capture_aws.jsonl").read_text(), "aws.jsonl", table)
    frame = table.frame()
    assert list(frame.columns) == list(capture.COLUMNS)
    assert frame["time"].is_monotonic_increasing and str(frame["time"].dt.tz) == "UTC"


def test_locations_parse():
    assert capture.Location.parse("s3://b/datacapture/ep/") == capture.Location("b", "datacapture/ep")
    assert str(capture.Location.parse("s3://b/x")) == "s3://b/x"
    assert capture.Location.parse("data/capture").bucket is None


def test_worker_processes_read_the_same_records_as_one_process(tmp_path):
    for i in range(9):
        (tmp_path / f"{i}.jsonl").write_text("\n".join([good(20 * i), good(), "{broken"]) + "\n")
    where = capture.Location.parse(str(tmp_path))
    one, two = capture.read(where, LABELS, workers=1), capture.read(where, LABELS, workers=2)
    assert (
        (two.files, two.lines, two.parsed, two.bad)
        == (one.files, one.lines, one.parsed, one.bad)
        == (
            9,
            27,
            18,
            {capture.MALFORMED: 9},
        )
    )
    key = ["file", "brightness"]
    assert one.frame().sort_values(key)[key].values.tolist() == two.frame().sort_values(key)[key].values.tolist()


def test_since_skips_files_by_their_key_hour_without_reading_them(tmp_path):
    # given: a file under 00h that cannot even be read, one under 01h and one whose key names no hour
    old = tmp_path / "ep" / "AllTraffic" / "2026" / "11" / "27" / "00" / "59-00-000-a.jsonl"
    new = tmp_path / "ep" / "AllTraffic" / "2026" / "11" / "27" / "01" / "10-00-000-b.jsonl"
    for path in (old, new):
        path.parent.mkdir(parents=True)
    old.write_bytes(bytes(range(256)))
    new.write_text(good() + "\n")
    (tmp_path / "loose.jsonl").write_text(good() + "\n")
    where = capture.Location.parse(str(tmp_path))
    since = datetime(2026, 11, 27, 1, 0, tzinfo=UTC)
    table = capture.read(where, LABELS, since=since, workers=1)
    # then: the 00h file is passed over by its key (its bytes would count as NOT_TEXT), the others are read;
    # their records (inferenceTime now) are after --since
    assert (table.files_skipped, table.files, table.parsed, table.analysed) == (1, 2, 2, 2)
    assert not table.bad
    # a --since inside the 00h hour reads it
    assert capture.read(where, LABELS, since=since - timedelta(minutes=1), workers=1).bad == {capture.NOT_TEXT: 1}
    assert capture.key_hour("datacapture/ep/AllTraffic/2026/11/27/13/05-01-002-x.jsonl") == datetime(
        2026, 11, 27, 13, tzinfo=UTC
    )
    assert capture.key_hour("a.jsonl") is None and capture.key_hour("x/2026/13/40/99/f.jsonl") is None


def test_the_plain_png_path_gives_the_serving_decoders_pixels():
    rng = np.random.default_rng(3)
    noisy = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cases = {
        "rgb": (Image.fromarray(noisy), {}),
        "rgba": (Image.fromarray(np.dstack([noisy, noisy[..., 0]])), {}),
        "grey": (Image.fromarray(noisy[..., 0]), {}),
        "palette": (Image.fromarray(noisy).convert("P"), {}),
        "big": (Image.fromarray(np.tile(noisy, (2, 2, 1))), {}),
    }
    for name, (image, options) in cases.items():
        out = io.BytesIO()
        image.save(out, format="PNG", **options)
        body = out.getvalue()
        pixels, width, height = capture.image_pixels(body, "image/png")
        assert (pixels == inference.decode(body, "image/png")).all(), name
        assert (width, height) == image.size, name
        assert (capture._plain_png(body, (32, 32)) is not None) == (name == "rgb"), name
    # an interlaced header (Pillow writes none) and a broken CRC are left to the serving decoder
    out = io.BytesIO()
    Image.fromarray(noisy).save(out, format="PNG")
    interlaced = bytearray(out.getvalue())
    interlaced[28] = 1  # IHDR's interlace method, then its CRC again
    interlaced[29:33] = zlib.crc32(bytes(interlaced[12:29])).to_bytes(4, "big")
    assert capture._plain_png(bytes(out.getvalue()), (32, 32)) is not None
    assert capture._plain_png(bytes(interlaced), (32, 32)) is None
    broken = bytearray(out.getvalue())
    broken[-20] ^= 0xFF  # inside the last IDAT
    assert capture._plain_png(bytes(broken), (32, 32)) is None
    with pytest.raises(capture.BadRecord):
        capture.image_pixels(bytes(broken), "image/png")


def test_memory_is_bounded_the_sums_are_exact_and_workers_agree(tmp_path, monkeypatch):
    # given: 9 files of 30 records and a sample of at most 50 rows
    monkeypatch.setattr(capture, "SAMPLE", 50)
    for i in range(9):
        (tmp_path / f"{i}.jsonl").write_text("\n".join(good(20 * i + j) for j in range(30)) + "\n")
    where = capture.Location.parse(str(tmp_path))
    one = capture.read(where, LABELS, workers=1, threshold=0.98)
    two = capture.read(where, LABELS, workers=2, threshold=0.98)
    # then: 270 records counted exactly, 50 kept, the same 50 whichever the number of workers
    for table in (one, two):
        assert (table.analysed, len(table.rows), table.below) == (270, 50, 270)
        assert table.moments["confidence"].mean == pytest.approx(0.97)
        assert int(table.hist["brightness"].sum()) == 270
    assert one.rows == two.rows
    assert (one.hist["brightness"] == two.hist["brightness"]).all()
    assert one.moments["brightness"].mean == pytest.approx(two.moments["brightness"].mean)
