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


def noisy_png(seed: int, shape: tuple[int, ...] = (32, 32, 3)) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def with_idat(body: bytes, data: bytes) -> bytes:
    """`body` (IHDR, one IDAT, IEND) with other IDAT data, its length and CRC right."""
    length = int.from_bytes(body[33:37], "big")
    chunk = len(data).to_bytes(4, "big") + b"IDAT" + data + zlib.crc32(b"IDAT" + data).to_bytes(4, "big")
    return body[:33] + chunk + body[33 + 12 + length :]


def test_the_canvas_decodes_what_the_plain_png_path_decodes_and_declines_the_rest():
    # given more plain PNGs than one canvas image holds, a PNG whose image data ends early (CRCs right), and others
    plain = [noisy_png(seed) for seed in range(capture.Canvas.SLOTS + 3)]
    cut = with_idat(plain[0], zlib.compress(np.zeros(32 * 97, np.uint8).tobytes())[:-30])
    others = [cut, noisy_png(1, (32, 32)), noisy_png(2, (64, 64, 3)), b"not an image"]
    canvas = capture.Canvas()
    # when each goes to the canvas (the cut one and the others in between: a declined image takes no slot)
    slots = [canvas.put(body) for body in plain[:2] + others + plain[2:]]
    # then the plain ones have slots 0, 1, … and exactly the pixels _plain_png gives; the rest is declined as there
    assert capture.FAST
    assert slots == [0, 1, None, None, None, None, *range(2, len(plain))]
    assert (canvas.pixels() == np.stack([capture._plain_png(body, (32, 32)) for body in plain])).all()
    assert all(capture._plain_png(body, (32, 32)) is None for body in others)
    # and a file holding them reads as before: the cut image is not readable, the others are measured
    lines = [line(record(body, "image/png", b"[0.97, 0.03]")) for body in [*plain[:2], *others, plain[2]]]
    table = capture.CaptureTable(labels=LABELS)
    capture.read_text("\n".join(lines), "f.jsonl", table)
    assert table.bad == {capture.BAD_IMAGE: 2} and table.analysed == 5
    expected = [capture.image_features(body, "image/png")[:2] for body in [*plain[:2], *others[1:3], plain[2]]]
    assert [(r["brightness"], r["contrast"]) for r in table.rows] == [tuple(map(float, e)) for e in expected]


def test_rows_above_the_ceiling_are_not_made_but_every_record_is_counted(monkeypatch):
    # given a file of 40 records and a table whose merged sample only takes keys up to the median of theirs
    text = "\n".join(good(5 * i) for i in range(40))
    keys = sorted(capture._key("f.jsonl", i, 0) for i in range(40))
    full, capped = capture.CaptureTable(labels=LABELS), capture.CaptureTable(labels=LABELS, ceiling=keys[19])
    # when the file is read into both
    capture.read_text(text, "f.jsonl", full)
    capture.read_text(text, "f.jsonl", capped)
    # then the capped table holds only the 20 rows at or under the ceiling, and counts and measures all 40
    assert len(full.rows) == 40 and len(capped.rows) == 20
    assert capped.rows == [r for i, r in enumerate(full.rows) if capture._key("f.jsonl", i, 0) <= keys[19]]
    assert capped.analysed == full.analysed == 40 and capped.classes == full.classes
    assert (capped.hist["brightness"] == full.hist["brightness"]).all()
    # and the ceiling a table passes on: its own, or its sample's largest key once the sample is full
    assert capped.sample_ceiling() == keys[19] and full.sample_ceiling() == 0xFFFFFFFF
    monkeypatch.setattr(capture, "SAMPLE", 40)
    assert full.sample_ceiling() == keys[39] and capped.sample_ceiling() == keys[19]


def test_the_top_class_is_numpys_choice_ties_included():
    rng = np.random.default_rng(0)
    cases = [list(rng.dirichlet(np.ones(n))) for n in (2, 3, 10) for _ in range(50)]
    cases += [[0.5, 0.5], [0.25, 0.25, 0.5], [0.4, 0.4, 0.2], [0.0, 1.0], [1.0, 0.0], [0.3, 0.3, 0.3, 0.1]]
    for probs in cases:
        order = np.argsort(probs)[::-1]
        expected = (int(order[0]), float(probs[order[0]]), float(probs[order[0]] - probs[order[1]]))
        assert capture.top_class(probs) == expected, probs
        assert capture.top_class(np.array(probs, np.float32))[0] == expected[0]


def test_grey_levels_in_chunks_are_the_whole_batchs_to_the_bit():
    pixels = np.random.default_rng(1).integers(0, 256, (3 * capture.GREY_CHUNK + 5, 32, 32, 3), dtype=np.uint8)
    grey = pixels[..., 0] * capture.GREY[0] + pixels[..., 1] * capture.GREY[1] + pixels[..., 2] * capture.GREY[2]
    grey = grey.reshape(len(pixels), -1)
    mean, std = capture.grey_levels(pixels)
    assert mean.dtype == std.dtype == np.float32
    assert (mean == grey.mean(1)).all() and (std == grey.std(1)).all()


def test_workers_start_with_this_process_state_and_meanwhile_runs_while_they_read(tmp_path, monkeypatch):
    # given records whose probabilities sum to 0.5, and a tolerance patched wide in this process only
    for i in range(4):
        (tmp_path / f"{i}.jsonl").write_text("\n".join(good(10 * i + j, b"[0.25, 0.25]") for j in range(5)))
    monkeypatch.setattr(capture, "SUM_TOLERANCE", 0.6)
    seen = []
    # when two workers read them, with work to do meanwhile
    table = capture.read(capture.Location.parse(str(tmp_path)), LABELS, workers=2, meanwhile=lambda: seen.append(1))
    # then the workers were forked from this process (they kept the patched tolerance) and the work was done once
    assert (table.parsed, table.analysed, seen) == (20, 20, [1])

    # and an error in that work is raised by read itself, after the workers are done
    def fails():
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        capture.read(capture.Location.parse(str(tmp_path)), LABELS, workers=2, meanwhile=fails)
    assert capture.read(capture.Location.parse(str(tmp_path)), LABELS, workers=1, meanwhile=lambda: seen.append(2))
    assert seen == [1, 2]
