"""Argument checks shared by the library: each raises ``ValueError`` naming the bad value.

Never imports anything heavier than NumPy: every module, the CLI's too, uses these.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__: list[str] = []


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
    return sigma


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer (also an integral float) >= ``minimum``."""
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
    return out


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
