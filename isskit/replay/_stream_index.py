"""The stream index itself and the questions it answers (built by :mod:`._index_build`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from isskit._renamed import renamed as _renamed

__all__ = ["StreamIndex"]


@_renamed(n_samples="samples_per_image")
@dataclass
class StreamIndex:
    """Everything the policies need from a store, read in one pass (:mod:`isskit.replay._kernels`).

    Attributes
    ----------
    samples_per_image : int
        Samples per stream, N.
    num_classes : int
        Labels are below this.
    rows : ndarray of int64, shape (n,)
        Store rows indexed, in order.
    checkpoints : ndarray of int64, shape (n_cp,)
        Prefix lengths m whose mode is known (selection sizes and N), increasing.
    modes, mode_counts : ndarray of int64, shape (n, n_cp)
        Most frequent label of ``labels[0:m]`` (ties to the smallest) and its count.
    slot : ndarray of int64, shape (n, n_cp)
        Row of ``bits``/``cum`` marking that label, -1 where the checkpoint is N only.
        (Numbering depends on how the store was read in blocks; what a slot holds does not:
        compare indexes with :meth:`same_as`.)
    bits, cum : ndarray
        Bit vectors and rank directories of the slots.
    true_slot : ndarray of int64, shape (n,), or None
        Slot of each image's true label (decision policies that test it: ``staged``,
        ``cs``); None when the index was built without true labels.
    range_modes, range_slots : dict
        Per schedule of selection ranges (key: the policies' ``selection_ranges``), arrays
        of shape (n, K): the most frequent label of each range (ties to the smallest; -1
        where the stream does not hold it) and the slot marking it (-1 likewise).
    """

    samples_per_image: int
    num_classes: int
    rows: np.ndarray
    checkpoints: np.ndarray
    modes: np.ndarray
    mode_counts: np.ndarray
    slot: np.ndarray
    bits: np.ndarray
    cum: np.ndarray
    true_slot: np.ndarray | None = None
    range_modes: dict = field(default_factory=dict)
    range_slots: dict = field(default_factory=dict)

    def column(self, m: int) -> int:
        """Index of checkpoint ``m``; ValueError if the index was not built for it."""
        j = int(np.searchsorted(self.checkpoints, m))
        if j >= self.checkpoints.size or self.checkpoints[j] != m:
            raise ValueError(
                f"selection size ({m}) is not in this index (built for "
                f"{self.checkpoints.tolist()}); rebuild it with the policy"
            )
        return j

    def same_as(self, other: StreamIndex) -> bool:
        """Whether two indexes hold the same information (slot numbering aside)."""
        if not all(
            np.array_equal(getattr(self, a), getattr(other, a))
            for a in ("rows", "checkpoints", "modes", "mode_counts")
        ) or not np.array_equal(self.slot < 0, other.slot < 0):
            return False
        has = self.slot >= 0
        return bool(
            np.array_equal(self.bits[self.slot[has]], other.bits[other.slot[has]])
            and np.array_equal(self.cum[self.slot[has]], other.cum[other.slot[has]])
        )

    @property
    def top_class(self) -> np.ndarray:
        """Most frequent label of each whole stream."""
        return self.modes[:, self.column(self.samples_per_image)]

    @property
    def p_A_empirical(self) -> np.ndarray:
        """Frequency of the most frequent label of each whole stream."""
        return self.mode_counts[:, self.column(self.samples_per_image)] / self.samples_per_image

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return sum(
            a.nbytes
            for a in (self.rows, self.checkpoints, self.modes, self.mode_counts, self.slot,
                      self.bits, self.cum)
        )
