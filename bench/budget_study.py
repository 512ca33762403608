"""The budget policy against ISS, IAS and both oracles on every shared published log.

For each log in data/published/certify-logs: the per-image p_A and correctness the importer
recovers (isskit.logs.import_log, the rule of docs/logs.md: certified rows p_A = kA_mid / n,
abstentions kA_mid / n on the true label), then, for three seeds, a replay of i.i.d. streams
with those p_A:

* ISS-AD-10-0.05 (k_bar = 100,000, U = 0.05, k0 = 1,000), paper-faithful (pilot reused) and
  fresh (fresh=True): their mean samples are the two budgets everything else is compared at;
* the budget policy (isskit.policies.Budget; its variants: isskit.budget) at each budget:
  Jeffreys and empirical-Bayes priors, pilots k0 = 100, 300 and 1,000; at fresh ISS's
  pilots k0 = 100, 300 and 1,000; at fresh ISS's budget also with a second pilot (k1), and,
  as a bound rather than a policy, the one-stage rule with the true distribution of p_A as
  its prior (isskit.budget.binned_prior: the best a one-stage rule of this form can do with
  that pilot, up to the support's 2% spacing in 1 - p);
* IAS at each policy's own mean samples (isskit.studies.oracle.ias_expected_acr: the randomised IAS
  between floor and ceil), and both oracles there (isskit.studies.oracle.Oracles).

Expected ACR: R(k, p_A) at the sample size each image got (the paper's Eq. 3); replayed ACR:
the certificates themselves, from simulated counts. The streams are simulated as counts of
the top class over the ranges each policy reads, drawn lazily and exactly (a binomial past
the last range drawn, a hypergeometric inside one), so every policy reads the same virtual
i.i.d. stream of an image, as a replay of one synthetic store would; the class a pilot
chooses is the stream's top class (every other class has probability <= (1 - p_A)/(C - 1)
<= 0.083 on these streams, and an image whose pilot picks another class abstains either way).

    python bench/budget_study.py --json-out budget.json > budget.md     # about 3-4 min

Prints Markdown tables to stdout (the ones in docs/budget.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from isskit.budget import (
    BudgetVariant,
    binned_prior,
    empirical_prior,
    gain_table,
    k_grid,
    replay_budget,
    solve_price,
)
from isskit.logs import import_log, num_classes_from_name, read_recovered
from isskit.psi import psi_table
from isskit.stats import certified_radius, cp_interval, cp_lower
from isskit.studies.oracle import Oracles, expected_acr

REPO = Path(__file__).resolve().parents[1]
LOGS = REPO / "data" / "published" / "certify-logs"
ALPHA = 0.001  # every certificate here, as in docs/reproduce.md
ISS_K_BAR, ISS_U, ISS_K0 = 100_000, 0.05, 1_000  # ISS-AD-10-0.05
PILOTS = (100, 300, 1000)
PRIORS = ("jeffreys", "eb")
TWO_STAGE = ((100, 1000, "eb"), (300, 3000, "eb"), (100, 1000, "jeffreys"))  # (k0, k1, prior)


class Streams:
    """Counts of each image's top class over any ranges of i.i.d. Bernoulli(p_A) streams.

    Cumulative counts are drawn lazily at the positions asked for and kept, so every later
    question about the same stream is consistent with the earlier answers: a count past
    the last known position is binomial, one between two known positions hypergeometric.
    """

    _FAR = np.iinfo(np.int64).max

    def __init__(self, p, rng):
        self.p = np.asarray(p, np.float64)
        self.rng = rng
        self.pos = np.zeros((self.p.size, 1), np.int64)
        self.cum = np.zeros((self.p.size, 1), np.int64)

    def at(self, t):
        t = np.asarray(t, np.int64)
        rows = np.arange(self.p.size)
        idx = (self.pos <= t[:, None]).sum(axis=1) - 1
        a, ca = self.pos[rows, idx], self.cum[rows, idx]
        nxt = np.minimum(idx + 1, self.pos.shape[1] - 1)
        b, cb = self.pos[rows, nxt], self.cum[rows, nxt]
        inside = (idx + 1 < self.pos.shape[1]) & (b != self._FAR)
        out = ca.copy()
        new = t != a
        ext = new & ~inside
        out[ext] += self.rng.binomial(t[ext] - a[ext], self.p[ext])
        mid = new & inside
        if np.any(mid):
            good = cb[mid] - ca[mid]
            out[mid] += self.rng.hypergeometric(good, (b[mid] - a[mid]) - good, t[mid] - a[mid])
        if np.any(new):
            pos = np.concatenate([self.pos, np.where(new, t, self._FAR)[:, None]], axis=1)
            cum = np.concatenate([self.cum, out[:, None]], axis=1)
            order = np.argsort(pos, axis=1, kind="stable")
            self.pos = np.take_along_axis(pos, order, axis=1)
            self.cum = np.take_along_axis(cum, order, axis=1)
        return out

    def count(self, start, stop):
        stop = np.maximum(stop, start)
        return self.at(stop) - self.at(start)


def certify(k_A, k, sigma):
    """Radius of Cohen's bound on k_A of k (0 where k = 0 or the bound is below 1/2)."""
    out = np.zeros(k.shape)
    est = k > 0
    p_lower = np.full(k.shape, np.nan)
    p_lower[est] = cp_lower(k_A[est], k[est], ALPHA)
    ok = p_lower >= 0.5
    out[ok] = certified_radius(p_lower[ok], sigma)
    return out


def load(name, workdir):
    """p_A, correctness and sigma of a log, by the importer's own rule."""
    path = LOGS / name
    header = read_recovered(name).header  # sigma and alpha, checked again by the import
    imp = import_log(
        path,
        workdir / f"{name}.h5",
        samples_per_image=1,
        sigma=float(header["sigma"]),
        alpha=float(header["alpha_one_sided"]),
    )
    sigma = imp.sigma
    correct = imp.predicted == imp.log.label
    (workdir / f"{name}.h5").unlink()
    return imp.p_A, correct, sigma


def run_seed(p_A, correct, sigma, oracles, table, truth, seed):
    rng = np.random.default_rng([seed, 0xB0D6E7])
    streams = Streams(p_A, rng)
    m = p_A.size
    chosen = np.zeros(m, np.int64)  # the top class stands for itself: only counts matter
    rows = []

    def add(name, family, k_est, samples, radius, target):
        mean = float(np.mean(samples))
        e_acr = expected_acr(k_est, p_A, correct, sigma, ALPHA)
        r_acr = float(np.mean(np.where(correct, radius, 0.0)))
        # IAS at the same mean samples, replayed: the randomised IAS between floor and ceil
        n = int(np.floor(mean))
        f = mean - n
        ias_r = [float(np.mean(np.where(correct, certify(streams.at(np.full(m, nn)),
                                                         np.full(m, nn), sigma), 0.0)))
                 for nn in (n, n + 1)]
        blind = oracles.blind(mean)
        aware = oracles.aware(mean)
        rep = {}
        for key, res in (("blind", blind), ("aware", aware)):
            k = np.asarray(res.k)
            rep[key] = float(np.mean(np.where(correct, certify(streams.at(k), k, sigma), 0.0)))
        rows.append({
            "name": name, "family": family, "target": target, "mean_samples": mean,
            "expected_acr": e_acr, "replayed_acr": r_acr,
            "ias_expected": oracles.ias_acr(mean),
            "ias_replayed": (1 - f) * ias_r[0] + f * ias_r[1],
            "blind_expected": blind.acr, "aware_expected": max(aware.acr, blind.acr),
            "blind_replayed": rep["blind"], "aware_replayed": rep["aware"],
        })
        return mean

    # ISS-AD-10-0.05: pilot of 1,000, then k_hat from psi (isskit.psi, as the replay does)
    x = streams.at(np.full(m, ISS_K0))
    low, up = cp_interval(x, np.full(m, ISS_K0), ALPHA)
    k_hat = np.asarray(table.k_hat(low, up), np.int64)
    fresh_r = certify(streams.count(np.full(m, ISS_K0), ISS_K0 + k_hat), k_hat, sigma)
    B_fresh = add("ISS-AD-10-0.05-fresh", "iss", k_hat, ISS_K0 + k_hat, fresh_r, "fresh")
    paper_r = certify(streams.at(k_hat), k_hat, sigma)
    B_paper = add("ISS-AD-10-0.05", "iss", k_hat, np.maximum(ISS_K0, k_hat), paper_r, "paper")

    pilots = {k0: streams.at(np.full(m, k0)) for k0 in PILOTS}
    fitted = {k0: empirical_prior(x, k0) for k0, x in pilots.items()}  # once for both budgets
    for target, B in (("fresh", B_fresh), ("paper", B_paper)):
        for k0 in PILOTS:
            if B <= k0:
                continue
            for prior in PRIORS:
                pol = BudgetVariant(B=B, k0=k0, prior=prior)
                res = replay_budget(pol, pilots[k0], streams.count, sigma=sigma, chosen=chosen,
                                    prior=fitted[k0] if prior == "eb" else None)
                label = f"budget k0={k0} {prior}"
                add(label, "budget", np.asarray(res.k), np.asarray(res.samples),
                    np.asarray(res.radius), target)
                rows[-1]["price"] = res.price
    for k0, k1, prior in TWO_STAGE:
        if B_fresh <= k0 + k1:
            continue
        pol = BudgetVariant(B=B_fresh, k0=k0, k1=k1, prior=prior)
        res = replay_budget(pol, pilots[k0], streams.count, sigma=sigma, chosen=chosen,
                            prior=fitted[k0] if prior == "eb" else None)
        add(f"two-stage k0={k0} k1={k1} {prior}", "two-stage", np.asarray(res.k),
            np.asarray(res.samples), np.asarray(res.radius), "fresh")
        rows[-1]["price"] = res.price
    # Bound, not a policy: the single-stage rule under the true distribution of p_A as prior
    for k0 in PILOTS:
        if B_fresh <= k0:
            continue
        sol = solve_price(truth[k0], pilots[k0], B_fresh)
        k = np.asarray(sol.k)
        radius = certify(streams.count(np.full(m, k0), k0 + k), k, sigma)
        add(f"bound: true prior k0={k0}", "bound", k, k0 + k, radius, "fresh")
    return rows


def run_log(name, workdir, seeds):
    t0 = time.time()
    p_A, correct, sigma = load(name, workdir)
    oracles = Oracles(p_A, sigma=sigma, alpha=ALPHA, correct=correct, k_grid=k_grid(10**6))
    table = psi_table(ISS_K_BAR, ISS_U, "ad", sigma, ALPHA, 0.001)
    truth = {k0: gain_table(k0, sigma, ALPHA, prior=binned_prior(p_A, k0)) for k0 in PILOTS}
    per_seed = [run_seed(p_A, correct, sigma, oracles, table, truth, s) for s in seeds]
    keys = [k for k in per_seed[0][0] if k not in ("name", "family", "target")]
    rows = []
    for j, r0 in enumerate(per_seed[0]):
        row = {k: r0[k] for k in ("name", "family", "target")}
        for k in [*keys, "price"]:
            if k in r0:
                row[k] = float(np.mean([run[j][k] for run in per_seed]))
        for kind in ("expected", "replayed"):
            ias = row[f"ias_{kind}"]
            for o in ("blind", "aware"):
                gap = row[f"{o}_{kind}"] - ias
                row[f"share_{o}_{kind}"] = (row[f"{kind}_acr"] - ias) / gap if gap > 0 else np.nan
        rows.append(row)
    # Ceiling of any policy that pays a pilot of k0 on every image: the blind oracle with
    # B - k0 to spend, as a share of the blind oracle's gain over IAS at B.
    B = rows[0]["mean_samples"]
    ias, top = oracles.ias_acr(B), oracles.blind(B).acr
    pilot_ceiling = {k0: (oracles.blind(B - k0).acr - ias) / (top - ias) if top > ias else np.nan
                     for k0 in PILOTS if B > k0}
    dataset = "ImageNet" if num_classes_from_name(name) == 1000 else "CIFAR-10"
    return {"log": name, "dataset": dataset, "sigma": sigma, "images": int(p_A.size),
            "seeds": list(seeds), "seconds": time.time() - t0, "rows": rows,
            "pilot_ceiling": pilot_ceiling}


def _pct(x):
    return "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"


def markdown(results):
    out = []
    for res in results:
        out.append(f"### {res['dataset']} sigma = {res['sigma']:g}: `{res['log']}` "
                   f"({res['images']} images)\n")
        out.append("| budget of | policy | mean samples | E[ACR] | replayed ACR | IAS E / rep. "
                   "| blind oracle | aware oracle | share of blind gain (E / rep.) | of aware |")
        out.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in res["rows"]:
            out.append(
                f"| {r['target']} ISS | {r['name']} | {r['mean_samples']:,.0f} | "
                f"{r['expected_acr']:.4f} | {r['replayed_acr']:.4f} | {r['ias_expected']:.4f} / "
                f"{r['ias_replayed']:.4f} | {r['blind_expected']:.4f} | {r['aware_expected']:.4f}"
                f" | {_pct(r['share_blind_expected'])} / {_pct(r['share_blind_replayed'])} | "
                f"{_pct(r['share_aware_expected'])} |"
            )
        out.append("")
    return "\n".join(out)


def summary(results):
    """One row per log: shares of the blind oracle's gain at fresh ISS's budget (expected)."""
    names = [r["name"] for r in results[0]["rows"] if r["target"] == "fresh"]
    short_names = [n.replace("ISS-AD-10-0.05-fresh", "fresh ISS").replace("budget ", "")
                   .replace("bound: true prior", "true prior").replace("jeffreys", "J")
                   .replace(" eb", " EB") for n in names]
    out = ["| log | B | " + " | ".join(short_names) + " | pilot ceiling 100 / 300 / 1000 "
           "| best budget - fresh ISS (E / rep.) |",
           "| --- | ---: | " + " | ".join("---:" for _ in names) + " | ---: | ---: |"]
    for res in results:
        rows = {r["name"]: r for r in res["rows"] if r["target"] == "fresh"}
        iss = rows["ISS-AD-10-0.05-fresh"]
        bud = [r for r in rows.values() if r["family"] == "budget"]
        best = max(bud, key=lambda r: r["replayed_acr"])
        cells = [_pct(rows[n]["share_blind_expected"]) if n in rows else "" for n in names]
        ceiling = " / ".join(_pct(res["pilot_ceiling"].get(k0, np.nan)) for k0 in PILOTS)
        short = res["log"].split("__")[0][:-4] + " " + res["log"].split("__")[1].replace(
            "resnet110_", "").replace("resnet50_", "").replace("_test_sigma", " s").replace(
            "replication-", "").replace("consistency-", "")
        out.append(f"| {short} | {iss['mean_samples']:,.0f} | " + " | ".join(cells)
                   + f" | {ceiling} | {best['expected_acr'] - iss['expected_acr']:+.4f} / "
                   f"{best['replayed_acr'] - iss['replayed_acr']:+.4f} ({best['name'][7:]}) |")
    return "\n".join(out)


def variants(results):
    """One row per policy: against fresh ISS at its budget, over every log."""
    names = [r["name"] for r in results[0]["rows"]
             if r["target"] == "fresh" and r["family"] != "iss"]
    out = ["| policy (at fresh ISS's budget) | replayed ACR - fresh ISS: min / mean | logs "
           "ahead (replayed) | mean samples / B - 1: min / max | share of blind gain, "
           "ImageNet: min / mean | all logs: min / mean (E) | mean (replayed) |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in names:
        d, dm, sh, shi, shr = [], [], [], [], []
        for res in results:
            rows = {r["name"]: r for r in res["rows"] if r["target"] == "fresh"}
            if n not in rows:
                continue
            iss, r = rows["ISS-AD-10-0.05-fresh"], rows[n]
            d.append(r["replayed_acr"] - iss["replayed_acr"])
            dm.append(r["mean_samples"] / iss["mean_samples"] - 1)
            if np.isfinite(r["share_blind_expected"]):
                sh.append(r["share_blind_expected"])
                shr.append(r["share_blind_replayed"])
                if res["dataset"] == "ImageNet":
                    shi.append(r["share_blind_expected"])
        ahead = sum(x > 0 for x in d)

        def span(v):
            return f"{_pct(min(v))} / {_pct(np.mean(v))}" if v else "n/a"

        out.append(f"| {n} | {min(d):+.4f} / {np.mean(d):+.4f} | {ahead} of {len(d)} | "
                   f"{min(dm):+.4f} / {max(dm):+.4f} | {span(shi)} | {span(sh)} | "
                   f"{_pct(np.mean(shr)) if shr else 'n/a'} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--only", default=None, help="comma list of log names (default: all)")
    ap.add_argument("--json-out", type=Path, default=None)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    names = sorted(p.name for p in LOGS.iterdir())
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    t0 = time.time()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            results.append(run_log(name, Path(tmp), seeds))
            print(f"{name}: {results[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
    print("## Share of the label-blind oracle's gain over IAS at fresh ISS's budget "
          "(expected ACR)\n")
    print(summary(results))
    print("\n## Each policy against fresh ISS on every log\n")
    print(variants(results))
    print()
    print(markdown(results))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, indent=1))
    print(f"total {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
