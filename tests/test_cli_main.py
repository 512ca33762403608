"""The click group: help, version, and that --help imports no heavy library."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner
from isskit_cli.main import cli

from isskit import __version__


def test_version_and_help():
    runner = CliRunner()
    res = runner.invoke(cli, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = runner.invoke(cli, ["--help"])
    assert res.exit_code == 0 and "Input-specific sampling" in res.output


def test_unknown_command_is_usage_error():
    res = CliRunner().invoke(cli, ["no-such-command"])
    assert res.exit_code == 2 and "No such command" in res.output


def test_help_imports_no_torch():
    code = (
        "import sys; from isskit_cli.main import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
