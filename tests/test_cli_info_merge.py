"""``isskit info`` and ``isskit merge`` through click's test runner."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from isskit_cli.info import HIST_EDGES
from isskit_cli.main import cli

from isskit.store import open_for_writing, open_store
from isskit.studies.synthetic import write_synthetic_store

P_A = np.array([1.0, 0.999, 0.97, 0.8, 0.62, 0.3, 1.0, 0.9])


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "syn.h5"
    write_synthetic_store(
        path,
        P_A,
        predicted=np.arange(8) % 10,
        true_label=np.arange(8) % 10,
        samples_per_image=20_000,
        num_classes=10,
        sigma=0.5,
        seed=3,
        seconds_per_sample=2.5e-5,
        attrs={"model": "toy-cnn sha256=0123", "dataset": "cifar10-test"},
    )
    return path


def _reference_histogram(path):
    # Independent of isskit's blockwise bincount: one np.bincount per row.
    with open_store(path) as s:
        labels, complete = s.labels(), s.complete
    freq = np.array([np.bincount(r, minlength=10).max() / r.size for r in labels])[complete]
    counts = np.histogram(freq[freq < 1], bins=HIST_EDGES)[0].tolist()
    return [*counts, int(np.sum(freq == 1))], freq


def test_info_json_is_one_object_with_the_facts(store):
    res = CliRunner().invoke(cli, ["info", str(store), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # stdout holds exactly one JSON object
    assert out["n_images"] == 8 and out["complete"] == 8 and out["incomplete"] == 0
    assert out["samples_per_image"] == 20_000 and out["sigma"] == 0.5
    assert out["num_classes"] == 10 and out["model"] == "toy-cnn sha256=0123"
    assert out["dataset"] == "cifar10-test" and out["seed"] == 3
    assert out["seconds_per_sample"] == pytest.approx(2.5e-5)
    assert out["file_bytes"] == store.stat().st_size
    assert out["bytes_per_sample"] == pytest.approx(store.stat().st_size / (8 * 20_000))
    counts, freq = _reference_histogram(store)
    assert out["top_class_frequency"]["counts"] == counts
    assert out["top_class_frequency"]["mean"] == pytest.approx(freq.mean())
    assert len(out["top_class_frequency"]["bins"]) == len(counts)
    assert out["created_at"] and out["schema_version"] == 2


def test_info_text(store):
    res = CliRunner().invoke(cli, ["info", str(store)])
    assert res.exit_code == 0, res.output
    text = res.stdout
    assert "8 (8 complete, 0 incomplete)" in text
    assert "20,000 per image" in text and "toy-cnn sha256=0123" in text
    assert "2.5e-05 s per sample" in text and "bytes per stored sample" in text
    counts, _ = _reference_histogram(store)
    lines = [ln for ln in text.splitlines() if ln.startswith("  ")]
    assert [int(ln.split()[-2 if ln.rstrip().endswith("#") else -1]) for ln in lines] == counts


def test_info_incomplete_store(tmp_path):
    path = tmp_path / "part.h5"
    with open_for_writing(
        path,
        image_index=[0, 1, 2],
        true_label=[0, 0, 0],
        samples_per_image=10,
        attrs={"sigma": 0.25, "num_classes": 3},
    ) as w:
        w.write_row(1, np.array([0] * 7 + [1] * 3), 0.5)
    res = CliRunner().invoke(cli, ["info", str(path), "--json"])
    out = json.loads(res.stdout)
    assert out["complete"] == 1 and out["incomplete"] == 2
    assert out["seconds_per_sample"] == pytest.approx(0.05)
    assert out["top_class_frequency"]["counts"][3] == 1  # 0.7 lies in the 4th bin, [0.7, 0.8)
    assert sum(out["top_class_frequency"]["counts"]) == 1
    assert out["model"] is None
    res = CliRunner().invoke(cli, ["info", str(path)])
    assert "model    unknown" in res.stdout


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "does not exist"), (b"hello", "not an HDF5 file")],
)
def test_info_bad_file_is_a_usage_error(tmp_path, content, match):
    path = tmp_path / "x.h5"
    if content is not None:
        path.write_bytes(content)
    res = CliRunner().invoke(cli, ["info", str(path)])
    assert res.exit_code == 2 and match in res.output
    assert "Traceback" not in res.output


def _rank(path, index, rank, world=2):
    write_synthetic_store(
        path,
        np.full(len(index), 0.9),
        predicted=np.zeros(len(index), int),
        true_label=np.zeros(len(index), int),
        samples_per_image=1000,
        num_classes=10,
        sigma=0.25,
        seed=5,
        image_index=index,
        attrs={"rank": rank, "world_size": world},
    )


def test_merge_command(tmp_path):
    _rank(tmp_path / "r0.h5", [0, 2, 4], 0)
    _rank(tmp_path / "r1.h5", [1, 3], 1)
    out = tmp_path / "all.h5"
    res = CliRunner().invoke(
        cli, ["merge", str(out), str(tmp_path / "r0.h5"), str(tmp_path / "r1.h5")]
    )
    assert res.exit_code == 0, res.output
    assert "merged 2 store(s)" in res.stdout and "5 images" in res.stdout
    with open_store(out) as s, open_store(tmp_path / "r1.h5") as r1:
        assert s.image_index.tolist() == [0, 1, 2, 3, 4] and s.complete.all()
        np.testing.assert_array_equal(s.labels(3), r1.labels(1))
    res = CliRunner().invoke(
        cli,
        [
            "merge",
            str(tmp_path / "j.h5"),
            str(tmp_path / "r0.h5"),
            str(tmp_path / "r1.h5"),
            "--json",
        ],
    )
    assert json.loads(res.stdout)["n_images"] == 5


def test_merge_command_errors(tmp_path):
    _rank(tmp_path / "r0.h5", [0, 1], 0)
    _rank(tmp_path / "r1.h5", [1, 2], 1)
    res = CliRunner().invoke(
        cli, ["merge", str(tmp_path / "m.h5"), str(tmp_path / "r0.h5"), str(tmp_path / "r1.h5")]
    )
    assert res.exit_code == 2 and "images 1 values [1] are doubled" in res.output
    assert "Traceback" not in res.output and not (tmp_path / "m.h5").exists()
    res = CliRunner().invoke(cli, ["merge", str(tmp_path / "m.h5"), str(tmp_path / "r0.h5")])
    assert res.exit_code == 2 and "rank(s) [1] of world_size 2 are missing" in res.output
    res = CliRunner().invoke(cli, ["merge", str(tmp_path / "m.h5")])
    assert res.exit_code == 2


def test_help_texts():
    for name in ("info", "merge"):
        res = CliRunner().invoke(cli, [name, "--help"])
        assert res.exit_code == 0 and "store" in res.output.lower()
