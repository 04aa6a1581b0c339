"""Stage a class selection of CIFAR-100 (or the synthetic stand-in, or a folder of labelled PNGs) to S3.

A folder source holds `train/*.png` + `train.lst` (index<TAB>label<TAB>path, the label indexing --classes),
and optionally `test/` + `test.lst`; without a test split, every fifth image of each class (in train.lst
order) is held out as the staged test split (`HOLD_OUT_RULE`, recorded in the manifest). Its outliers are
the generated kinds only (a folder has no other classes).

Local layout, written to `<workdir>.partial` and renamed into place only when complete (manifest last):
    train/<cifar file name>.png   test/<cifar file name>.png
    train.lst  test.lst           index<TAB>label<TAB>path, path relative to the split's folder
    outliers/<name>.png           images of neither class, for outlier exposure in training (--outliers auto)
    outliers_test/<name>.png      held-out outliers of other kinds, for evaluation only
    outliers.lst  outliers_test.lst   index<TAB>kind<TAB>path; kind indexes manifest["outliers"][split]["kinds"]
    manifest.json                 source, classes, CIFAR label indices, counts, outlier kinds, md5 of every file
S3 layout: the same under s3://<bucket>/<prefix>/. An upload sends only files whose md5 differs from the
object's ETag, deletes the files the previous manifest listed that the new one does not (stale: never anything
else under the prefix), and writes manifest.json last, so a prefix with a manifest is complete. While it runs,
.staging.json lists every file it may leave (old and new), so that an upload that stops half-way still knows,
next time, what it wrote (scones.data.staged.staged_files; `scones clean` reads the same).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from scones.core import aws, settings
from scones.core.errors import SconesError
from scones.core.files import write_atomic
from scones.core.progress import Progress
from scones.data import cifar, outliers, staged, synthetic
from scones.data import lst as lst_format
from scones.data.classes import DEFAULT_CLASSES, EmptySelectionError, UnknownClassError
from scones.data.images import open_image

SPLITS = ("train", "test")
OUTLIER_SPLITS = {"train": "outliers", "test": "outliers_test"}  # outlier split → its folder / channel name
FOLDERS = (*SPLITS, *OUTLIER_SPLITS.values())
MANIFEST = staged.MANIFEST
FORMAT_VERSION = 2


class StagingError(SconesError):
    """Staging could not finish; the message names the problem and what to do."""

    next_default = "scones stage --help"


@dataclass
class Source:
    kind: str  # cifar100 | synthetic | tarball | folder
    tarball: Path  # the folder, for a folder source
    md5: str
    detail: dict


@dataclass
class UploadReport:
    uploaded: int
    unchanged: int
    deleted: int
    seconds: float


def resolve_source(
    spec: str,
    classes: list[str],
    seed: int = 0,
    train_per_class: int | None = None,
    test_per_class: int | None = None,
    cache_dir: Path | None = None,
) -> Source:
    """`cifar100` (download), `synthetic` (draw), or a path to a CIFAR-100 python tarball."""
    cache_dir = cache_dir or settings.data_dir() / "cache"
    if spec == "cifar100":
        url = settings.cifar100_url()
        path = cifar.download(
            url,
            cache_dir / cifar.CIFAR100_FILENAME,
            md5=cifar.CIFAR100_MD5,
            progress=Progress("downloading CIFAR-100", unit="B"),
        )
        return Source("cifar100", path, cifar.CIFAR100_MD5, {"url": url})
    if spec == "synthetic":
        n_train = synthetic.DEFAULT_TRAIN_PER_CLASS if train_per_class is None else train_per_class
        n_test = synthetic.DEFAULT_TEST_PER_CLASS if test_per_class is None else test_per_class
        tag = hashlib.md5(",".join(classes).encode()).hexdigest()[:8]
        path = cache_dir / f"synthetic-cifar-100-seed{seed}-{n_train}x{n_test}-{tag}.tar.gz"
        if not path.exists():
            try:
                synthetic.write_tarball(path, classes, seed, n_train, n_test)
            except ValueError as exc:
                raise UnknownClassError(str(exc)) from None
        detail = {"seed": seed, "train_per_class": n_train, "test_per_class": n_test}
        return Source("synthetic", path, cifar.md5_of(path), detail)
    path = Path(spec).expanduser()
    if path.is_dir():
        return _folder_source(path)
    if not path.is_file():
        raise StagingError(
            f"--source {spec!r}: not cifar100, synthetic, or an existing tarball file (or a folder with train.lst)"
        )
    md5 = cifar.md5_of(path)
    return Source("tarball", path.resolve(), md5, {"path": str(path.resolve()), "official": md5 == cifar.CIFAR100_MD5})


HOLD_OUT_EVERY = 5
HOLD_OUT_RULE = f"no test.lst: every {HOLD_OUT_EVERY}th image of each class in train.lst order is the test split"


def _folder_source(path: Path) -> Source:
    """A folder of PNGs with train.lst (and maybe test.lst); its md5 covers the .lst files and every image."""
    missing = [name for name in ("train", "train.lst") if not (path / name).exists()]
    if missing:
        raise StagingError(
            f"--source {path}: a folder source needs train/ and train.lst, missing {', '.join(missing)}",
            "pass a folder holding train/*.png and train.lst (index<TAB>label<TAB>path)",
        )
    digest = hashlib.md5()
    for split in SPLITS:
        if (path / f"{split}.lst").is_file():
            try:
                rows = lst_format.read(path / f"{split}.lst")
                digest.update((path / f"{split}.lst").read_bytes())
                for row in rows:
                    digest.update((path / split / row.path).read_bytes())
            except (lst_format.LstError, OSError) as exc:
                raise StagingError(f"--source {path}: {exc}", f"fix {path / f'{split}.lst'} or its images") from None
    return Source("folder", path.resolve(), digest.hexdigest(), {"path": str(path.resolve())})


def _load_folder(source: Source, classes: list[str]) -> cifar.Cifar:
    """A folder source as a parsed tarball whose fine classes are exactly `classes` (labels index them)."""
    splits, held_out = {}, None
    for split in SPLITS:
        lst_path = source.tarball / f"{split}.lst"
        if not lst_path.is_file():
            continue
        try:
            images, labels = lst_format.load_images(source.tarball / split, lst_path)
        except (lst_format.LstError, OSError) as exc:
            raise StagingError(f"--source {source.tarball}: {exc}", f"fix {lst_path} or its images") from None
        names = [Path(row.path).name for row in lst_format.read(lst_path)]  # staged flat, as CIFAR's are
        if labels.min() < 0 or labels.max() >= len(classes):
            raise StagingError(
                f"{lst_path} has labels {labels.min()}..{labels.max()} but --classes names {len(classes)}: "
                f"{', '.join(classes)}",
                "pass --classes with one name per label, in label order (label 0 first)",
            )
        splits[split] = (images, labels, names)
    if "test" not in splits:
        images, labels, names = splits["train"]
        rank = np.zeros(len(labels), dtype=np.int64)  # position of each image within its class
        for label in np.unique(labels):
            rank[labels == label] = np.arange(int((labels == label).sum()))
        held_out = rank % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1
        splits["test"] = (images[held_out], labels[held_out], [n for n, h in zip(names, held_out, strict=True) if h])
        keep = ~held_out
        splits["train"] = (images[keep], labels[keep], [n for n, h in zip(names, keep, strict=True) if h])
    parts = {
        split: cifar.Split(images, labels, np.zeros_like(labels), names)
        for split, (images, labels, names) in splits.items()
    }
    source.detail["test_split"] = "test.lst" if held_out is None else HOLD_OUT_RULE
    return cifar.Cifar(parts["train"], parts["test"], list(classes), [])


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def _manifest_matches(workdir: Path, source: Source, classes: list[str], outlier_mode: str) -> dict | None:
    try:
        manifest = json.loads((workdir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    same = manifest.get("source", {}).get("md5") == source.md5 and manifest.get("classes") == classes
    same = same and (manifest.get("outliers") or {}).get("mode", "none") == outlier_mode
    return manifest if same and manifest.get("format") == FORMAT_VERSION else None


def _write_file(partial: Path, relative: str, blob: bytes, files: dict) -> None:
    """One staged file, its md5 recorded for the manifest."""
    (partial / relative).write_bytes(blob)
    files[relative] = hashlib.md5(blob).hexdigest()


def _write_outliers(
    data: cifar.Cifar, source: Source, classes: list[str], partial: Path, files: dict, counts: dict
) -> dict:
    """The `outliers` (training) and `outliers_test` (held-out) folders and .lst files; their manifest entry."""
    seed = int(source.detail.get("seed", 0))
    limit = {split: min(counts[split].values()) for split in SPLITS}  # no kind outnumbers a selected class
    sets = outliers.build(classes, None if source.kind == "synthetic" else data, seed, limit)
    entry: dict = {"mode": "auto", "rule": outliers.RULE}
    progress = Progress("writing outlier PNGs").start(sum(len(s.labels) for s in sets.values()))
    for split, folder in OUTLIER_SPLITS.items():
        found = sets[split]
        (partial / folder).mkdir(parents=True)
        rows = []
        for i, (image, label, name) in enumerate(zip(found.images, found.labels, found.names, strict=True)):
            _write_file(partial, f"{folder}/{name}", _png_bytes(image), files)
            rows.append(lst_format.Row(i, int(label), name))
            progress.advance()
        _write_file(partial, f"{folder}.lst", lst_format.dumps(rows), files)
        entry[split] = {
            "channel": folder,
            "kinds": found.kinds,
            "counts": {kind: int((found.labels == k).sum()) for k, kind in enumerate(found.kinds)},
        }
    progress.finish()
    overlap = set(entry["train"]["kinds"]) & set(entry["test"]["kinds"])
    assert not overlap, f"outlier kinds in both splits: {overlap}"
    return entry


def build(source: Source, classes: list[str], workdir: Path, outlier_mode: str = "auto") -> dict:
    """Write PNGs, .lst files and the manifest for `classes`; reuses a complete identical workdir.

    `outlier_mode` "auto" also writes the outlier channels (see scones.data.outliers), "none" leaves them out.
    """
    if outlier_mode not in outliers.MODES:
        raise StagingError(f"--outliers {outlier_mode!r}: use one of {', '.join(outliers.MODES)}")
    existing = _manifest_matches(workdir, source, classes, outlier_mode)
    if existing is not None:
        return existing
    data = _load_folder(source, classes) if source.kind == "folder" else cifar.load(source.tarball)
    unknown = [c for c in classes if c not in data.fine_label_names]
    if unknown:
        raise UnknownClassError(
            f"unknown class {', '.join(map(repr, unknown))}; valid names: vehicles, " + ", ".join(data.fine_label_names)
        )
    label_of = {name: data.fine_label_names.index(name) for name in classes}
    partial = workdir.with_name(workdir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    files: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    total = sum(int(np.isin(getattr(data, s).fine_labels, list(label_of.values())).sum()) for s in SPLITS)
    if total == 0:
        raise EmptySelectionError(f"the tarball has no image of {', '.join(classes)}")
    progress = Progress("writing PNGs").start(total)
    for split_name in SPLITS:
        split = getattr(data, split_name)
        (partial / split_name).mkdir(parents=True)
        rows, used = [], set()
        counts[split_name] = {name: 0 for name in classes}
        for row in np.flatnonzero(np.isin(split.fine_labels, list(label_of.values()))):
            name = classes[list(label_of.values()).index(int(split.fine_labels[row]))]
            file_name = split.filenames[row]
            if file_name in used:  # CIFAR has a few repeated names: keep them apart
                file_name = f"{Path(file_name).stem}_{row}.png"
            used.add(file_name)
            _write_file(partial, f"{split_name}/{file_name}", _png_bytes(split.images[row]), files)
            rows.append(lst_format.Row(len(rows), classes.index(name), file_name))
            counts[split_name][name] += 1
            progress.advance()
        _write_file(partial, f"{split_name}.lst", lst_format.dumps(rows), files)
    progress.finish()
    empty = [f"{s}/{c}" for s in SPLITS for c, n in counts[s].items() if n == 0]
    if empty:
        shutil.rmtree(partial, ignore_errors=True)
        raise EmptySelectionError(f"no image for {', '.join(empty)} in the tarball")
    outlier_entry = _write_outliers(data, source, classes, partial, files, counts) if outlier_mode == "auto" else None
    manifest = {
        "format": FORMAT_VERSION,
        "source": {"kind": source.kind, "md5": source.md5, **source.detail},
        "classes": classes,
        "cifar_fine_labels": label_of,
        "counts": counts,
        "image": {"height": 32, "width": 32, "channels": 3, "format": "png"},
        "lst": "index<TAB>label<TAB>path relative to the split's folder; label indexes `classes` "
        "(outlier .lst files: the label indexes outliers.<split>.kinds)",
        "outliers": outlier_entry or {"mode": "none"},
        "files": files,
    }
    write_atomic(partial / MANIFEST, json.dumps(manifest, indent=1))
    shutil.rmtree(workdir, ignore_errors=True)
    partial.rename(workdir)
    return manifest


def default_workdir(source: Source, classes: list[str], outlier_mode: str = "auto") -> Path:
    key = f"{source.md5}:{','.join(classes)}" + ("" if outlier_mode == "auto" else f":outliers={outlier_mode}")
    tag = hashlib.md5(key.encode()).hexdigest()[:8]
    return settings.data_dir() / "staged" / f"{source.kind}-{tag}"


def _client_error(exc: Exception, bucket: str, prefix: str) -> Exception:
    """S3's refusals in staging's words; anything else (a cloud that does not answer, expired credentials) goes
    to scones.core.errors, which names the next step for the target."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            return StagingError(
                f"bucket {bucket!r} does not exist", "scones up (it creates the default bucket), or pass --bucket"
            )
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            return StagingError(f"access denied to s3://{bucket}/{prefix}", "check the credentials' S3 permissions")
    return exc


def upload(workdir: Path, manifest: dict, bucket: str, prefix: str, threads: int = 16) -> UploadReport:
    """Make s3://bucket/prefix/ hold exactly the staged files; send only what changed; manifest last."""
    from botocore.exceptions import BotoCoreError, ClientError

    started = time.perf_counter()
    s3 = aws.client("s3", max_pool_connections=threads * 2)
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    try:
        remote: dict[str, str] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=base):
            for obj in page.get("Contents", []):
                remote[obj["Key"][len(base) :]] = obj["ETag"].strip('"')
        wanted = dict(manifest["files"])
        wanted_manifest_md5 = hashlib.md5((workdir / MANIFEST).read_bytes()).hexdigest()
        to_send = [rel for rel, md5 in wanted.items() if remote.get(rel) != md5]
        previous = staged.staged_files(bucket, base.rstrip("/")) - {MANIFEST, staged.JOURNAL}  # what we wrote before
        stale = sorted(rel for rel in previous if rel in remote and rel not in wanted)
        manifest_changed = remote.get(MANIFEST) != wanted_manifest_md5
        if not to_send and not stale and not manifest_changed and staged.JOURNAL not in remote:
            return UploadReport(0, len(wanted), 0, time.perf_counter() - started)
        journal = json.dumps({"files": sorted(previous | set(wanted))}).encode()
        s3.put_object(Bucket=bucket, Key=base + staged.JOURNAL, Body=journal, ContentType="application/json")
        if MANIFEST in remote:  # the prefix is incomplete until the new manifest lands
            s3.delete_object(Bucket=bucket, Key=base + MANIFEST)
        progress = Progress(f"uploading to s3://{bucket}/{base}").start(len(to_send))

        def send(rel: str) -> None:
            body = (workdir / rel).read_bytes()
            content_type = "image/png" if rel.endswith(".png") else "text/plain"
            s3.put_object(Bucket=bucket, Key=base + rel, Body=body, ContentType=content_type)
            progress.advance()

        pool = ThreadPoolExecutor(max_workers=threads)
        try:
            for future in as_completed([pool.submit(send, rel) for rel in to_send]):
                future.result()  # the first failure stops the upload
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        progress.finish()
        for start in range(0, len(stale), 1000):
            batch = [{"Key": base + rel} for rel in stale[start : start + 1000]]
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        s3.put_object(
            Bucket=bucket, Key=base + MANIFEST, Body=(workdir / MANIFEST).read_bytes(), ContentType="application/json"
        )
        s3.delete_object(Bucket=bucket, Key=base + staged.JOURNAL)  # the manifest now says it all
    except (ClientError, BotoCoreError) as exc:
        failure = _client_error(exc, bucket, prefix)
        if failure is exc:
            raise
        raise failure from exc
    return UploadReport(len(to_send), len(wanted) - len(to_send), len(stale), time.perf_counter() - started)


def contact_sheet(workdir: Path, manifest: dict, per_class: int = 10, zoom: int = 3) -> Path:
    """A grid of the first `per_class` training images of each class, one row per class, named on the left."""
    from PIL import ImageDraw

    classes = manifest["classes"]
    picks: dict[int, list[str]] = {i: [] for i in range(len(classes))}
    for entry in lst_format.read(workdir / "train.lst"):
        if len(picks[entry.label]) < per_class:
            picks[entry.label].append(entry.path)
    cell, margin = 32 * zoom, 110
    sheet = Image.new("RGB", (margin + per_class * (cell + 2), len(classes) * (cell + 2)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(classes):
        y = row * (cell + 2)
        draw.text((4, y + cell // 2 - 6), name, fill="black")
        for col, path in enumerate(picks[row]):
            image = open_image(workdir / "train" / path).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(image, (margin + col * (cell + 2), y))
    out = workdir / "contact_sheet.png"
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return write_atomic(out, buffer.getvalue())


def describe(manifest: dict) -> str:
    classes = manifest["classes"]
    width = max(len(c) for c in [*classes, "class"])
    rows = [f"{'class':<{width}}  {'label':>5}  {'cifar':>5}  {'train':>6}  {'test':>5}"]
    for i, name in enumerate(classes):
        rows.append(
            f"{name:<{width}}  {i:>5}  {manifest['cifar_fine_labels'][name]:>5}  "
            f"{manifest['counts']['train'][name]:>6}  {manifest['counts']['test'][name]:>5}"
        )
    total_train = sum(manifest["counts"]["train"].values())
    total_test = sum(manifest["counts"]["test"].values())
    rows.append(f"{'total':<{width}}  {'':>5}  {'':>5}  {total_train:>6}  {total_test:>5}")
    found = manifest.get("outliers") or {}
    if found.get("mode") == "auto":
        for split, what in (("train", "outliers for training"), ("test", "held-out outliers (evaluation only)")):
            counts = found[split]["counts"]
            kinds = ", ".join(f"{kind} {n}" for kind, n in counts.items())
            rows.append(f"{what}: {sum(counts.values())} in {found[split]['channel']}/ ({kinds})")
    else:
        rows.append("outliers: none staged (--outliers none): training runs without outlier exposure")
    return "\n".join(rows)


__all__ = ["DEFAULT_CLASSES", "StagingError", "build", "contact_sheet", "describe", "resolve_source", "upload"]
