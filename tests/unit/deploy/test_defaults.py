"""One place for each default: the CLI's flags default to None, and the Spec or scones.core.settings decides.

A literal default typed into the parser again (argparse's `default=`) would make two places to change; these
tests fail when one creeps back.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import replace

import pytest

from scones.cli.parser import build_parser
from scones.core import settings
from scones.core.errors import UsageError
from scones.deploy import flags, spec
from scones.deploy.spec import Spec

# The commands whose flags build the deployment's Spec (flags.spec_from_args).
SPEC_COMMANDS = ("deploy", "clean", "train")


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


@pytest.fixture
def no_settings(monkeypatch):
    """No environment variable behind any of the Spec's choices: the defaults alone decide."""
    for name in (
        settings.STACK_NAME,
        settings.BUCKET,
        settings.PREFIX,
        settings.SCONES_ENDPOINT_NAME,
        settings.AWS_REGION,
        "AWS_REGION",
        settings.SAGEMAKER_ROLE,
        settings.CAPTURE_PREFIX,
        settings.THRESHOLD,
        settings.OLD_THRESHOLD,
        settings.WORKFLOW_TYPE,
    ):
        monkeypatch.delenv(name, raising=False)


def test_every_flag_that_sets_the_spec_defaults_to_none():
    # given: the deploy, clean and train commands' flags that set a Spec field
    found = 0
    for command in SPEC_COMMANDS:
        for action in options(subcommands()[command]):
            if action.dest in flags.FLAG_FIELDS or action.dest == "classes":
                found += 1
                # then: none carries its own default; the spec fills it
                assert action.default is None, f"scones {command} {action.option_strings[0]}: {action.default!r}"
    assert found >= len(flags.FLAG_FIELDS)  # every mapped flag exists on some command


def test_every_flag_maps_to_a_field_of_the_spec():
    assert set(flags.FLAG_FIELDS.values()) <= set(spec.FIELDS)


def test_no_flags_and_no_settings_make_the_default_spec(no_settings):
    # given: `scones deploy --target aws` with nothing chosen and no environment
    args = build_parser().parse_args(["deploy", "--target", "aws"])
    # then: the spec is Spec's defaults, which are settings' defaults where the environment can choose
    assert flags.spec_from_args(args) == Spec()
    assert (Spec().stack, Spec().bucket, Spec().prefix, Spec().endpoint) == (
        settings.DEFAULT_STACK_NAME,
        settings.DEFAULT_BUCKET,
        settings.DEFAULT_PREFIX,
        settings.DEFAULT_ENDPOINT_NAME,
    )
    assert (Spec().region, Spec().capture_prefix, Spec().threshold) == (
        settings.DEFAULT_REGION,
        settings.DEFAULT_CAPTURE_PREFIX,
        settings.DEFAULT_THRESHOLD,
    )
    assert (settings.stack_name(), settings.bucket(), settings.endpoint_name(), settings.capture_prefix()) == (
        Spec().stack,
        Spec().bucket,
        Spec().endpoint,
        Spec().capture_prefix,
    )


def test_the_environment_fills_what_no_flag_chose_and_a_flag_beats_it(no_settings, monkeypatch):
    monkeypatch.setenv(settings.BUCKET, "env-bucket")
    monkeypatch.setenv(settings.STACK_NAME, "env-workflow")
    monkeypatch.setenv(settings.THRESHOLD, "0.8")
    args = build_parser().parse_args(["deploy", "--target", "aws", "--bucket", "flag-bucket", "--spot"])
    assert flags.spec_from_args(args) == replace(
        Spec(), bucket="flag-bucket", stack="env-workflow", threshold=0.8, spot=True
    )
    monkeypatch.setenv(settings.THRESHOLD, "not a number")  # read only when no flag chose it
    args = build_parser().parse_args(["deploy", "--target", "aws", "--threshold", "0.5"])
    assert flags.spec_from_args(args).threshold == 0.5


def test_train_local_s_flags_reach_the_spec(no_settings):
    args = build_parser().parse_args(["train", "--mode", "sagemaker-local", "--epochs", "2", "--prefix", "p"])
    assert flags.spec_from_args(args) == replace(Spec(), epochs=2, prefix="p")


def test_the_help_shows_the_spec_s_own_defaults():
    # given: every "(default X)" in the deploy flags' help that names a Spec field's default
    helps = {a.dest: a.help or "" for a in options(subcommands()["deploy"])}
    for dest, field in flags.FLAG_FIELDS.items():
        shown = re.search(r"\(default ([^)$]+)\)", helps.get(dest, ""))
        if shown and not shown.group(1).startswith(("2 x", "the ")):
            # then: it is the Spec's default, not a copy that could drift
            assert shown.group(1) == str(spec.default(field)), dest
    assert helps["classes"] == f"default {','.join(spec.default('classes'))}"


def test_no_option_that_names_a_variable_has_a_literal_default():
    """An option whose default comes from the environment must read it when it runs: its default is None."""
    for name, parser in subcommands().items():
        for action in options(parser):
            if re.search(r"\$(SCONES_|AWS_)", action.help or ""):
                assert action.default is None, f"scones {name} {action.option_strings[0]}: {action.default!r}"


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [
        ("--threshold", "nan", "--threshold"),
        ("--threshold", "1.5", "--threshold"),
        ("--epochs", "-3", "--epochs"),
        ("--bucket", "../../etc", "--bucket"),
        ("--bucket", "Not_A_Bucket", "--bucket"),
        ("--role", "not a role!", "--role"),
    ],
)
def test_the_dry_run_refuses_every_flag_the_deploy_would(no_settings, flag, value, named):
    """Issue #21: `deploy --target aws --dry-run` accepted all of these and printed a plan."""
    args = build_parser().parse_args(["deploy", "--target", "aws", "--dry-run", flag, value])
    with pytest.raises(UsageError, match=named):
        flags.spec_from_args(args)


@pytest.mark.parametrize("role", ["SageMakerRole", "arn:aws:iam::123456789012:role/service-role/SageMaker-x"])
def test_a_role_name_or_arn_is_accepted(no_settings, role):
    args = build_parser().parse_args(["deploy", "--target", "aws", "--dry-run", "--role", role])
    assert flags.spec_from_args(args).role == role
