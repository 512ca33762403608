"""A Cohen-format log turned into a synthetic stream store that :mod:`isskit.replay` replays.

:func:`import_log` reads the log (:mod:`~isskit.logs.cohen_format`), recovers its counts at
the first (n, alpha) that fits (:mod:`~isskit.logs.recover`) and writes one i.i.d. label
stream per row with the p_A those counts imply
(:func:`isskit.studies.synthetic.write_synthetic_store`).

This module never prints and never imports torch or click; every bad input raises a
``ValueError`` naming the file and, where there is one, the line.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isskit._atomic import atomic_path
from isskit._provenance import file_sha256
from isskit._renamed import renamed as _renamed
from isskit.logs.cohen_format import CohenLog, num_classes_from_name, read_cohen_log
from isskit.logs.recover import AlphaFit, CountRanges, _resolve_sigma, detect_alpha, recover_counts
from isskit.validate import (
    ArgumentError,
    check_positive_int,
    check_sample_size,
)

__all__ = [
    "ABSTAIN_RULES",
    "ImportResult",
    "import_log",
]

#: What p_A an abstained row's stream gets (:func:`import_log`). An abstention only says
#: ``k_A <= kA_max`` (``p_lower < 1/2``).
ABSTAIN_RULES = ("auto", "mid", "uniform", "bound")

#: Selection samples of Cohen et al.'s CERTIFY (``n0``): an imported stream holds
#: ``n0 + n`` samples by default, so the log's own certification can be replayed on it.
_COHEN_N0 = 100


# --------------------------------------------------------------------------- import


@_renamed(N="samples_per_image")
@dataclass(frozen=True)
class ImportResult:
    """What :func:`import_log` wrote, and what it recovered on the way.

    Attributes
    ----------
    path : pathlib.Path
        The stream store written.
    log : CohenLog
        The log read.
    fit : AlphaFit
        The (n, alpha) pairs tried and those that fit.
    ranges : CountRanges
        The recovered count ranges at the chosen (n, alpha).
    alpha : float
        The alpha the counts were recovered with (the first that fits, in the order tried).
    sigma : float
        The certification noise level.
    num_classes : int
        Classes of the streams' labels.
    samples_per_image : int
        Samples per stream.
    p_A : ndarray of float64
        Each stream's top-class probability.
    predicted : ndarray of int64
        Each stream's top class.
    abstain : str
        The rule that gave abstained rows their p_A (after resolving ``"auto"``).
    """

    path: Path
    log: CohenLog = field(repr=False)
    fit: AlphaFit = field(repr=False)
    ranges: CountRanges = field(repr=False)
    alpha: float
    sigma: float
    num_classes: int
    samples_per_image: int
    p_A: np.ndarray = field(repr=False)
    predicted: np.ndarray = field(repr=False)
    abstain: str

    def summary(self) -> dict:
        """A JSON-ready description: source, fit, counts of rows, p_A deciles."""
        log = self.log
        cert = ~log.abstained
        deciles = (
            np.quantile(self.p_A[cert], [0.1, 0.3, 0.5, 0.7, 0.9]).tolist() if cert.any() else []
        )
        width = self.ranges.kA_max[cert] - self.ranges.kA_min[cert]
        return {
            "store": str(self.path),
            "log": str(log.path),
            "rows": len(log),
            "abstained": int(log.abstained.sum()),
            "wrong": int((cert & ~log.correct).sum()),
            "radius_format": log.radius_format,
            "n": self.ranges.n,
            "alpha": self.alpha,
            "fits": [{"n": n_, "alpha": a} for n_, a in self.fit.fits],
            "tried": [{"n": n_, "alpha": a} for n_, a in self.fit.tried],
            "sigma": self.sigma,
            "num_classes": self.num_classes,
            "samples_per_image": self.samples_per_image,
            "abstain_rule": self.abstain,
            "max_range_width": int(width.max()) if width.size else 0,
            "p_A_deciles": dict(zip(["10%", "30%", "50%", "70%", "90%"], deciles, strict=False)),
        }


@_renamed(samples="samples_per_image")
def import_log(
    path,
    out,
    *,
    n=100_000,
    alpha: float | None = None,
    sigma: float | None = None,
    samples_per_image: int | None = None,
    seed: int = 0,
    other: str = "uniform",
    num_classes: int | None = None,
    abstain: str = "auto",
    progress: bool = False,
) -> ImportResult:
    """Turn a Cohen-format certification log into a synthetic stream store.

    Each row becomes an i.i.d. label stream (:func:`isskit.studies.synthetic.write_synthetic_store`,
    seeded per row by ``(seed, idx)``) whose top class is drawn with the p_A the log
    implies:

    * certified rows (right or wrong): the top class is the logged prediction and
      ``p_A = kA_mid / n``, the midpoint of the recovered count range (at most about
      0.0024 wide in p for 3-digit logs, 15 counts for 4-decimal ones; the midpoint is
      unbiased for a count uniform on the range, and matches ``kA_mid`` of
      ``data/published/recovered``). A wrong prediction keeps its true label in
      ``/true_label``, so the replay counts it as wrong.
    * abstained rows (``predict = -1``): the log only says ``k_A <= kA_max`` (the bound
      stayed below 1/2). The top class is the true label (which class the model favoured
      is not logged; this choice can only credit a later certificate of the row as
      correct, for every policy alike) and p_A follows ``abstain``: ``"mid"``
      ``(kA_max // 2) / n``, the range's midpoint like every other row (about 0.25);
      ``"uniform"`` a seeded draw uniform on ``[0, kA_max / n]``; ``"bound"``
      ``kA_max / n`` (about 0.505, the hardest case for every policy: it costs ISS its
      largest sample sizes). ``"auto"`` is ``"mid"`` with ``other="uniform"`` and
      ``"bound"`` with ``other="runner_up"``, where a p_A below 1/2 would make the
      runner-up the stream's top class and turn a logged abstention into a confident
      wrong prediction.
    * the remaining ``1 - p_A`` goes to the other classes by ``other``: ``"uniform"`` over
      all ``num_classes - 1`` of them, ``"runner_up"`` all to one class (two-class
      streams, the hardest case for class selection).

    Parameters
    ----------
    path : str or path-like
        The log.
    out : str or path-like
        The stream store to write. A new store is built under a temporary name in the
        same folder and renamed into place only when every row is written
        (:func:`isskit._atomic.atomic_path`), so a failed or killed import leaves no
        ``out``. An existing ``out`` is resumed if it is this import's store (the same run)
        and refused otherwise; nothing else is ever overwritten.
    n : int or sequence of int
        Estimation sample size of the logged certification (Cohen et al.: 100,000); a
        sequence is tried in order.
    alpha : float, optional
        One-sided failure probability of the logged certification; checked against the
        rows. By default detected from :data:`DEFAULT_ALPHAS` (the first that fits).
    sigma : float, optional
        Certification noise level; by default from the file name (``sigma_X``).
    samples_per_image : int, optional
        Samples per stream. Default ``n0 + n`` = ``100 + n``: enough to replay the log's
        own CERTIFY. ISS with ``k_bar`` needs ``k_bar + k0`` for its fresh variant.
    seed : int
        Base seed of the streams (and of the ``"uniform"`` abstention draws).
    other : {"uniform", "runner_up"}
        Where the non-top labels go.
    num_classes : int, optional
        Classes; by default from the file name (10 for CIFAR-10, 1000 for ImageNet).
    abstain : {"auto", "mid", "uniform", "bound"}
        p_A of abstained rows (see above).
    progress : bool
        Show a progress bar on stderr while writing.

    Returns
    -------
    ImportResult

    Raises
    ------
    ValueError
        Naming the file and line for a malformed log; for rows no integer count
        reproduces, the lines and every (n, alpha) pair tried; for a missing sigma or
        class count, what to pass.
    """
    from isskit.studies.synthetic import OTHER_RULES, _check_stream_memory, write_synthetic_store

    path = Path(path)
    log = read_cohen_log(path)
    _check_unique_idx(log)
    sigma = _resolve_sigma(log, sigma)
    if other not in OTHER_RULES:
        raise ValueError(f"other ({other!r}) must be one of {', '.join(OTHER_RULES)}")
    if abstain not in ABSTAIN_RULES:
        raise ValueError(f"abstain ({abstain!r}) must be one of {', '.join(ABSTAIN_RULES)}")
    if abstain == "auto":
        abstain = "bound" if other == "runner_up" else "mid"
    if num_classes is None:
        num_classes = num_classes_from_name(path)
        if num_classes is None:
            raise ArgumentError(
                "num_classes", "{path}: the file name names no dataset (cifar10, imagenet); "
                "give {name}", path=path,
            )
    num_classes = check_positive_int(num_classes, "num_classes", minimum=2)
    top = int(max(log.label.max(), log.predict.max()))
    if top >= num_classes:
        line = int(log.line[np.argmax(np.maximum(log.label, log.predict) >= num_classes)])
        raise ValueError(
            f"{path}, line {line}: class {top} is out of range for num_classes ({num_classes})"
        )
    seed = check_positive_int(seed, "seed", minimum=0)

    fit = detect_alpha(log, n=n, sigma=sigma, alpha=alpha)
    if not fit.fits:
        raise ValueError(
            "no (n, alpha) reproduces every logged radius with an integer count. "
            + fit.describe()
        )
    n_fit, alpha_fit = fit.fits[0]
    ranges = recover_counts(log, n=n_fit, alpha=alpha_fit, sigma=sigma)
    N = check_sample_size(
        n_fit + _COHEN_N0 if samples_per_image is None else samples_per_image, "samples_per_image"
    )

    cert = ~log.abstained
    p_A = ranges.kA_mid / n_fit
    predicted = np.where(cert, log.predict, log.label)
    if abstain == "bound":
        p_A = np.where(cert, p_A, ranges.kA_max / n_fit)
    elif abstain == "uniform":
        rng = np.random.default_rng([seed, 0x1ABE1])  # its own stream, apart from the rows'
        p_A = np.where(cert, p_A, rng.uniform(0.0, 1.0, len(log)) * ranges.kA_max / n_fit)
    # The log's time column is the wall time of n0 + n samples (Cohen's CERTIFY).
    seconds_per_sample = log.time / (n_fit + _COHEN_N0)
    out = Path(out)
    # Here, not inside the writer only: its message would name N, and the user gave samples.
    _check_stream_memory(N, p_A, "samples_per_image")
    # A new store appears only when whole; an existing one is resumed in place (the
    # writer refuses another run's store, and any file that is not a store).
    resume = os.path.lexists(out)
    with contextlib.nullcontext(out) if resume else atomic_path(out, overwrite=False) as target:
        write_synthetic_store(
            target,
            p_A,
            predicted=predicted,
            true_label=log.label,
            samples_per_image=N,
            num_classes=num_classes,
            sigma=sigma,
            seed=seed,
            other=other,
            image_index=log.idx,
            seconds_per_sample=seconds_per_sample,
            progress=progress,
            attrs={
                "dataset": _dataset_name(num_classes),
                "model": f"imported from the certification log {path.name} (i.i.d. streams)",
                "noise": "gaussian",
                "source_log": path.name,
                "source_sha256": file_sha256(path),
                "source_n": n_fit,
                "source_alpha": alpha_fit,
                "source_alphas_fitting": ",".join(f"{a:g}" for _, a in fit.fits),
                "source_radius_format": log.radius_format,
                "p_A_rule": "certified rows: kA_mid / n, the recovered range's midpoint",
                "abstain_rule": abstain,
            },
        )
    return ImportResult(
        path=out,
        log=log,
        fit=fit,
        ranges=ranges,
        alpha=alpha_fit,
        sigma=sigma,
        num_classes=num_classes,
        samples_per_image=N,
        p_A=p_A,
        predicted=predicted,
        abstain=abstain,
    )


def _check_unique_idx(log: CohenLog) -> None:
    """A store holds one stream per image: a repeated idx names both of its lines."""
    order = np.argsort(log.idx, kind="stable")
    same = np.flatnonzero(np.diff(log.idx[order]) == 0)
    if same.size:
        first, again = order[same[0]], order[same[0] + 1]
        raise ValueError(
            f"{log.path}, line {int(log.line[again])}: idx {int(log.idx[again])} repeats line "
            f"{int(log.line[first])} (a store holds one stream per image; "
            f"{same.size} repeat(s) in all)"
        )


def _dataset_name(num_classes: int) -> str:
    return {10: "cifar10", 100: "cifar100", 1000: "imagenet"}.get(num_classes, "unknown")
