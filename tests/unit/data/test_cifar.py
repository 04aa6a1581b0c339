import gzip
import hashlib
import http.server
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from scones.data import cifar, synthetic
from scones.data.classes import FINE_LABELS


def test_written_tarball_has_the_exact_cifar_layout(cifar_tarball):
    with tarfile.open(cifar_tarball) as archive:
        assert sorted(archive.getnames()) == [
            "cifar-100-python/meta",
            "cifar-100-python/test",
            "cifar-100-python/train",
        ]
        train = pickle.loads(archive.extractfile("cifar-100-python/train").read(), encoding="bytes")
        meta = pickle.loads(archive.extractfile("cifar-100-python/meta").read(), encoding="bytes")
    assert set(train) == {b"filenames", b"batch_label", b"fine_labels", b"coarse_labels", b"data"}
    assert train[b"data"].shape == (18, 3072) and train[b"data"].dtype == np.uint8
    assert meta[b"fine_label_names"][8] == b"bicycle" and len(meta[b"coarse_label_names"]) == 20


def test_load_round_trips_pixels_in_channel_planes(cifar_tarball):
    data = cifar.load(cifar_tarball)
    with tarfile.open(cifar_tarball) as archive:
        raw = pickle.loads(archive.extractfile("cifar-100-python/train").read(), encoding="bytes")[b"data"]
    # row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major
    assert data.train.images[0, 0, 1, 0] == raw[0, 1]
    assert data.train.images[0, 0, 0, 1] == raw[0, 1024]
    assert data.train.images[0, 31, 31, 2] == raw[0, 3071]
    assert data.train.filenames[0] == "bicycle_s_000000.png"
    assert data.fine_label_names == FINE_LABELS[:] or data.fine_label_names == list(FINE_LABELS)


def test_truncated_tarball_is_a_named_error(cifar_tarball, tmp_path):
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(cifar_tarball.read_bytes()[:4000])
    with pytest.raises(cifar.CorruptArchiveError, match="cannot read"):
        cifar.load(cut)


def test_foreign_tarball_is_a_named_error(tmp_path):
    path = tmp_path / "other.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        archive.add(__file__, arcname="something/else.py")
    with pytest.raises(cifar.CorruptArchiveError, match="no cifar-100-python/train"):
        cifar.load(path)
    not_tar = tmp_path / "x.tar.gz"
    not_tar.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(cifar.CorruptArchiveError):
        cifar.load(not_tar)


def test_synthetic_is_deterministic_per_seed(tmp_path):
    a = synthetic.write_tarball(tmp_path / "a.tgz", ["bicycle", "tank"], seed=3, train_per_class=4, test_per_class=2)
    b = synthetic.write_tarball(tmp_path / "b.tgz", ["bicycle", "tank"], seed=3, train_per_class=4, test_per_class=2)
    c = synthetic.write_tarball(tmp_path / "c.tgz", ["bicycle", "tank"], seed=4, train_per_class=4, test_per_class=2)
    assert cifar.md5_of(a) == cifar.md5_of(b) != cifar.md5_of(c)
    data = cifar.load(a)
    assert data.train.images.shape == (8, 32, 32, 3) and data.test.images.shape == (4, 32, 32, 3)
    assert set(data.train.fine_labels) == {FINE_LABELS.index("bicycle"), FINE_LABELS.index("tank")}
    assert not set(data.train.filenames) & set(data.test.filenames)  # train and test never overlap


def test_synthetic_refuses_non_vehicles(tmp_path):
    with pytest.raises(ValueError, match="only the vehicle classes"):
        synthetic.write_tarball(tmp_path / "x.tgz", ["apple"], train_per_class=1, test_per_class=1)


class _Server:
    """Serves one file on 127.0.0.1; can drop the first response half-way to test resuming."""

    def __init__(self, blob: bytes, drop_first: bool = False, status: int = 200):
        self.blob, self.drop_first, self.status = blob, drop_first, status
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer.ranges.append(self.headers.get("Range"))
                if outer.status != 200:
                    self.send_error(outer.status)
                    return
                start = int(self.headers["Range"].split("=")[1].rstrip("-")) if self.headers.get("Range") else 0
                body = outer.blob[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.drop_first and len(outer.ranges) == 1:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/cifar-100-python.tar.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def blob(cifar_tarball) -> bytes:
    return cifar_tarball.read_bytes()


def test_download_checks_md5(blob, tmp_path):
    server = _Server(blob)
    try:
        path = cifar.download(server.url, tmp_path / "c.tar.gz", md5=hashlib.md5(blob).hexdigest(), retries=1)
        assert path.read_bytes() == blob
        again = cifar.download(server.url, tmp_path / "c.tar.gz", md5=hashlib.md5(blob).hexdigest(), retries=1)
        assert again == path and len(server.ranges) == 1  # cached: no second request
    finally:
        server.close()


def test_download_rejects_md5_mismatch(blob, tmp_path):
    server = _Server(blob)
    try:
        with pytest.raises(cifar.ChecksumError, match="is not the expected eb9058c3"):
            cifar.download(server.url, tmp_path / "c.tar.gz", md5=cifar.CIFAR100_MD5, retries=1)
        assert not (tmp_path / "c.tar.gz").exists()  # never mistaken for a good download
    finally:
        server.close()


def test_download_resumes_a_broken_connection(blob, tmp_path):
    server = _Server(blob, drop_first=True)
    try:
        path = cifar.download(server.url, tmp_path / "c.tar.gz", md5=hashlib.md5(blob).hexdigest(), retries=3)
        assert path.read_bytes() == blob
        assert server.ranges[0] is None and server.ranges[1] == f"bytes={len(blob) // 2}-"
    finally:
        server.close()


def test_download_http_404_fails_at_once(tmp_path):
    server = _Server(b"", status=404)
    try:
        with pytest.raises(cifar.DownloadError, match="HTTP 404"):
            cifar.download(server.url, tmp_path / "c.tar.gz", retries=3)
        assert len(server.ranges) == 1
    finally:
        server.close()


def test_unreachable_url_is_a_download_error(tmp_path):
    with pytest.raises(cifar.DownloadError, match="failed after 2 attempts"):
        cifar.download("http://127.0.0.1:9/nothing.tar.gz", tmp_path / "c.tar.gz", retries=2, timeout_s=2)
    assert not Path(tmp_path / "c.tar.gz").exists()
