"""Synthetic label streams with a known top-class probability ``p_A``.

A real stream comes from running a model on noisy copies; a synthetic one draws each
label independently: class ``predicted[i]`` with probability ``p_A[i]``, another class
otherwise. Knowing ``p_A`` exactly is what lets the replay benchmark and the validity
audit check policies against the truth, and lets the log importer turn a published
certification log (one count per image) into streams.

The distribution of ``p_A`` over images can be taken from a real model:
:func:`realistic_p_A` resamples the counts recovered from a published certification log
shipped in ``data/published/recovered`` (read by :func:`isskit.logs.read_recovered`, which
this module re-exports with :func:`published_dir` and :data:`DEFAULT_SOURCE`).

Never imports torch and never prints (progress bars go to stderr through tqdm, only when
asked).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isskit._renamed import renamed as _renamed
from isskit._tunables import MAX_CLASSES
from isskit.logs.recovered import DEFAULT_SOURCE, published_dir, read_recovered
from isskit.progress import progress_bar
from isskit.store import open_for_writing
from isskit.validate import OVERHEAD_BYTES, check_memory, check_positive_int, check_sigma

__all__ = [
    "DEFAULT_SOURCE",
    "OTHER_RULES",
    "published_dir",
    "read_recovered",
    "realistic_p_A",
    "synthetic_labels",
    "write_synthetic_store",
]

#: The rule names for the labels of non-top draws (see :func:`synthetic_labels`).
OTHER_RULES = ("uniform", "runner_up")

_ABSTAIN_RULES = ("uniform", "bound", "drop")

#: Memory bound of one block of rows of :func:`write_synthetic_store` (its default).
_BLOCK_BYTES = 32 << 20
#: Bytes per geometric gap :func:`_fill_row` holds at once: the int64 draws and their int64
#: running sum. With the row's own uint16 labels that is at most 2 + 16 bytes per sample,
#: as measured with tracemalloc (tests/test_synthetic.py).
_BYTES_PER_GAP = 16


# ------------------------------------------------------------------ label streams


def _check_p_A(p_A) -> np.ndarray:
    p = np.asarray(p_A, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_A must be one-dimensional (one value per image), got shape {p.shape}")
    bad = ~((p >= 0.0) & (p <= 1.0))  # also catches NaN
    if np.any(bad):
        raise ValueError(f"p_A ({p[bad][0]}) must be in [0, 1] (row {int(np.argmax(bad))})")
    return p


def _check_predicted(predicted, n: int, num_classes: int) -> np.ndarray:
    pred = np.asarray(predicted)
    if pred.shape != (n,) or (n and not np.issubdtype(pred.dtype, np.integer)):
        raise ValueError(
            f"predicted must hold {n} integer classes (one per image), got {pred.shape}"
            f" {pred.dtype}"
        )
    if n and (pred.min() < 0 or pred.max() >= num_classes):
        bad = pred[(pred < 0) | (pred >= num_classes)][0]
        raise ValueError(f"predicted class ({bad}) must be in [0, num_classes={num_classes})")
    return pred.astype(np.int64)


def _check_other(other: str, num_classes: int, p: np.ndarray) -> str:
    if other not in OTHER_RULES:
        raise ValueError(f"other ({other!r}) must be one of {', '.join(OTHER_RULES)}")
    if num_classes < 2 and np.any(p < 1.0):
        raise ValueError(f"num_classes ({num_classes}) must be >= 2 when some p_A < 1")
    return other


def _fill_row(out: np.ndarray, p: float, pred: int, num_classes: int, rng, other: str) -> None:
    """One row: i.i.d. draws, ``pred`` with probability ``p``, else by the ``other`` rule."""
    N = out.size
    out.fill(pred)
    q = 1.0 - p
    if q <= 0.0 or N == 0:
        return
    if q >= 1.0:
        pos = np.arange(N)
    else:
        # The positions of the non-top draws in an i.i.d. Bernoulli(q) sequence: the gaps
        # between them are i.i.d. geometric(q), so drawing the gaps costs O(number of
        # non-top draws) rather than one uniform per sample.
        m = int(_gaps(N, p))
        pos = np.cumsum(rng.geometric(q, size=m)) - 1
        while pos[-1] < N:  # more than 8 standard deviations: extend
            more = np.cumsum(rng.geometric(q, size=m)) + pos[-1]
            pos = np.concatenate([pos, more])
        pos = pos[: np.searchsorted(pos, N)]
    if other == "uniform":
        lab = rng.integers(0, num_classes - 1, size=pos.size, dtype=np.uint16)
        lab += lab >= pred  # skip the top class: uniform over the other num_classes - 1
        out[pos] = lab
    else:
        out[pos] = (pred + 1) % num_classes


def _gaps(samples_per_image: int, p):
    """Gaps :func:`_fill_row` draws at once: the mean number of non-top draws + 8 sd + 16.

    At ``p = 0`` (every draw non-top) it is ``N + 16``, which also bounds that case's
    ``arange(N)`` of positions.
    """
    # The very arithmetic _fill_row always did: a gap more or less changes the stream.
    p = np.asarray(p, dtype=np.float64)
    q = 1.0 - p
    return samples_per_image * q + 8.0 * np.sqrt(samples_per_image * q * p) + 16.0


def _stream_bytes(samples_per_image: int, p_A, max_bytes: int = _BLOCK_BYTES) -> int:
    """Peak bytes :func:`write_synthetic_store` allocates for rows of ``N`` samples.

    The writer holds a block of whole rows (at least one, of ``2 N`` bytes) and the gaps
    of the row being drawn (:func:`_gaps`; the row with the smallest p_A draws most).
    """
    p = np.asarray(p_A, dtype=np.float64)
    rows = min(max(1, int(max_bytes) // (2 * samples_per_image)), max(p.size, 1))
    gaps = float(np.max(_gaps(samples_per_image, p))) if p.size else 0.0
    return 2 * samples_per_image * rows + _BYTES_PER_GAP * int(gaps) + OVERHEAD_BYTES


def _check_stream_memory(
    samples_per_image: int, p_A, name: str, max_bytes: int = _BLOCK_BYTES
) -> None:
    """Refuse ``N`` before any store exists if :func:`write_synthetic_store` cannot fit it.

    ``name`` is the argument ``N`` came from, for the message.
    """
    check_memory(
        _stream_bytes(samples_per_image, p_A, max_bytes),
        name,
        samples_per_image,
        f"rows of {samples_per_image:,} uint16 labels and the gaps between a row's non-top draws, "
        f"up to {2 + _BYTES_PER_GAP} bytes per sample",
    )


@_renamed(N="samples_per_image")
def synthetic_labels(
    p_A, samples_per_image, *, predicted, num_classes, rng, other: str = "uniform"
) -> np.ndarray:
    """Draw label streams in which row ``i`` is class ``predicted[i]`` with probability ``p_A[i]``.

    Every label is an independent draw. With probability ``p_A[i]`` it is
    ``predicted[i]``; otherwise it follows the ``other`` rule:

    - ``"uniform"``: uniform over the ``num_classes - 1`` other classes (the most spread
      out, hence least compressible, residual);
    - ``"runner_up"``: always the class ``(predicted[i] + 1) % num_classes`` (a two-class
      stream, as when all the residual mass sits on one confusable class).

    Parameters
    ----------
    p_A : array of float, shape (n_images,)
        Probability of the top class of each row, in [0, 1].
    samples_per_image : int
        Samples per row.
    predicted : array of int, shape (n_images,)
        The class drawn with probability ``p_A``.
    num_classes : int
        Number of classes (labels lie in ``[0, num_classes)``).
    rng : numpy.random.Generator
        Source of randomness; rows are drawn one after the other from it.
    other : {"uniform", "runner_up"}, default "uniform"
        Rule for the labels of the non-top draws.

    Returns
    -------
    ndarray of uint16, shape (n_images, N)
    """
    p = _check_p_A(p_A)
    samples_per_image = check_positive_int(samples_per_image, "N")
    num_classes = check_positive_int(num_classes, "num_classes")
    if num_classes > MAX_CLASSES:
        raise ValueError(f"num_classes ({num_classes}) must be <= {MAX_CLASSES} (uint16 labels)")
    check_memory(
        2 * samples_per_image * p.size
        + _BYTES_PER_GAP * int(np.max(_gaps(samples_per_image, p), initial=0.0))
        + OVERHEAD_BYTES,
        "N",
        samples_per_image,
        f"{p.size} rows of {samples_per_image:,} uint16 labels and one row's gaps",
    )
    pred = _check_predicted(predicted, p.size, num_classes)
    other = _check_other(other, num_classes, p)
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng ({rng!r}) must be a numpy.random.Generator")
    out = np.empty((p.size, samples_per_image), dtype=np.uint16)
    for i in range(p.size):
        _fill_row(out[i], float(p[i]), int(pred[i]), num_classes, rng, other)
    return out


def _row_rng(seed: int, image_index: int) -> np.random.Generator:
    # Seeded by (seed, image_index) alone, so a row is the same whichever rows are drawn
    # with it, in whatever order, and a resumed store gets the same bytes.
    return np.random.default_rng([seed, image_index])


@_renamed(N="samples_per_image")
def write_synthetic_store(
    path,
    p_A,
    *,
    predicted,
    true_label,
    samples_per_image,
    num_classes,
    sigma,
    seed,
    other: str = "uniform",
    image_index=None,
    seconds_per_sample=None,
    progress: bool = False,
    attrs: dict | None = None,
    max_bytes: int = _BLOCK_BYTES,
) -> Path:
    """Write a stream store of synthetic labels (see :func:`synthetic_labels`).

    Row ``i`` is drawn from ``numpy.random.default_rng([seed, image_index[i]])``, so it is
    reproducible on its own; an interrupted call resumes where it stopped (the store's
    writer refuses a store made with other parameters). The true ``p_A`` and the
    ``predicted`` class are stored as the per-image columns ``/extra/p_A`` and
    ``/extra/predicted``.

    Parameters
    ----------
    path : str or Path
        The store to write (created, or resumed).
    p_A : array of float, shape (n_images,)
        True top-class probability of each row.
    predicted : array of int, shape (n_images,)
        The class drawn with probability ``p_A``.
    true_label : array of int, shape (n_images,)
        Ground truth of each row (``predicted == true_label`` makes a correct prediction).
    samples_per_image : int
        Samples per row.
    num_classes : int
        Number of classes.
    sigma : float
        The noise level the streams stand for (stored as the run's sigma).
    seed : int
        Base seed (>= 0).
    other : {"uniform", "runner_up"}, default "uniform"
        Rule for the non-top labels.
    image_index : array of int, optional
        Dataset index of each row (default ``0 .. n_images-1``).
    seconds_per_sample : float or array of float, optional
        Sampling time to record per sample (one value, or one per row), e.g. the time
        column of an imported log divided by its sample count. Unknown (NaN) by default.
    progress : bool, default False
        Show a tqdm progress bar on stderr.
    attrs : dict, optional
        Further root attrs (provenance of ``p_A``, say); ``dataset``, ``model`` and
        ``noise`` default to descriptions of the synthetic draw.
    max_bytes : int, default 32 MiB
        Memory bound of one block of rows written at once.

    Returns
    -------
    Path
        ``path``.
    """
    p = _check_p_A(p_A)
    n = p.size
    samples_per_image = check_positive_int(samples_per_image, "N")
    _check_stream_memory(
        samples_per_image, p, "N", max_bytes
    )  # before the store exists: none left behind
    num_classes = check_positive_int(num_classes, "num_classes")
    sigma = check_sigma(sigma)
    seed = check_positive_int(seed, "seed", minimum=0)
    pred = _check_predicted(predicted, n, num_classes)
    other = _check_other(other, num_classes, p)
    index = np.arange(n, dtype=np.int64) if image_index is None else np.asarray(image_index)
    if index.shape != (n,) or (n and not np.issubdtype(index.dtype, np.integer)):
        raise ValueError(f"image_index must hold {n} integers, got {index.shape} {index.dtype}")
    if n and index.min() < 0:
        raise ValueError(f"image_index ({int(index.min())}) must be >= 0 (it seeds the row)")
    if seconds_per_sample is None:
        secs = np.full(n, np.nan)
    else:
        sps = np.broadcast_to(np.asarray(seconds_per_sample, dtype=np.float64), (n,))
        bad = ~(sps >= 0) | np.isinf(sps)
        if np.any(bad):
            raise ValueError(f"seconds_per_sample ({sps[bad][0]}) must be a finite number >= 0")
        secs = sps * samples_per_image
    run_attrs = {
        "dataset": "synthetic",
        "model": f"synthetic i.i.d. labels: p_A per image, other classes {other}",
        "noise": "synthetic",
        "device": "none",
        "synthetic_other": other,
    }
    run_attrs.update(attrs or {})
    run_attrs.update(sigma=sigma, num_classes=num_classes, seed=seed)
    writer = open_for_writing(
        path,
        image_index=index,
        true_label=true_label,
        samples_per_image=samples_per_image,
        attrs=run_attrs,
        columns={"p_A": p, "predicted": pred},
    )
    with writer:
        todo = writer.pending()
        block = max(1, int(max_bytes) // (2 * samples_per_image))
        bar = None
        if progress:
            bar = progress_bar(total=n, initial=n - todo.size, unit="image",
                               desc="synthetic streams")
        try:
            buf = np.empty((min(block, max(todo.size, 1)), samples_per_image), dtype=np.uint16)
            for start in range(0, todo.size, block):
                rows = todo[start : start + block]
                out = buf[: rows.size]
                for j, r in enumerate(rows):
                    rng = _row_rng(seed, int(index[r]))
                    _fill_row(out[j], float(p[r]), int(pred[r]), num_classes, rng, other)
                writer.write_rows_at(rows, out, secs[rows])
                if bar is not None:
                    bar.update(rows.size)
        finally:
            if bar is not None:
                bar.close()
    return Path(path)


# ------------------------------------------------------------------ realistic p_A


def realistic_p_A(n, rng, source=DEFAULT_SOURCE, *, abstain: str = "uniform") -> np.ndarray:
    """Draw ``n`` values of p_A from the empirical distribution of a published model.

    Each draw picks a row of the recovered log uniformly at random (with replacement) and
    takes its ``p_A = kA_mid / n``, the midpoint of the counts consistent with the logged
    radius (at most 0.0024 wide in p). Abstained rows carry no count, only the bound
    ``kA <= kA_max`` (a lower confidence bound under 1/2); ``abstain`` says what they give:

    - ``"uniform"`` (default): uniform on ``[0, kA_max / n]``, all that the log tells;
    - ``"bound"``: ``kA_max / n`` itself, the largest value consistent with abstaining;
    - ``"drop"``: abstained rows are never picked.

    Parameters
    ----------
    n : int
        Number of values.
    rng : numpy.random.Generator
    source : str or Path, default :data:`DEFAULT_SOURCE`
        A recovered log's name (see ``data/published/README.md``) or path.
    abstain : {"uniform", "bound", "drop"}, default "uniform"

    Returns
    -------
    ndarray of float, shape (n,)
    """
    n = check_positive_int(n, "n", minimum=0)
    if abstain not in _ABSTAIN_RULES:
        raise ValueError(f"abstain ({abstain!r}) must be one of {', '.join(_ABSTAIN_RULES)}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng ({rng!r}) must be a numpy.random.Generator")
    rec = read_recovered(source)
    certified = rec.certified
    mid = rec.kA_mid / rec.n
    top = rec.kA_max / rec.n
    rows = np.flatnonzero(certified) if abstain == "drop" else np.arange(mid.size)
    if rows.size == 0:
        raise ValueError(f"recovered log {source!r} has no rows to draw from")
    pick = rows[rng.integers(0, rows.size, size=n)]
    p = np.where(certified[pick], mid[pick], top[pick])
    if abstain == "uniform":
        ab = ~certified[pick]
        p[ab] = rng.uniform(0.0, top[pick][ab])
    return p
