"""Sizes checked before allocating: the memory helper, and every estimate against reality.

Each estimate that a size check uses (bytes per trial, per pilot count, per sample) is
compared with the peak that ``tracemalloc`` measures while the real code runs (NumPy and
SciPy allocate through it), so an estimate that falls below what is allocated fails here.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from isskit import validate
from isskit.validate import OVERHEAD_BYTES, ArgumentError, available_memory, check_memory

REPO = Path(__file__).resolve().parents[1]


def _peak(fn, *args, **kwargs) -> int:
    fn(*args, **kwargs)  # first call: imports, caches and compiled kernels are not the work
    tracemalloc.start()
    try:
        fn(*args, **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ----------------------------------------------------------------------- the helper


def test_argument_error_renames_and_keeps_values_literal():
    exc = ArgumentError("k_bar", "{name} ({value!r}) must be {what}", value="{x}", what="> 0")
    assert str(exc) == "k_bar ('{x}') must be > 0"  # braces in a value stay as they are
    assert exc.naming("--k-bar") == "--k-bar ('{x}') must be > 0"
    assert isinstance(exc, ValueError) and exc.argument == "k_bar"
    back = pickle.loads(pickle.dumps(exc))
    assert str(back) == str(exc) and back.naming("--K") == "--K ('{x}') must be > 0"


def test_available_memory_is_at_most_what_the_kernel_says():
    meminfo = Path("/proc/meminfo")
    if not meminfo.exists():
        pytest.skip("no /proc/meminfo here")
    fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines())
    kernel = int(fields["MemAvailable"].split()[0]) * 1024
    free = available_memory()
    # the kernel's figure moves between the two reads: allow it 10% either way
    assert 0 < free <= kernel * 1.1


def test_available_memory_respects_ulimit_v():
    # A fresh process under an address-space limit of its current size + 256 MiB: the
    # helper must say at most 256 MiB are left (the limit is the independent reference).
    code = (
        "import resource, os\n"
        "page = os.sysconf('SC_PAGE_SIZE')\n"
        "vm = int(open('/proc/self/statm').read().split()[0]) * page\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_AS)\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), hard))\n"
        "from isskit.validate import available_memory\n"
        "print(available_memory())\n"
    )
    if not Path("/proc/self/statm").exists():
        pytest.skip("no /proc/self/statm here")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True)
    assert 0 <= int(out.stdout) <= 256 << 20


def test_check_memory_refuses_one_byte_over(monkeypatch):
    monkeypatch.setattr(validate, "available_memory", lambda: 1000)
    check_memory(1000, "N", 500, "two bytes each")  # exactly what is left: fine
    with pytest.raises(ArgumentError) as info:
        check_memory(1001, "N", 500, "two bytes each")
    assert str(info.value) == ("N (500) needs 1001 bytes of memory (two bytes each), more "
                               "than the 1000 bytes available")
    assert info.value.naming("--N").startswith("--N (500) needs 1001 bytes")
    with pytest.raises(ArgumentError, match=r"N \(1e\+40\) needs 9\.22e\+18 PiB of cuda:0"):
        check_memory(2**113, "N", 10**40, "x", free=10, memory="cuda:0 memory")


# ----------------------------------------------------------------------- the estimates


@pytest.mark.parametrize("spec", ["cohen n0=100 n=100000", "ias n=100000", "ISS-AD-10-0.05",
                                  "ISS-RD-10-0.01 fresh=true"])
@pytest.mark.parametrize("p", [0.5, 0.9, 0.999])
def test_audit_simulation_fits_its_bytes_per_trial(spec, p):
    from isskit.policies import parse_policy_spec
    from isskit.studies import audit

    policy = parse_policy_spec(spec)[0]
    trials = 50_000
    peak = _peak(audit.simulate, policy, p, trials, np.random.default_rng(0))
    assert peak <= OVERHEAD_BYTES + audit._BYTES_PER_TRIAL * trials, peak / trials
    assert peak >= 40 * trials  # the estimate is not vacuous: several arrays of trials values


@pytest.mark.parametrize("fresh", [False, True])
@pytest.mark.parametrize("p", [0.5, 0.9, 0.999])
def test_audit_exact_sum_fits_its_bytes_per_pilot_count(fresh, p):
    from isskit.policies import ISS
    from isskit.studies import audit

    policy = ISS(k_bar=10**7, U=0.05, decline="ad", k0=10**6, fresh=fresh)
    lo, hi = audit._selection_window(policy, p)
    counts = hi - lo + 1
    peak = _peak(audit.failure_probability, policy, p)
    assert peak <= OVERHEAD_BYTES + audit._BYTES_PER_PILOT_COUNT * counts


def test_audit_pilot_window_is_about_18_standard_deviations():
    # SciPy's binom.isf(1e-18) returns k0 itself; the window now ends 8.8 sd above the mean
    # (the normal quantile of 1e-18 is 8.76), not at k0.
    from scipy import stats as st

    from isskit.policies import ISS
    from isskit.studies import audit

    k0, p = 10**8, 0.9
    lo, hi = audit._selection_window(ISS(k_bar=k0, U=0.05, decline="ad", k0=k0), p)
    sd = (k0 * p * (1 - p)) ** 0.5
    z = -st.norm.ppf(1e-18)
    assert abs((hi - k0 * p) / sd - z) < 0.1 and abs((k0 * p - lo) / sd - z) < 0.1
    assert st.binom.sf(hi, k0, p) < 1e-17 and st.binom.cdf(lo, k0, p) < 1e-17


def test_ias_exact_at_a_trillion_samples_allocates_nothing_of_that_size():
    # Was an array of the n + 1 counts: 8 TB at n = 10^12.
    from isskit.policies import IAS
    from isskit.studies.audit import failure_probability

    policy = IAS(n=10**12)
    peak = _peak(failure_probability, policy, 0.9)
    assert peak < 1 << 20
    # A fixed-n Clopper-Pearson bound: at most alpha, and close to it at this n
    assert 0.9 * policy.alpha < failure_probability(policy, 0.9) <= policy.alpha


@pytest.mark.parametrize("p", [0.0, 0.01, 0.25, 0.5, 0.999, 1.0])
def test_synthetic_rows_fit_their_estimate(tmp_path, p):
    from isskit.studies import synthetic

    N = 1_000_000
    paths = iter([tmp_path / "a.h5", tmp_path / "b.h5"])
    peak = _peak(
        lambda: synthetic.write_synthetic_store(
            next(paths),
            [p],
            predicted=[3],
            true_label=[3],
            samples_per_image=N,
            num_classes=10,
            sigma=0.5,
            seed=0,
        )
    )
    assert peak <= synthetic._stream_bytes(N, [p]), peak / N


def test_store_reads_fit_their_estimate(tmp_path):
    from isskit.store import open_for_writing, open_store

    N = 1_000_000
    path = tmp_path / "s.h5"
    with open_for_writing(path, image_index=[0, 1], true_label=[0, 1], samples_per_image=N,
                          attrs={"sigma": 0.5, "num_classes": 10}) as w:
        w.write_rows(0, np.random.default_rng(0).integers(0, 10, (2, N)), [1.0, 1.0])
    with open_store(path) as s:
        # one row per block (max_bytes = one row): 2 bytes per sample for the labels, 4 for
        # their int32 offsets and 8 for bincount's intp copy of those, 8 per class for the
        # counts: the 14 N + 80 bytes (and the overhead) that top_class_frequency checks
        peak = _peak(s.top_class_frequency, max_bytes=2 * N)
        assert peak <= 14 * N + 8 * 10 + OVERHEAD_BYTES, peak / N
        assert peak >= 12 * N  # and it is what is allocated, not a loose bound


def test_verify_pilot_intervals_fit_their_estimate():
    from isskit.psi import psi_table, verify

    table = psi_table(100_000, 0.05, "ad", 0.5, 0.001, 0.01)
    p_A, _, _ = verify._points(table, 1)
    for k0 in (1000, 100_000):
        peak = _peak(verify._worst_cp_intervals, table, p_A, k0)
        assert peak <= verify._pilot_bytes(k0), (k0, peak / (k0 + 1))


@pytest.mark.torch
def test_sample_row_is_checked_on_the_host_and_on_the_gpu(monkeypatch):
    # No GPU is needed to check the rule: the GPU's free memory is what torch reports.
    import torch

    from isskit import sampling

    monkeypatch.setattr(validate, "available_memory", lambda: 12 * 1000 + OVERHEAD_BYTES)
    sampling.check_row_memory(1000)
    with pytest.raises(ArgumentError, match=r"N \(1001\) needs .* of memory .*12 bytes per"):
        sampling.check_row_memory(1001)
    monkeypatch.setattr(validate, "available_memory", lambda: 1 << 40)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda dev: (8 * 1000 + 64, 1 << 30))
    gpu = torch.device("cuda", 0)
    sampling.check_row_memory(1000, dev=gpu, noise_bytes=64)
    with pytest.raises(ArgumentError, match=r"N \(1000\) needs 7.88 KiB of cuda:0 memory"):
        sampling.check_row_memory(1000, dev=gpu, noise_bytes=65)
