"""The default reference on partly drawn rows: evaluated only where it fits every row.

A store written by ``isskit certify`` holds, per row, only the samples its policies drew
(``/drawn``). The default reference of MAD and speed-up, ``IAS(k_bar)`` (Cohen's CERTIFY for
decision policies), usually needs more than that. Rule: a *default* reference that needs
more samples than some replayed row holds is not evaluated; the MAD, speed-up (and, for
decision policies, the reference's certified accuracy at r) of the policies measured
against it are NaN, and a :class:`ReferenceWarning` names the reference, the rows and what
to give instead. A reference given explicitly that does not fit stays an error: the user
asked for it. (A reference needing more than ``N`` itself is an error either way: no row of
the store could hold it.)

This module never prints and never reads a store.
"""

from __future__ import annotations

import warnings

import numpy as np

__all__ = ["ReferenceWarning", "unfit_references"]


class ReferenceWarning(UserWarning):
    """A default reference does not fit every replayed row: its metrics are NaN."""


def unfit_references(policies, references, drawn, image_ids) -> set:
    """Default references needing more samples than some row holds, warned about once each.

    Parameters
    ----------
    policies, references : sequence of Policy
        The replayed policies and each one's (default) reference.
    drawn : ndarray of int64 or None
        Samples drawn per replayed row (None: every row full).
    image_ids : ndarray of int
        Dataset index of each replayed row.

    Returns
    -------
    set of Policy
        The references not to evaluate (never one that is itself replayed: its own rows
        must fit, and say so if they do not).
    """
    if drawn is None or drawn.size == 0:
        return set()
    replayed = set(policies)
    out = set()
    for ref in dict.fromkeys(references):
        if ref in replayed or not getattr(ref, "fixed_samples", False):
            continue
        short = drawn < ref.max_samples
        if not short.any():
            continue
        out.add(ref)
        first = int(np.flatnonzero(short)[0])
        names = ", ".join(p.name for p, r in zip(policies, references, strict=True) if r == ref)
        warnings.warn(
            f"MAD and speed-up of {names} are NaN: the default reference {ref.name} needs "
            f"{ref.max_samples} samples per image, but {int(short.sum())} of the "
            f"{drawn.size} rows hold fewer (image {int(image_ids[first])}: "
            f"{int(drawn[first])} drawn); give --reference a policy that fits the rows "
            f"drawn (at most {int(drawn.min())} samples)",
            ReferenceWarning, stacklevel=3,
        )
    return out
