"""The figure plumbing every plot shares: matplotlib on demand, written atomically.

matplotlib is the ``plot`` extra: :func:`pyplot` imports it (non-interactive Agg backend, no
window ever) or says which ``pip install`` brings it; :func:`label_axes` gives an axes its
labels, title, grid and legend in the house layout; :func:`save` writes a figure through
:func:`isskit._atomic.atomic_path` and closes it (sweeps draw many).
"""

from __future__ import annotations

from pathlib import Path

from isskit._atomic import atomic_path
from isskit._extras import require_extra

__all__: list[str] = []


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend; MissingExtraError naming the plot extra."""
    matplotlib = require_extra("matplotlib", "plot", "figures (--plot)")
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def label_axes(ax, xlabel: str, ylabel: str, title: str, *, legend_size: float = 6,
               **legend) -> None:
    """Axis labels, title, a light grid and a small legend (``legend``: its other options)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size, **legend)


def save(plt, fig, path, *, tight: bool = True) -> Path:
    """Lay out (``tight``), write atomically and close a figure; the path written."""
    path = Path(path)
    try:
        if tight:
            fig.tight_layout()
        with atomic_path(path) as tmp:  # the temporary keeps the suffix: same format
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
    return path
