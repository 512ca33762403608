"""A replay's results: policy coordinates, descriptions, netCDF files, Cohen-format logs.

:func:`replay <isskit.replay.engine.replay>` labels its arrays with the policies' parameters
as coordinates along ``policy`` and a description per variable (DESIGN.md "Results");
:func:`save_results` and :func:`load_results` write and read them as netCDF (h5netcdf),
:func:`export_cohen` writes one Cohen-format log per policy through
:func:`isskit.logs.write_cohen_log` (the files named by :func:`cohen_log_paths`).

This module never prints and never imports torch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from isskit._atomic import atomic_path
from isskit.logs.cohen_format import write_cohen_log

__all__ = [
    "cohen_log_paths",
    "decision_policies",
    "export_cohen",
    "load_results",
    "save_results",
]

def decision_policies(ds) -> np.ndarray:
    """Per policy of a results Dataset: True for a decision policy, False for a radius policy.

    A decision policy has a radius ``r`` to answer at (the ``r`` coordinate, NaN for radius
    policies) and the ``decision`` variable.

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset({"decision": (("policy", "image"), [[1], [-1]])},
    ...                 coords={"policy": ["ISS", "CS"], "r": ("policy", [float("nan"), 0.5])})
    >>> decision_policies(ds).tolist()
    [False, True]
    """
    if "decision" not in ds or "r" not in ds.coords:
        return np.zeros(ds.sizes["policy"], bool)
    return np.isfinite(ds.r.values)


#: Policy coordinates of the results, with the value a policy without that parameter gets.
_COORDS = {
    "kind": "",
    "k_bar": 0,
    "U": math.nan,
    "decline": "",
    "k0": 0,
    "n0": 0,
    "n": 0,
    "alpha": math.nan,
    "delta": math.nan,
    "fresh": False,
    "mapping": "",
}


def _missing(values):
    """What a policy without a parameter gets in that coordinate, by the others' type."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool | np.bool_) for v in present):
        return False
    if all(isinstance(v, int | np.integer) for v in present):
        return 0
    if all(isinstance(v, int | float | np.number) for v in present):
        return math.nan
    return ""


def _coord_value(v):
    # tuples (a decision policy's stages) are stored as the spec writes them: 100/1000
    return "/".join(str(x) for x in v) if isinstance(v, tuple) else v


def _policy_coords(policies, references, fitted=None):
    """Policy parameters as coordinates along ``policy``: every key any policy has.

    ``fitted`` (the policies replay planned with, :meth:`RadiusPolicy.fit`) adds what fitting
    fixed: a mean budget's ``price``, beside its ``B``.
    """
    params = []
    for i, p in enumerate(policies):
        # only ISS has a k_bar: IAS and Cohen keep their n in the n coordinate (0 in k_bar)
        own = p.params()
        if fitted is not None and fitted[i] is not p:
            own.update({k: v for k, v in fitted[i].params().items() if v is not None})
        params.append({key: _coord_value(v) for key, v in own.items()})
    keys = list(_COORDS) + list(dict.fromkeys(k for d in params for k in d if k not in _COORDS))
    out = {}
    for key in keys:
        values = [d.get(key) for d in params]
        fill = _COORDS[key] if key in _COORDS else _missing(values)
        values = [fill if v is None else v for v in values]
        if isinstance(fill, str):
            out[key] = np.array([str(v) for v in values], dtype=str)
        else:
            out[key] = np.array(values)
    out["validity"] = np.array([p.validity for p in policies], dtype=str)
    out["reference"] = np.array([r.name for r in references], dtype=str)
    return out


def _default_grid(radius):
    top = float(np.max(radius)) if radius.size else 0.0
    step = 0.25
    n = max(1, math.ceil(top / step + 1e-12) + 1)
    return np.round(np.arange(n) * step, 12)


_DESCRIPTIONS = {
    "prediction": "predicted class, -1 for an abstention",
    "radius": "certified l2 radius sigma * Phi^-1(p_lower), 0 when abstaining",
    "p_lower": "one-sided Clopper-Pearson lower bound on p_A; NaN where no estimate was made",
    "samples": "samples consumed for the image",
    "k_hat": "ISS sample size from the pilot (-1 for other policies)",
    "true_label": "true class of the image",
    "image_index": "dataset index of the image",
    "p_A_empirical": "frequency of the most frequent label over the whole stream",
    "top_class": "most frequent label over the whole stream",
    "acr": "average certified radius (Chen et al. 2022, Eq. 7)",
    "mad": "max over images of reference radius - radius",
    "mean_samples": "mean samples consumed per image",
    "total_samples": "samples consumed over all images",
    "est_minutes": "estimated runtime in minutes: total samples x seconds_per_sample / 60",
    "speedup": "reference total samples / total samples",
    "certified_accuracy": "fraction correct with radius > r (Chen et al. 2022, Eq. 8)",
    "decision": "decision policies: 1 certified at r, 0 not, -1 undecided (-1 for radius "
                "policies)",
    "certified_accuracy_at_r": "decision policies: fraction certified at r and correct",
    "undecided": "decision policies: fraction undecided",
    "reference_certified_accuracy_at_r": "decision policies: the reference's fraction "
                                         "correct with radius >= r",
}


def _describe(ds):
    from isskit.replay._oracle import DESCRIPTIONS

    for name, text in {**_DESCRIPTIONS, **DESCRIPTIONS}.items():
        if name in ds:
            ds[name].attrs["description"] = text


def save_results(ds, path) -> Path:
    """Write a replay's results to netCDF with the h5netcdf engine.

    Parameters
    ----------
    ds : xarray.Dataset
        From :func:`replay`.
    path : str or Path
        Output file, written atomically (:func:`isskit._atomic.atomic_path`): a failed or
        killed write leaves the previous file as it was.

    Returns
    -------
    Path

    Raises
    ------
    OSError
        The file could not be written (disk full, ...); ``path`` is unchanged.
    """
    path = Path(path)
    # Serialised in memory, then written with plain file I/O: HDF5 failing a write
    # mid-file (a full disk) fails its close too and leaves the library in a state that
    # crashes the interpreter at exit. The Dataset is in memory already; this is a copy.
    data = ds.to_netcdf(engine="h5netcdf")
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(data)
    return path


def load_results(path):
    """Read results written by :func:`save_results` into memory.

    Parameters
    ----------
    path : str or Path
        A netCDF file.

    Returns
    -------
    xarray.Dataset
    """
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in name)


def cohen_log_paths(names, directory) -> list[Path]:
    """The files :func:`export_cohen` writes for these policy names: ``<name>.tsv`` each.

    Parameters
    ----------
    names : sequence of str
        Policy names (``ds.policy`` values, or the policies' ``name``).
    directory : str or Path

    Returns
    -------
    list of Path
    """
    d = Path(directory)
    return [d / f"{_safe_name(str(name))}.tsv" for name in names]


def export_cohen(ds, directory) -> list[Path]:
    """Write each policy's per-image results as a Cohen-format certification log.

    One file per policy, ``<directory>/<policy name>.tsv``, written by
    :func:`isskit.logs.write_cohen_log` in the format of Cohen et al.'s ``certify.py``:
    ``idx`` the dataset index, ``predict`` -1 for an abstention, ``correct`` 1 or 0,
    ``time`` the estimated wall time of the image (samples x seconds per sample) written as
    ``certify.py`` writes it (``str(datetime.timedelta)``), or ``nan`` where the sampling
    time is unknown. Radii get 6 decimals (``certify.py`` prints 3 significant digits;
    more keep the counts recoverable). A decision policy's ``radius`` is its ``r`` where it
    certified and 0 elsewhere (DESIGN.md, ``isskit certify``'s logs), its ``predict`` the
    class certified or -1.

    Parameters
    ----------
    ds : xarray.Dataset
        Replay results.
    directory : str or Path
        Created if needed. Each file is written atomically
        (:func:`isskit._atomic.atomic_path`).

    Returns
    -------
    list of Path
        The files written, in policy order (:func:`cohen_log_paths`).
    """
    d = Path(directory)
    paths = cohen_log_paths(ds.policy.values, d)
    d.mkdir(parents=True, exist_ok=True)
    sps = float(ds.attrs.get("seconds_per_sample", math.nan))
    idx = ds.image_index.values
    label = ds.true_label.values
    out = []
    for i, path in enumerate(paths):
        # an unknown (or unusable) rate leaves every time unknown: written "nan"
        samples = ds.samples.values[i]
        seconds = samples * sps if math.isfinite(sps) else np.full(samples.shape, math.nan)
        radius = ds.radius.values[i]
        r = float(ds.r.values[i]) if "r" in ds.coords and "decision" in ds else math.nan
        if math.isfinite(r):  # a decision policy: r where certified
            radius = np.where(ds.decision.values[i] == 1, r, 0.0)
        write_cohen_log(path, idx, label, ds.prediction.values[i], radius, seconds,
                        radius_format=".6f")
        out.append(path)
    return out
