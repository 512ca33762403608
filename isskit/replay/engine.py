"""Replay certification policies over stored label streams, offline: no model, no GPU.

Three layers (DESIGN.md): :mod:`isskit.replay._kernels` (numba, arrays only) answers counting
queries; this module reads the store once into a :class:`StreamIndex` (:func:`build_index`),
evaluates each policy over it (:func:`evaluate`) and labels the results as one
``xarray.Dataset`` (:func:`replay`, layout in DESIGN.md "Results"); the CLI prints and plots.

Per image and policy (DESIGN.md, "Policies"): the class chosen is the most frequent label of
the selection range (ties to the smallest label), ``k_A`` its count over the count range of
``k`` samples, ``p_lower = Beta(alpha; k_A, k - k_A + 1)`` (0 when ``k_A = 0``), the
prediction is that class if ``p_lower >= 0.5`` (exactly) and -1 (abstain) otherwise, and
the radius ``sigma * Phi^-1(p_lower)`` (0 when abstaining). ISS with ``k_hat = 0`` abstains
after its pilot with ``p_lower`` NaN (no estimate is made). A policy that needs more samples
than a stream holds is a ``ValueError`` naming the image and the numbers: never truncated.

This module never prints (progress bars go to stderr, on request) and never imports torch.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import queue
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isskit._atomic import atomic_path
from isskit._progress import progress_bar
from isskit._provenance import make_attrs
from isskit._validate import ArgumentError
from isskit.policies import CountPlan, RadiusPolicy, parse_policies
from isskit.replay import _cbeta, _kernels
from isskit.replay.metrics import (
    acr,
    certified_accuracy,
    est_minutes,
    mad,
    mean_samples,
    speedup,
    total_samples,
)
from isskit.stats import certified_radius, cp_lower

__all__ = [
    "PolicyResult",
    "StreamIndex",
    "build_index",
    "cohen_log_paths",
    "evaluate",
    "export_cohen",
    "index_blocks",
    "load_results",
    "replay",
    "save_results",
]

#: Default size of one block of labels read while indexing (a few are held at once).
DEFAULT_MAX_BYTES = 64 * 2**20

#: Policy coordinates of the results, with the value a policy without that parameter gets.
_COORDS = {
    "kind": "",
    "k_bar": 0,
    "U": math.nan,
    "decline": "",
    "k0": 0,
    "n0": 0,
    "n": 0,
    "alpha": math.nan,
    "delta": math.nan,
    "fresh": False,
    "mapping": "",
}


@dataclass
class StreamIndex:
    """Everything the policies need from a store, read in one pass (:mod:`isskit.replay._kernels`).

    Attributes
    ----------
    n_samples : int
        Samples per stream, N.
    num_classes : int
        Labels are below this.
    rows : ndarray of int64, shape (n,)
        Store rows indexed, in order.
    checkpoints : ndarray of int64, shape (n_cp,)
        Prefix lengths m whose mode is known (selection sizes and N), increasing.
    modes, mode_counts : ndarray of int64, shape (n, n_cp)
        Most frequent label of ``labels[0:m]`` (ties to the smallest) and its count.
    slot : ndarray of int64, shape (n, n_cp)
        Row of ``bits``/``cum`` marking that label, -1 where the checkpoint is N only.
        (Numbering depends on how the store was read in blocks; what a slot holds does not:
        compare indexes with :meth:`same_as`.)
    bits, cum : ndarray
        Bit vectors and rank directories of the slots.
    """

    n_samples: int
    num_classes: int
    rows: np.ndarray
    checkpoints: np.ndarray
    modes: np.ndarray
    mode_counts: np.ndarray
    slot: np.ndarray
    bits: np.ndarray
    cum: np.ndarray

    def column(self, m: int) -> int:
        """Index of checkpoint ``m``; ValueError if the index was not built for it."""
        j = int(np.searchsorted(self.checkpoints, m))
        if j >= self.checkpoints.size or self.checkpoints[j] != m:
            raise ValueError(
                f"selection size ({m}) is not in this index (built for "
                f"{self.checkpoints.tolist()}); rebuild it with the policy"
            )
        return j

    def same_as(self, other: StreamIndex) -> bool:
        """Whether two indexes hold the same information (slot numbering aside)."""
        if not all(
            np.array_equal(getattr(self, a), getattr(other, a))
            for a in ("rows", "checkpoints", "modes", "mode_counts")
        ) or not np.array_equal(self.slot < 0, other.slot < 0):
            return False
        has = self.slot >= 0
        return bool(
            np.array_equal(self.bits[self.slot[has]], other.bits[other.slot[has]])
            and np.array_equal(self.cum[self.slot[has]], other.cum[other.slot[has]])
        )

    @property
    def top_class(self) -> np.ndarray:
        """Most frequent label of each whole stream."""
        return self.modes[:, self.column(self.n_samples)]

    @property
    def p_A_empirical(self) -> np.ndarray:
        """Frequency of the most frequent label of each whole stream."""
        return self.mode_counts[:, self.column(self.n_samples)] / self.n_samples

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return sum(
            a.nbytes
            for a in (self.rows, self.checkpoints, self.modes, self.mode_counts, self.slot,
                      self.bits, self.cum)
        )


def _selection_sizes(policies) -> list[int]:
    return sorted({p.selection_size for p in policies})


def _slots_of_block(modes, need_slot, primary):
    """Slots of a block of rows.

    Row r's first slot is r (its class at checkpoint ``primary``); the other classes chosen
    at checkpoints that need a slot come after the block's rows,
    ``row_extra[r]:row_extra[r + 1]``.

    Returns ``local`` (slot of each row and checkpoint, -1 where none is needed),
    ``row_extra`` and ``extra_class`` (the class of each extra slot).
    """
    rows, n_cp = modes.shape
    local = np.full((rows, n_cp), -1, dtype=np.int64)
    cols = np.flatnonzero(need_slot)
    if primary < 0 or rows == 0:
        return local, np.zeros(rows + 1, np.int64), np.zeros(0, np.int64)
    m = modes[:, cols]
    same = m == modes[:, primary][:, None]
    sub = np.where(same, np.arange(rows)[:, None], -1)
    counts = np.zeros(rows, np.int64)
    extra_class: list[int] = []
    for r in np.flatnonzero(~same.all(axis=1)):  # rare: the pilot's class is unstable
        classes = np.unique(m[r][~same[r]])
        first = rows + len(extra_class)
        extra_class.extend(classes.tolist())
        counts[r] = classes.size
        for c_i, c in enumerate(classes):
            sub[r][m[r] == c] = first + c_i
    local[:, cols] = sub
    row_extra = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return local, row_extra, np.array(extra_class, dtype=np.int64)


def index_blocks(
    blocks, *, n_samples, num_classes, selection_sizes, image_ids=None, rows=None
) -> StreamIndex:
    """Build a :class:`StreamIndex` from blocks of whole streams (the array-level core).

    Parameters
    ----------
    blocks : iterable of ndarray of uint16, shape (rows_b, n_samples)
        Consecutive blocks of the streams to index, in row order.
    n_samples : int
        Samples per stream, N.
    num_classes : int
        Labels must be below this.
    selection_sizes : iterable of int
        Prefix lengths whose mode the policies choose their class from, each in [1, N].
    image_ids : ndarray of int, optional
        Dataset index of each indexed row, for error messages.
    rows : ndarray of int, optional
        Store row of each indexed row (default 0, 1, ...).

    Returns
    -------
    StreamIndex

    Raises
    ------
    ValueError
        If a label is >= num_classes, or a selection size is out of [1, N].
    """
    n_samples = int(n_samples)
    num_classes = int(num_classes)
    sizes = sorted({int(m) for m in selection_sizes})
    for m in sizes:
        if not 1 <= m <= n_samples:
            raise ValueError(f"selection size ({m}) must be in [1, {n_samples}] (N)")
    cps = np.array(sorted(set(sizes) | {n_samples}), dtype=np.int64)
    need_slot = np.isin(cps, np.array(sizes, dtype=np.int64))
    # the class chosen at the largest selection size gets every row's first slot
    primary = int(np.flatnonzero(need_slot)[-1]) if need_slot.any() else -1
    nw = _kernels.n_words(n_samples)
    modes_l, counts_l, slot_l, bits_l, cum_l = [], [], [], [], []
    n_done = 0
    n_slots = 0
    for block in blocks:
        block = np.ascontiguousarray(block, dtype=np.uint16)
        if block.ndim != 2 or block.shape[1] != n_samples:
            raise ValueError(f"label block shape ({block.shape}) must be (rows, {n_samples})")
        r = block.shape[0]
        modes = np.empty((r, cps.size), np.int64)
        counts = np.empty((r, cps.size), np.int64)
        bad = np.empty(r, np.int64)
        bits = np.empty((r if primary >= 0 else 0, 8 * nw), np.uint8)
        cum = np.empty((bits.shape[0], nw + 1), np.int32)
        if primary >= 0:
            _kernels.scan_and_pack(block, cps, num_classes, primary, modes, counts, bad,
                                   bits, cum)
        else:
            _kernels.scan_modes(block, cps, num_classes, modes, counts, bad)
        if np.any(bad >= 0):
            i = int(np.flatnonzero(bad >= 0)[0])
            q = int(bad[i])
            row = n_done + i if rows is None else int(rows[n_done + i])
            img = "" if image_ids is None else f", image {int(image_ids[n_done + i])}"
            raise ValueError(
                f"label ({int(block[i, q])}) at sample {q} of store row {row}{img} "
                f"is not below num_classes ({num_classes})"
            )
        local, row_extra, extra_class = _slots_of_block(modes, need_slot, primary)
        if extra_class.size:
            xbits = np.empty((extra_class.size, 8 * nw), np.uint8)
            xcum = np.empty((extra_class.size, nw + 1), np.int32)
            _kernels.pack_slots(block, row_extra, extra_class, xbits, xcum)
            bits = np.concatenate([bits, xbits])
            cum = np.concatenate([cum, xcum])
        modes_l.append(modes)
        counts_l.append(counts)
        slot_l.append(np.where(local >= 0, local + n_slots, -1))
        bits_l.append(bits)
        cum_l.append(cum)
        n_done += r
        n_slots += bits.shape[0]

    def cat(parts, shape, dtype):
        return np.concatenate(parts) if parts else np.zeros(shape, dtype)

    return StreamIndex(
        n_samples=n_samples,
        num_classes=num_classes,
        rows=np.arange(n_done, dtype=np.int64) if rows is None else np.asarray(rows, np.int64),
        checkpoints=cps,
        modes=cat(modes_l, (0, cps.size), np.int64),
        mode_counts=cat(counts_l, (0, cps.size), np.int64),
        slot=cat(slot_l, (0, cps.size), np.int64),
        bits=cat(bits_l, (0, 8 * nw), np.uint8),
        cum=cat(cum_l, (0, nw + 1), np.int32),
    )


def _prefetch(iterator, depth: int = 1):
    """Run ``iterator`` in a thread, ``depth`` items ahead.

    The store's reading and decompression then overlap the kernels, which release the GIL.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("done", done))
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(("error", exc))

    t = threading.Thread(target=work, name="isskit-prefetch", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "item":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        t.join(timeout=5)


def _store_blocks(store, rows, max_bytes, progress):
    """Blocks of the selected store rows, read in chunks of at most ``max_bytes``."""
    rows = np.asarray(rows, dtype=np.int64)
    all_rows = rows.size == store.n_images and np.array_equal(
        rows, np.arange(store.n_images)
    )
    bar = None
    if progress:
        bar = progress_bar(total=int(rows.size), desc="indexing streams", unit="image",
                           leave=False)
    try:
        for row_start, block in store.iter_chunks(max_bytes=max_bytes):
            stop = row_start + block.shape[0]
            if all_rows:
                sel = block
            else:
                take = rows[(rows >= row_start) & (rows < stop)] - row_start
                if take.size == 0:
                    continue
                sel = block[take]
            if bar is not None:
                bar.update(sel.shape[0])
            yield sel
    finally:
        if bar is not None:
            bar.close()


def build_index(store, policies, *, rows=None, max_bytes=DEFAULT_MAX_BYTES, progress=False):
    """Read a store once and build the index every policy in ``policies`` is answered from.

    Parameters
    ----------
    store : StreamStore
        An open store (:func:`isskit.store.open_store`).
    policies : sequence of Cohen, IAS or ISS
        The policies (their selection sizes become the index's checkpoints).
    rows : array_like of int, optional
        Store rows to index, increasing (default: all).
    max_bytes : int
        Bound on the labels of one block read into memory (at most three blocks are held
        at once: one being read by a thread, one waiting, one being indexed).
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    StreamIndex
    """
    policies = parse_policies(policies)
    n = int(store.samples_per_image)
    rows = np.arange(store.n_images, dtype=np.int64) if rows is None else np.asarray(rows)
    _check_static_needs(policies, n, np.asarray(store.image_index)[rows[:1]])
    blocks = _prefetch(_store_blocks(store, rows, max_bytes, progress))
    return index_blocks(
        blocks,
        n_samples=n,
        num_classes=int(store.num_classes),
        selection_sizes=_selection_sizes(policies),
        image_ids=np.asarray(store.image_index)[rows],
        rows=rows,
    )


def _too_many(policy, image, need, n, n_bad=1, drawn=None):
    more = f" (and {n_bad - 1} more images)" if n_bad > 1 else ""
    held = (f"each stream holds {n} (N)" if drawn is None or drawn >= n else
            f"its stream holds {drawn} drawn samples (of N = {n})")
    return ValueError(
        f"policy {policy.name} needs {need} samples for image {image}{more}, but "
        f"{held}; sample more, or choose a smaller policy"
    )


def _check_static_needs(policies, n, first_image):
    """Policies whose selection or fixed budget exceeds N fail for every image: say so now."""
    img = int(first_image[0]) if len(first_image) else 0
    for p in policies:
        if p.static_need > n:
            raise _too_many(p, img, p.static_need, n)


def _cp_lower(k_A, k, alpha):
    """One-sided CP lower bounds, row b at ``alpha[b]``; NaN where k = 0 (no estimate).

    ``k_A`` and ``k`` of shape (B, n), ``alpha`` of shape (B,). Bit for bit
    :func:`isskit.stats.cp_lower`. Each distinct ``(k_A, k, alpha)`` is computed once: a
    Beta quantile costs 1 to 5 us, and a sweep repeats pairs often (images whose counts
    agree, policies that land on the same sample size).
    """
    k_A = np.ascontiguousarray(k_A, dtype=np.int64)
    k = np.ascontiguousarray(k, dtype=np.int64)
    alpha = np.ascontiguousarray(alpha, dtype=np.float64).reshape(-1)
    out = np.empty(k_A.shape, np.float64)
    for a in np.unique(alpha):
        rows = np.flatnonzero(alpha == a)
        whole = rows.size == alpha.size
        ka = k_A.reshape(-1) if whole else k_A[rows].reshape(-1)
        kk = k.reshape(-1) if whole else k[rows].reshape(-1)
        inv = np.empty(ka.size, np.int64)
        pairs = _kernels.unique_pairs(ka, kk, inv)
        pk_A = np.ascontiguousarray(pairs[:, 0])
        pk = np.ascontiguousarray(pairs[:, 1])
        vals = np.empty(pk.size, np.float64)
        if _cbeta.AVAILABLE:
            _kernels.cp_lower_many(pk_A, pk, a, vals)
        else:  # pragma: no cover - only where SciPy's symbol could not be resolved
            ok = pk > 0
            vals[~ok] = np.nan
            vals[ok] = cp_lower(pk_A[ok], pk[ok], a)
        if whole:
            _kernels.gather(vals, inv, out.reshape(-1))
        else:
            got = np.empty(inv.size, np.float64)
            _kernels.gather(vals, inv, got)
            out[rows] = got.reshape(rows.size, -1)
    return out


class _Planner:
    """Per policy, the count range of every image: where it starts, how long, what it costs.

    A policy's plan depends on its selection count alone (:meth:`RadiusPolicy.plan`), and a
    selection of m samples has at most m + 1 distinct counts: each policy is asked once per
    distinct count of its checkpoint, and the answers are spread back over the images.
    """

    def __init__(self, index: StreamIndex, sigma: float, image_ids, drawn=None):
        self.index = index
        # samples drawn per image (schema 2): a plan past them is refused like one past N
        self.drawn = None if drawn is None else np.asarray(drawn, np.int64)
        self.sigma = float(sigma)
        self.ids = index.rows if image_ids is None else np.asarray(image_ids)
        self._distinct: dict = {}
        # per checkpoint, contiguous over images
        self.slot_T = np.ascontiguousarray(index.slot.T)
        self.modes_T = np.ascontiguousarray(index.modes.T)

    def _counts(self, j):
        if j not in self._distinct:
            uniq, inv = np.unique(self.index.mode_counts[:, j], return_inverse=True)
            self._distinct[j] = (uniq.astype(np.int64), inv.reshape(-1))
        return self._distinct[j]

    def plan(self, policy):
        """(column j, start, k, samples, k_hat), arrays of shape (n,) or scalars."""
        n = self.index.n_samples
        if not isinstance(policy, RadiusPolicy):
            raise ValueError(f"policy ({policy!r}) is not a radius policy")
        _check_static_needs([policy], n, self.ids[:1])
        j = self.index.column(policy.selection_size)
        if policy.fixed_samples:
            plan = policy.plan(self.index.mode_counts[:0, j], sigma=self.sigma)
            self._check_drawn(policy, policy.samples_consumed(plan))
            return j, plan.start, plan.k, policy.samples_consumed(plan), plan.k_hat
        x, inv = self._counts(j)
        plan = policy.plan(x, sigma=self.sigma)
        start, k, k_hat = (np.broadcast_to(np.asarray(v, np.int64), x.shape)[inv]
                           for v in (plan.start, plan.k, plan.k_hat))
        samples = policy.samples_consumed(CountPlan(start, k))
        over = start + k > n
        if np.any(over):
            i = int(np.flatnonzero(over)[0])
            raise _too_many(policy, int(self.ids[i]), int(start[i] + k[i]), n,
                            int(over.sum()))
        self._check_drawn(policy, samples)
        return j, start, k, samples, k_hat

    def _check_drawn(self, policy, samples):
        if self.drawn is None:
            return
        over = np.broadcast_to(samples, self.drawn.shape) > self.drawn
        if np.any(over):
            i = int(np.flatnonzero(over)[0])
            raise _too_many(policy, int(self.ids[i]),
                            int(np.broadcast_to(samples, over.shape)[i]),
                            self.index.n_samples, int(over.sum()), drawn=int(self.drawn[i]))


def _count_batch(index, planner, policies, out=None):
    """Plan a batch of policies and count their classes: one kernel call for all of them.

    Fills (or returns) ``chosen`` (the class each policy chose per image), ``k_A`` (its
    count over the count range of ``k`` samples), ``k``, ``samples`` and ``k_hat``, each of
    shape (B, n); ``out`` may hold views to write them into.
    """
    B, n_img = len(policies), index.rows.size
    if out is None:
        out = {f: np.empty((B, n_img), np.int64) for f in _COUNT_FIELDS}
    slot = np.empty((B, n_img), np.int64)
    start = np.empty((B, n_img), np.int64)
    chosen, k, samples, k_hat = out["chosen"], out["k"], out["samples"], out["k_hat"]
    for b, p in enumerate(policies):
        j, start[b], k[b], samples[b], k_hat[b] = planner.plan(p)
        slot[b] = planner.slot_T[j]
        chosen[b] = planner.modes_T[j]
    _kernels.count_ranges(slot, start, start + k, index.bits, index.cum, out["k_A"])
    return out


_COUNT_FIELDS = ("chosen", "k_A", "k", "samples", "k_hat")


def _certify(chosen, k_A, k, alpha, sigma):
    """p_lower, prediction (-1 abstains; in place of ``chosen``) and radius of each cell."""
    p_lower = _cp_lower(k_A, k, alpha)
    certified = p_lower >= 0.5  # NaN (no estimate) compares False: abstain
    chosen[~certified] = -1
    radius = np.zeros(p_lower.shape, np.float64)
    radius[certified] = certified_radius(p_lower[certified], sigma)
    return chosen, radius, p_lower


#: Policy-images per kernel call in :func:`replay` (bounds the temporary arrays to ~250 MB).
_BATCH_CELLS = 2_000_000


@dataclass(frozen=True)
class PolicyResult:
    """One radius policy replayed over every stream of an index (:func:`evaluate`).

    Attributes
    ----------
    prediction : ndarray of int64
        The class certified, -1 for an abstention.
    radius : ndarray of float64
        ``sigma * Phi^-1(p_lower)``, 0 when abstaining.
    p_lower : ndarray of float64
        One-sided Clopper-Pearson bound; NaN where no estimate was made (``k = 0``).
    samples : ndarray of int64
        Samples consumed.
    k_hat : ndarray of int64
        The input-specific sample size (-1 for policies whose size is fixed).
    """

    prediction: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    samples: np.ndarray
    k_hat: np.ndarray


def evaluate(index: StreamIndex, policy, sigma, *, image_ids=None) -> PolicyResult:
    """Replay one policy over every stream of an index.

    Parameters
    ----------
    index : StreamIndex
        Built for (at least) this policy's selection size.
    policy : RadiusPolicy
        The policy.
    sigma : float
        Noise level of the store (for the radius and ISS's mapping psi).
    image_ids : ndarray of int, optional
        Dataset index of each indexed row, for error messages (default: the rows).

    Returns
    -------
    PolicyResult
        Arrays of shape (n,).

    Raises
    ------
    ValueError
        If the policy needs more samples than a stream holds for some image.
    """
    c = _count_batch(index, _Planner(index, sigma, image_ids), [policy])
    prediction, radius, p_lower = _certify(c["chosen"], c["k_A"], c["k"], [policy.alpha], sigma)
    return PolicyResult(prediction=prediction[0], radius=radius[0], p_lower=p_lower[0],
                        samples=c["samples"][0], k_hat=c["k_hat"][0])


def _missing(values):
    """What a policy without a parameter gets in that coordinate, by the others' type."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool | np.bool_) for v in present):
        return False
    if all(isinstance(v, int | np.integer) for v in present):
        return 0
    if all(isinstance(v, int | float | np.number) for v in present):
        return math.nan
    return ""


def _coord_value(v):
    # tuples (a decision policy's stages) are stored as the spec writes them: 100/1000
    return "/".join(str(x) for x in v) if isinstance(v, tuple) else v


def _policy_coords(policies, references):
    """Policy parameters as coordinates along ``policy``: every key any policy has."""
    params = []
    for p in policies:
        d = {key: _coord_value(v) for key, v in p.params().items()}
        if hasattr(p, "k_bar"):
            d.setdefault("k_bar", p.k_bar)  # IAS and Cohen: their n
        params.append(d)
    keys = list(_COORDS) + list(dict.fromkeys(k for d in params for k in d if k not in _COORDS))
    out = {}
    for key in keys:
        values = [d.get(key) for d in params]
        fill = _COORDS[key] if key in _COORDS else _missing(values)
        values = [fill if v is None else v for v in values]
        if isinstance(fill, str):
            out[key] = np.array([str(v) for v in values], dtype=str)
        else:
            out[key] = np.array(values)
    out["validity"] = np.array([p.validity for p in policies], dtype=str)
    out["reference"] = np.array([r.name for r in references], dtype=str)
    return out


def _default_grid(radius):
    top = float(np.max(radius)) if radius.size else 0.0
    step = 0.25
    n = max(1, math.ceil(top / step + 1e-12) + 1)
    return np.round(np.arange(n) * step, 12)


def replay(
    store,
    policies,
    *,
    reference=None,
    seconds_per_sample=None,
    radius_grid=None,
    allow_incomplete=False,
    progress=False,
    index=None,
):
    """Replay certification policies over a stream store.

    Parameters
    ----------
    store : str, Path or StreamStore
        The store (a path is opened with :func:`isskit.store.open_store`).
    policies : str, policy, or sequence of them
        Policies or specs (:func:`isskit.policies.parse_policy_spec`); specs expand to grids.
    reference : str or policy, optional
        One policy every policy's MAD and speed-up are measured against. Default: per policy
        :func:`isskit.replay.metrics.default_reference` (``IAS(k_bar, alpha)``).
    seconds_per_sample : float, optional
        Seconds per sample for the estimated runtime; default the store's measured rate.
    radius_grid : array_like of float, optional
        Radii of the certified accuracy; default 0, 0.25, ... up to the largest radius.
    allow_incomplete : bool
        Replay the complete rows of a store with incomplete rows (the number left out is in
        the attrs ``n_images_left_out``) instead of refusing it.
    progress : bool
        Show progress bars on stderr.
    index : StreamIndex, optional
        A prebuilt index of this store for (at least) these policies and references.

    Returns
    -------
    xarray.Dataset
        Dims ``policy``, ``image``, ``radius_grid``; see DESIGN.md "Results" and docs/replay.md.

    Raises
    ------
    ValueError
        On a bad policy or argument, incomplete rows without ``allow_incomplete``, or a
        policy needing more samples than a stream holds.
    """
    import xarray as xr

    if isinstance(store, str | Path):
        from isskit.store import open_store

        with contextlib.ExitStack() as stack:
            opened = open_store(store)
            if hasattr(opened, "close"):
                stack.callback(opened.close)
            return replay(
                opened,
                policies,
                reference=reference,
                seconds_per_sample=seconds_per_sample,
                radius_grid=radius_grid,
                allow_incomplete=allow_incomplete,
                progress=progress,
                index=index,
            )

    policies = parse_policies(policies)
    if not policies:
        raise ValueError("policies ([]) must name at least one policy")
    if reference is None:
        references = [p.default_reference(policies) for p in policies]
    else:
        ref = parse_policies(reference)
        if len(ref) != 1:
            raise ArgumentError("reference", "{name} ({value!r}) must name exactly one policy",
                                value=reference)
        references = [ref[0]] * len(policies)
    every = list(dict.fromkeys([*policies, *references]))

    sigma = float(store.sigma)
    n = int(store.samples_per_image)
    complete = np.asarray(store.complete, dtype=bool)
    rows = np.flatnonzero(complete)
    left_out = int(complete.size - rows.size)
    image_index = np.asarray(store.image_index, dtype=np.int64)
    if left_out and not allow_incomplete:
        first = int(np.flatnonzero(~complete)[0])
        raise ArgumentError(
            "allow_incomplete", "{left_out} of {rows_all} rows of the store are incomplete "
            "(first: row {first}, image {image}); finish sampling, or set {name} to replay "
            "the {done} complete rows", left_out=left_out, rows_all=complete.size, first=first,
            image=int(image_index[first]), done=rows.size,
        )
    if rows.size == 0:
        raise ValueError(f"the store has no complete row (of {complete.size}) to replay")
    if seconds_per_sample is None:
        # NaN where the store does not know its sampling time (a synthetic store): the
        # estimated runtime is then NaN too, not an error.
        seconds_per_sample = float(store.seconds_per_sample())
        sps_source = "store" if math.isfinite(seconds_per_sample) else "unknown"
    else:
        sps_source = "given"
        if isinstance(seconds_per_sample, bool) or not isinstance(
            seconds_per_sample, int | float | np.integer | np.floating
        ):
            raise ValueError(f"seconds_per_sample ({seconds_per_sample!r}) must be a number")
        seconds_per_sample = float(seconds_per_sample)
        if not (math.isfinite(seconds_per_sample) and seconds_per_sample >= 0):
            raise ValueError(
                f"seconds_per_sample ({seconds_per_sample}) must be a finite number >= 0"
            )
    ids = image_index[rows]
    _check_static_needs(policies, n, ids[:1])
    for p, r in zip(policies, references, strict=True):
        try:
            _check_static_needs([r], n, ids[:1])
        except ValueError as exc:
            raise ArgumentError(
                "reference", "{error} (it is the reference of {policy}; choose one that fits "
                "with {name})", error=str(exc), policy=p.name,
            ) from None
    if index is None:
        index = build_index(store, every, rows=rows, progress=progress)
    elif not np.array_equal(index.rows, rows):
        raise ValueError("index was built over other rows than the store's complete rows")

    n_img = rows.size
    shape = (len(every), n_img)
    res = {f: np.empty(shape, np.int64) for f in _COUNT_FIELDS}
    planner = _Planner(index, sigma, ids, drawn=np.asarray(store.drawn)[rows]
                       if hasattr(store, "drawn") else None)
    per = max(1, _BATCH_CELLS // max(1, n_img))
    starts = range(0, len(every), per)
    if progress:
        starts = progress_bar(starts, desc="replaying policies", unit="batch", leave=False)
    for b0 in starts:
        _count_batch(index, planner, every[b0 : b0 + per],
                     out={f: res[f][b0 : b0 + per] for f in _COUNT_FIELDS})
    prediction, radius, p_lower = _certify(res.pop("chosen"), res.pop("k_A"), res.pop("k"),
                                           [p.alpha for p in every], sigma)
    res.update(prediction=prediction, radius=radius, p_lower=p_lower)
    fields = ("prediction", "radius", "p_lower", "samples", "k_hat")
    # every = policies, then the references that are not policies: views, no copies
    stacked = {f: res[f][: len(policies)] for f in fields}
    row_of = {p: i for i, p in enumerate(every)}
    ref_rows = np.array([row_of[r] for r in references])
    ref_radius = res["radius"][ref_rows]
    ref_samples = res["samples"][ref_rows]
    true_label = np.asarray(store.true_label, dtype=np.int64)[rows]
    if radius_grid is None:
        grid = _default_grid(stacked["radius"])
    else:
        grid = np.asarray(radius_grid, dtype=np.float64).reshape(-1)
        if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
            raise ArgumentError("radius_grid", "{name} ({value}) must hold finite radii >= 0",
                                value=grid.tolist())

    pol = ("policy",)
    pim = ("policy", "image")
    coords = {"policy": [p.name for p in policies], "image": rows, "radius_grid": grid}
    for key, values in _policy_coords(policies, references).items():
        coords[key] = (pol, values)
    data = {
        "prediction": (pim, stacked["prediction"]),
        "radius": (pim, stacked["radius"]),
        "p_lower": (pim, stacked["p_lower"]),
        "samples": (pim, stacked["samples"]),
        "k_hat": (pim, stacked["k_hat"]),
        "true_label": (("image",), true_label),
        "image_index": (("image",), ids),
        "p_A_empirical": (("image",), index.p_A_empirical),
        "top_class": (("image",), index.top_class),
        "acr": (pol, acr(stacked["prediction"], stacked["radius"], true_label)),
        "mad": (pol, mad(stacked["radius"], ref_radius)),
        "mean_samples": (pol, mean_samples(stacked["samples"])),
        "total_samples": (pol, total_samples(stacked["samples"])),
        "est_minutes": (pol, est_minutes(stacked["samples"], seconds_per_sample)),
        "speedup": (pol, speedup(stacked["samples"], ref_samples)),
        "certified_accuracy": (
            ("policy", "radius_grid"),
            certified_accuracy(stacked["prediction"], stacked["radius"], true_label, grid),
        ),
    }
    path = getattr(store, "path", None)
    sha = store.sha256() if hasattr(store, "sha256") else None
    attrs = make_attrs(
        store_path=None if path is None else str(path),
        store_sha256=sha,
        sigma=sigma,
        num_classes=int(store.num_classes),
        samples_per_image=n,
        seconds_per_sample=seconds_per_sample,
        seconds_per_sample_source=sps_source,
        n_images=int(rows.size),
        n_images_left_out=left_out,
    )
    ds = xr.Dataset(data, coords=coords, attrs=attrs)
    _describe(ds)
    return ds


_DESCRIPTIONS = {
    "prediction": "predicted class, -1 for an abstention",
    "radius": "certified l2 radius sigma * Phi^-1(p_lower), 0 when abstaining",
    "p_lower": "one-sided Clopper-Pearson lower bound on p_A; NaN where no estimate was made",
    "samples": "samples consumed for the image",
    "k_hat": "ISS sample size from the pilot (-1 for other policies)",
    "true_label": "true class of the image",
    "image_index": "dataset index of the image",
    "p_A_empirical": "frequency of the most frequent label over the whole stream",
    "top_class": "most frequent label over the whole stream",
    "acr": "average certified radius (Chen et al. 2022, Eq. 7)",
    "mad": "max over images of reference radius - radius",
    "mean_samples": "mean samples consumed per image",
    "total_samples": "samples consumed over all images",
    "est_minutes": "estimated runtime in minutes: total samples x seconds_per_sample / 60",
    "speedup": "reference total samples / total samples",
    "certified_accuracy": "fraction correct with radius > r (Chen et al. 2022, Eq. 8)",
}


def _describe(ds):
    for name, text in _DESCRIPTIONS.items():
        if name in ds:
            ds[name].attrs["description"] = text


def save_results(ds, path) -> Path:
    """Write a replay's results to netCDF with the h5netcdf engine.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`replay`.
    path : str or Path
        Output file, written atomically (:func:`isskit._atomic.atomic_path`): a failed or
        killed write leaves the previous file as it was.

    Returns
    -------
    Path

    Raises
    ------
    OSError
        The file could not be written (disk full, ...); ``path`` is unchanged.
    """
    path = Path(path)
    # Serialised in memory, then written with plain file I/O: HDF5 failing a write
    # mid-file (a full disk) fails its close too and leaves the library in a state that
    # crashes the interpreter at exit. The Dataset is in memory already; this is a copy.
    data = ds.to_netcdf(engine="h5netcdf")
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(data)
    return path


def load_results(path):
    """Read results written by :func:`save_results` into memory.

    Parameters
    ----------
    path : str or Path
        A netCDF file.

    Returns
    -------
    xarray.Dataset
    """
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def cohen_log_paths(names, directory) -> list[Path]:
    """The files :func:`export_cohen` writes for these policy names: ``<name>.tsv`` each.

    Parameters
    ----------
    names : sequence of str
        Policy names (``ds.policy`` values, or the policies' ``name``).
    directory : str or Path

    Returns
    -------
    list of Path
    """
    d = Path(directory)
    return [d / f"{_safe_name(str(name))}.tsv" for name in names]


#: The header of Cohen et al.'s certify.py log, which every Cohen-format log isskit writes
#: starts with (:func:`export_cohen`, ``isskit certify``).
COHEN_LOG_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


def cohen_log_line(idx, label, predict, radius, seconds) -> str:
    """One line of a Cohen-format log, as :func:`export_cohen` documents it.

    ``seconds`` NaN writes ``nan`` as the time; ``correct`` is 1 where ``predict`` is the
    label (an abstention, -1, is never correct).
    """
    seconds = float(seconds)
    t = str(datetime.timedelta(seconds=seconds)) if math.isfinite(seconds) else "nan"
    correct = int(predict == label and predict >= 0)
    return f"{int(idx)}\t{int(label)}\t{int(predict)}\t{float(radius):.6f}\t{correct}\t{t}\n"


def export_cohen(ds, directory) -> list[Path]:
    """Write each policy's per-image results as a Cohen-format certification log.

    One tab-separated file per policy, ``<directory>/<policy name>.tsv``, with the header
    ``idx label predict radius correct time`` of Cohen et al.'s ``certify.py``: ``idx`` the
    dataset index, ``predict`` -1 for an abstention, ``correct`` 1 or 0, ``time`` the
    estimated wall time of the image (samples x seconds per sample) written as
    ``certify.py`` writes it (``str(datetime.timedelta)``), or ``nan`` where the sampling
    time is unknown. Radii get 6 decimals (``certify.py`` prints 3 significant digits;
    more keep the counts recoverable).

    Parameters
    ----------
    ds : xarray.Dataset
        Replay results.
    directory : str or Path
        Created if needed. Each file is written atomically
        (:func:`isskit._atomic.atomic_path`).

    Returns
    -------
    list of Path
        The files written, in policy order (:func:`cohen_log_paths`).
    """
    d = Path(directory)
    paths = cohen_log_paths(ds.policy.values, d)
    d.mkdir(parents=True, exist_ok=True)
    sps = float(ds.attrs.get("seconds_per_sample", math.nan))
    idx = ds.image_index.values
    label = ds.true_label.values
    out = []
    for i, path in enumerate(paths):
        pred = ds.prediction.values[i]
        rad = ds.radius.values[i]
        samples = ds.samples.values[i]
        with atomic_path(path) as tmp, tmp.open("w") as f:
            f.write(COHEN_LOG_HEADER)
            for j in range(idx.size):
                f.write(cohen_log_line(idx[j], label[j], pred[j], rad[j],
                                       float(samples[j]) * sps))
        out.append(path)
    return out
