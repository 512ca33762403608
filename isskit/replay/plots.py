"""Figures of a replay's results: ACR, certified accuracy, k_hat, samples against CA(r).

ACR against time, certified accuracy on a radius grid and ISS's k_hat against p_A for the
radius policies; certified accuracy at r against mean samples for the decision policies.
Reads only the ``xarray.Dataset`` that :func:`isskit.replay.replay` returns, and writes PNG
files. matplotlib is imported here, so import this module only when plotting (the CLI does,
for ``--plot``); it uses the non-interactive Agg backend and never shows a window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isskit._figures import label_axes, pyplot, save
from isskit.replay.metrics import certified_accuracy
from isskit.replay.results import decision_policies

__all__ = [
    "FIGURES",
    "plot_acr_vs_time",
    "plot_all",
    "plot_certified_accuracy",
    "plot_k_hat",
    "plot_samples_vs_ca",
    "samples_ca_curves",
]

#: The files :func:`plot_all` writes into its folder: the first two with radius policies,
#: the third with ISS policies, the last with decision policies.
FIGURES = ("acr_vs_time.png", "certified_accuracy.png", "k_hat_vs_p_A.png",
           "samples_vs_ca.png")
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
    label_axes(ax, xlabel, "ACR",
               f"ACR against cost, {ds.sizes['image']} images, sigma = {ds.attrs['sigma']:g}",
               legend_size=7)
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
    title = "Certified accuracy"
    if n > MAX_CURVES:
        title += f" ({MAX_CURVES} of {n} policies)"
    label_axes(ax, "radius r", "certified accuracy (radius > r)", title)
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
    label_axes(ax, "empirical p_A (top-class frequency of the whole stream)",
               "k_hat (0 drawn at 0.5)", "ISS sample size per image", markerscale=2)
    return save(plt, fig, path)


def _family(ds, i: int) -> str:
    """A decision policy's curve: its kind (and cs method, faithful), other parameters varying."""
    kind = str(ds.kind.values[i])
    label = {"cs": "CS", "staged": "Staged", "adaptive": "Adaptive"}.get(kind, kind)
    if kind == "cs":
        label += " KT" if str(ds.method.values[i]) == "kt" else " union"
        if bool(ds.faithful.values[i]):
            label += " faithful"
    return label


def samples_ca_curves(ds) -> dict:
    """The data of :func:`plot_samples_vs_ca`: per r, per family, mean samples and CA(r).

    Parameters
    ----------
    ds : xarray.Dataset
        Replay results with decision policies.

    Returns
    -------
    dict
        ``{r: {label: (mean_samples, certified_accuracy_at_r)}}``, both arrays sorted by
        mean samples, read from the Dataset's ``mean_samples`` and ``certified_accuracy_at_r``;
        the label ``"reference <name>"`` holds each reference policy (Cohen's CERTIFY by
        default) at its own mean samples (``speedup x mean_samples``) and its certified
        accuracy at r (``reference_certified_accuracy_at_r``).
    """
    out: dict = {}
    decision = np.flatnonzero(decision_policies(ds))
    x_all, y_all = ds.mean_samples.values, ds.certified_accuracy_at_r.values
    for i in decision:
        r = float(ds.r.values[i])
        curves = out.setdefault(r, {})
        xs, ys = curves.get(_family(ds, i), ((), ()))
        curves[_family(ds, i)] = ((*xs, float(x_all[i])), (*ys, float(y_all[i])))
        ref = f"reference {ds.reference.values[i]}"
        curves[ref] = ((float(ds.speedup.values[i] * x_all[i]),),
                       (float(ds.reference_certified_accuracy_at_r.values[i]),))
    for curves in out.values():
        for label, (xs, ys) in curves.items():
            order = np.argsort(xs, kind="stable")
            curves[label] = (np.asarray(xs)[order], np.asarray(ys)[order])
    return dict(sorted(out.items()))


def plot_samples_vs_ca(ds, path) -> Path | None:
    """Certified accuracy at r against mean samples, one panel per r (None without decisions).

    One curve per decision family (:func:`samples_ca_curves`; a family with one policy per
    r is a point), the reference as a star; mean samples on a log scale.

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
    curves = samples_ca_curves(ds)
    if not curves:
        return None
    plt = pyplot()
    n = len(curves)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (r, by_family) in zip(axes.flat, curves.items(), strict=False):
        for label, (x, y) in by_family.items():
            style = "k*" if label.startswith("reference") else "o-"
            ax.plot(x, 100 * y, style, label=label, markersize=7 if style == "k*" else 4)
        ax.set_xscale("log")
        label_axes(ax, "mean samples per image", f"certified accuracy at r = {r:g} (%)",
                   f"r = {r:g}")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    return save(plt, fig, path)


def plot_all(ds, directory) -> list[Path]:
    """Write every figure into ``directory`` (created if needed); return the files written.

    The ACR, certified-accuracy and k_hat figures show the radius policies (ACR and a
    radius grid do not apply to decision policies); the samples-against-CA figure the
    decision policies.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    acr, ca, k_hat, samples = (d / name for name in FIGURES)
    decision = decision_policies(ds)
    out = []
    if not decision.all():
        radius = ds.isel(policy=np.flatnonzero(~decision))
        out += [plot_acr_vs_time(radius, acr), plot_certified_accuracy(radius, ca)]
        k = plot_k_hat(radius, k_hat)
        if k is not None:
            out.append(k)
    if decision.any():
        out.append(plot_samples_vs_ca(ds, samples))
    return out
