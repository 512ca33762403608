"""Decision policies against Cohen's CERTIFY and ISS on the shared published logs (issue 10).

    python bench/decisions_study.py > decisions.md        # 9 logs, about 15 min
    python bench/decisions_study.py --quick               # one log, r = 0.25 and 0.5

For each log (data/published/certify-logs; CIFAR-10 ResNet-110 of Cohen et al., 500 images,
ImageNet ResNet-50 of Salman et al., 500 images, and Salman et al.'s replication of Cohen's
CIFAR-10 ResNet-110, 10,000 images; sigma = 0.25, 0.5, 1.0 each): ``isskit import-log``
(library: :func:`isskit.logs.import_log`, seed 0, the importer's defaults otherwise) into a
store of 136,300 samples per image, the most any policy below reads (adaptive's defaults:
3 x (100 + stage), stages 1000/10000/125000), then one :func:`isskit.replay.replay` of:

* Cohen's CERTIFY ``cohen n0=100 n=100000``, one-stage IAS ``ias n=100000`` and ISS-AD-10-0.05
  (``k0 = 1000``), reused pilot and ``fresh=true``: radius policies, certified at r when
  their prediction is right and their radius is ``>= r``
  (:func:`isskit.replay.decisions.certified_at_r`);
* at every r: ``adaptive``, ``staged``, ``cs method=kt``, ``cs method=union`` at their
  defaults (DESIGN.md), alpha = 0.001 as every certificate here.

r runs over 0.25, 0.5, 0.75, 1.0 (and 1.5, 2.0 at sigma = 1.0), kept where Cohen's CERTIFY
can certify it at all (``sigma Phi^-1(alpha^(1/n)) >= r``: 0.95 at sigma = 0.25). Printed
per log and r: certified accuracy at r (%), the share undecided (%), mean samples, the
speed-up against Cohen's mean samples, and whether the certified accuracy is within 0.5
percentage points of Cohen's; then a summary of the speed-ups. The imported streams
reproduce each log's own counts (p_A from the logged radius), so Cohen's column is the
published certified accuracy up to the importer's rounding and the draw of each stream.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.stats import norm

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "cli")]

from isskit.logs import import_log  # noqa: E402
from isskit.policies import CS, IAS, ISS, Adaptive, Cohen, Staged  # noqa: E402
from isskit.replay import replay  # noqa: E402
from isskit.replay.decisions import certified_at_r  # noqa: E402

LOGS = REPO / "data" / "published" / "certify-logs"
FULL = (
    "cohen2019__cifar10_resnet110_noise_0.25_test_sigma_0.25",
    "cohen2019__cifar10_resnet110_noise_0.50_test_sigma_0.50",
    "cohen2019__cifar10_resnet110_noise_1.00_test_sigma_1.00",
    "salman2019__imagenet_replication-resnet50_noise_0.25_test_sigma_0.25",
    "salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50",
    "salman2019__imagenet_replication-resnet50_noise_1.00_test_sigma_1.00",
    "salman2019__cifar10_cohen-resnet110_noise_0.25_test_sigma_0.25",
    "salman2019__cifar10_cohen-resnet110_noise_0.50_test_sigma_0.50",
    "salman2019__cifar10_cohen-resnet110_noise_1.00_test_sigma_1.00",
)
QUICK = ("salman2019__imagenet_replication-resnet50_noise_0.50_test_sigma_0.50",)
RADII = (0.25, 0.5, 0.75, 1.0)
RADII_SIGMA_1 = (*RADII, 1.5, 2.0)
ALPHA = 0.001
COHEN = Cohen(n0=100, n=100_000, alpha=ALPHA)
RADIUS_POLICIES = (
    COHEN,
    IAS(n=100_000, alpha=ALPHA),
    ISS(k_bar=100_000, U=0.05, decline="ad", k0=1000, alpha=ALPHA),
    ISS(k_bar=100_000, U=0.05, decline="ad", k0=1000, alpha=ALPHA, fresh=True),
)
WITHIN = 0.005  # "certified accuracy within 0.5 percentage points" of Cohen's


def decision_policies(r: float) -> list:
    """The four decision families at radius r, at their DESIGN.md defaults."""
    return [Adaptive(r=r, alpha=ALPHA), Staged(r=r, alpha=ALPHA), CS(r=r, alpha=ALPHA),
            CS(r=r, alpha=ALPHA, method="union")]


def family(policy) -> str:
    """A column label: the policy's name without its radius."""
    return policy.name.split("-r=")[0]


def radii(sigma: float, quick: bool) -> list[float]:
    """The radii Cohen's CERTIFY can certify at this sigma (n = 100,000, alpha = 0.001)."""
    top = sigma * norm.ppf(ALPHA ** (1 / COHEN.n))
    grid = RADII_SIGMA_1 if sigma == 1.0 else RADII
    return [r for r in (grid[:2] if quick else grid) if r <= top]


def study_log(name: str, workdir: Path, quick: bool) -> tuple[float, list[dict]]:
    """Import one log, replay every policy, and return its rows (one per policy and r)."""
    store = workdir / f"{name}.h5"
    imported = import_log(LOGS / name, store, seed=0, samples_per_image=_samples_needed())
    sigma = float(imported.sigma)
    rs = radii(sigma, quick)
    deciders = [q for r in rs for q in decision_policies(r)]
    ds = replay(store, [*RADIUS_POLICIES, *deciders])
    store.unlink()
    truth = np.asarray(ds.true_label)
    mean = {str(p): float(v) for p, v in zip(ds.policy.values, ds.mean_samples.values,
                                             strict=True)}
    cohen_samples = mean[COHEN.name]
    rows = []
    for r in rs:
        radius_pols = [q.name for q in RADIUS_POLICIES]
        sub = ds.sel(policy=radius_pols)
        ca = certified_at_r(np.asarray(sub.prediction), np.nan_to_num(np.asarray(sub.radius)),
                            truth, np.full(len(radius_pols), r))
        cohen_ca = float(ca[0])
        for q, c in zip(RADIUS_POLICIES, ca, strict=True):
            rows.append(_row(name, sigma, r, q.name, str(ds.validity.sel(policy=q.name).values),
                             float(c), 0.0, mean[q.name], cohen_samples, cohen_ca))
        for q in decision_policies(r):
            one = ds.sel(policy=q.name)
            # the replay's own reference column must be the Cohen computed above
            assert abs(float(one.reference_certified_accuracy_at_r) - cohen_ca) < 1e-12
            rows.append(_row(name, sigma, r, family(q), str(one.validity.values),
                             float(one.certified_accuracy_at_r), float(one.undecided),
                             mean[q.name], cohen_samples, cohen_ca))
    return sigma, rows


def _row(log, sigma, r, policy, validity, ca, undecided, samples, cohen_samples, cohen_ca):
    return dict(log=log, sigma=sigma, r=r, policy=policy, validity=validity, ca=ca,
                undecided=undecided, samples=samples, speedup=cohen_samples / samples,
                within=abs(ca - cohen_ca) <= WITHIN + 1e-12, delta=ca - cohen_ca)


def _samples_needed() -> int:
    every = [*RADIUS_POLICIES, *decision_policies(1.0)]
    return max(int(q.max_samples) for q in every)


def print_log(name, rows):
    print(f"\n### {name}\n")
    print("| r | policy | validity | CA(r) % | vs Cohen (pp) | undecided % | mean samples | "
          "speed-up | within 0.5 pp |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for x in rows:
        print(f"| {x['r']:g} | {x['policy']} | {x['validity']} | {100 * x['ca']:.1f} | "
              f"{100 * x['delta']:+.1f} | {100 * x['undecided']:.1f} | {x['samples']:,.0f} | "
              f"{x['speedup']:.1f}x | {'yes' if x['within'] else 'no'} |")


def print_summary(rows):
    print("\n### Summary over every (log, r)\n")
    print("| policy | validity | cases | within 0.5 pp | speed-up min | median | max | "
          "worst CA loss (pp) | largest undecided % |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    order = dict.fromkeys(x["policy"] for x in rows)
    for pol in order:
        xs = [x for x in rows if x["policy"] == pol]
        sp = np.array([x["speedup"] for x in xs])
        print(f"| {pol} | {xs[0]['validity']} | {len(xs)} | "
              f"{sum(x['within'] for x in xs)} | {sp.min():.1f}x | {np.median(sp):.1f}x | "
              f"{sp.max():.1f}x | {100 * min(x['delta'] for x in xs):+.1f} | "
              f"{100 * max(x['undecided'] for x in xs):.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one log, r = 0.25 and 0.5")
    args = ap.parse_args()
    t0 = time.perf_counter()
    every = []
    with tempfile.TemporaryDirectory(prefix="isskit-decisions-") as tmp:
        for name in QUICK if args.quick else FULL:
            t = time.perf_counter()
            sigma, rows = study_log(name, Path(tmp), args.quick)
            print_log(f"{name} (sigma = {sigma:g}; {time.perf_counter() - t:.0f} s)", rows)
            every += rows
            sys.stdout.flush()
    print_summary(every)
    print(f"\n{time.perf_counter() - t0:.0f} s in all.")


if __name__ == "__main__":
    main()
