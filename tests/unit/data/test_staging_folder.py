"""`scones stage --source PATH` with a folder of labelled PNGs (train/ + train.lst), like the shared real photos."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scones.data import lst, outliers, staging

CLASSES = ["bicycle", "motorcycle"]
REAL = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "cifar100-bicycle-motorcycle"


def write_folder(root: Path, per_class: int, split: str = "train", label_of=lambda i: i % 2) -> Path:
    (root / split).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(2 * per_class):
        name = f"img_s_{i:06d}.png"
        Image.fromarray(np.full((32, 32, 3), i, np.uint8)).save(root / split / name)
        rows.append(lst.Row(i, label_of(i), name))
    (root / f"{split}.lst").write_bytes(lst.dumps(rows))
    return root


def test_a_folder_without_a_test_split_holds_out_every_fifth_image_of_each_class(tmp_path):
    # given a folder of 10 images per class and a train.lst
    folder = write_folder(tmp_path / "photos", per_class=10)
    # when it is staged
    source = staging.resolve_source(str(folder), CLASSES)
    manifest = staging.build(source, CLASSES, tmp_path / "staged")
    # then 8 per class train, the 5th and 10th of each class are the test split, and the rule is recorded
    assert source.kind == "folder"
    assert manifest["counts"] == {"train": {"bicycle": 8, "motorcycle": 8}, "test": {"bicycle": 2, "motorcycle": 2}}
    test_rows = lst.read(tmp_path / "staged" / "test.lst")
    assert [r.path for r in test_rows] == [
        "img_s_000008.png",
        "img_s_000009.png",
        "img_s_000018.png",
        "img_s_000019.png",
    ]
    train_names = {r.path for r in lst.read(tmp_path / "staged" / "train.lst")}
    assert not train_names & {r.path for r in test_rows} and len(train_names) == 16
    assert manifest["source"]["test_split"] == staging.HOLD_OUT_RULE
    images, labels = lst.load_images(tmp_path / "staged" / "test", tmp_path / "staged" / "test.lst")
    assert labels.tolist() == [0, 1, 0, 1] and images[0, 0, 0, 0] == 8  # the pixels travel unchanged


def test_a_folders_outliers_are_the_generated_kinds_only(tmp_path):
    folder = write_folder(tmp_path / "photos", per_class=10)
    manifest = staging.build(staging.resolve_source(str(folder), CLASSES), CLASSES, tmp_path / "staged")
    assert manifest["outliers"]["train"]["kinds"] == list(outliers.TRAIN_KINDS)
    assert manifest["outliers"]["test"]["kinds"] == list(outliers.TEST_KINDS)


def test_a_folders_own_test_split_is_used_as_is(tmp_path):
    folder = write_folder(tmp_path / "photos", per_class=5)
    write_folder(folder, per_class=3, split="test")
    manifest = staging.build(staging.resolve_source(str(folder), CLASSES), CLASSES, tmp_path / "staged", "none")
    assert manifest["counts"] == {"train": {"bicycle": 5, "motorcycle": 5}, "test": {"bicycle": 3, "motorcycle": 3}}
    assert manifest["source"]["test_split"] == "test.lst"


def test_a_folder_without_train_lst_is_named_with_what_it_needs(tmp_path):
    (tmp_path / "photos" / "train").mkdir(parents=True)
    with pytest.raises(staging.StagingError, match=r"needs train/ and train\.lst, missing train\.lst") as caught:
        staging.resolve_source(str(tmp_path / "photos"), CLASSES)
    assert "index<TAB>label<TAB>path" in caught.value.next_step


def test_labels_beyond_the_classes_are_refused_before_anything_is_written(tmp_path):
    folder = write_folder(tmp_path / "photos", per_class=5, label_of=lambda i: i % 3)
    with pytest.raises(staging.StagingError, match=r"labels 0..2 but --classes names 2"):
        staging.build(staging.resolve_source(str(folder), CLASSES), CLASSES, tmp_path / "staged")
    assert not (tmp_path / "staged").exists()


def test_a_missing_image_is_one_line_naming_it(tmp_path):
    folder = write_folder(tmp_path / "photos", per_class=5)
    (folder / "train" / "img_s_000003.png").unlink()
    with pytest.raises(staging.StagingError, match=r"img_s_000003\.png"):
        staging.resolve_source(str(folder), CLASSES)


@pytest.mark.skipif(not (REAL / "train.lst").is_file(), reason="the shared real photos are absent (../shared/data)")
def test_the_shared_real_photos_stage_as_800_train_and_200_held_out(tmp_path):
    manifest = staging.build(staging.resolve_source(str(REAL), CLASSES), CLASSES, tmp_path / "staged", "none")
    assert manifest["counts"] == {
        "train": {"bicycle": 400, "motorcycle": 400},
        "test": {"bicycle": 100, "motorcycle": 100},
    }
