"""CIFAR-100's fine label names (index = label) and the class selections the CLI accepts."""

from __future__ import annotations

from scones.core.errors import UsageError

FINE_LABELS = (
    "apple aquarium_fish baby bear beaver bed bee beetle bicycle bottle bowl boy bridge bus butterfly camel "
    "can castle caterpillar cattle chair chimpanzee clock cloud cockroach couch crab crocodile cup dinosaur "
    "dolphin elephant flatfish forest fox girl hamster house kangaroo keyboard lamp lawn_mower leopard lion "
    "lizard lobster man maple_tree motorcycle mountain mouse mushroom oak_tree orange orchid otter palm_tree "
    "pear pickup_truck pine_tree plain plate poppy porcupine possum rabbit raccoon ray road rocket rose sea "
    "seal shark shrew skunk skyscraper snail snake spider squirrel streetcar sunflower sweet_pepper table "
    "tank telephone television tiger tractor train trout tulip turtle wardrobe whale willow_tree wolf woman "
    "worm"
).split()

COARSE_LABELS = (
    "aquatic_mammals fish flowers food_containers fruit_and_vegetables household_electrical_devices "
    "household_furniture insects large_carnivores large_man-made_outdoor_things large_natural_outdoor_scenes "
    "large_omnivores_and_herbivores medium_mammals non-insect_invertebrates people reptiles small_mammals "
    "trees vehicles_1 vehicles_2"
).split()

VEHICLES_1 = ("bicycle", "bus", "motorcycle", "pickup_truck", "train")
VEHICLES_2 = ("lawn_mower", "rocket", "streetcar", "tank", "tractor")
VEHICLES = VEHICLES_1 + VEHICLES_2
DEFAULT_CLASSES = ("bicycle", "motorcycle")
COARSE_OF = {name: COARSE_LABELS.index("vehicles_1") for name in VEHICLES_1} | {
    name: COARSE_LABELS.index("vehicles_2") for name in VEHICLES_2
}

assert len(FINE_LABELS) == 100 and FINE_LABELS[8] == "bicycle" and FINE_LABELS[48] == "motorcycle"


class UnknownClassError(UsageError):
    """A class name that CIFAR-100 does not have; the message lists the valid names."""

    next_default = "scones stage --classes bicycle,motorcycle (or vehicles)"


class EmptySelectionError(UsageError):
    """No class was selected."""

    next_default = "scones stage --classes bicycle,motorcycle (or vehicles)"


class TooFewClassesError(UsageError):
    """One class is no classifier: training would fail later, after the data was staged (issue #21)."""


def at_least_two(classes: list[str] | tuple[str, ...], command: str = "scones stage") -> list[str]:
    """`classes`, refused in one line when fewer than two (the line suggests a second class)."""
    if len(classes) < 2:
        only = classes[0] if classes else ""
        other = "motorcycle" if only != "motorcycle" else "bicycle"
        raise TooFewClassesError(
            f"--classes {only} selects one class: a classifier needs at least two",
            f"{command} --classes {only},{other} (or vehicles)",
        )
    return list(classes)


def parse_classes(spec: str | None, valid: tuple[str, ...] | list[str] = FINE_LABELS) -> list[str]:
    """`bicycle,motorcycle` | `vehicles` | `vehicles_1` | `vehicles_2` → class names, validated, deduplicated."""
    spec = (spec or ",".join(DEFAULT_CLASSES)).strip()
    groups = {"vehicles": VEHICLES, "vehicles_1": VEHICLES_1, "vehicles_2": VEHICLES_2}
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        for name in groups.get(part, (part,)):
            if name not in names:
                names.append(name)
    if not names:
        raise EmptySelectionError("no class selected: pass --classes bicycle,motorcycle, vehicles or other names")
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise UnknownClassError(
            f"unknown class {', '.join(map(repr, unknown))}; valid names: vehicles, vehicles_1, vehicles_2, "
            + ", ".join(valid)
        )
    return names
