"""The jit decorators of every kernel: all numba options are set once, here."""

from __future__ import annotations

import numba

__all__: list[str] = []

#: The one place jit options are set (njit implies nopython). boundscheck off: every index
#: below is derived from array shapes; error_model "numpy": no exception machinery in the
#: inner loops.
_OPTIONS = {
    "nogil": True,
    "cache": True,
    "fastmath": False,
    "boundscheck": False,
    "error_model": "numpy",
}


def _jit(fn):
    return numba.njit(**_OPTIONS)(fn)


def _pjit(fn):
    return numba.njit(parallel=True, **_OPTIONS)(fn)
