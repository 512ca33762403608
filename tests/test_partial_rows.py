"""Stores whose rows hold fewer than N drawn samples (``isskit certify``): summaries count
only what was drawn. References: plain NumPy on the rows as written."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from isskit_cli.main import cli

from isskit.store import open_for_writing, open_store

N = 400


def _store(tmp_path):
    # row 0 full, row 1 drawn to 150 (its tail holds labels that must never be counted),
    # row 2 drawn to 60; labels of 3 classes
    rng = np.random.default_rng(4)
    labels = rng.choice(3, size=(3, N), p=[0.7, 0.2, 0.1]).astype(np.uint16)
    labels[1, 150:] = 2  # would make class 2 the top class if the tail were counted
    labels[2, 60:] = 1
    drawn = np.array([N, 150, 60])
    path = tmp_path / "p.h5"
    with open_for_writing(path, image_index=[3, 4, 5], true_label=[0, 0, 1],
                          samples_per_image=N, attrs={"sigma": 0.25, "num_classes": 3}) as w:
        w.write_rows_at([0, 1, 2], labels, [2.0, 1.5, 0.6], drawn=drawn)
    return path, labels, drawn


def test_top_class_frequency_and_time_count_only_drawn_samples(tmp_path):
    path, labels, drawn = _store(tmp_path)
    want = [np.bincount(labels[i, :drawn[i]], minlength=3).max() / drawn[i] for i in range(3)]
    with open_store(path) as s:
        np.testing.assert_allclose(s.top_class_frequency(), want, rtol=0, atol=1e-15)
        assert s.seconds_per_sample() == (2.0 + 1.5 + 0.6) / (N + 150 + 60)


def test_info_reports_what_was_drawn(tmp_path):
    path, _, drawn = _store(tmp_path)
    res = CliRunner().invoke(cli, ["info", str(path), "--json", "--no-progress"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)["drawn"]
    assert d == {"total": int(drawn.sum()), "min": 60, "median": 150.0, "max": N,
                 "rows_below_N": 2}
    text = CliRunner().invoke(cli, ["info", str(path), "--no-progress"]).output
    assert "drawn 60 to 400 (median 150), 2 complete rows below N" in text
