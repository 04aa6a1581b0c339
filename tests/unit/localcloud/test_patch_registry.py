"""The patch registry: every patch names what it touches, start-up refuses when moto moved a name."""

from __future__ import annotations

import json
import subprocess
import sys
import types

import pytest

from scones import selftest
from services.localcloud import patches
from services.localcloud.patches import sfn_cloudformation


def test_every_patch_declares_its_name_behaviour_and_the_moto_names_it_touches():
    for patch in patches.PATCHES:
        assert patch.NAME and patch.WHAT and callable(patch.apply)
        assert patch.TOUCHES and all(":" in target for target in patch.TOUCHES), patch.NAME
    assert len({p.NAME for p in patches.PATCHES}) == len(patches.PATCHES)


def test_the_self_test_exercises_every_registered_patch():
    assert sorted(selftest.PATCHES) == sorted(p.NAME for p in patches.PATCHES)


def test_every_declared_target_resolves_on_the_pinned_moto():
    patches.check()  # raises PatchError naming the first missing name


def test_a_missing_target_is_a_named_error():
    broken = types.SimpleNamespace(
        NAME="broken-patch", TOUCHES=("moto.awslambda.models:LambdaFunction.no_such_method",), apply=None
    )
    with pytest.raises(patches.PatchError, match=r"'broken-patch'.*LambdaFunction\.no_such_method"):
        patches.check((*patches.PATCHES, broken))
    missing_module = types.SimpleNamespace(NAME="gone", TOUCHES=("moto.no_such_module:x",), apply=None)
    with pytest.raises(patches.PatchError, match=r"'gone'.*moto\.no_such_module"):
        patches.check((missing_module,))


START_WITH_A_BROKEN_PATCH = """
import sys, types
from services.localcloud import patches, server
broken = types.ModuleType("broken")
broken.NAME, broken.WHAT = "broken-patch", "nothing"
broken.TOUCHES = ("moto.stepfunctions.parser.models:StepFunctionsParserBackend.renamed_in_a_later_moto",)
broken.apply = lambda context: None
patches.PATCHES = (*patches.PATCHES, broken)
server.main(["--port", "0", "--state-dir", sys.argv[1]])
"""


def test_start_up_refuses_and_names_the_patch_and_the_missing_name(tmp_path):
    out = subprocess.run(
        [sys.executable, "-c", START_WITH_A_BROKEN_PATCH, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 3
    assert "broken-patch" in out.stderr and "renamed_in_a_later_moto" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "localcloud.json").exists()  # it never listened


def test_definition_substitutions_are_applied_and_unresolved_ones_refused():
    properties = {"Definition": {"StartAt": "P", "Comment": "${Word}"}, "DefinitionSubstitutions": {"Word": "w"}}
    assert json.loads(sfn_cloudformation.definition_from(properties, "123"))["Comment"] == "w"
    with pytest.raises(ValueError, match=r"\$\{Other\}"):
        sfn_cloudformation.definition_from({"DefinitionString": '{"Comment": "${Other}"}'}, "123")


def test_nulls_survive_the_template_cleaner_round_trip():
    definition = {"States": {"Q": {"ResultPath": None, "Result": ["a", None]}}}
    protected = sfn_cloudformation.swap(definition, None, sfn_cloudformation._NULL)
    assert None not in protected["States"]["Q"].values()
    assert sfn_cloudformation.swap(protected, sfn_cloudformation._NULL, None) == definition
