"""Published certification logs in Cohen et al.'s format: read, write, recover the counts, import.

* :mod:`~isskit.logs.cohen_format`: the format itself, read strictly
  (:func:`read_cohen_log`) and written (:func:`write_cohen_log`) under its one
  :data:`HEADER`;
* :mod:`~isskit.logs.recover`: for each row, the range of integer top-class counts whose
  certified radius prints as the logged text (:func:`recover_counts`), and the alpha the
  authors really used (:func:`detect_alpha`);
* :mod:`~isskit.logs.recovered`: the recovered-count files shipped in
  ``data/published/recovered``, read into a :class:`RecoveredLog` (:func:`read_recovered`);
* :mod:`~isskit.logs.importer`: a log turned into a synthetic stream store that
  :mod:`isskit.replay` can replay (:func:`import_log`).
"""

from isskit.logs.cohen_format import (
    HEADER,
    CohenLog,
    num_classes_from_name,
    read_cohen_log,
    sigma_from_name,
    write_cohen_log,
)
from isskit.logs.importer import ABSTAIN_RULES, ImportResult, import_log
from isskit.logs.recover import DEFAULT_ALPHAS, AlphaFit, CountRanges, detect_alpha, recover_counts
from isskit.logs.recovered import RecoveredLog, read_recovered

__all__ = [
    "ABSTAIN_RULES",
    "DEFAULT_ALPHAS",
    "HEADER",
    "AlphaFit",
    "CohenLog",
    "CountRanges",
    "ImportResult",
    "RecoveredLog",
    "detect_alpha",
    "import_log",
    "num_classes_from_name",
    "read_cohen_log",
    "read_recovered",
    "recover_counts",
    "sigma_from_name",
    "write_cohen_log",
]
