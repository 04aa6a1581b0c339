import os

import pytest

from scones.core import settings, target


def test_default_target_is_local(monkeypatch):
    monkeypatch.delenv(settings.TARGET, raising=False)
    assert settings.target() == "local"


def test_unknown_target_is_a_named_error(monkeypatch):
    monkeypatch.setenv(settings.TARGET, "azure")
    with pytest.raises(settings.SettingsError, match="azure"):
        settings.target()


def test_bad_port_is_a_named_error(monkeypatch):
    monkeypatch.setenv(settings.LOCALCLOUD_PORT, "http")
    with pytest.raises(settings.SettingsError, match="not a port"):
        settings.localcloud_port()
    monkeypatch.setenv(settings.LOCALCLOUD_PORT, "70000")
    with pytest.raises(settings.SettingsError, match="outside"):
        settings.localcloud_port()


def test_env_beats_default(monkeypatch):
    monkeypatch.setenv(settings.BUCKET, "my-bucket")
    monkeypatch.setenv(settings.PREFIX, "/staged/")
    assert settings.bucket() == "my-bucket"
    assert settings.prefix() == "staged"


def test_activate_keeps_what_the_user_set(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    monkeypatch.setenv(settings.TARGET, "local")
    monkeypatch.setenv(settings.AWS_ENDPOINT_URL, "http://127.0.0.1:9999")
    target.activate()
    assert os.environ[settings.AWS_ENDPOINT_URL] == "http://127.0.0.1:9999"


def test_resolve_uses_the_running_cloud_record_and_changes_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    monkeypatch.delenv(settings.AWS_ENDPOINT_URL, raising=False)
    (tmp_path / "localcloud.json").write_text('{"url": "http://127.0.0.1:5123", "pid": 1}')
    found = target.resolve("local")
    assert found.endpoint_url == "http://127.0.0.1:5123"
    assert settings.AWS_ENDPOINT_URL not in os.environ  # resolving is pure; activate() applies it
    target.activate("local")
    assert os.environ[settings.AWS_ENDPOINT_URL] == "http://127.0.0.1:5123"


def test_the_explicit_target_beats_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    monkeypatch.setenv(settings.TARGET, "local")
    found = target.resolve("aws")
    assert found.name == "aws" and found.endpoint_url is None and not found.credentials
    with pytest.raises(settings.SettingsError, match="azure"):
        target.resolve("azure")


def test_export_lines_never_echo_real_credentials(monkeypatch):
    monkeypatch.setenv(settings.AWS_SECRET_ACCESS_KEY, "real-secret")
    lines = "\n".join(target.export_lines(target.resolve("aws")))
    assert "real-secret" not in lines
    assert "export SCONES_TARGET=aws" in lines


def test_export_lines_for_local_quote_values(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.STATE_DIR, str(tmp_path))
    monkeypatch.setenv(settings.BUCKET, "it's")
    lines = target.export_lines(target.resolve("local"))
    assert """export SCONES_BUCKET='it'"'"'s'""" in lines
    assert any(line.startswith("export AWS_ENDPOINT_URL=") for line in lines)


@pytest.fixture(autouse=True)
def _forget_target():
    """Each test resolves its own target; none leaks the activated one into the next."""
    from scones.core import aws

    aws.reset()
    yield
    aws.reset()


def test_every_copy_of_the_threshold_default_agrees_with_settings():
    """settings.DEFAULT_THRESHOLD is the one source; the filter Lambda (zipped alone), train.py (runs alone in
    SageMaker's container) and the template's parameter default must carry the same number."""
    import yaml
    from helpers import ROOT, load_lambda

    from training import train

    assert load_lambda("filter_inferences").DEFAULT_THRESHOLD == settings.DEFAULT_THRESHOLD
    assert train.build_parser().get_default("threshold") == settings.DEFAULT_THRESHOLD

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation's short tags
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    assert float(template["Parameters"]["Threshold"]["Default"]) == settings.DEFAULT_THRESHOLD


@pytest.mark.parametrize("name", [settings.PREFIX, settings.CAPTURE_PREFIX])
@pytest.mark.parametrize("value", ["/", "//", "a/../..", ".."])
def test_a_prefix_that_reaches_outside_the_projects_keys_is_refused(monkeypatch, name, value):
    """SCONES_PREFIX=/ once made `scones stage` delete foreign objects as stale (issue #21)."""
    monkeypatch.setenv(name, value)
    read = settings.prefix if name == settings.PREFIX else settings.capture_prefix
    with pytest.raises(settings.SettingsError, match=name):
        read()
