"""Online certification: run the policies replay chose, drawing only what they need.

For each image the policies are asked, through :meth:`isskit.policies.RadiusPolicy.needs`
(the one definition replay, audit and this module share), whether the labels drawn so far
decide them; if not, each answers with the least total number of samples it needs, the
image's row is drawn up to the largest of those, in draw order, and the policies are
asked again. Pieces of the rows of a window of images are packed into the same forward
passes (:class:`isskit.sampling.sampler._BlockSampler`), and the noise of a sample
depends on (seed, image index, sample) alone (``isskit-noise-v2``), so the labels are
those ``isskit sample`` would draw, and replaying the store written here gives back the
certificates printed.

The store (schema 2) holds, per row, only the samples drawn (``/drawn``); a row is written
once every policy has decided, in row order, and only then is its line appended (and
flushed) to each policy's Cohen-format log. An existing store of the same run is a cache:
its rows are reused, and drawn further only where the policies need more. A killed run
rerun with the same arguments rewrites the logs from the store and goes on.

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
from isskit.sampling.sampler import (
    NOISE_BLOCK,
    NOISE_SCHEME,
    _BlockSampler,
    _check_classes,
    _device_name,
    _prepare,
    _probe,
    _shard,
    _sync,
    check_row_memory,
    noise_description,
    resolve_device,
)
from isskit.store import open_for_writing
from isskit.validate import check_positive_int, check_sample_size, check_sigma

__all__ = ["CertifyRun", "certify_to_store"]

#: Images whose rows are drawn together: enough pieces to fill forward passes when each
#: policy asks for little at a time, few enough that rows are written soon after they
#: are decided (a kill loses at most this window's draws).
_WINDOW = 32


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
        The certificates, as :func:`isskit.replay.replay` gives them (-1: abstain).
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


def _decide(policies, labels, sigma):
    """Every policy's answer on a prefix: ``(needed, counted)``; ``needed`` 0 when decided."""
    counted, need = [], 0
    for p in policies:
        got = p.needs(labels, sigma=sigma)
        if isinstance(got, int | np.integer):
            need = max(need, int(got))
            counted.append(None)
        else:
            counted.append(got)
    return need, counted


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
    policies : sequence of RadiusPolicy or spec strings
        The policies (:func:`isskit.policies.parse_policies`).
    max_samples : int, optional
        The most samples one image may get (the store's ``N``); by default the largest
        :attr:`max_samples` of the policies. A policy that may need more is refused.
    log_dir : str or Path, optional
        Write ``<policy name>.tsv`` there per policy, Cohen's format
        (:func:`isskit.replay.cohen_log_paths`), a line flushed per image.

    Returns
    -------
    CertifyRun

    Raises
    ------
    ValueError
        No policy, a policy that is not a radius policy or that may need more than
        ``max_samples``; as :func:`~isskit.sampling.sample_to_store` otherwise.
    isskit.store.StoreError
        The store exists with other parameters, or another process is writing it.
    """
    from isskit.logs.cohen_format import HEADER_LINE, format_row
    from isskit.policies import RadiusPolicy, parse_policies
    from isskit.replay.engine import _certify
    from isskit.replay.results import cohen_log_paths

    policies = parse_policies(policies)
    if not policies:
        raise ValueError("policies ([]) must name at least one policy")
    for p in policies:
        if not isinstance(p, RadiusPolicy):
            raise ValueError(f"policy {p.name} is a {p.question} policy; certify takes radius "
                             "policies (cohen, ias, iss, budget)")
    sigma = check_sigma(sigma)
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
    check_row_memory(N, dev=dev, noise_bytes=pixels * (NOISE_BLOCK + batch))
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
    P = len(policies)
    res = {f: np.empty((P, n), np.int64) for f in ("chosen", "k_A", "k", "samples")}
    drawn_final = np.zeros(n, np.int64)
    drawn_now, seconds = 0, 0.0
    logs = []
    with open_for_writing(out, image_index=selected, true_label=labels_true,
                          samples_per_image=N, attrs=attrs) as writer:
        cached = np.where(writer.complete, writer.drawn, 0)
        log_files = []
        if log_dir is not None:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            logs = cohen_log_paths([p.name for p in policies], log_dir)
            # rewritten whole: the rows already in the store get their lines again
            log_files = [path.open("w") for path in logs]
            for f in log_files:
                f.write(HEADER_LINE)
                f.flush()
        bar = progress_bar(total=n, unit="image", enabled=progress and rank == 0,
                           desc=f"certifying {out.name}")
        try:
            with bar, torch.inference_mode():
                sampler = _BlockSampler(model, tuple(x0.shape), sigma=sigma, seed=seed,
                                        batch=batch, dev=dev, amp=amp,
                                        channels_last=channels_last)
                rows = {}  # row -> [host labels, drawn, device x, seconds, new draws?]
                nxt = 0
                commit = 0
                while commit < n:
                    while nxt < n and len(rows) < _WINDOW:
                        host = np.zeros(N, np.uint16)
                        if cached[nxt]:
                            host[:cached[nxt]] = writer.read_row(nxt, cached[nxt])
                        x = dataset[int(selected[nxt])][0].to(dev, dtype=torch.float32)
                        rows[nxt] = [host, int(cached[nxt]), x, 0.0, False]
                        nxt += 1
                    requests, dests = [], []
                    for r, st in rows.items():
                        need, _ = _decide(policies, st[0][:st[1]], sigma)
                        if need:
                            dest = torch.empty(need - st[1], dtype=torch.int64, device=dev)
                            requests.append((st[2], int(selected[r]), st[1], need, dest))
                            dests.append((r, need, dest, need - st[1]))
                    if requests:
                        _sync(dev)
                        t0 = time.perf_counter()
                        sampler.run(requests)
                        for r, need, dest, _ in dests:
                            st = rows[r]
                            st[0][st[1]:need] = dest.cpu().numpy().astype(np.uint16)
                            drawn_now += need - st[1]
                            st[1], st[4] = need, True
                        _sync(dev)
                        dt = time.perf_counter() - t0
                        total = sum(got for *_, got in dests)
                        for r, _, _, got in dests:  # the round's time, shared by samples
                            rows[r][3] += dt * got / max(total, 1)
                        seconds += dt
                        continue
                    # every row of the window has decided: commit them in row order
                    for r in sorted(rows):
                        host, drawn, _, secs, fresh = rows.pop(r)
                        _, counted = _decide(policies, host[:drawn], sigma)
                        for b, c in enumerate(counted):
                            res["chosen"][b, r], res["k_A"][b, r] = c.chosen, c.k_A
                            res["k"][b, r], res["samples"][b, r] = c.k, c.samples
                        drawn_final[r] = drawn
                        if fresh:
                            writer.write_rows_at([r], host[None, :], [secs], drawn=[drawn])
                        pred, rad, _ = _certify(res["chosen"][:, r:r + 1].copy(),
                                                res["k_A"][:, r:r + 1], res["k"][:, r:r + 1],
                                                [p.alpha for p in policies], sigma)
                        for b, f in enumerate(log_files):
                            row_secs = secs if fresh else float("nan")
                            f.write(format_row(
                                selected[r], labels_true[r], pred[b, 0], rad[b, 0],
                                row_secs * res["samples"][b, r] / max(drawn, 1)))
                            f.flush()
                        commit += 1
                        bar.update(1)
                        bar.set_postfix_str(
                            f"drawn {int(drawn_final.sum()):,}, saved "
                            f"{1 - drawn_final.sum() / (commit * N):.0%} of {N:,} per image",
                            refresh=False)
        finally:
            for f in log_files:
                f.close()
    prediction, radius, p_lower = _certify(res["chosen"], res["k_A"], res["k"],
                                           [p.alpha for p in policies], sigma)
    return CertifyRun(
        path=out, policies=[p.name for p in policies], image_index=selected,
        true_label=labels_true, prediction=prediction, radius=radius, p_lower=p_lower,
        samples=res["samples"], drawn=drawn_final, samples_drawn_now=drawn_now,
        max_samples=N, seconds=seconds, logs=logs,
    )
