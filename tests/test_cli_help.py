"""Every command's --help: exits 0, keeps its examples on their own lines, imports lazily."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from isskit_cli.main import COMMANDS, cli


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_examples_are_not_rewrapped(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "\b" not in res.output and "\\b" not in res.output
    examples = [ln for ln in res.output.splitlines() if ln.lstrip().startswith(f"isskit {name}")]
    # an example that click re-wrapped would run into the prose around it
    for line in examples:
        assert line.startswith("    "), line


def test_audit_confidence_names_the_value():
    res = CliRunner().invoke(cli, ["audit", "--confidence", "2", "--trials", "10"])
    assert res.exit_code == 2
    assert "confidence (2.0) must be in (0, 1)" in res.output
    assert "Traceback" not in res.output
