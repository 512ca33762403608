"""Argument checks shared by the library: each raises ``ValueError`` naming the bad value.

Never imports anything heavier than NumPy: every module, the CLI's too, uses these.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__: list[str] = []

#: Largest sample size (k_bar, n, n0, k0) accepted. Radii need 1 - p_lower, about
#: ln(1/alpha) / k when every sample agrees, and float64 resolves it only while k is well
#: below 1e16: against mpmath, R(k, 1) at sigma = 0.5, alpha = 0.001 is off by 5e-7 at
#: k = 1e12 and 1e13, 2e-5 at 1e14, 2e-3 at 1e16 and 3e-2 at 1e17, and psi_table at
#: k_bar = 1e18 returns 0 at p = 0.95. 10^12 keeps every radius within 1e-6.
MAX_SAMPLE_SIZE = 10**12

#: Largest sigma accepted: radii are sigma * Phi^-1(p_lower) with |Phi^-1| < 40, so any
#: larger sigma overflows to inf and declines turn into NaN.
MAX_SIGMA = 1e300

#: Finest grid step: 1/delta + 1 grid points (a million take about 3 s and 250 MB for
#: an RD table; delta = 1e-9 would need 8 GB per array).
MIN_DELTA = 1e-6


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Return ``alpha`` as a float if it lies in the open interval (0, 1)."""
    alpha = _real(alpha, name)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"{name} ({alpha}) must be in (0, 1)")
    return alpha


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """Return ``sigma`` as a float if it is finite and > 0."""
    sigma = _real(sigma, name)
    if not (np.isfinite(sigma) and sigma > 0.0):
        raise ValueError(f"{name} ({sigma}) must be a finite number > 0")
    if sigma > MAX_SIGMA:
        raise ValueError(
            f"{name} ({sigma}) must be <= {MAX_SIGMA:g} (radii sigma * Phi^-1(p) would overflow)"
        )
    return sigma


def check_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (also an integral float) >= ``minimum``.

    With ``maximum``, also <= ``maximum``.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} ({value!r}) must be an integer >= {minimum}")
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        out = int(value)
    else:
        raise ValueError(f"{name} ({value!r}) must be an integer >= {minimum}")
    if out < minimum:
        raise ValueError(f"{name} ({out}) must be an integer >= {minimum}")
    if maximum is not None and out > maximum:
        shown = f"{float(out):g}" if out >= 10**15 else str(out)  # not 10**40 in full
        raise ValueError(f"{name} ({shown}) must be an integer <= {maximum:,}")
    return out


def check_sample_size(value, name: str) -> int:
    """Return a sample size (k_bar, n, n0, k0) as an int in [1, MAX_SAMPLE_SIZE]."""
    return check_positive_int(value, name, minimum=1, maximum=MAX_SAMPLE_SIZE)


def check_decline(decline: str) -> str:
    """Return the decline kind, ``"ad"`` (absolute) or ``"rd"`` (relative), lower-cased."""
    if not isinstance(decline, str) or decline.lower() not in ("ad", "rd"):
        raise ValueError(f"decline ({decline!r}) must be 'ad' (absolute) or 'rd' (relative)")
    return decline.lower()


def check_U(U: float, decline: str) -> float:
    """Return the maximum decline ``U`` if it is > 0 (and < 1 for a relative decline)."""
    U = _real(U, "U")
    if not (np.isfinite(U) and U > 0.0):
        raise ValueError(f"U ({U}) must be a finite number > 0")
    if check_decline(decline) == "rd" and U >= 1.0:
        raise ValueError(f"U ({U}) must be < 1 for a relative decline (rd)")
    return U


def check_delta(delta: float) -> float:
    """Return the grid step ``delta`` if it is in (0, 1] and 1/delta is an integer."""
    delta = _real(delta, "delta")
    if not 0.0 < delta <= 1.0:
        raise ValueError(f"delta ({delta}) must be in (0, 1]")
    if delta < MIN_DELTA * (1 - 1e-9):
        raise ValueError(
            f"delta ({delta}) must be >= {MIN_DELTA:g}: the table would hold "
            f"{1.0 / delta + 1:.3g} grid points"
        )
    steps = round(1.0 / delta)
    if abs(steps * delta - 1.0) > 1e-9:
        raise ValueError(
            f"delta ({delta}) must divide 1 (1/delta = {1.0 / delta} is not an integer)"
        )
    return 1.0 / steps


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} ({value!r}) must be a real number")
    out = float(value)
    if np.isnan(out):
        raise ValueError(f"{name} ({value!r}) must not be NaN")
    return out
