"""The figure of the ISS mapping: the sample size psi against p_A (the paper's Fig. 6, upper).

Needs the ``plot`` extra (matplotlib), imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path

from isskit._figures import pyplot, save

__all__ = ["plot_psi"]


def plot_psi(tables, path) -> Path:
    """Draw the sample size against p_A on [0.5, 1], one line per table, and write it.

    Parameters
    ----------
    tables : sequence of PsiTable
        Tables of the same decline, sigma and alpha (:func:`isskit.psi.psi_table`).
    path : str or Path
        The figure file; its suffix chooses the format. Written atomically.

    Returns
    -------
    Path
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.5), constrained_layout=True)
    for t in tables:
        # psi spans 0 (abstain) to k_bar and climbs steeply near p_A = 1, so a linear axis
        # shows one spike; on a log axis the abstaining points (k = 0) are left out.
        sel = (t.p >= 0.5) & (t.k > 0)
        ax.plot(t.p[sel], t.k[sel], label=f"k_bar={t.k_bar}, U={t.U:g}")
    t0 = tables[0]
    ax.set_yscale("log")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_xlabel("p_A")
    ax.set_ylabel("sample size k = psi(p_A), log scale")
    ax.set_title(f"ISS mapping ({t0.decline.upper()}, sigma={t0.sigma:g}, alpha={t0.alpha:g})")
    ax.legend(fontsize="small")
    return save(plt, fig, path, tight=False)
