import hashlib
import json

import pytest

from scones.data import staging
from scones.data.classes import EmptySelectionError, UnknownClassError


@pytest.fixture
def source(cifar_tarball):
    return staging.resolve_source(str(cifar_tarball), ["bicycle", "motorcycle"])


def test_build_writes_pngs_lst_and_manifest(source, tmp_path):
    workdir = tmp_path / "staged"
    manifest = staging.build(source, ["bicycle", "motorcycle"], workdir)
    assert manifest["counts"] == {"train": {"bicycle": 6, "motorcycle": 6}, "test": {"bicycle": 2, "motorcycle": 2}}
    assert manifest["cifar_fine_labels"] == {"bicycle": 8, "motorcycle": 48}
    assert manifest["source"]["kind"] == "tarball" and manifest["source"]["official"] is False
    assert sorted(p.name for p in (workdir / "train").iterdir())[:2] == ["bicycle_s_000000.png", "bicycle_s_000001.png"]
    for rel, md5 in manifest["files"].items():
        assert hashlib.md5((workdir / rel).read_bytes()).hexdigest() == md5
    assert json.loads((workdir / "manifest.json").read_text()) == manifest
    assert not (tmp_path / "staged.partial").exists()


def test_lst_format_is_index_tab_label_tab_path(source, tmp_path):
    workdir = tmp_path / "staged"
    staging.build(source, ["motorcycle", "bicycle"], workdir)  # label order follows --classes
    lines = (workdir / "test.lst").read_text().splitlines()
    assert lines == [
        "0\t1\tbicycle_s_001000.png",
        "1\t1\tbicycle_s_001001.png",
        "2\t0\tmotorcycle_s_001000.png",
        "3\t0\tmotorcycle_s_001001.png",
    ]
    for line in lines:
        assert (workdir / "test" / line.split("\t")[2]).is_file()


def test_unknown_class_in_tarball_lists_its_names(source, tmp_path):
    with pytest.raises(UnknownClassError, match="valid names"):
        staging.build(source, ["bicycle", "hovercraft"], tmp_path / "x")


def test_class_without_images_is_an_empty_selection(source, tmp_path):
    with pytest.raises(EmptySelectionError, match="no image of tank"):
        staging.build(source, ["tank"], tmp_path / "x")


def test_interrupted_build_is_never_taken_for_complete(source, tmp_path, monkeypatch):
    workdir = tmp_path / "staged"
    calls = {"n": 0}
    real = staging._png_bytes

    def failing(image):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(image)

    monkeypatch.setattr(staging, "_png_bytes", failing)
    with pytest.raises(KeyboardInterrupt):
        staging.build(source, ["bicycle", "motorcycle"], workdir, "none")
    assert not workdir.exists()
    monkeypatch.setattr(staging, "_png_bytes", real)
    manifest = staging.build(source, ["bicycle", "motorcycle"], workdir, "none")
    assert len(manifest["files"]) == 16 + 2


def test_matching_workdir_is_reused(source, tmp_path, monkeypatch):
    workdir = tmp_path / "staged"
    first = staging.build(source, ["bicycle", "motorcycle"], workdir)
    monkeypatch.setattr(staging.cifar, "load", lambda path: pytest.fail("should not parse again"))
    assert staging.build(source, ["bicycle", "motorcycle"], workdir) == first


def test_bad_source_is_named(tmp_path):
    with pytest.raises(staging.StagingError, match="not cifar100, synthetic, or an existing tarball"):
        staging.resolve_source(str(tmp_path / "missing.tar.gz"), ["bicycle"])


def test_contact_sheet_and_description(source, tmp_path):
    workdir = tmp_path / "staged"
    manifest = staging.build(source, ["bicycle", "motorcycle"], workdir)
    from PIL import Image

    sheet = Image.open(staging.contact_sheet(workdir, manifest, per_class=4))
    assert sheet.size == (110 + 4 * 98, 2 * 98)
    text = staging.describe(manifest)
    assert "bicycle" in text and "total" in text and "12" in text
