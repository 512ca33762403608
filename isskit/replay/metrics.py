"""What a certification policy achieved and what it cost, from its per-image results.

Arrays in, arrays out: the last axis of every per-image array is the image. Definitions
(DESIGN.md, "Metrics"; Chen et al. 2022, Eqs. 7 and 8):

* ACR, the average certified radius: ``mean_i radius_i * [prediction_i == y_i]``; a radius
  counts only where the prediction is correct (an abstention, -1, never is).
* Certified accuracy at radius r: ``mean_i [prediction_i == y_i and radius_i > r]``, strictly
  greater.
* Samples consumed: per image; their mean and total.
* Estimated runtime: total samples x seconds per sample (the store's measured rate, or one
  given to model another accelerator), in minutes, for the whole set of images.
* Speed-up against a reference policy: reference total samples / policy total samples.
* MAD, the maximum absolute decline: ``max_i (reference radius_i - policy radius_i)`` over the
  same streams, abstentions counting as radius 0. Positive when the policy lost radius
  somewhere; it can be negative when the policy beats the reference on every image.

The reference of a policy is, unless one is given, ``IAS(k_bar, alpha)`` with the policy's
own ``alpha`` (see :meth:`isskit.policies.Policy.default_reference`). This module never
reads files and never prints.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "acr",
    "certified_accuracy",
    "est_minutes",
    "mad",
    "mean_samples",
    "speedup",
    "total_samples",
]


def _correct(prediction, true_label):
    prediction = np.asarray(prediction)
    true_label = np.asarray(true_label)
    return (prediction == true_label) & (prediction >= 0)


def acr(prediction, radius, true_label):
    """Average certified radius (paper Eq. 7): radius counted where the prediction is correct.

    Parameters
    ----------
    prediction : array_like of int, shape (..., n_images)
        Predicted class, -1 for an abstention.
    radius : array_like of float, shape (..., n_images)
        Certified radius (0 for an abstention).
    true_label : array_like of int, shape (n_images,)
        True class of each image.

    Returns
    -------
    float or ndarray
        ACR, over the last axis.
    """
    radius = np.asarray(radius, dtype=np.float64)
    return np.mean(np.where(_correct(prediction, true_label), radius, 0.0), axis=-1)


def certified_accuracy(prediction, radius, true_label, radius_grid):
    """Certified accuracy (paper Eq. 8): fraction correct with radius strictly above r.

    Parameters
    ----------
    prediction, radius : array_like, shape (..., n_images)
        As in :func:`acr`.
    true_label : array_like of int, shape (n_images,)
        True class of each image.
    radius_grid : array_like of float, shape (n_r,)
        The radii r.

    Returns
    -------
    ndarray, shape (..., n_r)
        ``CA(r)`` for each r in the grid.
    """
    radius = np.asarray(radius, dtype=np.float64)
    grid = np.asarray(radius_grid, dtype=np.float64)
    ok = _correct(prediction, true_label)[..., None] & (radius[..., None] > grid)
    return np.mean(ok, axis=-2)


def mean_samples(samples):
    """Mean samples consumed per image (last axis)."""
    return np.mean(np.asarray(samples, dtype=np.float64), axis=-1)


def total_samples(samples):
    """Total samples consumed over the images (last axis), as int64."""
    return np.sum(np.asarray(samples, dtype=np.int64), axis=-1)


def est_minutes(samples, seconds_per_sample):
    """Estimated runtime in minutes of certifying every image: total samples x seconds each.

    Parameters
    ----------
    samples : array_like of int, shape (..., n_images)
        Samples consumed per image.
    seconds_per_sample : float
        Wall seconds per sample (one forward pass of one noisy copy), >= 0; NaN where it
        is unknown, which gives NaN.

    Returns
    -------
    float or ndarray
    """
    s = float(seconds_per_sample)
    if not (np.isnan(s) or (np.isfinite(s) and s >= 0)):
        raise ValueError(
            f"seconds_per_sample ({seconds_per_sample}) must be a finite number >= 0 (or NaN)"
        )
    with np.errstate(over="ignore"):  # an absurd rate gives inf minutes, not a warning
        return total_samples(samples) * s / 60.0


def speedup(samples, reference_samples):
    """Reference total samples over the policy's total samples (inf if the policy used none)."""
    num = total_samples(reference_samples).astype(np.float64)
    den = total_samples(samples).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return num / den


def mad(radius, reference_radius):
    """Maximum absolute decline: ``max_i (reference_radius_i - radius_i)`` over the images."""
    radius = np.asarray(radius, dtype=np.float64)
    reference_radius = np.asarray(reference_radius, dtype=np.float64)
    return np.max(reference_radius - radius, axis=-1)
