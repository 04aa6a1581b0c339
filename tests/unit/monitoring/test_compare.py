"""scones monitor --compare: two variants paired by inferenceId, their figures side by side, promote or hold."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from helpers import app_requests as requests
from helpers import make_brightness_model, solid_png

from scones.core.errors import NotReadyError, UsageError
from scones.monitoring import compare
from services.endpoint.app import EndpointApp
from services.endpoint.board import Board
from services.endpoint.capture import CaptureWriter, object_key, record
from services.endpoint.variants import Variant

RULES = {"agreement": 0.95, "low_confidence": 0.02, "p95": 0.5, "pairs": 10}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare-models")
    return {
        "bright": make_brightness_model(root / "bright"),  # 230 → bicycle, 25 → motorcycle
        "swapped": make_brightness_model(root / "swapped", sharpness=-30.0),  # the same, its labels swapped
    }


def shadow_test(models, tmp_path: Path, candidate: str) -> Path:
    """Production and a shadow serving `candidate`, every request mirrored, captured to a folder as on S3."""

    def capture_for(variant: str) -> CaptureWriter:
        def put(key: str, body: bytes) -> None:
            path = tmp_path / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)

        return CaptureWriter(put, "ep", prefix="capture", variant=variant, percent=100)

    variants = [Variant("AllTraffic", models["bright"]), Variant("Shadow", models[candidate], 0.0, 100.0)]
    app = EndpointApp(models["bright"], "ep", variants=variants, capture_for=capture_for, board=Board(1, 2))
    app._load()
    requests(app, [solid_png(230), solid_png(25)] * 20)
    return tmp_path / "capture" / "ep"


def test_the_same_model_as_a_shadow_is_promoted(models, tmp_path, monkeypatch):
    # given a shadow serving the production model itself, every request mirrored
    root = shadow_test(models, tmp_path, "bright")
    monkeypatch.setenv("SCONES_COMPARE_P95_RISE", "100")  # sub-millisecond latencies in-process: not what is tested
    # when the two variants are compared
    result = compare.run("production,shadow", str(root), tmp_path / "out", threshold=0.93, log=lambda _: None)
    # then every request is paired, they all agree, and the verdict is promote
    assert (result.production.variant, result.candidate.variant) == ("AllTraffic", "Shadow")
    assert (result.pairs, result.agreement, result.verdict) == (40, 1.0, compare.PROMOTE)
    # and the report says so, with both variants' figures
    summary = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert summary["verdict"] == "promote" and summary["candidate"]["records"] == 40
    assert summary["production"]["latency_p95_ms"] is not None
    page = (tmp_path / "out" / "report.html").read_text()
    assert 'id="compare"' in page and ">promote<" in page and "data:image/png" in page


def test_out_s3_uploads_the_report_and_leaves_no_folder_behind(models, tmp_path, monkeypatch):
    # given a shadow test, and tempfile's folders kept where they can be counted
    root = shadow_test(models, tmp_path, "bright")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    uploaded = {}

    def upload(folder: Path, uri: str) -> list[str]:
        uploaded.update({p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()})
        return sorted(uploaded)

    monkeypatch.setattr(compare, "upload_outputs", upload)
    # when the report goes to S3
    result = compare.run("production,shadow", str(root), "s3://bucket/reports/x/", 0.93, log=lambda _: None)
    # then every file was uploaded, the result names them there, and the folder they were written in is gone
    assert {"compare.json", "report.html"} <= set(uploaded)
    assert result.files["report"] == "s3://bucket/reports/x/report.html"
    assert not list(scratch.iterdir())


def test_a_candidate_with_its_labels_swapped_is_held(models, tmp_path):
    # given a shadow whose model answers every image with the other class, as confidently
    root = shadow_test(models, tmp_path, "swapped")
    # when compared with production
    result = compare.run("production,shadow", str(root), tmp_path / "out", threshold=0.93, log=lambda _: None)
    # then nothing agrees and the verdict is hold, naming the agreement rule
    assert (result.pairs, result.agreement, result.verdict) == (40, 0.0, compare.HOLD)
    assert any(w.startswith("agreement 0.000 <") for w in result.broken())
    assert ">hold<" in (tmp_path / "out" / "report.html").read_text()


def write(root: Path, variant: str, rows: list[tuple[str, list[float], float | None]]) -> None:
    lines = []
    for key, probs, latency in rows:
        rec = record(solid_png(200), "image/png", json.dumps(probs).encode(), latency_ms=latency, inference_id=key)
        lines.append(json.dumps(rec))
    path = root / object_key("", "ep", variant, compare.datetime(2026, 12, 1, 10))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def sides(tmp_path, production, candidate):
    write(tmp_path, "AllTraffic", production)
    write(tmp_path, "Shadow", candidate)
    found = compare.files_by_variant(compare.capture.Location.parse(str(tmp_path / "ep")))
    return [compare.read_side(compare.capture.Location.parse(str(tmp_path / "ep")), v, found[v], None) for v in found]


def test_each_rule_holds_a_candidate_by_name(tmp_path):
    # given 20 paired requests: the candidate agrees on all, but is less confident and slower
    production = [(f"id{i}", [0.99, 0.01], 1.0 + i / 100) for i in range(20)]
    candidate = [(f"id{i}", [0.9, 0.1] if i % 2 else [0.99, 0.01], 2.0 + i / 100) for i in range(20)]
    prod, cand = sides(tmp_path, production, candidate)
    result = compare.compare(prod, cand, 0.93, RULES)
    # then agreement is 1 but the low-confidence and latency rules hold it
    assert result.agreement == 1.0 and result.verdict == compare.HOLD
    assert [w.split(" ")[0] for w in result.broken()] == ["low-confidence", "latency"]
    assert cand.low_confidence_rate(0.93) == 0.5 and prod.latency_ms(0.5) == pytest.approx(1.095)
    # and with fewer pairs than the rules ask for, it is held for that
    assert compare.compare(prod, cand, 0.93, {**RULES, "pairs": 21}).broken()[0].startswith("only 20 paired")


def test_records_without_latency_leave_the_latency_rule_out_and_say_so(tmp_path):
    rows = [(f"id{i}", [0.99, 0.01], None) for i in range(12)]
    result = compare.compare(*sides(tmp_path, rows, rows), 0.93, RULES)
    assert result.verdict == compare.PROMOTE
    assert "not applied" in result.rule_text()[-1]


def test_bad_lines_are_counted_and_unpaired_records_left_out(tmp_path):
    write(tmp_path, "AllTraffic", [(f"id{i}", [0.99, 0.01], 1.0) for i in range(12)])
    write(tmp_path, "Shadow", [(f"other{i}", [0.99, 0.01], 1.0) for i in range(12)])
    shadow = next((tmp_path / "ep" / "Shadow").rglob("*.jsonl"))
    shadow.write_text(shadow.read_text() + "{not json\n" + json.dumps({"captureData": {}}) + "\n")
    result = compare.run("AllTraffic,shadow", str(tmp_path / "ep"), tmp_path / "out", 0.93, log=lambda _: None)
    assert result.pairs == 0 and result.verdict == compare.HOLD
    assert sum(result.candidate.bad.values()) == 2 and result.candidate.records == 12


def test_a_variant_not_captured_or_a_bad_pair_is_one_line(tmp_path):
    write(tmp_path, "AllTraffic", [("id", [0.99, 0.01], 1.0)])
    with pytest.raises(NotReadyError, match=r"no capture of variant shadow .* captured there: AllTraffic"):
        compare.run("production,shadow", str(tmp_path / "ep"), tmp_path / "out", 0.93, log=lambda _: None)
    for bad in ("production", "production,production", "a,b,c", ""):
        with pytest.raises(UsageError, match="name two variants"):
            compare.parse_pair(bad)
