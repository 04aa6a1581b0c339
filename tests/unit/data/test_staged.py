"""scones.data.staged: the channel download refuses keys that would land outside its folder; deleting refuses
prefixes that are not the project's (issue #21: path traversal and deleting what is not ours)."""

from __future__ import annotations

import pytest

from scones import storage
from scones.core.errors import UsageError
from scones.data import staged


@pytest.mark.parametrize("relative", ["../../../../tmp/x", "a/../../x", "/etc/passwd", "", "."])
def test_a_key_that_resolves_outside_the_destination_is_refused(tmp_path, relative):
    with pytest.raises(UsageError, match="outside"):
        staged.inside(tmp_path / "test", relative)


def test_a_key_inside_the_destination_is_kept(tmp_path):
    assert staged.inside(tmp_path / "test", "bicycle/a.png") == (tmp_path / "test" / "bicycle" / "a.png").resolve()


def test_a_link_out_of_the_destination_is_refused(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "out").symlink_to(tmp_path.parent)
    with pytest.raises(UsageError, match="outside"):
        staged.inside(tmp_path / "test", "out/x.png")


@pytest.mark.parametrize("prefix", ["/", "", "data/../"])
def test_deleting_under_a_bare_or_climbing_prefix_is_refused_before_any_call(monkeypatch, prefix):
    monkeypatch.setattr(storage.aws, "client", lambda *_a, **_k: pytest.fail("no S3 call may be made"))
    with pytest.raises(UsageError, match="refusing"):
        storage.delete_prefixes("bucket", ("data/", prefix))


def test_the_project_prefixes_follow_the_settings(monkeypatch):
    monkeypatch.setenv("SCONES_PREFIX", "staged/v2")
    assert storage.project_prefixes() == (
        "staged/v2/",
        "models/",
        "deploy/",
        "datacapture/",
        "monitoring/",
        "backfill/",
    )
    assert storage.project_prefixes("d", "c") == ("d/", "models/", "deploy/", "c/", "monitoring/", "backfill/")
