"""The patches that turn moto's server into a docker-free local cloud: one module per patch.

Each module declares `NAME`, `WHAT` (the behaviour it gives), `TOUCHES` (every moto name it reads or
replaces, as "module:attribute.path") and `apply(context)`. moto is pinned exactly because these names are
internals: `check()` resolves every declared name before anything is applied, and start-up refuses with the
patch and the missing name when an upgrade moved one. `scones up --check` then exercises each behaviour.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from . import (
    cloudwatch_percentiles,
    dispatch_cache,
    execution_name,
    jsonata,
    lambda_subprocess,
    sagemaker_update_endpoint,
    sfn_clients,
    sfn_cloudformation,
    sfn_execution,
    sfn_item_batcher,
    sfn_item_reader,
    sfn_map_definition,
    sfn_result_writer,
    sfn_sync_execution,
)

MOTO_VERSION = "5.2.5"
PATCHES: tuple[ModuleType, ...] = (
    sfn_execution,
    lambda_subprocess,
    sfn_cloudformation,
    jsonata,
    execution_name,
    sfn_clients,
    dispatch_cache,
    sfn_map_definition,  # before the three below: they read what it hangs on the parsed Map states
    sfn_item_reader,
    sfn_item_batcher,
    sfn_result_writer,
    cloudwatch_percentiles,
    sfn_sync_execution,  # after sfn_execution: it runs on the executing (parser) backend
    sagemaker_update_endpoint,
)
APPLIED: list[str] = []


class PatchError(RuntimeError):
    """A patch cannot be applied to the installed moto."""


@dataclass(frozen=True)
class Context:
    """What the patches need from the server: the Lambda runtime, the port, the per-function concurrency."""

    runtime: Any
    port: int
    lambda_concurrency: int


def resolve(target: str) -> Any:
    """The object named "package.module:Attr.attr"; raises LookupError naming what is missing."""
    module_name, _, path = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise LookupError(f"module {module_name} ({exc})") from None
    for part in path.split(".") if path else []:
        if not hasattr(found, part):
            raise LookupError(f"{module_name}:{path} (no attribute {part!r})")
        found = getattr(found, part)
    return found


def check(patches: tuple[ModuleType, ...] | None = None) -> None:
    """Resolve every name every patch touches; raise PatchError naming the first patch and name missing."""
    import moto

    patches = PATCHES if patches is None else patches
    if moto.__version__ != MOTO_VERSION:
        raise PatchError(
            f"the local cloud's patches are written for moto=={MOTO_VERSION}, found {moto.__version__}; "
            f"run `make venv` (pyproject pins it)"
        )
    for patch in patches:
        for target in patch.TOUCHES:
            try:
                resolve(target)
            except LookupError as exc:
                raise PatchError(
                    f"patch {patch.NAME!r} cannot apply: moto {moto.__version__} has no {exc}; "
                    f"pin moto=={MOTO_VERSION} (`make venv`) or update services/localcloud/patches/"
                ) from None


def apply_all(context: Context, patches: tuple[ModuleType, ...] | None = None) -> list[str]:
    """Check, then apply every patch once; returns the names applied (the health route reports them)."""
    if APPLIED:
        return APPLIED
    patches = PATCHES if patches is None else patches
    check(patches)
    for patch in patches:
        patch.apply(context)
        APPLIED.append(patch.NAME)
    return APPLIED


def describe() -> list[tuple[str, str]]:
    """(name, behaviour) of every patch, for the README and `scones up --check`."""
    return [(p.NAME, p.WHAT) for p in PATCHES]
