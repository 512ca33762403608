"""Certification policies as frozen, self-validating values, and the spec language for sweeps.

A policy says which of an image's stored samples choose the class and which count it
(DESIGN.md, "Policies"). Over one image's stream ``labels[0:N]``:

===============================  ===================  =========================  =================
policy                           class chosen from    count taken over           samples consumed
===============================  ===================  =========================  =================
``Cohen(n0, n)`` (CERTIFY)       ``[0, n0)``          ``[n0, n0 + n)``           ``n0 + n``
``IAS(n)`` (one stage)           ``[0, n)``           ``[0, n)``                 ``n``
``ISS(k_bar, U, decline, k0)``   ``[0, k0)``          ``[0, k_hat)`` (reused)    ``max(k0, k_hat)``
``ISS(..., fresh=True)``         ``[0, k0)``          ``[k0, k0 + k_hat)``       ``k0 + k_hat``
===============================  ===================  =========================  =================

Names follow Chen et al. (AAAI 2022): ``k_bar`` the desired sample size, ``U`` the maximum
radius decline, ``decline`` absolute (``"ad"``) or relative (``"rd"``), ``k0`` the pilot size,
``delta`` the grid step of the mapping psi, ``alpha`` the failure probability.

Specs (:func:`parse_policy_spec`) are a kind and ``key=value`` pairs, where a comma list
expands to the cartesian grid (``"iss decline=ad k_bar=1e5,5e5 U=0.05,0.1 k0=1000"``), or
the paper's shorthand, whose numbers are in units of 10,000 samples (the paper's Fig. 1:
"IAS-c1 reduces the sample size to c1 x 10,000", "ISS-c1-c2 accelerates IAS-c1 at a
decline <= c2"): ``ISS-AD-10-0.05`` is ``ISS(k_bar=100000, U=0.05, decline="ad")``,
``IAS-2.6`` is ``IAS(n=26000)``, ``Cohen-10`` is ``Cohen(n0=100, n=100000)``.

This module never reads a store and never prints; it imports nothing heavier than NumPy.
"""

from __future__ import annotations

import dataclasses
import decimal
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from isskit._validate import (
    check_alpha,
    check_decline,
    check_delta,
    check_pilot_size,
    check_sample_size,
    check_U,
)

__all__ = [
    "IAS",
    "ISS",
    "KINDS",
    "Cohen",
    "Policy",
    "load_policy_file",
    "parse_policies",
    "parse_policy_spec",
]

#: Default one-sided failure probability: Cohen et al. and Chen et al. both certify at 0.001.
DEFAULT_ALPHA = 0.001
#: Default grid step of psi: the paper's grid p = 0.5, 0.501, ..., 1 (reference code).
DEFAULT_DELTA = 0.001
#: Default selection size of Cohen's CERTIFY (Cohen et al. 2019, Sec. 4: n0 = 100).
DEFAULT_N0 = 100
#: How ISS looks k_hat up in psi's table (isskit.psi.MAPPINGS): "paper" is Eq. 6 and Alg. 2
#: as written, "sup" the largest psi over the whole pilot interval (docs/mapping.md).
MAPPINGS = ("paper", "sup")
#: The shorthand's unit: "IAS-2.6" is 2.6 x 10,000 samples.
_SHORTHAND_UNIT = 10_000


def _fmt(x) -> str:
    """A number without exponent or trailing zeros (names must not contain a '-' in values)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int | np.integer):
        return str(int(x))
    return np.format_float_positional(float(x), trim="-")


def _units(n: int) -> str:
    """``n`` in the shorthand's units of 10,000 samples, exactly (26000 -> "2.6")."""
    d = decimal.Decimal(int(n)) / _SHORTHAND_UNIT
    s = format(d.normalize(), "f")
    return s


@dataclass(frozen=True)
class Cohen:
    """Cohen et al.'s CERTIFY: choose the class on ``[0, n0)``, count it on ``[n0, n0 + n)``.

    Parameters
    ----------
    n0 : int
        Selection sample size (Cohen's ``n0``), >= 1.
    n : int
        Estimation sample size (Cohen's ``n``), >= 1.
    alpha : float
        One-sided failure probability of the lower confidence bound, in (0, 1).
    """

    n0: int = DEFAULT_N0
    n: int = 100_000
    alpha: float = DEFAULT_ALPHA
    kind: ClassVar[str] = "cohen"

    def __post_init__(self):
        object.__setattr__(self, "n0", check_sample_size(self.n0, "n0"))
        object.__setattr__(self, "n", check_sample_size(self.n, "n"))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    @property
    def name(self) -> str:
        """Readable name, ``Cohen-<n in 10^4>`` plus any non-default parameter."""
        out = f"Cohen-{_units(self.n)}"
        if self.n0 != DEFAULT_N0:
            out += f"-n0={self.n0}"
        if self.alpha != DEFAULT_ALPHA:
            out += f"-alpha={_fmt(self.alpha)}"
        return out

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: ``[0, n0)``."""
        return self.n0

    @property
    def k_bar(self) -> int:
        """The budget the policy spends on its estimate, ``n``."""
        return self.n

    @property
    def max_samples(self) -> int:
        """Samples consumed, the same for every image: ``n0 + n``."""
        return self.n0 + self.n

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {"kind": self.kind, "n0": self.n0, "n": self.n, "alpha": self.alpha}

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class IAS:
    """Input-agnostic sampling in one stage: choose and count the class on ``[0, n)``.

    The paper's IAS-c is ``IAS(n=c * 10,000)``; with ``n = k_bar`` it is the reference that
    ISS accelerates.

    Parameters
    ----------
    n : int
        Sample size, >= 1.
    alpha : float
        One-sided failure probability, in (0, 1).
    """

    n: int = 100_000
    alpha: float = DEFAULT_ALPHA
    kind: ClassVar[str] = "ias"

    def __post_init__(self):
        object.__setattr__(self, "n", check_sample_size(self.n, "n"))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))

    @property
    def name(self) -> str:
        """Readable name, the paper's ``IAS-<n in 10^4>`` plus any non-default alpha."""
        out = f"IAS-{_units(self.n)}"
        if self.alpha != DEFAULT_ALPHA:
            out += f"-alpha={_fmt(self.alpha)}"
        return out

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: ``[0, n)``."""
        return self.n

    @property
    def k_bar(self) -> int:
        """The budget, ``n``."""
        return self.n

    @property
    def max_samples(self) -> int:
        """Samples consumed, the same for every image: ``n``."""
        return self.n

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {"kind": self.kind, "n": self.n, "alpha": self.alpha}

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ISS:
    """Input-specific sampling (Chen et al. 2022, Alg. 2).

    A pilot of ``k0`` samples chooses the class and gives a two-sided Clopper-Pearson
    interval ``(p_low, p_up)`` at level ``alpha`` on its count; the mapping psi (built for
    ``k_bar``, ``U``, ``decline``, ``delta`` and the store's ``sigma``) turns it into the
    sample size ``k_hat = max(psi_iss(p_low), psi_iss(p_up))``. The paper reuses the pilot
    (counts over ``[0, k_hat)``); ``fresh=True`` draws ``k_hat`` new samples after it (counts
    over ``[k0, k0 + k_hat)``), which keeps selection and estimation independent as in
    Cohen's CERTIFY. ``k_hat = 0`` abstains after the pilot.

    Parameters
    ----------
    k_bar : int
        Desired sample size (the IAS budget ISS accelerates), >= 1.
    U : float
        Maximum radius decline: > 0, and < 1 for ``decline="rd"``.
    decline : {"ad", "rd"}
        Absolute (paper Eq. 4) or relative (Eq. 5) radius decline.
    k0 : int, optional
        Pilot size, in [1, k_bar]. Default ``max(1, k_bar // 100)`` (DESIGN.md: k0 =
        k_bar / 100).
    delta : float
        Grid step of psi_iss, in (0, 1] and dividing 1. Default 0.001, the paper's grid.
    alpha : float
        Failure probability, in (0, 1): the pilot interval is two-sided at ``alpha``
        (the reference code's ``proportion_confint(k, k0, alpha, method="beta")``) and the
        final bound one-sided at ``alpha``.
    fresh : bool
        Count over fresh samples after the pilot instead of reusing it.
    mapping : {"paper", "sup"}
        How ``k_hat`` is looked up from psi's table (:class:`isskit.psi.PsiTable`):
        ``"paper"`` (default) as the paper writes it, ``"sup"`` the largest psi over the
        whole pilot interval.
    """

    k_bar: int
    U: float
    decline: str
    k0: int | None = None
    delta: float = DEFAULT_DELTA
    alpha: float = DEFAULT_ALPHA
    fresh: bool = False
    mapping: str = "paper"
    kind: ClassVar[str] = "iss"

    def __post_init__(self):
        k_bar = check_sample_size(self.k_bar, "k_bar")
        decline = check_decline(self.decline)
        object.__setattr__(self, "k_bar", k_bar)
        object.__setattr__(self, "decline", decline)
        object.__setattr__(self, "U", check_U(self.U, decline))
        k0 = _default_k0(k_bar) if self.k0 is None else check_pilot_size(self.k0, k_bar)
        object.__setattr__(self, "k0", k0)
        object.__setattr__(self, "delta", check_delta(self.delta))
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        if not isinstance(self.fresh, bool | np.bool_):
            raise ValueError(f"fresh ({self.fresh!r}) must be True or False")
        object.__setattr__(self, "fresh", bool(self.fresh))
        mapping = str(self.mapping).lower()
        if mapping not in MAPPINGS:
            raise ValueError(f"mapping ({self.mapping!r}) must be one of {', '.join(MAPPINGS)}")
        object.__setattr__(self, "mapping", mapping)

    @property
    def name(self) -> str:
        """Readable name: the paper's ``ISS-AD-<k_bar in 10^4>-<U>`` plus non-default params."""
        out = f"ISS-{self.decline.upper()}-{_units(self.k_bar)}-{_fmt(self.U)}"
        if self.k0 != _default_k0(self.k_bar):
            out += f"-k0={self.k0}"
        if self.delta != DEFAULT_DELTA:
            out += f"-delta={_fmt(self.delta)}"
        if self.alpha != DEFAULT_ALPHA:
            out += f"-alpha={_fmt(self.alpha)}"
        if self.mapping != "paper":
            out += f"-mapping={self.mapping}"
        if self.fresh:
            out += "-fresh"
        return out

    @property
    def selection_size(self) -> int:
        """Samples the class is chosen from: the pilot ``[0, k0)``."""
        return self.k0

    @property
    def max_samples(self) -> int:
        """Most samples an image can consume (``k_hat <= k_bar``, since ``psi <= k_bar``)."""
        return self.k0 + self.k_bar if self.fresh else max(self.k0, self.k_bar)

    def params(self) -> dict:
        """The policy's parameters, by their names in the paper."""
        return {
            "kind": self.kind,
            "k_bar": self.k_bar,
            "U": self.U,
            "decline": self.decline,
            "k0": self.k0,
            "delta": self.delta,
            "alpha": self.alpha,
            "fresh": self.fresh,
            "mapping": self.mapping,
        }

    def __str__(self) -> str:
        return self.name


def _default_k0(k_bar: int) -> int:
    """ISS's pilot size when none is given: ``k_bar / 100`` (DESIGN.md), at least 1."""
    return max(1, k_bar // 100)


Policy = Cohen | IAS | ISS

#: kind -> class, for specs and files.
KINDS: dict[str, type] = {"cohen": Cohen, "ias": IAS, "iss": ISS}

# Per kind: key -> value parser. Keys are matched case-insensitively ("u" is "U").
_INT_KEYS = {"n0", "n", "k_bar", "k0"}
_FLOAT_KEYS = {"U", "alpha", "delta"}


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


def _parse_value(key: str, value):
    """One value of ``key`` from spec text (str) or a TOML value (int, float, bool, str)."""
    if key in _INT_KEYS:
        if isinstance(value, bool):
            raise ValueError(f"{key} ({value!r}) must be an integer")
        return _parse_int(key, str(value)) if not isinstance(value, int) else value
    if key in _FLOAT_KEYS:
        if isinstance(value, bool):
            raise ValueError(f"{key} ({value!r}) must be a number")
        return _parse_float(key, value) if isinstance(value, str) else value
    if key == "fresh":
        return value if isinstance(value, bool) else _parse_bool(key, str(value))
    if key in ("decline", "mapping"):
        return str(value).strip().lower()
    raise AssertionError(key)  # pragma: no cover - keys are checked before


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
_SHORTHAND = re.compile(
    rf"^(?P<kind>ISS|IAS|COHEN)"
    rf"(?:-(?P<decline>AD|RD))?"
    rf"-(?P<a>{_NUM})"
    rf"(?:-(?P<b>{_NUM}))?"
    rf"(?P<rest>(?:-[A-Za-z_][A-Za-z_0-9]*(?:=[^\s-]+)?)*)$",
    re.IGNORECASE,
)


def _from_units(key: str, text: str) -> int:
    n = decimal.Decimal(text) * _SHORTHAND_UNIT
    if n != n.to_integral_value() or n < 1:
        raise ValueError(
            f"{key} ({text} x 10,000 = {n}) must be a whole number of samples >= 1"
        )
    return int(n)


def _parse_shorthand(head: str) -> tuple[str, dict[str, list]] | None:
    m = _SHORTHAND.match(head)
    if m is None:
        return None
    kind = m["kind"].lower()
    grid: dict[str, list] = {}
    if kind == "iss":
        if m["decline"] is None or m["b"] is None:
            raise ValueError(
                f"ISS shorthand {head!r} must read ISS-AD-<k_bar/10^4>-<U> or "
                "ISS-RD-<k_bar/10^4>-<U>, e.g. ISS-AD-10-0.05"
            )
        grid["decline"] = [m["decline"].lower()]
        grid["k_bar"] = [_from_units("k_bar", m["a"])]
        grid["U"] = [float(m["b"])]
    else:
        if m["decline"] is not None or m["b"] is not None:
            example = "IAS-2.6" if kind == "ias" else "Cohen-10"
            raise ValueError(
                f"{kind} shorthand {head!r} takes one number, the sample size in units "
                f"of 10,000 (e.g. {example})"
            )
        grid["n"] = [_from_units("n", m["a"])]
    for token in filter(None, m["rest"].split("-")):
        key, _, value = token.partition("=")
        key = _canonical_key(kind, key)
        if key in grid:
            raise ValueError(f"policy shorthand {head!r}: {key} is given twice")
        grid[key] = [_parse_value(key, value if value else "true")]
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
    list of Cohen, IAS or ISS
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
        grid[key] = [_parse_value(key, v) for v in items]
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
    list of Cohen, IAS or ISS
    """
    if isinstance(specs, str | Cohen | IAS | ISS):
        specs = [specs]
    out = []
    for s in specs:
        if isinstance(s, Cohen | IAS | ISS):
            out.append(s)
        elif isinstance(s, str):
            out.extend(parse_policy_spec(s))
        else:
            raise ValueError(f"policy ({s!r}) must be a spec string or a Cohen, IAS or ISS")
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
    list of Cohen, IAS or ISS

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
            grid[ckey] = [_parse_value(ckey, v) for v in values]
        out.extend(_expand(kind, grid))
    if not out:
        raise ValueError(f"policies file ({str(path)!r}) names no policy")
    return _dedupe(out)
