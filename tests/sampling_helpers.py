"""Model factories for the CLI tests (``isskit sample --model sampling_helpers:...``)."""

from __future__ import annotations

import time

import torch


class _Slow(torch.nn.Module):
    # Sleeps before each forward pass: rows take long enough to kill a run between them,
    # without burning CPU on the shared test machine. The labels are the inner model's.
    def __init__(self, model, seconds):
        super().__init__()
        self.model, self.seconds = model, seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return self.model(x)


def slow_default():
    """The embedded default model, 30 ms slower per forward pass; 10 classes."""
    from isskit.sampling.models import default_model

    return _Slow(default_model().model, 0.03), 10
