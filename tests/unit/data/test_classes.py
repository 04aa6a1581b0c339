import pytest

from scones.data.classes import VEHICLES, EmptySelectionError, UnknownClassError, parse_classes


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
