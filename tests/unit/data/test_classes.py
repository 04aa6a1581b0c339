import pytest

from scones.data.classes import (
    VEHICLES,
    EmptySelectionError,
    TooFewClassesError,
    UnknownClassError,
    at_least_two,
    parse_classes,
)


def test_default_is_bicycle_and_motorcycle():
    assert parse_classes(None) == ["bicycle", "motorcycle"]


def test_vehicles_expands_to_ten_classes_without_duplicates():
    assert parse_classes("vehicles") == list(VEHICLES)
    assert parse_classes("bicycle,vehicles_1") == ["bicycle", "bus", "motorcycle", "pickup_truck", "train"]


def test_unknown_class_lists_the_valid_names():
    with pytest.raises(UnknownClassError) as err:
        parse_classes("bicycle,unicorn")
    assert "'unicorn'" in str(err.value)
    assert "motorcycle" in str(err.value) and "vehicles" in str(err.value)


def test_empty_selection_is_an_error():
    with pytest.raises(EmptySelectionError):
        parse_classes(" , ")


def test_one_class_is_refused_by_stage_before_anything_is_built(monkeypatch):
    from scones import stage
    from scones.data import staging

    monkeypatch.setattr(staging, "resolve_source", lambda *_a, **_k: pytest.fail("nothing may be built"))
    with pytest.raises(TooFewClassesError) as err:
        stage.stage("synthetic", "bicycle", "bucket", "data", log=lambda _m: None)
    line = err.value.line()
    assert "--classes bicycle selects one class" in line and "scones stage --classes bicycle,motorcycle" in line


def test_one_class_is_refused_by_the_aws_deploy_flags_too():
    from scones.deploy.flags import checked
    from scones.deploy.spec import Spec

    with pytest.raises(TooFewClassesError, match="at least two"):
        checked(Spec(classes=("motorcycle",)))
    assert at_least_two(["bicycle", "motorcycle"]) == ["bicycle", "motorcycle"]
