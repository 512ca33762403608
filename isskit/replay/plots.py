"""Figures of a replay's results: ACR against time, certified accuracy, k_hat against p_A.

Reads only the ``xarray.Dataset`` that :func:`isskit.replay.replay` returns, and writes PNG
files. matplotlib is imported here, so import this module only when plotting (the CLI does,
for ``--plot``); it uses the non-interactive Agg backend and never shows a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isskit._figures import pyplot, save
from isskit.replay.metrics import certified_accuracy

__all__ = ["FIGURES", "plot_acr_vs_time", "plot_all", "plot_certified_accuracy", "plot_k_hat"]

#: The files :func:`plot_all` writes into its folder (the last only with ISS policies).
FIGURES = ("acr_vs_time.png", "certified_accuracy.png", "k_hat_vs_p_A.png")
#: Most policies drawn one by one in a figure; beyond, the figure says how many were left out.
MAX_CURVES = 12
#: Most ISS families (all parameters but U) drawn as curves of their own in the ACR-time
#: figure; beyond, ISS is drawn as points, one series per decline and sampling scheme.
MAX_FAMILIES = 8


def _cost(ds):
    """The x axis: estimated minutes where the sampling time is known, else mean samples."""
    minutes = ds.est_minutes.values
    if np.all(np.isfinite(minutes)):
        return minutes, "estimated time (min)"
    return ds.mean_samples.values, "mean samples per image"


def _groups(ds):
    """Curves of the ACR-time figure: one per policy family, the swept parameter varying.

    ISS: one curve per (decline, k_bar, k0, fresh, alpha, delta, mapping), U varying.
    IAS: one curve per alpha, n varying. Cohen: one curve per (n0, alpha), n varying.
    """
    out: dict[str, list[int]] = {}
    n_families = len({
        (str(ds.decline.values[i]), int(ds.k_bar.values[i]), int(ds.k0.values[i]),
         bool(ds.fresh.values[i]), str(ds.mapping.values[i]), float(ds.delta.values[i]),
         float(ds.alpha.values[i]))
        for i in range(ds.sizes["policy"]) if ds.kind.values[i] == "iss"
    })
    for i in range(ds.sizes["policy"]):
        kind = str(ds.kind.values[i])
        if kind == "iss" and n_families > MAX_FAMILIES:
            # too many curves to tell apart: one series per decline and sampling scheme
            label = f"ISS-{str(ds.decline.values[i]).upper()}" + (
                " fresh" if bool(ds.fresh.values[i]) else "") + " (all k_bar, k0, U)"
        elif kind == "iss":
            label = (
                f"ISS-{str(ds.decline.values[i]).upper()} k_bar={int(ds.k_bar.values[i])}"
                f" k0={int(ds.k0.values[i])}"
                + (" fresh" if bool(ds.fresh.values[i]) else "")
                + (f" {ds.mapping.values[i]}" if str(ds.mapping.values[i]) != "paper" else "")
                + (f" delta={ds.delta.values[i]:g}" if ds.delta.values[i] != 0.001 else "")
            )
        elif kind == "ias":
            label = "IAS"
        else:
            label = f"Cohen n0={int(ds.n0.values[i])}"
        if float(ds.alpha.values[i]) != 0.001:
            label += f" alpha={float(ds.alpha.values[i]):g}"
        out.setdefault(label, []).append(i)
    return out


def plot_acr_vs_time(ds, path) -> Path:
    """ACR against estimated time for every policy (the paper's Figs. 1 and 5).

    Parameters
    ----------
    ds : xarray.Dataset
        Replay results.
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path
    """
    plt = pyplot()
    x, xlabel = _cost(ds)
    y = ds.acr.values
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, idx in _groups(ds).items():
        idx = np.array(idx)[np.argsort(x[idx], kind="stable")]
        if label.endswith("(all k_bar, k0, U)"):
            ax.plot(x[idx], y[idx], "o", label=label, markersize=2.5, alpha=0.5)
            continue
        style = "o-" if label.startswith("ISS") else ("s--" if label.startswith("IAS") else "^:")
        ax.plot(x[idx], y[idx], style, label=label, markersize=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("ACR")
    ax.set_title(f"ACR against cost, {ds.sizes['image']} images, sigma = {ds.attrs['sigma']:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(plt, fig, path)


def plot_certified_accuracy(ds, path) -> Path:
    """Certified accuracy against radius, one curve per policy (at most :data:`MAX_CURVES`).

    Parameters
    ----------
    ds : xarray.Dataset
        Replay results.
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path
    """
    plt = pyplot()
    r_max = float(ds.radius.max()) if ds.radius.size else 1.0
    grid = np.linspace(0.0, max(r_max, 1e-6) * 1.05, 300)
    n = ds.sizes["policy"]
    show = np.arange(n) if n <= MAX_CURVES else np.linspace(0, n - 1, MAX_CURVES).astype(int)
    ca = certified_accuracy(ds.prediction.values[show], ds.radius.values[show],
                            ds.true_label.values, grid)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for k, i in enumerate(show):
        ax.plot(grid, ca[k], label=str(ds.policy.values[i]), linewidth=1)
    ax.set_xlabel("radius r")
    ax.set_ylabel("certified accuracy (radius > r)")
    title = "Certified accuracy"
    if n > MAX_CURVES:
        title += f" ({MAX_CURVES} of {n} policies)"
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
    return save(plt, fig, path)


def plot_k_hat(ds, path) -> Path | None:
    """ISS's sample size k_hat against each image's empirical p_A (None without ISS).

    Parameters
    ----------
    ds : xarray.Dataset
        Replay results.
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path or None
    """
    iss = np.flatnonzero(ds.kind.values == "iss")
    if iss.size == 0:
        return None
    plt = pyplot()
    show = iss if iss.size <= 6 else iss[np.linspace(0, iss.size - 1, 6).astype(int)]
    p = ds.p_A_empirical.values
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i in show:
        ax.scatter(p, np.maximum(ds.k_hat.values[i], 0.5), s=6, alpha=0.6,
                   label=str(ds.policy.values[i]))
    ax.set_yscale("log")
    ax.set_xlabel("empirical p_A (top-class frequency of the whole stream)")
    ax.set_ylabel("k_hat (0 drawn at 0.5)")
    ax.set_title("ISS sample size per image")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, markerscale=2)
    return save(plt, fig, path)


def plot_all(ds, directory) -> list[Path]:
    """Write every figure into ``directory`` (created if needed); return the files written."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    acr, ca, k_hat = (d / name for name in FIGURES)
    out = [
        plot_acr_vs_time(ds, acr),
        plot_certified_accuracy(ds, ca),
    ]
    k = plot_k_hat(ds, k_hat)
    if k is not None:
        out.append(k)
    return out
