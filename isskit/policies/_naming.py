"""How a policy writes its name.

Numbers without exponents, the shorthand's units, and the
``-key=value`` suffix of every field not at its default (one rule for every policy).
"""

from __future__ import annotations

import dataclasses
import decimal

import numpy as np

#: The paper's shorthand unit: "IAS-2.6" is 2.6 x 10,000 samples (Chen et al. 2022, Fig. 1).
SHORTHAND_UNIT = 10_000


def fmt(x) -> str:
    """A number without exponent or trailing zeros (names must not contain a '-' in values)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int | np.integer):
        return str(int(x))
    return np.format_float_positional(float(x), trim="-")


def name_suffix(policy, fields, *, defaults=None) -> str:
    """The ``-key=value`` parts of a policy's name: one per field not at its default, in order.

    A policy's name is its kind and main parameters (``Cohen-10``, ``ISS-AD-10-0.05``) plus
    this suffix, so that two policies of one kind differ in name exactly when they differ
    in a field (the results' ``policy`` coordinate must be unique). A field's default is
    its dataclass default, or ``defaults[field]`` where it depends on other fields (ISS's
    ``k0``). A ``True`` flag reads ``-key``; a tuple ``-key=a/b/c``; numbers as :func:`fmt`.

    Parameters
    ----------
    policy : Policy
        A policy dataclass instance.
    fields : sequence of str
        The fields that may appear, in the name's order.
    defaults : dict, optional
        Defaults that override the dataclass's.

    Returns
    -------
    str

    Examples
    --------
    >>> from isskit.policies import Cohen
    >>> name_suffix(Cohen(n0=100, n=1000), ("n0", "alpha"))
    ''
    >>> name_suffix(Cohen(n0=50, n=1000, alpha=0.01), ("n0", "alpha"))
    '-n0=50-alpha=0.01'
    """
    declared = {f.name: f.default for f in dataclasses.fields(policy)}
    defaults = {**declared, **(defaults or {})}
    out = []
    for key in fields:
        value = getattr(policy, key)
        if value == defaults[key]:
            continue
        if value is True:
            out.append(f"-{key}")
        elif isinstance(value, tuple):
            out.append(f"-{key}={'/'.join(map(fmt, value))}")
        elif isinstance(value, str):
            out.append(f"-{key}={value}")
        else:
            out.append(f"-{key}={fmt(value)}")
    return "".join(out)


def units(n: int) -> str:
    """``n`` in the shorthand's units of 10,000 samples, exactly (26000 -> "2.6")."""
    d = decimal.Decimal(int(n)) / SHORTHAND_UNIT
    return format(d.normalize(), "f")
