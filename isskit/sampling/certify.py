"""Online certification: run the policies replay chose, drawing only what they need.

For each image the policies, radius and decision policies alike, are asked through their
``needs`` (:meth:`isskit.policies.RadiusPolicy.needs`,
:meth:`isskit.policies.DecisionPolicy.needs`: the one definition replay, audit and this
module share) whether the labels drawn so far decide them; if not, each answers with the
least total number of samples it needs, the image's row is drawn up to the largest of
those, in draw order, and the policies are asked again. Pieces of the rows of a window
of images are packed into the same forward passes
(:class:`isskit.sampling._samplers._BlockSampler`), and the noise of a sample depends on
(seed, image index, sample) alone (``isskit-noise-v2``), so the labels are those
``isskit sample`` would draw, and replaying the store written here gives back the
certificates printed.

The store (schema 2) holds, per row, only the samples drawn (``/drawn``). Up to
``_WINDOW`` undecided rows are drawn together; a decided row leaves the window at once (a
new one takes its place) and waits for the rows before it. The decided rows next in row
order are committed a window at a time (or all, once nothing is drawing): written to the
store, and each policy's Cohen-format log rewritten whole under a temporary name and
renamed into place (:func:`isskit.logs.write_cohen_log`), so
a log on disk is never half-written and always holds every image committed so far. An
existing store of the same run is a cache: its rows are reused, and drawn further only
where the policies need more. A killed run rerun with the same arguments rebuilds the
logs from the store and goes on.

A log's ``time`` is the row's sampling seconds (the store's ``/seconds``, cached rows
included, summed over every call that drew the row) times the share of the row's draws
the policy consumed.

Never prints (the progress bar goes to stderr through tqdm); never downloads.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from isskit.progress import progress_bar
from isskit.sampling._samplers import _BlockSampler
from isskit.sampling.device import (
    _device_name,
    _prepare,
    _probe,
    _sync,
    check_row_memory,
    resolve_device,
)
from isskit.sampling.images import _check_classes, _shard
from isskit.sampling.noise import NOISE_BLOCK, NOISE_SCHEME, noise_description
from isskit.store import open_for_writing
from isskit.validate import check_positive_int, check_sample_size, check_sigma

__all__ = ["CertifyRun", "certify_to_store"]

#: Undecided images whose rows are drawn together: enough pieces to fill forward passes
#: when each policy asks for little at a time.
_WINDOW = 32
#: Decided rows that may wait for an undecided earlier one before they are written (a
#: kill loses at most these and the window's draws; host memory: N * 2 bytes each).
_READY = 4 * _WINDOW


@dataclasses.dataclass(frozen=True)
class CertifyRun:
    """What one call of :func:`certify_to_store` did.

    Attributes
    ----------
    path : pathlib.Path
        The store written.
    policies : list of str
        The policies' names, in the order given.
    image_index, true_label : ndarray of int64
        Per row of the store.
    prediction, radius, p_lower, samples : ndarray, shape (policies, images)
        The certificates, as :func:`isskit.replay.replay` gives them: -1 abstains; for a
        decision policy ``prediction`` is the class certified (-1 otherwise) and
        ``radius``, ``p_lower`` are NaN.
    drawn : ndarray of int64
        Samples drawn per row (the most any policy consumed).
    samples_drawn_now : int
        Samples drawn by this call (0 where a cached store sufficed).
    max_samples : int
        ``N`` of the store.
    seconds : float
        Wall seconds of drawing.
    logs : list of Path
        The Cohen-format logs written (empty without ``log_dir``).
    decision : ndarray of int8, shape (policies, images)
        Decision policies: 1 certified at ``r``, 0 not, -1 undecided; -1 for radius
        policies (the results' ``decision``).
    """

    path: Path
    policies: list
    image_index: np.ndarray
    true_label: np.ndarray
    prediction: np.ndarray
    radius: np.ndarray
    p_lower: np.ndarray
    samples: np.ndarray
    drawn: np.ndarray
    samples_drawn_now: int
    max_samples: int
    seconds: float
    logs: list
    decision: np.ndarray | None = None


def _decide(policies, labels, sigma, true_label):
    """Every policy's answer on a prefix: ``(needed, answers)``; ``needed`` 0 when all decided."""
    answers, need = [], 0
    for p in policies:
        got = p.needs(labels, sigma=sigma, true_label=true_label)
        if isinstance(got, int | np.integer):
            need = max(need, int(got))
            answers.append(None)
        else:
            answers.append(got)
    return need, answers


class _Results:
    """Per (policy, image) answers as replay gives them, and the rows of the logs."""

    def __init__(self, policies, n, sigma):
        from isskit.replay.engine import _certify

        self._certify = _certify
        self.policies, self.sigma = policies, sigma
        P = len(policies)
        self.is_decision = np.array([p.question == "decision" for p in policies])
        self.alpha = [p.alpha for p in policies]
        self.r = np.array([getattr(p, "r", np.nan) for p in policies], np.float64)
        self.counts = {f: np.zeros((P, n), np.int64) for f in ("chosen", "k_A", "k")}
        self.samples = np.zeros((P, n), np.int64)
        self.decision = np.full((P, n), -1, np.int8)
        self.prediction = np.full((P, n), -1, np.int64)
        self.log_radius = np.zeros((P, n), np.float64)
        self.log_seconds = np.full((P, n), np.nan)

    def add(self, r, answers, row_seconds, drawn):
        for b, a in enumerate(answers):
            self.samples[b, r] = a.samples
            if self.is_decision[b]:
                self.decision[b, r], self.prediction[b, r] = a.decision, a.prediction
                # DESIGN.md: a decision policy's log radius is r where certified, else 0
                self.log_radius[b, r] = self.r[b] if a.decision == 1 else 0.0
            else:
                for f in self.counts:
                    self.counts[f][b, r] = getattr(a, f)
        radius_rows = ~self.is_decision
        if radius_rows.any():
            pred, rad, _ = self._certify(self.counts["chosen"][radius_rows, r:r + 1].copy(),
                                         self.counts["k_A"][radius_rows, r:r + 1],
                                         self.counts["k"][radius_rows, r:r + 1],
                                         [a for a, d in zip(self.alpha, self.is_decision,
                                                            strict=True) if not d], self.sigma)
            self.prediction[radius_rows, r] = pred[:, 0]
            self.log_radius[radius_rows, r] = rad[:, 0]
        # a fresh row's time and a cached row's alike: its seconds, by the share consumed
        self.log_seconds[:, r] = row_seconds * self.samples[:, r] / max(drawn, 1)

    def final(self):
        """``prediction, radius, p_lower`` of every cell, as replay's results hold them."""
        P, n = self.samples.shape
        radius = np.full((P, n), np.nan)
        p_lower = np.full((P, n), np.nan)
        prediction = self.prediction.copy()
        rows = np.flatnonzero(~self.is_decision)
        if rows.size:
            pred, rad, low = self._certify(self.counts["chosen"][rows].copy(),
                                           self.counts["k_A"][rows], self.counts["k"][rows],
                                           [self.alpha[b] for b in rows], self.sigma)
            prediction[rows], radius[rows], p_lower[rows] = pred, rad, low
        return prediction, radius, p_lower


def certify_to_store(model, dataset, out, *, policies, sigma: float,
                     max_samples: int | None = None, batch: int = 400, seed: int = 0,
                     indices: Sequence[int] | None = None, device=None, amp: bool = False,
                     channels_last: bool = False, progress: bool = True,
                     model_description: str | None = None, dataset_name: str | None = None,
                     num_classes: int | None = None, log_dir=None, rank: int = 0,
                     world_size: int = 1) -> CertifyRun:
    """Certify every selected image with every policy, drawing lazily; store the draws.

    Parameters
    ----------
    model, dataset, sigma, batch, seed, indices, device, amp, channels_last, progress,
    model_description, dataset_name, num_classes, rank, world_size
        As in :func:`isskit.sampling.sample_to_store`.
    out : str or Path
        The store (schema 2; ``N`` = ``max_samples``). An existing one of the same run is
        reused as a cache of draws.
    policies : sequence of Policy or spec strings
        Radius and decision policies, mixed (:func:`isskit.policies.parse_policies`).
    max_samples : int, optional
        The most samples one image may get (the store's ``N``); by default the largest
        :attr:`max_samples` of the policies. A policy that may need more is refused.
    log_dir : str or Path, optional
        Write ``<policy name>.tsv`` there per policy, Cohen's format
        (:func:`isskit.replay.cohen_log_paths`), rewritten atomically after every window
        of images (module docstring). A decision policy's ``radius`` is its ``r`` where it
        certified, else 0, and its ``predict`` the class certified or -1.

    Returns
    -------
    CertifyRun

    Raises
    ------
    ValueError
        No policy, or a policy that may need more than ``max_samples``; as
        :func:`~isskit.sampling.sample_to_store` otherwise.
    isskit.store.StoreError
        The store exists with other parameters, or another process is writing it.
    """
    from isskit.logs.cohen_format import write_cohen_log
    from isskit.policies import parse_policies
    from isskit.replay.results import cohen_log_paths

    policies = parse_policies(policies)
    if not policies:
        raise ValueError("policies ([]) must name at least one policy")
    sigma = check_sigma(sigma)
    for p in policies:
        if p.question == "decision" and hasattr(p, "thresholds"):
            p.thresholds(sigma)  # refuses, naming it, a policy that can never decide
        elif p.question == "radius":
            # the rule once on a full pilot: one that cannot run an image at a time (a
            # budget's B, whose price needs every image) refuses before anything is written
            p.plan(np.asarray([p.selection_size], np.int64), sigma=sigma)
    need_most = max(int(p.max_samples) for p in policies)
    if max_samples is None:
        max_samples = need_most
    N = check_sample_size(max_samples, "max_samples")
    for p in policies:
        if p.max_samples > N:
            raise ValueError(f"policy {p.name} may need {p.max_samples} samples for an image, "
                             f"more than max_samples ({N}): it cannot always decide")
    batch = check_positive_int(batch, "batch")
    seed = check_positive_int(seed, "seed", minimum=0)
    dev = resolve_device(device)
    selected, out, labels_true = _shard(dataset, indices, rank, world_size, out)
    model = _prepare(model, dev, channels_last)
    x0 = dataset[int(selected[0])][0]
    pixels = 4 * int(np.prod(x0.shape))
    # up to _WINDOW rows drawing and _READY decided rows wait in host memory at once, and a
    # window of them is stacked to be written
    check_row_memory(N, dev=dev, noise_bytes=pixels * (NOISE_BLOCK + batch),
                     rows=2 * _WINDOW + _READY)
    k = _probe(model, x0, dev, amp)
    _check_classes(k, num_classes, labels_true)
    precision = "bf16 autocast" if amp else "float32"
    attrs = dict(
        sigma=sigma, num_classes=k, seed=seed,
        dataset=dataset_name or type(dataset).__name__,
        model=f"{model_description or type(model).__name__}; precision {precision}",
        device=_device_name(dev), torch_version=str(torch.__version__), batch_size=batch,
        noise=noise_description(batch, dev.type, NOISE_SCHEME),
    )
    if world_size > 1:
        attrs.update(rank=rank, world_size=world_size)

    n = len(selected)
    res = _Results(policies, n, sigma)
    drawn_final = np.zeros(n, np.int64)
    drawn_now, seconds = 0, 0.0
    logs = []
    if log_dir is not None:
        logs = cohen_log_paths([p.name for p in policies], log_dir)

    def write_logs(upto):
        # rewritten whole under a temporary and renamed: never half-written on disk
        for b, path in enumerate(logs):
            write_cohen_log(path, selected[:upto], labels_true[:upto],
                            res.prediction[b, :upto], res.log_radius[b, :upto],
                            res.log_seconds[b, :upto])

    with open_for_writing(out, image_index=selected, true_label=labels_true,
                          samples_per_image=N, attrs=attrs, extend=True) as writer:
        # the log folder only once the store is accepted: a refused run leaves nothing
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
        cached = np.where(writer.complete, writer.drawn, 0)
        stored_seconds = writer.seconds
        bar = progress_bar(total=n, unit="image", enabled=progress and rank == 0,
                           desc=f"certifying {out.name}")
        with bar, torch.inference_mode():
            sampler = _BlockSampler(model, tuple(x0.shape), sigma=sigma, seed=seed,
                                    batch=batch, dev=dev, amp=amp,
                                    channels_last=channels_last)
            active = {}  # undecided row -> [host labels, drawn, device x, seconds, new?]
            ready = {}  # decided row -> (its state, the policies' answers), until committed
            nxt = commit = 0
            while commit < n:
                # A row that needs many rounds (cs near p0) does not hold the others up:
                # decided rows leave the window at once and wait, in row order, to be
                # committed, while new rows take their places in the forward passes.
                while nxt < n and len(active) < _WINDOW and len(ready) < _READY:
                    host = np.zeros(N, np.uint16)
                    secs = 0.0
                    if cached[nxt]:
                        host[:cached[nxt]] = writer.read_row(nxt, cached[nxt])
                        secs = float(stored_seconds[nxt])
                    x = dataset[int(selected[nxt])][0].to(dev, dtype=torch.float32)
                    active[nxt] = [host, int(cached[nxt]), x, secs, False]
                    nxt += 1
                requests, dests = [], []
                for r, st in list(active.items()):
                    need, answers = _decide(policies, st[0][:st[1]], sigma, labels_true[r])
                    if need:
                        dest = torch.empty(need - st[1], dtype=torch.int64, device=dev)
                        requests.append((st[2], int(selected[r]), st[1], need, dest))
                        dests.append((r, need, dest))
                    else:
                        ready[r] = (active.pop(r), answers)
                if requests:
                    _sync(dev)
                    t0 = time.perf_counter()
                    sampler.run(requests)
                    got = {}
                    for r, need, dest in dests:
                        st = active[r]
                        st[0][st[1]:need] = dest.cpu().numpy().astype(np.uint16)
                        got[r] = need - st[1]
                        st[1], st[4] = need, True
                    _sync(dev)
                    dt = time.perf_counter() - t0
                    total = sum(got.values())
                    for r, g in got.items():  # the round's time, shared by the samples drawn
                        active[r][3] += dt * g / total
                    drawn_now += total
                    seconds += dt
                # the decided rows next in row order: committed a window at a time (each
                # commit rewrites the logs whole), or all of them once nothing is drawing
                upto = commit
                while upto in ready:
                    upto += 1
                if upto - commit < _WINDOW and requests:
                    continue
                fresh = []
                for r in range(commit, upto):
                    (host, drawn, _, secs, new), answers = ready.pop(r)
                    res.add(r, answers, secs, drawn)
                    drawn_final[r] = drawn
                    if new:
                        fresh.append((r, host, secs, drawn))
                commit = upto
                if fresh:
                    writer.write_rows_at([f[0] for f in fresh], np.stack([f[1] for f in fresh]),
                                         [f[2] for f in fresh], drawn=[f[3] for f in fresh])
                write_logs(commit)
                bar.update(commit - bar.n)
                bar.set_postfix_str(
                    f"drawn {int(drawn_final.sum()):,}, saved "
                    f"{1 - drawn_final.sum() / (max(commit, 1) * N):.0%} of {N:,} per image",
                    refresh=False)
    prediction, radius, p_lower = res.final()
    return CertifyRun(
        path=out, policies=[p.name for p in policies], image_index=selected,
        true_label=labels_true, prediction=prediction, radius=radius, p_lower=p_lower,
        samples=res.samples, drawn=drawn_final, samples_drawn_now=drawn_now,
        max_samples=N, seconds=seconds, logs=logs, decision=res.decision,
    )
