"""SciPy's compiled Beta quantile, made callable from numba kernels, checked at import.

The Clopper-Pearson bounds of a replay are millions of Beta quantiles; SciPy computes them
with Boost's ``ibeta_inv``, about 1 to 5 us each. Calling that same compiled routine from a
parallel numba kernel (``numba.extending.get_cython_function_address``) gives the numbers
bit for bit as ``scipy.special.betaincinv`` does, on every core. SciPy renames its fused
Cython symbols between releases, so the symbol is resolved here, once, and checked against
``scipy.special.betaincinv`` on values that cover the regimes a replay meets; if either
step fails, :data:`AVAILABLE` is False and callers compute the bounds with vectorised SciPy
outside the kernels (same numbers, one core).

The symbol is registered with LLVM under a name of ours and called as a
``numba.types.ExternalFunction``, so the kernels that use it can still be cached on disk
(a raw function pointer would be baked into the cached machine code). With
``NUMBA_DISABLE_JIT=1`` the kernels run as Python and call the ctypes function instead.

This module never computes anything but the self-test; the kernels live in
:mod:`isskit.replay._kernels`.
"""

from __future__ import annotations

import ctypes

import numba
import numpy as np

__all__: list[str] = []

#: Symbol name under which the routine is registered with LLVM.
_SYMBOL = "isskit_scipy_betaincinv_f64"
#: Candidate names of the double-precision variant, newest SciPy first.
_CANDIDATES = ("__pyx_fuse_0betaincinv", "betaincinv")

_SIG = numba.types.float64(numba.types.float64, numba.types.float64, numba.types.float64)

AVAILABLE = False
#: Why the compiled routine is not used, when it is not.
REASON = ""
#: Callable ``betaincinv(a, b, y)`` inside numba kernels (an ExternalFunction, or the ctypes
#: function when the JIT is disabled); ``None`` when not AVAILABLE.
betaincinv = None


def _self_test(fn) -> str:
    """Return "" if ``fn`` matches scipy.special.betaincinv exactly, else why not."""
    from scipy.special import betaincinv as ref

    rng = np.random.default_rng(7)
    k = np.concatenate([rng.integers(1, 1000, 50), rng.integers(1000, 200_000, 50)])
    frac = rng.choice([0.3, 0.5, 0.9, 0.99, 0.999, 1.0], k.size)
    a = np.maximum(np.floor(frac * k), 1.0)
    b = k - a + 1.0
    for y in (0.0005, 0.001, 0.01, 0.9995):
        want = ref(a, b, y)
        got = np.array([fn(float(x), float(z), y) for x, z in zip(a, b, strict=True)])
        if not np.array_equal(got, want):
            bad = np.flatnonzero(got != want)[0]
            return (
                f"compiled betaincinv({a[bad]}, {b[bad]}, {y}) = {got[bad]!r} "
                f"differs from scipy.special.betaincinv = {want[bad]!r}"
            )
    return ""


def _resolve():
    global AVAILABLE, REASON, betaincinv
    try:
        from numba.extending import get_cython_function_address
    except ImportError as exc:  # pragma: no cover - numba always has it
        REASON = f"numba lacks get_cython_function_address ({exc})"
        return
    addr = None
    for name in _CANDIDATES:
        try:
            addr = get_cython_function_address("scipy.special.cython_special", name)
            break
        except (ValueError, AttributeError, ImportError):
            continue
    if addr is None:
        REASON = f"none of {_CANDIDATES} in scipy.special.cython_special"
        return
    proto = ctypes.CFUNCTYPE(ctypes.c_double, ctypes.c_double, ctypes.c_double, ctypes.c_double)
    fn = proto(addr)
    why = _self_test(fn)
    if why:
        REASON = why
        return
    if numba.config.DISABLE_JIT:
        betaincinv = fn
    else:
        import llvmlite.binding as llvm

        llvm.add_symbol(_SYMBOL, addr)
        betaincinv = numba.types.ExternalFunction(_SYMBOL, _SIG)
    AVAILABLE = True


_resolve()
