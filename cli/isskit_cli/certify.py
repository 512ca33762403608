"""``isskit certify``: run the chosen policies online, drawing only the samples they need.

Thin layer over :func:`isskit.sampling.certify.certify_to_store`: parses and checks the
options (model and data exactly as ``isskit sample``, :mod:`isskit_cli._options`), loads the
model and the images, summarises what the policies certified and what drawing lazily saved.
The store it writes replays (``isskit replay STORE -p SPEC``) to the certificates it printed;
the rule of every policy is its module's (:meth:`isskit.policies.RadiusPolicy.needs`), never
this one's. torch is imported only when the command runs.

Exit status: 0 done; 2 bad input (as ``isskit sample``; no --policy, a bad SPEC, a policy
that may need more than --max-samples, a store at --out made with another model, data,
sigma, seed or noise scheme, an --out or log that is an input); 1 a failure while running
(another process writing the store, as ``isskit sample``; a full disk; an error inside
torch). Every option has a spelling torchrun's own parser hands on unchanged (``--max-index``
for ``--max``, which it takes for an abbreviation of its own ``--max-restarts``).
"""

from __future__ import annotations

from pathlib import Path

import click

from isskit_cli._common import (
    SAMPLE_SIZE,
    check_output_dir,
    check_overwrites,
    echo_json,
    library_errors,
    parse_policy_specs,
)
from isskit_cli._options import (
    check_model_options,
    check_run_values,
    check_store_out,
    load_model_data,
    merge_command,
    model_options,
    on_ranks,
    own_store,
    parse_indices,
    run_options,
    store_run_errors,
)

__all__ = ["certify", "default_log_dir"]

_EPILOG = """\b
Policy SPEC as isskit replay's (a comma list expands to a grid):
  ISS-AD-10-0.05   "iss decline=ad k_bar=1e5 U=0.05 k0=1000 fresh=true"
  "ias n=26000"    "cohen n0=100 n=100000"    "adaptive r=0.25"    "cs r=0.5"

\b
Examples:
  isskit certify -p ISS-AD-1-0.05 -p "cohen n0=100 n=10000" --out online.h5
  isskit certify --arch cifar_resnet110 --checkpoint ckpt.pth.tar --data-root ~/cifar10
      --sigma 0.25 -p ISS-AD-10-0.05 --skip 20 --out c.h5 --json
  torchrun --nproc_per_node 4 -m isskit_cli.main certify -p ISS-AD-10-0.05
      --max-index 500 --log-dir logs/ --out online.h5
"""


def default_log_dir(out: Path) -> Path:
    """Where the Cohen-format logs go without --log-dir: ``<out stem>_logs`` beside --out."""
    out = Path(out)
    return out.with_name(f"{out.stem if out.suffix else out.name}_logs")


def _rank_log_dir(logs: Path, rank: int, world: int) -> Path:
    """A rank's own log folder under torchrun (the ranks' logs share policy names)."""
    return logs / f"rank{rank}" if world > 1 else logs


def _stored_N(out: Path) -> int | None:
    """N of the store this process would resume at --out, if there is one."""
    from isskit.store import open_store

    path = own_store(out)
    if not path.exists():
        return None
    with open_store(path) as s:  # check_store_out has opened it already
        return int(s.samples_per_image)


def _check_max_samples(policies, spec_of, max_samples, stored_N):
    """--max-samples, or its default; a policy that may need more: refused.

    The default is the most any policy may need, or an existing store's N where that is
    enough (N is a run parameter: the store stays a cache for policies that need less).
    The library refuses a policy that may need more than N too (its message names its
    argument, not the option); this is said first, with both the option and the --policy
    as typed, before a model is loaded.
    """
    need = max(int(p.max_samples) for p in policies)
    if max_samples is None:
        return stored_N if stored_N is not None and stored_N >= need else need
    for p in policies:
        if int(p.max_samples) > max_samples:
            raise click.BadParameter(
                f"{max_samples:,} is fewer than policy {p.name} (--policy "
                f"{spec_of[p.name]!r}) may need for an image ({int(p.max_samples):,}): it "
                f"could not always decide within --max-samples; raise it to at least "
                f"{int(p.max_samples):,} or drop that policy", param_hint="--max-samples")
    return max_samples


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=_EPILOG)
@model_options
@click.option("--policy", "-p", "specs", multiple=True, metavar="SPEC",
              help="A policy, or a grid of them, to certify every image with. Repeatable; "
                   "at least one.")
@click.option("--max-samples", type=SAMPLE_SIZE, metavar="N",
              help="Most samples one image may get (the store's N). Default: the most any "
                   "given policy may need, or an existing --out's N where that is enough; "
                   "a policy that may need more is refused.")
@run_options
@click.option("--log-dir", "log_dir",
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the Cohen-format logs, <policy name>.tsv each, a line flushed "
                   "per image (default: <out stem>_logs beside --out; under torchrun a "
                   "rank<r> folder in it per rank).")
@click.option("--out", required=True, type=click.Path(path_type=Path),
              help="The stream store (HDF5, schema 2: per image only the samples drawn). An "
                   "existing one of the same model, data, sigma and seed is a cache: its "
                   "draws are reused and extended where the policies need more; under "
                   "torchrun each rank writes OUT.rank<r>.h5.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Progress bar on stderr (images, samples drawn and saved, ETA).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def certify(model_spec, arch, checkpoint, dataset, data_root, sigma, specs, max_samples,
            batch, skip, max_index, indices, seed, device, amp, channels_last, num_classes,
            log_dir, out, progress, as_json):
    """Certify each image with the given policies, drawing only the samples they need.

    For every image the noisy copies are drawn in the policies' own draw order, a few at a
    time, until every policy has decided (ISS stops after its pilot and k_hat, Cohen's
    CERTIFY after n0 + n, a sequential test when it stops); several images share every
    forward pass. The draws go to --out, one Cohen-format log per policy to --log-dir.
    isskit replay OUT -p SPEC gives back exactly the certificates printed here.

    Model and data options as isskit sample (with none, the embedded default at sigma
    0.25). The noise of sample t of image i depends on (seed, i, t) alone: the labels are
    those isskit sample draws, whatever --batch. Killed and rerun with the same options,
    it resumes; under torchrun each rank certifies every world_size-th image into
    OUT.rank<r>.h5; join them with isskit merge.
    """
    indices = parse_indices(indices)
    _, sigma = check_model_options(model_spec, arch, checkpoint, indices, skip, max_index,
                                   sigma)
    if not specs:
        raise click.UsageError("name at least one policy to certify with: --policy SPEC "
                               "(e.g. -p ISS-AD-1-0.05; see --help)")
    policies, spec_of = parse_policy_specs(specs)

    from isskit import require_extra

    with library_errors():
        require_extra("torch", "torch", "isskit certify")
    from isskit.replay import cohen_log_paths
    from isskit.sampling import distributed_env

    rank, world, _ = distributed_env()
    logs = default_log_dir(out) if log_dir is None else log_dir
    rank_logs = _rank_log_dir(logs, rank, world)
    inputs = [("the --checkpoint", checkpoint)]
    check_overwrites([("--out", out)], inputs, stores=True)
    with store_run_errors():
        check_store_out(out)
        check_run_values(sigma=sigma, batch=batch, seed=seed, skip=skip, max_index=max_index)
        if max_samples is not None:
            from isskit.validate import check_sample_size

            check_sample_size(max_samples, "max_samples")
        N = _check_max_samples(policies, spec_of, max_samples, _stored_N(out))
        from isskit.sampling import check_row_memory

        check_row_memory(N)  # up front: before the model and the images are loaded
    if Path(rank_logs).resolve() == Path(out).resolve():
        raise click.UsageError(f"--log-dir ({logs}) is the --out store itself: give the logs "
                               "a folder of their own")
    check_output_dir(rank_logs, "--log-dir")
    log_files = cohen_log_paths([p.name for p in policies], rank_logs)
    check_overwrites([("--log-dir", f) for f in log_files], [*inputs, ("the --out", out)])

    with store_run_errors():
        result = _run(model_spec, arch, checkpoint, dataset, data_root, sigma, policies, N,
                      batch, skip, max_index, indices, seed, device, amp, channels_last,
                      num_classes, out, logs, progress)
    if result is None:  # not rank 0
        return
    if as_json:
        echo_json(result)
        return
    _print(result)


def _run(model_spec, arch, checkpoint, dataset, data_root, sigma, policies, N, batch, skip,
         max_index, indices, seed, device, amp, channels_last, num_classes, out, logs,
         progress):
    from isskit.sampling.certify import certify_to_store

    md = load_model_data(model_spec, arch, checkpoint, dataset, data_root, num_classes,
                         skip=skip, max_index=max_index, indices=indices)

    def work(rank, world, dev):
        run = certify_to_store(
            md.loaded.model, md.data.dataset, out, policies=policies, sigma=sigma,
            max_samples=N, batch=batch, seed=seed, indices=md.selected, device=dev, amp=amp,
            channels_last=channels_last, progress=progress,
            model_description=md.loaded.description, dataset_name=md.data.name,
            num_classes=md.num_classes, log_dir=_rank_log_dir(logs, rank, world),
            rank=rank, world_size=world)
        return _rank_summary(run, rank)

    ranks = on_ranks(device, work)
    if ranks is None:
        return None
    result = _summary(ranks, policies, N)
    result.update(out=str(out), sigma=sigma, max_samples=N, seed=seed, batch=batch,
                  model=md.loaded.description, dataset=md.data.name, log_dir=str(logs))
    if len(ranks) > 1:
        result["merge_command"] = merge_command(out, len(ranks))
    return result


def _rank_summary(run, rank: int) -> dict:
    """What one rank's :class:`~isskit.sampling.certify.CertifyRun` holds, picklable."""
    got = {f: getattr(run, f) for f in ("image_index", "true_label", "prediction", "radius",
                                         "samples", "drawn")}
    decision = getattr(run, "decision", None)  # the decision policies' -1/0/1, where given
    if decision is not None:
        got["decision"] = decision
    got.update(rank=rank, path=str(run.path), logs=[str(p) for p in run.logs],
               samples_drawn_now=int(run.samples_drawn_now), seconds=float(run.seconds),
               n_images=len(run.image_index))
    return got


def _summary(ranks, policies, N: int) -> dict:
    """Per policy its certificates' summary, and what drawing lazily saved, over every rank.

    Drawing lazily is measured against drawing ``N`` (--max-samples) for every image.
    """
    import numpy as np

    from isskit.replay.metrics import acr, mean_samples

    def joined(key, axis=-1):
        return np.concatenate([np.asarray(r[key]) for r in ranks], axis=axis)

    true = joined("true_label")
    pred, rad, samples = joined("prediction"), joined("radius"), joined("samples")
    decision = joined("decision") if all("decision" in r for r in ranks) else None
    drawn = joined("drawn")
    rows = []
    for b, p in enumerate(policies):
        row = {"name": p.name, "kind": p.kind, "question": p.question,
               "validity": p.validity, "params": p.params(),
               "mean_samples": float(mean_samples(samples[b])),
               "total_samples": int(samples[b].sum()),
               # what the policy alone saves against drawing N for every image
               "saved_fraction": 1 - float(samples[b].sum()) / (true.size * N)
               if true.size else 0.0,
               "logs": [r["logs"][b] for r in ranks if r["logs"]]}
        if p.question == "radius":
            row.update(acr=float(acr(pred[b], rad[b], true)),
                       certified=int(np.count_nonzero(pred[b] >= 0)),
                       certified_correct=int(np.count_nonzero((pred[b] >= 0)
                                                              & (pred[b] == true))))
        else:  # the log's convention: the class certified or -1, radius r or 0
            row.update(r=float(p.r), certified_share=float(np.mean(pred[b] >= 0)),
                       certified_accuracy_at_r=float(np.mean((pred[b] >= 0)
                                                             & (pred[b] == true))))
            if decision is not None:
                row["undecided"] = float(np.mean(decision[b] == -1))
        rows.append(row)
    n = int(true.size)
    total = int(drawn.sum())
    seconds = sum(r["seconds"] for r in ranks)
    now = sum(r["samples_drawn_now"] for r in ranks)
    return {"policies": rows, "totals": {
        "images": n,
        "samples_drawn": total,
        "samples_full_n": n * N,
        "saved_fraction": 1 - total / (n * N) if n else 0.0,
        "samples_drawn_now": int(now),
        "seconds": float(seconds),
        "samples_per_second": now / seconds if seconds > 0 else None,
    }, "ranks": [{k: r[k] for k in ("rank", "path", "n_images", "samples_drawn_now",
                                    "seconds")} for r in ranks]}


def _print(result) -> None:
    t = result["totals"]
    for row in result["policies"]:
        if row["question"] == "radius":
            what = (f"ACR {row['acr']:.3f}, {row['certified']} of {t['images']} certified "
                    f"({row['certified_correct']} correct)")
        else:
            what = (f"r = {row['r']:g}: {100 * row['certified_share']:.1f}% certified, "
                    f"certified accuracy {100 * row['certified_accuracy_at_r']:.1f}%")
        click.echo(f"{row['name']} [{row['validity']}]: {what}; "
                   f"{row['mean_samples']:,.0f} samples per image "
                   f"({100 * row['saved_fraction']:.1f}% saved)")
    click.echo(
        f"{result['out']}: {t['images']} images, {t['samples_drawn']:,} samples drawn "
        f"({t['samples_drawn_now']:,} by this run) where drawing {result['max_samples']:,} "
        f"(--max-samples) for every image draws {t['samples_full_n']:,}: "
        f"{100 * t['saved_fraction']:.1f}% saved; logs in {result['log_dir']}")
    if "merge_command" in result:
        click.echo("join the rank stores with:  " + result["merge_command"])
