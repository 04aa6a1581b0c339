"""CIFAR-100, python version: download (resumable, retried, md5-checked), parse, and write the same format.

The tarball holds `cifar-100-python/{train,test,meta}`, pickles with bytes keys: `data` (N×3072 uint8,
rows of 1024 R, 1024 G, 1024 B values), `fine_labels`, `coarse_labels`, `filenames`, `batch_label`;
`meta` has `fine_label_names` and `coarse_label_names`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scones.core import settings
from scones.core.errors import SconesError
from scones.core.progress import Progress

CIFAR100_URL = settings.DEFAULT_CIFAR100_URL
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_FILENAME = "cifar-100-python.tar.gz"
ROOT_DIR = "cifar-100-python"


class DataError(SconesError):
    """Base of the data errors; each names what is wrong."""

    next_default = "scones stage --source synthetic (offline), or pass a CIFAR-100 python tarball"


class ChecksumError(DataError):
    """The file's md5 is not the expected one."""


class CorruptArchiveError(DataError):
    """The tarball is truncated, not a tarball, or lacks the CIFAR members."""


class DownloadError(DataError):
    """The download failed after every retry."""


@dataclass
class Split:
    images: np.ndarray  # N×32×32×3 uint8, RGB
    fine_labels: np.ndarray  # N int
    coarse_labels: np.ndarray  # N int
    filenames: list[str]


@dataclass
class Cifar:
    train: Split
    test: Split
    fine_label_names: list[str]
    coarse_label_names: list[str]


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    url: str = CIFAR100_URL,
    dest: Path | None = None,
    md5: str | None = CIFAR100_MD5,
    retries: int = 5,
    timeout_s: float = 60,
    progress: Progress | None = None,
) -> Path:
    """Download `url` to `dest`, resuming a `.part` file with HTTP Range; verify md5. Idempotent."""
    dest = Path(dest or CIFAR100_FILENAME)
    if dest.exists():
        if md5 is None or md5_of(dest) == md5:
            return dest
        dest.unlink()  # a wrong file in the cache is not kept
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    last_error: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            _fetch(url, part, timeout_s, progress)
            break
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last_error = exc
            if isinstance(exc, urllib.error.HTTPError) and 400 <= exc.code < 500 and exc.code != 416:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            if attempt < retries:
                time.sleep(min(2**attempt * 0.25, 10))
    else:
        raise DownloadError(f"{url}: failed after {retries} attempts: {last_error}") from last_error
    if md5 is not None:
        found = md5_of(part)
        if found != md5:
            bad = part.with_name(dest.name + ".bad")
            os.replace(part, bad)
            raise ChecksumError(f"{url}: md5 {found} is not the expected {md5} (kept as {bad})")
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, timeout_s: float, progress: Progress | None) -> None:
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        if have and response.status != 206:  # the server ignored Range: start over
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        if progress:
            progress.start(total, done=have)
        with open(part, "ab" if have else "wb") as out:
            while chunk := response.read(1 << 16):
                out.write(chunk)
                have += len(chunk)
                if progress:
                    progress.update(have)
        if total is not None and have < total:
            raise OSError(f"connection closed at {have} of {total} bytes")
    if progress:
        progress.finish()


def _load_pickle(archive: tarfile.TarFile, name: str) -> dict:
    try:
        member = archive.extractfile(f"{ROOT_DIR}/{name}")
    except KeyError:
        raise CorruptArchiveError(f"the tarball has no {ROOT_DIR}/{name}: not CIFAR-100 (python version)") from None
    if member is None:
        raise CorruptArchiveError(f"{ROOT_DIR}/{name} is not a file")
    return pickle.loads(member.read(), encoding="bytes")


def _split(raw: dict) -> Split:
    data = np.asarray(raw[b"data"], dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise CorruptArchiveError(f"data has shape {data.shape}, expected N×3072")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    names = [n.decode() if isinstance(n, bytes) else n for n in raw[b"filenames"]]
    fine = np.asarray(raw[b"fine_labels"], dtype=np.int64)
    coarse = np.asarray(raw[b"coarse_labels"], dtype=np.int64)
    if not len(images) == len(fine) == len(coarse) == len(names):
        raise CorruptArchiveError("data, labels and filenames differ in length")
    return Split(np.ascontiguousarray(images), fine, coarse, names)


def load(path: Path) -> Cifar:
    """Parse a CIFAR-100 python-version tarball; a truncated or foreign file is a CorruptArchiveError."""
    try:
        with tarfile.open(path, "r:*") as archive:
            train, test, meta = (_load_pickle(archive, n) for n in ("train", "test", "meta"))
    except tarfile.ReadError:
        raise CorruptArchiveError(
            f"{path} is not a tar archive: expected CIFAR-100's python version "
            f"({CIFAR100_FILENAME}, md5 {CIFAR100_MD5})"
        ) from None
    except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError, zlib.error) as exc:
        raise CorruptArchiveError(f"{path}: cannot read the tarball ({type(exc).__name__}: {exc})") from exc
    except KeyError as exc:
        raise CorruptArchiveError(f"{path}: a pickle lacks the key {exc}") from exc
    try:
        fine_names = [n.decode() for n in meta[b"fine_label_names"]]
        coarse_names = [n.decode() for n in meta[b"coarse_label_names"]]
        return Cifar(_split(train), _split(test), fine_names, coarse_names)
    except KeyError as exc:
        raise CorruptArchiveError(f"{path}: a pickle lacks the key {exc}") from exc


def write(path: Path, train: Split, test: Split, fine_names: list[str], coarse_names: list[str]) -> Path:
    """Write a tarball in the exact CIFAR-100 python format; byte-identical for identical input."""

    def pickled(split: Split, label: str) -> bytes:
        rows = split.images.transpose(0, 3, 1, 2).reshape(len(split.images), 3072)
        return pickle.dumps(
            {
                b"filenames": [n.encode() for n in split.filenames],
                b"batch_label": label.encode(),
                b"fine_labels": [int(x) for x in split.fine_labels],
                b"coarse_labels": [int(x) for x in split.coarse_labels],
                b"data": np.ascontiguousarray(rows, dtype=np.uint8),
            },
            protocol=2,
        )

    meta = pickle.dumps(
        {
            b"fine_label_names": [n.encode() for n in fine_names],
            b"coarse_label_names": [n.encode() for n in coarse_names],
        },
        protocol=2,
    )
    members = {
        "train": pickled(train, "training batch 1 of 1"),
        "test": pickled(test, "testing batch 1 of 1"),
        "meta": meta,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with (
        open(tmp, "wb") as raw,
        gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as archive,
    ):
        for name, blob in members.items():
            info = tarfile.TarInfo(f"{ROOT_DIR}/{name}")
            info.size, info.mtime, info.mode = len(blob), 0, 0o644
            archive.addfile(info, io.BytesIO(blob))
    os.replace(tmp, path)
    return path
