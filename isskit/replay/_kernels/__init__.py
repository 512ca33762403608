"""Numba kernels of the replay: the per-image stream index and the queries policies make.

Arrays in, arrays out: no I/O, no xarray, no policy objects, and no SciPy calls but one: the
bounds call SciPy's compiled Boost ``betaincinv`` through :mod:`isskit.replay._cbeta`. Every
kernel is parallel over images (``prange``) and has a slow obvious twin in
``tests/reference.py``. All jit options are set once (:mod:`.options`): cached, no fastmath
(the certificate compares ``p_lower >= 0.5`` exactly, and the radius must match SciPy to
1e-12), GIL released so a reader thread can decompress the next block of the store meanwhile.

One module per job:

* :mod:`.modes`: the class a policy chooses -- the most frequent label of every *checkpoint*
  prefix ``labels[0:m]`` (every selection size a policy uses -- Cohen's ``n0``, IAS's ``n``,
  ISS's ``k0`` -- and the stream length ``N``; ties to the smallest label,
  :func:`scan_modes`), and of the ranges adaptive sampling selects on (:func:`range_modes`);
* :mod:`.bits`: for each distinct class that some checkpoint chose (a *slot*; usually one per
  image, more where the pilot's top class is unstable), a bit vector of ``labels == class``
  with the number of ones before every 64-bit word (:func:`pack_slots`). The count of that
  class in any ``[a, b)`` is then ``rank(b) - rank(a)``, at most 8 table look-ups each
  (:func:`count_ranges`), exactly, whatever the class's frequency. Memory: 3/16 byte per
  sample per slot, about 21 KB for an image of 110,000 samples;
* :mod:`.bounds`: the Clopper-Pearson bounds of a sweep, once per distinct ``(k_A, k)``;
* :mod:`.thresholds`, :mod:`.decide`, :mod:`.audit_dp`: the decision policies (issue 10) --
  the ``cs`` thresholds, the stopping rules of ``cs``, ``staged`` and ``adaptive`` over one
  image's stream, and the exact audit's dynamic programme.

So every class a policy can choose is counted in O(1), and no class outside the index is
ever needed: the chosen class of every policy is the mode of one of its checkpoints. This
package re-exports every name the rest of isskit (and its tests and benches) uses.
"""

# private names used by isskit.decision, isskit.replay.engine and isskit.studies.oracle
# (and tests), re-exported explicitly
from isskit.replay._kernels.audit_dp import cs_band_dp
from isskit.replay._kernels.bits import WORD_BITS, count_ranges, n_words, pack_slots
from isskit.replay._kernels.bounds import cp_lower_many, gather, unique_pairs
from isskit.replay._kernels.decide import _CERTIFIED as _CERTIFIED
from isskit.replay._kernels.decide import _NEED_MORE as _NEED_MORE
from isskit.replay._kernels.decide import _NOT_CERTIFIED as _NOT_CERTIFIED
from isskit.replay._kernels.decide import _UNDECIDED as _UNDECIDED
from isskit.replay._kernels.decide import _cs_one as _cs_one
from isskit.replay._kernels.decide import _next_bit as _next_bit
from isskit.replay._kernels.decide import adaptive_decide, cs_decide, staged_decide
from isskit.replay._kernels.modes import range_counts, range_modes, scan_and_pack, scan_modes
from isskit.replay._kernels.options import _jit as _jit
from isskit.replay._kernels.thresholds import cs_tables, kt_upper_raw

__all__ = [
    "WORD_BITS",
    "adaptive_decide",
    "count_ranges",
    "cp_lower_many",
    "cs_band_dp",
    "cs_decide",
    "cs_tables",
    "gather",
    "kt_upper_raw",
    "n_words",
    "pack_slots",
    "range_counts",
    "range_modes",
    "scan_and_pack",
    "scan_modes",
    "staged_decide",
    "unique_pairs",
]
