"""Progress bars for long library work: one function decides where they go and how often.

Every bar goes to stderr, never stdout (stdout may carry the one JSON object a command
prints). On a terminal (or in a Jupyter kernel, which renders carriage returns) a bar
refreshes as tqdm usually does. Anywhere else - a CI log, a pipe, a file - every refresh
is another carriage-return fragment appended to the log, and tqdm's default of ten a
second turns an hour of work into tens of thousands of them; there a bar refreshes at
most every :data:`NON_TTY_INTERVAL` seconds, stays silent for work shorter than that,
and leaves its final state as one line.

This module never prints anything itself and imports tqdm only when a bar is made.
"""

from __future__ import annotations

import math
import os
import sys

__all__ = [
    "NON_TTY_INTERVAL",
    "progress_bar",
]

#: Seconds between refreshes when stderr is not a terminal (``TQDM_MININTERVAL`` in the
#: environment overrides it).
NON_TTY_INTERVAL = 15.0


def _interactive(stream) -> bool:
    """Whether ``stream`` redraws a line on a carriage return (a terminal or Jupyter)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except (ValueError, OSError):  # a closed or detached stream
        return False


def _non_tty_interval() -> float:
    text = os.environ.get("TQDM_MININTERVAL")
    if text is None:
        return NON_TTY_INTERVAL
    try:
        value = float(text)
    except ValueError:
        return NON_TTY_INTERVAL
    return value if math.isfinite(value) and value >= 0 else NON_TTY_INTERVAL


def progress_bar(iterable=None, *, total=None, desc: str, unit: str, enabled: bool = True,
                 **kw):
    """A tqdm bar on stderr that refreshes normally on a terminal and rarely elsewhere.

    Parameters
    ----------
    iterable : iterable, optional
        Wrapped and passed through, as ``tqdm(iterable)`` does.
    total : int or float, optional
        Expected number of iterations or units (``len(iterable)`` when it has one).
    desc : str
        Label in front of the bar, e.g. ``"indexing streams"``.
    unit : str
        What one step counts, e.g. ``"image"``.
    enabled : bool, default True
        False gives a disabled bar: iteration passes through, ``update`` and ``close``
        do nothing, nothing is written.
    **kw
        Further tqdm arguments (``initial``, ``unit_scale``, ``leave``, ...). On a stream
        that is not a terminal, ``mininterval``, ``maxinterval`` and ``delay`` default to
        the rare refresh above and ``leave`` is always True.

    Returns
    -------
    tqdm.tqdm
        Usable as an iterator, with ``update``, or as a context manager.
    """
    from tqdm import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    stream = kw.pop("file", None) or sys.stderr
    if _interactive(stream):
        kw.setdefault("dynamic_ncols", True)
    else:
        interval = _non_tty_interval()
        kw.setdefault("mininterval", interval)
        # tqdm's monitor thread forces a refresh after maxinterval seconds without one
        kw.setdefault("maxinterval", max(2.0 * interval, 10.0))
        # short work prints nothing at all; long work its state every `interval` seconds
        kw.setdefault("delay", interval)
        # a bar that was shown ends as one line in the log instead of a line of blanks
        kw["leave"] = True
    # disable=False, not tqdm's None: None would hide the bar whenever stderr is not a TTY
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, disable=False, **kw)
