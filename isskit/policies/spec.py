"""The spec language: policies named by text, and sweeps of them (DESIGN.md, "Policy SPEC").

A spec is a kind and ``key=value`` pairs, where a comma list expands to the cartesian grid
(``"iss decline=ad k_bar=1e5,5e5 U=0.05,0.1 k0=1000"``; a tuple parameter is written with
``/``: ``stages=1000/10000``), or the paper's shorthand, whose numbers are in units of
10,000 samples (the paper's Fig. 1: "IAS-c1 reduces the sample size to c1 x 10,000",
"ISS-c1-c2 accelerates IAS-c1 at a decline <= c2"): ``ISS-AD-10-0.05`` is
``ISS(k_bar=100000, U=0.05, decline="ad")``, ``IAS-2.6`` is ``IAS(n=26000)``, ``Cohen-10``
is ``Cohen(n0=100, n=100000)``.

Nothing here knows a policy by name: the kinds are those registered with
:func:`isskit.policies.base.register`, the keys and their types come from each policy's
dataclass fields, and a shorthand from the policy's ``shorthand_key`` and
``shorthand_grid``.

This module never reads a store and never prints; it imports nothing heavier than NumPy.
"""

from __future__ import annotations

import dataclasses
import decimal
import itertools
import re
import types
import typing
from pathlib import Path

from isskit.policies.base import KINDS, SHORTHAND_UNIT, Policy

__all__ = ["load_policy_file", "parse_policies", "parse_policy_spec"]


def _keys(kind: str) -> list[str]:
    return [f.name for f in dataclasses.fields(KINDS[kind]) if f.init]


def _parse_int(key: str, text: str) -> int:
    # "1e5" is an integer in a spec; Decimal keeps "100000.5" from rounding silently.
    try:
        d = decimal.Decimal(text.replace("_", ""))
    except decimal.InvalidOperation:
        raise ValueError(
            f"{key} ({text!r}) must be an integer (1e5 and 100_000 are accepted)"
        ) from None
    if not d.is_finite() or d != d.to_integral_value():
        raise ValueError(f"{key} ({text!r}) must be an integer (1e5 and 100_000 are accepted)")
    return int(d)


def _parse_float(key: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{key} ({text!r}) must be a number") from None


def _parse_bool(key: str, text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{key} ({text!r}) must be true or false")


def _field_type(kind: str, key: str):
    """The type a parameter's values are parsed to: int, float, bool, str or a tuple type."""
    hint = typing.get_type_hints(KINDS[kind])[key]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    return hint


def _parse_value(kind: str, key: str, value):
    """One value of ``key`` from spec text (str) or a TOML value (int, float, bool, str)."""
    typ = _field_type(kind, key)
    if typing.get_origin(typ) is tuple:
        (item,) = {a for a in typing.get_args(typ) if a is not Ellipsis}
        parts = value if isinstance(value, list | tuple) else str(value).split("/")
        return tuple(_parse_value_as(item, key, p) for p in parts)
    return _parse_value_as(typ, key, value)


def _parse_value_as(typ, key: str, value):
    if typ is bool:
        return value if isinstance(value, bool) else _parse_bool(key, str(value))
    if typ is int:
        if isinstance(value, bool):
            raise ValueError(f"{key} ({value!r}) must be an integer")
        return _parse_int(key, str(value)) if not isinstance(value, int) else value
    if typ is float:
        if isinstance(value, bool):
            raise ValueError(f"{key} ({value!r}) must be a number")
        return _parse_float(key, value) if isinstance(value, str) else value
    return str(value).strip().lower()


def _canonical_key(kind: str, key: str) -> str:
    valid = _keys(kind)
    by_lower = {k.lower(): k for k in valid}
    k = key.strip().lower().replace("-", "_")
    if k == "kbar":
        k = "k_bar"
    if k not in by_lower:
        raise ValueError(
            f"unknown parameter {key!r} for policy kind {kind!r}; valid: {', '.join(valid)}"
        )
    return by_lower[k]


def _expand(kind: str, grid: dict[str, list]) -> list:
    """The cartesian grid of ``grid`` (key -> list of values) as policies of ``kind``."""
    cls = KINDS[kind]
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    missing = [k for k in required if k not in grid]
    if missing:
        raise ValueError(
            f"policy kind {kind!r} needs {', '.join(missing)} "
            f"(parameters: {', '.join(_keys(kind))})"
        )
    keys = list(grid)
    combos = itertools.product(*grid.values())
    return [cls(**dict(zip(keys, combo, strict=True))) for combo in combos]


_NUM = r"[0-9]+(?:\.[0-9]*)?"


def _shorthand_re():
    kinds = "|".join(k.upper() for k, c in KINDS.items() if getattr(c, "shorthand_key", None))
    return re.compile(
        rf"^(?P<kind>{kinds})"
        rf"(?:-(?P<decline>AD|RD))?"
        rf"-(?P<a>{_NUM})"
        rf"(?:-(?P<b>{_NUM}))?"
        rf"(?P<rest>(?:-[A-Za-z_][A-Za-z_0-9]*(?:=[^\s-]+)?)*)$",
        re.IGNORECASE,
    )


def _from_units(key: str, text: str) -> int:
    n = decimal.Decimal(text) * SHORTHAND_UNIT
    if n != n.to_integral_value() or n < 1:
        raise ValueError(
            f"{key} ({text} x 10,000 = {n}) must be a whole number of samples >= 1"
        )
    return int(n)


def _parse_shorthand(head: str) -> tuple[str, dict[str, list]] | None:
    m = _shorthand_re().match(head)
    if m is None:
        return None
    kind = m["kind"].lower()
    cls = KINDS[kind]
    grid = cls.shorthand_grid(m["decline"], m["b"], head)
    key = cls.shorthand_key
    grid[key] = [_from_units(key, m["a"])]
    for token in filter(None, m["rest"].split("-")):
        key, _, value = token.partition("=")
        key = _canonical_key(kind, key)
        if key in grid:
            raise ValueError(f"policy shorthand {head!r}: {key} is given twice")
        grid[key] = [_parse_value(kind, key, value if value else "true")]
    return kind, grid


def parse_policy_spec(spec: str) -> list:
    """Parse one policy spec into the list of policies it names.

    Parameters
    ----------
    spec : str
        Either a kind (``iss``, ``ias``, ``cohen``) followed by ``key=value`` pairs, where
        a comma-separated list of values expands to the cartesian grid, e.g.
        ``"iss decline=ad k_bar=1e5,5e5 U=0.05,0.1 k0=1000"``; or the paper's shorthand,
        numbers in units of 10,000 samples (``ISS-AD-10-0.05``, ``ISS-RD-50-0.01``,
        ``IAS-2.6``, ``Cohen-10``), optionally followed by ``-key=value`` suffixes or
        ``key=value`` pairs (``"ISS-AD-10-0.05 k0=500,2000 fresh=true,false"``).
        Integers may be written ``1e5`` or ``100_000``.

    Returns
    -------
    list of Policy
        In grid order (the last key varies fastest), without duplicates.

    Raises
    ------
    ValueError
        On an unknown kind or parameter (the message lists the valid ones), a malformed
        value, a missing required parameter, or a value out of range.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"policy spec ({spec!r}) is empty; e.g. 'iss decline=ad k_bar=1e5 U=0.05'")
    tokens = spec.split()
    head, pairs = tokens[0], tokens[1:]
    shorthand = _parse_shorthand(head)
    if shorthand is not None:
        kind, grid = shorthand
    else:
        kind = head.lower()
        if kind not in KINDS:
            raise ValueError(
                f"unknown policy kind {head!r}; valid kinds: {', '.join(KINDS)} "
                "(or the shorthand ISS-AD-10-0.05, ISS-RD-50-0.01, IAS-2.6, Cohen-10)"
            )
        grid = {}
    for pair in pairs:
        key, eq, values = pair.partition("=")
        if not eq or not values or not key:
            raise ValueError(f"policy spec {spec!r}: {pair!r} is not key=value")
        key = _canonical_key(kind, key)
        if key in grid:
            # a second value would silently replace the first (or the shorthand's own)
            raise ValueError(
                f"policy spec {spec!r}: {key} is given twice; list several values as "
                f"{key}=a,b"
            )
        items = values.split(",")
        if any(v.strip() == "" for v in items):
            raise ValueError(f"policy spec {spec!r}: {pair!r} has an empty value in its list")
        grid[key] = [_parse_value(kind, key, v) for v in items]
    return _dedupe(_expand(kind, grid))


def _dedupe(policies) -> list:
    seen: set = set()
    out = []
    for p in policies:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def parse_policies(specs) -> list:
    """Parse several specs (strings) and policy objects into one list without duplicates.

    Parameters
    ----------
    specs : iterable of str or policy
        Specs as :func:`parse_policy_spec` takes them; policies pass through.

    Returns
    -------
    list of Policy
    """
    if isinstance(specs, str | Policy):
        specs = [specs]
    out = []
    for s in specs:
        if isinstance(s, Policy):
            out.append(s)
        elif isinstance(s, str):
            out.extend(parse_policy_spec(s))
        else:
            raise ValueError(
                f"policy ({s!r}) must be a spec string or a policy ({', '.join(KINDS)})"
            )
    return _dedupe(out)


def load_policy_file(path) -> list:
    """Read policies from a TOML file.

    Two forms, which may be mixed::

        policies = ["ISS-AD-10-0.05", "ias n=26000,50000"]

        [[policy]]
        kind = "iss"
        decline = ["ad", "rd"]
        k_bar = 100000
        U = [0.05, 0.1]

    In a ``[[policy]]`` table a list value expands to the cartesian grid, like a comma
    list in a spec.

    Parameters
    ----------
    path : str or Path
        The TOML file.

    Returns
    -------
    list of Policy

    Raises
    ------
    ValueError
        If the file is missing, is not TOML, or names a bad policy.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    path = Path(path)
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"policies file ({str(path)!r}) does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"policies file ({str(path)!r}) is not valid TOML: {exc}") from None
    unknown = set(doc) - {"policies", "policy"}
    if unknown:
        raise ValueError(
            f"policies file ({str(path)!r}): unknown key(s) {sorted(unknown)}; "
            "valid: 'policies' (a list of specs) and '[[policy]]' tables"
        )
    specs = doc.get("policies", [])
    if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
        raise ValueError(f"policies file ({str(path)!r}): 'policies' must be a list of strings")
    out = parse_policies(specs)
    tables = doc.get("policy", [])
    if not isinstance(tables, list):
        raise ValueError(f"policies file ({str(path)!r}): use [[policy]] tables")
    for table in tables:
        table = dict(table)
        kind = str(table.pop("kind", "")).lower()
        if kind not in KINDS:
            raise ValueError(
                f"policies file ({str(path)!r}): [[policy]] kind ({kind!r}) must be one of "
                f"{', '.join(KINDS)}"
            )
        grid = {}
        for key, value in table.items():
            ckey = _canonical_key(kind, key)
            values = value if isinstance(value, list) else [value]
            grid[ckey] = [_parse_value(kind, ckey, v) for v in values]
        out.extend(_expand(kind, grid))
    if not out:
        raise ValueError(f"policies file ({str(path)!r}) names no policy")
    return _dedupe(out)
