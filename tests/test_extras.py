"""Install what you use: every command but sample works with torch and matplotlib absent.

Each case runs the real CLI in a fresh interpreter where ``torch``, ``torchvision`` and
``matplotlib`` cannot be imported (a finder first on ``sys.meta_path`` raises the
``ModuleNotFoundError`` a missing package raises), and checks that the command works
and never imported them, or (sample, --plot) stops with exit status 2 and the
``pip install`` line of the extra it needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from isskit.studies.synthetic import write_synthetic_store

REPO = Path(__file__).resolve().parents[1]
LOG = REPO / "data" / "published" / "certify-logs" / \
    "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50"
BLOCKED = ("torch", "torchvision", "matplotlib")

_DRIVER = """
import json, sys

class _NotInstalled:  # answers every import of the blocked packages as pip's absence would
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)

sys.meta_path.insert(0, _NotInstalled())
from click.testing import CliRunner
from isskit_cli.main import cli
res = CliRunner().invoke(cli, sys.argv[1:])
loaded = sorted(m for m in {blocked!r} if sys.modules.get(m) is not None)
print(json.dumps({{"code": res.exit_code, "out": res.output, "loaded": loaded,
                  "exc": repr(res.exception) if res.exit_code not in (0, 1, 2) else None}}))
"""


def _run(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "cli")])
    code = _DRIVER.format(blocked=BLOCKED)
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("extras") / "s.h5"
    p_A = np.linspace(0.4, 1.0, 12)
    write_synthetic_store(path, p_A, predicted=np.zeros(12, int), true_label=np.zeros(12, int),
                          samples_per_image=2000, num_classes=3, sigma=0.5, seed=0)
    return path


def test_commands_without_torch_or_matplotlib(store, tmp_path):
    imported = tmp_path / "imagenet.h5"
    cases = [
        ["import-log", LOG, "--out", imported, "--samples", "1200"],
        ["replay", imported, "-p", "IAS-0.1", "-p", "ias n=500", "--json"],
        ["replay", store, "-p", "ISS-AD-0.2-0.1", "-p", "ias n=2000", "--out", tmp_path / "r.nc",
         "--export-cohen", tmp_path / "logs"],
        ["info", store, "--json"],
        ["psi", "--k-bar", "1e4", "--U", "0.05", "--decline", "ad", "--sigma", "0.5"],
        ["verify", "--k-bar", "1e3", "--U", "0.05", "--decline", "ad", "--sigma", "0.5"],
        ["audit", "--p-A", "0.9", "--policy", "ias n=100", "--trials", "1000"],
    ]
    for args in cases:
        res = _run(*args)
        assert res["code"] == 0, (args, res)
        assert res["loaded"] == [], (args, res["loaded"])
    obj = json.loads(_run("replay", imported, "-p", "IAS-0.1", "--json")["out"])
    assert obj["policies"][0]["name"] == "IAS-0.1" and obj["n_images"] == 500


@pytest.mark.parametrize("args, extra", [
    (["sample", "--N", "100", "--out", "{tmp}/s.h5"], "torch"),
    (["replay", "{store}", "-p", "IAS-0.1", "--plot", "{tmp}/figs"], "plot"),
    (["psi", "--k-bar", "1e4", "--U", "0.05", "--decline", "ad", "--sigma", "0.5",
      "--plot", "{tmp}/psi.png"], "plot"),
])
def test_missing_extra_is_a_usage_error(args, extra, store, tmp_path):
    args = [a.format(tmp=tmp_path, store=store) for a in args]
    res = _run(*args)
    assert res["code"] == 2, res
    assert f"pip install 'isskit[{extra}]'" in res["out"]
    assert "Traceback" not in res["out"]
    assert not (tmp_path / "s.h5").exists() and not (tmp_path / "figs").exists()
