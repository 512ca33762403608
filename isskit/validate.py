"""Argument checks shared by the library: each raises ``ValueError`` naming the bad value.

The checks raise :class:`ArgumentError`, which knows the argument it is about, so that a
front end can say the same thing with its own spelling of it (the CLI names ``--k-bar``
where the library names ``k_bar``). Sizes are checked against the library's caps and,
with :func:`check_memory`, against the memory the machine has left, before anything of
that size is allocated.

Never imports anything heavier than NumPy: every module, the CLI's too, uses these.
"""

from __future__ import annotations

import numbers
import os

import numpy as np

__all__ = [
    "MAX_SAMPLE_SIZE",
    "MAX_SIGMA",
    "MIN_DELTA",
    "OVERHEAD_BYTES",
    "ArgumentError",
    "available_memory",
    "check_U",
    "check_alpha",
    "check_decline",
    "check_delta",
    "check_memory",
    "check_pilot_size",
    "check_positive_int",
    "check_sample_size",
    "check_sigma",
]

#: Largest sample size (k_bar, n, n0, k0) accepted. Radii need 1 - p_lower, about
#: ln(1/alpha) / k when every sample agrees, and float64 resolves it only while k is well
#: below 1e16: against mpmath, R(k, 1) at sigma = 0.5, alpha = 0.001 is off by 5e-7 at
#: k = 1e12 and 1e13, 2e-5 at 1e14, 2e-3 at 1e16 and 3e-2 at 1e17, and psi_table at
#: k_bar = 1e18 returns 0 at p = 0.95. 10^12 keeps every radius within 1e-6.
MAX_SAMPLE_SIZE = 10**12

#: Largest sigma accepted: radii are sigma * Phi^-1(p_lower) with |Phi^-1| < 40, so any
#: larger sigma overflows to inf and declines turn into NaN.
MAX_SIGMA = 1e300

#: Fixed allowance, in bytes, that every memory estimate adds for the small arrays and
#: objects a computation makes besides the large ones it is sized by (tracemalloc sees
#: tens of kilobytes of them).
OVERHEAD_BYTES = 1 << 20

#: Finest grid step: 1/delta + 1 grid points (a million take about 3 s and 250 MB for
#: an RD table; delta = 1e-9 would need 8 GB per array).
MIN_DELTA = 1e-6


class ArgumentError(ValueError):
    """A bad value of one named argument, in a message that can name it another way.

    ``str(exc)`` names the library's argument (``k_bar (0) must be ...``);
    :meth:`naming` gives the same message with another name in its place, which is how
    the CLI reports the option the user typed (``--k-bar (0) must be ...``).

    Parameters
    ----------
    argument : str
        The library's name of the argument (a parameter name, as in the signature).
    template : str
        The message, a :meth:`str.format` template: ``{name}`` where the argument's name
        goes, and ``{key}`` for each value in ``values``.
    **values
        The values the message shows; formatted in, never parsed as a template.
    """

    def __init__(self, argument: str, template: str, **values):
        self.argument = argument
        self.template = template
        self.values = values
        super().__init__(self.naming(argument))

    def naming(self, name: str) -> str:
        """The message with ``name`` where the argument's name goes."""
        return self.template.format(name=name, **self.values)

    def __reduce__(self):
        # the default pickles args, the one rendered message: rebuild from the parts
        return _rebuild_argument_error, (self.argument, self.template, self.values)


def _rebuild_argument_error(argument, template, values):
    return ArgumentError(argument, template, **values)


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Return ``alpha`` as a float if it lies in the open interval (0, 1)."""
    alpha = _real(alpha, name)
    if not 0.0 < alpha < 1.0:
        raise ArgumentError(name, "{name} ({alpha}) must be in (0, 1)", alpha=alpha)
    return alpha


def check_sigma(sigma: float, name: str = "sigma") -> float:
    """Return ``sigma`` as a float if it is finite and > 0."""
    sigma = _real(sigma, name)
    if not (np.isfinite(sigma) and sigma > 0.0):
        raise ArgumentError(name, "{name} ({sigma}) must be a finite number > 0", sigma=sigma)
    if sigma > MAX_SIGMA:
        raise ArgumentError(
            name, "{name} ({sigma}) must be <= {cap:g} (radii sigma * Phi^-1(p) would overflow)",
            sigma=sigma, cap=MAX_SIGMA,
        )
    return sigma


def check_positive_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (also an integral float) >= ``minimum``.

    With ``maximum``, also <= ``maximum``.
    """
    not_int = "{name} ({value!r}) must be an integer >= {minimum}"
    if isinstance(value, bool):
        raise ArgumentError(name, not_int, value=value, minimum=minimum)
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real) and float(value).is_integer():
        out = int(value)
    else:
        raise ArgumentError(name, not_int, value=value, minimum=minimum)
    if out < minimum:
        raise ArgumentError(name, "{name} ({value}) must be an integer >= {minimum}",
                            value=out, minimum=minimum)
    if maximum is not None and out > maximum:
        raise ArgumentError(name, "{name} ({value}) must be an integer <= {maximum:,}",
                            value=_show(out), maximum=maximum)
    return out


def check_sample_size(value, name: str) -> int:
    """Return a sample size (k_bar, n, n0, k0) as an int in [1, MAX_SAMPLE_SIZE]."""
    return check_positive_int(value, name, minimum=1, maximum=MAX_SAMPLE_SIZE)


def check_pilot_size(k0: int, k_bar: int, name: str = "k0") -> int:
    """Return ISS's pilot size ``k0`` if it is a sample size no larger than ``k_bar``.

    The pilot is part of the budget k_bar it shrinks (Chen et al. 2022, Alg. 2: k0
    samples, then k_hat <= k_bar in all): a larger pilot alone spends more than IAS at
    k_bar, which ISS exists to undercut. ISS policies and ``verify --k0`` both check it
    here, so every command refuses the same pilot with the same words.
    """
    k0 = check_sample_size(k0, name)
    if k0 > k_bar:
        raise ArgumentError(
            name, "{name} ({k0}) must be <= k_bar ({k_bar}): the pilot is part of the budget "
            "k_bar, and a larger one spends more samples than IAS at k_bar",
            k0=k0, k_bar=k_bar,
        )
    return k0


def check_decline(decline: str) -> str:
    """Return the decline kind, ``"ad"`` (absolute) or ``"rd"`` (relative), lower-cased."""
    if not isinstance(decline, str) or decline.lower() not in ("ad", "rd"):
        raise ArgumentError("decline", "{name} ({decline!r}) must be 'ad' (absolute) or 'rd' "
                            "(relative)", decline=decline)
    return decline.lower()


def check_U(U: float, decline: str) -> float:
    """Return the maximum decline ``U`` if it is > 0 (and < 1 for a relative decline)."""
    U = _real(U, "U")
    if not (np.isfinite(U) and U > 0.0):
        raise ArgumentError("U", "{name} ({U}) must be a finite number > 0", U=U)
    if check_decline(decline) == "rd" and U >= 1.0:
        raise ArgumentError("U", "{name} ({U}) must be < 1 for a relative decline (rd)", U=U)
    return U


def check_delta(delta: float) -> float:
    """Return the grid step ``delta`` if it is in (0, 1] and 1/delta is an integer."""
    delta = _real(delta, "delta")
    if not 0.0 < delta <= 1.0:
        raise ArgumentError("delta", "{name} ({delta}) must be in (0, 1]", delta=delta)
    if delta < MIN_DELTA * (1 - 1e-9):
        raise ArgumentError(
            "delta", "{name} ({delta}) must be >= {cap:g}: the table would hold {points:.3g} "
            "grid points", delta=delta, cap=MIN_DELTA, points=1.0 / delta + 1,
        )
    steps = round(1.0 / delta)
    if abs(steps * delta - 1.0) > 1e-9:
        raise ArgumentError(
            "delta", "{name} ({delta}) must divide 1 (1/delta = {inverse} is not an integer)",
            delta=delta, inverse=1.0 / delta,
        )
    return 1.0 / steps


# ------------------------------------------------------------------------- memory


def available_memory() -> int:
    """Bytes this process can still allocate, as well as the system can tell.

    The least of: the kernel's estimate of memory available without swapping
    (``MemAvailable`` in ``/proc/meminfo``; ``sysconf`` free pages elsewhere), what the
    process's cgroup (a container's memory limit) has left, and what the address-space
    limit (``ulimit -v``) has left. Each is read fresh: memory is what it is now.
    """
    page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
    limits = []
    meminfo = _read_meminfo()
    if meminfo is not None:
        limits.append(meminfo)
    else:
        try:
            limits.append(os.sysconf("SC_AVPHYS_PAGES") * page)
        except (ValueError, OSError, AttributeError):
            pass
    cgroup = _cgroup_left()
    if cgroup is not None:
        limits.append(cgroup)
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            limits.append(max(0, soft - _address_space(page)))
    except (ImportError, OSError, ValueError):
        pass
    return int(min(limits)) if limits else 2**63 - 1  # nothing known: let the allocator say


def check_memory(nbytes: int, name: str, value, what: str, *, free: int | None = None,
                 memory: str = "memory") -> None:
    """Refuse, before allocating, work that needs more memory than is available.

    Parameters
    ----------
    nbytes : int
        Bytes the work allocates at its peak (a Python int: never overflows).
    name : str
        The argument whose value sets the size (``"N"``, ``"trials"``, ...).
    value :
        That argument's value, shown in the message.
    what : str
        What the memory is for and how it was counted, e.g. ``"one row of labels, 12
        bytes per sample"``.
    free : int, optional
        Bytes available; default :func:`available_memory` (host memory). A GPU's free
        memory is passed in by the caller that knows the device.
    memory : str
        Which memory, for the message (``"cuda:0 memory"``).

    Raises
    ------
    ArgumentError
        Naming ``name`` and ``value``, the memory needed and the memory available.
    """
    nbytes = int(nbytes)
    free = available_memory() if free is None else int(free)
    if nbytes > free:
        raise ArgumentError(
            name, "{name} ({value}) needs {need} of {memory} ({what}), more than the {free} "
            "available", value=_show(value), need=_bytes(nbytes), memory=memory, what=what,
            free=_bytes(free),
        )


def _read_meminfo() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as fh:
            for line in fh:
                if line.startswith(b"MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB, meaning KiB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_left() -> int | None:
    """What the process's memory cgroup has left (v2 ``memory.max``, v1 ``limit_in_bytes``)."""
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit) as fh:
                text = fh.read().strip()
            if text == "max":
                return None
            with open(usage) as fh:
                used = int(fh.read().strip())
            cap = int(text)
        except (OSError, ValueError):
            continue
        if cap >= 2**62:  # cgroup v1 writes "no limit" as a huge number
            return None
        return max(0, cap - used)
    return None


def _address_space(page: int) -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[0]) * page
    except (OSError, ValueError, IndexError):
        return 0


def _bytes(n: int) -> str:
    """A byte count for people: ``1.9 TiB``."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if size < 1024 or unit == "PiB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= 1024
    raise AssertionError  # pragma: no cover


def _show(value):
    """A number as a message shows it: 10**40 as 1e+40, not 41 digits."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and \
            abs(int(value)) >= 10**15:
        return f"{float(value):g}"
    return value


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentError(name, "{name} ({value!r}) must be a real number", value=value)
    out = float(value)
    if np.isnan(out):
        raise ArgumentError(name, "{name} ({value!r}) must not be NaN", value=value)
    return out
