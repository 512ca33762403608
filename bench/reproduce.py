"""Regenerate the tables of docs/reproduce.md: ISS against IAS (and the oracle) on published logs.

For each log: ``isskit import-log`` (library: isskit.logs.import_log) into a stream store of
505,000 samples per image, then two replays (isskit.replay.replay):

1. IAS-10, IAS-50 (the references, k_bar = 100,000 and 500,000), every ISS of the paper's
   grid (AD and RD, k_bar = 100,000 and 500,000, U = 0.05 and 0.10, k0 = k_bar / 100, pilot
   reused) and Cohen's CERTIFY at the log's own alpha (a check of the import);
2. IAS at each ISS's mean sample size (rounded to an integer).

and the oracle (isskit.studies.oracle) at each ISS's mean sample size, on the imported p_A.

The baseline every speed-up is measured against is IAS at k_bar on the same streams, in the
same run. Prints Markdown to stdout (and the numbers as JSON with --json-out).

    python bench/reproduce.py --workdir /tmp/isskit-repro --seeds 0,1,2 > /tmp/reproduce.md

Stores (100-200 MB each) are written to --workdir and deleted after use unless --keep. On
the 2-core development machine one log takes about 30 s (import and both replays).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from isskit.logs import import_log, read_cohen_log
from isskit.policies import IAS, ISS, Cohen
from isskit.replay import replay
from isskit.store import open_store
from isskit.studies.oracle import expected_acr, oracle_allocation

REPO = Path(__file__).resolve().parents[1]
LOGS = [
    ("CIFAR-10", 0.25, "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25"),
    ("CIFAR-10", 0.50, "cohen2019__cifar10_resnet110_noise_0.50_test_sigma_0.50"),
    ("CIFAR-10", 1.00, "cohen2019__cifar10_resnet110_noise_1.00_test_sigma_1.00"),
    ("ImageNet", 0.25, "cohen2019__imagenet_resnet50_noise_0.25_test_sigma_0.25"),
    ("ImageNet", 0.50, "cohen2019__imagenet_resnet50_noise_0.50_test_sigma_0.50"),
    ("ImageNet", 1.00, "cohen2019__imagenet_resnet50_noise_1.00_test_sigma_1.00"),
    ("ImageNet", 0.25, "salman2019__imagenet_replication-resnet50_noise_0.25_test_sigma_0.25"),
    ("ImageNet", 0.50, "salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50"),
    ("ImageNet", 1.00, "salman2019__imagenet_replication-resnet50_noise_1.00_test_sigma_1.00"),
]
K_BARS = (100_000, 500_000)
SAMPLES = 505_000  # k_bar + k0 for k_bar = 500,000: enough for every policy replayed here
ALPHA = 0.001  # the certificate's alpha in every replay (Cohen et al.'s and the paper's)


def iss_grid(k_bar):
    return [ISS(k_bar=k_bar, U=U, decline=d) for d in ("ad", "rd") for U in (0.05, 0.1)]


def run_log(dataset, sigma, name, workdir, seed):
    log_path = REPO / "data" / "published" / "certify-logs" / name
    store_path = workdir / f"{name}.seed{seed}.h5"
    t0 = time.time()
    imported = import_log(log_path, store_path, samples_per_image=SAMPLES, seed=seed, progress=True)
    t_import = time.time() - t0
    log = read_cohen_log(log_path)
    log_acr = float(np.mean(np.where(log.correct, log.radius, 0.0)))

    refs = [IAS(n=k) for k in K_BARS]
    isses = [p for k in K_BARS for p in iss_grid(k)]
    check = Cohen(n0=100, n=100_000, alpha=imported.alpha)
    t0 = time.time()
    ds1 = replay(store_path, [*refs, *isses, check], progress=True)
    matched = {p: IAS(n=round(float(ds1.mean_samples.sel(policy=p.name)))) for p in isses}
    ds2 = replay(store_path, list(dict.fromkeys(matched.values())), progress=True)
    t_replay = time.time() - t0

    with open_store(store_path) as s:
        p_A = np.asarray(s.columns["p_A"], dtype=np.float64)
        correct = np.asarray(s.columns["predicted"]) == np.asarray(s.true_label)
        N = s.samples_per_image

    def row(ds, policy):
        return ds.sel(policy=policy.name)

    out = {
        "dataset": dataset, "sigma": sigma, "log": name, "images": len(log), "seed": seed,
        "log_acr": log_acr, "log_alpha": imported.alpha,
        "check_acr": float(row(ds1, check).acr), "import_seconds": t_import,
        "replay_seconds": t_replay, "refs": {}, "iss": [],
    }
    for ref in refs:
        r = row(ds1, ref)
        out["refs"][ref.n] = {
            "name": ref.name, "acr": float(r.acr), "mean_samples": float(r.mean_samples),
            "est_minutes": float(r.est_minutes),
            "expected_acr": expected_acr(ref.n, p_A, correct, sigma, ALPHA),
        }
    for p in isses:
        r = row(ds1, p)
        ref = IAS(n=p.k_bar)
        ref_r = row(ds1, ref)
        ias = matched[p]
        m = row(ds2, ias)
        budget = float(r.mean_samples)
        oracle = oracle_allocation(p_A, budget, sigma=sigma, alpha=ALPHA, correct=correct,
                                   k_grid=_grid(N))
        k_hat = np.asarray(r.k_hat)
        e_iss = expected_acr(np.maximum(k_hat, 0), p_A, correct, sigma, ALPHA)
        e_ias = expected_acr(ias.n, p_A, correct, sigma, ALPHA)
        gap = oracle.acr - e_ias
        out["iss"].append({
            "name": p.name, "k_bar": p.k_bar, "decline": p.decline, "U": p.U,
            "acr": float(r.acr), "mad": float(r.mad), "mean_samples": budget,
            "speedup": float(ref_r.mean_samples) / budget,
            "est_minutes": float(r.est_minutes),
            "ias_name": ias.name, "ias_n": ias.n, "ias_acr": float(m.acr),
            "ias_mad": float(np.max(np.asarray(ref_r.radius) - np.asarray(m.radius))),
            "oracle_acr": oracle.acr, "oracle_bound": oracle.upper_bound,
            "oracle_mean_samples": oracle.mean_samples,
            "expected_iss_acr": e_iss, "expected_ias_acr": e_ias,
            "share": (e_iss - e_ias) / gap if gap > 0 else float("nan"),
            "share_replayed": (float(r.acr) - float(m.acr)) / (oracle.acr - float(m.acr))
            if oracle.acr > float(m.acr) else float("nan"),
        })
    return out


def _grid(N):
    from isskit.studies.oracle import default_k_grid

    return default_k_grid(N, points=400)


def markdown(results, all_results):
    lines = []
    for res in results:
        lines.append(f"### {res['dataset']}, sigma = {res['sigma']:.2f}\n")
        lines.append(
            f"`{res['log']}`: {res['images']} images; the log's own ACR {res['log_acr']:.3f} "
            f"(alpha {res['log_alpha']:g}); Cohen-10 replayed at that alpha on the imported "
            f"streams: {res['check_acr']:.3f}.\n"
        )
        lines.append("| method | ACR | MAD | mean samples | speed-up | est. min | IAS at same "
                     "samples | its ACR | its MAD | ISS - IAS | oracle ACR | share of oracle "
                     "gain |")
        lines.append("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
                     "| ---: |")
        for k_bar in K_BARS:
            ref = res["refs"][k_bar]
            lines.append(f"| **{ref['name']}** (reference) | {ref['acr']:.3f} | 0 | "
                         f"{ref['mean_samples']:,.0f} | 1.00 | {ref['est_minutes']:.0f} "
                         "| | | | | | |")
            for r in (x for x in res["iss"] if x["k_bar"] == k_bar):
                diff = r["acr"] - r["ias_acr"]
                mark = "**" if diff > 0 else ""
                lines.append(
                    f"| {r['name']} | {r['acr']:.3f} | {r['mad']:.3f} | {r['mean_samples']:,.0f} "
                    f"| {r['speedup']:.2f} | {r['est_minutes']:.0f} | {r['ias_name']} | "
                    f"{r['ias_acr']:.3f} | {r['ias_mad']:.3f} | {mark}{diff:+.3f}{mark} | "
                    f"{r['oracle_acr']:.3f} | {100 * r['share']:.0f}% |"
                )
        lines.append("")
    # Summary: speed-ups and ACR differences across logs, over every seed run.
    seeds = sorted({r["seed"] for r in all_results})
    lines.append(f"### Summary across logs (seeds {', '.join(map(str, seeds))})\n")
    lines.append("Per cell: speed-up over IAS-k_bar, then ACR(ISS) - ACR(IAS at the same mean "
                 "samples) as mean [min, max] over the seeds.\n")
    lines.append("| log | sigma | " + " | ".join(x["name"] for x in results[0]["iss"]) + " |")
    lines.append("| --- | --- | " + " | ".join("---:" for _ in results[0]["iss"]) + " |")
    for res in results:
        runs = [r for r in all_results if r["log"] == res["log"]]
        cells = []
        for j in range(len(res["iss"])):
            d = np.array([r["iss"][j]["acr"] - r["iss"][j]["ias_acr"] for r in runs])
            s = np.array([r["iss"][j]["speedup"] for r in runs])
            cells.append(f"{s.mean():.2f}x, {d.mean():+.3f} [{d.min():+.3f}, {d.max():+.3f}]")
        short = res["log"].split("__")[0] + " " + res["dataset"]
        lines.append(f"| {short} | {res['sigma']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/isskit-repro"))
    ap.add_argument("--seeds", default="0", help="comma list; tables show the first, the "
                    "summary all")
    ap.add_argument("--keep", action="store_true", help="keep the stores in --workdir")
    ap.add_argument("--only", default=None, help="comma list of log names (default: all six)")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    logs = LOGS if args.only is None else [x for x in LOGS if x[2] in args.only.split(",")]
    t0 = time.time()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for seed in seeds:
        for dataset, sigma, name in logs:
            results.append(run_log(dataset, sigma, name, args.workdir, seed))
            print(f"{name} seed {seed}: import {results[-1]['import_seconds']:.0f} s, replay "
                  f"{results[-1]['replay_seconds']:.0f} s", file=sys.stderr, flush=True)
            if not args.keep:
                store = args.workdir / f"{name}.seed{seed}.h5"
                store.unlink()
                store.with_name(store.name + ".lock").unlink(missing_ok=True)
    print(markdown([r for r in results if r["seed"] == seeds[0]], results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    print(f"total {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
