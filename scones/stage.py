"""`scones stage`: build the staged folder (PNG + .lst + manifest) from a source, then sync it to S3."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from scones.core.errors import UsageError
from scones.data import probe, staging
from scones.data.classes import at_least_two, parse_classes


def stage(
    source_spec: str,
    classes_spec: str | None,
    bucket: str,
    prefix: str,
    *,
    workdir: Path | None = None,
    seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    explore: bool = False,
    upload: bool = True,
    outliers: str = "auto",
    log: Callable[[str], None] = print,
) -> dict:
    """Stage `classes_spec` from `source_spec` (with outlier channels unless `outliers` is none); returns the
    manifest."""
    classes = at_least_two(parse_classes(classes_spec))
    for flag, value in (("--train-per-class", train_per_class), ("--test-per-class", test_per_class)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    started = time.perf_counter()
    source = staging.resolve_source(source_spec, classes, seed, train_per_class, test_per_class)
    workdir = workdir.resolve() if workdir else staging.default_workdir(source, classes, outliers)
    manifest = staging.build(source, classes, workdir, outliers)
    log(f"staged {source.kind} ({source.tarball.name}, md5 {source.md5}) in {workdir}")
    log(staging.describe(manifest))
    if explore:
        log(f"contact sheet: {staging.contact_sheet(workdir, manifest)}")
        accuracy = probe.staged_accuracy(workdir)
        log(
            f"logistic regression on raw pixels: test accuracy {accuracy:.3f} "
            f"(chance {1 / len(classes):.3f}; a linear model should not solve it)"
        )
    if not upload:
        log(f"not uploaded (--no-upload); {time.perf_counter() - started:.1f} s")
        return manifest
    report = staging.upload(workdir, manifest, bucket, prefix)
    what = (
        "nothing changed, 0 objects uploaded"
        if report.uploaded == 0 and report.deleted == 0
        else f"uploaded {report.uploaded}, unchanged {report.unchanged}, deleted {report.deleted} stale"
    )
    log(f"s3://{bucket}/{prefix}/: {what} ({report.seconds:.1f} s upload, {time.perf_counter() - started:.1f} s total)")
    return manifest
