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


def names(**changed) -> storage.Names:
    return storage.Names(**{"data": "data", "capture": "datacapture", "stack": "s-workflow", **changed})


@pytest.mark.parametrize(
    "changed",
    [
        {"data": "/"},
        {"data": ""},
        {"data": "data/../"},
        {"capture": "/"},
        {"stack": ""},
        {"stack": ".."},
        {"stack": "a/b"},
        {"endpoints": ("../x",)},
        {"endpoints": ("",)},
        {"jobs": ("job/../..",)},
        {"job_bases": ("",)},
    ],
)
def test_a_bare_or_climbing_prefix_or_name_is_refused_before_any_call(monkeypatch, changed):
    monkeypatch.setattr(storage.aws, "client", lambda *_a, **_k: pytest.fail("no S3 call may be made"))
    with pytest.raises(UsageError, match="refusing"):
        storage.owned_objects("bucket", names(**changed))


def test_the_project_owns_folders_named_after_its_stack_endpoints_and_jobs_never_a_top_level_prefix():
    found = storage.owned_prefixes(
        names(capture="cap/v2", endpoints=("ep", "ep"), jobs=("scones-20250101-000000",), job_bases=("s-train",))
    )
    assert [prefix for _, prefix in found] == [
        "deploy/s-workflow/",
        "backfill/s-workflow/",
        "cap/v2/ep/",
        "monitoring/ep/",
        "models/scones-20250101-000000/",
        "models/s-train-",
    ]
    assert all(prefix.count("/") >= 2 or prefix.startswith("models/s-train-") for _, prefix in found)


def test_a_manifest_entry_that_climbs_out_is_not_the_projects():
    document = {"files": {"train/a.png": "md5", "../other/x": "md5", "/abs": "md5", "": "md5"}}
    assert staged._listed_files(document) == {"train/a.png"}
